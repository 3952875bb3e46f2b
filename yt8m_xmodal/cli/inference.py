r"""Embeds YT8M records and writes top-K cross-modal matches.

    python inference.py --train_dir=/tmp/yt8m_xmodal_model \
        --input_data_pattern='/data/yt8m/frame/test*.tfrecord' \
        --output_file=matches.csv --top_k 20 --embeddings_file=out.npz

Your own song or video, in one command (features extracted on the fly, see
docs/extraction.md; a song queries the videos, a video the songs):

    python inference.py --train_dir=/tmp/yt8m_xmodal_model \
        --index_dir=/data/video_index --query_media=my_song.mp3 --top_k=20

The model is the newest export in --train_dir, or a bundle given with
--input_model_tgz; --output_model_tgz packs the export into such a bundle,
as in the YouTube-8M starter code. The starter code's reader flags
(--frame_features, --feature_names, ...) are taken and must agree with the
model's.
"""

import csv
import logging
import os
import tempfile

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import index as index_lib
from yt8m_xmodal import inference
from yt8m_xmodal import metrics
from yt8m_xmodal import modeling
from yt8m_xmodal.errors import DataError
from yt8m_xmodal.extraction import extractor

FLAGS = flags.FLAGS

cli.define_config_flags(config_lib.InferenceConfig)
# The starter code's inference.py takes the reader flags; here they must
# agree with the model's, except the records' id key and vocabulary size.
cli.define_data_flags()
# --query_media's feature extraction (yt8m-xmodal-extract's flags).
cli.define_config_flags(extractor.ExtractConfig,
                        names=("weights_dir", "download"))

log = logging.getLogger("yt8m_xmodal")


def main(argv):
    del argv
    cfg = cli.config_from_flags(config_lib.InferenceConfig)
    # Sorted and validated; only the largest K makes sense here.
    top_k = max(metrics.parse_top_k(cfg.top_k))
    for name in ("output_file", "embeddings_file", "output_model_tgz",
                 "explain_file"):
        cli.check_output_path(name, getattr(cfg, name))
    with tempfile.TemporaryDirectory(prefix="yt8m_xmodal_model_") as tmp:
        if cfg.input_model_tgz:
            export_dir = modeling.unbundle(cfg.input_model_tgz, tmp)
        else:
            export_dir = modeling.latest_export_or_error(cfg.train_dir)
        if cfg.output_model_tgz:
            modeling.bundle(export_dir, cfg.output_model_tgz)
            print(f"model bundle written to {cfg.output_model_tgz}")
        input_data_pattern, query_modality = (cfg.input_data_pattern,
                                              cfg.query_modality)
        output_file = cfg.output_file
        if cfg.query_media:
            input_data_pattern, query_modality = _extract_query_media(cfg,
                                                                      tmp)
            output_file = output_file or os.path.join(tmp, "matches.csv")
        if not input_data_pattern:
            if cfg.output_model_tgz:
                return 0
            raise cli.FlagError("--input_data_pattern is empty")
        if not (output_file or cfg.embeddings_file or cfg.explain_file):
            raise cli.FlagError("nothing to write: set --output_file, "
                                "--embeddings_file and/or --explain_file")
        exported = modeling.load_export(export_dir)
        model_dir = cfg.input_model_tgz or export_dir
        data = cli.data_config_for_model(
            exported.config.data, model_dir, input_data_pattern,
            "input_data_pattern")
        if data.id_feature != exported.config.data.id_feature:
            # The export parses records itself, with the model's id key.
            raise DataError(
                f"{input_data_pattern} keeps ids in {data.id_feature}, "
                f"but the model in {model_dir} reads them from "
                f"{exported.config.data.id_feature}; give records of the "
                "model's release")
        gallery_index = None
        if cfg.index_dir:
            gallery_index = _load_index(cfg, export_dir, query_modality)
        result = inference.run_inference(
            exported.signatures, input_data_pattern,
            output_file=output_file,
            gallery_data_pattern=cfg.gallery_data_pattern,
            query_modality=query_modality, top_k=top_k,
            embeddings_file=cfg.embeddings_file, batch_size=cfg.batch_size,
            explain_file=cfg.explain_file,
            chunk_seconds=getattr(exported.config.model_config, "chunk_size",
                                  None),
            data_config=data, model_dir=model_dir, index=gallery_index,
            model_fingerprint=(index_lib.model_fingerprint(export_dir)
                               if cfg.embeddings_file else ""),
            csls_k=(exported.config.csls_k if cfg.csls_k is None
                    else cfg.csls_k))
        if cfg.query_media:
            _print_matches(output_file, query_modality)
    searched = (f"; gallery {result['gallery_size']}"
                if result["gallery_size"] else "")
    print(f"{result['num_queries']} videos embedded with {export_dir}"
          f"{searched}")
    if cfg.output_file:
        print(f"{result['rows']} rows of top-{top_k} matches written to "
              f"{cfg.output_file}")
    if cfg.embeddings_file:
        print(f"embeddings written to {cfg.embeddings_file}")
    if cfg.explain_file:
        print(f"why each match was made: {cfg.explain_file}")
    return 0


