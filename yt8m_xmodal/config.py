"""Typed configuration: the shipped recipe, defined once.

Each model family and each loss has one small dataclass whose defaults are the
shipped recipe; `TrainConfig` nests them with the data and the schedule, as
Model Garden's task configs do. Everything else takes its defaults from here:
the model and tower classes, the losses, train.py's flags (generated from these
fields by `yt8m_xmodal.cli`) and the tests.

Two named recipes exist: FRAME_LEVEL_RECIPE and VIDEO_LEVEL_RECIPE
(`recipe(frame_features)` picks one).

More: docs/design.md, "Configuration".
"""

import dataclasses
import json

from yt8m_xmodal import features
from yt8m_xmodal.errors import ConfigError
# The layers own the kinds they implement; the configs offer those.
from yt8m_xmodal.layers.attention import ATTENTION_KINDS
from yt8m_xmodal.layers.chunking import num_chunk_positions
from yt8m_xmodal.layers.normalization import NORMALIZATION_KINDS
from yt8m_xmodal.layers.position import POSITION_ENCODINGS
from yt8m_xmodal.layers.recurrent import RNN_TYPES
from yt8m_xmodal.vocabulary import MUSIC_LABEL_INDICES

# 2: the whole TrainConfig, with typed model and loss configs.
MODEL_FLAGS_VERSION = 2

# "mean" is a masked mean over chunks instead of learned attention.
CHUNK_POOLINGS = ATTENTION_KINDS + ("mean",)
# Adam trains every measured recipe; SGD is the plain reference.
OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored")


# The epoch cap of num_epochs=0 with early stopping: generous, since the
# validation decides.
AUTO_MAX_EPOCHS = 200


def option(default, help_text):
    """A config dataclass field with its help text: a command's flag.

    The field's name is the flag's name (unique across the configs of a
    command), so an error naming a field names the flag too.
    """
    return dataclasses.field(default=default, metadata={"help": help_text})


_field = option


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{{{name}}} must be one of {', '.join(choices)}",
                          **{name: value})


def _check_at_least(config, names, minimum):
    for name in names:
        if getattr(config, name) < minimum:
            raise ConfigError(f"{{{name}}} must be >= {minimum}",
                              **{name: getattr(config, name)})


def _check_top_k(config):
    """Stores `top_k` as a tuple; its cut-offs must be positive."""
    object.__setattr__(config, "top_k", tuple(config.top_k))
    if not config.top_k or any(k < 1 for k in config.top_k):
        raise ConfigError("{top_k} must be positive integers",
                          top_k=",".join(map(str, config.top_k)))


# -- data ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    """The two views' features in YT8M records: the flags of every command
    that reads or writes records (train.py, the subset tool, the demo
    generator)."""

    feature_names: tuple[str, ...] = _field(
        (), "The video view's feature name, then the audio view's. Empty: "
        "rgb,audio at frame level, mean_rgb,mean_audio at video level.")
    feature_sizes: tuple[int, ...] = _field(
        features.FEATURE_SIZES, "Sizes of the features in feature_names.")


@dataclasses.dataclass(frozen=True)
class DataConfig(FeaturesConfig):
    """Which records to read and how: YT8M's reader flags."""

    frame_features: bool = _field(
        True, "Read frame-level SequenceExamples (rgb/audio per frame); "
        "otherwise video-level Examples (mean_rgb/mean_audio).")
    max_frames: int = _field(
        features.MAX_FRAMES, "Frames per video kept; longer videos are "
        "truncated.")
    num_classes: int = _field(features.NUM_CLASSES,
                              "Size of the label vocabulary (4716 for the "
                              "2017 release).")
    id_feature: str = _field(
        "id", "Context feature holding the video id: id (2018 release) or "
        "video_id (2017 release, with --num_classes=4716).")

    def __post_init__(self):
        names = tuple(self.feature_names) or features.default_feature_names(
            self.frame_features)
        names, sizes = features.parse_feature_lists(names, self.feature_sizes)
        object.__setattr__(self, "frame_features", bool(self.frame_features))
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "feature_sizes", sizes)
        _check_at_least(self, ("max_frames", "num_classes"), 1)
        if not self.id_feature:
            raise ConfigError("{id_feature} is empty; YT8M records keep the "
                              "id in id (2018) or video_id (2017)",
                              id_feature="")

    # What the trained towers depend on: evaluation and inference read
    # records with the model's values of these; id_feature and num_classes
    # describe the records and may differ.
    MODEL_FIELDS = ("frame_features", "feature_names", "feature_sizes",
                    "max_frames")

    @property
    def video_size(self):
        return self.feature_sizes[0]

    @property
    def audio_size(self):
        return self.feature_sizes[1]


