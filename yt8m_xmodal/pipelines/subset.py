r"""The music subset of YouTube-8M as an Apache Beam pipeline.

    python -m yt8m_xmodal.pipelines.subset \
        --input_data_pattern='gs://bucket/yt8m/frame/train*.tfrecord' \
        --output_dir=gs://bucket/yt8m_music --runner=DataflowRunner ...

The same rules, splits and output records as the single-process tool
(`yt8m_xmodal.subset`, whose functions it calls) and the same flags
(`SubsetConfig`); Beam's own flags pick the runner. Only small per-record
metadata is shuffled, in hash-bucket lists; with the same --num_shards the
shards are byte-identical to the tool's, and every transform is
deterministic, so retried bundles rewrite the same bytes. The pipeline's
shape: docs/design.md, "Beam subset pipeline".
"""

import collections
import itertools
import json
import os
import time
import typing

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import tensorflow as tf

from yt8m_xmodal import pipelines
from yt8m_xmodal import subset
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError

COMMAND = "python -m yt8m_xmodal.pipelines.subset"
# Buckets of the id key (and of the audio hash) that the shuffles group by:
# ranges of a uniform hash, so balanced. 16 buckets: at full scale (6.1M
# videos in 3,844 files) a bucket holds at most ~380k records' metadata
# (~100 MB in one worker when every label is selected) and the copy choice
# and ranking, about a percent of the scan's work, run 16-way parallel; each
# file's records go in at most 16 lists (~100 records each there) instead of
# one shuffled element per record. A fixed count keeps the elements per file
# the same whatever the input's size.
_BUCKET_BITS = 4

_SKIPPED, _STATS, _AUDIO = "skipped", "stats", "audio"


def merge_counts(counters):
    """Sums dicts of counts (a CombineGlobally function)."""
    total = collections.Counter()
    for counter in counters:
        total.update(counter)
    return dict(total)


def bucket_lists(values, keys):
    """[(bucket, [values...])] of `values` grouped by the bucket of their
    64-bit `keys`, in bucket order (each list in input order)."""
    lists = collections.defaultdict(list)
    shift = 64 - _BUCKET_BITS
    for value, key in zip(values, keys):
        lists[key >> shift].append(value)
    return sorted(lists.items())


def audio_buckets(pairs):
    """[(bucket, bytes)] of a file's (audio hash, id key) pairs (an [n, 2]
    uint64 array) by the bucket of the audio hash; the bytes hold the
    bucket's pairs as uint64s."""
    buckets = pairs[:, 0] >> np.uint64(64 - _BUCKET_BITS)
    return [(int(b), pairs[buckets == b].tobytes())
            for b in np.unique(buckets)]


def silent_vectors(chunks, min_videos):
    """`repeated_audio` over one audio-hash bucket: the pairs (as
    `audio_buckets` gives them) from every file. Exact, since every pair of
    one audio vector is in the same bucket."""
    pairs = np.frombuffer(b"".join(chunks), np.uint64)
    return subset.repeated_audio(pairs, min_videos).items()


# Mixed main and tagged outputs: no element type to infer.
@beam.typehints.with_output_types(typing.Any)
class _ScanFile(beam.DoFn):
    """Pass 1 over one file, as the tool's."""

    def __init__(self, args):
        self._args = args

    def setup(self):
        pipelines.hide_logged_input_errors()
        self._summarize = self._args.summarize_fn()

    def process(self, element):
        file_index, path = element
        try:
            scan, skip = subset.scan_or_skip(self._args, path, file_index,
                                             self._summarize)
        except (ConfigError, DataError) as e:
            raise pipelines.marked(e) from None
        if skip:
            yield beam.pvalue.TaggedOutput(_SKIPPED, skip)
            return
        yield beam.pvalue.TaggedOutput(
            _STATS, {"records_read": scan.records_read, **scan.dropped})
        pairs = np.frombuffer(scan.audio_pairs, np.uint64).reshape(-1, 2)
        for bucket in audio_buckets(pairs):
            yield beam.pvalue.TaggedOutput(_AUDIO, bucket)
        records = zip(scan.ids, scan.keys, scan.digests, scan.audio_hashes,
                      scan.files, scan.offsets, scan.lengths, scan.labels)
        yield from bucket_lists(records, scan.keys)


