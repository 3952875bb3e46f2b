"""Training: the loop behind train.py, early stopping and the final export.

A plain `tf.function` loop rather than `keras.Model.fit`: deep CCA needs the
whole global batch inside one loss, the step must be withheld when the loss or
gradient is not finite, and the data position must be checkpointed, all of
which a hand-written loop states directly (trainer.py). Early stopping's
score and rule are early_stopping.py; the checkpoint and export a run ends
with, final_export.py. More: docs/design.md, "Training loop".
"""

from yt8m_xmodal.training.early_stopping import (
    BEST_DIR, patience_exhausted, selection_score)
from yt8m_xmodal.training.trainer import (
    NonFiniteStepError, Trainer, TrainResult, check_config, epoch_cap,
    is_chief, learning_rate_schedule, make_optimizer, make_strategy,
    prepare_train_dir, train)

__all__ = [
    "BEST_DIR",
    "NonFiniteStepError",
    "TrainResult",
    "Trainer",
    "check_config",
    "epoch_cap",
    "is_chief",
    "learning_rate_schedule",
    "make_optimizer",
    "make_strategy",
    "patience_exhausted",
    "prepare_train_dir",
    "selection_score",
    "train",
]
