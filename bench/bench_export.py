"""What one periodic export costs against the training between two exports.

An export fits the CCA subspace on training-set embeddings, saves a
checkpoint and writes the SavedModel. Fitting on the whole training set
(the old behaviour) grows with it; the trainer now fits periodic exports on
at most --subspace_fit_examples videos and only the final export on all.

Measured side by side in one run with the shipped recipe (train.py's
defaults, full-size frames):
- train step examples/s at train.py's batch size;
- embedding examples/s (the forward pass the subspace fit runs);
- seconds to write one export (SavedModel, towers, subspace) and checkpoint.
Then, for a simulated training set of --train_videos videos, the cost of a
periodic export with the cap and without it, against the training time
between two exports (--export_model_steps steps of --batch_size).

    python bench/bench_export.py [--train_videos=1000000]
"""

import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_xmodal import config as config_lib  # noqa: E402
from yt8m_xmodal import losses  # noqa: E402
from yt8m_xmodal import modeling  # noqa: E402

try:
    from bench import fragments  # noqa: E402
except ImportError:  # run as `python bench/bench_export.py`
    import fragments  # noqa: E402

RECIPE = config_lib.TrainConfig()

FLAGS = flags.FLAGS
flags.DEFINE_integer("train_videos", 1_000_000,
                     "Simulated training-set size.")
flags.DEFINE_integer("batch_size", RECIPE.batch_size,
                     "Training and embedding batch (train.py's default).")
flags.DEFINE_integer("export_model_steps", RECIPE.export_model_steps,
                     "Steps between exports (train.py's default).")
flags.DEFINE_integer("subspace_fit_examples", RECIPE.subspace_fit_examples,
                     "The cap on a periodic export's subspace fit "
                     "(train.py's default).")
flags.DEFINE_integer("steps", 4, "Timed train steps and embedding batches.")
flags.DEFINE_string("output_dir", fragments.DEFAULT_OUTPUT_DIR,
                    "Writes export.md and export.json here.")
flags.DEFINE_boolean("quick", False, "Tiny sizes for smoke tests; the outputs "
                     "are marked as quick.")


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


def main(argv):
    del argv
    cfg = RECIPE
    if FLAGS.quick:
        cfg = fragments.quick_recipe(cfg)
        FLAGS.batch_size, FLAGS.steps = 32, 1
    model, subspace = modeling.build_model(cfg)
    loss = losses.build_loss(cfg.loss, cfg.loss_config)
    optimizer = keras.optimizers.Adam(cfg.base_learning_rate)
    variables = model.trainable_variables + loss.trainable_variables
    batch = make_batch(cfg.data, FLAGS.batch_size, np.random.default_rng(0))

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            out = model(batch, training=True)
            value = loss.compute(out["video"], out["audio"], batch["labels"],
                                 monitor=False)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(value, variables),
                                      variables))
        return value

    @tf.function
    def embed():
        out = model(batch, training=False)
        subspace.update_state(out["video"], out["audio"])
        return out["video"]

    train_seconds = time_calls(lambda: train_step().numpy(), FLAGS.steps)
    embed_seconds = time_calls(lambda: embed().numpy(), FLAGS.steps)
    subspace.fit()
    with tempfile.TemporaryDirectory() as train_dir:
        step = tf.Variable(0, dtype=tf.int64)
        checkpoint = modeling.new_checkpoint(model, subspace, step,
                                             optimizer=optimizer)
        start = time.perf_counter()
        checkpoint.save(os.path.join(train_dir, "ckpt"))
        modeling.export_model(train_dir, 1, cfg.replace(train_dir=train_dir),
                              model, subspace)
        write_seconds = time.perf_counter() - start

    train_rate = FLAGS.batch_size / train_seconds
    embed_rate = FLAGS.batch_size / embed_seconds
    between = FLAGS.export_model_steps * FLAGS.batch_size / train_rate
    capped_videos = min(FLAGS.subspace_fit_examples, FLAGS.train_videos)
    capped = capped_videos / embed_rate + write_seconds
    uncapped = FLAGS.train_videos / embed_rate + write_seconds

    printed = fragments.capture_stdout()
    print(f"\n{cfg.model} ({cfg.loss}), the shipped recipe, batch "
          f"{FLAGS.batch_size}, {cfg.data.max_frames} frames; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
          f"CPUs, TF {tf.__version__}\n")
    print("| measured | value |")
    print("|---|---:|")
    print(f"| train step | {train_rate:.0f} examples/s |")
    print(f"| embedding (subspace fit) | {embed_rate:.0f} examples/s |")
    print(f"| writing checkpoint + export | {write_seconds:.1f} s |")
    print(f"\nA simulated training set of {FLAGS.train_videos:,} videos, an "
          f"export every {FLAGS.export_model_steps} steps of "
          f"{FLAGS.batch_size}: {FLAGS.export_model_steps * FLAGS.batch_size:,}"
          f" examples, {between:.0f} s of training between exports.\n")
    print("| periodic export | subspace fit on | seconds | of the training "
          "between exports |")
    print("|---|---:|---:|---:|")
    print(f"| capped (now): --subspace_fit_examples="
          f"{FLAGS.subspace_fit_examples} | {capped_videos:,} videos | "
          f"{capped:.0f} | {capped / between:.1%} |")
    print(f"| whole training set (before) | {FLAGS.train_videos:,} videos | "
          f"{uncapped:.0f} | {uncapped / between:.1%} |")
    print(f"\nArithmetic: export = fit videos / {embed_rate:.0f} examples/s "
          f"+ {write_seconds:.1f} s written; between = "
          f"{FLAGS.export_model_steps} x {FLAGS.batch_size} / "
          f"{train_rate:.0f} examples/s.")
    fragments.write(FLAGS.output_dir, "export", printed.stop(), {
        "model": cfg.model, "loss": cfg.loss, "batch_size": FLAGS.batch_size,
        "max_frames": cfg.data.max_frames, "train_videos": FLAGS.train_videos,
        "export_model_steps": FLAGS.export_model_steps,
        "subspace_fit_examples": FLAGS.subspace_fit_examples,
        "train_examples_per_s": train_rate,
        "embed_examples_per_s": embed_rate, "write_seconds": write_seconds,
        "seconds_between_exports": between,
        "capped_export_seconds": capped, "uncapped_export_seconds": uncapped,
        "capped_fraction": capped / between,
        "uncapped_fraction": uncapped / between}, FLAGS.quick)


if __name__ == "__main__":
    app.run(main)
