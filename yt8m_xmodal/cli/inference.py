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
as in the YouTube-8M starter code.
"""

import csv
import logging
import os
import tempfile

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import index as index_lib
from yt8m_xmodal import matching
from yt8m_xmodal import metrics
from yt8m_xmodal import modeling
from yt8m_xmodal.extraction import extractor
from yt8m_xmodal.extraction import media

FLAGS = flags.FLAGS

flags.DEFINE_string("train_dir", "/tmp/yt8m_xmodal_model/",
                    "The directory train.py wrote (its newest export is used).")
flags.DEFINE_string("input_model_tgz", "",
                    "A bundle made by --output_model_tgz; overrides --train_dir.")
flags.DEFINE_string("output_model_tgz", "",
                    "Pack the model used here into this .tgz bundle.")
flags.DEFINE_string("input_data_pattern", "",
                    "File glob(s), comma-separated, of the query records.")
flags.DEFINE_string("gallery_data_pattern", "",
                    "Records to search (default: the input records).")
flags.DEFINE_string("query_modality", "both",
                    "audio, video or both. With audio (a song) the query "
                    "records need to hold only audio, and the gallery "
                    "(--gallery_data_pattern) only video; video likewise.")
flags.DEFINE_string("output_file", "", "The top-K matches CSV to write.")
flags.DEFINE_string("top_k", "20", cli.top_k_flag_help(
    "Matches written per query: the largest K (1,5,10,20 writes 20)."))
flags.DEFINE_string("embeddings_file", "",
                    "Write subspace embeddings (ids, audio, video) to this .npz.")
flags.DEFINE_integer("batch_size", 256, "Videos embedded per batch.")
flags.DEFINE_integer("csls_k", -1,
                     "Rank matches by CSLS with this many neighbours (0: by "
                     "cosine; -1: the model's own csls_k, from its "
                     "model_flags.json).")
flags.DEFINE_string("index_dir", "",
                    "Search this index (built by yt8m-xmodal-index from this "
                    "model's embeddings) instead of embedding gallery "
                    "records; the queries are of the other modality.")
flags.DEFINE_string("explain_file", "",
                    "Write an HTML page showing, for each query and its top "
                    "matches, the chunk attention of both sides over the "
                    "seconds (ChunkAttentionModel exports).")
flags.DEFINE_string("query_media", "",
                    "Your own media file(s) as the queries (a file, glob or "
                    "comma list of wav, mp3, flac, m4a, mp4, mkv, webm): "
                    "their YT8M features are extracted, songs query the "
                    "videos and videos the songs (of --index_dir or "
                    "--gallery_data_pattern); the matches are printed.")
cli.define_config_flags(extractor.ExtractConfig,
                        names=("weights_dir", "download"))

log = logging.getLogger("yt8m_xmodal")


def main(argv):
    del argv
    if FLAGS.query_modality not in ("audio", "video", "both"):
        raise cli.FlagError(f"--query_modality={FLAGS.query_modality!r} must be "
                        "audio, video or both")
    # Sorted and validated; only the largest K makes sense here.
    top_k = max(metrics.parse_top_k(FLAGS.top_k))
    for name in ("output_file", "embeddings_file", "output_model_tgz",
                 "explain_file"):
        cli.check_output_path(name, getattr(FLAGS, name))
    with tempfile.TemporaryDirectory(prefix="yt8m_xmodal_model_") as tmp:
        if FLAGS.input_model_tgz:
            export_dir = modeling.unbundle(FLAGS.input_model_tgz, tmp)
        else:
            export_dir = modeling.latest_export_or_error(FLAGS.train_dir)
        if FLAGS.output_model_tgz:
            modeling.bundle(export_dir, FLAGS.output_model_tgz)
            print(f"model bundle written to {FLAGS.output_model_tgz}")
        input_data_pattern, query_modality = (FLAGS.input_data_pattern,
                                              FLAGS.query_modality)
        output_file = FLAGS.output_file
        if FLAGS.query_media:
            input_data_pattern, query_modality = _extract_query_media(tmp)
            output_file = output_file or os.path.join(tmp, "matches.csv")
        if not input_data_pattern:
            if FLAGS.output_model_tgz:
                return 0
            raise cli.FlagError("--input_data_pattern is empty")
        if not (output_file or FLAGS.embeddings_file
                or FLAGS.explain_file):
            raise cli.FlagError("nothing to write: set --output_file, "
                                "--embeddings_file and/or --explain_file")
        exported = modeling.load_export(export_dir)
        gallery_index = None
        if FLAGS.index_dir:
            gallery_index = _load_index(export_dir, query_modality)
        result = matching.run_inference(
            exported.signatures, input_data_pattern,
            output_file=output_file,
            gallery_data_pattern=FLAGS.gallery_data_pattern,
            query_modality=query_modality, top_k=top_k,
            embeddings_file=FLAGS.embeddings_file, batch_size=FLAGS.batch_size,
            explain_file=FLAGS.explain_file,
            chunk_seconds=getattr(exported.config.model_config, "chunk_size",
                                  None),
            data_config=exported.config.data,
            model_dir=FLAGS.input_model_tgz or export_dir, index=gallery_index,
            model_fingerprint=(index_lib.model_fingerprint(export_dir)
                               if FLAGS.embeddings_file else ""),
            csls_k=(exported.config.csls_k if FLAGS.csls_k < 0
                    else FLAGS.csls_k))
        if FLAGS.query_media:
            _print_matches(output_file, query_modality)
    searched = (f"; gallery {result['gallery_size']}"
                if result["gallery_size"] else "")
    print(f"{result['num_queries']} videos embedded with {export_dir}"
          f"{searched}")
    if FLAGS.output_file:
        print(f"{result['rows']} rows of top-{top_k} matches written to "
              f"{FLAGS.output_file}")
    if FLAGS.embeddings_file:
        print(f"embeddings written to {FLAGS.embeddings_file}")
    if FLAGS.explain_file:
        print(f"why each match was made: {FLAGS.explain_file}")
    return 0


def _extract_query_media(tmp):
    """Extracts --query_media into a TFRecord in `tmp`; returns its path and
    the query modality (video when the files have video, else audio)."""
    if FLAGS.input_data_pattern:
        raise cli.FlagError("give either --query_media or "
                            "--input_data_pattern, not both")
    if not (FLAGS.index_dir or FLAGS.gallery_data_pattern):
        raise cli.FlagError("--query_media needs the other modality to "
                            "search: --index_dir or --gallery_data_pattern")
    paths = extractor.resolve_inputs(FLAGS.query_media)
    kinds = {"video" if media.has_video(p) else "audio" for p in paths}
    if len(kinds) > 1:
        raise cli.FlagError(f"--query_media={FLAGS.query_media} mixes songs "
                            "and videos: query with one kind at a time")
    modality = kinds.pop()
    if FLAGS["query_modality"].present and FLAGS.query_modality != modality:
        raise cli.FlagError(f"--query_media holds {modality} files: drop "
                            f"--query_modality={FLAGS.query_modality}")
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


def _load_index(export_dir, query_modality):
    """The --index_dir index, checked to be of this model and of the other
    modality than the queries'."""
    if FLAGS.gallery_data_pattern:
        raise cli.FlagError("give either --index_dir or "
                            "--gallery_data_pattern, not both")
    loaded = index_lib.load_index(
        FLAGS.index_dir, expected_fingerprint=index_lib.model_fingerprint(
            export_dir))
    query = "audio" if loaded.modality == "video" else "video"
    if query_modality != query and FLAGS.query_media:
        raise cli.FlagError(
            f"--index_dir={FLAGS.index_dir} holds {loaded.modality} "
            f"embeddings and --query_media={FLAGS.query_media} is "
            f"{query_modality}: search an index of the other modality")
    if query_modality != query:
        raise cli.FlagError(
            f"--index_dir={FLAGS.index_dir} holds {loaded.modality} "
            f"embeddings: pass --query_modality={query}")
    return loaded


def run():
    """The command's entry point (root script and console script)."""
    cli.run(main)


if __name__ == "__main__":
    run()