# -- models ----------------------------------------------------------------------

_EMBEDDING_HELP = "Tower output size E (the shared embedding)."
_HIDDEN_HELP = "Width of the projection head's hidden layers."
_LAYERS_HELP = "Hidden layers of the projection head."
_DROPOUT_HELP = "Dropout rate inside the towers."
_NORM_HELP = ("Per-frame input normalization: l2 (YT8M practice), layer "
              "(learned) or none.")


@dataclasses.dataclass(frozen=True)
class _HeadConfig:
    """What every tower has: input normalization and a projection head."""

    embedding_dim: int = _field(64, _EMBEDDING_HELP)
    hidden_units: int = _field(256, _HIDDEN_HELP)
    num_hidden_layers: int = _field(1, _LAYERS_HELP)
    dropout: float = _field(0.0, _DROPOUT_HELP)
    input_norm: str = _field("l2", _NORM_HELP)

    def __post_init__(self):
        _check_at_least(self, ("embedding_dim", "hidden_units"), 1)
        _check_at_least(self, ("num_hidden_layers",), 0)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("{dropout} must be in [0, 1)",
                              dropout=self.dropout)
        _check_choice("input_norm", self.input_norm, NORMALIZATION_KINDS)


@dataclasses.dataclass(frozen=True)
class ChunkAttentionConfig(_HeadConfig):
    """The method: chunked recurrence, attention over chunk positions.

    With `position_encoding="slot"` every chunk position pools into its own
    slot of the embedding, so `embedding_dim` must be a multiple of the chunk
    positions, ceil(max_frames / chunk_size): 120 = 15 slots of 8 for 300
    frames in chunks of 20 (about one musical phrase each).
    """

    embedding_dim: int = _field(120, _EMBEDDING_HELP + " With slot pooling a "
                                "multiple of the chunk positions.")
    chunk_size: int = _field(20, "Frames per chunk.")
    rnn_type: str = _field("gru", "Recurrent cell: gru, lstm, bigru, bilstm.")
    rnn_units: int = _field(128, "Width of the recurrent layer (per "
                            "direction).")
    input_projection_units: int = _field(
        64, "Project every frame to this size before the chunk recurrence "
        "(0: no projection).")
    attention: str = _field(
        "additive", "Pooling over chunks: additive or multihead attention, "
        "or mean (a masked mean: the ablation without attention).")
    attention_units: int = _field(128, "Width of the attention scorer.")
    num_heads: int = _field(4, "Heads of multi-head attention pooling.")
    position_encoding: str = _field(
        "slot", "Chunk-position encoding: slot (each chunk position pools "
        "into its own slot of the embedding), learned, sinusoidal or none.")

    def __post_init__(self):
        super().__post_init__()
        _check_at_least(self, ("chunk_size", "rnn_units", "attention_units",
                               "num_heads"), 1)
        _check_at_least(self, ("input_projection_units",), 0)
        _check_choice("rnn_type", self.rnn_type, RNN_TYPES)
        _check_choice("attention", self.attention, CHUNK_POOLINGS)
        _check_choice("position_encoding", self.position_encoding,
                      POSITION_ENCODINGS)
        if self.attention == "multihead" and (
                self.attention_units % self.num_heads):
            raise ConfigError("{attention_units} must be divisible by "
                              "{num_heads}",
                              attention_units=self.attention_units,
                              num_heads=self.num_heads)

    def check_frames(self, max_frames):
        """Slot pooling needs E to be a multiple of the chunk positions."""
        positions = num_chunk_positions(max_frames, self.chunk_size)
        if self.position_encoding == "slot" and self.embedding_dim % positions:
            raise ConfigError(
                "{embedding_dim} must be a multiple of the "
                f"{positions} chunk positions ({{max_frames}} / "
                "{chunk_size}, rounded up) with slot position encoding: each "
                "position fills an equal slot of the embedding",
                embedding_dim=self.embedding_dim, max_frames=max_frames,
                chunk_size=self.chunk_size)


