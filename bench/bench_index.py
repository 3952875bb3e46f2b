"""Benchmark: the search index (yt8m_xmodal.index) vs exact search.

Side by side in one run, at each gallery size N (default 1M and 10M vectors,
96-d = the default --subspace_dim):

  exact         the package's exact search: an `exact` index (the float32
                gallery, searched with metrics.top_k_matches, the top-K that
                inference's matching uses). Its top-10 is the ground truth.
  faiss_flat    faiss IndexFlatIP over the normalized gallery: the honest
                exact brute-force baseline of the faiss library itself.
  ivf_flat, ivf_sq8, hnsw
                approximate indexes built with index.build_index, their
                search breadth tuned by the build to recall@10 >= 0.96 on
                1,000 tuning queries (not the measured ones).

Each part runs in a fresh subprocess (its peak RSS is its own); an index is
built in one and loaded and searched in another, so "RSS of loaded index" is
the memory the loaded index takes. Queries/s is a batch of Q queries, k = 10,
searched at once, wall clock, on the machine's cores (2 here, shared with
other jobs: compare the rows of one run, not runs). Exact search is measured
on the first --exact_queries queries (all Q at 1M); recall@10 of every
method is against the package's exact top-10 on those queries.

Data (generated in chunks into a float32 .npy memmap in a temporary
directory, before any timer): an anisotropic Gaussian mixture shaped like
CCA-subspace embeddings. 2,048 clusters with Zipf-skewed sizes; centres from
N(0, diag(s)) with a decaying spectrum s_j = (1 + j)^-0.5 (canonical
components lose variance); inside a cluster, per-cluster per-axis spreads
(gamma-distributed) in a randomly rotated basis. Queries are gallery items
plus noise of half their cluster's spread, as a song queries the videos near
its own.

Usage:
  python bench/bench_index.py                     # N = 1M and 10M
  python bench/bench_index.py --sizes=1000000     # one size
  python bench/bench_index.py --quick             # N = 20,000, smoke test
"""

import contextlib
import dataclasses
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This checkout's package, not another one installed in the environment.
sys.path.insert(0, REPO_ROOT)

from bench import fragments  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402

K = 10
CLUSTERS = 2048
CHUNK = 262_144
WITHIN = 0.35  # cluster spread relative to the spread of the centres
QUERY_NOISE = 0.5  # query noise relative to its cluster's spread
GOALS = {"recall@10": 0.95, "qps_at_1m": 1000, "memory_x": 1.5}


@dataclasses.dataclass(frozen=True)
class IndexBenchConfig:
    """bench_index.py's flags."""

    sizes: tuple[int, ...] = option((1_000_000, 10_000_000),
                                    "Comma-separated gallery sizes.")
    kinds: tuple[str, ...] = option(("ivf_flat", "ivf_sq8", "hnsw"),
                                    "Approximate kinds at sizes up to 1M.")
    large_kinds: tuple[str, ...] = option(
        ("ivf_flat", "ivf_sq8"), "Approximate kinds above 1M (HNSW's build "
        "there takes too long on 2 cores).")
    dim: int = option(96, "Embedding size (the default --subspace_dim).")
    queries: int = option(5000, "Queries searched per method (one batch).")
    exact_queries: int = option(500, "Above 1M, exact search (and recall) on "
                                "this many of the queries.")
    seed: int = option(0, "Seed of the gallery and the queries.")
    work_dir: str = option(tempfile.gettempdir(), "Where the generated "
                           "gallery (N x dim x 4 B) and indexes go while they "
                           "are measured.")
    part: str = option("", "Internal: run this one part (generate, build, "
                       "search, faiss_flat) in this process.")
    work: str = option("", "Internal: the part's directory.")
    n: int = option(0, "Internal: the part's gallery size.")
    kind: str = option("", "Internal: the part's index kind.")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR,
                             "Writes index.md and index.json here.")
    quick: bool = option(False, "N = 20,000 and 500 queries; outputs marked "
                         "quick.")


