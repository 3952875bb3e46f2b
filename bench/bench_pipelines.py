"""Benchmark: the Beam pipelines on DirectRunner against the single-process
tools they scale out, measured side by side in one run.

  subset, real video level: the 100 validate shards of $YT8M_DATA_DIR,
    (a) the single-process tool   python -m yt8m_xmodal.cli.subset
    (b) the pipeline, DirectRunner, 1 worker (in-memory)
    (c) the pipeline, DirectRunner, 2 workers (multi_processing)
    all with --num_shards=8; the three outputs are compared (shard sha256).
  subset, synthetic frame level at the real feature sizes (1024 + 128 bytes
    per frame, 100-300 frames): the same three, for bytes/s of frame-level
    records, which the full-scale estimate scales up.
  Steady state, for both inputs and all three parts: the same runs on k
  hard-linked copies of each input file (20 of the real shards, 40 of the
  synthetic files). The copies are duplicate ids, so every record is still
  read, parsed, shuffled and de-duplicated, and the kept records are the
  same; the marginal rate (extra records / extra wall seconds) leaves out
  what a run pays once: imports, the workers' start and exit, the write of
  the kept records. The full-scale estimate uses the 1-worker pipeline's
  marginal CPU per GB of frame-level input.
  embed: a video-level model trained for a few steps on the real shards,
    (a) inference.py --embeddings_file
    (b), (c) python -m yt8m_xmodal.pipelines.embed with 1 and 2 workers.

Each part is its own process, timed from outside (wall, and CPU of the
process and its workers, RUSAGE_CHILDREN), so every part pays its own
TensorFlow import and the pipelines their workers' start. The machine's
cores are shared with other jobs: compare the ratios of one run, not
absolute rates across runs.

Usage:
  python bench/bench_pipelines.py            # ~4 minutes on 2 cores
  python bench/bench_pipelines.py --quick    # 10 shards, smoke test
"""

import dataclasses
import glob
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

try:
    from bench import fragments
except ImportError:  # run as `python bench/bench_pipelines.py`
    import fragments
from yt8m_xmodal.config import option

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = fragments.DATA_DIR
# Full frame-level YouTube-8M (train + validate + test), as published.
FULL_BYTES = 1.5e12
FULL_SHARDS = 3844
FULL_VIDEOS = 6.1e6
# The estimate's cluster: n1-standard-4 Dataflow workers (4 vCPUs each, one
# SDK process per vCPU).
VCPUS_PER_WORKER = 4
ESTIMATE_WORKERS = (25, 100)
# An assumption, not measured here: sustained read rate from Cloud Storage
# per n1-standard-4 worker.
GCS_MB_S_PER_WORKER = 100

# Copies of each input file for the steady-state runs.
STEADY_COPIES = {"video level (real)": 20, "frame level (synthetic)": 40}
# The goal the benchmark checks: 2 workers on 2 cores at this fraction of
# the single-process tool's records/s.
GOAL_X_TOOL = 0.8

RUNNERS = {
    "1 worker": ["--direct_num_workers=1"],
    "2 workers": ["--direct_num_workers=2",
                  "--direct_running_mode=multi_processing"],
}


