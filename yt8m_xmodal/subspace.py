"""Post-hoc linear CCA subspace: streamed float64 statistics, saved with the model.

After training (or directly on the raw YT8M mean features, the classic
linear-CCA baseline) the two views are projected onto their top canonical
directions, A = Σ11^{-1/2} U_k and B = Σ22^{-1/2} V_k, where U, V are the
singular vectors of T = Σ11^{-1/2} Σ12 Σ22^{-1/2} (Hotelling 1936; same
relative ridge as `losses.DeepCCALoss`, see `yt8m_xmodal.linalg`). Eval and
inference then retrieve in the projected space.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from yt8m_xmodal import linalg
from yt8m_xmodal.losses import DEFAULT_EPS, DEFAULT_RIDGE


@keras.saving.register_keras_serializable(package="yt8m_xmodal")
class LinearCCA(keras.layers.Layer):
    """Linear CCA fitted on streamed, exact float64 sufficient statistics.

    `update_state(video, audio)` merges each batch's count, mean and centred
    joint cross-product matrix into running totals with the pairwise update
    of Chan, Golub & LeVeque (1979), so streaming over any number of batches
    gives the one-shot statistics up to float64 rounding, with no
    cancellation from large means. `fit()` turns them into the means, the
    projections and the canonical correlations, all stored as (non-trainable)
    weights: they are saved with the model (.keras and tf.train.Checkpoint).

    Args:
      subspace_dim: k, the number of canonical directions kept.
      r1: ridge of the video covariance, relative to its mean variance.
      r2: ridge of the audio covariance, relative to its mean variance.
      eps: eigenvalue floor of the scale-normalized covariances.
      **kwargs: keras.layers.Layer arguments.

    Call arguments:
      inputs: {"video": [B, d1], "audio": [B, d2]}.
      mask, training: unused.

    Returns:
      {"video": [B, k], "audio": [B, k]} projected (centred) features.

    Example:
      >>> cca = LinearCCA(subspace_dim=2)
      >>> for video, audio in batches:
      ...     cca.update_state(video, audio)
      >>> correlations = cca.fit()
      >>> projected = cca({"video": video, "audio": audio})
    """

    def __init__(self, subspace_dim, r1=DEFAULT_RIDGE, r2=DEFAULT_RIDGE,
                 eps=DEFAULT_EPS, **kwargs):
        super().__init__(**kwargs)
        if int(subspace_dim) < 1:
            raise ValueError(f"LinearCCA: subspace_dim must be >= 1, got "
                             f"{subspace_dim}")
        self.subspace_dim = int(subspace_dim)
        self.r1 = float(r1)
        self.r2 = float(r2)
        self.eps = float(eps)

    def build(self, input_shape):
        video_dim = int(input_shape["video"][-1])
        audio_dim = int(input_shape["audio"][-1])
        if self.subspace_dim > min(video_dim, audio_dim):
            raise ValueError(
                f"LinearCCA: subspace_dim={self.subspace_dim} exceeds "
                f"min(video dim {video_dim}, audio dim {audio_dim})")
        self.video_dim = video_dim
        self.audio_dim = audio_dim
        joint = video_dim + audio_dim
        k = self.subspace_dim

        def weight(name, shape):
            return self.add_weight(name=name, shape=shape, dtype="float64",
                                   initializer="zeros", trainable=False)

        # Streamed statistics of the joint vector [video, audio].
        self.count = weight("count", ())
        self.joint_mean = weight("joint_mean", (joint,))
        self.joint_scatter = weight("joint_scatter", (joint, joint))
        # The fitted subspace.
        self.video_mean = weight("video_mean", (video_dim,))
        self.audio_mean = weight("audio_mean", (audio_dim,))
        self.video_projection = weight("video_projection", (video_dim, k))
        self.audio_projection = weight("audio_projection", (audio_dim, k))
        self.correlations = weight("correlations", (k,))

    def _ensure_built(self, video, audio):
        if not self.built:
            self.build({"video": tuple(video.shape),
                        "audio": tuple(audio.shape)})

    def reset_state(self):
        """Forgets the streamed statistics (not the fitted subspace)."""
        for variable in (self.count, self.joint_mean, self.joint_scatter):
            variable.assign(tf.zeros(variable.shape, tf.float64))

    def update_state(self, video, audio):
        """Adds a batch of paired rows [B, d1], [B, d2] to the statistics."""
        video = tf.convert_to_tensor(video)
        audio = tf.convert_to_tensor(audio)
        self._ensure_built(video, audio)
        joint = tf.concat([tf.cast(video, tf.float64),
                           tf.cast(audio, tf.float64)], axis=1)
        batch_count = tf.cast(tf.shape(joint)[0], tf.float64)
        batch_mean = tf.reduce_sum(joint, axis=0) / tf.maximum(batch_count, 1.0)
        # tfp.stats.covariance divides by the batch size; it is NaN for an
        # empty batch, which then contributes nothing.
        batch_scatter = tf.where(
            batch_count > 0,
            batch_count * tfp.stats.covariance(joint, sample_axis=0,
                                               event_axis=-1),
            tf.zeros_like(self.joint_scatter))
        old_count = tf.convert_to_tensor(self.count)
        total = old_count + batch_count
        delta = batch_mean - self.joint_mean
        weight = tf.math.divide_no_nan(batch_count, total)
        self.joint_scatter.assign(
            self.joint_scatter + batch_scatter
            + tf.math.divide_no_nan(old_count * batch_count, total)
            * delta[:, tf.newaxis] * delta[tf.newaxis, :])
        self.joint_mean.assign(self.joint_mean + weight * delta)
        self.count.assign(total)

    def covariances(self):
        """(mean1, mean2, cov11, cov22, cov12) of the streamed data, float64."""
        d1 = self.video_dim
        covariance = self.joint_scatter / tf.maximum(self.count - 1.0, 1.0)
        return (self.joint_mean[:d1], self.joint_mean[d1:],
                covariance[:d1, :d1], covariance[d1:, d1:],
                covariance[:d1, d1:])

    def fit(self):
        """Computes the subspace from the statistics; returns the k correlations."""
        if not self.built:
            raise ValueError("LinearCCA.fit: no data; call update_state first")
        mean1, mean2, cov11, cov22, cov12 = self.covariances()
        # Raw mean squares, for the constant-view floor of linalg.whitening.
        mean_square1 = (tf.linalg.trace(cov11) / self.video_dim
                        + tf.reduce_mean(tf.square(mean1)))
        mean_square2 = (tf.linalg.trace(cov22) / self.audio_dim
                        + tf.reduce_mean(tf.square(mean2)))
        white1, white2, t = linalg.whitening(
            cov11, cov22, cov12, mean_square1, mean_square2,
            self.r1, self.r2, self.eps)
        singular_values, left, right = tf.linalg.svd(t)
        k = self.subspace_dim
        self.video_mean.assign(mean1)
        self.audio_mean.assign(mean2)
        self.video_projection.assign(tf.matmul(white1, left[:, :k]))
        self.audio_projection.assign(tf.matmul(white2, right[:, :k]))
        self.correlations.assign(singular_values[:k])
        return tf.convert_to_tensor(self.correlations)

    def _project(self, features, mean, projection):
        features = tf.convert_to_tensor(features)
        dtype = linalg.compute_dtype_for(features.dtype)
        centred = tf.cast(features, tf.float64) - mean
        return tf.cast(tf.matmul(centred, projection), dtype)

    def project_video(self, video):
        """[B, d1] video features -> [B, k] canonical variates."""
        return self._project(video, self.video_mean, self.video_projection)

    def project_audio(self, audio):
        """[B, d2] audio features -> [B, k] canonical variates."""
        return self._project(audio, self.audio_mean, self.audio_projection)

    def call(self, inputs, mask=None, training=None):
        return {"video": self.project_video(inputs["video"]),
                "audio": self.project_audio(inputs["audio"])}

    def compute_output_shape(self, input_shape):
        return {"video": tuple(input_shape["video"][:-1]) + (self.subspace_dim,),
                "audio": tuple(input_shape["audio"][:-1]) + (self.subspace_dim,)}

    def get_config(self):
        config = super().get_config()
        config.update(subspace_dim=self.subspace_dim, r1=self.r1, r2=self.r2,
                      eps=self.eps)
        return config


def fit_linear_cca(video, audio, subspace_dim, r1=DEFAULT_RIDGE,
                   r2=DEFAULT_RIDGE, eps=DEFAULT_EPS):
    """A `LinearCCA` fitted on paired rows held in memory, in one call.

    Args:
      video: [N, d1] array (numpy or tensor) of one view.
      audio: [N, d2] array of the other view, rows paired with `video`.
      subspace_dim, r1, r2, eps: as for `LinearCCA`.

    Returns:
      The fitted layer: `project_video` / `project_audio` give the canonical
      variates (float64 for float64 input; `.numpy()` for arrays), and the
      first j of its k columns are the fit with `subspace_dim=j`.

    Example:
      >>> cca = fit_linear_cca(video, audio, subspace_dim=16, r1=1e-2, r2=1e-2)
      >>> audio_variates = cca.project_audio(audio).numpy()
    """
    cca = LinearCCA(subspace_dim, r1=r1, r2=r2, eps=eps)
    cca.update_state(video, audio)
    cca.fit()
    return cca