# The frame-level baselines embed at the method's size, so a comparison holds
# the embedding and the subspace fixed.
_BASELINE_EMBEDDING = 120


@dataclasses.dataclass(frozen=True)
class FrameLstmConfig(_HeadConfig):
    """One recurrent pass over all frames (YT8M's LstmModel): a baseline."""

    embedding_dim: int = _field(_BASELINE_EMBEDDING, _EMBEDDING_HELP)
    rnn_type: str = _field("lstm", "Recurrent cell: gru, lstm, bigru, bilstm.")
    rnn_units: int = _field(128, "Width of the recurrent layer (per "
                            "direction).")

    def __post_init__(self):
        super().__post_init__()
        _check_at_least(self, ("rnn_units",), 1)
        _check_choice("rnn_type", self.rnn_type, RNN_TYPES)


@dataclasses.dataclass(frozen=True)
class MeanPoolConfig(_HeadConfig):
    """Masked mean over frames, then the head: the order-free baseline."""

    embedding_dim: int = _field(_BASELINE_EMBEDDING, _EMBEDDING_HELP)


@dataclasses.dataclass(frozen=True)
class VideoLevelMlpConfig(_HeadConfig):
    """An MLP on video-level vectors (mean_rgb, mean_audio).

    With `cca_input_dim` each tower first projects its (normalized) input
    onto the top linear-CCA directions of the training set, fitted before
    training; with `linear_skip` the tower's output is those directions'
    first `embedding_dim` coordinates plus the head, whose last layer starts
    at zero: training starts from linear CCA and learns a correction.
    """

    cca_input_dim: int = _field(
        0, "Project each view onto its top N linear-CCA directions of the "
        "training set (fitted before training, saved with the model) before "
        "the head (0: no projection).")
    cca_input_ridge: float = _field(
        3.0, "Ridge of that linear CCA fit, relative to the mean variance.")
    linear_skip: bool = _field(
        False, "Add the first embedding_dim projected coordinates to the "
        "head's output (needs cca_input_dim >= embedding_dim).")

    def __post_init__(self):
        super().__post_init__()
        _check_at_least(self, ("cca_input_dim",), 0)
        if self.cca_input_ridge < 0:
            raise ConfigError("{cca_input_ridge} must be >= 0",
                              cca_input_ridge=self.cca_input_ridge)
        if self.linear_skip and self.cca_input_dim < self.embedding_dim:
            raise ConfigError("{linear_skip} needs {cca_input_dim} >= "
                              "{embedding_dim}", linear_skip=True,
                              cca_input_dim=self.cca_input_dim,
                              embedding_dim=self.embedding_dim)


@dataclasses.dataclass(frozen=True)
class LinearCcaConfig:
    """Linear CCA on the (mean) features: no towers to train.

    The towers are the identity on the normalized features (frame level: the
    masked mean over frames), so the post-hoc subspace fitted on the
    training set is the model: the floor any trained model should beat.
    """

    input_norm: str = _field("l2", _NORM_HELP)
    linear_cca_ridge: float = _field(
        0.3, "Ridge of the linear CCA fit, relative to the mean variance.")

    def __post_init__(self):
        _check_choice("input_norm", self.input_norm, NORMALIZATION_KINDS)
        if self.linear_cca_ridge < 0:
            raise ConfigError("{linear_cca_ridge} must be >= 0",
                              linear_cca_ridge=self.linear_cca_ridge)


