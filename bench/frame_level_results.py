r"""Cross-modal retrieval on the built-in synthetic frame-level data.

The data is the package's own generator
(`python -m yt8m_xmodal.tools.synthetic`), large enough for the comparison
(default 6,250 videos: 5,000 train / 625 validate / 625 test); its
`dataset.json` carries the Bayes-optimal oracle and the frame-count side
channel for the test split.

Every model is trained and scored with the user-facing commands, exactly as
printed in the report:

    python train.py --train_data_pattern=.../train-*.tfrecord \
        --validate_data_pattern=.../validate-*.tfrecord --model=M --loss=L ...
    python eval.py --run_once --eval_data_pattern=.../test-*.tfrecord ...
    python inference.py ... --embeddings_file=test.npz   (main model: plot)

so the figures are those a user gets from the package defaults plus the
flags shown (`--num_epochs`). The figures are read from the files the
commands write: train.py's `train_dir/train_result.json`, eval.py's
`--output_json` and inference.py's `--embeddings_file`; their printed output
is only kept in a log beside the run. The baseline "linear CCA on mean
features" is the package's `subspace.fit_linear_cca` on the train split's
dequantized per-video means, with the ridge and the number of components
chosen on validate (`select_mean_linear_cca`).

    python bench/frame_level_results.py --work_dir=/tmp/yt8m_frame_level \
        --output_dir=bench/results

prints the markdown table and writes `frame_level.{md,json}` and the
recall-vs-gallery-size plot `frame_level_recall_vs_gallery.png` under
--output_dir. Runs and data stay in --work_dir (reused when present).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from bench.retrieval_report import (DIRECTIONS, gallery_mean,  # noqa: E402
                                    markdown_table, recall_vs_gallery_size,
                                    selection_score, write_report)
from yt8m_xmodal import metrics  # noqa: E402
from yt8m_xmodal import readers  # noqa: E402
from yt8m_xmodal import subspace  # noqa: E402
from yt8m_xmodal.tools import synthetic  # noqa: E402

def _flags(model, loss, *extra):
    """train.py flags of one row."""
    return [f"--model={model}", f"--loss={loss}", *extra]


# (name, train.py flags). The first is the main model (the method with the
# package's default objective). Every model is trained with both objectives
# (each with train.py's defaults, e.g. deep CCA's ridge), so each comparison
# between models holds the loss fixed. The chunk model with a mean over
# chunks instead of attention shows what attention adds.
_MODELS = (("ChunkAttentionModel", "ChunkAttentionModel", ()),
           ("ChunkAttentionModel --attention=mean", "ChunkAttentionModel",
            ("--attention=mean",)),
           ("FrameLstmModel", "FrameLstmModel", ()),
           ("MeanPoolModel", "MeanPoolModel", ()))
SYSTEMS = tuple(
    (f"{name}, {loss}", _flags(model, loss, *extra))
    for name, model, extra in _MODELS
    for loss in ("infonce", "dcca")) + (
    # The defaults are the chunk model's; a mean-pooled vector carries much
    # less, and this is MeanPoolModel with the subspace size that linear
    # CCA on means picks on validate.
    ("MeanPoolModel, dcca, 32-d, subspace 16",
     _flags("MeanPoolModel", "dcca", "--embedding_dim=32",
            "--subspace_dim=16")),)
# The experiment's size, as in its published run (BENCHMARKS.md).
DEFAULT_NUM_VIDEOS = 6250
DEFAULT_NUM_EPOCHS = 15
LINEAR_CCA = "linear CCA on mean features"
GALLERY_SIZES = (100, 200, 400)
# The keys of train_result.json this report uses.
TRAIN_RESULT_KEYS = ("step", "wall_seconds", "examples", "step_seconds",
                     "examples_per_second")


def ensure_data(data_dir, num_videos, quick):
    info_path = os.path.join(data_dir, "dataset.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if (info["num_videos"] == num_videos and info["generator_version"]
                == synthetic.GENERATOR_VERSION):
            return info
    # Short videos in quick mode keep the smoke run small.
    extra = ({"max_frames": 90, "min_frames": 30} if quick else {})
    return synthetic.generate_dataset(data_dir, num_videos=num_videos,
                                      num_shards=8, **extra)


def mean_features(pattern):
    """Per-video means of the dequantized frames, ids sorted."""
    reader = readers.YT8MFrameFeatureReader()
    ids, audio, video = [], [], []
    for batch in readers.iterate(reader.dataset(pattern, batch_size=256),
                                 pattern):
        n = batch["num_frames"].numpy().astype(np.float64)[:, None]
        ids.extend(x.decode() for x in batch["id"].numpy())
        audio.append(batch["audio"].numpy().sum(1) / n)
        video.append(batch["video"].numpy().sum(1) / n)
    order = np.argsort(ids)
    return (np.asarray(ids)[order], np.concatenate(audio)[order],
            np.concatenate(video)[order])


def linear_cca_embeddings(model, audio, video, num_components):
    """Unit-norm top canonical variates of both views, float64.

    model: a fitted `subspace.LinearCCA` with at least `num_components`
    directions (as `select_mean_linear_cca` returns).
    """
    embeddings = []
    for project, x in ((model.project_audio, audio),
                       (model.project_video, video)):
        e = project(np.asarray(x, np.float64)).numpy()[:, :num_components]
        embeddings.append(e / (np.linalg.norm(e, axis=1, keepdims=True)
                               + 1e-12))
    return tuple(embeddings)


def select_mean_linear_cca(means, ridges=(1e-3, 1e-2, 1e-1, 1.0),
                           components=(8, 16, 32, 64)):
    """Linear CCA on mean features (`subspace.fit_linear_cca`): fit on train,
    choose on validate.

    means: {split: (audio [N, Da], video [N, Dv])}, with "train" and
    "validate". Each ridge (r1 = r2, relative as in `subspace.LinearCCA`) is
    fitted once; the ridge and the number of top canonical components are
    chosen by validate Recall@10 (audio to video, cosine similarity).

    Returns:
      (ridge, number of components, fitted `subspace.LinearCCA` for
      `linear_cca_embeddings`).
    """
    train_audio, train_video = means["train"]
    largest = min(max(components), np.shape(train_audio)[1],
                  np.shape(train_video)[1])
    best = None
    for ridge in ridges:
        model = subspace.fit_linear_cca(train_video, train_audio, largest,
                                        r1=ridge, r2=ridge)
        for k in components:
            k = min(k, largest)
            a, v = linear_cca_embeddings(model, *means["validate"], k)
            ranks = metrics.true_pair_ranks_of_scores(
                lambda start, stop: a[start:stop] @ v.T, len(a),
                chunk_size=512)
            r10 = metrics.rank_metrics(ranks, (10,))["recall@10"]
            if best is None or r10 > best[0]:
                best = (r10, ridge, k, model)
    return best[1:]


def linear_cca_on_means(data_dir):
    """The mean-pooled baseline: test (audio, video) embeddings, seconds."""
    start = time.time()
    means = {}
    for split in ("train", "validate", "test"):
        _, audio, video = mean_features(
            os.path.join(data_dir, f"{split}-*.tfrecord"))
        means[split] = (audio, video)
    ridge, k, model = select_mean_linear_cca(means)
    audio, video = linear_cca_embeddings(model, *means["test"], k)
    return (audio.astype(np.float32), video.astype(np.float32),
            time.time() - start, f"k={k}, ridge={ridge}")


def run_command(args, log_path, reuse=False, outputs=()):
    """Runs a package command, its output to `log_path` (for people only).

    With `reuse`, a command that already succeeded with the same command
    line (recorded beside its log) and whose `outputs` files all still exist
    is not run again. train.py --start_new_model wipes
    the train dir, so a retrained model's eval outputs are gone and the eval
    reruns even though its own command line is unchanged.
    """
    shown = " ".join(_shown(args))
    done_path = log_path + ".command"
    if (reuse and os.path.exists(done_path)
            and all(os.path.exists(p) for p in outputs)):
        with open(done_path) as f:
            if f.read() == shown:
                return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                          text=True)
    with open(log_path, "w") as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"{shown} failed (exit {proc.returncode}); see "
                           f"{log_path}")
    with open(done_path, "w") as f:
        f.write(shown)


def read_train_result(run_dir):
    """The figures train.py wrote to `run_dir/train_result.json`."""
    path = os.path.join(run_dir, "train_result.json")
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{path}: no readable training result ({e})") from e
    missing = [k for k in TRAIN_RESULT_KEYS if k not in result]
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(missing)}")
    return {k: result[k] for k in TRAIN_RESULT_KEYS}


def train_and_score(flags, data_dir, run_dir, num_epochs, main, reuse=False):
    """train.py, eval.py (and inference.py for the main model)."""
    train_cmd = [sys.executable, "train.py",
                 f"--train_data_pattern={data_dir}/train-*.tfrecord",
                 f"--validate_data_pattern={data_dir}/validate-*.tfrecord",
                 f"--train_dir={run_dir}", "--start_new_model",
                 f"--num_epochs={num_epochs}", *flags]
    run_command(train_cmd, run_dir + ".train.log", reuse,
                [os.path.join(run_dir, "train_result.json")])
    trained = read_train_result(run_dir)
    metrics_path = os.path.join(run_dir, "test_metrics.json")
    eval_cmd = [sys.executable, "eval.py", f"--train_dir={run_dir}",
                f"--eval_data_pattern={data_dir}/test-*.tfrecord",
                "--run_once", f"--output_json={metrics_path}"]
    run_command(eval_cmd, run_dir + ".eval.log", reuse, [metrics_path])
    with open(metrics_path) as f:
        result = json.load(f)
    with open(os.path.join(run_dir, "model_flags.json")) as f:
        model_flags = json.load(f)
    record = {"train_command": " ".join(_shown(train_cmd)),
              "eval_command": " ".join(_shown(eval_cmd)),
              "model_flags": model_flags, "steps": trained["step"],
              "wall_seconds": trained["wall_seconds"],
              "examples": trained["examples"],
              "step_seconds": trained["step_seconds"],
              "examples_per_second": trained["examples_per_second"],
              "test": result}
    if main:
        npz = os.path.join(run_dir, "test_embeddings.npz")
        run_command([sys.executable, "inference.py", f"--train_dir={run_dir}",
                     f"--input_data_pattern={data_dir}/test-*.tfrecord",
                     f"--output_file={run_dir}/test_matches.csv",
                     f"--embeddings_file={npz}"], run_dir + ".inference.log",
                    reuse, [npz])
        with np.load(npz) as z:
            order = np.argsort(z["ids"])
            record["embeddings"] = (z["audio"][order], z["video"][order])
    return record


def _shown(cmd):
    return ["python" if c == sys.executable else c for c in cmd]


def _oracle_rows(info):
    rows = []
    for key, label in (("oracle", "oracle (Bayes-optimal, no frame count)"),
                       ("oracle_with_frame_count", "oracle + frame count"),
                       ("frame_count_only", "frame count only")):
        result = info[key]["test"]
        for d in DIRECTIONS:
            result[d].setdefault("mean_rank", float("nan"))
        rows.append((label, result, ["-", "-"]))
    return rows


def run(work_dir, output_dir, num_videos, num_epochs, quick=False,
        only=None, reuse=False):
    data_dir = os.path.join(work_dir, "data")
    info = ensure_data(data_dir, num_videos, quick)
    sizes = synthetic.split_sizes(num_videos)
    runs = os.path.join(work_dir, "runs")
    os.makedirs(runs, exist_ok=True)
    record = {"num_videos": num_videos, "split_sizes": sizes,
              "num_epochs": num_epochs, "quick": quick, "systems": {}}
    rows = []
    curves = {}
    for i, (name, flags) in enumerate(SYSTEMS):
        if only and name.split(",")[0] not in only:
            continue
        run_dir = os.path.join(runs, re.sub(r"\W+", "_", name).strip("_"))
        print(f"training {name} ...", flush=True)
        r = train_and_score(flags, data_dir, run_dir, num_epochs,
                            main=i == 0, reuse=reuse)
        embeddings = r.pop("embeddings", None)
        if embeddings is not None:
            curves[f"{name} (main)"] = recall_vs_gallery_size(
                *embeddings, GALLERY_SIZES + (sizes["test"],))
        record["systems"][name] = r
        rows.append((name, r["test"], [f"{r['wall_seconds']:.0f}",
                                       f"{r['examples_per_second']:.0f}"]))
    audio, video, seconds, note = linear_cca_on_means(data_dir)
    cca_result = gallery_mean(audio, video, len(audio))
    record["systems"][LINEAR_CCA] = {"note": note, "wall_seconds": seconds,
                                     "test": cca_result}
    curves[LINEAR_CCA] = recall_vs_gallery_size(
        audio, video, GALLERY_SIZES + (sizes["test"],))
    rows.append((LINEAR_CCA, cca_result, [f"{seconds:.0f}", "-"]))
    rows += _oracle_rows(info)
    record["oracle_test"] = info["oracle"]["test"]

    best_model = max((n for n in record["systems"] if n != LINEAR_CCA),
                     key=lambda n: selection_score(
                         record["systems"][n]["test"]), default=None)
    lines = [
        "# Frame-level cross-modal retrieval (built-in synthetic data)", "",
        ("**QUICK SMOKE RUN: tiny data, not a result.**\n" if quick else "")
        + f"{num_videos} videos from `python -m yt8m_xmodal.tools.synthetic "
        f"--num_videos={num_videos} --num_shards=8` (generator v"
        f"{synthetic.GENERATOR_VERSION}): train {sizes['train']}, validate "
        f"{sizes['validate']}, test {sizes['test']}; each model trained "
        f"{num_epochs} epochs with the package defaults, scored on the whole "
        f"test split (gallery {sizes['test']}).", "",
        markdown_table(rows, f"Test split, gallery {sizes['test']}",
                       rank_columns=("median_rank", "mrr"),
                       extra_columns=("train s", "train examples/s")), "",
        "`train s` is train.py's whole run (steps, checkpoints, the CCA "
        "subspace fit and validation); `train examples/s` counts the "
        "training steps only. The oracle rows come from `dataset.json`.", "",
        "Commands:", ""]
    for name, r in record["systems"].items():
        if "train_command" in r:
            lines += [f"- {name}: `{r['train_command']}`, then "
                      f"`{r['eval_command']}`"]
        else:
            lines += [f"- {name}: {r['note']} (chosen on validate)"]
    if best_model:
        oracle = selection_score(info["oracle"]["test"])
        best = selection_score(record["systems"][best_model]["test"])
        lines += ["", f"Best model on test: {best_model}, R@10 (mean of both "
                  f"directions) {best:.3f} = {best / oracle:.0%} of the "
                  f"oracle's {oracle:.3f}."]
    return write_report(output_dir, "frame_level", lines, record, curves,
                        "Synthetic frame level, test split")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="/tmp/yt8m_frame_level",
                        help="generated data and training runs go here")
    parser.add_argument("--output_dir", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--num_videos", type=int, default=DEFAULT_NUM_VIDEOS)
    parser.add_argument("--num_epochs", type=int, default=DEFAULT_NUM_EPOCHS)
    parser.add_argument("--only", default="",
                        help="comma-separated model names (default: all)")
    parser.add_argument("--reuse_runs", action="store_true",
                        help="do not rerun a train/eval/inference command "
                             "that already succeeded in --work_dir with the "
                             "same command line")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 400 short videos, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        # The smallest set whose train split (80 %) still fills one batch
        # of train.py's default 256.
        args.num_videos, args.num_epochs = 400, 1
    only = set(filter(None, args.only.split(",")))
    print(run(args.work_dir, args.output_dir, args.num_videos,
              args.num_epochs, args.quick, only, args.reuse_runs))


if __name__ == "__main__":
    main()
