"""TensorBoard output of training, written under train_dir.

- `train/...` scalars: loss, total correlation, learning rate, examples/s,
  gradient norm; a histogram of the per-component canonical correlations.
- `validation/...` scalars: Recall@K, median rank, MRR and mAP per direction,
  with the number of queries.
- `validation/chunk_attention`: an image of the mean chunk-attention weights
  (rows: audio, video; columns: chunk position).
- `projector/`: the validation embeddings in the subspace, with their ids and
  label names, for TensorBoard's Embedding Projector.
"""

import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from yt8m_xmodal import vocabulary

PROJECTOR_DIR = "projector"


def write_retrieval_scalars(step, result, prefix):
    """Writes a `metrics.cross_modal_metrics` result as scalars."""
    tf.summary.scalar(f"{prefix}/num_queries", result["num_queries"], step=step)
    for direction in ("audio_to_video", "video_to_audio"):
        for name, value in result[direction].items():
            if name == "num_queries":
                continue
            tf.summary.scalar(f"{prefix}/{direction}/{name}", value, step=step)


def load_label_names(vocabulary_file):
    """{index: name} from YT8M's vocabulary.csv; {} without one."""
    if not vocabulary_file:
        return {}
    return {label.index: label.name
            for label in vocabulary.read_vocabulary(vocabulary_file)}


class TrainSummaries:
    """Summary writer of a training run; `train_dir=None` writes nothing."""

    def __init__(self, train_dir):
        self.train_dir = train_dir
        self._writer = (tf.summary.create_file_writer(train_dir) if train_dir
                        else tf.summary.create_noop_writer())

    def scalar(self, name, value, step):
        with self._writer.as_default():
            tf.summary.scalar(name, value, step=step)

    def train_step(self, step, report, learning_rate, examples_per_second):
        with self._writer.as_default(step=step):
            tf.summary.scalar("train/loss", report["loss"])
            tf.summary.scalar("train/total_correlation",
                              report["total_correlation"])
            tf.summary.scalar("train/gradient_norm", report["grad_norm"])
            tf.summary.scalar("train/learning_rate", learning_rate)
            tf.summary.scalar("train/examples_per_second", examples_per_second)
            tf.summary.histogram("train/canonical_correlations",
                                 report["correlations"])

    def validation(self, step, result, emb, vocabulary_file=""):
        if self.train_dir is None:
            return
        with self._writer.as_default(step=step):
            write_retrieval_scalars(step, result, "validation")
            if emb.attention:
                image = np.stack([emb.attention["audio"], emb.attention["video"]])
                image = image / max(image.max(), 1e-12)
                tf.summary.image(
                    "validation/chunk_attention",
                    image[None, :, :, None].astype(np.float32), step=step)
                for name, weights in emb.attention.items():
                    for position, w in enumerate(weights):
                        tf.summary.scalar(
                            f"validation/attention_{name}/chunk_{position:02d}",
                            w, step=step)
        self._writer.flush()
        write_projector(os.path.join(self.train_dir, PROJECTOR_DIR), emb,
                        load_label_names(vocabulary_file))

    def flush(self):
        self._writer.flush()


def write_projector(log_dir, emb, label_names):
    """Writes embeddings + metadata for TensorBoard's Embedding Projector.

    Audio and video embeddings of each video are two points, so the projector
    shows how well the two modalities of one video land together.
    """
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "metadata.tsv"), "w", encoding="utf-8") as f:
        f.write("id\tmodality\tlabels\n")
        for modality in ("audio", "video"):
            for video_id, labels in zip(emb.ids, emb.labels):
                names = ", ".join(label_names.get(int(l), str(int(l)))
                                  for l in labels)
                f.write(f"{video_id}\t{modality}\t{names}\n")
    embedding = tf.Variable(np.concatenate([emb.audio, emb.video]),
                            name="embedding")
    tf.train.Checkpoint(embedding=embedding).write(
        os.path.join(log_dir, "embedding.ckpt"))
    cfg = projector.ProjectorConfig()
    item = cfg.embeddings.add()
    item.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    item.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(log_dir, cfg)
