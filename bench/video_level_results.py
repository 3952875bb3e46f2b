r"""Cross-modal retrieval on real YouTube-8M video-level features, through the
package's own commands (README.md, "Using real YouTube-8M data").

Every figure comes from `$YT8M_DATA_DIR/video` and these commands, run as
subprocesses exactly as a user types them:

1. `python -m yt8m_xmodal.cli.subset --noframe_features` cuts, into --work_dir
   (never into the repo):
   * train: validate0000-0079, every label (`--label_indices=0,...,3861`),
     silent audio dropped, the id-hash train split (`--split_fractions=0.9,0.1,0`);
   * validation (early stopping only): the music videos (the tool's default
     labels) of the same shards' validate split;
   * test: the music videos of validate0080-0099 (`--split_fractions=0,0,1`),
     touched only by the final scoring.
2. `train.py --noframe_features` with no other model or schedule flag: the
   video-level recipe (config.VIDEO_LEVEL_RECIPE), stopped early on the
   validation split; and `train.py --model=LinearCcaModel` on the same
   records, the linear-CCA floor (no training).
3. `inference.py --embeddings_file` embeds the test set with each export.

The scoring reads those files: `bench.retrieval_report.gallery_mean` over
1,000-video galleries (mean of 5 seeded draws) and the whole test set, ranked
as each model's model_flags.json says (`csls_k`: CSLS within the searched
gallery, or plain cosine).

    python bench/video_level_results.py --work_dir=/tmp/yt8m_video_level
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
from bench import fragments  # noqa: E402
from bench.retrieval_report import (DIRECTIONS, GALLERY_DRAWS,  # noqa: E402
                                    gallery_mean, markdown_table,
                                    selection_score, write_report)
from yt8m_xmodal import features  # noqa: E402
from yt8m_xmodal import rundir  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402

log = logging.getLogger("bench")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_VIDEO_DIR = os.path.join(fragments.DATA_DIR, "video")
GALLERY_SIZE = 1000
# The goal at a 1,000-video gallery, both directions.
GOAL_RECALL_AT_10 = 0.40
GOAL_MEDIAN_RANK = 18
ALL_LABELS = ",".join(str(i) for i in range(features.NUM_CLASSES))


def shard_pattern(video_dir, first, last):
    """Comma-separated paths of validate{first..last} (inclusive)."""
    return ",".join(os.path.join(video_dir, f"validate{i:04d}.tfrecord")
                    for i in range(first, last + 1))


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Where the flow reads and works: the flags of every script that runs
    it (this one, learning_curve.py, stopping_rule.py)."""

    video_dir: str = option(SHARED_VIDEO_DIR, "The real YT8M video-level "
                            "shards (validate0000..0099).")
    work_dir: str = option("/tmp/yt8m_video_level", "Subsets, runs and "
                           "embeddings go here (reused when present).")


@dataclasses.dataclass(frozen=True)
class VideoLevelBenchConfig(FlowConfig):
    """video_level_results.py's flags."""

    output_dir: str = option(os.path.join(REPO_ROOT, "bench", "results"),
                             "Writes video_level.md and .json here.")
    reuse_runs: bool = option(False, "Reuse finished train_dirs in "
                              "--work_dir.")
    ablations: bool = option(True, "Also train the ablations, each one part "
                             "of the recipe off (--noablations: not).")


