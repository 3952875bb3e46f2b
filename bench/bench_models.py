"""Train-step rate of the two-tower models on CPU, side by side in one run.

Measures examples/s of a full training step (forward, DCCA loss, backward,
Adam update) at batch 64 and 300 frames, with the same recurrent width for
every recurrent model, and prints a markdown table with the rate, the ratio to
FrameLstmModel (the full-sequence LSTM baseline) and parameter counts.

Goal: ChunkAttentionModel >= 5x FrameLstmModel.

    python bench/bench_models.py
    python bench/bench_models.py --models=ChunkAttentionModel,FrameLstmModel \
        --rounds=3 --min_seconds=5

What to expect on CPU: chunking cuts the recurrence from 300 sequential steps
to 30, but every frame still goes through the recurrent cell's input kernel
(1024 x 3H for a GRU, 1024 x 4H for an LSTM), and on a few CPU cores that
matrix work, not the number of sequential steps, bounds a step. The chunk
models gain from the GRU's 3 gates against the LSTM's 4, from skipping chunks
that are all padding, and from 10x larger matrix products per step; the
sequential depth pays off mostly on accelerators, where a 300-step loop of
small kernels is latency-bound.

`--input_projection_units` adds rows for the chunk models with a per-frame
linear projection before the recurrence (ChunkRecurrentEncoder), which cuts
the input-side work; a tiny projection (e.g. 8) shows the ceiling that the
recurrence itself (same rnn_units as the LSTM) and the per-frame
normalization leave on this machine.

Uses `yt8m_xmodal.losses.get_loss("dcca")` when that module is importable,
else a stand-in loss (named in the output). The rounds alternate between
models so that load from other processes on a shared CPU hits all of them
alike; the reported rate is the median over rounds.
"""

import dataclasses
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_xmodal import models  # noqa: E402
from yt8m_xmodal.features import FEATURE_SIZES  # noqa: E402

try:
    from bench import fragments  # noqa: E402
except ImportError:  # run as `python bench/bench_models.py`
    import fragments  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", "ChunkAttentionModel,ChunkMeanModel,FrameLstmModel,"
                  "MeanPoolModel", "Models to time (names of models.MODELS).")
flags.DEFINE_integer("batch_size", 64, "Examples per training step.")
flags.DEFINE_integer("num_frames", 300, "Frames per video (T).")
# YT8M videos are 120 to 500 s long (dataset page, research.google.com/
# youtube8m), one frame per second, and frame-level records keep at most 300.
flags.DEFINE_integer("min_real_frames", 120,
                     "Real frames per video are drawn uniformly from "
                     "[min_real_frames, num_frames]; the rest is padding.")
flags.DEFINE_integer("rnn_units", 128, "Recurrent width of every model.")
# DCCA needs batch_size - 1 >= 2 * embedding_dim, so 64 examples allow
# at most 31, and slot pooling needs a multiple of the 15 chunk positions;
# the embedding size barely moves the step time.
flags.DEFINE_integer("embedding_dim", 30, "Embedding size.")
flags.DEFINE_integer("chunk_size", 20, "Frames per chunk (train.py's default).")
flags.DEFINE_list("input_projection_units", ["0", "64"],
                  "Per-frame input projections of the chunk models to time "
                  "(0: none); each value is a row of the table.")
flags.DEFINE_integer("rounds", 3, "Timing rounds per model (median is kept).")
flags.DEFINE_float("min_seconds", 4.0, "Minimum timed seconds per round.")
flags.DEFINE_integer("threads", 0, "TF intra/inter-op threads (0: default).")
flags.DEFINE_string("output_dir", fragments.DEFAULT_OUTPUT_DIR,
                    "Writes models.md (the printed table) and models.json here.")
flags.DEFINE_boolean("quick", False, "Tiny sizes for smoke tests (batch 16, "
                     "30 frames, rnn_units 16, 1 short round); the outputs "
                     "are marked as quick.")


# Rows that are a configuration of a model rather than a model class.
MODEL_ROWS = {"ChunkMeanModel": (models.ChunkAttentionModel,
                                 {"attention": "mean"})}


def build(model_class, **config):
    """A model of `model_class` with the benchmark's sizes, where it takes
    them, and the class's own defaults otherwise."""
    fields = {f.name for f in dataclasses.fields(model_class.config_class)}
    sizes = {"rnn_units": FLAGS.rnn_units, "embedding_dim": FLAGS.embedding_dim,
             "chunk_size": FLAGS.chunk_size}
    config = {**{k: v for k, v in sizes.items() if k in fields}, **config}
    if model_class is models.ChunkAttentionModel:
        config["max_frames"] = FLAGS.num_frames
    return model_class(**config)


def make_loss():
    """The DCCA loss if the losses module exists, else a stand-in."""
    try:
        # Imported late: the losses module may not exist yet.
        from yt8m_xmodal import losses
        return losses.get_loss("dcca"), "dcca (yt8m_xmodal.losses)"
    except ImportError:
        pass

    def stand_in(video, audio, labels=None):
        # Negative mean correlation of the batch-standardized embeddings:
        # cheap, and like DCCA it touches every embedding dimension.
        def standardize(x):
            x = x - tf.reduce_mean(x, axis=0)
            return x / (tf.math.reduce_std(x, axis=0) + 1e-6)
        return -tf.reduce_mean(standardize(video) * standardize(audio))
    return stand_in, "stand-in (negative mean per-dimension correlation)"


