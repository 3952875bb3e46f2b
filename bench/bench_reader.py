"""Frame-level reading speed: our batch-parsing reader against two baselines.

Writes `--num_videos` frame-level records of `--num_frames` random frames with
`yt8m_xmodal.writers` into a temporary directory, then reads the same shards,
side by side in one run, with:

  (a) ours: `readers.YT8MFrameFeatureReader` (parse and dequantize whole
      batches: parse_sequence_example + one decode_raw per batch);
  (b) starter-style: the YT8M starter code's per-record path,
      `tf.io.parse_single_sequence_example` + decode_raw + resize +
      dequantize on each record (parallel map, same parallelism as ours),
      then batch;
  (c) raw: `tf.data.TFRecordDataset` records, no parsing (the floor of any
      reader: it only reads and CRC-checks the bytes), iterated one record at
      a time as the goal states;
  (c') the same records batched (still no parsing), so Python's per-element
      iteration cost does not flatter (a): the stricter floor.

A second table does the same for video-level records (`--num_video_level`
records of 1024 + 128 floats), where records are small and batching pays.

Each reader reads all records once as a warm-up (page cache, tf.data
autotuning), then `--repeats` timed passes; the best pass counts. Prints a
markdown table. Goals: (a) >= 3x (b) and (a) >= 50% of (c)'s record rate.

    python bench/bench_reader.py --num_videos=2000 --cores=2
"""

import glob
import os
import shutil
import tempfile
import time

from absl import app
from absl import flags

try:
    from bench import fragments
except ImportError:  # run as `python bench/bench_reader.py`
    import fragments

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_videos", 2000, "Frame-level records to write.")
flags.DEFINE_integer("num_frames", 300, "Frames per record.")
flags.DEFINE_integer("num_shards", 16, "Shards to write.")
flags.DEFINE_integer("batch_size", 64, "Records per batch for (a) and (b).")
flags.DEFINE_integer("repeats", 3, "Timed passes per reader; the best counts.")
flags.DEFINE_integer("cores", 2, "Threads TensorFlow may use (inter and "
                     "intra op, and the tf.data private pool).")
flags.DEFINE_integer("num_video_level", 20000,
                     "Video-level records for the second table (0: skip it).")
flags.DEFINE_integer("video_level_batch_size", 256,
                     "Records per batch in the video-level table.")
flags.DEFINE_string("output_dir", fragments.DEFAULT_OUTPUT_DIR,
                    "Writes reader.md (the printed tables) and reader.json here.")
flags.DEFINE_boolean("quick", False, "Tiny sizes for smoke tests (64 videos "
                     "x 10 frames, 512 video-level records, 1 pass); the "
                     "outputs are marked as quick.")
flags.DEFINE_string("work_dir", None, "Where to write the shards (default: a "
                    "temporary directory, removed afterwards).")


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


def _per_record_pipeline(files, parse, batch_size):
    """The starter code's pipeline shape: parse one record per map call."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _starter_style_dataset(files, batch_size):
    """The starter code's frame-level reading, one record per map call."""
    import tensorflow as tf
    from yt8m_xmodal import features

    names, sizes = features.FRAME_FEATURE_NAMES, features.FEATURE_SIZES
    max_frames, num_classes = features.MAX_FRAMES, features.NUM_CLASSES

    def resize_axis(tensor, new_size):
        # utils.resize_axis: truncate or zero-pad axis 0.
        shape = tf.shape(tensor)
        pad = tf.maximum(0, new_size - shape[0])
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
            codes = tf.reshape(tf.io.decode_raw(lists[name], tf.uint8),
                               [-1, size])
            frames = tf.minimum(tf.shape(codes)[0], max_frames)
            num_frames = frames if num_frames is None else tf.minimum(
                num_frames, frames)
            matrices.append(resize_axis(features.dequantize(codes), max_frames))
        mask = tf.range(max_frames) < num_frames
        return {"id": context["id"], "video": matrices[0],
                "audio": matrices[1], "num_frames": num_frames, "mask": mask,
                "labels": tf.cast(labels, tf.float32)}

    return _per_record_pipeline(files, parse, batch_size)


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
    if isinstance(element, dict):
        return int(element["id"].shape[0])
    return int(element.shape[0]) if element.shape.rank else 1


def _time_reader(make_dataset, repeats):
    """(records/s of the best pass, CPU ms per record of that pass, records).

    CPU time (all threads of this process) is reported beside wall time
    because other jobs on a shared machine slow the wall clock, not it.
    """
    dataset = make_dataset()
    records = sum(_count(e) for e in dataset)  # warm-up pass
    best, best_cpu = float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        n = sum(_count(e) for e in dataset)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if wall < best:
            best, best_cpu = wall, cpu
        assert n == records, (n, records)
    return records / best, 1000 * best_cpu / records, records


