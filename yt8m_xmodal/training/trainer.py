"""The training loop: `Trainer` owns the model, optimizer, checkpoints and
loop of one run, and `train(cfg)` runs one.

One step is two replica functions under the active `tf.distribute` strategy:
`_compute_gradients` (forward pass, global-batch loss, the all-reduced
gradient, its norm and clipping, and a finiteness flag every replica agrees
on) and `_apply_gradients`, which runs only when that flag says the step is
finite. Checkpoints hold the data position too (epoch, batch within epoch),
so a resumed run skips the batches already consumed. More: docs/design.md,
"Training loop".
"""

import dataclasses
import logging
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import formats
from yt8m_xmodal import losses as losses_lib
from yt8m_xmodal import modeling
from yt8m_xmodal import progress
from yt8m_xmodal import readers
from yt8m_xmodal import rundir
from yt8m_xmodal import subspace as subspace_lib
from yt8m_xmodal import summaries
from yt8m_xmodal.errors import ConfigError
from yt8m_xmodal.training.early_stopping import (
    BEST_DIR, patience_end, patience_exhausted, patience_reason,
    selection_score)
from yt8m_xmodal.training.final_export import export_best, export_last

log = logging.getLogger("yt8m_xmodal")


@dataclasses.dataclass
class TrainResult:
    train_dir: str
    step: int
    wall_seconds: float
    skipped_nonfinite_steps: int
    validation: dict = None
    export_dir: str = None
    # Examples trained on in this run, and the seconds spent reading and
    # stepping on them (wall_seconds less checkpoints, exports, validation).
    examples: int = 0
    step_seconds: float = 0.0
    # Early stopping: the step whose weights the final checkpoint and export
    # hold, why training ended, and every validation [(step, R@10)].
    best_step: int = None
    stop_reason: str = ""
    validations: list = dataclasses.field(default_factory=list)

    @property
    def examples_per_second(self):
        return self.examples / self.step_seconds if self.step_seconds else 0.0


def epoch_cap(cfg, early_stopping):
    """The most epochs a run trains (None: the step budget decides)."""
    if cfg.num_epochs > 0:
        return cfg.num_epochs
    return config_lib.AUTO_MAX_EPOCHS if early_stopping else None


class NonFiniteStepError(RuntimeError):
    """The loss or gradient went non-finite and skipping was not enabled."""


def make_strategy(name):
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        # All GPUs; without GPUs, all logical CPUs (one unless configured).
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        if gpus:
            return tf.distribute.MirroredStrategy(gpus)
        # CPU replicas reduce through one device: the collective ops that
        # MirroredStrategy uses by default can pair up the several all-reduces
        # of one step in different orders on different CPU replicas.
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")],
            cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker_mirrored":
        # Workers and this process's role come from the TF_CONFIG environment
        # variable, the tf.distribute convention.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"{{distribution_strategy}} is not one of "
                      f"{', '.join(config_lib.STRATEGIES)}",
                      distribution_strategy=name)


