"""Benchmark: exact chunked retrieval metrics vs the matmul they cannot beat.

Side by side in one run, each measured part in a fresh subprocess so its peak
RSS (resource.getrusage ru_maxrss) is its own:

  at N (default 100,000 queries vs 100,000 gallery, 128-d, float32):
    ours        metrics.retrieval_metrics: R@1,5,10,20 + median/mean rank +
                MRR, exact, ties against the query (validation, cosine
                normalization included).
    matmul      the limit: the same N x N float32 similarity matmul (cosine
                inputs pre-normalized, outside the timer) in the same query
                chunks of SCORE_BLOCK_ELEMENTS scores, each block computed and
                dropped, no ranking work. The full 100k x 100k float32 matrix
                is 40 GB, so it cannot be one call. Run with plain tf.matmul
                and with the same matmul under XLA (jit_compile); the faster
                is "the limit".
  at a small N (default 10,000), where a full matrix fits:
    naive numpy full S = Q @ G.T in float32, np.sort of every row, rank
                = count of scores >= the true score via searchsorted, then
                the same metrics in numpy.
    ours / matmul at the same small N.
  ours_map      ours plus label mAP (YT8M-like labels: 3,862 classes, 1-5
                labels per video), at small N and at --map_n (default N).
  The ranks of ours and of the naive reference at small N are compared.

Input data (random Gaussian audio, video = audio + 4 x noise) are generated in
each subprocess before the timer; they count in peak RSS (2 x N x 128 x 4 B
= 102 MB at N = 100k), as does TensorFlow itself (~570 MB RSS after import).

Usage:
  python bench/bench_eval.py                    # N = 100,000, small N = 10,000
  python bench/bench_eval.py --n 20000 --small_n 2000   # quick
"""

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    from bench import fragments
except ImportError:  # run as `python bench/bench_eval.py`
    import fragments
from yt8m_xmodal.config import option

TOP_K = (1, 5, 10, 20)
NUM_CLASSES = 3862  # YT8M 2018 vocabulary size, as in yt8m_xmodal.features


@dataclasses.dataclass(frozen=True)
class EvalBenchConfig:
    """bench_eval.py's flags."""

    n: int = option(100_000, "Queries and gallery videos of the large runs.")
    small_n: int = option(10_000, "N of the runs a full matrix fits in "
                          "(naive numpy among them).")
    map_n: int = option(100_000, "N for the full-size mAP run (0: skip it); "
                        "about 5 CPU-minutes at 100k.")
    dim: int = option(128, "Embedding size.")
    seed: int = option(0, "Seed of the random embeddings and labels.")
    part: str = option("", "Internal: run this one measured part in this "
                       "process and print its figures as JSON.")
    ranks_out: str = option("", "Internal: with --part, save the ranks to "
                            "this .npy.")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR, "Writes eval.md "
                             "(the printed table) and eval.json here.")
    quick: bool = option(False, "Tiny sizes for smoke tests (N = map_n = "
                         "2,000, small N = 500); the outputs are marked as "
                         "quick.")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_embeddings(n, dim, seed):
    """Correlated float32 audio/video rows, built in place (no temporaries)."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((n, dim), dtype=np.float32)
    video = rng.standard_normal((n, dim), dtype=np.float32)
    # Noise 4x the signal, so true pairs are findable but ranks spread out.
    video *= 4.0
    video += audio
    return audio, video


def make_labels(n, seed):
    rng = np.random.default_rng(seed + 1)
    # A skewed class distribution, like YT8M's (a few classes are frequent).
    probs = 1.0 / np.arange(1, NUM_CLASSES + 1)
    probs /= probs.sum()
    return [rng.choice(NUM_CLASSES, rng.integers(1, 6), replace=False, p=probs)
            for _ in range(n)]


def numpy_rank_metrics(ranks):
    result = {f"recall@{k}": float(np.mean(ranks <= k)) for k in TOP_K}
    result.update(median_rank=float(np.median(ranks)),
                  mean_rank=float(np.mean(ranks)),
                  mrr=float(np.mean(1.0 / ranks)))
    return result


def run_part(part, n, dim, seed, ranks_out):
    """Runs one measured part in this process; returns its figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from yt8m_xmodal import metrics

    audio, video = make_embeddings(n, dim, seed)
    labels = make_labels(n, seed) if part == "ours_map" else None
    rows = metrics.SCORE_BLOCK_ELEMENTS // n
    if part.startswith("matmul"):
        # Pre-normalized outside the timer: the baseline is the matmul only.
        queries = tf.math.l2_normalize(audio, axis=1)
        gallery = tf.math.l2_normalize(video, axis=1)
        del audio, video

        def block(q, g):
            return tf.matmul(q, g, transpose_b=True)
        if part == "matmul_xla":
            block = tf.function(block, jit_compile=True)
    rss_before = peak_rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    extra = {}
    if part in ("matmul_tf", "matmul_xla"):
        for start in range(0, n, rows):
            scores = block(queries[start:start + rows], gallery)
        float(scores[0, 0])  # waits for queued device work, if any
        extra["chunk_rows"] = rows
    elif part == "ours":
        result = metrics.retrieval_metrics(audio, video, TOP_K)
        extra.update(result, chunk_rows=rows)
    elif part == "ours_map":
        result = metrics.retrieval_metrics(audio, video, TOP_K, labels, labels)
        extra.update(result,
                     chunk_rows=metrics.MAP_BLOCK_ELEMENTS // n)
    elif part == "naive_numpy":
        q = audio / np.linalg.norm(audio, axis=1, keepdims=True)
        g = video / np.linalg.norm(video, axis=1, keepdims=True)
        scores = q @ g.T                               # [n, n] float32
        true = scores[np.arange(n), np.arange(n)].copy()
        scores.sort(axis=1)                            # full sort, in place
        ranks = np.array([n - np.searchsorted(row, t, side="left")
                          for row, t in zip(scores, true)])
        extra.update(numpy_rank_metrics(ranks))
    else:
        raise ValueError(f"unknown part {part!r}")
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    if ranks_out and part in ("ours", "naive_numpy"):
        if part == "ours":
            ranks = metrics.true_pair_ranks(audio, video)
        np.save(ranks_out, ranks)
    return dict(part=part, n=n, wall_s=wall, cpu_s=cpu,
                rss_before_mb=rss_before,
                peak_rss_mb=peak_rss_mb(), **extra)


def spawn(part, n, args, ranks_out=""):
    cmd = [sys.executable, os.path.abspath(__file__), "--part", part,
           "--n", str(n), "--dim", str(args.dim), "--seed", str(args.seed),
           "--ranks_out", ranks_out]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"part {part} at n={n} failed")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {part:12s} n={n:>7d}  {figures['wall_s']:8.2f} s wall "
          f"{figures['cpu_s']:8.2f} s CPU  peak RSS "
          f"{figures['peak_rss_mb']:7.0f} MB", flush=True)
    return figures


