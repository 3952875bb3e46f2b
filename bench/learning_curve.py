r"""Learning curve on real YouTube-8M video-level features: test R@10 at a
1,000-video gallery against the number of training videos, for the README
flow (`train.py --noframe_features`, early stopping on validation) and the
linear-CCA floor (`train.py --model=LinearCcaModel`).

The training sets are the README's subsets of the first 8, 20, 40 and 80 of
the `../shared` video shards validate0000-0079 (every label, silent audio
dropped, id-hash train split; the music videos of the same shards' validate
split for early stopping); the test set is always the music videos of
validate0080-0099. Everything runs through the package's commands (see
bench/video_level_results.py); the plot needs matplotlib (the bench extra).

    python bench/learning_curve.py --work_dir=/tmp/yt8m_learning_curve
"""

import dataclasses
import json
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
from bench import video_level_results as flow  # noqa: E402
from bench import fragments  # noqa: E402
from bench.retrieval_report import selection_score  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402

log = logging.getLogger("bench")

# Last training shard of each point (8, 20, 40 and 80 shards).
LAST_SHARDS = (7, 19, 39, 79)
# Full YouTube-8M (2018) training split, video level: 3,888,919 videos.
FULL_TRAIN_VIDEOS = 3_888_919


@dataclasses.dataclass(frozen=True)
class LearningCurveConfig(flow.FlowConfig):
    """learning_curve.py's flags."""

    # Its own: its subsets of 8 to 80 shards are not video_level's.
    work_dir: str = option("/tmp/yt8m_learning_curve", "Subsets, runs and "
                           "embeddings go here (reused when present).")
    output_dir: str = option(os.path.join(flow.REPO_ROOT, "bench", "results"),
                             "Writes learning_curve.md and .json here.")
    reuse_runs: bool = option(False, "Reuse finished train_dirs in "
                              "--work_dir.")


def log_linear_fit(sizes, values):
    """(a, b) of value = a + b * log10(size), least squares."""
    b, a = np.polyfit(np.log10(sizes), values, 1)
    return float(a), float(b)


def main(argv=None):
    args = fragments.parse_flags(LearningCurveConfig, __doc__, argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    points = []
    systems = {"README flow": flow.README_FLOW, "linear CCA":
               flow.LINEAR_CCA}
    for last in LAST_SHARDS:
        data = flow.build_subsets(args.video_dir, args.work_dir, last)
        with open(os.path.join(os.path.dirname(data["train"]),
                               "manifest.json")) as f:
            manifest = json.load(f)
        num_train = count_train(manifest)
        point = {"shards": last + 1, "train_videos": num_train}
        for label, (_, flags, validated) in systems.items():
            train_dir = os.path.join(args.work_dir, "runs",
                                     f"{label.split()[0]}_{last + 1:03d}")
            result = flow.train(train_dir, data["train"],
                                data["validate"] if validated else "",
                                *flags, reuse=args.reuse_runs)
            emb = flow.embed(train_dir, data["test"], train_dir + "_test.npz")
            test = flow.score(emb, flow.model_csls_k(train_dir),
                              sizes=(flow.GALLERY_SIZE,))
            point[label] = {"test_1000": test[str(flow.GALLERY_SIZE)],
                            "r10": selection_score(
                                test[str(flow.GALLERY_SIZE)]),
                            "step": result["step"],
                            "best_step": result.get("best_step"),
                            "wall_seconds": result["wall_seconds"]}
            log.info("%d training videos, %s: test R@10 %.3f", num_train,
                     label, point[label]["r10"])
        points.append(point)
    print(report(points, systems, args.output_dir))


def count_train(manifest):
    """Training videos the subset tool wrote (its manifest's `kept`)."""
    return int(manifest["kept"]["train"])


def report(points, systems, output_dir):
    sizes = [p["train_videos"] for p in points]
    lines = [
        "# Learning curve: real video-level features, test R@10 at a "
        "1,000-video gallery against training-set size", "",
        "Training: the README subsets of the first 8, 20, 40, 80 shards of "
        "validate0000-0079 (every label, silent audio dropped, id-hash train "
        "split); early stopping on the music videos of the same shards' "
        "validate split; test: the music videos of validate0080-0099, "
        "1,000-video galleries, mean of 5 seeded draws, R@10 the mean of "
        "both directions (A→V / V→A and median ranks in brackets).", "",
        "| shards | train videos | " + " | ".join(
            f"{name} R@10 (A→V / V→A, MedR)" for name in systems) + " |",
        "|---|---|" + "---|" * len(systems)]
    for p in points:
        cells = []
        for name in systems:
            t = p[name]["test_1000"]
            cells.append(
                f"{p[name]['r10']:.3f} ({t['audio_to_video']['recall@10']:.3f}"
                f" / {t['video_to_audio']['recall@10']:.3f}, "
                f"{t['audio_to_video']['median_rank']:.1f} / "
                f"{t['video_to_audio']['median_rank']:.1f})")
        lines.append(f"| {p['shards']} | {p['train_videos']} | "
                     + " | ".join(cells) + " |")
    fits = {}
    for name in systems:
        a, b = log_linear_fit(sizes, [p[name]["r10"] for p in points])
        fits[name] = {"a": a, "b_per_decade": b,
                      "at_full_train": a + b * np.log10(FULL_TRAIN_VIDEOS)}
    lines += ["", "A least-squares fit R@10 = a + b log10(videos) gives, per "
              "tenfold more training videos:"]
    for name, f in fits.items():
        lines.append(f"- **{name}**: +{f['b_per_decade']:.3f} R@10 per "
                     f"decade; extrapolated to the full YT8M training split "
                     f"({FULL_TRAIN_VIDEOS:,} videos, all labels): "
                     f"{f['at_full_train']:.3f}")
    lines += ["", "An extrapolation over two decades from four points: a "
              "trend, not a promise (curves of this kind flatten)."]
    record = {"points": points, "fits": fits}
    record["command"] = fragments.command_line()
    record["date"] = fragments.utc_now()
    record["machine"] = fragments.machine_info()
    curves = {name: [(p["train_videos"], p[name]["r10"]) for p in points]
              for name in systems}
    return write_curve(output_dir, lines, record, curves)


def write_curve(output_dir, lines, record, curves):
    os.makedirs(output_dir, exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, pts in curves.items():
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o",
                    label=name)
        ax.set_xscale("log")
        ax.set_xlabel("training videos")
        ax.set_ylabel("test R@10, 1,000-video gallery (mean of both ways)")
        ax.set_title("YT8M video level: learning curve")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        png = os.path.join(output_dir, "learning_curve.png")
        fig.savefig(png, dpi=120)
        plt.close(fig)
        lines = lines + ["", "![learning curve](learning_curve.png)"]
    except ImportError:
        lines = lines + ["", "(matplotlib not installed: no plot)"]
    text = "\n".join(lines)
    with open(os.path.join(output_dir, "learning_curve.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(output_dir, "learning_curve.json"), "w") as f:
        json.dump(record, f, indent=2)
    return text


if __name__ == "__main__":
    main()
