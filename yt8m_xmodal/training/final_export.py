"""The end of a training run: its final checkpoint and export.

With early stopping they hold the best validated model (`export_best`);
without, the last one (`export_last`). Either way the exported subspace is
fitted on every training video.
"""

import logging

from yt8m_xmodal import modeling

log = logging.getLogger("yt8m_xmodal")


def export_best(trainer, stop_reason):
    """Ends an early-stopping run: validates the last step unless it was,
    puts the best validated model back and checkpoints it. Its export and
    validation are those of its step when that step's subspace was fitted
    on the whole training set; otherwise the subspace is refitted on all of
    it, and the model exported and validated again.

    Returns:
      (export_dir, validation result, the best step).
    """
    cfg = trainer.cfg
    step = int(trainer.step.numpy())
    if int(trainer.validated_step.numpy()) != step:
        trainer.validate_and_keep_best(fit=True)
    best_step = int(trainer.best_step.numpy())
    trainer.restore_best()
    kept = trainer.best_result
    if kept is None:
        # The kept model's subspace, fitted on the whole training set
        # (a periodic fit may have seen part of it).
        trainer.fit_finite_subspace(0)
    # The final checkpoint holds the best model, so eval.py on the
    # train_dir scores what the export holds.
    trainer.manager.save(checkpoint_number=trainer.step)
    export_dir = modeling.latest_export(cfg.train_dir)
    if kept is not None:
        # Its subspace already saw every training video: the export and
        # validation of its step are the final ones, so refitting,
        # re-exporting and validating again would only repeat them.
        validation = kept
    else:
        if trainer.chief:
            export_dir = modeling.export_model(
                cfg.train_dir, best_step, cfg, trainer.model,
                trainer.subspace)
        validation = trainer.validate()
    log.info("training ended at step %d (%s); the final checkpoint "
             "and the export %s hold the best model, of step %d "
             "(validation R@10 %.4f)", step, stop_reason, export_dir,
             best_step, float(trainer.best_score.numpy()))
    return export_dir, validation, best_step


def export_last(trainer, stop_reason, last_saved, export_dir, validation):
    """Ends a run without early stopping: the last model's checkpoint and
    export, its subspace fitted on the whole training set.

    Args:
      trainer: the `Trainer` of the run.
      stop_reason: why training ended, for the log.
      last_saved: the step of the run's last checkpoint (-1: none).
      export_dir, validation: that checkpoint's export and validation result
        (None: none yet).

    Returns:
      (export_dir, validation result).
    """
    step = int(trainer.step.numpy())
    # The last export must hold the subspace of the whole training
    # set, also when a periodic one fell on the last step.
    if step != last_saved or not trainer.subspace_complete:
        trainer.fit_finite_subspace(0)
        export_dir, validation = trainer.save_and_export()
    elif validation is None:
        validation = trainer.validate()
    export_dir = export_dir or modeling.latest_export(trainer.cfg.train_dir)
    log.info("training ended at step %d (%s)", step, stop_reason)
    return export_dir, validation
