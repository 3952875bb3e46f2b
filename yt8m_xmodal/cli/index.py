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

cli.define_config_flags(index_lib.IndexConfig)

log = logging.getLogger("yt8m_xmodal")


def _fingerprint(cfg, embeddings):
    """The one fingerprint the files, --export_dir and --model_fingerprint
    agree on."""
    given = {}
    if embeddings.fingerprint:
        given["the embeddings files"] = embeddings.fingerprint
    if cfg.export_dir:
        given[f"--export_dir={cfg.export_dir}"] = (
            index_lib.model_fingerprint(cfg.export_dir))
    if cfg.model_fingerprint:
        given["--model_fingerprint"] = cfg.model_fingerprint
    if not given:
        raise FlagError("no model fingerprint: the embeddings files carry "
                        "none; pass --export_dir (the model that wrote them) "
                        "or --model_fingerprint")
    if len(set(given.values())) > 1:
        raise FlagError("model fingerprints disagree: " + ", ".join(
            f"{where} gives {fp[:16]}..." for where, fp in given.items()))
    return next(iter(given.values()))


def build():
    cfg = cli.config_from_flags(index_lib.IndexConfig)
    cli.check_output_path("index_dir", cfg.index_dir)
    if os.path.lexists(cfg.index_dir) and not cfg.overwrite:
        raise FlagError(f"--index_dir={cfg.index_dir} exists; pass "
                        "--overwrite to replace it")
    paths = list(cfg.embeddings_file)
    embeddings, tune_queries = index_lib.read_gallery(paths, cfg.modality,
                                                      seed=cfg.seed)
    gallery = getattr(embeddings, cfg.modality)
    fingerprint = _fingerprint(cfg, embeddings)
    log.info("%d %s embeddings (%d-d) from %d file(s)", len(embeddings),
             cfg.modality, gallery.shape[1], len(paths))
    try:
        manifest = index_lib.build_index(
            embeddings.ids, gallery, cfg.index_dir, fingerprint,
            kind=cfg.kind, modality=cfg.modality, nlist=cfg.nlist or None,
            search_breadth=cfg.search_breadth or None,
            tune_queries=tune_queries,
            target_recall=cfg.target_recall, overwrite=cfg.overwrite,
            seed=cfg.seed, sources=paths)
    except DataError:
        raise
    except ValueError as e:  # an argument the flags passed (e.g. --nlist)
        raise FlagError(str(e)) from None
    tuning = manifest["tuning"]
    tuned = ""
    if tuning:
        k = tuning["k"]
        other = "audio" if cfg.modality == "video" else "video"
        tuned = (f"; {tuning['param']}={tuning['value']} gives recall@{k} "
                 f"{tuning[f'recall@{k}']:.4f} vs exact on "
                 f"{tuning['num_queries']} {other} queries")
    print(f"{manifest['kind']} index of {manifest['num_vectors']} "
          f"{cfg.modality} vectors written to {cfg.index_dir} "
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
