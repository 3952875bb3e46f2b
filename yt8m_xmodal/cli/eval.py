r"""Evaluates cross-modal retrieval of the checkpoints in a train_dir.

    python eval.py --train_dir=/tmp/yt8m_xmodal_model \
        --eval_data_pattern='/data/yt8m/frame/validate*.tfrecord' --top_k 1,5,10,20

Without --run_once it watches --train_dir and evaluates each new checkpoint
once, as the YouTube-8M starter code's eval.py does. The model is rebuilt from
train_dir/model_flags.json, so no model flags are repeated here.
"""

import logging
import os

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import metrics
from yt8m_xmodal import modeling
from yt8m_xmodal.tools import synthetic

FLAGS = flags.FLAGS

flags.DEFINE_string("train_dir", "/tmp/yt8m_xmodal_model/",
                    "The directory train.py wrote.")
flags.DEFINE_string("eval_data_pattern", "",
                    "File glob(s), comma-separated, of the evaluation records. "
                    "Empty: the test split of the built-in demo data.")
flags.DEFINE_string("top_k", "1,5,10,20",
                    cli.top_k_flag_help("Recall@K is reported for each K."))
flags.DEFINE_integer("batch_size", 256, "Videos embedded per batch.")
flags.DEFINE_bool("run_once", False,
                  "Evaluate the latest checkpoint once instead of watching.")
flags.DEFINE_bool("use_subspace", True,
                  "Cosine similarity in the fitted CCA subspace; otherwise in "
                  "the raw tower embeddings.")
flags.DEFINE_string("output_json", "",
                    "Where to write metrics.json (default train_dir/eval/).")
flags.DEFINE_float("poll_seconds", 30.0,
                   "Watcher: seconds between looks for a new checkpoint.")
flags.DEFINE_integer("csls_k", -1,
                     "Rank by CSLS over this many neighbours (0: plain "
                     "cosine; -1: the model's own csls_k).")
flags.DEFINE_bool("compute_map", False,
                  "Also compute exact label mAP: it sorts every query's whole "
                  "gallery, O(N^2 log N) in the number of videos.")
flags.DEFINE_bool("skip_corrupt", False,
                  "Skip corrupt records (counted) instead of stopping.")

log = logging.getLogger("yt8m_xmodal")


def main(argv):
    del argv
    top_k = metrics.parse_top_k(FLAGS.top_k)
    config_lib.read_model_flags(FLAGS.train_dir)
    cli.check_output_path("output_json", FLAGS.output_json)
    eval_data_pattern = FLAGS.eval_data_pattern
    if not eval_data_pattern:
        eval_data_pattern = os.path.join(synthetic.ensure_demo_data(),
                                         "test-*.tfrecord")
        log.info("no --eval_data_pattern: evaluating on the built-in demo "
                 "data's test split, %s", eval_data_pattern)

    def evaluate(checkpoint_path):
        result = evaluation.evaluate_checkpoint(
            FLAGS.train_dir, eval_data_pattern, top_k,
            checkpoint_path=checkpoint_path, batch_size=FLAGS.batch_size,
            use_subspace=FLAGS.use_subspace, skip_corrupt=FLAGS.skip_corrupt,
            with_map=FLAGS.compute_map,
            csls_k=None if FLAGS.csls_k < 0 else FLAGS.csls_k)
        path = evaluation.write_metrics(result, FLAGS.train_dir, FLAGS.output_json)
        print(evaluation.format_table(
            result, title=f"step {result['step']} ({checkpoint_path})"))
        print(f"metrics written to {path}")

    if FLAGS.run_once:
        latest = modeling.latest_checkpoint(FLAGS.train_dir)
        evaluate(latest)
        return 0
    log.info("watching %s for new checkpoints (Ctrl-C to stop)", FLAGS.train_dir)
    evaluation.watch_checkpoints(FLAGS.train_dir, evaluate,
                                 poll_seconds=FLAGS.poll_seconds)
    return 0


def run():
    """The command's entry point (root script and console script)."""
    cli.run(main)


if __name__ == "__main__":
    run()
