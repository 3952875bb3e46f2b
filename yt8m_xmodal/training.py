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

from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import export as export_lib
from yt8m_xmodal import losses as losses_lib
from yt8m_xmodal import metrics
from yt8m_xmodal import models
from yt8m_xmodal import readers
from yt8m_xmodal import summaries
from yt8m_xmodal.tools import synthetic
from yt8m_xmodal.errors import FlagError

log = logging.getLogger("yt8m_xmodal")

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored")
# The demo set has 1,600 training videos: 15 epochs (about 190 steps of 128)
# train the default model in a few minutes on 2 CPU cores.
DEMO_NUM_EPOCHS = 15
# train.py's flag defaults are the frame-level recipe (BENCHMARKS.md, frame
# level). With --noframe_features, the flags below that the user does not set
# take the video-level recipe instead (BENCHMARKS.md, video level: on real
# video-level features, deep CCA beat InfoNCE for the MLP towers).
VIDEO_LEVEL_DEFAULTS = {"model": "VideoLevelMlpModel", "loss": "dcca",
                        "embedding_dim": 64, "subspace_dim": 64,
                        "base_learning_rate": 1e-3, "cca_ridge": 1e-4}
# Losses that whiten each view, so the global batch must exceed o1 + o2.
CCA_LOSSES = ("dcca", "cluster_cca")
# Which of train.py's objective flags each --loss takes.
LOSS_FLAGS = {
    "dcca": ("top_k", "r1", "r2"),
    "cluster_cca": ("top_k", "r1", "r2", "beta"),
    "soft_cca": (),
    "infonce": ("temperature", "learn_temperature"),
    "triplet": ("margin",),
}


@dataclasses.dataclass
class TrainConfig:
    """Everything train.py's flags decide."""

    train_data_pattern: str
    train_dir: str
    data: config_lib.DataConfig
    model: str = "ChunkAttentionModel"
    model_config: dict = dataclasses.field(default_factory=dict)
    loss: str = "dcca"
    loss_config: dict = dataclasses.field(default_factory=dict)
    subspace_dim: int = 16
    validate_data_pattern: str = ""
    start_new_model: bool = False
    batch_size: int = 128
    num_epochs: int = 5
    max_steps: int = 0
    base_learning_rate: float = 3e-3
    learning_rate_decay: float = 0.95
    learning_rate_decay_examples: int = 4_000_000
    optimizer: str = "adam"
    clip_gradient_norm: float = 1.0
    export_model_steps: int = 1000
    keep_checkpoint_max: int = 5
    distribution_strategy: str = "one_device"
    seed: int = 0
    log_every_steps: int = 10
    skip_nonfinite_steps: bool = False
    skip_corrupt: bool = False
    vocabulary_file: str = ""
    top_k: tuple = (1, 5, 10, 20)

    def model_flags(self):
        return config_lib.ModelFlags(
            data=self.data, model=self.model, model_config=self.model_config,
            loss=self.loss, loss_config=self.loss_config,
            subspace_dim=self.subspace_dim)


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
    raise FlagError(
        f"--distribution_strategy={name!r} is not one of {', '.join(STRATEGIES)}")


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
        raise FlagError(
            f"--optimizer={name!r} is not one of {', '.join(OPTIMIZERS)}")
    return optimizers[name](learning_rate=learning_rate)


