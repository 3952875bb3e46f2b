"""Train-step rate of the two-tower models on CPU, side by side in one run.

Measures examples/s of the product's training step (`training.Trainer
.train_step`, what train.py's loop runs: forward, DCCA loss, backward,
gradient clipping, the finiteness check, Adam update) at batch 64 and 300
frames, with the same recurrent width for every recurrent model, and prints a
markdown table with the rate, the ratio to FrameLstmModel (the full-sequence
LSTM baseline) and parameter counts.

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

The rounds alternate between models so that load from other processes on a
shared CPU hits all of them alike; the reported rate is the median over
rounds.
"""

import dataclasses
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_xmodal import config as config_lib  # noqa: E402
from yt8m_xmodal import modeling  # noqa: E402
from yt8m_xmodal import models  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402

try:
    from bench import fragments  # noqa: E402
except ImportError:  # run as `python bench/bench_models.py`
    import fragments  # noqa: E402

LOSS = "dcca"


@dataclasses.dataclass(frozen=True)
class ModelsBenchConfig:
    """bench_models.py's flags."""

    models: tuple[str, ...] = option(
        ("ChunkAttentionModel", "ChunkMeanModel", "FrameLstmModel",
         "MeanPoolModel"), "Models to time (names of models.MODELS, or "
        "ChunkMeanModel: the chunk model with a mean over chunks).")
    batch_size: int = option(64, "Examples per training step.")
    num_frames: int = option(300, "Frames per video (T).")
    # YT8M videos are 120 to 500 s long (dataset page, research.google.com/
    # youtube8m), one frame per second, and frame-level records keep at most
    # 300.
    min_real_frames: int = option(
        120, "Real frames per video are drawn uniformly from "
        "[min_real_frames, num_frames]; the rest is padding.")
    rnn_units: int = option(128, "Recurrent width of every model.")
    # DCCA needs batch_size - 1 >= 2 * embedding_dim, so 64 examples allow
    # at most 31, and slot pooling needs a multiple of the 15 chunk
    # positions; the embedding size barely moves the step time.
    embedding_dim: int = option(30, "Embedding size.")
    chunk_size: int = option(20, "Frames per chunk (train.py's default).")
    input_projection_units: tuple[int, ...] = option(
        (0, 64), "Per-frame input projections of the chunk models to time "
        "(0: none); each value is a row of the table.")
    rounds: int = option(3, "Timing rounds per model (median is kept).")
    min_seconds: float = option(4.0, "Minimum timed seconds per round.")
    threads: int = option(0, "TF intra/inter-op threads (0: default).")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR,
                             "Writes models.md (the printed table) and "
                             "models.json here.")
    quick: bool = option(False, "Tiny sizes for smoke tests (batch 16, 30 "
                         "frames, rnn_units 16, 1 short round); the outputs "
                         "are marked as quick.")


QUICK_SIZES = {"batch_size": 16, "num_frames": 30, "min_real_frames": 10,
               "rnn_units": 16, "embedding_dim": 6, "chunk_size": 10,
               "rounds": 1, "min_seconds": 0.2}
# Rows that are a configuration of a model rather than a model class.
MODEL_ROWS = {"ChunkMeanModel": ("ChunkAttentionModel", {"attention": "mean"})}


def train_config(flags, model, **model_config):
    """The TrainConfig of one row: `model` with the benchmark's sizes, where
    its config takes them, and its own defaults otherwise."""
    fields = {f.name for f in dataclasses.fields(config_lib.MODEL_CONFIGS[
        model])}
    sizes = {"rnn_units": flags.rnn_units, "embedding_dim": flags.embedding_dim,
             "chunk_size": flags.chunk_size}
    model_config = {**{k: v for k, v in sizes.items() if k in fields},
                    **model_config}
    return config_lib.TrainConfig(
        data=config_lib.DataConfig(max_frames=flags.num_frames), model=model,
        model_config=model_config, loss=LOSS, batch_size=flags.batch_size,
        subspace_dim=flags.embedding_dim)


def make_batch(flags, data, rng):
    """A reader-style batch of random frames, each video padded after
    between min_real_frames and num_frames real frames."""
    num_frames = rng.integers(flags.min_real_frames, flags.num_frames + 1,
                              size=flags.batch_size)
    mask = np.arange(flags.num_frames)[None, :] < num_frames[:, None]
    batch = modeling.dummy_batch(data, flags.batch_size)
    for key, size in (("video", data.video_size), ("audio", data.audio_size)):
        frames = rng.normal(size=(flags.batch_size, flags.num_frames, size))
        batch[key] = tf.constant(frames * mask[..., None], tf.float32)
    batch["mask"] = tf.constant(mask)
    batch["num_frames"] = tf.constant(num_frames, tf.int32)
    return batch