WHAT = {
    "ours": "exact R@1,5,10,20 + MedR + mean rank + MRR (chunked)",
    "ours_map": "the same + label mAP (chunked sort per query)",
    "matmul_tf": "chunked float32 similarity matmul only (tf.matmul)",
    "matmul_xla": "chunked float32 similarity matmul only (XLA)",
    "naive_numpy": "full matrix + full row sort (numpy float32)",
}


def main(argv=None):
    args = fragments.parse_flags(EvalBenchConfig, __doc__, argv)
    if args.quick and not args.part:
        args = dataclasses.replace(args, n=2000, small_n=500, map_n=2000)
    if args.part:
        print(json.dumps(run_part(args.part, args.n, args.dim, args.seed,
                                  args.ranks_out)))
        return

    load_start = os.getloadavg()
    print(f"# bench_eval: N={args.n}, small N={args.small_n}, d={args.dim}, "
          f"{os.cpu_count()} CPUs, load average at start {load_start[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ours_ranks = os.path.join(tmp, "ours.npy")
        naive_ranks = os.path.join(tmp, "naive.npy")
        for part in ("matmul_tf", "matmul_xla", "ours"):
            rows.append(spawn(part, args.n, args))
        if args.map_n:
            rows.append(spawn("ours_map", args.map_n, args))
        for part, out in (("matmul_tf", ""), ("matmul_xla", ""),
                          ("ours", ours_ranks), ("ours_map", ""),
                          ("naive_numpy", naive_ranks)):
            rows.append(spawn(part, args.small_n, args, out))
        diff = np.abs(np.load(ours_ranks) - np.load(naive_ranks))
    load_end = os.getloadavg()

    printed = fragments.capture_stdout()
    print()
    print("| part | N | what is computed | wall s | CPU s | x matmul (wall) "
          "| x matmul (CPU) | peak RSS MB | RSS before timer MB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        same_n = [r for r in rows if r["n"] == row["n"]
                  and r["part"].startswith("matmul")]
        if same_n:
            wall_x = row["wall_s"] / min(r["wall_s"] for r in same_n)
            cpu_x = row["cpu_s"] / min(r["cpu_s"] for r in same_n)
            ratios = f"{wall_x:.2f} | {cpu_x:.2f}"
        else:
            ratios = "- | -"
        print(f"| {row['part']} | {row['n']:,} | {WHAT[row['part']]} | "
              f"{row['wall_s']:.2f} | {row['cpu_s']:.2f} | {ratios} | "
              f"{row['peak_rss_mb']:.0f} | {row['rss_before_mb']:.0f} |")
    print()
    for row in rows:
        if row["part"] in ("ours", "ours_map", "naive_numpy"):
            figures = {k: round(v, 4) for k, v in row.items()
                       if k.startswith(("recall", "median", "mean_rank", "mrr",
                                        "map"))}
            print(f"- {row['part']} n={row['n']}: {figures}")
    # float32 matmuls in different libraries (TF/oneDNN vs numpy's BLAS)
    # round differently, so near-ties may flip; the count shows how rare.
    print(f"\nranks of ours vs naive numpy at N={args.small_n}: "
          f"{int((diff > 0).sum())} of {diff.size} differ, max difference "
          f"{int(diff.max())} (float32 rounding of near-ties)")
    print(f"load average (1 min) at start {load_start[0]:.1f}, at end "
          f"{load_end[0]:.1f} on {os.cpu_count()} CPUs shared with other "
          "jobs; CPU s is less sensitive to that sharing than wall s.")
    fragments.write(args.output_dir, "eval", printed.stop(), {
        "n": args.n, "small_n": args.small_n, "map_n": args.map_n,
        "dim": args.dim, "rows": rows,
        "ranks_differing_from_naive": int((diff > 0).sum()),
        "max_rank_difference": int(diff.max()),
        "load_average_start": load_start[0]}, args.quick)


if __name__ == "__main__":
    main()