# Model name (train.py's --model) -> its config class.
MODEL_CONFIGS = {
    "ChunkAttentionModel": ChunkAttentionConfig,
    "FrameLstmModel": FrameLstmConfig,
    "MeanPoolModel": MeanPoolConfig,
    "VideoLevelMlpModel": VideoLevelMlpConfig,
    "LinearCcaModel": LinearCcaConfig,
}
VIDEO_LEVEL_MODELS = ("VideoLevelMlpModel",)
# Models that read either level (data.frame_features decides).
ANY_LEVEL_MODELS = ("LinearCcaModel",)
# Models with no weights to train: the training loop only fits the subspace.
UNTRAINED_MODELS = ("LinearCcaModel",)


# -- losses ----------------------------------------------------------------------

_TOP_K_HELP = "Sum only the k largest canonical correlations (0: all)."
_RIDGE_HELP = ("Ridge added to each view's covariance, relative to its mean "
               "eigenvalue (trace / dim).")


@dataclasses.dataclass(frozen=True)
class DeepCcaConfig:
    """Deep CCA (Andrew et al. 2013): the total canonical correlation.

    The ridge 1 suits the 120-d frame-level embedding at batch 256, where the
    batch covariances are noisy; the video-level recipe uses 1e-4.
    """

    cca_top_k: int = _field(0, _TOP_K_HELP)
    cca_ridge: float = _field(1.0, _RIDGE_HELP)

    def __post_init__(self):
        _check_at_least(self, ("cca_top_k",), 0)
        if self.cca_ridge < 0:
            raise ConfigError("{cca_ridge} must be >= 0",
                              cca_ridge=self.cca_ridge)


@dataclasses.dataclass(frozen=True)
class ClusterCcaConfig(DeepCcaConfig):
    """Cluster CCA: deep CCA whose cross-covariance also pairs same-label
    examples."""

    cluster_cca_beta: float = _field(
        0.5, "Weight of the paired cross-covariance.")


@dataclasses.dataclass(frozen=True)
class SoftCcaConfig:
    """Soft CCA (Chang et al. 2018): L2 distance plus a decorrelation term.

    No options: the decorrelation weight and variance epsilon stay at
    `losses.SoftCCALoss`'s values, since soft CCA is measured only for speed
    (BENCHMARKS.md, "Losses") and no other setting has been compared. The
    empty config keeps the loss's entry in LOSS_CONFIGS, and its
    `loss_config` in model_flags.json, the same as every other loss's.
    """


@dataclasses.dataclass(frozen=True)
class InfoNceConfig:
    """Symmetric InfoNCE over the global batch (CLIP's objective)."""

    temperature: float = _field(0.07, "Initial temperature.")
    learn_temperature: bool = _field(True, "Learn the temperature.")

    def __post_init__(self):
        if self.temperature <= 0:
            raise ConfigError("{temperature} must be > 0",
                              temperature=self.temperature)


@dataclasses.dataclass(frozen=True)
class TripletConfig:
    """Bidirectional triplet loss with the hardest in-batch negative (VSE++)."""

    triplet_margin: float = _field(0.2, "Margin.")


# Loss name (train.py's --loss) -> its config class.
LOSS_CONFIGS = {
    "dcca": DeepCcaConfig,
    "cluster_cca": ClusterCcaConfig,
    "soft_cca": SoftCcaConfig,
    "infonce": InfoNceConfig,
    "triplet": TripletConfig,
}
# Losses that whiten each view, so the global batch must exceed o1 + o2.
CCA_LOSSES = ("dcca", "cluster_cca")


def min_cca_batch_size(dim1, dim2):
    """Smallest global batch m with m - 1 >= o1 + o2 (full-rank joint
    covariance).

    Below it the sample covariance of [H1 H2] is singular and the
    unregularized canonical correlations are trivially 1.
    """
    return int(dim1) + int(dim2) + 1


def _typed(config_classes, name, kind, config):
    """`config` as the config class of model/loss `name` (dicts are read)."""
    if name not in config_classes:
        raise ConfigError(f"{{{kind}}} is not one of "
                          f"{', '.join(config_classes)}", **{kind: name})
    config_class = config_classes[name]
    if config is None:
        return config_class()
    if isinstance(config, config_class):
        return config
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"{{{kind}}} takes no option {', '.join(unknown)}; "
                          f"its options: {', '.join(sorted(known)) or 'none'}",
                          **{kind: name})
    return config_class(**config)


