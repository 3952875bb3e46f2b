"""The training loop behind train.py.

A plain `tf.function` loop rather than `keras.Model.fit`: deep CCA needs the
whole global batch inside one loss, the step must be withheld when the loss or
gradient is not finite, and the data position must be checkpointed, all of
which a hand-written loop states directly.

One step is two replica functions under the active `tf.distribute` strategy:

1. `compute_gradients`: forward pass, loss (CCA losses all-reduce their
   sufficient statistics so every replica sees the global-batch loss),
   gradients all-reduced to the global gradient, its norm, clipping, and a
   finiteness flag agreed by all replicas.
2. `apply_gradients`: runs only when the flag says the step is finite, so a
   non-finite update never reaches the weights or the optimizer's moments.

Checkpoints (`tf.train.CheckpointManager`) hold the model, optimizer, loss
variables (InfoNCE's temperature), the fitted CCA subspace, the global step
and the data position (epoch, batch within epoch). The data order of every
epoch is a pure function of `--seed` and the epoch, so resuming rebuilds the
epoch's order and skips the batches already consumed.
"""

import dataclasses
import json
import logging
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import losses as losses_lib
from yt8m_xmodal import modeling
from yt8m_xmodal import progress
from yt8m_xmodal import readers
from yt8m_xmodal import records
from yt8m_xmodal import summaries
from yt8m_xmodal.config import TrainConfig
from yt8m_xmodal.errors import ConfigError

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

    @property
    def examples_per_second(self):
        return self.examples / self.step_seconds if self.step_seconds else 0.0


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


