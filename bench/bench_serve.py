"""Benchmark: the search service (yt8m-xmodal-serve) under 1 and 16 clients.

Side by side in one run:

  inference   the embedding loop inference.py runs (`inference.embed_records`
              over the export's embed_audio signature, batches of 256):
              songs/s, in this process, before the service starts;
  service     the real command (`python -m yt8m_xmodal.cli.serve`) in its
              own process, asked by 1 and then 16 concurrent HTTP clients
              on 127.0.0.1, each request one song (a TFRecord of one
              audio-only record) for its top 10: queries/s and p50 / p95
              latency per request.

The model is the shipped frame-level recipe (ChunkAttentionModel, full-size
features, 300 frames), built and exported untrained: its cost per song is
the trained model's. The index holds 100,000 synthetic video vectors (an
isotropic Gaussian in the subspace; not embeddings of real videos), built
with the `auto` kind that yt8m-xmodal-index builds (ivf_flat at 100,000).
The songs are synthetic audio-only records of 60 to 300 frames.

    python bench/bench_serve.py            # --quick: tiny sizes
"""

import concurrent.futures
import dataclasses
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_xmodal import config as config_lib  # noqa: E402
from yt8m_xmodal import index as index_lib  # noqa: E402
from yt8m_xmodal import inference  # noqa: E402
from yt8m_xmodal import modeling  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402
from yt8m_xmodal.tools import synthetic  # noqa: E402

try:
    from bench import fragments  # noqa: E402
except ImportError:  # run as `python bench/bench_serve.py`
    import fragments  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class ServeBenchConfig:
    """bench_serve.py's flags."""

    gallery: int = option(100_000, "Vectors in the index.")
    songs: int = option(128, "Distinct songs the clients send.")
    requests_per_client: int = option(8, "Requests each client sends (16 "
                                      "clients: 16x).")
    clients: tuple[int, ...] = option((1, 16), "Concurrent clients to "
                                      "measure.")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR,
                             "Writes serve.md and serve.json here.")
    quick: bool = option(False, "Tiny sizes for smoke tests; the outputs are "
                         "marked as quick.")


TOP_K = 10


def export_recipe(work, cfg):
    """An untrained export of `cfg` (the subspace fitted on random
    embeddings): the serving cost of the trained model."""
    model, subspace = modeling.build_model(cfg)
    rng = np.random.default_rng(0)
    for _ in range(4):
        batch = modeling.dummy_batch(cfg.data, 64)
        for view, size in (("video", cfg.data.video_size),
                           ("audio", cfg.data.audio_size)):
            batch[view] = tf.constant(rng.normal(
                size=(64, cfg.data.max_frames, size)).astype(np.float32))
        out = model(batch, training=False)
        subspace.update_state(out["video"], out["audio"])
    subspace.fit()
    train_dir = os.path.join(work, "run")
    return modeling.export_model(train_dir, 1, cfg.replace(
        train_dir=train_dir), model, subspace)


def song_records(work, cfg, num):
    """`num` synthetic songs: audio-only frame-level records."""
    data_dir = os.path.join(work, "songs_data")
    synthetic.generate_dataset(
        data_dir, num_videos=num + num // 4 + 2, seed=3, num_shards=1,
        max_frames=cfg.data.max_frames,
        min_frames=min(60, cfg.data.max_frames),
        feature_sizes=cfg.data.feature_sizes)
    records = []
    for path in sorted(tf.io.gfile.glob(os.path.join(data_dir, "train-*"))):
        for raw in tf.data.TFRecordDataset(path):
            example = tf.train.SequenceExample.FromString(raw.numpy())
            del example.feature_lists.feature_list["rgb"]
            records.append(example.SerializeToString())
    return records[:num]