METHODS = {
    "exact": "exact index: metrics.top_k_matches (ground truth)",
    "faiss_flat": "faiss IndexFlatIP, normalized (exact baseline)",
    "ivf_flat": "index kind ivf_flat (faiss IVF, float32 lists)",
    "ivf_sq8": "index kind ivf_sq8 (faiss IVF, 8-bit codes)",
    "hnsw": "index kind hnsw (faiss HNSW, M=16, float32)",
}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Mixture:
    """The generator of the data above; chunk c is a function of (seed, c)."""

    def __init__(self, dim, seed):
        rng = np.random.default_rng([seed, 0])
        spectrum = (1.0 + np.arange(dim)) ** -0.5
        self.centres = (rng.standard_normal((CLUSTERS, dim))
                        * np.sqrt(spectrum)).astype(np.float32)
        self.spread = (WITHIN * np.sqrt(spectrum)
                       * rng.gamma(2.0, 0.5, (CLUSTERS, dim))).astype(
                           np.float32)
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.rotation = q.astype(np.float32)
        weights = 1.0 / (1.0 + np.arange(CLUSTERS)) ** 0.8
        self.weights = rng.permutation(weights / weights.sum())
        self.dim, self.seed = dim, seed

    def offsets(self, labels, rng, scale=1.0):
        z = rng.standard_normal((len(labels), self.dim), dtype=np.float32)
        z *= self.spread[labels] * scale
        return z @ self.rotation

    def chunk(self, c, rows):
        rng = np.random.default_rng([self.seed, 1, c])
        labels = rng.choice(CLUSTERS, rows, p=self.weights).astype(np.int16)
        return self.centres[labels] + self.offsets(labels, rng), labels


def generate(work, n, dim, seed, num_queries):
    """Writes gallery.npy (memmap), labels, queries.npy, tune.npy."""
    mix = Mixture(dim, seed)
    gallery = np.lib.format.open_memmap(os.path.join(work, "gallery.npy"),
                                        mode="w+", dtype=np.float32,
                                        shape=(n, dim))
    labels = np.empty(n, np.int16)
    for c, start in enumerate(range(0, n, CHUNK)):
        rows = min(CHUNK, n - start)
        gallery[start:start + rows], labels[start:start + rows] = mix.chunk(
            c, rows)
    rng = np.random.default_rng([seed, 2])
    picks = rng.choice(n, 2 * num_queries + 1000, replace=False)
    for name, rows in (("queries", picks[:num_queries]),
                       ("tune", picks[num_queries:num_queries + 1000])):
        rows = np.sort(rows)
        q = np.asarray(gallery[rows]) + mix.offsets(labels[rows], rng,
                                                     QUERY_NOISE)
        np.save(os.path.join(work, f"{name}.npy"), q.astype(np.float32))
    gallery.flush()
    del gallery
    # Ids as inference writes them: strings.
    np.save(os.path.join(work, "ids.npy"), np.arange(n).astype("U8"))


# --------------------------------------------------------------------------
# Parts (each in its own subprocess)


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def part_build(work, kind, seed):
    """Builds one index kind with index.build_index over the memmap."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from yt8m_xmodal import index

    gallery = np.load(os.path.join(work, "gallery.npy"), mmap_mode="r")
    ids = np.load(os.path.join(work, "ids.npy"))
    tune = np.load(os.path.join(work, "tune.npy"))
    rss_before = peak_rss_mb()
    manifest, wall, cpu = _timed(lambda: index.build_index(
        ids, gallery, os.path.join(work, f"index_{kind}"), "bench-model",
        kind=kind, tune_queries=tune, seed=seed))
    files = manifest["files"]
    payload = files.get("index.faiss", files.get("vectors.npy"))["bytes"]
    return dict(build_wall_s=wall, build_cpu_s=cpu, params=manifest["params"],
                tuning=manifest["tuning"], index_bytes=payload,
                ids_bytes=files["ids.npy"]["bytes"],
                build_peak_rss_mb=peak_rss_mb(),
                build_rss_before_mb=rss_before)


def part_search(work, kind, exact_queries):
    """Loads an index and searches the queries (a batch, k = 10)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from yt8m_xmodal import index

    queries = np.load(os.path.join(work, "queries.npy"))
    if kind == "exact":
        queries = queries[:exact_queries]
    before = rss_mb()
    loaded, load_s, _ = _timed(lambda: index.load_index(
        os.path.join(work, f"index_{kind}"),
        expected_fingerprint="bench-model"))
    if kind == "exact":
        # A memmap: pages come in as searched. Read it once so the search
        # times a warm gallery, as the faiss kinds (read whole) have it.
        np.asarray(loaded._backend).sum()  # noqa: SLF001 - warm-up only
    rss_loaded = rss_mb() - before
    loaded.search_rows(queries[:10], K)  # traces/warms; not timed
    (rows, scores), wall, cpu = _timed(lambda: loaded.search_rows(queries, K))
    np.save(os.path.join(work, f"rows_{kind}.npy"), rows[:exact_queries])
    return dict(load_s=load_s, search_wall_s=wall, search_cpu_s=cpu,
                num_queries=len(queries), qps=len(queries) / wall,
                rss_loaded_mb=rss_loaded, peak_rss_mb=peak_rss_mb())