def model_config(name, values=None):
    """The typed config of model `name` from a dataclass, dict or None."""
    return _typed(MODEL_CONFIGS, name, "model", values)


def loss_config(name, values=None):
    """The typed config of loss `name` from a dataclass, dict or None."""
    return _typed(LOSS_CONFIGS, name, "loss", values)


# -- the task --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything train.py's flags decide; its defaults are the shipped
    frame-level recipe.

    `model_config` and `loss_config` may be given as dicts (or left None for
    the named model's or loss's defaults); they are stored as the typed
    configs of `model` and `loss`.
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: str = _field(
        "ChunkAttentionModel", "ChunkAttentionModel, FrameLstmModel, "
        "MeanPoolModel, or VideoLevelMlpModel (video level).")
    model_config: object = None
    loss: str = _field("infonce", "dcca, cluster_cca, soft_cca, infonce or "
                       "triplet.")
    loss_config: object = None
    subspace_dim: int = _field(
        96, "Dimensions k of the post-hoc linear CCA subspace.")

    train_data_pattern: str = _field(
        "", "File glob(s), comma-separated, of the training records "
        "(train.py: empty means the built-in demo data).")
    train_dir: str = _field(
        "/tmp/yt8m_xmodal_model/",
        "Where checkpoints, exports and TensorBoard logs go.")
    validate_data_pattern: str = _field(
        "", "Optional records for validation Recall@K at each export.")
    start_new_model: bool = _field(
        False, "Wipe train_dir and start from scratch (no confirmation).")
    batch_size: int = _field(256, "Global batch size; deep CCA needs more "
                             "than 2 * embedding_dim.")
    num_epochs: int = _field(
        0, "Passes over the training data at most (0: automatic: with "
        "validation data up to 200, ended by early stopping; "
        "without, whole epochs until auto_train_steps).")
    early_stopping_patience: int = _field(
        2, "With validate_data_pattern: stop when the validation Recall@10 "
        "(mean of both directions) has not improved for at least this many "
        "validations and early_stopping_fraction, and keep and export the "
        "best model (0: no early stopping).")
    early_stopping_fraction: float = _field(
        0.25, "With early stopping: also wait at least this fraction of the "
        "best model's step count past it before stopping, so the wait grows "
        "with the run (0: validations alone decide).")
    validate_every_steps: int = _field(
        50, "With early stopping: validate at the end of each epoch that "
        "ends at least this many steps after the last validation, and at "
        "every export.")
    auto_train_steps: int = _field(
        300, "Without validation data and num_epochs=0: train whole epochs "
        "until at least this many steps.")
    max_steps: int = _field(0, "Stop after this many steps (0: no limit).")
    base_learning_rate: float = _field(3e-3, "Initial learning rate.")
    learning_rate_decay: float = _field(
        0.95, "Learning rate decay factor per decay interval.")
    learning_rate_decay_examples: int = _field(
        4_000_000, "Examples per learning rate decay interval.")
    optimizer: str = _field("adam", "adam or sgd.")
    clip_gradient_norm: float = _field(
        1.0, "Clip the global gradient norm to this (0: no clipping).")
    skip_nonfinite_steps: bool = _field(
        False, "Skip (and count) steps whose loss or gradient is not finite, "
        "instead of stopping.")
    skip_corrupt: bool = _field(
        False, "Skip corrupt records and shards (counted and reported) "
        "instead of stopping with an error.")
    export_model_steps: int = _field(
        1000, "Checkpoint, fit the subspace and export every N steps.")
    keep_checkpoint_max: int = _field(5, "Checkpoints kept.")
    subspace_fit_examples: int = _field(
        50_000, "Periodic exports fit the CCA subspace on at most this many "
        "training videos (the first in file order), so an export's cost does "
        "not grow with the training set; the final export fits it on all of "
        "them (0: always all).")
    distribution_strategy: str = _field(
        "one_device", "one_device, mirrored, or multi_worker_mirrored "
        "(TF_CONFIG).")
    log_every_steps: int = _field(10, "Log and summarize every N steps.")
    top_k: tuple[int, ...] = _field(
        (1, 5, 10, 20), "Recall@K cut-offs for validation.")
    csls_k: int = _field(
        0, "Rank retrievals by CSLS, the hubness correction over this many "
        "nearest neighbours within the searched set (0: plain cosine); kept "
        "in model_flags.json, so validation, eval.py and the bench scoring "
        "use it.")
    weighted_labels: tuple[int, ...] = _field(
        (), "Class indices whose videos count label_weight times: repeated "
        "in each training epoch and in the linear CCA fits (e.g. the music "
        "labels when the test set is music); indices >= num_classes match "
        "no video.")
    label_weight: int = _field(
        1, "How many times a video with one of weighted_labels counts.")
    validation_map: bool = _field(
        False, "Also compute exact label mAP at each validation; it sorts "
        "every query's whole gallery (O(N^2 log N) in the validation set "
        "size), where Recall@K, ranks and MRR are O(N^2).")
    vocabulary_file: str = _field(
        "", "YT8M vocabulary.csv, for label names in TensorBoard.")
    seed: int = _field(0, "Random seed (weights and data order).")

    def __post_init__(self):
        data = self.data
        if isinstance(data, dict):
            data = DataConfig(**data)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "model_config",
                           model_config(self.model, self.model_config))
        object.__setattr__(self, "loss_config",
                           loss_config(self.loss, self.loss_config))
        _check_top_k(self)
        weighted = self.weighted_labels
        if isinstance(weighted, str):
            weighted = [x for x in weighted.split(",") if x.strip()]
        try:
            weighted = tuple(int(i) for i in weighted)
        except ValueError:
            raise ConfigError("{weighted_labels} must be comma-separated "
                              "class indices",
                              weighted_labels=self.weighted_labels) from None
        object.__setattr__(self, "weighted_labels", weighted)
        level_ok = ((self.model in VIDEO_LEVEL_MODELS) != data.frame_features
                    or self.model in ANY_LEVEL_MODELS)
        if not level_ok:
            level = "frame-level" if data.frame_features else "video-level"
            raise ConfigError(
                f"{{model}} does not read {level} records ({{frame_features}})",
                model=self.model, frame_features=data.frame_features)
        if isinstance(self.model_config, ChunkAttentionConfig):
            self.model_config.check_frames(data.max_frames)
        _check_at_least(self, ("batch_size",), 2)
        _check_at_least(self, ("subspace_dim", "export_model_steps",
                               "keep_checkpoint_max", "log_every_steps"), 1)
        _check_at_least(self, ("num_epochs", "max_steps",
                               "early_stopping_patience"), 0)
        _check_at_least(self, ("validate_every_steps", "auto_train_steps"), 1)
        _check_at_least(self, ("early_stopping_fraction",), 0)
        if self.base_learning_rate <= 0:
            raise ConfigError("{base_learning_rate} must be > 0",
                              base_learning_rate=self.base_learning_rate)
        if not 0 < self.learning_rate_decay <= 1:
            raise ConfigError("{learning_rate_decay} must be in (0, 1]",
                              learning_rate_decay=self.learning_rate_decay)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("distribution_strategy", self.distribution_strategy,
                      STRATEGIES)
        if isinstance(self.model_config, VideoLevelMlpConfig) and (
                self.model_config.cca_input_dim > min(data.feature_sizes)):
            raise ConfigError(
                "{cca_input_dim} must be at most the smaller feature size "
                "({feature_sizes})",
                cca_input_dim=self.model_config.cca_input_dim,
                feature_sizes=",".join(map(str, data.feature_sizes)))
        _check_at_least(self, ("label_weight",), 1)
        _check_at_least(self, ("csls_k",), 0)
        if any(i < 0 for i in self.weighted_labels):
            raise ConfigError("{weighted_labels} must be class indices >= 0",
                              weighted_labels=",".join(
                                  map(str, self.weighted_labels)))
        # The identity towers of LinearCcaModel embed at the feature sizes.
        embedding_dim = getattr(self.model_config, "embedding_dim",
                                min(data.feature_sizes))
        if not 1 <= self.subspace_dim <= embedding_dim:
            raise ConfigError("{subspace_dim} must be between 1 and "
                              "{embedding_dim}", subspace_dim=self.subspace_dim,
                              embedding_dim=embedding_dim)
        needed = min_cca_batch_size(embedding_dim, embedding_dim)
        if (self.loss in CCA_LOSSES and self.batch_size < needed
                and self.model not in UNTRAINED_MODELS):
            raise ConfigError(
                "{batch_size} is too small for {loss} with {embedding_dim}: "
                f"CCA needs at least {needed} examples per global batch "
                "(m - 1 >= o1 + o2); raise the batch size or lower the "
                "embedding size", batch_size=self.batch_size, loss=self.loss,
                embedding_dim=embedding_dim)

    def replace(self, **changes):
        """A copy with `changes`; model_config / loss_config follow a changed
        model / loss unless given."""
        if "model" in changes and changes["model"] != self.model:
            changes.setdefault("model_config", None)
        if "loss" in changes and changes["loss"] != self.loss:
            changes.setdefault("loss_config", None)
        return dataclasses.replace(self, **changes)

    # What defines the trained model: a train_dir holds one of these.
    MODEL_FIELDS = ("data", "model", "model_config", "loss", "loss_config",
                    "subspace_dim")

    def same_model(self, other):
        return all(getattr(self, f) == getattr(other, f)
                   for f in self.MODEL_FIELDS)

    def to_dict(self):
        return {"version": MODEL_FLAGS_VERSION, **dataclasses.asdict(self)}

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d.pop("version", None)
        data = dict(d.pop("data"))
        data["feature_names"] = tuple(data["feature_names"])
        data["feature_sizes"] = tuple(data["feature_sizes"])
        return cls(data=DataConfig(**data), **d)