def time_round(trainer, batch, flags):
    """(examples/s, CPU ms per example) of one timed round of the trainer's
    steps (each returns its report as numpy, so it has finished).

    CPU time (all threads of this process) is reported beside wall time
    because other jobs on a shared machine slow the wall clock, not it.
    """
    steps, start, start_cpu = 0, time.perf_counter(), time.process_time()
    while True:
        trainer.train_step(batch, monitor=False)
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= flags.min_seconds and steps >= 2:
            examples = steps * flags.batch_size
            return (examples / elapsed,
                    1000 * (time.process_time() - start_cpu) / examples)


def table_rows(flags):
    """[(row name, model name, model config)] of the --models."""
    rows = []
    for name in flags.models:
        model, config = MODEL_ROWS.get(name, (name, {}))
        if model not in models.MODELS:
            raise SystemExit(f"--models: unknown model {name!r}")
        if model == "ChunkAttentionModel":
            rows += [(f"{name}, input_projection_units={units}" if units
                      else name, model,
                      {**config, "input_projection_units": units})
                     for units in flags.input_projection_units]
        else:
            rows.append((name, model, config))
    return rows


def main(argv=None):
    flags = fragments.parse_flags(ModelsBenchConfig, __doc__, argv)
    if flags.quick:
        flags = dataclasses.replace(flags, **QUICK_SIZES)
    if flags.threads:
        tf.config.threading.set_intra_op_parallelism_threads(flags.threads)
        tf.config.threading.set_inter_op_parallelism_threads(flags.threads)
    print(f"# load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    rows = table_rows(flags)
    trainers, params = {}, {}
    work = tempfile.TemporaryDirectory(prefix="bench_models_")
    batch = None
    for i, (row, model, extra) in enumerate(rows):
        trainer = fragments.product_trainer(
            train_config(flags, model, **extra),
            os.path.join(work.name, f"row{i}"))
        if batch is None:
            batch = make_batch(flags, trainer.cfg.data,
                               np.random.default_rng(0))
        start = time.perf_counter()
        trainer.train_step(batch, monitor=False)  # Traces, builds, warms up.
        trainer.train_step(batch, monitor=False)
        print(f"# {row}: warm-up {time.perf_counter() - start:.1f}s",
              flush=True)
        trainers[row] = trainer
        params[row] = trainer.model.count_params()
    rates = {row: [] for row, _, _ in rows}
    cpu = {row: [] for row, _, _ in rows}
    for r in range(flags.rounds):
        for row in rates:
            rate, cpu_ms = time_round(trainers[row], batch, flags)
            rates[row].append(rate)
            cpu[row].append(cpu_ms)
            print(f"# round {r}: {row} {rate:.1f} examples/s, "
                  f"{cpu_ms:.2f} CPU ms/example", flush=True)
    work.cleanup()
    median = {row: statistics.median(v) for row, v in rates.items()}
    median_cpu = {row: statistics.median(v) for row, v in cpu.items()}
    baseline = median.get("FrameLstmModel")
    baseline_cpu = median_cpu.get("FrameLstmModel")
    loss_name = f"{LOSS} (the trainer's, train.py's defaults)"
    printed = fragments.capture_stdout()
    print()
    print(f"Loss: {loss_name}. Batch {flags.batch_size}, {flags.num_frames} "
          f"frames (real frames uniform in [{flags.min_real_frames}, "
          f"{flags.num_frames}]), rnn_units {flags.rnn_units}, embedding_dim "
          f"{flags.embedding_dim}, chunk_size {flags.chunk_size}; median of "
          f"{flags.rounds} rounds of >= {flags.min_seconds:g}s.")
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
    fragments.write(flags.output_dir, "models", printed.stop(), {
        "loss": loss_name, "baseline": "FrameLstmModel",
        "train_step": "training.Trainer.train_step",
        "batch_size": flags.batch_size, "num_frames": flags.num_frames,
        "min_real_frames": flags.min_real_frames,
        "rnn_units": flags.rnn_units, "embedding_dim": flags.embedding_dim,
        "chunk_size": flags.chunk_size, "rounds": flags.rounds,
        "min_seconds": flags.min_seconds, "rows": [
            {"row": row, "model": model, "config": extra,
             "input_projection_units": extra.get("input_projection_units", 0),
             "examples_per_s": median[row], "cpu_ms_per_example":
             median_cpu[row], "parameters": params[row],
             "rounds_examples_per_s": rates[row],
             "rounds_cpu_ms_per_example": cpu[row]}
            for row, model, extra in rows]}, flags.quick)


if __name__ == "__main__":
    main()
