"""Cross-modal objectives: the deep CCA family and contrastive alternatives.

All losses share one interface, picked by the trainer's `--loss` flag:

    loss = build_loss("dcca", config)
    value = loss(video, audio, labels=None)            # scalar
    out = loss.compute(video, audio, labels=None)      # loss, correlations

`video` [B, o1] and `audio` [B, o2] are the towers' embeddings; only
`cluster_cca` reads `labels`. The losses are Keras layers, so a learnable
temperature is tracked and checkpointed like any weight. Under tf.distribute
each loss all-reduces its sufficient statistics and returns the global-batch
value; scale it with `scale_loss_for_replicas` (docs/design.md, "Losses").
"""

import dataclasses

import keras
import tensorflow as tf

from yt8m_xmodal import linalg
from yt8m_xmodal import config as config_lib
from yt8m_xmodal.errors import ConfigError

# Andrew et al. 2013 regularize each covariance with a ridge r·I (r tuned);
# public DCCA code commonly uses an absolute r = 1e-4. Here r is relative to
# the mean variance of the view, so 1e-4 means the same at any input scale.
DEFAULT_RIDGE = 1e-4
# Floor for the eigenvalues of the scale-normalized (mean eigenvalue 1)
# covariances; only active when the ridge is 0 or the view is degenerate.
DEFAULT_EPS = 1e-9
# CLIP (Radford et al. 2021): initial temperature 0.07, logit scale clipped
# at 100.
CLIP_INITIAL_TEMPERATURE = 0.07
CLIP_MAX_LOGIT_SCALE = 100.0
# VSE++ (Faghri et al. 2018): margin 0.2 with the hardest in-batch negative.
VSE_MARGIN = 0.2
# Stand-in for -inf when masking the positive out of the negatives.
_MASKED_SIMILARITY = -1e9


def scale_loss_for_replicas(value):
    """value / num_replicas_in_sync: what to differentiate under tf.distribute.

    See the module docstring: every replica computes the global-batch loss,
    and the optimizer sums the replicas' gradients.
    """
    replicas = linalg.num_replicas_in_sync()
    if replicas == 1:
        return value
    return value * tf.cast(1.0 / replicas, value.dtype)


def _check_batch(video, audio, loss_name):
    """Raises ConfigError when static shapes show a batch too small for CCA."""
    batch = video.shape[0]
    dim1 = video.shape[-1]
    dim2 = audio.shape[-1]
    if batch is None or dim1 is None or dim2 is None:
        return
    global_batch = batch * linalg.num_replicas_in_sync()
    needed = config_lib.min_cca_batch_size(dim1, dim2)
    if global_batch < needed:
        raise ConfigError(
            f"{loss_name}: a global batch of {global_batch} examples is too "
            f"small for embeddings of size o1={dim1} and o2={dim2}: CCA needs "
            f"m - 1 >= o1 + o2, i.e. {{batch_size}} >= {needed}.",
            batch_size=global_batch)


def _check_equal_sizes(video, audio, loss_name):
    if (video.shape[-1] is not None and audio.shape[-1] is not None
            and video.shape[-1] != audio.shape[-1]):
        raise ValueError(
            f"{loss_name} compares embeddings in one space and needs equal "
            f"sizes, got video {video.shape[-1]} and audio {audio.shape[-1]}")


def _check_rank(video, audio):
    if video.shape.rank != 2 or audio.shape.rank != 2:
        raise ValueError(
            f"losses expect [batch, dim] embeddings, got video {video.shape} "
            f"and audio {audio.shape}")


