"""Frame-level reading speed: our reader against a raw read and a tuned
starter-style reader, side by side in one run.

Writes `--num_videos` frame-level records of `--num_frames` random frames with
`yt8m_xmodal.writers` into a temporary directory, then reads the same shards
with:

  (a) ours: `readers.YT8MFrameFeatureReader` (the whole pipeline: shard
      bookkeeping, the batch parse's fast path, per-record checks, labels);
      (a') the same with the fast path off (every batch through the general
      `parse_sequence_example` parse);
  (b) starter-style: the YT8M starter code's per-record path
      (`tf.io.parse_single_sequence_example`, decode_raw, dequantize, pad to
      `max_frames`), tuned: parallel reads, an AUTOTUNE map, no ordering
      constraint. Two variants run, dequantizing per record (b1) or once
      per batch after batching the padded uint8 codes (b2); the faster one
      is the baseline;
  (c) raw: `tf.data.TFRecordDataset` records, no parsing (the floor of any
      reader: it only reads and CRC-checks the bytes), iterated one record at
      a time; (c') the same records batched.

Then the stages of (a), each timed as a pipeline that stops after it, so
that the CPU time per example of each step is the difference to the one
before: read (the reader's shard bookkeeping and batching, no parse), locate
(find each feature list), slice (cut out and decode each list, check the
frame headers, read the frames as uint8), dequantize (the fast-path parse with
float output).

A second table does the same for video-level records (`--num_video_level`
records of 1024 + 128 floats), where records are small and batching pays.

Each pipeline reads all records once as a warm-up (page cache, tf.data
autotuning), then `--repeats` timed passes; the best pass counts. Prints
markdown tables. Goals (frame level): (a) >= 1.5x (b) and (a) >= 50% of
(c)'s record rate.

    python bench/bench_reader.py --num_videos=2000 --cores=2
"""

import dataclasses
import glob
import os
import shutil
import tempfile
import sys
import time

if __package__ in (None, ""):
    # Run as `python bench/bench_reader.py`: time the package of this
    # checkout, not whichever one is installed.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))
from bench import fragments  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402



@dataclasses.dataclass(frozen=True)
class ReaderBenchConfig:
    """bench_reader.py's flags."""

    num_videos: int = option(2000, "Frame-level records to write.")
    num_frames: int = option(300, "Frames per record.")
    num_shards: int = option(16, "Shards to write.")
    batch_size: int = option(64, "Records per batch for (a) and (b).")
    repeats: int = option(5, "Timed passes per reader; the best counts.")
    cores: int = option(2, "Threads TensorFlow may use (inter and intra op, "
                        "and the tf.data private pool).")
    num_video_level: int = option(20000, "Video-level records for the "
                                  "second table (0: skip it).")
    video_level_batch_size: int = option(256, "Records per batch in the "
                                         "video-level table.")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR,
                             "Writes reader.md (the printed tables) and "
                             "reader.json here.")
    quick: bool = option(False, "Tiny sizes for smoke tests (64 videos x 10 "
                         "frames, 512 video-level records, 1 pass); the "
                         "outputs are marked as quick.")
    work_dir: str = option("", "Where to write the shards (default: a "
                           "temporary directory, removed afterwards).")


QUICK_SIZES = {"num_videos": 64, "num_frames": 10, "num_shards": 4,
               "batch_size": 16, "repeats": 1, "num_video_level": 512,
               "video_level_batch_size": 64}


def _write_shards(out_dir, num_videos, num_frames, num_shards):
    import numpy as np
    from yt8m_xmodal import features, writers

    rng = np.random.default_rng(0)
    video_size, audio_size = features.FEATURE_SIZES
    with writers.ShardedRecordWriter(out_dir, "bench", num_shards) as writer:
        for i in range(num_videos):
            video = rng.integers(0, 256, (num_frames, video_size), np.uint8)
            audio = rng.integers(0, 256, (num_frames, audio_size), np.uint8)
            labels = rng.choice(features.NUM_CLASSES, 3, replace=False)
            writer.write(writers.make_frame_example(
                f"{i:04x}", labels, video, audio))
    return writer.paths


