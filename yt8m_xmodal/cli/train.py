r"""train.py: trains the audio and video towers on YT8M records.

    python train.py --train_data_pattern='/data/yt8m/frame/train*.tfrecord' \
        --train_dir=/tmp/yt8m_xmodal_model
    tensorboard --logdir=/tmp/yt8m_xmodal_model

With no --train_data_pattern it trains on the built-in synthetic demo data
(generated once into a cache directory) and validates on its validate split.

More: docs/design.md, "train.py".
"""

import dataclasses
import logging
import os
import sys

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import metrics
from yt8m_xmodal import training
from yt8m_xmodal.tools import synthetic

FLAGS = flags.FLAGS
log = logging.getLogger("yt8m_xmodal")

cli.define_data_flags()
cli.define_config_flags(config_lib.TrainConfig)
# Model flags: the union of the model configs' fields. The recipe's model
# comes first, so the defaults shown for shared fields are its own.
for _config_class in config_lib.MODEL_CONFIGS.values():
    cli.define_config_flags(_config_class)
for _config_class in config_lib.LOSS_CONFIGS.values():
    cli.define_config_flags(_config_class)


def config_from_flags():
    """The `TrainConfig` of train.py's flags; the demo data when no pattern.

    Flags set on the command line override the recipe of the data's level;
    unset ones keep it (see the module docstring).
    """
    detected = _detected_data_values()
    set_data = cli.set_flags(config_lib.DataConfig)
    base = config_lib.recipe(set_data.get(
        "frame_features", detected.get("frame_features", True)))
    data = dataclasses.replace(cli.data_config_from_flags(base.data),
                               **detected)
    values = cli.set_flags(config_lib.TrainConfig)
    if "top_k" in values:
        values["top_k"] = metrics.parse_top_k(values["top_k"])
    model = values.get("model", base.model)
    loss = values.get("loss", base.loss)
    model_config = _typed_flags(
        config_lib.model_config(model, base.model_config
                                if model == base.model else None))
    loss_config = _typed_flags(
        config_lib.loss_config(loss, base.loss_config
                               if loss == base.loss else None))
    if not values.get("train_data_pattern"):
        demo_dir = synthetic.ensure_demo_data()
        log.info("no --train_data_pattern: training on the built-in demo data "
                 "in %s", demo_dir)
        values["train_data_pattern"] = os.path.join(demo_dir,
                                                    "train-*.tfrecord")
        values.setdefault("validate_data_pattern",
                          os.path.join(demo_dir, "validate-*.tfrecord"))
        for name, value in synthetic.DEMO_TRAINING.items():
            values.setdefault(name, value)
    return dataclasses.replace(base, data=data, model_config=model_config,
                               loss_config=loss_config, **values)


def _detected_data_values():
    """The data fields the training records decide, each unless set on the
    command line: the level and, for the 2017 release, --id_feature and
    --num_classes. Empty without --train_data_pattern (the demo data is
    frame level)."""
    if not FLAGS.train_data_pattern:
        return {}
    return cli.detected_data_values(FLAGS.train_data_pattern,
                                    "train_data_pattern")


def _typed_flags(base):
    """The typed config `base` with its fields that were set as flags."""
    return dataclasses.replace(base, **cli.set_flags(type(base)))


def main(argv):
    del argv
    cfg = config_from_flags()
    log.info("%s", plan_text(cfg))
    try:
        result = training.train(cfg)
    except training.NonFiniteStepError as e:
        # Not a usage error (exit 2), but as much the user's to act on: one
        # line, no stack trace.
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    print(summary_text(cfg, result))


def plan_text(cfg):
    """What train.py says before it starts: what it trains, on what, where."""
    plural = lambda n, unit: f"{n} {unit}" + ("" if n == 1 else "s")
    ends = [plural(cfg.num_epochs, "epoch")] if cfg.num_epochs > 0 else []
    ends += [plural(cfg.max_steps, "step")] if cfg.max_steps > 0 else []
    if cfg.validate_data_pattern and cfg.early_stopping_patience > 0:
        until = ("until validation Recall@10 stops improving "
                 f"(--early_stopping_patience={cfg.early_stopping_patience},"
                 f" --early_stopping_fraction={cfg.early_stopping_fraction:g})"
                 + (f" or {' or '.join(ends)}" if ends else
                    f" or {config_lib.AUTO_MAX_EPOCHS} epochs"))
    elif ends:
        until = "for " + " or ".join(ends)
    else:
        until = (f"for whole epochs until --auto_train_steps="
                 f"{cfg.auto_train_steps} steps")
    return (f"training {cfg.model} with --loss={cfg.loss} "
            f"({cfg.subspace_dim}-d CCA subspace, batches of {cfg.batch_size}) "
            f"on {cfg.train_data_pattern} {until}; "
            f"writing to {cfg.train_dir}")


def summary_text(cfg, result):
    """What train.py prints at the end: figures, paths and next commands."""
    lines = [f"Trained {cfg.model} with --loss={cfg.loss} to step {result.step} "
             f"in {result.wall_seconds:.0f} s: {result.examples} examples in "
             f"{result.step_seconds:.0f} s of training steps "
             f"({result.examples_per_second:.0f} examples/s), the rest "
             "checkpoints, exports and validation."]
    if result.stop_reason:
        lines.append(f"Stopped: {result.stop_reason}.")
    if result.best_step is not None:
        lines.append(f"Kept the best model on validation, of step "
                     f"{result.best_step} (the final checkpoint and the "
                     "export hold it).")
    if result.skipped_nonfinite_steps:
        lines.append(f"Skipped non-finite steps: {result.skipped_nonfinite_steps}")
    if result.validation:
        lines.append(evaluation.format_table(
            result.validation,
            title=f"Validation ({cfg.validate_data_pattern}), in the "
                  f"{cfg.subspace_dim}-d CCA subspace"))
    lines += [
        f"Checkpoints and TensorBoard logs: {cfg.train_dir}",
        f"Exported model: {result.export_dir}",
        "Next:",
        f"  tensorboard --logdir={cfg.train_dir}",
        f"  python eval.py --train_dir={cfg.train_dir} "
        f"--eval_data_pattern='{cfg.validate_data_pattern or '...'}' "
        "--top_k 1,5,10,20 --run_once",
    ]
    return "\n".join(lines)


def run():
    """The command's entry point (root script and console script)."""
    cli.run(main)


if __name__ == "__main__":
    run()