def part_faiss_flat(work, exact_queries):
    """faiss IndexFlatIP over the normalized gallery, added in chunks."""
    import faiss

    gallery = np.load(os.path.join(work, "gallery.npy"), mmap_mode="r")
    queries = np.load(os.path.join(work, "queries.npy"))[:exact_queries]
    n, dim = gallery.shape
    before = rss_mb()

    def build():
        flat = faiss.IndexFlatIP(dim)
        for start in range(0, n, CHUNK):
            x = np.asarray(gallery[start:start + CHUNK], np.float32)
            flat.add(x / np.linalg.norm(x, axis=1, keepdims=True))
        return flat
    flat, build_wall, build_cpu = _timed(build)
    rss_loaded = rss_mb() - before
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    flat.search(q[:10], K)
    (_, rows), wall, cpu = _timed(lambda: flat.search(q, K))
    np.save(os.path.join(work, "rows_faiss_flat.npy"), rows)
    return dict(build_wall_s=build_wall, build_cpu_s=build_cpu,
                index_bytes=n * dim * 4, search_wall_s=wall,
                search_cpu_s=cpu, num_queries=len(q), qps=len(q) / wall,
                rss_loaded_mb=rss_loaded, peak_rss_mb=peak_rss_mb())


def run_part(args):
    if args.part == "generate":
        generate(args.work, args.n, args.dim, args.seed, args.queries)
        return {"peak_rss_mb": peak_rss_mb()}
    if args.part == "build":
        return part_build(args.work, args.kind, args.seed)
    if args.part == "search":
        return part_search(args.work, args.kind, args.exact_queries)
    if args.part == "faiss_flat":
        return part_faiss_flat(args.work, args.exact_queries)
    raise ValueError(f"unknown part {args.part!r}")


def spawn(part, args, work, n, kind="", exact_queries=0):
    cmd = [sys.executable, os.path.abspath(__file__), f"--part={part}",
           f"--work={work}", f"--n={n}", f"--dim={args.dim}",
           f"--seed={args.seed}", f"--queries={args.queries}",
           f"--kind={kind}", f"--exact_queries={exact_queries}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          cwd=REPO_ROOT)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"part {part} {kind} at n={n} failed")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  n={n:>9,d} {part:10s} {kind:10s} "
          f"{time.perf_counter() - start:7.1f} s  "
          f"peak RSS {figures.get('peak_rss_mb', figures.get('build_peak_rss_mb', 0)):6.0f} MB",
          flush=True)
    return figures


def recall(work, kind, truth):
    from yt8m_xmodal import index
    rows = np.load(os.path.join(work, f"rows_{kind}.npy"))[:len(truth)]
    return index.recall_at_k(rows, truth)


def bench_size(args, n, tmp_root, report, kinds):
    """Measures exact search, faiss_flat and the index `kinds` at one size;
    calls report() after each row."""
    work = tempfile.mkdtemp(dir=tmp_root, prefix=f"n{n}_")
    exact_q = min(args.queries, args.exact_queries if n > 1_000_000
                  else args.queries)
    print(f"# N = {n:,}: generating", flush=True)
    spawn("generate", args, work, n)
    rows, raw = [], n * args.dim * 4
    for method in ["exact", "faiss_flat", *kinds]:
        if method == "faiss_flat":
            row = spawn("faiss_flat", args, work, n, exact_queries=exact_q)
        else:
            row = spawn("build", args, work, n, method)
            row.update(spawn("search", args, work, n, method,
                             exact_queries=exact_q))
            # Free the disk (10M: ~4 GB an index) once searched.
            shutil.rmtree(os.path.join(work, f"index_{method}"))
        truth = np.load(os.path.join(work, "rows_exact.npy"))
        row.update(method=method, n=n, dim=args.dim,
                   recall_queries=int(len(truth)),
                   memory_x_raw=row["index_bytes"] / raw)
        row["recall@10"] = recall(work, method, truth)
        row["x_exact_qps"] = row["qps"] / (rows[0] if rows else row)["qps"]
        rows.append(row)
        report(row)
    shutil.rmtree(work)
    return rows