def make_optimizer(name, learning_rate):
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
        "adagrad": keras.optimizers.Adagrad,
    }
    if name not in optimizers:
        raise ConfigError(f"{{optimizer}} is not one of "
                          f"{', '.join(optimizers)}", optimizer=name)
    return optimizers[name](learning_rate=learning_rate)


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
    path = os.path.join(cfg.train_dir, config_lib.MODEL_FLAGS_FILE)
    if os.path.exists(path):
        existing = config_lib.read_model_flags(cfg.train_dir)
        if not existing.same_model(cfg):
            raise ConfigError(
                f"{{train_dir}} holds a model trained with another "
                f"configuration ({path}); start a new model there "
                "({start_new_model}) or use another train_dir",
                train_dir=cfg.train_dir, start_new_model=True)
    config_lib.write_model_flags(cfg.train_dir, cfg)


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
        records.check_records(cfg.data, cfg.train_data_pattern,
                              skip_corrupt=cfg.skip_corrupt)
        if cfg.validate_data_pattern:
            records.check_records(cfg.data, cfg.validate_data_pattern,
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
        checkpoint = modeling.new_checkpoint(
            self.model, self.subspace, self.step, optimizer=self.optimizer,
            loss=self.loss, epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch)
        # Non-chief workers write to a scratch directory that is discarded:
        # MultiWorkerMirroredStrategy needs every worker to take part in a save.
        ckpt_dir = cfg.train_dir if self.chief else os.path.join(
            cfg.train_dir, f".worker-{self.strategy.cluster_resolver.task_id}")
        self.manager = tf.train.CheckpointManager(
            checkpoint, ckpt_dir, max_to_keep=cfg.keep_checkpoint_max)
        self.checkpoint = checkpoint
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

    def epoch_dataset(self, epoch, skip_batches):
        ds = self.reader.dataset(
            self.cfg.train_data_pattern, batch_size=self.cfg.batch_size,
            shuffle=True, seed=self.cfg.seed + epoch, num_epochs=1,
            drop_remainder=True)
        if skip_batches:
            ds = ds.skip(skip_batches)
        return self.strategy.experimental_distribute_dataset(ds)

    def ordered_batches(self, pattern):
        """Every example once, in file order (subspace fit, validation)."""
        ds = self.reader.dataset(pattern, batch_size=self.cfg.batch_size,
                                 shuffle=False, num_epochs=1)
        return readers.iterate(ds, pattern)

    # -- export ---------------------------------------------------------------------

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
            self.subspace.update_state(out["video"], out["audio"])
            seen += int(out["video"].shape[0])
            if max_examples and seen >= max_examples:
                self.subspace_complete = False
                break
        return self.subspace.fit().numpy()

    def validate(self):
        if not self.cfg.validate_data_pattern:
            return None
        emb = evaluation.embed_dataset(
            self.model, self.ordered_batches(self.cfg.validate_data_pattern),
            subspace=self.subspace, with_attention=True, label="validate",
            total=progress.count_records(self.cfg.validate_data_pattern))
        result = evaluation.score(emb, self.cfg.top_k,
                                  with_map=self.cfg.validation_map)
        self.writer.validation(int(self.step.numpy()), result, emb,
                               self.cfg.vocabulary_file)
        return result

    def checkpoint_and_export(self, final=False):
        """Fits the subspace, saves a checkpoint, exports, validates.

        Only the chief fits the subspace (it alone exports; the other
        workers' checkpoints are scratch). A periodic export fits it on at
        most `subspace_fit_examples` training videos, so its cost does not
        grow with the training set; the final export fits it on all.
        """
        limit = 0 if final else self.cfg.subspace_fit_examples
        if self.chief and not np.all(np.isfinite(self.fit_subspace(limit))):
            # A finite but huge update can still make the embeddings overflow;
            # such a model must not replace the last good checkpoint.
            raise NonFiniteStepError(
                f"step {int(self.step.numpy())}: the training-set embeddings "
                "are not finite (the model diverged); no checkpoint was "
                f"written and the last good one ({self.manager.latest_checkpoint})"
                " is kept. Lower base_learning_rate or set "
                "clip_gradient_norm")
        path = self.manager.save(checkpoint_number=self.step)
        export_dir = None
        if self.chief:
            export_dir = modeling.export_model(
                self.cfg.train_dir, int(self.step.numpy()), self.cfg,
                self.model, self.subspace)
            log.info("step %d: checkpoint %s, export %s", int(self.step.numpy()),
                     path, export_dir)
        return export_dir, self.validate()

    # -- loop ---------------------------------------------------------------------

    def run(self):
        cfg = self.cfg
        start = time.time()
        max_steps = cfg.max_steps if cfg.max_steps > 0 else None
        validation, export_dir = None, None
        last_saved = int(self.step.numpy()) if self.manager.latest_checkpoint else -1
        window_start, window_examples = time.time(), 0
        examples, export_seconds = 0, 0.0
        bar = progress.Progress("train", self.planned_steps(), "step",
                                initial=int(self.step.numpy()))
        while True:
            epoch = int(self.epoch.numpy())
            # As in YT8M, whichever of --num_epochs and --max_steps comes
            # first ends training.
            if cfg.num_epochs > 0 and epoch >= cfg.num_epochs:
                break
            if max_steps is not None and int(self.step.numpy()) >= max_steps:
                break
            got_batch = False
            batches = self.epoch_dataset(epoch, int(self.batch_in_epoch.numpy()))
            for batch in readers.iterate(batches, cfg.train_data_pattern):
                got_batch = True
                next_step = int(self.step.numpy()) + 1
                report, applied = self.train_step(
                    batch, monitor=(next_step % cfg.log_every_steps == 0
                                    or next_step == 1))
                self.batch_in_epoch.assign_add(1)
                if not applied:
                    self._handle_nonfinite(report)
                    continue
                step = int(self.step.assign_add(1).numpy())
                bar.update(step, epoch=epoch + 1, loss=float(report["loss"]))
                window_examples += cfg.batch_size
                examples += cfg.batch_size
                if step % cfg.log_every_steps == 0 or step == 1:
                    rate = window_examples / max(time.time() - window_start, 1e-9)
                    lr = float(np.asarray(self.optimizer.learning_rate))
                    log.info("step %d: loss %.4f, total correlation %.3f, "
                             "%.0f examples/s", step, report["loss"],
                             report["total_correlation"], rate)
                    self.writer.train_step(step, report, lr, rate)
                    window_start, window_examples = time.time(), 0
                if step % cfg.export_model_steps == 0:
                    export_start = time.time()
                    export_dir, validation = self.checkpoint_and_export()
                    export_seconds += time.time() - export_start
                    last_saved = step
                if max_steps is not None and step >= max_steps:
                    break
            else:
                if not got_batch and int(self.batch_in_epoch.numpy()) == 0:
                    raise ConfigError(
                        "{train_data_pattern} yields no full batch of "
                        "{batch_size}",
                        train_data_pattern=cfg.train_data_pattern,
                        batch_size=cfg.batch_size)
                self.epoch.assign_add(1)
                self.batch_in_epoch.assign(0)
        bar.close()
        step = int(self.step.numpy())
        step_seconds = time.time() - start - export_seconds
        # The last export must hold the subspace of the whole training set,
        # also when a periodic one fell on the last step.
        if step != last_saved or not self.subspace_complete:
            export_dir, validation = self.checkpoint_and_export(final=True)
        elif validation is None:
            validation = self.validate()
        self.writer.flush()
        result = TrainResult(cfg.train_dir, step, time.time() - start,
                             self.skipped_nonfinite, validation, export_dir,
                             examples, step_seconds)
        if self.chief:
            write_train_result(result)
        return result

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


# What a finished run leaves in train_dir for scripts and benchmarks to read
# (the printed summary is for people and may change).
TRAIN_RESULT_FILE = "train_result.json"


def write_train_result(result):
    """Writes `train_dir/train_result.json`: the TrainResult as JSON."""
    record = dataclasses.asdict(result)
    record["examples_per_second"] = result.examples_per_second
    config_lib.atomic_write_text(
        os.path.join(result.train_dir, TRAIN_RESULT_FILE),
        json.dumps(record, indent=2, sort_keys=True, default=float))


def train(cfg):
    """Trains, checkpoints, fits the subspace and exports. See module doc.

    The chief also writes `train_dir/train_result.json` (see TrainResult).
    """
    return Trainer(cfg).run()
