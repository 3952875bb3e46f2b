r"""Batch embedding of YouTube-8M records with Beam's RunInference.

    python -m yt8m_xmodal.pipelines.embed \
        --input_data_pattern='gs://bucket/yt8m_music/test-*.tfrecord' \
        --train_dir=gs://bucket/run --output_prefix=gs://bucket/emb/test \
        --runner=DataflowRunner --project=P --region=R \
        --temp_location=gs://bucket/tmp

More: docs/design.md, "Beam embedding pipeline".
"""

import dataclasses
import math
import os
import time
import typing

import apache_beam as beam
from apache_beam.ml.inference import base as inference_base
from apache_beam.ml.inference import tensorflow_inference
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import embeddings
from yt8m_xmodal import modeling
from yt8m_xmodal import pipelines
from yt8m_xmodal import readers
from yt8m_xmodal import subset
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError

COMMAND = "python -m yt8m_xmodal.pipelines.embed"
DEFAULT_BATCH_SIZE = 256
# 100k videos of two 256-d float32 embeddings are ~200 MB per shard.
DEFAULT_RECORDS_PER_SHARD = 100_000


def shard_path(output_prefix, index, num_shards):
    """`<output_prefix>-00000-of-00016.npz`."""
    return writers.shard_path(*os.path.split(output_prefix), index,
                              num_shards, extension=".npz")


def serve_batch(model, batch, inference_args, model_id=None):
    """RunInference's inference function: one call of the serving signature
    on a batch of serialized records; one PredictionResult per record with
    the inference (id str, audio [k], video [k])."""
    out = model(serialized=tf.constant(list(batch), tf.string),
                **inference_args)
    ids = [x.decode() for x in out["id"].numpy()]
    audio = out["audio"].numpy().astype(np.float32)
    video = out["video"].numpy().astype(np.float32)
    return [inference_base.PredictionResult(record, (ids[i], audio[i],
                                                     video[i]), model_id)
            for i, record in enumerate(batch)]


class ServingModelHandler(tensorflow_inference.TFModelHandlerTensor):
    """TFModelHandlerTensor on an export's `serving_default` signature.

    The stock handler loads a Keras model; the export is a plain SavedModel
    whose signature parses serialized records, so it is loaded as inference
    loads it (`modeling.load_signatures`).
    """

    def __init__(self, export_dir, batch_size=DEFAULT_BATCH_SIZE):
        super().__init__(
            os.path.join(export_dir, modeling.SAVED_MODEL_DIR),
            inference_fn=serve_batch, min_batch_size=1,
            max_batch_size=batch_size)
        self._export_dir = export_dir

    def load_model(self):
        try:
            return modeling.load_signatures(
                self._export_dir)["serving_default"]
        except DataError as e:
            raise pipelines.marked(e) from None


# Records, or marked errors: no element type to infer.
@beam.typehints.with_output_types(typing.Any)
class _ReadFile(beam.DoFn):
    """Yields the serialized records of one file, in file order."""

    def setup(self):
        pipelines.hide_logged_input_errors()

    def process(self, path):
        try:
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
                yield record
        except tf.errors.OpError as e:
            raise pipelines.marked(DataError(
                f"{path} is corrupt or truncated: "
                f"{readers.tf_error_detail(readers.tf_error_message(e))}")
            ) from None


def _check(result):
    video_id, audio, video = result.inference
    try:
        embeddings.check_finite(f"record id {video_id!r}", [video_id],
                              {"audio": audio[None], "video": video[None]})
    except DataError as e:
        raise pipelines.marked(e) from None
    return video_id, audio, video


def _shard_of(row, num_shards):
    return subset.id_key(row[0]) % num_shards, row


class _WriteShard(beam.DoFn):

    def __init__(self, output_prefix):
        self._output_prefix = output_prefix

    def process(self, element, num_shards):
        shard, rows = element
        rows = sorted(rows, key=lambda r: r[0])
        embeddings.save_embeddings(
            shard_path(self._output_prefix, shard, num_shards),
            [r[0] for r in rows], audio=np.stack([r[1] for r in rows]),
            video=np.stack([r[2] for r in rows]))
        yield shard, len(rows), rows[0][1].shape[0], rows[0][2].shape[0]


def _write_empty(unused, written, num_shards, output_prefix):
    """Writes the shards no id hashed to (with the embedding sizes)."""
    done = {shard for shard, *_ in written}
    dims = (written[0][2], written[0][3]) if written else (0, 0)
    for shard in range(num_shards):
        if shard not in done:
            embeddings.save_embeddings(
                shard_path(output_prefix, shard, num_shards), [],
                audio=np.zeros((0, dims[0]), np.float32),
                video=np.zeros((0, dims[1]), np.float32))
    yield sum(n for _, n, *_ in written)