def _extract_query_media(cfg, tmp):
    """Extracts --query_media into a TFRecord in `tmp`; returns its path and
    the query modality (video when the files have video, else audio)."""
    from yt8m_xmodal.extraction import media  # noqa: PLC0415 - needs [media]
    if cfg.input_data_pattern:
        raise cli.FlagError("give either --query_media or "
                            "--input_data_pattern, not both")
    if not (cfg.index_dir or cfg.gallery_data_pattern):
        raise cli.FlagError("--query_media needs the other modality to "
                            "search: --index_dir or --gallery_data_pattern")
    paths = extractor.resolve_inputs(cfg.query_media)
    kinds = {"video" if media.has_video(p) else "audio" for p in paths}
    if len(kinds) > 1:
        raise cli.FlagError(f"--query_media={cfg.query_media} mixes songs "
                            "and videos: query with one kind at a time")
    modality = kinds.pop()
    if FLAGS["query_modality"].present and cfg.query_modality != modality:
        raise cli.FlagError(f"--query_media holds {modality} files: drop "
                            f"--query_modality={cfg.query_modality}")
    records = os.path.join(tmp, "query_media.tfrecord")
    extractor.write_tfrecord(
        paths, records, extractor.FeatureExtractor(
            FLAGS.weights_dir or None, download=FLAGS.download))
    return records, modality


def _print_matches(matches_csv, query_modality):
    """Prints each query's matches from the top-K CSV, best first."""
    other = "videos" if query_modality == "audio" else "songs"
    with open(matches_csv, newline="") as f:
        rows = list(csv.reader(f))[1:]
    for query, _, pairs in rows:
        print(f"{query}: top {other}")
        fields = pairs.split()
        for rank, (match, score) in enumerate(zip(fields[::2], fields[1::2]),
                                              1):
            print(f"  {rank:3d}. {match}  {score}")


def _load_index(cfg, export_dir, query_modality):
    """The --index_dir index, checked to be of this model and of the other
    modality than the queries'."""
    if cfg.gallery_data_pattern:
        raise cli.FlagError("give either --index_dir or "
                            "--gallery_data_pattern, not both")
    loaded = index_lib.load_index(
        cfg.index_dir, expected_fingerprint=index_lib.model_fingerprint(
            export_dir))
    query = "audio" if loaded.modality == "video" else "video"
    if query_modality != query and cfg.query_media:
        raise cli.FlagError(
            f"--index_dir={cfg.index_dir} holds {loaded.modality} "
            f"embeddings and --query_media={cfg.query_media} is "
            f"{query_modality}: search an index of the other modality")
    if query_modality != query:
        raise cli.FlagError(
            f"--index_dir={cfg.index_dir} holds {loaded.modality} "
            f"embeddings: pass --query_modality={query}")
    return loaded


def run():
    """The command's entry point (root script and console script)."""
    cli.run(main)


if __name__ == "__main__":
    run()