# Mixed main and tagged outputs: no element type to infer.
@beam.typehints.with_output_types(typing.Any)
class _ChooseCopies(beam.DoFn):
    """Rules 3 (repeated audio) and 4 (one copy per id) for the ids of one
    key bucket; their kept records per split, in (key, id) order."""

    def __init__(self, split_fractions):
        self._split_fractions = split_fractions

    def process(self, element, silent):
        bucket, lists = element
        # (key, id) order, and each id's copies in file order, as the tool
        # sees them (equal digests are equal bytes).
        records = sorted(itertools.chain.from_iterable(lists),
                         key=lambda r: (r[1], r[0], r[4], r[5]))
        kept = collections.defaultdict(list)
        stats = collections.Counter()
        for video_id, copies in itertools.groupby(records,
                                                  key=lambda r: r[0]):
            copies = list(copies)
            chosen, silent_copies, duplicates = subset.resolve_copies(
                [c[3] for c in copies], [c[2] for c in copies], silent)
            stats["no_audio_signal"] += silent_copies
            stats["duplicate_id"] += duplicates
            if chosen is not None:
                split = subset.split_of(video_id, self._split_fractions)
                # (digest, file, offset, length, labels)
                kept[split].append(copies[chosen][2:3] + copies[chosen][4:])
        yield beam.pvalue.TaggedOutput(_STATS, dict(stats))
        for split, records in kept.items():
            yield (split, bucket), records


def _rank(element, bucket_counts, num_shards):
    """Ranks one (split, bucket) list within its split; one list per shard
    it deals to."""
    (split, bucket), records = element
    start = sum(n for (s, b), n in bucket_counts.items()
                if s == split and b < bucket)
    shards = num_shards[split]
    lists = collections.defaultdict(list)
    for rank, record in enumerate(records, start):
        lists[rank % shards].append((rank,) + tuple(record))
    for shard, ranked in sorted(lists.items()):
        yield (split, shard), ranked


# Mixed main and tagged outputs: no element type to infer.
@beam.typehints.with_output_types(typing.Any)
class _WriteShard(beam.DoFn):
    """Writes one output shard in rank order from the input files."""

    def __init__(self, paths, output_dir):
        self._paths = list(paths)
        self._output_dir = output_dir

    def setup(self):
        pipelines.hide_logged_input_errors()

    def process(self, element, num_shards):
        (split, shard), lists = element
        records = sorted(itertools.chain.from_iterable(lists))
        path = writers.shard_path(self._output_dir, split, shard,
                                  num_shards[split])
        fetcher = subset.RecordFetcher(self._paths)
        labels = collections.Counter()
        try:
            # Rewritten whole when a retried bundle comes back here.
            with tf.io.TFRecordWriter(path) as writer:
                for _, digest, file_index, offset, length, chosen in records:
                    writer.write(fetcher.read(
                        file_index, offset, length,
                        digest.to_bytes(8, "big")))
                    for index in chosen:
                        labels[(index, split)] += 1
        except DataError as e:
            raise pipelines.marked(e) from None
        finally:
            fetcher.close()
        yield beam.pvalue.TaggedOutput(_STATS, {("label",) + k: n
                                               for k, n in labels.items()})
        yield {"split": split, "shard": shard, "file": os.path.basename(path),
               "records": len(records), "sha256": writers.file_sha256(path)}


class _Finish(beam.DoFn):
    """Writes the empty shards no record went to, then manifest.json."""

    def __init__(self, args, output_dir, input_data_pattern, num_shards):
        self._args = args
        self._output_dir = output_dir
        self._pattern = input_data_pattern
        self._num_shards = num_shards

    def setup(self):
        pipelines.hide_logged_input_errors()

    def process(self, unused_element, shard_infos, stats, skipped, silent,
                counts):
        args = self._args
        skipped = sorted(skipped, key=lambda s: s["file"])
        if args.paths and len(skipped) == len(args.paths):
            raise pipelines.marked(subset.no_readable_input(self._pattern,
                                                            skipped))
        written = {(s["split"], s["shard"]): s for s in shard_infos}
        shards = {}
        for split in subset.SPLITS:
            shards[split] = []
            for shard in range(counts[split]):
                info = written.get((split, shard))
                if info is None:
                    path = writers.shard_path(self._output_dir, split, shard,
                                              counts[split])
                    with tf.io.TFRecordWriter(path):
                        pass
                    info = {"file": os.path.basename(path), "records": 0,
                            "sha256": writers.file_sha256(path)}
                shards[split].append({k: info[k]
                                      for k in ("file", "records", "sha256")})
        kept = {split: sum(s["records"] for s in shards[split])
                for split in subset.SPLITS}
        label_counts = collections.defaultdict(collections.Counter)
        for key, n in stats.items():
            if isinstance(key, tuple) and key[0] == "label":
                label_counts[key[1]][key[2]] += n
        dropped = {r: n for r, n in stats.items() if isinstance(r, str)}
        manifest = subset.build_manifest(
            args, COMMAND, self._num_shards or dict(counts), skipped,
            stats.get("records_read", 0), kept, dropped, label_counts, shards,
            dict(silent))
        subset.write_manifest(self._output_dir, manifest)
        yield manifest