def run(argv, log_path):
    """Runs one command of the flow; its output goes to `log_path`."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    start = time.time()
    with open(log_path, "w") as out:
        done = subprocess.run(argv, cwd=REPO_ROOT, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"command failed ({done.returncode}): "
                         f"{' '.join(argv)}\n{tail}")
    return time.time() - start


def subset(pattern, output_dir, *flags):
    """`python -m yt8m_xmodal.cli.subset --noframe_features` (reused when its
    manifest exists)."""
    if os.path.exists(os.path.join(output_dir, "manifest.json")):
        return output_dir
    run([sys.executable, "-m", "yt8m_xmodal.cli.subset", "--noframe_features",
         f"--input_data_pattern={pattern}", f"--output_dir={output_dir}",
         "--num_shards=2", "--overwrite", *flags],
        output_dir.rstrip("/") + ".log")
    return output_dir


def train(train_dir, train_pattern, validate_pattern, *flags, reuse=False):
    """`train.py --noframe_features ...`; returns train_result.json."""
    result_path = os.path.join(train_dir, rundir.TRAIN_RESULT_FILE)
    if not (reuse and os.path.exists(result_path)):
        argv = [sys.executable, "train.py", "--noframe_features",
                f"--train_data_pattern={train_pattern}",
                f"--train_dir={train_dir}", "--start_new_model", *flags]
        if validate_pattern:
            argv.append(f"--validate_data_pattern={validate_pattern}")
        run(argv, train_dir.rstrip("/") + ".log")
    with open(result_path) as f:
        return json.load(f)


def embed(train_dir, pattern, npz):
    """`inference.py --embeddings_file`: test embeddings of the export."""
    run([sys.executable, "inference.py", f"--train_dir={train_dir}",
         f"--input_data_pattern={pattern}", f"--embeddings_file={npz}"],
        npz + ".log")
    with np.load(npz) as f:
        ids = np.asarray(f["ids"]).astype(str)
        # Rows sorted by id: the seeded gallery draws depend only on the set
        # of videos.
        order = np.argsort(ids, kind="stable")
        return ids[order], f["audio"][order], f["video"][order]


def score(embeddings, csls_k, sizes=(GALLERY_SIZE, None)):
    """{"1000": gallery_mean, "full": ...} of (ids, audio, video)."""
    _, audio, video = embeddings
    out = {}
    for size in sizes:
        n = len(audio) if size is None else size
        out["full" if size is None else str(size)] = gallery_mean(
            audio, video, n, csls_k=csls_k)
    return out


def model_csls_k(train_dir):
    return rundir.read_model_flags(train_dir).csls_k


def meets_goal(result):
    return all(result[d]["recall@10"] >= GOAL_RECALL_AT_10
               and result[d]["median_rank"] <= GOAL_MEDIAN_RANK
               for d in DIRECTIONS)


def build_subsets(video_dir, work_dir, last_train_shard=79):
    """The train / validation / test subsets of the flow (see module doc)."""
    train_shards = shard_pattern(video_dir, 0, last_train_shard)
    tag = f"{last_train_shard + 1:03d}"
    return {
        "train": os.path.join(subset(
            train_shards, os.path.join(work_dir, f"all_{tag}"),
            f"--label_indices={ALL_LABELS}", "--split_fractions=0.9,0.1,0"),
            "train-*.tfrecord"),
        "validate": os.path.join(subset(
            train_shards, os.path.join(work_dir, f"music_{tag}"),
            "--split_fractions=0.9,0.1,0"), "validate-*.tfrecord"),
        "test": os.path.join(subset(
            shard_pattern(video_dir, 80, 99),
            os.path.join(work_dir, "test_music"),
            "--split_fractions=0,0,1"), "test-*.tfrecord"),
    }


# The systems: (name, train.py flags, whether it uses the validation split).
README_FLOW = ("README flow: train.py --noframe_features", (), True)
LINEAR_CCA = ("train.py --noframe_features --model=LinearCcaModel "
              "--linear_cca_ridge=3", ("--model=LinearCcaModel",
                                       "--linear_cca_ridge=3"), False)
LINEAR_CCA_PLAIN = ("train.py --noframe_features --model=LinearCcaModel "
                    "--label_weight=1 --csls_k=0",
                    ("--model=LinearCcaModel", "--label_weight=1",
                     "--csls_k=0"), False)
# Ablations, each one part of the recipe off, decided on validation.
ABLATIONS = (
    ("recipe without the linear-CCA input projection and skip",
     ("--cca_input_dim=0", "--nolinear_skip"), True),
    ("recipe without music weighting", ("--label_weight=1",), True),
)


def evaluate(train_dir, pattern, csls_k, output_json):
    """`eval.py --run_once` on `pattern`; returns its metrics.json."""
    run([sys.executable, "eval.py", f"--train_dir={train_dir}",
         f"--eval_data_pattern={pattern}", "--run_once",
         f"--csls_k={csls_k}", f"--output_json={output_json}"],
        output_json + ".log")
    with open(output_json) as f:
        return json.load(f)


def run_system(name, flags, validated, data, work_dir, key, reuse=False):
    """Trains one system, scores validation (eval.py) and test (inference.py
    embeddings); returns its record."""
    train_dir = os.path.join(work_dir, "runs", key)
    result = train(train_dir, data["train"],
                   data["validate"] if validated else "", *flags, reuse=reuse)
    # train.py's own wall time (subspace fits, validation and exports
    # included), also for a reused run.
    seconds = result["wall_seconds"]
    csls_k = model_csls_k(train_dir)
    record = {"flags": list(flags), "train_seconds": seconds,
              "train_result": {k: result.get(k) for k in (
                  "step", "best_step", "stop_reason", "wall_seconds")},
              "csls_k": csls_k, "validation": {}, "test": {}}
    embeddings = embed(train_dir, data["test"],
                       os.path.join(work_dir, "runs", key + "_test.npz"))
    for k in sorted({csls_k, 0}):
        tag = f"csls_k={k}"
        val = evaluate(train_dir, data["validate"], k,
                       os.path.join(work_dir, "runs", f"{key}_val_{k}.json"))
        record["validation"][tag] = selection_score(val)
        record["test"][tag] = score(embeddings, k)
    record["num_test"] = len(embeddings[0])
    log.info("%s: validation %s, test R@10 %s", name, record["validation"],
             {t: selection_score(r[str(GALLERY_SIZE)])
              for t, r in record["test"].items()})
    return record


def main(argv=None):
    args = fragments.parse_flags(VideoLevelBenchConfig, __doc__, argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = build_subsets(args.video_dir, args.work_dir)
    systems = [README_FLOW, LINEAR_CCA, LINEAR_CCA_PLAIN]
    if args.ablations:
        systems += list(ABLATIONS)
    record = {}
    for i, (name, flags, validated) in enumerate(systems):
        record[name] = run_system(name, flags, validated, data,
                                  args.work_dir, f"system{i}_080",
                                  reuse=args.reuse_runs)
    print(report(record, args.output_dir, data))


def report(record, output_dir, data):
    rows_1k, rows_full, lines = [], [], []
    curves = {}
    for name, r in record.items():
        for tag, test in r["test"].items():
            label = name if tag == f"csls_k={r['csls_k']}" else (
                f"{name}, scored without CSLS")
            cells = [f"{r['validation'][tag]:.3f}",
                     f"{r['train_seconds']:.0f}"]
            rows_1k.append((label, test[str(GALLERY_SIZE)], cells))
            rows_full.append((label, test["full"], cells))
    readme = record[README_FLOW[0]]
    best = readme["test"][f"csls_k={readme['csls_k']}"][str(GALLERY_SIZE)]
    n_test = readme["num_test"]
    lines = [
        "# Video-level cross-modal retrieval (YouTube-8M, real features), "
        "through the package's commands", "",
        "train: validate0000-0079, every label, silent audio dropped, the "
        "subset tool's id-hash train split (90 %); validation (early "
        "stopping, every choice): the music videos of the same shards' "
        f"validate split; test: the {n_test} music videos of "
        "validate0080-0099. Systems are train.py command lines (all with "
        "`--noframe_features`, the video-level recipe for every flag not "
        "shown); test embeddings come from `inference.py "
        "--embeddings_file`.", "",
        markdown_table(rows_1k, f"Galleries of {GALLERY_SIZE} test videos, "
                                f"mean of {GALLERY_DRAWS} seeded draws",
                       extra_columns=("val R@10", "train s"),
                       rank_columns=("median_rank", "mrr")), "",
        markdown_table(rows_full, f"Whole music test set ({n_test} videos)",
                       extra_columns=("val R@10", "train s"),
                       rank_columns=("median_rank", "mrr")), "",
        "`val R@10`: mean of both directions on the validation split "
        "(eval.py), the figure each choice was made on. "
        f"README flow: stopped at step {readme['train_result']['step']}, "
        f"best step {readme['train_result']['best_step']} "
        f"({readme['train_result']['stop_reason']}).", "",
        f"Goal (R@10 >= {GOAL_RECALL_AT_10}, MedR <= {GOAL_MEDIAN_RANK} both "
        f"ways, 1,000-video galleries): "
        f"{'met' if meets_goal(best) else 'NOT met'} by the README flow.",
    ]
    record["commands"] = commands_text(data)
    record["command"] = fragments.command_line()
    record["date"] = fragments.utc_now()
    record["machine"] = fragments.machine_info()
    lines += ["", "Commands (as run, paths under --work_dir):", "", "```",
              record["commands"], "```"]
    return write_report(output_dir, "video_level", lines, record, curves,
                        "YT8M video level, music test subset")


def commands_text(data):
    return "\n".join([
        "python -m yt8m_xmodal.cli.subset --noframe_features "
        "--input_data_pattern=<validate0000..0079> "
        "--label_indices=0,1,...,3861 --split_fractions=0.9,0.1,0 "
        "--output_dir=all_080",
        "python -m yt8m_xmodal.cli.subset --noframe_features "
        "--input_data_pattern=<validate0000..0079> "
        "--split_fractions=0.9,0.1,0 --output_dir=music_080",
        "python -m yt8m_xmodal.cli.subset --noframe_features "
        "--input_data_pattern=<validate0080..0099> "
        "--split_fractions=0,0,1 --output_dir=test_music",
        "python train.py --noframe_features "
        "--train_data_pattern='all_080/train-*.tfrecord' "
        "--validate_data_pattern='music_080/validate-*.tfrecord' "
        "--train_dir=run --start_new_model",
        "python inference.py --train_dir=run "
        "--input_data_pattern='test_music/test-*.tfrecord' "
        "--embeddings_file=test.npz",
    ])


if __name__ == "__main__":
    main()