def main(argv):
    del argv
    if FLAGS.quick:
        FLAGS.num_videos, FLAGS.num_frames, FLAGS.num_shards = 64, 10, 4
        FLAGS.batch_size, FLAGS.repeats = 16, 1
        FLAGS.num_video_level, FLAGS.video_level_batch_size = 512, 64
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.cores)
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.cores)
    from yt8m_xmodal import readers

    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_reader_")
    try:
        start = time.perf_counter()
        files = sorted(glob.glob(os.path.join(work_dir, "bench-*.tfrecord")))
        if len(files) != FLAGS.num_shards:  # else reuse --work_dir's shards
            files = _write_shards(work_dir, FLAGS.num_videos, FLAGS.num_frames,
                                  FLAGS.num_shards)
        megabytes = sum(os.path.getsize(f) for f in files) / 1e6
        print(f"shards of {FLAGS.num_videos} videos x {FLAGS.num_frames} frames "
              f"({megabytes:.0f} MB, {len(files)} shards) ready in "
              f"{time.perf_counter() - start:.1f} s")
        pattern = os.path.join(work_dir, "bench-*.tfrecord")
        printed, figures = fragments.capture_stdout(), {}
        reader = readers.YT8MFrameFeatureReader()
        contenders = [
            ("(a) ours: YT8MFrameFeatureReader (batch parse)",
             lambda: reader.dataset(pattern, FLAGS.batch_size)),
            ("(b) starter-style: parse_single_sequence_example per record",
             lambda: _starter_style_dataset(files, FLAGS.batch_size)),
            ("(c) raw TFRecordDataset, no parsing",
             lambda: _raw_dataset(files)),
            ("(c') raw TFRecordDataset, batched, no parsing",
             lambda: _raw_dataset(files, FLAGS.batch_size)),
        ]
        figures["frame_level"] = _compare(contenders, FLAGS.num_videos,
                 f"Frame-level reading, {FLAGS.num_videos} videos x "
                 f"{FLAGS.num_frames} frames, batch {FLAGS.batch_size}")
        if FLAGS.num_video_level:
            files = sorted(glob.glob(os.path.join(work_dir,
                                                  "bench_video-*.tfrecord")))
            if len(files) != FLAGS.num_shards:
                files = _write_video_level_shards(
                    work_dir, FLAGS.num_video_level, FLAGS.num_shards)
            pattern = os.path.join(work_dir, "bench_video-*.tfrecord")
            video_reader = readers.YT8MAggregatedFeatureReader()
            batch = FLAGS.video_level_batch_size
            figures["video_level"] = _compare([
                ("(a) ours: YT8MAggregatedFeatureReader (batch parse)",
                 lambda: video_reader.dataset(pattern, batch)),
                ("(b) starter-style: parse_single_example per record",
                 lambda: _starter_style_video_dataset(files, batch)),
                ("(c) raw TFRecordDataset, no parsing",
                 lambda: _raw_dataset(files)),
                ("(c') raw TFRecordDataset, batched, no parsing",
                 lambda: _raw_dataset(files, batch)),
            ], FLAGS.num_video_level,
                f"Video-level reading, {FLAGS.num_video_level} records of "
                f"1024 + 128 floats, batch {batch}")
        fragments.write(FLAGS.output_dir, "reader", printed.stop(), dict(
            figures, cores=FLAGS.cores, repeats=FLAGS.repeats,
            num_shards=FLAGS.num_shards), FLAGS.quick)
    finally:
        if FLAGS.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


def _compare(contenders, num_records, title):
    """Times (a), (b), (c) and prints the markdown table and the goals."""
    rates, cpu_ms = {}, {}
    for name, make in contenders:
        rate, cpu, records = _time_reader(
            lambda: _with_cores(make(), FLAGS.cores), FLAGS.repeats)
        assert records == num_records, (name, records)
        rates[name], cpu_ms[name] = rate, cpu
    ours, starter, raw, raw_batched = rates.values()
    print()
    print(f"{title}, {FLAGS.cores} cores, best of {FLAGS.repeats} passes")
    print()
    print("| reader | examples/s | vs (b) | vs (c) | vs (c') "
          "| CPU ms/example |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / starter:.2f}x | "
              f"{100 * rate / raw:.0f}% | {100 * rate / raw_batched:.0f}% | "
              f"{cpu_ms[name]:.3f} |")
    print()
    print(f"goal (a) >= 3x (b): {ours / starter:.2f}x "
          f"{'met' if ours >= 3 * starter else 'NOT met'}; "
          f"goal (a) >= 50% of (c): {100 * ours / raw:.0f}% "
          f"{'met' if ours >= 0.5 * raw else 'NOT met'} "
          f"({100 * ours / raw_batched:.0f}% of (c'))")
    return {"title": title, "num_records": num_records, "rows": [
        {"reader": name, "role": role, "examples_per_s": rates[name],
         "cpu_ms_per_example": cpu_ms[name]}
        for role, name in zip(("ours", "starter", "raw", "raw_batched"),
                              rates)]}


if __name__ == "__main__":
    app.run(main)