FRAME_LEVEL_RECIPE = TrainConfig()
# On real YT8M video-level features (BENCHMARKS.md, video level; each part
# chosen on a validation split): deep CCA at a 64-d embedding and a small
# ridge; towers that start from the top 128 linear-CCA directions of the
# L2-normalized means and learn a correction to them (linear_skip), with a
# wide head (1024 hidden units, dropout 0.3); the music
# videos counted 4 times, since retrieval among music videos is the task;
# retrieval ranked by CSLS over 10 neighbours.
VIDEO_LEVEL_RECIPE = TrainConfig(
    data=DataConfig(frame_features=False), model="VideoLevelMlpModel",
    model_config=VideoLevelMlpConfig(embedding_dim=64, hidden_units=1024,
                                     dropout=0.3, cca_input_dim=128,
                                     cca_input_ridge=3.0, linear_skip=True),
    loss="dcca", loss_config=DeepCcaConfig(cca_ridge=1e-4), subspace_dim=64,
    base_learning_rate=1e-3, weighted_labels=MUSIC_LABEL_INDICES,
    label_weight=4, csls_k=10)


def recipe(frame_features):
    """The shipped recipe for frame-level or video-level records."""
    return FRAME_LEVEL_RECIPE if frame_features else VIDEO_LEVEL_RECIPE


