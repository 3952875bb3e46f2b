"""Scoring and reporting shared by the two retrieval experiments.

`frame_level_results.py` (synthetic frame-level data) and
`video_level_results.py` (real YT8M video-level features) both score
row-aligned (audio, video) embeddings with `metrics.cross_modal_metrics`, over
a full test split and over seeded smaller galleries, and write markdown tables
and a recall-vs-gallery-size plot.
"""

import json
import os


from yt8m_xmodal import metrics
from yt8m_xmodal.training import selection_score

TOP_K = (1, 5, 10, 20)
DIRECTIONS = metrics.DIRECTIONS
# Seeded galleries per size: `eval.py --gallery_draws`' own default.
GALLERY_DRAWS = 5




def gallery_mean(audio, video, size, labels=None, cosine=True,
                 draws=GALLERY_DRAWS, csls_k=0):
    """Mean metrics over seeded draws of `size`-video galleries: the
    product's protocol (`metrics.fixed_gallery_metrics`, what `eval.py
    --gallery_size --gallery_draws` reports)."""
    return metrics.fixed_gallery_metrics(
        audio, video, min(size, len(audio)), draws, labels=labels,
        top_k=TOP_K, cosine=cosine, csls_k=csls_k)


def recall_vs_gallery_size(audio, video, sizes, cosine=True):
    """[(gallery size, mean R@10 of both directions over the draws)]."""
    n = len(audio)
    return [(min(size, n), selection_score(
        gallery_mean(audio, video, size, cosine=cosine)))
        for size in sizes]


def markdown_table(rows, title, rank_columns=("median_rank", "map"),
                   extra_columns=("train s",)):
    """rows: [(system, result dict, [extra cells])].

    Per direction: R@k for TOP_K, then `rank_columns` (any of median_rank,
    mean_rank, mrr, map).
    """
    names = {"median_rank": "MedR", "mean_rank": "MeanR", "mrr": "MRR",
             "map": "mAP"}
    head = ["system", *extra_columns]
    for short in ("A→V", "V→A"):
        head += [f"{short} R@{k}" for k in TOP_K]
        head += [f"{short} {names[c]}" for c in rank_columns]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for system, result, extra in rows:
        cells = [system, *extra]
        for d in DIRECTIONS:
            r = result[d]
            cells += [f"{r[f'recall@{k}']:.3f}" for k in TOP_K]
            cells += [f"{r[c]:.1f}" if c.endswith("rank") else f"{r[c]:.3f}"
                      for c in rank_columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_recall_vs_gallery_size(curves, path, title):
    """Writes a PNG of {system: [(size, R@10)]}; needs matplotlib (bench only)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                label=name)
    ax.set_xscale("log")
    ax.set_xlabel("gallery size (videos)")
    ax.set_ylabel("Recall@10 (mean of A→V and V→A)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(output_dir, name, lines, record, curves, plot_title):
    """Writes `<name>.md` (the lines, and the plot where matplotlib is
    installed), `<name>.json` (the record) and `<name>_recall_vs_gallery.png`
    under `output_dir`; returns the markdown text."""
    os.makedirs(output_dir, exist_ok=True)
    record["recall_vs_gallery_size"] = curves
    try:
        png = os.path.join(output_dir, f"{name}_recall_vs_gallery.png")
        plot_recall_vs_gallery_size(curves, png, plot_title)
        lines = lines + ["", f"![R@10 vs gallery size]"
                             f"({os.path.basename(png)})"]
    except ImportError:
        lines = lines + ["", "(matplotlib not installed: no "
                             "recall-vs-gallery plot)"]
    text = "\n".join(lines)
    with open(os.path.join(output_dir, f"{name}.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(output_dir, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    return text