def is_chief(strategy):
    """Only the chief writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in ("chief", None) or (
        task_type == "worker" and task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


# config.OPTIMIZERS: Adam (every measured recipe) and plain SGD.
_OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}


def make_optimizer(name, learning_rate):
    """The optimizer `TrainConfig.optimizer` names (validated there)."""
    return _OPTIMIZERS[name](learning_rate=learning_rate)


def learning_rate_schedule(cfg):
    """YT8M's staircase exponential decay, counted in examples."""
    decay_steps = max(1, cfg.learning_rate_decay_examples // cfg.batch_size)
    return keras.optimizers.schedules.ExponentialDecay(
        cfg.base_learning_rate, decay_steps, cfg.learning_rate_decay,
        staircase=True)


def check_config(cfg):
    """What TrainConfig cannot check alone: the run needs data and a dir."""
    if not cfg.train_data_pattern:
        raise ConfigError("{train_data_pattern} is empty",
                          train_data_pattern="")
    if not cfg.train_dir:
        raise ConfigError("{train_dir} is empty", train_dir="")


def prepare_train_dir(cfg):
    if cfg.start_new_model and os.path.exists(cfg.train_dir):
        # As in YT8M: --start_new_model wipes train_dir without asking.
        shutil.rmtree(cfg.train_dir)
    os.makedirs(cfg.train_dir, exist_ok=True)
    path = os.path.join(cfg.train_dir, rundir.MODEL_FLAGS_FILE)
    if os.path.exists(path):
        existing = rundir.read_model_flags(cfg.train_dir)
        if not existing.same_model(cfg):
            raise ConfigError(
                f"{{train_dir}} holds a model trained with another "
                f"configuration ({path}); start a new model there "
                "({start_new_model}) or use another train_dir",
                train_dir=cfg.train_dir, start_new_model=True)
    rundir.write_model_flags(cfg.train_dir, cfg)


@dataclasses.dataclass
class _RunState:
    """What the steps of `Trainer.run` share."""
    max_steps: int | None
    max_epochs: int | None
    # The step of the run's last checkpoint (-1: none yet).
    last_saved: int
    stop_reason: str = ""
    # The last export and validation (None: none yet).
    export_dir: str | None = None
    validation: dict | None = None
    examples: int = 0
    # Checkpoints, exports and validations, left out of the training rate.
    export_seconds: float = 0.0
    # The logged rate is over the examples since the last log line.
    window_start: float = dataclasses.field(default_factory=time.time)
    window_examples: int = 0


class Trainer:
    """Owns the model, optimizer, checkpoints and loop of one training run."""

    def __init__(self, cfg):
        check_config(cfg)
        self.cfg = cfg
        self.strategy = make_strategy(cfg.distribution_strategy)
        self.chief = is_chief(self.strategy)
        self.reader = readers.reader_for(cfg.data,
                                         skip_corrupt=cfg.skip_corrupt)
        # One record of each pattern tells a level, feature or release the
        # flags do not read, before the pipeline fails on it.
        formats.check_records(cfg.data, cfg.train_data_pattern,
                              skip_corrupt=cfg.skip_corrupt)
        if cfg.validate_data_pattern:
            formats.check_records(cfg.data, cfg.validate_data_pattern,
                                  field="validate_data_pattern",
                                  skip_corrupt=cfg.skip_corrupt)
        if self.chief:
            prepare_train_dir(cfg)
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            self.model, self.subspace = modeling.build_model(cfg)
            self.loss = losses_lib.build_loss(cfg.loss, cfg.loss_config,
                                              cfg.data.num_classes)
            self.optimizer = make_optimizer(
                cfg.optimizer, learning_rate_schedule(cfg))
            self.variables = (list(self.model.trainable_variables)
                              + list(getattr(self.loss, "trainable_variables", [])))
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            # Early stopping state, checkpointed so a resumed run continues
            # the same decision: best validation score and its step,
            # validations without improvement, the last validated step, and
            # whether training has stopped.
            self.best_score = tf.Variable(-1.0, dtype=tf.float64,
                                          trainable=False)
            self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
            self.bad_validations = tf.Variable(0, dtype=tf.int64,
                                               trainable=False)
            self.validated_step = tf.Variable(-1, dtype=tf.int64,
                                              trainable=False)
            self.stopped = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = modeling.new_checkpoint(
            self.model, self.subspace, self.step, optimizer=self.optimizer,
            loss=self.loss, epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch, best_score=self.best_score,
            best_step=self.best_step, bad_validations=self.bad_validations,
            validated_step=self.validated_step, stopped=self.stopped)
        # Non-chief workers write to a scratch directory that is discarded:
        # MultiWorkerMirroredStrategy needs every worker to take part in a save.
        ckpt_dir = cfg.train_dir if self.chief else os.path.join(
            cfg.train_dir, f".worker-{self.strategy.cluster_resolver.task_id}")
        self.manager = tf.train.CheckpointManager(
            checkpoint, ckpt_dir, max_to_keep=cfg.keep_checkpoint_max)
        self.checkpoint = checkpoint
        # The best model so far (weights and subspace only), kept apart from
        # the rolling checkpoints so max_to_keep never removes it.
        self.best_checkpoint = modeling.new_checkpoint(
            self.model, self.subspace, self.best_step)
        self.best_manager = tf.train.CheckpointManager(
            self.best_checkpoint, os.path.join(ckpt_dir, BEST_DIR),
            max_to_keep=1)
        self.early_stopping = bool(cfg.validate_data_pattern
                                   and cfg.early_stopping_patience > 0)
        self.validations = []
        # The best validation's result while its model's subspace was fitted
        # on the whole training set: its export is then the final one
        # (final_export.export_best). Not checkpointed: a resumed run refits.
        self.best_result = None
        if not self.manager.latest_checkpoint and self.input_projections():
            self.fit_input_projection()
        if self.manager.latest_checkpoint:
            checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("resumed from %s at step %d (epoch %d, batch %d)",
                     self.manager.latest_checkpoint, int(self.step.numpy()),
                     int(self.epoch.numpy()), int(self.batch_in_epoch.numpy()))
        self.writer = (summaries.TrainSummaries(cfg.train_dir) if self.chief
                       else summaries.TrainSummaries(None))
        self.skipped_nonfinite = 0
        # Whether the fitted subspace saw every training video.
        self.subspace_complete = True
        self._compute = tf.function(self._compute_gradients)
        self._apply = tf.function(self._apply_gradients)

    # -- one step ---------------------------------------------------------------

    def _compute_gradients(self, batch, monitor):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            emb = self.model(batch, training=True)
            out = self.loss.compute(emb["video"], emb["audio"], batch["labels"],
                                    monitor=monitor)
            # Every replica computes the global-batch loss; see losses.py.
            loss = losses_lib.scale_loss_for_replicas(out["loss"])
        grads = tape.gradient(loss, self.variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, self.variables)]
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grad_norm = tf.linalg.global_norm(grads)
        if self.cfg.clip_gradient_norm > 0:
            grads, _ = tf.clip_by_global_norm(
                grads, self.cfg.clip_gradient_norm, use_norm=grad_norm)
        report = {
            "loss": out["loss"],
            "total_correlation": out["total_correlation"],
        }
        report = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, report)
        bad = tf.cast(~(tf.math.is_finite(report["loss"])
                        & tf.math.is_finite(grad_norm)), tf.float32)
        # Summed over replicas: > 0 when any replica saw a non-finite value.
        report["nonfinite"] = ctx.all_reduce(tf.distribute.ReduceOp.SUM, bad)
        report["grad_norm"] = grad_norm
        report["correlations"] = out["correlations"]
        return grads, report

    def _apply_gradients(self, grads):
        # Keras optimizers sum gradients over replicas; ours are already the
        # global gradient, identical on each replica.
        n = tf.cast(self.strategy.num_replicas_in_sync, tf.float32)
        self.optimizer.apply_gradients(
            [(g / tf.cast(n, g.dtype), v) for g, v in zip(grads, self.variables)])

    def train_step(self, batch, monitor=True):
        """One step; `monitor` asks losses that are not CCA for the batch CCA
        they report (only logged steps need it: it costs an eigendecomposition
        per step). tf.function traces one graph per value."""
        grads, report = self.strategy.run(self._compute, args=(batch, monitor))
        first = lambda x: self.strategy.experimental_local_results(x)[0]
        report = {k: first(v).numpy() for k, v in report.items()}
        if report["nonfinite"] > 0:
            return report, False
        self.strategy.run(self._apply, args=(grads,))
        return report, True

    # -- data ---------------------------------------------------------------------

    def weighted_rows(self, labels):
        """[B] bool: the rows carrying one of cfg.weighted_labels."""
        labels = tf.convert_to_tensor(labels)
        picked = tf.gather(labels, self.weighted_labels, axis=-1)
        return tf.reduce_any(picked > 0, axis=-1)

    @property
    def weighted_labels(self):
        return [i for i in self.cfg.weighted_labels
                if i < self.cfg.data.num_classes]

    @property
    def weighting(self):
        return bool(self.weighted_labels) and self.cfg.label_weight > 1

    def epoch_dataset(self, epoch, skip_batches):
        cfg = self.cfg
        seed = cfg.seed + epoch
        if not self.weighting:
            ds = self.reader.dataset(
                cfg.train_data_pattern, batch_size=cfg.batch_size,
                shuffle=True, seed=seed, num_epochs=1, drop_remainder=True)
        else:
            # Weighted videos are repeated label_weight times in the epoch,
            # then shuffled apart.
            copies = tf.constant(cfg.label_weight, tf.int64)
            ds = self.reader.dataset(
                cfg.train_data_pattern, batch_size=cfg.batch_size,
                shuffle=True, seed=seed, num_epochs=1).unbatch()
            ds = ds.flat_map(lambda example: tf.data.Dataset.from_tensors(
                example).repeat(tf.where(
                    self.weighted_rows(example["labels"]), copies,
                    tf.constant(1, tf.int64))))
            ds = ds.shuffle(16 * cfg.batch_size, seed=seed).batch(
                cfg.batch_size, drop_remainder=True)
        if skip_batches:
            ds = ds.skip(skip_batches)
        return self.strategy.experimental_distribute_dataset(ds)

    def ordered_batches(self, pattern):
        """Every example once, in file order (subspace fit, validation)."""
        ds = self.reader.dataset(pattern, batch_size=self.cfg.batch_size,
                                 shuffle=False, num_epochs=1)
        return readers.iterate(ds, pattern)

    # -- export ---------------------------------------------------------------------

    def _update_weighted(self, cca, video, audio, labels):
        """Adds a batch to `cca`'s statistics, weighted rows label_weight
        times (the same statistics as repeating those videos)."""
        cca.update_state(video, audio)
        if self.weighting:
            rows = self.weighted_rows(labels)
            for _ in range(self.cfg.label_weight - 1):
                cca.update_state(tf.boolean_mask(video, rows),
                                 tf.boolean_mask(audio, rows))

    def fit_subspace(self, max_examples=0):
        """Exact streamed linear CCA on training-set embeddings: of every
        training video, or of the first `max_examples` in file order (whole
        batches; 0: all)."""
        self.subspace.reset_state()
        call = tf.function(lambda b: self.model(b, training=False))
        seen = 0
        self.subspace_complete = True
        total = progress.count_records(self.cfg.train_data_pattern)
        if max_examples and total:
            total = min(total, max_examples)
        for batch in progress.track(
                self.ordered_batches(self.cfg.train_data_pattern),
                "fit subspace", total, "video", size=lambda b: len(b["id"])):
            out = call(batch)
            self._update_weighted(self.subspace, out["video"], out["audio"],
                                  batch["labels"])
            seen += int(out["video"].shape[0])
            if max_examples and seen >= max_examples:
                self.subspace_complete = False
                break
        return self.subspace.fit().numpy()

    def input_projections(self):
        """The towers' InputProjection layers, or None when they have none."""
        towers = (self.model.video_tower, self.model.audio_tower)
        layers = [getattr(t, "input_projection", None) for t in towers]
        return None if None in layers else layers

    def fit_input_projection(self):
        """Fits the towers' input projections before training: a linear CCA
        of the normalized training features (weighted like the training
        set), whose top directions each tower then starts from."""
        video_layer, audio_layer = self.input_projections()
        towers = (self.model.video_tower, self.model.audio_tower)
        dim = towers[0].cca_input_dim
        ridge = towers[0].cca_input_ridge
        cca = subspace_lib.LinearCCA(dim, r1=ridge, r2=ridge)
        normalize = tf.function(lambda b: (towers[0].normalization(b["video"]),
                                           towers[1].normalization(b["audio"])))
        for batch in self.ordered_batches(self.cfg.train_data_pattern):
            video, audio = normalize(batch)
            self._update_weighted(cca, video, audio, batch["labels"])
        correlations = cca.fit().numpy()
        if not np.all(np.isfinite(correlations)):
            raise NonFiniteStepError(
                "the linear CCA input projection of the training set is not "
                "finite; check the training features")
        video_layer.set_projection(cca.video_mean, cca.video_projection)
        audio_layer.set_projection(cca.audio_mean, cca.audio_projection)
        log.info("input projection: top %d linear-CCA directions of the "
                 "training set (ridge %g), correlations %.3f ... %.3f", dim,
                 ridge, correlations[0], correlations[-1])

    def validate(self):
        if not self.cfg.validate_data_pattern:
            return None
        emb = evaluation.embed_dataset(
            self.model, self.ordered_batches(self.cfg.validate_data_pattern),
            subspace=self.subspace, with_attention=True, label="validate",
            total=progress.count_records(self.cfg.validate_data_pattern))
        # Early stopping reads Recall@10, whatever top_k shows.
        result = evaluation.score(emb, sorted(set(self.cfg.top_k) | {10}),
                                  with_map=self.cfg.validation_map,
                                  csls_k=self.cfg.csls_k)
        self.writer.validation(int(self.step.numpy()), result, emb,
                               self.cfg.vocabulary_file)
        return result

    def checkpoint_and_export(self):
        """Fits the subspace, saves a checkpoint, exports, validates.

        Only the chief fits the subspace (it alone exports; the other
        workers' checkpoints are scratch). A periodic export fits it on at
        most `subspace_fit_examples` training videos, so its cost does not
        grow with the training set; the final export fits it on all
        (final_export.py).

        With early stopping only an improvement on validation is exported,
        so the newest export is always the best model.
        """
        self.fit_finite_subspace(self.cfg.subspace_fit_examples)
        if self.early_stopping:
            path = self.manager.save(checkpoint_number=self.step)
            log.info("step %d: checkpoint %s", int(self.step.numpy()), path)
            return self.validate_and_keep_best()
        return self.save_and_export()

    def save_and_export(self):
        """Saves a checkpoint and exports the model as it is (the subspace
        already fitted), then validates it; returns (export_dir or None,
        validation result)."""
        path = self.manager.save(checkpoint_number=self.step)
        export_dir = None
        if self.chief:
            export_dir = modeling.export_model(
                self.cfg.train_dir, int(self.step.numpy()), self.cfg,
                self.model, self.subspace)
            log.info("step %d: checkpoint %s, export %s", int(self.step.numpy()),
                     path, export_dir)
        return export_dir, self.validate()

    def _agreed(self, value):
        """The chief's `value` on every worker: only the chief fits the
        subspace, so its validation decides, and every worker takes the
        same early-stopping decision."""
        weight = 1.0 if self.chief else 0.0
        per_replica = self.strategy.run(lambda: tf.constant(
            [value * weight, weight], tf.float32))
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                     axis=None).numpy()
        return float(total[0] / total[1])

    def validate_and_keep_best(self, fit=False):
        """Validates the current model; keeps and exports it if it is the best.

        Returns:
          (export_dir of the best model or None, this validation's result).
        """
        if fit:
            self.fit_finite_subspace(self.cfg.subspace_fit_examples)
        step = int(self.step.numpy())
        result = self.validate()
        score = self._agreed(selection_score(result))
        self.validated_step.assign(step)
        self.validations.append((step, score))
        best = float(self.best_score.numpy())
        export_dir = None
        if score > best:
            self.best_score.assign(score)
            self.best_step.assign(step)
            self.bad_validations.assign(0)
            self.best_manager.save(checkpoint_number=step)
            self.best_result = result if self.subspace_complete else None
            if self.chief:
                export_dir = modeling.export_model(
                    self.cfg.train_dir, step, self.cfg, self.model,
                    self.subspace)
            log.info("step %d: validation R@10 %.4f, the best so far: kept "
                     "and exported (%s)", step, score, export_dir)
        else:
            self.bad_validations.assign_add(1)
            best_step = int(self.best_step.numpy())
            bad = int(self.bad_validations.numpy())
            log.info("step %d: validation R@10 %.4f, not above the best %.4f "
                     "of step %d (%d validations without improvement; "
                     "stopping after at least %d and step %d)",
                     step, score, best, best_step, bad,
                     self.cfg.early_stopping_patience,
                     patience_end(self.cfg, best_step))
            if patience_exhausted(self.cfg, step, best_step, bad):
                self.stopped.assign(1)
        return export_dir, result

    def restore_best(self):
        """Puts the best validated weights and subspace back into the model."""
        path = self.best_manager.latest_checkpoint
        if path is None:
            return
        self.best_checkpoint.read(path).expect_partial()

    def fit_finite_subspace(self, max_examples=0):
        """`fit_subspace`, checked: only the chief fits, and a model
        whose embeddings are not finite stops the run."""
        if self.chief and not np.all(np.isfinite(
                self.fit_subspace(max_examples))):
            # A finite but huge update can still make the embeddings overflow;
            # such a model must not replace the last good checkpoint.
            raise NonFiniteStepError(
                f"step {int(self.step.numpy())}: the training-set embeddings "
                "are not finite (the model diverged); no checkpoint was "
                f"written and the last good one ({self.manager.latest_checkpoint})"
                " is kept. Lower base_learning_rate or set "
                "clip_gradient_norm")

    # -- loop ---------------------------------------------------------------------

    def run(self):
        """Trains until a stopping condition, then leaves the final checkpoint
        and export in train_dir (final_export.py); returns a `TrainResult`."""
        cfg = self.cfg
        start = time.time()
        run = _RunState(
            max_steps=cfg.max_steps if cfg.max_steps > 0 else None,
            max_epochs=epoch_cap(cfg, self.early_stopping),
            last_saved=(int(self.step.numpy())
                        if self.manager.latest_checkpoint else -1))
        bar = progress.Progress("train", self.planned_steps(), "step",
                                initial=int(self.step.numpy()))
        untrained = cfg.model in config_lib.UNTRAINED_MODELS
        if untrained:
            run.stop_reason = f"{cfg.model} has nothing to train"
            log.info("%s: fitting the linear CCA subspace on the training "
                     "set; nothing to train", cfg.model)
        else:
            self._log_schedule(run.max_epochs)
            if self.early_stopping and int(self.validated_step.numpy()) < 0:
                # The untrained model is the first candidate: a recipe that
                # starts from a good linear solution can then never end
                # worse on validation than where it began.
                self._timed_export(
                    run, lambda: self.validate_and_keep_best(fit=True))
            self._train_epochs(run, bar)
        bar.close()
        step = int(self.step.numpy())
        step_seconds = time.time() - start - run.export_seconds
        best_step = None
        if self.early_stopping and not untrained:
            export_dir, validation, best_step = export_best(
                self, run.stop_reason)
        else:
            export_dir, validation = export_last(
                self, run.stop_reason, run.last_saved, run.export_dir,
                run.validation)
        self.writer.flush()
        result = TrainResult(cfg.train_dir, step, time.time() - start,
                             self.skipped_nonfinite, validation, export_dir,
                             run.examples, step_seconds, best_step,
                             run.stop_reason, list(self.validations))
        if self.chief:
            rundir.write_train_result(result)
        return result

    def _train_epochs(self, run, bar):
        """Trains epoch after epoch until `_stop_reason` gives one."""
        while True:
            run.stop_reason = self._stop_reason(run)
            if run.stop_reason:
                return
            self._train_epoch(run, bar)

    def _stop_reason(self, run):
        """Why training ends here, or "" while it goes on."""
        cfg = self.cfg
        epoch = int(self.epoch.numpy())
        step = int(self.step.numpy())
        if self.stopped.numpy():
            return patience_reason(cfg, step, int(self.best_step.numpy()),
                                   int(self.bad_validations.numpy()))
        # As in YT8M, whichever of --num_epochs and --max_steps comes
        # first ends training.
        if run.max_epochs is not None and epoch >= run.max_epochs:
            return f"reached {run.max_epochs} epochs"
        if run.max_steps is not None and step >= run.max_steps:
            return f"reached max_steps={run.max_steps}"
        if (run.max_epochs is None and epoch > 0
                and step >= cfg.auto_train_steps):
            return (f"no validation data: {epoch} whole epochs "
                    f"reach auto_train_steps={cfg.auto_train_steps}")
        return ""

    def _train_epoch(self, run, bar):
        """Trains on the rest of the current epoch, from the data position;
        leaves it unfinished when early stopping or max_steps ends training."""
        cfg = self.cfg
        epoch = int(self.epoch.numpy())
        got_batch = False
        batches = self.epoch_dataset(epoch, int(self.batch_in_epoch.numpy()))
        for batch in readers.iterate(batches, cfg.train_data_pattern):
            got_batch = True
            step = self._train_on(batch, run, bar, epoch)
            if step is None:
                continue
            if step % cfg.export_model_steps == 0:
                self._timed_export(run, self.checkpoint_and_export)
                run.last_saved = step
            if self.stopped.numpy():
                return
            if run.max_steps is not None and step >= run.max_steps:
                return
        self._end_epoch(run, got_batch)

    def _train_on(self, batch, run, bar, epoch):
        """One step on `batch`, counted and logged; returns the new step, or
        None when the update was withheld (not finite)."""
        cfg = self.cfg
        next_step = int(self.step.numpy()) + 1
        report, applied = self.train_step(
            batch, monitor=(next_step % cfg.log_every_steps == 0
                            or next_step == 1))
        self.batch_in_epoch.assign_add(1)
        if not applied:
            self._handle_nonfinite(report)
            return None
        step = int(self.step.assign_add(1).numpy())
        bar.update(step, epoch=epoch + 1, loss=float(report["loss"]))
        run.window_examples += cfg.batch_size
        run.examples += cfg.batch_size
        if step % cfg.log_every_steps == 0 or step == 1:
            self._log_step(step, report, run)
        return step

    def _log_step(self, step, report, run):
        rate = run.window_examples / max(time.time() - run.window_start, 1e-9)
        lr = float(np.asarray(self.optimizer.learning_rate))
        log.info("step %d: loss %.4f, total correlation %.3f, "
                 "%.0f examples/s", step, report["loss"],
                 report["total_correlation"], rate)
        self.writer.train_step(step, report, lr, rate)
        run.window_start, run.window_examples = time.time(), 0

    def _end_epoch(self, run, got_batch):
        """Moves the data position to the next epoch; with early stopping,
        validates once `validate_every_steps` have passed since the last."""
        cfg = self.cfg
        if not got_batch and int(self.batch_in_epoch.numpy()) == 0:
            raise ConfigError(
                "{train_data_pattern} yields no full batch of "
                "{batch_size}",
                train_data_pattern=cfg.train_data_pattern,
                batch_size=cfg.batch_size)
        self.epoch.assign_add(1)
        self.batch_in_epoch.assign(0)
        step = int(self.step.numpy())
        if self.early_stopping and (
                step - int(self.validated_step.numpy())
                >= cfg.validate_every_steps):
            self._timed_export(run, self.checkpoint_and_export)
            run.last_saved = step

    def _timed_export(self, run, export):
        """Runs `export` (() -> (export_dir, validation)) and keeps what it
        returns; its time is left out of the training rate."""
        started = time.time()
        run.export_dir, run.validation = export()
        run.export_seconds += time.time() - started

    def _log_schedule(self, max_epochs):
        cfg = self.cfg
        if self.early_stopping:
            log.info("early stopping: validation every epoch end at least %d "
                     "steps after the last one (validate_every_steps) and at "
                     "every export; stop after at least %d validations "
                     "without improvement (early_stopping_patience) and %g "
                     "times the best step's count past it "
                     "(early_stopping_fraction), at most %d epochs; the best "
                     "model is kept and exported",
                     cfg.validate_every_steps, cfg.early_stopping_patience,
                     cfg.early_stopping_fraction, max_epochs)
        elif max_epochs is None:
            log.info("no validation data and num_epochs=0: training whole "
                     "epochs until at least %d steps (auto_train_steps)",
                     cfg.auto_train_steps)
        else:
            log.info("training %d epochs (num_epochs)", max_epochs)

    def planned_steps(self):
        """The step training stops at, for the progress report: the sooner
        of max_steps and num_epochs full batches (None: not known cheaply)."""
        records = progress.count_records(self.cfg.train_data_pattern)
        ends = [self.cfg.max_steps] if self.cfg.max_steps > 0 else []
        if self.cfg.num_epochs > 0 and records is not None:
            ends.append(self.cfg.num_epochs * (records // self.cfg.batch_size))
        return min(ends) if ends else None

    def _handle_nonfinite(self, report):
        step = int(self.step.numpy())
        if not self.cfg.skip_nonfinite_steps:
            raise NonFiniteStepError(
                f"step {step + 1}: the loss ({report['loss']}) or gradient norm "
                f"({report['grad_norm']}) is not finite; the update was not "
                f"applied and the last good checkpoint "
                f"({self.manager.latest_checkpoint}) is kept. Lower "
                "base_learning_rate, or set skip_nonfinite_steps to skip "
                "such steps")
        self.skipped_nonfinite += 1
        log.warning("step %d: non-finite loss or gradient, update skipped "
                    "(%d skipped so far)", step + 1, self.skipped_nonfinite)
        self.writer.scalar("train/skipped_nonfinite_steps",
                           self.skipped_nonfinite, step)


def train(cfg):
    """Trains, checkpoints, fits the subspace and exports. See module doc.

    The chief also writes `train_dir/train_result.json` (see TrainResult).
    """
    return Trainer(cfg).run()