class _CrossModalLoss(keras.layers.Layer):
    """Shared plumbing: dtype handling, CCA monitoring, config.

    Args:
      monitor_ridge, monitor_eps: regularization of the batch CCA that losses
        which are not CCA report (under stop_gradient) for logging.
      **kwargs: keras.layers.Layer arguments.

    Call arguments:
      video: [B, o1] embeddings.
      audio: [B, o2] embeddings.
      labels: the batch's multi-hot [B, C] labels (cluster CCA only).
    """

    def __init__(self, monitor_ridge=DEFAULT_RIDGE, monitor_eps=DEFAULT_EPS,
                 **kwargs):
        super().__init__(**kwargs)
        self.monitor_ridge = monitor_ridge
        self.monitor_eps = monitor_eps
        # Embeddings may be float64 (tests) or float32; the losses cast
        # themselves, so Keras must not autocast the inputs.
        self._convert_input_args = False

    def __call__(self, video, audio, labels=None, **kwargs):
        # Keras only accepts tensors as positional arguments; accept arrays.
        video = tf.convert_to_tensor(video)
        audio = tf.convert_to_tensor(audio)
        if labels is not None:
            labels = tf.convert_to_tensor(labels)
        return super().__call__(video, audio, labels=labels, **kwargs)

    def call(self, video, audio, labels=None):
        return self.compute(video, audio, labels)["loss"]

    def compute(self, video, audio, labels=None, monitor=True):
        """{"loss", "total_correlation", "correlations"} of a batch.

        `monitor=False` lets losses that are not CCA skip the batch CCA they
        report for logging (a float64 eigendecomposition and SVD per call);
        their correlations then come back as NaN. The CCA losses get them
        with the loss and ignore it.
        """
        raise NotImplementedError

    def _monitor(self, video, audio, statistics=None, monitor=True):
        """Batch CCA under stop_gradient, for logging non-CCA objectives."""
        if not monitor:
            nan = tf.constant(float("nan"), video.dtype)
            return nan, tf.fill([0], nan)
        video = tf.stop_gradient(video)
        audio = tf.stop_gradient(audio)
        if statistics is None:
            statistics = linalg.global_statistics(video, audio)
        statistics = tf.nest.map_structure(
            lambda x: None if x is None else tf.stop_gradient(x), statistics)
        _, _, t = linalg.whitening(
            statistics.cov11, statistics.cov22, statistics.cov12,
            statistics.mean_square1, statistics.mean_square2,
            self.monitor_ridge, self.monitor_ridge, self.monitor_eps)
        correlations = linalg.canonical_correlations(t)
        return tf.reduce_sum(correlations), correlations

    def get_config(self):
        config = super().get_config()
        config.update(monitor_ridge=self.monitor_ridge,
                      monitor_eps=self.monitor_eps)
        return config


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class DeepCCALoss(_CrossModalLoss):
    """Deep CCA (Andrew et al., ICML 2013): minus the trace norm of T.

    T = Σ11^{-1/2} Σ12 Σ22^{-1/2} with Σ11 = Σ̂11 + r1 · (trace(Σ̂11)/o1) · I
    (ridge relative to the mean variance, so the loss is scale-free),
    Σ22 likewise. The total correlation is the sum of the singular values of
    T (all of them, or the `top_k` largest); loss = -total correlation.
    Computed in float64 whatever the input dtype; the result has the input's
    dtype (at least float32).

    Small batches: with m - 1 < o1 + o2 the joint covariance of [H1 H2] is
    rank-deficient and the unregularized correlations are trivially 1.
    If the static shapes show it the call raises ConfigError naming the sizes
    (`config.min_cca_batch_size(o1, o2)` gives the bound for start-up checks). With
    dynamic shapes no check is possible; the ridge (or, with r = 0, the
    eigenvalue floor `eps`) keeps the result well defined and finite, but it
    then mostly measures the regularization.

    Degenerate batches give finite losses and gradients. Repeated
    eigenvalues (whitened or duplicated columns) are handled by the
    divided-difference gradient of `linalg.inverse_sqrt_psd`, repeated or
    zero singular values by the U diag(ds) Vᵀ gradient of
    `linalg.canonical_correlations`. A view that is constant up to rounding
    (identical rows, all zeros; see `linalg.view_scale`) has correlation 0
    and passes no gradient.

    Args:
      top_k: number of largest canonical correlations summed; None = all
        min(o1, o2).
      r1: ridge of the video covariance, relative to its mean variance.
      r2: ridge of the audio covariance, relative to its mean variance.
      eps: floor of the eigenvalues of the scale-normalized covariances.
      check_batch_size: raise ConfigError for statically too-small batches.
      **kwargs: keras.layers.Layer arguments (name, ...).

    Call arguments:
      video: [B, o1] embeddings.
      audio: [B, o2] embeddings.
      labels: ignored.

    Example:
      >>> loss = DeepCCALoss(top_k=2)
      >>> value = loss(tf.random.normal([64, 4]), tf.random.normal([64, 3]))
    """

    def __init__(self, top_k=None, r1=config_lib.DeepCcaConfig.cca_ridge,
                 r2=config_lib.DeepCcaConfig.cca_ridge, eps=DEFAULT_EPS,
                 check_batch_size=True, **kwargs):
        super().__init__(**kwargs)
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f"DeepCCALoss: top_k must be >= 1, got {top_k}")
        if r1 < 0 or r2 < 0 or eps <= 0:
            raise ValueError(
                f"DeepCCALoss: need r1, r2 >= 0 and eps > 0, got r1={r1}, "
                f"r2={r2}, eps={eps}")
        self.top_k = None if top_k is None else int(top_k)
        self.r1 = float(r1)
        self.r2 = float(r2)
        self.eps = float(eps)
        self.check_batch_size = bool(check_batch_size)

    def _cross_covariance(self, statistics):
        return statistics.cov12

    def _needs_labels(self):
        return False

    def compute(self, video, audio, labels=None, monitor=True):
        del monitor  # the correlations are the loss's own
        video = tf.convert_to_tensor(video)
        audio = tf.convert_to_tensor(audio)
        _check_rank(video, audio)
        name = type(self).__name__
        if self.check_batch_size:
            _check_batch(video, audio, name)
        smaller = min(d for d in (video.shape[-1], audio.shape[-1], 10**9)
                      if d is not None)
        if self.top_k is not None and self.top_k > smaller:
            raise ValueError(
                f"{name}: top_k={self.top_k} exceeds min(o1, o2)={smaller}")
        out_dtype = linalg.compute_dtype_for(video.dtype)
        statistics = linalg.global_statistics(
            video, audio, labels if self._needs_labels() else None)
        _, _, t = linalg.whitening(
            statistics.cov11, statistics.cov22,
            self._cross_covariance(statistics),
            statistics.mean_square1, statistics.mean_square2,
            self.r1, self.r2, self.eps)
        correlations = linalg.canonical_correlations(t)
        if self.top_k is not None:
            correlations = correlations[:self.top_k]
        total = tf.reduce_sum(correlations)
        return {"loss": tf.cast(-total, out_dtype),
                "total_correlation": tf.cast(total, out_dtype),
                "correlations": tf.cast(correlations, out_dtype)}

    def get_config(self):
        config = super().get_config()
        config.update(top_k=self.top_k, r1=self.r1, r2=self.r2, eps=self.eps,
                      check_batch_size=self.check_batch_size)
        return config


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class ClusterCCALoss(DeepCCALoss):
    """Cluster-CCA (Rasiwasia et al. 2014) blended with deep CCA.

    Cluster-CCA pairs every video with every audio of the same class. Here
    the cross-covariance blends the paired and the class estimates,

        Σ12 = β · Σ12_paired + (1 - β) · Σ12_class,
        Σ12_class = m / (M (m - 1)) · Σ_c s1_c s2_cᵀ,

    where s_c are the sums of the globally centred embeddings of the videos
    labelled c (computed as Lᵀ H, O(B·C·d + C·d1·d2) instead of a double sum
    over pairs), M = Σ_c n_c² is the number of counted pairs, and the factor
    m / (M (m - 1)) makes Σ12_class equal Σ12_paired when every video is its
    own class. Σ11, Σ22 are the usual paired covariances. β = 1 is exactly
    DCCA.

    Multi-label videos: a video counts once in every class it carries, so a
    pair (i, j) is weighted by the number of labels it shares, (L Lᵀ)_ij, and
    a pair (i, i) with k labels counts k times. Videos without a label only
    enter the paired term. Labels may also be non-negative soft weights.

    Args:
      beta: weight of the paired cross-covariance, in [0, 1].
      num_classes: size of the label vocabulary (recorded in the config).
      top_k, r1, r2, eps, check_batch_size: as DeepCCALoss.
      **kwargs: keras.layers.Layer arguments.

    Call arguments:
      video: [B, o1] embeddings.
      audio: [B, o2] embeddings.
      labels: [B, C] multi-hot labels from the batch dict (required).

    Example:
      >>> loss = ClusterCCALoss(beta=0.5)
      >>> labels = tf.one_hot(tf.range(64) % 5, 5)
      >>> value = loss(tf.random.normal([64, 4]), tf.random.normal([64, 4]),
      ...              labels)
    """

    def __init__(self, beta=0.5, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"ClusterCCALoss: beta must be in [0, 1], "
                             f"got {beta}")
        self.beta = float(beta)
        self.num_classes = None if num_classes is None else int(num_classes)

    def _needs_labels(self):
        return True

    def _cross_covariance(self, statistics):
        dof = tf.maximum(statistics.count - 1.0, 1.0)
        pairs = tf.maximum(statistics.class_pairs, 1.0)
        class_cov = statistics.class_cross * (statistics.count / (pairs * dof))
        return self.beta * statistics.cov12 + (1.0 - self.beta) * class_cov

    def compute(self, video, audio, labels=None, monitor=True):
        if labels is None:
            raise ValueError("ClusterCCALoss needs the batch's multi-hot "
                             "labels [B, C]: call loss(video, audio, labels)")
        labels = tf.convert_to_tensor(labels)
        if (self.num_classes is not None and labels.shape[-1] is not None
                and labels.shape[-1] != self.num_classes):
            raise ValueError(
                f"ClusterCCALoss: labels have {labels.shape[-1]} classes, "
                f"expected num_classes={self.num_classes}")
        return super().compute(video, audio, labels)

    def get_config(self):
        config = super().get_config()
        config.update(beta=self.beta, num_classes=self.num_classes)
        return config


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class SoftCCALoss(_CrossModalLoss):
    """Soft CCA (Chang et al., CVPR 2018): distance plus soft decorrelation.

    Both views are standardized per feature with the global-batch mean and
    variance (batch normalization without affine terms, variance + bn_eps
    with bn_eps relative to the view's mean variance), then

        loss = mean_i ||z1_i - z2_i||² + λ · (SDL(z1) + SDL(z2)),
        SDL(z) = Σ_{i≠j} |R_ij| / o,

    R being the correlation matrix of the batch. No eigendecomposition. The
    paper's SDL uses a running average of the covariance over minibatches;
    here the global-batch covariance is used instead (stateless, and exact
    under tf.distribute). Needs o1 == o2. Everything is computed from the
    same sufficient statistics as DCCA, in float64.

    Args:
      decorrelation_weight: λ (our default, not the paper's).
      bn_eps: variance epsilon, relative to the mean variance of each view.
      **kwargs: as `_CrossModalLoss`.

    Call arguments: as `_CrossModalLoss`; `labels` is ignored.

    Example:
      >>> loss = SoftCCALoss(decorrelation_weight=0.5)
      >>> value = loss(tf.random.normal([32, 4]), tf.random.normal([32, 4]))
    """

    def __init__(self, decorrelation_weight=1.0, bn_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.decorrelation_weight = float(decorrelation_weight)
        self.bn_eps = float(bn_eps)

    def _loss_from_statistics(self, statistics):
        scale1, varying1 = linalg.view_scale(statistics.cov11,
                                             statistics.mean_square1)
        scale2, varying2 = linalg.view_scale(statistics.cov22,
                                             statistics.mean_square2)
        # A view constant up to rounding standardizes to exact zeros (see
        # linalg.view_scale), with no gradient through it.
        cov11 = varying1 * statistics.cov11
        cov22 = varying2 * statistics.cov22
        cov12 = varying1 * varying2 * statistics.cov12
        var1 = tf.linalg.diag_part(cov11) + self.bn_eps * scale1
        var2 = tf.linalg.diag_part(cov22) + self.bn_eps * scale2
        count = tf.maximum(statistics.count, 1.0)
        dof = tf.maximum(statistics.count - 1.0, 1.0)
        # mean_i ||z1 - z2||² from the (m-1)-normalized covariances.
        distance = (dof / count) * tf.reduce_sum(
            tf.linalg.diag_part(cov11) / var1
            + tf.linalg.diag_part(cov22) / var2
            - 2.0 * tf.linalg.diag_part(cov12)
            * tf.math.rsqrt(var1) * tf.math.rsqrt(var2))

        def decorrelation(cov, variance):
            inv = tf.math.rsqrt(variance)
            corr = cov * inv[:, tf.newaxis] * inv[tf.newaxis, :]
            off = tf.reduce_sum(tf.abs(corr)) - tf.reduce_sum(
                tf.abs(tf.linalg.diag_part(corr)))
            return off / tf.cast(tf.shape(cov)[0], cov.dtype)

        penalty = decorrelation(cov11, var1) + decorrelation(cov22, var2)
        return distance + self.decorrelation_weight * penalty

    def compute(self, video, audio, labels=None, monitor=True):
        video = tf.convert_to_tensor(video)
        audio = tf.convert_to_tensor(audio)
        _check_rank(video, audio)
        _check_equal_sizes(video, audio, "SoftCCALoss")
        out_dtype = linalg.compute_dtype_for(video.dtype)
        statistics = linalg.global_statistics(video, audio)
        value = self._loss_from_statistics(statistics)
        total, correlations = self._monitor(video, audio, statistics, monitor)
        return {"loss": tf.cast(value, out_dtype),
                "total_correlation": tf.cast(total, out_dtype),
                "correlations": tf.cast(correlations, out_dtype)}

    def call(self, video, audio, labels=None):
        video = tf.convert_to_tensor(video)
        audio = tf.convert_to_tensor(audio)
        _check_rank(video, audio)
        _check_equal_sizes(video, audio, "SoftCCALoss")
        statistics = linalg.global_statistics(video, audio)
        return tf.cast(self._loss_from_statistics(statistics),
                       linalg.compute_dtype_for(video.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(decorrelation_weight=self.decorrelation_weight,
                      bn_eps=self.bn_eps)
        return config


def _gather_global(local_a, local_b):
    """All-gathers two [m_r, d] tensors; returns (all_a, all_b, offset).

    offset is the index of this replica's first row in the global batch.
    Outside tf.distribute the inputs come back unchanged with offset 0. The
    gradient of all_gather sums the replicas' upstream gradients of each
    slice, consistent with `replica_sum`.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local_a, local_b, tf.constant(0, tf.int32)
    all_a, all_b = context.all_gather([local_a, local_b], axis=0)
    sizes = context.all_gather(tf.shape(local_a)[:1], axis=0)
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    offset = tf.reduce_sum(sizes[:replica])
    return all_a, all_b, offset


class _ContrastiveLoss(_CrossModalLoss):
    """Plumbing for losses over the in-batch similarity matrix."""

    def _row_losses(self, similarity, positive_index):
        raise NotImplementedError

    def _similarity_scale(self, dtype):
        return tf.constant(1.0, dtype)

    def _loss(self, video, audio):
        video = tf.convert_to_tensor(video)
        audio = tf.convert_to_tensor(audio)
        _check_rank(video, audio)
        _check_equal_sizes(video, audio, type(self).__name__)
        dtype = linalg.compute_dtype_for(video.dtype)
        video = tf.math.l2_normalize(tf.cast(video, dtype), axis=-1)
        audio = tf.math.l2_normalize(tf.cast(audio, dtype), axis=-1)
        all_video, all_audio, offset = _gather_global(video, audio)
        positive = offset + tf.range(tf.shape(video)[0])
        scale = self._similarity_scale(dtype)
        video_to_audio = self._row_losses(
            scale * tf.matmul(video, all_audio, transpose_b=True), positive)
        audio_to_video = self._row_losses(
            scale * tf.matmul(audio, all_video, transpose_b=True), positive)
        sums = linalg.replica_sum({
            "loss": tf.reduce_sum(video_to_audio + audio_to_video),
            "count": tf.cast(tf.shape(video)[0], dtype)})
        return 0.5 * sums["loss"] / tf.maximum(sums["count"], 1.0)

    def call(self, video, audio, labels=None):
        return self._loss(video, audio)

    def compute(self, video, audio, labels=None, monitor=True):
        value = self._loss(video, audio)
        total, correlations = self._monitor(tf.convert_to_tensor(video),
                                            tf.convert_to_tensor(audio),
                                            monitor=monitor)
        return {"loss": value,
                "total_correlation": tf.cast(total, value.dtype),
                "correlations": tf.cast(correlations, value.dtype)}


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class InfoNCELoss(_ContrastiveLoss):
    """Symmetric InfoNCE (CLIP, Radford et al. 2021) over the global batch.

    Cosine similarities scaled by 1/τ; cross-entropy of each video against
    all audios of the global batch and vice versa, averaged. With
    `learn_temperature` the logit scale log(1/τ) is a trainable weight
    (clipped at log 100 as in CLIP): create the loss in `strategy.scope()`
    and add `loss.trainable_variables` to the optimizer's variables and to
    the checkpoint. Under tf.distribute the negatives come from all replicas
    (all_gather).

    Args:
      temperature: initial (or fixed) τ.
      learn_temperature: whether τ is trained.
      **kwargs: as `_CrossModalLoss`.

    Call arguments: as `_CrossModalLoss`; `labels` is ignored.

    Example:
      >>> loss = InfoNCELoss(temperature=0.1, learn_temperature=False)
      >>> value = loss(tf.random.normal([8, 4]), tf.random.normal([8, 4]))
    """

    def __init__(self, temperature=CLIP_INITIAL_TEMPERATURE,
                 learn_temperature=True, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"InfoNCELoss: temperature must be > 0, "
                             f"got {temperature}")
        self.temperature = float(temperature)
        self.learn_temperature = bool(learn_temperature)
        # The weight does not depend on input shapes; creating it now lets
        # the trainer build the loss in strategy.scope() and list its
        # variables before the first (replica-context) call.
        self.build()

    def build(self, input_shape=None):
        self.logit_scale = self.add_weight(
            name="logit_scale", shape=(),
            initializer=keras.initializers.Constant(
                float(tf.math.log(1.0 / self.temperature))),
            trainable=self.learn_temperature, dtype="float32")

    def _similarity_scale(self, dtype):
        log_scale = tf.minimum(tf.cast(self.logit_scale, dtype),
                               tf.math.log(tf.cast(CLIP_MAX_LOGIT_SCALE, dtype)))
        return tf.exp(log_scale)

    def _row_losses(self, similarity, positive_index):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=positive_index, logits=similarity)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "learn_temperature": self.learn_temperature}


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class TripletLoss(_ContrastiveLoss):
    """Bidirectional triplet loss with the hardest in-batch negative (VSE++).

    For each video i with cosine similarities s_ij to every audio of the
    global batch, loss_i = max(0, margin - s_ii + max_{j≠i} s_ij), and the
    same from audio to video; the loss is the mean over the global batch of
    the average of both directions (Faghri et al. 2018, "max of hinges").

    Args:
      margin: hinge margin.
      **kwargs: as `_CrossModalLoss`.

    Call arguments: as `_CrossModalLoss`; `labels` is ignored.

    Example:
      >>> loss = TripletLoss(margin=0.2)
      >>> value = loss(tf.random.normal([8, 4]), tf.random.normal([8, 4]))
    """

    def __init__(self, margin=VSE_MARGIN, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)

    def _row_losses(self, similarity, positive_index):
        rows = tf.range(tf.shape(similarity)[0])
        index = tf.stack([rows, positive_index], axis=1)
        positive = tf.gather_nd(similarity, index)
        is_positive = tf.one_hot(positive_index, tf.shape(similarity)[1],
                                 on_value=True, off_value=False)
        negatives = tf.where(is_positive,
                             tf.cast(_MASKED_SIMILARITY, similarity.dtype),
                             similarity)
        hardest = tf.reduce_max(negatives, axis=1)
        return tf.nn.relu(self.margin - positive + hardest)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin)
        return config


LOSSES = {
    "dcca": DeepCCALoss,
    "cluster_cca": ClusterCCALoss,
    "soft_cca": SoftCCALoss,
    "infonce": InfoNCELoss,
    "triplet": TripletLoss,
}


def get_loss(name, **kwargs):
    """Builds loss `name` (a key of LOSSES) with keyword arguments of its
    class.

    Raises:
      ConfigError: naming the loss, for an unknown name or bad options.
    """
    if name not in LOSSES:
        raise ConfigError(f"{{loss}} is not one of {', '.join(LOSSES)}",
                          loss=name)
    try:
        return LOSSES[name](**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{{loss}}: bad loss options {kwargs}: {error}",
                          loss=name) from error


def build_loss(name, loss_config=None, num_classes=None):
    """Builds loss `name` from its typed config (`config.LOSS_CONFIGS`).

    Args:
      name: a key of LOSSES.
      loss_config: the loss's config (dataclass or dict); None: defaults.
      num_classes: the label vocabulary size (cluster CCA's class sums).
    """
    config = config_lib.loss_config(name, loss_config)
    # Config fields are the flag names; the loss classes take the names of
    # their papers' symbols.
    renamed = {"cca_top_k": "top_k", "cluster_cca_beta": "beta",
               "triplet_margin": "margin"}
    kwargs = {renamed.get(k, k): v for k, v in dataclasses.asdict(config).items()}
    if "cca_ridge" in kwargs:
        kwargs["r1"] = kwargs["r2"] = kwargs.pop("cca_ridge")
    if "top_k" in kwargs:
        kwargs["top_k"] = kwargs["top_k"] or None  # 0 means all
    if name == "cluster_cca" and num_classes is not None:
        kwargs["num_classes"] = num_classes
    return get_loss(name, **kwargs)