# -- evaluation and inference ----------------------------------------------------
# What eval.py and inference.py do with a trained model. A field left None
# takes the model's own value (its model_flags.json).


@dataclasses.dataclass(frozen=True)
class _TrainedModelConfig:
    """What eval.py and inference.py share: the trained model they use, how
    many videos they embed at a time, and the ranking."""

    train_dir: str = _field(
        "/tmp/yt8m_xmodal_model/", "The directory train.py wrote: eval.py "
        "scores its checkpoints, inference.py uses its newest export.")
    batch_size: int = _field(256, "Videos embedded per batch.")
    csls_k: int | None = _field(
        None, "Rank by CSLS over this many neighbours (0: plain cosine). "
        "Unset: the model's own csls_k (model_flags.json).")

    def __post_init__(self):
        _check_at_least(self, ("batch_size",), 1)
        if self.csls_k is not None:
            _check_at_least(self, ("csls_k",), 0)


@dataclasses.dataclass(frozen=True)
class EvalConfig(_TrainedModelConfig):
    """eval.py: retrieval metrics of a train_dir's checkpoints."""

    # What is evaluated, and when: once, or each new checkpoint.
    eval_data_pattern: str = _field(
        "", "File glob(s), comma-separated, of the evaluation records. "
        "Empty: the test split of the built-in demo data.")
    skip_corrupt: bool = _field(
        False, "Skip corrupt records (counted) instead of stopping.")
    run_once: bool = _field(
        False, "Evaluate the latest checkpoint once instead of watching.")
    poll_seconds: float = _field(
        30.0, "Watcher: seconds between looks for a new checkpoint.")
    # What is scored, and where the scores go.
    use_subspace: bool = _field(
        True, "Cosine similarity in the fitted CCA subspace; otherwise in "
        "the raw tower embeddings.")
    top_k: tuple[int, ...] = _field(
        (1, 5, 10, 20), "Comma-separated cut-offs K: Recall@K is reported "
        "for each.")
    compute_map: bool = _field(
        False, "Also compute exact label mAP: it sorts every query's whole "
        "gallery, O(N^2 log N) in the number of videos.")
    gallery_size: int = _field(
        0, "Score galleries of this many videos drawn from the evaluation "
        "set (the protocol most papers report R@K with) and report the mean "
        "and spread over --gallery_draws seeded draws. 0: the whole set is "
        "one gallery.")
    gallery_draws: int = _field(
        5, "Seeded draws of --gallery_size videos (seeds 0, 1, ...).")
    output_json: str = _field(
        "", "Where to write metrics.json (default train_dir/eval/).")

    def __post_init__(self):
        super().__post_init__()
        _check_top_k(self)
        _check_at_least(self, ("gallery_draws",), 1)
        _check_at_least(self, ("gallery_size",), 0)
        if self.gallery_size == 1:
            raise ConfigError("{gallery_size} must be 0 (the whole set) or "
                              ">= 2", gallery_size=1)


