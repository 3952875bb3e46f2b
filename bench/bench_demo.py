r"""README command (1), timed: `train.py` then `eval.py` on the demo data.

Runs the two commands exactly as README's quick start does (no flags beyond
--train_dir, a fresh demo cache so the data generation is counted), for one
or more source trees, one right after the other, and prints for each: wall
seconds, user and system CPU seconds (the children's rusage), the system
share of the CPU, minor page faults, context switches, the steps trained,
the best step, and the test Recall@10 in both directions.

    python bench/bench_demo.py --tree=. --baseline_ref=7f721e2
    python bench/bench_demo.py --tree=.,../other --train_flags=--max_steps=6

Each --tree (a comma-separated list) is a checkout of the package (its
train.py and eval.py run with PYTHONPATH set to it); --baseline_ref adds a
checkout of that git commit (`git archive`), run first. The machine's load average is printed before and
after each run: the figures are only comparable between trees of the same
call. --train_flags (comma-separated) go to every train.py, e.g. a step cap
for a quick look at where the CPU goes; the README figure uses none.
"""

import dataclasses
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
from bench import fragments  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402



@dataclasses.dataclass(frozen=True)
class DemoBenchConfig:
    """bench_demo.py's flags."""

    tree: tuple[str, ...] = option((), "Package checkouts, comma-separated, "
                                   "run one after the other to compare.")
    work_dir: str = option("/tmp/bench_demo", "Run directories and demo "
                           "caches go here.")
    baseline_ref: str = option("", "A git commit to run first, as the "
                               "baseline.")
    train_flags: tuple[str, ...] = option((), "Comma-separated extra "
                                          "train.py flags.")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR, "Where the "
                             "demo.md / demo.json fragment goes.")
    keep: bool = option(False, "Keep the run directories (caches, logs).")


_RECALL_ROW = re.compile(r"^(audio_to_video|video_to_audio)\s+(.*)$", re.M)


def _load():
    return os.getloadavg()[0]


def _run(cmd, env, log_path):
    """Runs `cmd`; returns (wall, rusage delta of the finished child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    with open(log_path, "w") as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {rc}); see {log_path}")
    delta = {k: getattr(after, k) - getattr(before, k)
             for k in ("ru_utime", "ru_stime", "ru_minflt", "ru_majflt",
                       "ru_nvcsw", "ru_nivcsw")}
    return wall, delta


def _test_recall_at_10(eval_log):
    """Recall@10 per direction from eval.py's table."""
    text = open(eval_log).read()
    header = next(line for line in text.splitlines()
                  if line.startswith("direction"))
    column = header.split().index("R@10")
    gallery = re.search(r"against a gallery of (\d+)", text).group(1)
    return int(gallery), {m.group(1): float(m.group(2).split()[column - 1])
                          for m in _RECALL_ROW.finditer(text)}


def bench_tree(tree, work_dir, python, train_flags=()):
    tree = os.path.abspath(tree)
    name = os.path.basename(tree.rstrip("/")) or "tree"
    run_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=work_dir)
    train_dir = os.path.join(run_dir, "train")
    env = dict(os.environ, PYTHONPATH=tree,
               YT8M_XMODAL_CACHE=os.path.join(run_dir, "cache"))
    load_before = _load()
    train = [python, os.path.join(tree, "train.py"), "--start_new_model",
             f"--train_dir={train_dir}", *train_flags]
    evaluate = [python, os.path.join(tree, "eval.py"),
                f"--train_dir={train_dir}", "--run_once"]
    t_wall, t_use = _run(train, env, os.path.join(run_dir, "train.log"))
    e_wall, e_use = _run(evaluate, env, os.path.join(run_dir, "eval.log"))
    result = json.load(open(os.path.join(train_dir, "train_result.json")))
    gallery, recall = _test_recall_at_10(os.path.join(run_dir, "eval.log"))
    user = t_use["ru_utime"] + e_use["ru_utime"]
    system = t_use["ru_stime"] + e_use["ru_stime"]
    row = {
        "tree": tree, "run_dir": run_dir,
        "load_before": round(load_before, 2), "load_after": round(_load(), 2),
        "wall_s": round(t_wall + e_wall, 1), "train_wall_s": round(t_wall, 1),
        "user_s": round(user, 1), "sys_s": round(system, 1),
        "sys_share": round(system / (user + system), 3),
        "minor_faults": t_use["ru_minflt"] + e_use["ru_minflt"],
        "context_switches": (t_use["ru_nvcsw"] + e_use["ru_nvcsw"]
                             + t_use["ru_nivcsw"] + e_use["ru_nivcsw"]),
        "steps": result["step"], "best_step": result["best_step"],
        "examples_per_s": round(result["examples_per_second"], 1),
        "test_gallery": gallery,
        "test_r10_a2v": recall.get("audio_to_video"),
        "test_r10_v2a": recall.get("video_to_audio"),
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv=None):
    args = fragments.parse_flags(DemoBenchConfig, __doc__, argv)
    trees = list(args.tree)
    if not trees:
        raise SystemExit("bench_demo.py: error: give at least one --tree")
    os.makedirs(args.work_dir, exist_ok=True)
    if args.baseline_ref:
        base = os.path.join(args.work_dir, f"ref-{args.baseline_ref}")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        archive = subprocess.run(["git", "archive", args.baseline_ref],
                                 cwd=trees[0], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        trees.insert(0, base)
    rows = [bench_tree(tree, args.work_dir, sys.executable, args.train_flags)
            for tree in trees]
    printed = fragments.capture_stdout()
    print("\n| tree | wall s | user s | sys s | sys % | minor faults | "
          "steps | best step | test R@10 a→v | test R@10 v→a | gallery | "
          "load before/after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['tree']} | {r['wall_s']:.0f} | {r['user_s']:.0f} | "
              f"{r['sys_s']:.0f} | {100 * r['sys_share']:.1f} | "
              f"{r['minor_faults']:,} | {r['steps']} | {r['best_step']} | "
              f"{r['test_r10_a2v']:.3f} | {r['test_r10_v2a']:.3f} | "
              f"{r['test_gallery']} | {r['load_before']:.1f} / "
              f"{r['load_after']:.1f} |")
    markdown = printed.stop()
    fragments.write(args.output_dir, "demo", markdown, {"rows": rows},
                    quick=False)
    print(f"{'tree':<28}{'wall s':>8}{'user s':>8}{'sys s':>8}{'sys %':>7}"
          f"{'steps':>7}{'best':>6}{'R@10 a2v':>10}{'R@10 v2a':>10}"
          f"{'gallery':>9}{'load':>11}")
    for r in rows:
        print(f"{r['tree'][-28:]:<28}{r['wall_s']:>8.0f}{r['user_s']:>8.0f}"
              f"{r['sys_s']:>8.0f}{100 * r['sys_share']:>7.1f}{r['steps']:>7}"
              f"{str(r['best_step']):>6}{r['test_r10_a2v']:>10.3f}"
              f"{r['test_r10_v2a']:>10.3f}{r['test_gallery']:>9}"
              f"{r['load_before']:>5.2f}/{r['load_after']:.2f}")
    if not args.keep:
        for r in rows:
            shutil.rmtree(r["run_dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