def build_pipeline(pipeline, paths, export_dir, output_prefix,
                   batch_size=DEFAULT_BATCH_SIZE, num_shards=None,
                   records_per_shard=DEFAULT_RECORDS_PER_SHARD):
    """Adds the embedding transforms to `pipeline`; returns the PCollection
    of the number of records embedded (one int)."""
    rows = (pipeline
            | "Files" >> beam.Create(list(paths))
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(_ReadFile())
            | "SpreadRecords" >> beam.Reshuffle()
            | "Embed" >> inference_base.RunInference(
                ServingModelHandler(export_dir, batch_size))
            | "Check" >> beam.Map(_check))
    if num_shards:
        counts = pipeline | "NumShards" >> beam.Create([num_shards])
    else:
        counts = (rows
                  | "Count" >> beam.combiners.Count.Globally()
                  | "NumShards" >> beam.Map(
                      lambda n: max(1, math.ceil(n / records_per_shard))))
    counts = beam.pvalue.AsSingleton(counts)
    written = (rows
               | "KeyByShard" >> beam.Map(_shard_of, counts)
               | "GroupByShard" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(_WriteShard(output_prefix),
                                             counts))
    return (pipeline
            | "One" >> beam.Create([None])
            | "WriteEmptyShards" >> beam.FlatMap(
                _write_empty, beam.pvalue.AsList(written), counts,
                output_prefix))


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
    """The batch-embedding pipeline's options (Beam's own pass through)."""

    input_data_pattern: str = config_lib.option(
        "", "Comma-separated globs of YT8M TFRecord files (gs:// works).")
    train_dir: str = config_lib.option(
        "", "The directory train.py wrote; its newest export is used.")
    export_dir: str = config_lib.option(
        "", "An export directory (holding saved_model/); overrides "
        "--train_dir.")
    output_prefix: str = config_lib.option(
        "", "Shards are <prefix>-NNNNN-of-MMMMM.npz (gs:// works).")
    batch_size: int = config_lib.option(
        DEFAULT_BATCH_SIZE, "Most records per model call.")
    num_shards: int | None = config_lib.option(
        None, "Output .npz shards. Unset: --records_per_shard each.")
    records_per_shard: int = config_lib.option(
        DEFAULT_RECORDS_PER_SHARD, "Records per output shard when "
        "--num_shards is not given.")

    def __post_init__(self):
        for name in ("input_data_pattern", "output_prefix"):
            if not getattr(self, name):
                raise ConfigError(f"{{{name}}} is required", **{name: ""})
        for name in ("batch_size", "num_shards", "records_per_shard"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{{{name}}} must be at least 1",
                                  **{name: value})
        if not (self.train_dir or self.export_dir):
            raise ConfigError("set {train_dir} or {export_dir}",
                              train_dir="", export_dir="")


def run(argv=None):
    """Parses `argv` (`EmbedConfig`'s flags and Beam's), runs the pipeline
    and waits; returns {"export_dir", "shards"}.

    Raises:
      ConfigError, DataError: for bad arguments, named as flags.
      Exception: whatever the runner raises for a failed transform; bad
        input inside one carries a message `pipelines.user_message` finds.
    """
    cfg, beam_args = pipelines.parse_config(EmbedConfig, argv, COMMAND,
                                            __doc__)
    if cfg.export_dir:
        export_dir = cfg.export_dir
        if not tf.io.gfile.isdir(os.path.join(export_dir,
                                              modeling.SAVED_MODEL_DIR)):
            raise ConfigError(f"{{export_dir}} holds no "
                              f"{modeling.SAVED_MODEL_DIR}",
                              export_dir=export_dir)
    else:
        export_dir = modeling.latest_export_or_error(cfg.train_dir)
    try:
        paths = readers.resolve_files(cfg.input_data_pattern)
    except DataError as e:
        raise subset.InputError(
            f"{{input_data_pattern}}: {e}",
            input_data_pattern=cfg.input_data_pattern) from None
    directory = os.path.dirname(cfg.output_prefix)
    if directory:
        tf.io.gfile.makedirs(directory)
    started = time.monotonic()
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build_pipeline(pipeline, paths, export_dir, cfg.output_prefix,
                       cfg.batch_size, cfg.num_shards, cfg.records_per_shard)
    shards = sorted(tf.io.gfile.glob(f"{cfg.output_prefix}-*-of-*.npz"))
    print(f"embed: {len(paths)} files embedded with {export_dir} into "
          f"{len(shards)} shards {cfg.output_prefix}-*.npz in "
          f"{time.monotonic() - started:.1f} s")
    return {"export_dir": export_dir, "shards": shards}


def main(argv=None):
    """The command: exit status 0, or 2 with one line for bad input."""
    return pipelines.run_main(lambda a: run(a) and 0, argv, COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
