"""What one periodic export costs against the training between two exports.

An export fits the CCA subspace on training-set embeddings, saves a
checkpoint and writes the SavedModel. Fitting on the whole training set
(the old behaviour) grows with it; the trainer now fits periodic exports on
at most --subspace_fit_examples videos and only the final export on all.

Measured side by side in one run with the shipped recipe (train.py's
defaults, full-size frames):
- examples/s of the trainer's train step (`training.Trainer.train_step`,
  what train.py's loop runs) at train.py's batch size;
- embedding examples/s (the forward pass the subspace fit runs);
- seconds to write one export (SavedModel, towers, subspace) and checkpoint.
Then, for a simulated training set of --train_videos videos, the cost of a
periodic export with the cap and without it, against the training time
between two exports (--export_model_steps steps of --batch_size).

    python bench/bench_export.py [--train_videos=1000000]
"""

import dataclasses
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_xmodal import config as config_lib  # noqa: E402
from yt8m_xmodal import modeling  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402

try:
    from bench import fragments  # noqa: E402
except ImportError:  # run as `python bench/bench_export.py`
    import fragments  # noqa: E402

RECIPE = config_lib.TrainConfig()


@dataclasses.dataclass(frozen=True)
class ExportBenchConfig:
    """bench_export.py's flags."""

    train_videos: int = option(1_000_000, "Simulated training-set size.")
    batch_size: int = option(RECIPE.batch_size, "Training and embedding "
                             "batch (train.py's default).")
    export_model_steps: int = option(RECIPE.export_model_steps,
                                     "Steps between exports (train.py's "
                                     "default).")
    subspace_fit_examples: int = option(
        RECIPE.subspace_fit_examples, "The cap on a periodic export's "
        "subspace fit (train.py's default).")
    steps: int = option(4, "Timed train steps and embedding batches.")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR,
                             "Writes export.md and export.json here.")
    quick: bool = option(False, "Tiny sizes for smoke tests; the outputs are "
                         "marked as quick.")


def make_batch(data, batch_size, rng):
    """A reader-style batch of full-length random frames."""
    frames = data.max_frames
    batch = modeling.dummy_batch(data, batch_size)
    batch["video"] = tf.constant(rng.normal(
        size=(batch_size, frames, data.video_size)).astype(np.float32))
    batch["audio"] = tf.constant(rng.normal(
        size=(batch_size, frames, data.audio_size)).astype(np.float32))
    return batch


def time_calls(fn, steps):
    fn()  # traces and warms up
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    flags = fragments.parse_flags(ExportBenchConfig, __doc__, argv)
    cfg = RECIPE
    if flags.quick:
        cfg = fragments.quick_recipe(cfg)
        flags = dataclasses.replace(flags, batch_size=32, steps=1)
    work = tempfile.TemporaryDirectory(prefix="bench_export_")
    # The trainer train.py runs: its train step, model and subspace.
    trainer = fragments.product_trainer(
        cfg.replace(batch_size=flags.batch_size), work.name)
    model, subspace = trainer.model, trainer.subspace
    batch = make_batch(cfg.data, flags.batch_size, np.random.default_rng(0))

    @tf.function
    def embed():
        out = model(batch, training=False)
        subspace.update_state(out["video"], out["audio"])
        return out["video"]

    train_seconds = time_calls(
        lambda: trainer.train_step(batch, monitor=False), flags.steps)
    embed_seconds = time_calls(lambda: embed().numpy(), flags.steps)
    subspace.fit()
    # What an export writes: the trainer's checkpoint and the SavedModel.
    start = time.perf_counter()
    trainer.manager.save(checkpoint_number=trainer.step)
    modeling.export_model(trainer.cfg.train_dir, 1, trainer.cfg, model,
                          subspace)
    write_seconds = time.perf_counter() - start
    work.cleanup()

    train_rate = flags.batch_size / train_seconds
    embed_rate = flags.batch_size / embed_seconds
    between = flags.export_model_steps * flags.batch_size / train_rate
    capped_videos = min(flags.subspace_fit_examples, flags.train_videos)
    capped = capped_videos / embed_rate + write_seconds
    uncapped = flags.train_videos / embed_rate + write_seconds

    printed = fragments.capture_stdout()
    print(f"\n{cfg.model} ({cfg.loss}), the shipped recipe, batch "
          f"{flags.batch_size}, {cfg.data.max_frames} frames; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
          f"CPUs, TF {tf.__version__}\n")
    print("| measured | value |")
    print("|---|---:|")
    print(f"| train step | {train_rate:.0f} examples/s |")
    print(f"| embedding (subspace fit) | {embed_rate:.0f} examples/s |")
    print(f"| writing checkpoint + export | {write_seconds:.1f} s |")
    print(f"\nA simulated training set of {flags.train_videos:,} videos, an "
          f"export every {flags.export_model_steps} steps of "
          f"{flags.batch_size}: {flags.export_model_steps * flags.batch_size:,}"
          f" examples, {between:.0f} s of training between exports.\n")
    print("| periodic export | subspace fit on | seconds | of the training "
          "between exports |")
    print("|---|---:|---:|---:|")
    print(f"| capped (now): --subspace_fit_examples="
          f"{flags.subspace_fit_examples} | {capped_videos:,} videos | "
          f"{capped:.0f} | {capped / between:.1%} |")
    print(f"| whole training set (before) | {flags.train_videos:,} videos | "
          f"{uncapped:.0f} | {uncapped / between:.1%} |")
    print(f"\nArithmetic: export = fit videos / {embed_rate:.0f} examples/s "
          f"+ {write_seconds:.1f} s written; between = "
          f"{flags.export_model_steps} x {flags.batch_size} / "
          f"{train_rate:.0f} examples/s.")
    fragments.write(flags.output_dir, "export", printed.stop(), {
        "model": cfg.model, "loss": cfg.loss, "batch_size": flags.batch_size,
        "max_frames": cfg.data.max_frames, "train_videos": flags.train_videos,
        "export_model_steps": flags.export_model_steps,
        "subspace_fit_examples": flags.subspace_fit_examples,
        "train_examples_per_s": train_rate,
        "embed_examples_per_s": embed_rate, "write_seconds": write_seconds,
        "seconds_between_exports": between,
        "capped_export_seconds": capped, "uncapped_export_seconds": uncapped,
        "capped_fraction": capped / between,
        "uncapped_fraction": uncapped / between}, flags.quick)


if __name__ == "__main__":
    main()