def timed(argv, env=None):
    """Runs argv; returns (wall s, CPU s of it and its children, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                   **(env or {})))
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"FAILED ({done.returncode}): {' '.join(argv)}\n"
                 f"{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout + done.stderr


def shard_digests(directory):
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.tfrecord"))):
        with open(path, "rb") as f:
            out[os.path.basename(path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def subset_parts():
    """(label, command, extra flags) of the three subset parts."""
    yield ("single-process tool",
           [sys.executable, "-m", "yt8m_xmodal.cli.subset"], [])
    for runner, extra in RUNNERS.items():
        yield (f"pipeline, DirectRunner {runner}",
               [sys.executable, "-m", "yt8m_xmodal.pipelines.subset"], extra)


def run_subset(name, pattern, work, level_args):
    rows = []
    digests = []
    for label, command, extra in subset_parts():
        out = os.path.join(work, f"{name}_{len(rows)}")
        wall, cpu, _ = timed(command + [
            f"--input_data_pattern={pattern}", f"--output_dir={out}",
            "--num_shards=8", *level_args, *extra])
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        input_bytes = sum(os.path.getsize(p) for p in manifest["input_files"])
        rows.append({"set": name, "part": label, "wall_s": wall, "cpu_s": cpu,
                     "records": manifest["records_read"],
                     "kept": manifest["kept"]["total"],
                     "input_bytes": input_bytes,
                     "records_per_s": manifest["records_read"] / wall,
                     "mb_per_s": input_bytes / 2**20 / wall,
                     "cpu_s_per_gb": cpu / (input_bytes / 1e9)})
        digests.append(shard_digests(out))
        shutil.rmtree(out)
    identical = all(d == digests[0] for d in digests)
    for row in rows:
        row["x_tool"] = row["records_per_s"] / rows[0]["records_per_s"]
        row["output_identical_to_tool"] = identical
    return rows


def linked_copies(files, directory, copies):
    """`copies` hard links of each file in `directory` (symbolic links where
    the file system refuses); returns their glob."""
    os.makedirs(directory)
    for path in files:
        for c in range(copies):
            target = os.path.join(directory, f"c{c}-{os.path.basename(path)}")
            try:
                os.link(path, target)
            except OSError:
                os.symlink(os.path.abspath(path), target)
    return os.path.join(directory, "*.tfrecord")


def steady_state(name, files, one_rows, work, level_args):
    """The three parts on `STEADY_COPIES[name]` copies of each file, and
    their marginal rates against `one_rows` (the same parts on `files`)."""
    copies = STEADY_COPIES[name]
    linked = os.path.join(work, "linked")
    many_rows = run_subset(f"{name}, {copies} copies",
                           linked_copies(files, linked, copies), work,
                           level_args)
    shutil.rmtree(linked)
    rows = []
    for one, many in zip(one_rows, many_rows):
        records = many["records"] - one["records"]
        wall = many["wall_s"] - one["wall_s"]
        gigabytes = (many["input_bytes"] - one["input_bytes"]) / 1e9
        rows.append({
            "set": name, "part": one["part"], "copies": copies,
            "records_one": one["records"], "records_many": many["records"],
            "wall_s_one": one["wall_s"], "wall_s_many": many["wall_s"],
            "cpu_s_one": one["cpu_s"], "cpu_s_many": many["cpu_s"],
            "bytes_one": one["input_bytes"], "bytes_many": many["input_bytes"],
            # Noise can make the larger run no slower: no rate then.
            "marginal_records_per_s": records / wall if wall > 0 else None,
            "marginal_cpu_s_per_gb": (many["cpu_s"] - one["cpu_s"])
            / gigabytes,
            "output_identical_to_tool": many["output_identical_to_tool"]})
    tool = rows[0]["marginal_records_per_s"]
    for row in rows:
        rate = row["marginal_records_per_s"]
        row["x_tool"] = rate / tool if rate and tool else None
    return rows


def run_embed(pattern, work, num_records):
    train_dir = os.path.join(work, "model")
    wall, _, _ = timed([
        sys.executable, "train.py", "--noframe_features",
        f"--train_data_pattern={pattern}", f"--train_dir={train_dir}",
        "--max_steps=3", "--export_model_steps=3", "--batch_size=256"])
    print(f"(trained a video-level model for the embedding runs in "
          f"{wall:.0f} s)")
    rows = []
    wall, cpu, _ = timed([
        sys.executable, "inference.py", f"--train_dir={train_dir}",
        f"--input_data_pattern={pattern}",
        f"--embeddings_file={os.path.join(work, 'inference.npz')}"])
    rows.append(("inference.py --embeddings_file", wall, cpu))
    for runner, extra in RUNNERS.items():
        wall, cpu, _ = timed([
            sys.executable, "-m", "yt8m_xmodal.pipelines.embed",
            f"--input_data_pattern={pattern}", f"--train_dir={train_dir}",
            f"--output_prefix={os.path.join(work, 'emb', runner[0])}",
            "--num_shards=4", *extra])
        rows.append((f"pipeline, DirectRunner {runner}", wall, cpu))
    return [{"set": "embed", "part": label, "wall_s": wall, "cpu_s": cpu,
             "records": num_records, "records_per_s": num_records / wall,
             "x_tool": (num_records / wall) / (num_records / rows[0][1]),
             "cpu_ms_per_record": 1000 * cpu / num_records}
            for label, wall, cpu in rows]


def make_frame_data(directory, num_videos):
    code = (
        "from yt8m_xmodal.tools import synthetic; "
        f"synthetic.generate_dataset({directory!r}, num_videos={num_videos}, "
        "seed=0, num_shards=8, frame_features=True, min_frames=100, "
        "max_frames=300, num_classes=8)")
    timed([sys.executable, "-c", code])
    return os.path.join(directory, "*.tfrecord")


def hours(seconds):
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def marginal_cpu_per_gb(steady_rows):
    """CPU s per GB of the 1-worker pipeline without its fixed costs
    (imports, start): its steady-state row on the synthetic frame-level
    files (the copies' records are duplicate ids, so only the scan and
    de-duplication work grows)."""
    row = next(r for r in steady_rows
               if r["set"] == "frame level (synthetic)"
               and r["part"].endswith("1 worker"))
    return {"cpu_s_one": row["cpu_s_one"], "cpu_s_many": row["cpu_s_many"],
            "copies": row["copies"], "bytes_one": row["bytes_one"],
            "bytes_many": row["bytes_many"],
            "cpu_s_per_gb": row["marginal_cpu_s_per_gb"]}


def fraction(value):
    return "n/a" if value is None else f"{value:.2f}"


def goal_lines(video_rows, steady_rows):
    """Whether 2 workers reach GOAL_X_TOOL × the tool's records/s on the
    real shards, end to end and in the steady state."""
    two = [r for r in video_rows if r["part"].endswith("2 workers")][0]
    steady = [r for r in steady_rows if r["set"] == two["set"]
              and r["part"].endswith("2 workers")][0]

    def verdict(x):
        if x is None:
            return "not measured (no marginal time)"
        return "met" if x >= GOAL_X_TOOL else "NOT met"

    return [
        f"Goal: DirectRunner with 2 workers at >= {GOAL_X_TOOL}× the "
        f"single-process tool's records/s on {os.cpu_count()} cores "
        f"({two['set']}).",
        f"- End to end ({two['records']:,} records, imports, workers' start "
        f"and exit included): {two['x_tool']:.2f}× — "
        f"{verdict(two['x_tool'])}.",
        f"- Steady state (marginal rate, {steady['copies']} copies of each "
        f"shard): {fraction(steady['x_tool'])}× — "
        f"{verdict(steady['x_tool'])}.",
    ]


def estimate(marginal, embed_rows, kept_fraction):
    """The full-scale arithmetic, from per-CPU-second rates measured here."""
    lines = []
    read_bytes = FULL_BYTES * (1 + kept_fraction)
    per_gb = marginal["cpu_s_per_gb"]
    total_cpu = per_gb * FULL_BYTES / 1e9
    lines.append(
        "- **Subset, frame level.** Marginal CPU of the pipeline (1 worker) "
        "between the synthetic frame-level files and "
        f"{marginal['copies']} copies of each: "
        f"({marginal['cpu_s_many']:.1f} - {marginal['cpu_s_one']:.1f}) CPU s "
        f"/ ({marginal['bytes_many'] / 1e9:.3f} - "
        f"{marginal['bytes_one'] / 1e9:.3f}) GB = {per_gb:.1f} CPU s/GB "
        "(the copies' records are duplicates, so this undercounts the "
        "write-back of kept records, which the tool and the pipeline both "
        "read a second time). "
        f"Full set: {FULL_BYTES / 1e12:.1f} TB × {per_gb:.1f} CPU s/GB = "
        f"{total_cpu / 3600:.1f} CPU h.")
    lines.append(
        f"  Reading: every byte once, and the kept records ({kept_fraction:.0%}"
        " of the real video-level records here) a second time: "
        f"{FULL_BYTES / 1e12:.1f} TB × {1 + kept_fraction:.2f} = "
        f"{read_bytes / 1e12:.2f} TB, at an assumed (not measured) "
        f"{GCS_MB_S_PER_WORKER} MB/s from Cloud Storage per worker.")
    for workers in ESTIMATE_WORKERS:
        vcpus = workers * VCPUS_PER_WORKER
        compute = total_cpu / vcpus
        reading = read_bytes / (workers * GCS_MB_S_PER_WORKER * 1e6)
        lines.append(
            f"  On {workers} n1-standard-4 workers ({vcpus} vCPUs): compute "
            f"{total_cpu:.0f} CPU s / {vcpus} = {hours(compute)}; reading "
            f"{read_bytes / 1e6:.0f} MB / ({workers} × {GCS_MB_S_PER_WORKER} "
            f"MB/s) = {hours(reading)}; wall ≈ the larger, "
            f"{hours(max(compute, reading))}, plus worker start (minutes) and "
            "the shuffles of ~100 bytes per video (the scan has one element "
            f"per file: {FULL_SHARDS} files keep up to {FULL_SHARDS} vCPUs "
            "busy).")
    if embed_rows:
        emb = embed_rows[-1]
        total = emb["cpu_ms_per_record"] / 1000 * FULL_VIDEOS
        lines.append(
            f"- **Embedding.** The pipeline used {emb['cpu_ms_per_record']:.2f}"
            f" CPU ms per record with the measured (video-level) model "
            f"({emb['part']}; its start and model loads included, so an upper "
            f"bound). {FULL_VIDEOS / 1e6:.1f}M videos × "
            f"{emb['cpu_ms_per_record']:.2f} ms = {total / 3600:.1f} CPU h; "
            + "; ".join(f"{w} workers: {hours(total / (w * VCPUS_PER_WORKER))}"
                        for w in ESTIMATE_WORKERS)
            + ". A frame-level model costs more per record: scale by its "
            "inference.py CPU ms per record on the same machine.")
    return lines


@dataclasses.dataclass(frozen=True)
class PipelinesBenchConfig:
    """bench_pipelines.py's flags."""

    shards: int = option(100, "Real video-level shards to read.")
    frame_videos: int = option(320, "Synthetic frame-level videos.")
    no_embed: bool = option(False, "Skip the embedding pipeline.")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR, "Writes "
                             "pipelines.md and pipelines.json here.")
    quick: bool = option(False, "10 shards, 40 frame-level videos.")