def _per_record_pipeline(files, parse, batch_size, after_batch=None):
    """The starter code's pipeline shape, tuned: parallel reads, one record
    per AUTOTUNE map call, no ordering constraint, then batch."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=False)
    dataset = dataset.batch(batch_size)
    if after_batch is not None:
        dataset = dataset.map(after_batch, num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=False)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _starter_style_dataset(files, batch_size, dequantize_per_batch):
    """The starter code's frame-level reading, one record per map call.

    With `dequantize_per_batch` the map pads the uint8 codes and one
    dequantization per batch follows (a quarter of the bytes through the
    map and the batching).
    """
    import tensorflow as tf
    from yt8m_xmodal import features

    names, sizes = features.FRAME_FEATURE_NAMES, features.FEATURE_SIZES
    max_frames, num_classes = features.MAX_FRAMES, features.NUM_CLASSES

    def resize_axis(tensor, new_size):
        # utils.resize_axis: truncate or zero-pad axis 0.
        pad = tf.maximum(0, new_size - tf.shape(tensor)[0])
        tensor = tf.pad(tensor[:new_size], [[0, pad], [0, 0]])
        return tf.ensure_shape(tensor, [new_size, None])

    def parse(serialized):
        context, lists = tf.io.parse_single_sequence_example(
            serialized,
            context_features={
                "id": tf.io.FixedLenFeature([], tf.string),
                "labels": tf.io.VarLenFeature(tf.int64)},
            sequence_features={
                name: tf.io.FixedLenSequenceFeature([], tf.string)
                for name in names})
        labels = tf.sparse.to_indicator(context["labels"], num_classes)
        matrices = []
        num_frames = None
        for name, size in zip(names, sizes):
            codes = tf.io.decode_raw(lists[name], tf.uint8, fixed_length=size)
            frames = tf.minimum(tf.shape(codes)[0], max_frames)
            num_frames = frames if num_frames is None else tf.minimum(
                num_frames, frames)
            codes = resize_axis(codes, max_frames)
            matrices.append(codes if dequantize_per_batch
                            else features.dequantize(codes))
        mask = tf.range(max_frames) < num_frames
        return {"id": context["id"], "video": matrices[0],
                "audio": matrices[1], "num_frames": num_frames, "mask": mask,
                "labels": tf.cast(labels, tf.float32)}

    def dequantize(batch):
        batch = dict(batch)
        for key in ("video", "audio"):
            batch[key] = features.dequantize(batch[key])
        return batch

    return _per_record_pipeline(
        files, parse, batch_size,
        dequantize if dequantize_per_batch else None)


def _stage_datasets(reader, files, batch_size):
    """(name, make dataset) for each stage of our reader, cumulative: each
    pipeline stops after its stage (see the module docstring)."""
    import tensorflow as tf
    from yt8m_xmodal.readers import wire

    sizes = tf.constant([os.path.getsize(f) for f in files], tf.int64)

    def read():
        shards = tf.data.Dataset.from_tensor_slices((tf.constant(files), sizes))
        records = shards.interleave(
            reader._shard_records, cycle_length=min(len(files), 8),
            num_parallel_calls=tf.data.AUTOTUNE)
        return records.rebatch(batch_size)

    def with_map(stage):
        def make():
            return read().map(lambda paths, indices, serialized: stage(
                serialized), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                    tf.data.AUTOTUNE)
        return make

    def locate(serialized):
        return wire.locate_lists(serialized, reader.feature_names,
                                 reader._layout)

    def slice_frames(serialized):
        fast, located, blocks = reader._fast_path(serialized)
        num_frames, mask = reader._frame_mask(
            [located["video_frames"], located["audio_frames"]])
        out = {"fast": fast, "num_frames": num_frames}
        for view in ("video", "audio"):
            out[view] = wire.regular_frames(
                blocks[view], mask, *reader._layout[view], dequantize=False)
        return out

    def dequantize(serialized):
        names = tf.strings.as_string(tf.range(tf.shape(serialized)[0]))
        batch, reasons, _ = reader._parse_batch(names, serialized)
        return dict(batch, reasons=reasons)

    return [("read", lambda: read().prefetch(tf.data.AUTOTUNE)),
            ("locate", with_map(locate)),
            ("slice", with_map(slice_frames)),
            ("dequantize", with_map(dequantize))]


def _write_video_level_shards(out_dir, num_videos, num_shards):
    import numpy as np
    from yt8m_xmodal import features, writers

    rng = np.random.default_rng(1)
    video_size, audio_size = features.FEATURE_SIZES
    with writers.ShardedRecordWriter(out_dir, "bench_video", num_shards) as w:
        for i in range(num_videos):
            w.write(writers.make_video_example(
                f"{i:05x}", rng.choice(features.NUM_CLASSES, 3, replace=False),
                rng.normal(size=video_size), rng.normal(size=audio_size)))
    return w.paths


def _starter_style_video_dataset(files, batch_size):
    """The starter code's video-level path, one record per map call."""
    import tensorflow as tf
    from yt8m_xmodal import features

    spec = features.video_level_features()

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        labels = tf.sparse.to_indicator(parsed["labels"], features.NUM_CLASSES)
        return {"id": parsed["id"], "video": parsed["mean_rgb"],
                "audio": parsed["mean_audio"],
                "labels": tf.cast(labels, tf.float32)}

    return _per_record_pipeline(files, parse, batch_size)


def _raw_dataset(files, batch_size=None):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _with_cores(dataset, cores):
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    return dataset.with_options(options)