def learning_rate_schedule(cfg):
    """YT8M's staircase exponential decay, counted in examples."""
    if not 0 < cfg.learning_rate_decay <= 1:
        raise FlagError(
            f"--learning_rate_decay={cfg.learning_rate_decay} must be in (0, 1]")
    decay_steps = max(1, cfg.learning_rate_decay_examples // cfg.batch_size)
    return keras.optimizers.schedules.ExponentialDecay(
        cfg.base_learning_rate, decay_steps, cfg.learning_rate_decay,
        staircase=True)


def check_config(cfg):
    """Fails at start-up, naming the flag, for settings that cannot work."""
    if cfg.model not in models.MODELS:
        raise FlagError(f"--model={cfg.model!r} is not a model; choose one of "
                        f"{', '.join(sorted(models.MODELS))}")
    if cfg.loss not in losses_lib.LOSSES:
        raise FlagError(f"--loss={cfg.loss!r} is not one of "
                        f"{', '.join(sorted(losses_lib.LOSSES))}")
    if not cfg.train_data_pattern:
        raise FlagError("--train_data_pattern is empty")
    if not cfg.train_dir:
        raise FlagError("--train_dir is empty")
    if cfg.batch_size < 2:
        raise FlagError(f"--batch_size={cfg.batch_size} must be >= 2")
    if cfg.export_model_steps < 1:
        raise FlagError(
            f"--export_model_steps={cfg.export_model_steps} must be >= 1")
    if cfg.num_epochs < 1 and cfg.max_steps < 1:
        raise FlagError("set --num_epochs or --max_steps to a positive value")
    embedding_dim = cfg.model_config.get("embedding_dim")
    if embedding_dim is not None and not 1 <= cfg.subspace_dim <= embedding_dim:
        raise FlagError(
            f"--subspace_dim={cfg.subspace_dim} must be between 1 and "
            f"--embedding_dim={embedding_dim}")
    if cfg.loss in CCA_LOSSES and embedding_dim is not None:
        needed = losses_lib.min_batch_size(embedding_dim, embedding_dim)
        if cfg.batch_size < needed:
            raise FlagError(
                f"--batch_size={cfg.batch_size} is too small for --loss="
                f"{cfg.loss} with --embedding_dim={embedding_dim}: CCA needs "
                f"at least {needed} examples per global batch (m - 1 >= "
                "o1 + o2); raise --batch_size or lower --embedding_dim")


def prepare_train_dir(cfg):
    if cfg.start_new_model and os.path.exists(cfg.train_dir):
        # As in YT8M: --start_new_model wipes train_dir without asking.
        shutil.rmtree(cfg.train_dir)
    os.makedirs(cfg.train_dir, exist_ok=True)
    path = os.path.join(cfg.train_dir, config_lib.MODEL_FLAGS_FILE)
    wanted = cfg.model_flags()
    if os.path.exists(path):
        existing = config_lib.read_model_flags(cfg.train_dir)
        if existing != wanted:
            raise FlagError(
                f"--train_dir={cfg.train_dir} holds a model trained with other "
                f"flags ({path}); pass --start_new_model to replace it, or use "
                "another --train_dir")
    else:
        config_lib.write_model_flags(cfg.train_dir, wanted)


class Trainer:
    """Owns the model, optimizer, checkpoints and loop of one training run."""

    def __init__(self, cfg):
        check_config(cfg)
        self.cfg = cfg
        self.strategy = make_strategy(cfg.distribution_strategy)
        self.chief = is_chief(self.strategy)
        self.reader = readers.get_reader(
            frame_features=cfg.data.frame_features,
            feature_names=cfg.data.feature_names,
            feature_sizes=cfg.data.feature_sizes,
            max_frames=cfg.data.max_frames, num_classes=cfg.data.num_classes,
            skip_corrupt=cfg.skip_corrupt)
        readers.resolve_files(cfg.train_data_pattern)
        if cfg.validate_data_pattern:
            readers.resolve_files(cfg.validate_data_pattern)
        if self.chief:
            prepare_train_dir(cfg)
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            self.model, self.subspace = evaluation.build_model(cfg.model_flags())
            self.loss = losses_lib.get_loss(cfg.loss, **cfg.loss_config)
            self.optimizer = make_optimizer(
                cfg.optimizer, learning_rate_schedule(cfg))
            self.variables = (list(self.model.trainable_variables)
                              + list(getattr(self.loss, "trainable_variables", [])))
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = tf.train.Checkpoint(
            **evaluation.checkpoint_objects(self.model, self.subspace, self.step),
            optimizer=self.optimizer, loss=self.loss, epoch=self.epoch,
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
        self._compute = tf.function(self._compute_gradients)
        self._apply = tf.function(self._apply_gradients)

    # -- one step ---------------------------------------------------------------

    def _compute_gradients(self, batch):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            emb = self.model(batch, training=True)
            out = self.loss.compute(emb["video"], emb["audio"], batch["labels"])
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

    def train_step(self, batch):
        grads, report = self.strategy.run(self._compute, args=(batch,))
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

    def fit_subspace(self):
        """Exact streamed linear CCA on training-set embeddings."""
        self.subspace.reset_state()
        call = tf.function(lambda b: self.model(b, training=False))
        for batch in self.ordered_batches(self.cfg.train_data_pattern):
            out = call(batch)
            self.subspace.update_state(out["video"], out["audio"])
        return self.subspace.fit().numpy()

    def validate(self):
        if not self.cfg.validate_data_pattern:
            return None
        emb = evaluation.embed_dataset(
            self.model, self.ordered_batches(self.cfg.validate_data_pattern),
            subspace=self.subspace, with_attention=True)
        result = evaluation.score(emb, self.cfg.top_k)
        self.writer.validation(int(self.step.numpy()), result, emb,
                               self.cfg.vocabulary_file)
        return result

    def checkpoint_and_export(self):
        """Fits the subspace, saves a checkpoint, exports, validates."""
        if not np.all(np.isfinite(self.fit_subspace())):
            # A finite but huge update can still make the embeddings overflow;
            # such a model must not replace the last good checkpoint.
            raise NonFiniteStepError(
                f"step {int(self.step.numpy())}: the training-set embeddings "
                "are not finite (the model diverged); no checkpoint was "
                f"written and the last good one ({self.manager.latest_checkpoint})"
                " is kept. Lower --base_learning_rate or set "
                "--clip_gradient_norm")
        path = self.manager.save(checkpoint_number=self.step)
        export_dir = None
        if self.chief:
            export_dir = export_lib.export_model(
                self.cfg.train_dir, int(self.step.numpy()), self.cfg.model_flags(),
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
                report, applied = self.train_step(batch)
                self.batch_in_epoch.assign_add(1)
                if not applied:
                    self._handle_nonfinite(report)
                    continue
                step = int(self.step.assign_add(1).numpy())
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
                    raise FlagError(
                        f"--train_data_pattern={cfg.train_data_pattern} "
                        f"yields no full batch of --batch_size="
                        f"{cfg.batch_size}")
                self.epoch.assign_add(1)
                self.batch_in_epoch.assign(0)
        step = int(self.step.numpy())
        step_seconds = time.time() - start - export_seconds
        if step != last_saved:
            export_dir, validation = self.checkpoint_and_export()
        elif validation is None:
            validation = self.validate()
        self.writer.flush()
        return TrainResult(cfg.train_dir, step, time.time() - start,
                           self.skipped_nonfinite, validation, export_dir,
                           examples, step_seconds)

    def _handle_nonfinite(self, report):
        step = int(self.step.numpy())
        if not self.cfg.skip_nonfinite_steps:
            raise NonFiniteStepError(
                f"step {step + 1}: the loss ({report['loss']}) or gradient norm "
                f"({report['grad_norm']}) is not finite; the update was not "
                f"applied and the last good checkpoint "
                f"({self.manager.latest_checkpoint}) is kept. Lower "
                "--base_learning_rate, or pass --skip_nonfinite_steps to skip "
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
    trainer = Trainer(cfg)
    result = trainer.run()
    if trainer.chief:
        write_train_result(result)
    return result


def model_config_from_flags(f):
    """The --model's constructor arguments taken from the flags it accepts."""
    candidates = {
        "chunk_size": f.chunk_size, "rnn_type": f.rnn_type,
        "rnn_units": f.rnn_units, "attention": f.attention,
        "num_heads": f.num_heads, "position_encoding": f.position_encoding,
        "hidden_units": f.hidden_units, "embedding_dim": f.embedding_dim,
        "dropout": f.dropout, "max_frames": f.max_frames,
        "attention_units": f.attention_units,
        "num_hidden_layers": f.num_hidden_layers, "input_norm": f.input_norm,
        "input_projection_units": f.input_projection_units,
    }
    if f.model not in models.MODELS:
        return candidates  # get_model names the bad --model
    accepted = models.config_names(models.MODELS[f.model])
    return {k: v for k, v in candidates.items() if k in accepted}


def loss_config_from_flags(f):
    candidates = {
        "top_k": f.cca_top_k or None, "r1": f.cca_ridge, "r2": f.cca_ridge,
        "beta": f.cluster_cca_beta, "temperature": f.temperature,
        "learn_temperature": f.learn_temperature, "margin": f.triplet_margin,
    }
    accepted = LOSS_FLAGS.get(f.loss, ())  # get_loss names a bad --loss
    return {k: v for k, v in candidates.items() if k in accepted}


class _WithDefaults:
    """Flag values, with other defaults for the flags the user did not set."""

    def __init__(self, flag_values, defaults):
        self._flags = flag_values
        self._defaults = {k: v for k, v in defaults.items()
                          if not flag_values[k].present}

    def __getattr__(self, name):
        if name in self._defaults:
            return self._defaults[name]
        return getattr(self._flags, name)

    def __getitem__(self, name):
        return self._flags[name]


def config_from_flags(f):
    """A `TrainConfig` from train.py's flags; demo data when no pattern.

    With --noframe_features, unset flags take VIDEO_LEVEL_DEFAULTS.
    """
    data = cli.data_config_from_flags()
    if not data.frame_features:
        f = _WithDefaults(f, VIDEO_LEVEL_DEFAULTS)
    train_pattern, validate_pattern = f.train_data_pattern, f.validate_data_pattern
    vocabulary_file = f.vocabulary_file
    num_epochs = f.num_epochs
    if not train_pattern:
        demo_dir = synthetic.ensure_demo_data()
        log.info("no --train_data_pattern: training on the built-in demo data "
                 "in %s", demo_dir)
        train_pattern = os.path.join(demo_dir, "train-*.tfrecord")
        validate_pattern = validate_pattern or os.path.join(
            demo_dir, "validate-*.tfrecord")
        if not f["num_epochs"].present:
            num_epochs = DEMO_NUM_EPOCHS
    return TrainConfig(
        train_data_pattern=train_pattern, train_dir=f.train_dir, data=data,
        model=f.model, model_config=model_config_from_flags(f), loss=f.loss,
        loss_config=loss_config_from_flags(f), subspace_dim=f.subspace_dim,
        validate_data_pattern=validate_pattern,
        start_new_model=f.start_new_model, batch_size=f.batch_size,
        num_epochs=num_epochs, max_steps=f.max_steps,
        base_learning_rate=f.base_learning_rate,
        learning_rate_decay=f.learning_rate_decay,
        learning_rate_decay_examples=f.learning_rate_decay_examples,
        optimizer=f.optimizer, clip_gradient_norm=f.clip_gradient_norm,
        export_model_steps=f.export_model_steps,
        keep_checkpoint_max=f.keep_checkpoint_max,
        distribution_strategy=f.distribution_strategy, seed=f.seed,
        log_every_steps=f.log_every_steps,
        skip_nonfinite_steps=f.skip_nonfinite_steps,
        skip_corrupt=f.skip_corrupt, vocabulary_file=vocabulary_file,
        top_k=metrics.parse_top_k(f.top_k))


def summary_text(cfg, result):
    """What train.py prints at the end: figures, paths and next commands."""
    lines = [f"Trained {cfg.model} with --loss={cfg.loss} to step {result.step} "
             f"in {result.wall_seconds:.0f} s: {result.examples} examples in "
             f"{result.step_seconds:.0f} s of training steps "
             f"({result.examples_per_second:.0f} examples/s), the rest "
             "checkpoints, exports and validation."]
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