def breadth(row):
    params = row.get("params") or {}
    for name in ("nprobe", "efSearch"):
        if name in params:
            extra = f", nlist={params['nlist']}" if "nlist" in params else ""
            return f"{name}={params[name]}{extra}"
    return "-"


def main(argv=None):
    args = fragments.parse_flags(IndexBenchConfig, __doc__, argv)
    if args.part:
        print(json.dumps(run_part(args), default=float))
        return
    if args.quick:
        args = dataclasses.replace(args, sizes=(20000,), queries=500)
    sizes = list(args.sizes)

    load_start = os.getloadavg()
    print(f"# bench_index: sizes {sizes}, d={args.dim}, {args.queries} "
          f"queries, k={K}, {os.cpu_count()} CPUs, load average at start "
          f"{load_start[0]:.1f}")
    rows = []

    def report(row):
        rows.append(row)
        write_fragment(args, sizes, rows, load_start, final=False)

    with tempfile.TemporaryDirectory(dir=args.work_dir,
                                     prefix="bench_index_") as tmp:
        for n in sizes:
            bench_size(args, n, tmp, report,
                       args.kinds if n <= 1_000_000 else args.large_kinds)
    write_fragment(args, sizes, rows, load_start, final=True)


def write_fragment(args, sizes, rows, load_start, final):
    """The table so far; rewritten after every row, so an interrupted run
    still leaves what it measured (marked as incomplete)."""
    load_now = os.getloadavg()
    printed = fragments.capture_stdout() if final else None
    lines = ["", "| N | method | what | search breadth | recall@10 vs exact | "
             "queries/s | x exact q/s | index MB | x raw float32 | RSS loaded "
             "MB | build s (wall) | build s (CPU) |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['method']} | {METHODS[r['method']]} | "
            f"{breadth(r)} | {r['recall@10']:.4f} | {r['qps']:,.0f} | "
            f"{r['x_exact_qps']:.2f} | {r['index_bytes'] / 2**20:,.0f} | "
            f"{r['memory_x_raw']:.2f} | {r['rss_loaded_mb']:,.0f} | "
            f"{r['build_wall_s']:.1f} | {r['build_cpu_s']:.1f} |")
    lines.append("")
    for r in rows:
        if r["method"] in ("exact", "faiss_flat"):
            lines.append(f"- N={r['n']:,} {r['method']}: queries/s on "
                         f"{r['num_queries']:,} queries; recall of every "
                         f"method on the first {r['recall_queries']:,}")
        if r.get("tuning"):
            t = r["tuning"]
            lines.append(
                f"- N={r['n']:,} {r['method']}: the build tuned "
                f"{t['param']}={t['value']} (recall@10 {t['recall@10']:.4f} "
                f"on {t['num_queries']} tuning queries); ids file "
                f"{r['ids_bytes'] / 2**20:,.0f} MB beside the index")
    if not final:
        done = sorted({r["n"] for r in rows})
        lines.append(f"\n**INCOMPLETE RUN: rows so far; sizes {sizes} were "
                     f"asked, {done} reached.**")
    lines.append(f"\nload average (1 min) at start {load_start[0]:.1f}, now "
                 f"{load_now[0]:.1f} on {os.cpu_count()} CPUs shared with other "
                 "jobs: compare rows within this run.")
    text = "\n".join(lines)
    if final:
        print(text)
        text = printed.stop()
    figures = {"sizes": sizes, "dim": args.dim, "k": K,
               "queries": args.queries, "exact_queries": args.exact_queries,
               "clusters": CLUSTERS, "goals": GOALS, "complete": final,
               "rows": rows, "load_average_start": load_start[0]}
    if final:
        fragments.write(args.output_dir, "index", text, figures, args.quick)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            fragments.write(args.output_dir, "index", text, figures,
                            args.quick)


if __name__ == "__main__":
    main()