QUERY_MODALITIES = ("audio", "video", "both")


@dataclasses.dataclass(frozen=True)
class InferenceConfig(_TrainedModelConfig):
    """inference.py: embeds records and writes top-K cross-modal matches."""

    input_model_tgz: str = _field(
        "", "A bundle made by --output_model_tgz; overrides --train_dir.")
    output_model_tgz: str = _field(
        "", "Pack the model used here into this .tgz bundle.")
    input_data_pattern: str = _field(
        "", "File glob(s), comma-separated, of the query records.")
    gallery_data_pattern: str = _field(
        "", "Records to search (default: the input records).")
    query_modality: str = _field(
        "both", "audio, video or both. With audio (a song) the query records "
        "need to hold only audio, and the gallery (--gallery_data_pattern) "
        "only video; video likewise.")
    output_file: str = _field("", "The top-K matches CSV to write.")
    top_k: tuple[int, ...] = _field(
        (20,), "Matches written per query: the largest K of a "
        "comma-separated list (1,5,10,20 writes 20).")
    embeddings_file: str = _field(
        "", "Write subspace embeddings (ids, audio, video) to this .npz.")
    index_dir: str = _field(
        "", "Search this index (built by yt8m-xmodal-index from this "
        "model's embeddings) instead of embedding gallery records; the "
        "queries are of the other modality.")
    query_media: str = _field(
        "", "Your own media file(s) as the queries (a file, glob or comma "
        "list of wav, mp3, flac, m4a, mp4, mkv, webm): their YT8M features "
        "are extracted (--weights_dir), songs query the videos and videos "
        "the songs (of --index_dir or --gallery_data_pattern); the matches "
        "are printed.")
    explain_file: str = _field(
        "", "Write an HTML page showing, for each query and its top matches, "
        "the chunk attention of both sides over the seconds "
        "(ChunkAttentionModel exports).")

    def __post_init__(self):
        _check_choice("query_modality", self.query_modality, QUERY_MODALITIES)
        super().__post_init__()
        _check_top_k(self)