def main(argv=None):
    args = fragments.parse_flags(PipelinesBenchConfig, __doc__, argv)
    if args.quick:
        args = dataclasses.replace(args, shards=10, frame_videos=40)
    files = sorted(glob.glob(os.path.join(SHARED, "video",
                                          "validate*.tfrecord")))[:args.shards]
    if not files:
        sys.exit(f"no real shards under {SHARED}/video")
    pattern = ",".join(files)
    load_start = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="bench_pipelines_")
    try:
        video_args = ["--noframe_features"]
        video_rows = run_subset("video level (real)", pattern, work,
                                video_args)
        steady_rows = steady_state("video level (real)", files, video_rows,
                                   work, video_args)
        frame_pattern = make_frame_data(os.path.join(work, "frame"),
                                        args.frame_videos)
        frame_args = ["--label_indices=0,1"]
        frame_rows = run_subset("frame level (synthetic)", frame_pattern,
                                work, frame_args)
        steady_rows += steady_state("frame level (synthetic)",
                                    sorted(glob.glob(frame_pattern)),
                                    frame_rows, work, frame_args)
        marginal = marginal_cpu_per_gb(steady_rows)
        embed_rows = [] if args.no_embed else run_embed(
            pattern, work, video_rows[0]["records"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()[0]

    printed = fragments.capture_stdout()
    print()
    print("| input | part | records | wall s | CPU s | records/s | MB/s "
          "| × tool (records/s) | output = tool's |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in video_rows + frame_rows:
        print(f"| {r['set']} | {r['part']} | {r['records']:,} | "
              f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
              f"{r['records_per_s']:.0f} | {r['mb_per_s']:.1f} | "
              f"{r['x_tool']:.2f} | "
              f"{'yes' if r['output_identical_to_tool'] else 'NO'} |")
    print()
    print("Steady state: marginal rate between each input and k hard-linked "
          "copies of each of its files, measured in this run (extra records "
          "/ extra wall s; the copies are duplicate ids: read, parsed, "
          "shuffled and de-duplicated, not written):")
    print()
    print("| input | part | k | records (1× → k×) | wall s (1× → k×) "
          "| marginal records/s | × tool (marginal) | marginal CPU s/GB "
          "| output = tool's |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in steady_rows:
        rate = r["marginal_records_per_s"]
        print(f"| {r['set']} | {r['part']} | {r['copies']} | "
              f"{r['records_one']:,} → {r['records_many']:,} | "
              f"{r['wall_s_one']:.1f} → {r['wall_s_many']:.1f} | "
              f"{'n/a' if rate is None else f'{rate:.0f}'} | "
              f"{fraction(r['x_tool'])} | "
              f"{r['marginal_cpu_s_per_gb']:.1f} | "
              f"{'yes' if r['output_identical_to_tool'] else 'NO'} |")
    print()
    for line in goal_lines(video_rows, steady_rows):
        print(line)
    if embed_rows:
        print()
        print("| embedding | records | wall s | CPU s | records/s | "
              "× inference.py | CPU ms/record |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in embed_rows:
            print(f"| {r['part']} | {r['records']:,} | {r['wall_s']:.1f} | "
                  f"{r['cpu_s']:.1f} | {r['records_per_s']:.0f} | "
                  f"{r['x_tool']:.2f} | {r['cpu_ms_per_record']:.2f} |")
    print()
    print("Full-scale estimate (Dataflow), from CPU seconds measured here:")
    print()
    kept_fraction = video_rows[0]["kept"] / video_rows[0]["records"]
    for line in estimate(marginal, embed_rows, kept_fraction):
        print(line)
    print()
    print(f"{len(files)} real shards; {args.frame_videos} synthetic "
          f"frame-level videos. Load average (1 min) {load_start:.1f} at "
          f"start, {load_end:.1f} at end, on {os.cpu_count()} CPUs shared "
          "with other jobs: compare the ratios of this run.")
    fragments.write(args.output_dir, "pipelines", printed.stop(), {
        "subset_rows": video_rows + frame_rows, "embed_rows": embed_rows,
        "steady_state_rows": steady_rows, "marginal": marginal,
        "shards": len(files), "frame_videos": args.frame_videos,
        "load_average_start": load_start}, args.quick)


if __name__ == "__main__":
    main()