def make_batch(rng):
    num_frames = rng.integers(FLAGS.min_real_frames, FLAGS.num_frames + 1,
                              size=FLAGS.batch_size)
    mask = np.arange(FLAGS.num_frames)[None, :] < num_frames[:, None]
    video_size, audio_size = FEATURE_SIZES
    video = rng.normal(size=(FLAGS.batch_size, FLAGS.num_frames, video_size))
    audio = rng.normal(size=(FLAGS.batch_size, FLAGS.num_frames, audio_size))
    return {"video": tf.constant(video * mask[..., None], tf.float32),
            "audio": tf.constant(audio * mask[..., None], tf.float32),
            "mask": tf.constant(mask),
            "num_frames": tf.constant(num_frames, tf.int32)}


def make_train_step(model, loss_fn):
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def train_step(batch):
        with tf.GradientTape() as tape:
            outputs = model(batch, training=True)
            loss = loss_fn(outputs["video"], outputs["audio"])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return train_step


def time_round(train_step, batch):
    """(examples/s, CPU ms per example) of one timed round.

    CPU time (all threads of this process) is reported beside wall time
    because other jobs on a shared machine slow the wall clock, not it.
    """
    steps, start, start_cpu = 0, time.perf_counter(), time.process_time()
    while True:
        train_step(batch).numpy()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= FLAGS.min_seconds and steps >= 2:
            examples = steps * FLAGS.batch_size
            return (examples / elapsed,
                    1000 * (time.process_time() - start_cpu) / examples)


def main(argv):
    del argv
    if FLAGS.quick:
        FLAGS.batch_size, FLAGS.num_frames, FLAGS.min_real_frames = 16, 30, 10
        FLAGS.rnn_units, FLAGS.embedding_dim, FLAGS.chunk_size = 16, 6, 10
        FLAGS.rounds, FLAGS.min_seconds = 1, 0.2
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    loss_fn, loss_name = make_loss()
    print(f"# load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    batch = make_batch(np.random.default_rng(0))
    steps = {}
    params = {}
    rows = []  # (row name, model class, config)
    for name in FLAGS.models:
        model_class, config = MODEL_ROWS.get(name, (models.MODELS.get(name), {}))
        if model_class is None:
            raise app.UsageError(f"--models: unknown model {name!r}")
        if model_class is models.ChunkAttentionModel:
            rows += [(f"{name}, input_projection_units={units}" if int(units)
                      else name, model_class,
                      {**config, "input_projection_units": int(units)})
                     for units in FLAGS.input_projection_units]
        else:
            rows.append((name, model_class, config))
    for row, model_class, extra in rows:
        model = build(model_class, **extra)
        steps[row] = make_train_step(model, loss_fn)
        start = time.perf_counter()
        steps[row](batch).numpy()  # Traces, builds and warms up.
        steps[row](batch).numpy()
        print(f"# {row}: warm-up {time.perf_counter() - start:.1f}s",
              flush=True)
        params[row] = model.count_params()
    rates = {row: [] for row, _, _ in rows}
    cpu = {row: [] for row, _, _ in rows}
    for r in range(FLAGS.rounds):
        for row in rates:
            rate, cpu_ms = time_round(steps[row], batch)
            rates[row].append(rate)
            cpu[row].append(cpu_ms)
            print(f"# round {r}: {row} {rate:.1f} examples/s, "
                  f"{cpu_ms:.2f} CPU ms/example", flush=True)
    median = {row: statistics.median(v) for row, v in rates.items()}
    median_cpu = {row: statistics.median(v) for row, v in cpu.items()}
    baseline = median.get("FrameLstmModel")
    baseline_cpu = median_cpu.get("FrameLstmModel")
    printed = fragments.capture_stdout()
    print()
    print(f"Loss: {loss_name}. Batch {FLAGS.batch_size}, {FLAGS.num_frames} "
          f"frames (real frames uniform in [{FLAGS.min_real_frames}, "
          f"{FLAGS.num_frames}]), rnn_units {FLAGS.rnn_units}, embedding_dim "
          f"{FLAGS.embedding_dim}, chunk_size {FLAGS.chunk_size}; median of "
          f"{FLAGS.rounds} rounds of >= {FLAGS.min_seconds:g}s.")
    print(f"Machine: {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} CPUs visible, TensorFlow {tf.__version__}; load "
          f"average at the end {os.getloadavg()[0]:.1f} (shared CPU: other "
          "processes ran during the timing).")
    print()
    print("| model | train examples/s | x FrameLstmModel | CPU ms/example "
          "| x FrameLstmModel (CPU) | parameters |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rates:
        ratio = f"{median[row] / baseline:.1f}x" if baseline else "n/a"
        cpu_ratio = (f"{baseline_cpu / median_cpu[row]:.1f}x" if baseline_cpu
                     else "n/a")
        print(f"| {row} | {median[row]:.1f} | {ratio} | "
              f"{median_cpu[row]:.2f} | {cpu_ratio} | {params[row]:,} |")
    fragments.write(FLAGS.output_dir, "models", printed.stop(), {
        "loss": loss_name, "baseline": "FrameLstmModel",
        "batch_size": FLAGS.batch_size, "num_frames": FLAGS.num_frames,
        "min_real_frames": FLAGS.min_real_frames,
        "rnn_units": FLAGS.rnn_units, "embedding_dim": FLAGS.embedding_dim,
        "chunk_size": FLAGS.chunk_size, "rounds": FLAGS.rounds,
        "min_seconds": FLAGS.min_seconds, "rows": [
            {"row": row, "model": model_class.__name__, "config": extra,
             "input_projection_units": extra.get("input_projection_units", 0),
             "examples_per_s": median[row], "cpu_ms_per_example":
             median_cpu[row], "parameters": params[row],
             "rounds_examples_per_s": rates[row],
             "rounds_cpu_ms_per_example": cpu[row]}
            for row, model_class, extra in rows]}, FLAGS.quick)


if __name__ == "__main__":
    app.run(main)
