"""Trains audio and video towers with a deep CCA objective on YT8M records.

    python train.py --train_data_pattern='/data/yt8m/frame/train*.tfrecord' \
        --train_dir=/tmp/yt8m_xmodal_model
    tensorboard --logdir=/tmp/yt8m_xmodal_model

With no --train_data_pattern it trains on the built-in synthetic demo data
(generated once into a cache directory) and validates on its validate split.
"""

import sys

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import training

FLAGS = flags.FLAGS

flags.DEFINE_string("train_data_pattern", "",
                    "File glob(s), comma-separated, of the training records. "
                    "Empty: the built-in demo data.")
flags.DEFINE_string("validate_data_pattern", "",
                    "Optional records for validation Recall@K at each export.")
flags.DEFINE_string("train_dir", "/tmp/yt8m_xmodal_model/",
                    "Where checkpoints, exports and TensorBoard logs go.")
flags.DEFINE_bool("start_new_model", False,
                  "Wipe --train_dir and start from scratch (no confirmation).")
cli.define_data_flags()

# Model.
flags.DEFINE_string("model", "ChunkAttentionModel",
                    "ChunkAttentionModel, ChunkMeanModel, FrameLstmModel, "
                    "MeanPoolModel, or VideoLevelMlpModel (video level). The "
                    "defaults of all flags are the frame-level recipe; with "
                    "--noframe_features, --model, --loss, --embedding_dim, "
                    "--subspace_dim and --base_learning_rate default to the "
                    "video-level one: VideoLevelMlpModel, dcca, 64, 64, 1e-3.")
flags.DEFINE_integer("chunk_size", 20, "Frames per chunk.")
flags.DEFINE_string("rnn_type", "gru", "Recurrent cell: gru, lstm, bigru, bilstm.")
flags.DEFINE_integer("input_projection_units", 64,
                     "Chunk models: project every frame to this size before "
                     "the chunk recurrence (0: no projection).")
flags.DEFINE_integer("rnn_units", 128, "Width of the recurrent layer.")
flags.DEFINE_string("attention", "additive",
                    "Pooling over chunks: additive or multihead.")
flags.DEFINE_integer("attention_units", 128, "Width of the attention layer.")
flags.DEFINE_integer("num_heads", 4, "Heads of multi-head attention pooling.")
flags.DEFINE_string("position_encoding", "slot",
                    "Chunk-position encoding: slot (each chunk position "
                    "pools into its own slot of the embedding), learned, "
                    "sinusoidal or none.")
flags.DEFINE_integer("hidden_units", 256, "Width of the projection MLP layers.")
flags.DEFINE_integer("num_hidden_layers", 1, "Hidden layers of the projection MLP.")
flags.DEFINE_string("input_norm", "l2",
                    "Per-frame input normalization: l2 (YT8M practice), "
                    "layer (learned) or none.")
flags.DEFINE_integer("embedding_dim", 120,
                     "Tower output size (with slot position encoding, a "
                     "multiple of the chunk positions: 120 = 15 x 8).")
flags.DEFINE_float("dropout", 0.0, "Dropout rate inside the towers.")
flags.DEFINE_integer("subspace_dim", 96,
                     "Dimensions k of the post-hoc linear CCA subspace.")

# Objective.
flags.DEFINE_string("loss", "infonce",
                    "dcca, cluster_cca, soft_cca, infonce or triplet.")
flags.DEFINE_integer("cca_top_k", 0,
                     "Sum only the k largest canonical correlations (0: all).")
flags.DEFINE_float("cca_ridge", 1.0,
                   "dcca/cluster_cca: ridge r1 = r2 added to each covariance, "
                   "relative to its mean eigenvalue (trace / dim). 1 suits "
                   "the default 120-d frame-level embedding at batch 256 "
                   "(chosen on the synthetic data's validate split); "
                   "--noframe_features defaults to 1e-4.")
flags.DEFINE_float("cluster_cca_beta", 0.5,
                   "cluster_cca: weight of the paired cross-covariance.")
flags.DEFINE_float("temperature", 0.07, "infonce: initial temperature.")
flags.DEFINE_bool("learn_temperature", True, "infonce: learn the temperature.")
flags.DEFINE_float("triplet_margin", 0.2, "triplet: margin.")

# Schedule.
flags.DEFINE_integer("batch_size", 256,
                     "Global batch size; deep CCA needs more than "
                     "2 * --embedding_dim.")
flags.DEFINE_integer("num_epochs", 5,
                     "Passes over the training data (the demo data: 15 "
                     "unless given).")
flags.DEFINE_integer("max_steps", 0, "Stop after this many steps (0: no limit).")
flags.DEFINE_float("base_learning_rate", 3e-3, "Initial learning rate.")
flags.DEFINE_float("learning_rate_decay", 0.95,
                   "Learning rate decay factor per decay interval.")
flags.DEFINE_integer("learning_rate_decay_examples", 4_000_000,
                     "Examples per learning rate decay interval.")
flags.DEFINE_string("optimizer", "adam", "adam, adamw, sgd, rmsprop or adagrad.")
flags.DEFINE_float("clip_gradient_norm", 1.0,
                   "Clip the global gradient norm to this (0: no clipping).")
flags.DEFINE_bool("skip_nonfinite_steps", False,
                  "Skip (and count) steps whose loss or gradient is not "
                  "finite, instead of stopping.")

# Export and distribution.
flags.DEFINE_integer("export_model_steps", 1000,
                     "Checkpoint, fit the subspace and export every N steps.")
flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.")
flags.DEFINE_string("distribution_strategy", "one_device",
                    "one_device, mirrored, or multi_worker_mirrored (TF_CONFIG).")
flags.DEFINE_integer("log_every_steps", 10, "Log and summarize every N steps.")
flags.DEFINE_string("top_k", "1,5,10,20", "Recall@K cut-offs for validation.")
flags.DEFINE_string("vocabulary_file", "",
                    "YT8M vocabulary.csv, for label names in TensorBoard.")
flags.DEFINE_integer("seed", 0, "Random seed (weights and data order).")


def main(argv):
    del argv
    cfg = training.config_from_flags(FLAGS)
    try:
        result = training.train(cfg)
    except training.NonFiniteStepError as e:
        # Not a usage error (exit 2), but as much the user's to act on: one
        # line, no stack trace.
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    print(training.summary_text(cfg, result))


def run():
    """The command's entry point (root script and console script)."""
    cli.run(main)


if __name__ == "__main__":
    run()
