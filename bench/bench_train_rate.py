r"""Training examples/s of the shipped frame-level recipe: the package's
trainer against a plain `keras.Model.fit`, side by side in one run.

Both train `config.FRAME_LEVEL_RECIPE`'s model and loss, built by the
package (`modeling.build_model`, `losses.build_loss`), on the same tf.data
pipeline (`readers.reader_for(...).dataset`, shuffled, batches of the
recipe's 256) of synthetic frame-level records at the real sizes (300 frames,
1024/128 features). The baseline is `fit` with Adam at the recipe's learning
rate and nothing else: no gradient clipping, no finiteness check, no logging,
no checkpoints. The trainer's figure comes from `TrainResult.step_seconds`
(its steps only; the checkpoint, subspace fit and export at the end are not
counted) in the steady state (`trainer_rate`). Rounds alternate between
the two so other load on a shared machine hits both alike; neither counts
its tracing.

    python bench/bench_train_rate.py --steps=12 --rounds=2
"""

import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
from bench import fragments  # noqa: E402
from yt8m_xmodal import cli  # noqa: E402,F401  (the commands' TF settings)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402,F401

from yt8m_xmodal import config as config_lib  # noqa: E402
from yt8m_xmodal import losses as losses_lib  # noqa: E402
from yt8m_xmodal import modeling  # noqa: E402
from yt8m_xmodal import readers  # noqa: E402
from yt8m_xmodal import training  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402
from yt8m_xmodal.tools import synthetic  # noqa: E402


@dataclasses.dataclass(frozen=True)
class TrainRateBenchConfig:
    """bench_train_rate.py's flags."""

    steps: int = option(12, "Timed training steps per round and loop.")
    rounds: int = option(2, "Rounds, alternating the two loops; the best "
                         "round counts.")
    num_videos: int = option(
        4000, "Synthetic frame-level videos to train on (80 % train: 12 "
        "batches of 256 an epoch, so the trainer restarts its pipeline at "
        "a real epoch's rate).")
    work_dir: str = option("", "Data and train_dirs (default: a new "
                           "temporary directory).")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR, "Where the "
                             "train_rate.md / train_rate.json fragment goes.")


class PlainFit(keras.Model):
    """The recipe's model, trained by `fit` on the recipe's loss."""

    def __init__(self, model, loss):
        super().__init__()
        self.towers, self.cross_modal_loss = model, loss

    def call(self, batch, training=False):
        return self.towers(batch, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        return self.cross_modal_loss.compute(
            y_pred["video"], y_pred["audio"], x["labels"],
            monitor=False)["loss"]


def plain_fit_rate(cfg, steps):
    model, _ = modeling.build_model(cfg)
    loss = losses_lib.build_loss(cfg.loss, cfg.loss_config,
                                 cfg.data.num_classes)
    fit = PlainFit(model, loss)
    fit.compile(optimizer=keras.optimizers.Adam(cfg.base_learning_rate))
    batches = readers.reader_for(cfg.data).dataset(
        cfg.train_data_pattern, batch_size=cfg.batch_size, shuffle=True,
        seed=cfg.seed, num_epochs=None, drop_remainder=True)
    fit.fit(batches, steps_per_epoch=1, epochs=1, verbose=0)  # tracing
    start = time.time()
    fit.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * cfg.batch_size / (time.time() - start)


def trainer_rate(cfg, steps, train_dir):
    """Steady-state examples/s of `training.train`: two fresh runs, of
    1 + steps and 1 + 2 * steps steps, whose difference in stepping time is
    `steps` steps. Both pay the same start (tracing, the input pipeline's
    first fill), so the difference leaves it out, as the plain fit's
    untimed first call does; the trainer's per-epoch pipeline restarts stay
    in, at the rate of the data's epochs."""
    seconds = []
    for total in (1 + steps, 1 + 2 * steps):
        result = training.train(cfg.replace(
            train_dir=train_dir, start_new_model=True, max_steps=total))
        seconds.append(result.step_seconds)
    return steps * cfg.batch_size / (seconds[1] - seconds[0])


def main(argv=None):
    args = fragments.parse_flags(TrainRateBenchConfig, __doc__, argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_train_rate-")
    data_dir = os.path.join(work, "data")
    if not os.path.exists(os.path.join(data_dir, "dataset.json")):
        synthetic.generate_dataset(data_dir, num_videos=args.num_videos)
    cfg = config_lib.FRAME_LEVEL_RECIPE.replace(
        train_data_pattern=os.path.join(data_dir, "train-*.tfrecord"),
        early_stopping_patience=0, export_model_steps=10 ** 9,
        log_every_steps=10 ** 9)
    rows = {"trainer (train.py's loop)": [], "plain keras fit": []}
    for r in range(args.rounds):
        rows["trainer (train.py's loop)"].append(trainer_rate(
            cfg, args.steps, os.path.join(work, f"run{r}")))
        rows["plain keras fit"].append(plain_fit_rate(cfg, args.steps))
    base = max(rows["plain keras fit"])
    printed = fragments.capture_stdout()
    print(f"TF_CPU_ALLOCATOR_USE_BFC={os.environ.get('TF_CPU_ALLOCATOR_USE_BFC')}"
          f", {args.steps} timed steps of {cfg.batch_size}, {args.rounds} "
          f"rounds, load average {os.getloadavg()[0]:.1f}")
    print("| loop | examples/s (best round) | ratio to plain fit | rounds |")
    print("|---|---|---|---|")
    for name, runs in rows.items():
        best = max(runs)
        print(f"| {name} | {best:.1f} | {best / base:.2f} | "
              + ", ".join(f"{rate:.1f}" for rate in runs) + " |")
    fragments.write(args.output_dir, "train_rate", printed.stop(),
                    {"rounds": rows, "steps": args.steps}, quick=False)


if __name__ == "__main__":
    main()
