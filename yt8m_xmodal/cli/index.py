"""Builds a search index over the subspace embeddings inference.py wrote.

    python -m yt8m_xmodal.cli.index build \
        --embeddings_file=part0.npz,part1.npz --index_dir=/data/video_index \
        --export_dir=/tmp/yt8m_xmodal_model/export/step_00010000

The gallery is one modality's embeddings (--modality=video: songs query
videos), the rows of all the files in order. Below 100,000 vectors the index
is exact; above, a faiss IVF index whose search breadth is tuned so that its
recall@10 against exact search reaches --target_recall on a sample of the
other modality's embeddings. The model fingerprint recorded with the index
comes from the files (key `model_fingerprint`), --export_dir (a hash of the
export) or --model_fingerprint; inference can then refuse an index built
from another model's embeddings.
"""

import logging
import os

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import index as index_lib
from yt8m_xmodal.cli import FlagError
from yt8m_xmodal.errors import DataError

FLAGS = flags.FLAGS

cli.define_flag_table([
    ("embeddings_file", "", "Comma-separated .npz files written by "
     "inference.py --embeddings_file (ids and the gallery's embeddings); rows "
     "concatenated in this order."),
    ("index_dir", "", "The index directory to write."),
    ("modality", "video", "The gallery: video (songs query videos) or audio."),
    ("kind", "auto", "auto (exact below 100,000 vectors, else ivf_flat), "
     "exact, ivf_flat, ivf_sq8 or hnsw."),
    ("export_dir", "", "The model export the embeddings came from; its hash "
     "is the index's model fingerprint."),
    ("model_fingerprint", "", "The model fingerprint to record, when the "
     "files carry none and --export_dir is not given."),
    ("nlist", 0, "IVF kinds: inverted lists (0: the power of two nearest "
     "sqrt(N))."),
    ("search_breadth", 0, "nprobe (IVF) or efSearch (HNSW) to store (0: tune "
     "it to --target_recall)."),
    ("target_recall", index_lib.TARGET_RECALL,
     "Recall@10 against exact search that tuning aims for."),
    ("overwrite", False, "Replace an existing --index_dir."),
    ("seed", 0, "Seed of the training and tuning samples."),
])

log = logging.getLogger("yt8m_xmodal")


def _fingerprint(embeddings):
    """The one fingerprint the files, --export_dir and --model_fingerprint
    agree on."""
    given = {}
    if embeddings.fingerprint:
        given["the embeddings files"] = embeddings.fingerprint
    if FLAGS.export_dir:
        given[f"--export_dir={FLAGS.export_dir}"] = (
            index_lib.model_fingerprint(FLAGS.export_dir))
    if FLAGS.model_fingerprint:
        given["--model_fingerprint"] = FLAGS.model_fingerprint
    if not given:
        raise FlagError("no model fingerprint: the embeddings files carry "
                        "none; pass --export_dir (the model that wrote them) "
                        "or --model_fingerprint")
    if len(set(given.values())) > 1:
        raise FlagError("model fingerprints disagree: " + ", ".join(
            f"{where} gives {fp[:16]}..." for where, fp in given.items()))
    return next(iter(given.values()))


def build():
    if not FLAGS.embeddings_file:
        raise FlagError("--embeddings_file is empty")
    if not FLAGS.index_dir:
        raise FlagError("--index_dir is empty")
    if FLAGS.modality not in ("audio", "video"):
        raise FlagError(f"--modality={FLAGS.modality!r} must be audio or video")
    if FLAGS.kind != "auto" and FLAGS.kind not in index_lib.KINDS:
        raise FlagError(f"--kind={FLAGS.kind!r} must be auto or one of "
                        f"{', '.join(index_lib.KINDS)}")
    for name in ("nlist", "search_breadth"):
        if getattr(FLAGS, name) < 0:
            raise FlagError(f"--{name}={getattr(FLAGS, name)} must be >= 0")
    if not 0 < FLAGS.target_recall <= 1:
        raise FlagError(f"--target_recall={FLAGS.target_recall} must be in "
                        "(0, 1]")
    cli.check_output_path("index_dir", FLAGS.index_dir)
    if os.path.lexists(FLAGS.index_dir) and not FLAGS.overwrite:
        raise FlagError(f"--index_dir={FLAGS.index_dir} exists; pass "
                        "--overwrite to replace it")
    paths = [p for p in FLAGS.embeddings_file.split(",") if p]
    embeddings, tune_queries = index_lib.read_gallery(paths, FLAGS.modality,
                                                      seed=FLAGS.seed)
    gallery = getattr(embeddings, FLAGS.modality)
    fingerprint = _fingerprint(embeddings)
    log.info("%d %s embeddings (%d-d) from %d file(s)", len(embeddings),
             FLAGS.modality, gallery.shape[1], len(paths))
    try:
        manifest = index_lib.build_index(
            embeddings.ids, gallery, FLAGS.index_dir, fingerprint,
            kind=FLAGS.kind, modality=FLAGS.modality,
            nlist=FLAGS.nlist or None,
            search_breadth=FLAGS.search_breadth or None,
            tune_queries=tune_queries,
            target_recall=FLAGS.target_recall, overwrite=FLAGS.overwrite,
            seed=FLAGS.seed, sources=paths)
    except DataError:
        raise
    except ValueError as e:  # an argument the flags passed (e.g. --nlist)
        raise FlagError(str(e)) from None
    tuning = manifest["tuning"]
    tuned = ""
    if tuning:
        k = tuning["k"]
        other = "audio" if FLAGS.modality == "video" else "video"
        tuned = (f"; {tuning['param']}={tuning['value']} gives recall@{k} "
                 f"{tuning[f'recall@{k}']:.4f} vs exact on "
                 f"{tuning['num_queries']} {other} queries")
    print(f"{manifest['kind']} index of {manifest['num_vectors']} "
          f"{FLAGS.modality} vectors written to {FLAGS.index_dir} "
          f"(model {fingerprint[:12]}){tuned}")
    return 0


COMMANDS = {"build": build}


def main(argv):
    commands = argv[1:]
    if len(commands) != 1 or commands[0] not in COMMANDS:
        raise FlagError(f"expected one command, one of "
                        f"{', '.join(COMMANDS)}; got {commands}")
    return COMMANDS[commands[0]]()


def run():
    """The command's entry point."""
    cli.run(main)


if __name__ == "__main__":
    run()