def build_pipeline(pipeline, args, input_data_pattern, output_dir,
                   num_shards=None,
                   target_shard_mb=subset.DEFAULT_TARGET_SHARD_MB):
    """Adds the subset transforms to `pipeline`.

    Args:
      pipeline: a `beam.Pipeline`.
      args: `subset.Arguments` from `subset.check_arguments`.
      input_data_pattern: the pattern `args.paths` came from (for messages).
      output_dir: where shards and manifest.json go (created, and cleared
        by the caller).
      num_shards: shards per split; None sizes them by `target_shard_mb`.

    Returns:
      The PCollection holding the manifest (one dict).
    """
    files = (pipeline
             | "Files" >> beam.Create(list(enumerate(args.paths)))
             | "SpreadFiles" >> beam.Reshuffle())
    scanned = files | "Scan" >> beam.ParDo(_ScanFile(args)).with_outputs(
        _SKIPPED, _STATS, _AUDIO, main="candidates")

    silent = (scanned[_AUDIO]
              | "GroupByAudio" >> beam.GroupByKey()
              | "RepeatedAudio" >> beam.FlatMap(
                  lambda kv, n: silent_vectors(kv[1], n),
                  args.repeated_audio_min_videos))

    chosen = (scanned.candidates
              | "GroupByBucket" >> beam.GroupByKey()
              | "ChooseCopies" >> beam.ParDo(
                  _ChooseCopies(args.split_fractions),
                  silent=beam.pvalue.AsDict(silent)).with_outputs(
                      _STATS, main="kept"))
    kept = chosen.kept

    if num_shards:
        counts = pipeline | "ShardCounts" >> beam.Create(
            [subset.shard_counts({}, num_shards)])
    else:
        split_bytes = (kept
                       | "SplitBytes" >> beam.Map(
                           lambda kv: (kv[0][0], sum(r[3] for r in kv[1])))
                       | "SumBytes" >> beam.CombinePerKey(sum))
        counts = (pipeline
                  | "One" >> beam.Create([None])
                  | "ShardCounts" >> beam.Map(
                      lambda _, b: subset.shard_counts(b, None, target_shard_mb),
                      b=beam.pvalue.AsDict(split_bytes)))
    counts = beam.pvalue.AsSingleton(counts)

    # One kept list per (split, bucket): its length is the bucket's count.
    bucket_counts = kept | "CountBuckets" >> beam.Map(
        lambda kv: (kv[0], len(kv[1])))
    shard_infos = (kept
                   | "Rank" >> beam.FlatMap(
                       _rank, beam.pvalue.AsDict(bucket_counts), counts)
                   | "GroupByShard" >> beam.GroupByKey()
                   | "WriteShards" >> beam.ParDo(
                       _WriteShard(args.paths, output_dir),
                       counts).with_outputs(_STATS, main="shards"))

    stats = ((scanned[_STATS], chosen[_STATS], shard_infos[_STATS])
             | "AllStats" >> beam.Flatten()
             | "SumStats" >> beam.CombineGlobally(merge_counts))
    # Side inputs read through a plain step: BundleBasedDirectRunner (used
    # to test retries) mixes all of a multi-output ParDo's outputs into a
    # side input read straight off one of them.
    shards = shard_infos.shards | "ShardInfos" >> beam.Map(lambda x: x)
    skipped = scanned[_SKIPPED] | "Skipped" >> beam.Map(lambda x: x)
    return (pipeline
            | "Manifest" >> beam.Create([None])
            | "WriteManifest" >> beam.ParDo(
                _Finish(args, output_dir, input_data_pattern, num_shards),
                beam.pvalue.AsList(shards),
                beam.pvalue.AsSingleton(stats),
                beam.pvalue.AsList(skipped),
                beam.pvalue.AsDict(silent), counts))


def run(argv=None):
    """Parses `argv` (the tool's flags, `subset.SubsetConfig`, and Beam's),
    runs the pipeline and waits; returns the manifest.

    Raises:
      ConfigError, DataError: for bad arguments, named as flags.
      Exception: whatever the runner raises for a failed transform; bad
        input inside one carries a message `pipelines.user_message` finds.
    """
    cfg, beam_args = pipelines.parse_config(subset.SubsetConfig, argv,
                                            COMMAND, __doc__)
    args = subset.check_arguments(cfg.input_data_pattern, **cfg.arguments())
    subset.clear_output(cfg.output_dir, cfg.overwrite)
    tf.io.gfile.makedirs(cfg.output_dir)
    started = time.monotonic()
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build_pipeline(pipeline, args, cfg.input_data_pattern,
                       cfg.output_dir, cfg.num_shards, cfg.target_shard_mb)
    path = os.path.join(cfg.output_dir, subset.MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise DataError(f"the pipeline finished without writing {path}")
    with tf.io.gfile.GFile(path) as f:
        manifest = json.load(f)
    print(f"subset: {subset.summary_line(manifest, time.monotonic() - started)}")
    return manifest


def main(argv=None):
    """The command: exit status 0, or 2 with one line for bad input."""
    return pipelines.run_main(lambda a: run(a) and 0, argv, COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