def write_records(path, records):
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(export_dir, index_dir, port, log):
    process = subprocess.Popen(
        [sys.executable, "-m", "yt8m_xmodal.cli.serve",
         f"--export_dir={export_dir}", f"--index_dir={index_dir}",
         f"--port={port}"], stdout=log, stderr=subprocess.STDOUT,
        cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # 5 minutes at most
        if process.poll() is not None:
            raise SystemExit(f"the service exited with {process.returncode}; "
                             f"see {log.name}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("the service did not answer /health in 5 minutes")


def load(url, uploads, clients, per_client):
    """(queries/s, latencies in s) of `clients` threads each sending
    `per_client` one-song requests."""
    def client(c):
        latencies = []
        with httpx.Client(timeout=300) as http:
            for r in range(per_client):
                body = uploads[(c * per_client + r) % len(uploads)]
                start = time.perf_counter()
                answer = http.post(f"{url}/search",
                                   files={"file": ("song.tfrecord", body)},
                                   data={"top_k": str(TOP_K)})
                latencies.append(time.perf_counter() - start)
                if answer.status_code != 200:
                    raise SystemExit(f"/search answered {answer.status_code}"
                                     f": {answer.text[:300]}")
                assert len(answer.json()["queries"][0]["matches"]) == TOP_K
        return latencies
    # Warm-up: the first calls trace nothing but fill caches.
    for body in uploads[:2]:
        httpx.post(f"{url}/search", files={"file": ("w.tfrecord", body)},
                   timeout=300)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = [t for part in pool.map(client, range(clients))
                     for t in part]
    return len(latencies) / (time.perf_counter() - start), latencies


def main(argv=None):
    flags = fragments.parse_flags(ServeBenchConfig, __doc__, argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cfg = config_lib.recipe(True)
    if flags.quick:
        cfg = fragments.quick_recipe(cfg)
        flags = dataclasses.replace(flags, gallery=2000, songs=32,
                                    requests_per_client=4)
    clients = list(flags.clients)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as work:
        export_dir = export_recipe(work, cfg)
        songs = song_records(work, cfg, flags.songs)
        songs_file = write_records(os.path.join(work, "songs.tfrecord"),
                                   songs)
        rng = np.random.default_rng(1)
        gallery = rng.normal(size=(flags.gallery, cfg.subspace_dim)).astype(
            np.float32)
        index_dir = os.path.join(work, "index")
        manifest = index_lib.build_index(
            [f"v{i:06d}" for i in range(flags.gallery)], gallery, index_dir,
            index_lib.model_fingerprint(export_dir), kind="auto")

        # The baseline: inference's embedding loop, as inference.py runs it.
        signature = modeling.load_export(export_dir).signatures["embed_audio"]
        for _ in inference.embed_records(signature, songs_file,
                                         modalities=("audio",)):
            pass  # warm-up (traces the signature)
        start = time.perf_counter()
        embedded = sum(len(ids) for ids, _ in inference.embed_records(
            signature, songs_file, modalities=("audio",)))
        inference_rate = embedded / (time.perf_counter() - start)

        uploads = [open(write_records(os.path.join(work, f"song{i}.tfrecord"),
                                      [record]), "rb").read()
                   for i, record in enumerate(songs)]
        rows = []
        with open(os.path.join(work, "serve.log"), "w") as log:
            process, url = start_service(export_dir, index_dir, free_port(),
                                         log)
            try:
                for n in clients:
                    qps, latencies = load(url, uploads, n,
                                          flags.requests_per_client)
                    rows.append((n, qps, np.percentile(latencies, 50),
                                 np.percentile(latencies, 95),
                                 len(latencies)))
            finally:
                process.terminate()
                process.wait(timeout=60)

    printed = fragments.capture_stdout()
    params = manifest["params"]
    kind = manifest["kind"] + "".join(f", {k}={v}" for k, v in params.items())
    print(f"\n{cfg.model} (the frame-level recipe, {cfg.data.max_frames} "
          f"frames, {cfg.subspace_dim}-d subspace), untrained export; index "
          f"of {flags.gallery:,} synthetic {cfg.subspace_dim}-d video vectors "
          f"({kind}); one song ({min(60, cfg.data.max_frames)} to "
          f"{cfg.data.max_frames} frames) per "
          f"request, top {TOP_K}; {platform.processor() or platform.machine()}"
          f", {os.cpu_count()} CPUs, TF {tf.__version__}\n")
    print("| what | clients | requests | songs/s | x inference | p50 ms | "
          "p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| inference.py's embedding loop (batches of 256, no HTTP, no "
          f"search) | - | {embedded} songs | {inference_rate:.1f} | 1.00 | - "
          "| - |")
    for n, qps, p50, p95, count in rows:
        print(f"| service: POST /search, one song each | {n} | {count} | "
              f"{qps:.1f} | {qps / inference_rate:.2f} | {p50 * 1e3:.0f} | "
              f"{p95 * 1e3:.0f} |")
    print(f"\nload average (1 min) at start {load_start:.1f}, now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs shared with "
          "other jobs: compare rows within this run.")
    figures = {"inference_songs_per_s": inference_rate,
               "gallery": flags.gallery, "index_kind": manifest["kind"],
               "service": [{"clients": n, "queries_per_s": qps,
                            "p50_s": p50, "p95_s": p95, "requests": count}
                           for n, qps, p50, p95, count in rows]}
    fragments.write(flags.output_dir, "serve", printed.stop(), figures,
                    flags.quick)


if __name__ == "__main__":
    main()