def _count(element):
    """Records in an element: a record, or a batch of any structure."""
    import tensorflow as tf

    first = tf.nest.flatten(element)[0]
    return int(first.shape[0]) if first.shape.rank else 1


def _time_readers(makers, flags):
    """{name: (records/s of the best pass, CPU ms per record of that pass,
    records)} for each (name, make dataset).

    The passes go round-robin over the readers, so that a change in the
    load of a shared machine hits them alike. CPU time (all threads of this
    process) is reported beside wall time because other jobs slow the wall
    clock, not it.
    """
    datasets, records = {}, {}
    for name, make in makers:
        datasets[name] = _with_cores(make(), flags.cores)
        records[name] = sum(_count(e) for e in datasets[name])  # warm-up
    best = {name: (float("inf"), None) for name in datasets}
    for _ in range(flags.repeats):
        for name, dataset in datasets.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            n = sum(_count(e) for e in dataset)
            wall = time.perf_counter() - start
            cpu = time.process_time() - start_cpu
            assert n == records[name], (name, n, records[name])
            if wall < best[name][0]:
                best[name] = (wall, cpu)
    return {name: (records[name] / wall, 1000 * cpu / records[name],
                   records[name])
            for name, (wall, cpu) in best.items()}


def main(argv=None):
    flags = fragments.parse_flags(ReaderBenchConfig, __doc__, argv)
    if flags.quick:
        flags = dataclasses.replace(flags, **QUICK_SIZES)
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(flags.cores)
    tf.config.threading.set_intra_op_parallelism_threads(flags.cores)
    from yt8m_xmodal import readers

    work_dir = flags.work_dir or tempfile.mkdtemp(prefix="bench_reader_")
    try:
        start = time.perf_counter()
        files = sorted(glob.glob(os.path.join(work_dir, "bench-*.tfrecord")))
        if len(files) != flags.num_shards:  # else reuse --work_dir's shards
            files = _write_shards(work_dir, flags.num_videos, flags.num_frames,
                                  flags.num_shards)
        megabytes = sum(os.path.getsize(f) for f in files) / 1e6
        print(f"shards of {flags.num_videos} videos x {flags.num_frames} frames "
              f"({megabytes:.0f} MB, {len(files)} shards) ready in "
              f"{time.perf_counter() - start:.1f} s")
        pattern = os.path.join(work_dir, "bench-*.tfrecord")
        printed, figures = fragments.capture_stdout(), {}
        # Process-wide, so every row below reads with the same allocator.
        tuned = readers.tune_allocator()
        print(f"glibc malloc tuned by readers.tune_allocator() for every "
              f"row: {tuned}")
        reader = readers.YT8MFrameFeatureReader()
        # The same reader with its fast path off: every batch through the
        # general parse (parse_sequence_example), to see what the fast path
        # gains in the whole pipeline.
        general = readers.YT8MFrameFeatureReader()
        general._layout = None
        contenders = [
            ("(a) ours: YT8MFrameFeatureReader", "ours",
             lambda: reader.dataset(pattern, flags.batch_size)),
            ("(a') ours, fast path off (general parse only)", "ours_general",
             lambda: general.dataset(pattern, flags.batch_size)),
            ("(b1) starter-style, tuned: per-record parse and dequantize",
             "starter", lambda: _starter_style_dataset(
                 files, flags.batch_size, dequantize_per_batch=False)),
            ("(b2) starter-style, tuned: per-record parse, dequantize per "
             "batch", "starter", lambda: _starter_style_dataset(
                 files, flags.batch_size, dequantize_per_batch=True)),
            ("(c) raw TFRecordDataset, no parsing", "raw",
             lambda: _raw_dataset(files)),
            ("(c') raw TFRecordDataset, batched, no parsing", "raw_batched",
             lambda: _raw_dataset(files, flags.batch_size)),
        ]
        title = (f"Frame-level reading, {flags.num_videos} videos x "
                 f"{flags.num_frames} frames, batch {flags.batch_size}")
        figures["frame_level"] = _compare(contenders, flags.num_videos, title,
                                          flags, starter_goal=1.5)
        figures["frame_level_stages"] = _stages(
            _stage_datasets(reader, files, flags.batch_size),
            figures["frame_level"], flags.num_videos, flags)
        if flags.num_video_level:
            files = sorted(glob.glob(os.path.join(work_dir,
                                                  "bench_video-*.tfrecord")))
            if len(files) != flags.num_shards:
                files = _write_video_level_shards(
                    work_dir, flags.num_video_level, flags.num_shards)
            pattern = os.path.join(work_dir, "bench_video-*.tfrecord")
            video_reader = readers.YT8MAggregatedFeatureReader()
            batch = flags.video_level_batch_size
            figures["video_level"] = _compare([
                ("(a) ours: YT8MAggregatedFeatureReader (batch parse)",
                 "ours", lambda: video_reader.dataset(pattern, batch)),
                ("(b) starter-style: parse_single_example per record",
                 "starter", lambda: _starter_style_video_dataset(files,
                                                                 batch)),
                ("(c) raw TFRecordDataset, no parsing", "raw",
                 lambda: _raw_dataset(files)),
                ("(c') raw TFRecordDataset, batched, no parsing",
                 "raw_batched", lambda: _raw_dataset(files, batch)),
            ], flags.num_video_level,
                f"Video-level reading, {flags.num_video_level} records of "
                f"1024 + 128 floats, batch {batch}", flags)
        fragments.write(flags.output_dir, "reader", printed.stop(), dict(
            figures, cores=flags.cores, repeats=flags.repeats,
            allocator_tuned=tuned,
            num_shards=flags.num_shards), flags.quick)
    finally:
        if not flags.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def _compare(contenders, num_records, title, flags, starter_goal=None):
    """Times the (name, role, make) contenders and prints the markdown table
    and the goals. Of several starter-style rows the fastest is (b), the
    baseline; the others get the role "starter_variant"."""
    timed = _time_readers([(name, make) for name, _, make in contenders],
                          flags)
    rates = {name: timed[name][0] for name in timed}
    roles = {name: role for name, role, _ in contenders}
    starters = [name for name in rates if roles[name] == "starter"]
    starter_name = max(starters, key=rates.get)
    for name in starters:
        if name != starter_name:
            roles[name] = "starter_variant"
    by_role = {roles[name]: rates[name] for name in rates}
    ours, starter = by_role["ours"], by_role["starter"]
    raw, raw_batched = by_role["raw"], by_role["raw_batched"]
    print()
    print(f"{title}, {flags.cores} cores, best of {flags.repeats} passes "
          "(round-robin)")
    print()
    print("| reader | examples/s | vs (b) | vs (c) | vs (c') "
          "| CPU ms/example |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rate in rates.items():
        shown = f"**{name}** (= (b))" if name == starter_name and len(
            starters) > 1 else name
        print(f"| {shown} | {rate:,.0f} | {rate / starter:.2f}x | "
              f"{100 * rate / raw:.0f}% | {100 * rate / raw_batched:.0f}% | "
              f"{timed[name][1]:.3f} |")
    print()
    if starter_goal:
        print(f"goal (a) >= {starter_goal:g}x (b): {ours / starter:.2f}x "
              f"{'met' if ours >= starter_goal * starter else 'NOT met'}; "
              f"goal (a) >= 50% of (c): {100 * ours / raw:.0f}% "
              f"{'met' if ours >= 0.5 * raw else 'NOT met'} "
              f"({100 * ours / raw_batched:.0f}% of (c'))")
    else:
        print(f"(a) is {ours / starter:.2f}x (b) and {100 * ours / raw:.0f}% "
              f"of (c) ({100 * ours / raw_batched:.0f}% of (c'))")
    return {"title": title, "num_records": num_records,
            "starter_goal": starter_goal, "rows": [
                {"reader": name, "role": roles[name],
                 "examples_per_s": rates[name],
                 "cpu_ms_per_example": timed[name][1]}
                for name in rates]}


def _stages(stages, table, num_records, flags):
    """Times the cumulative stage pipelines of (a) and prints the CPU ms per
    example each stage adds."""
    timed = _time_readers(stages, flags)
    for name, (_, _, records) in timed.items():
        assert records == num_records, (name, records)
    rows = {row["role"]: row for row in table["rows"]}
    print()
    print(f"Where (a)'s CPU time goes, frame level, best of {flags.repeats} "
          "passes; each stage is a pipeline that stops after it")
    print()
    print("| stage | CPU ms/example, cumulative | added by the stage |")
    print("|---|---:|---:|")
    print(f"| (c') raw read, batched, for reference | "
          f"{rows['raw_batched']['cpu_ms_per_example']:.3f} | |")
    before, out = 0.0, []
    descriptions = {
        "read": "read: shard bookkeeping, chunks, rebatch",
        "locate": "locate: find each feature list (varints)",
        "slice": "slice: cut out each list, check frame headers, uint8 frames",
        "dequantize": "dequantize: the fast-path parse, float32 output",
    }
    for name, (_, cpu, _) in timed.items():
        print(f"| {descriptions[name]} | {cpu:.3f} | {cpu - before:+.3f} |")
        out.append({"stage": name, "cpu_ms_per_example": cpu,
                    "added_cpu_ms_per_example": cpu - before})
        before = cpu
    ours = rows["ours"]["cpu_ms_per_example"]
    print(f"| (a) the whole reader: + context, labels, per-record checks | "
          f"{ours:.3f} | {ours - before:+.3f} |")
    return {"rows": out}


if __name__ == "__main__":
    main()
