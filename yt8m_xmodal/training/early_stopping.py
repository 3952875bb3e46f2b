"""Early stopping: the score it maximizes and the rule that ends a run.

A run with validation data validates at every export and at epoch ends at
least `validate_every_steps` after the last validation, keeps the best model
in `train_dir/best/` (`BEST_DIR`), and ends when `patience_exhausted`. The
trainer (trainer.py) holds the state, checkpointed so that a resumed run
continues the same decision.
"""

import numpy as np

# train_dir/best/: the checkpoint of the best validation so far.
BEST_DIR = "best"


def selection_score(result):
    """What early stopping maximizes: Recall@10, mean of both directions."""
    return float(np.mean([result[d]["recall@10"]
                          for d in ("audio_to_video", "video_to_audio")]))


def patience_exhausted(cfg, step, best_step, bad_validations):
    """The early-stopping rule: whether a run at `step`, whose best
    validation was at `best_step` and `bad_validations` validations ago, ends.

    It waits for both: `early_stopping_patience` validations without
    improvement (a floor, so a short run does not stop on one noisy
    validation) and `early_stopping_fraction` of the best step's count past
    it (so the wait grows with the run rather than costing a fixed number of
    validations, which on a short run is most of the run).
    """
    return (bad_validations >= cfg.early_stopping_patience
            and step - best_step >= cfg.early_stopping_fraction * best_step)


def patience_end(cfg, best_step):
    """The first step early stopping may stop at after `best_step`."""
    return best_step + int(np.ceil(cfg.early_stopping_fraction * best_step))


def patience_reason(cfg, step, best_step, bad_validations):
    """Why a run whose patience is exhausted ended, in words."""
    return (f"validation R@10 did not improve for {bad_validations} "
            f"validations (early_stopping_patience="
            f"{cfg.early_stopping_patience}) and {step - best_step} steps "
            f"past the best step {best_step} (early_stopping_fraction="
            f"{cfg.early_stopping_fraction:g})")
