r"""Evaluates cross-modal retrieval of the checkpoints in a train_dir.

    python eval.py --train_dir=/tmp/yt8m_xmodal_model \
        --eval_data_pattern='/data/yt8m/frame/validate*.tfrecord' --top_k 1,5,10,20

Without --run_once it watches --train_dir and evaluates each new checkpoint
once, as the YouTube-8M starter code's eval.py does. The model is rebuilt from
train_dir/model_flags.json, so no model flags are repeated here; the
starter code's reader flags (--frame_features, --feature_names, ...) are
taken and must agree with the model's. --gallery_size=1000 --gallery_draws=5
reports the mean and spread over seeded 1,000-video galleries.
"""

import dataclasses
import logging
import os

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import metrics
from yt8m_xmodal import modeling
from yt8m_xmodal import rundir
from yt8m_xmodal.tools import synthetic

FLAGS = flags.FLAGS

cli.define_config_flags(config_lib.EvalConfig)
# The starter code's eval.py takes the reader flags; here they must agree
# with the model's (model_flags.json), except the records' id key and
# vocabulary size.
cli.define_data_flags()

log = logging.getLogger("yt8m_xmodal")


def config_from_flags():
    """The `EvalConfig` of eval.py's flags (demo test split without a
    pattern)."""
    values = {}
    if not FLAGS.eval_data_pattern:
        values["eval_data_pattern"] = os.path.join(
            synthetic.ensure_demo_data(), "test-*.tfrecord")
        log.info("no --eval_data_pattern: evaluating on the built-in demo "
                 "data's test split, %s", values["eval_data_pattern"])
    cfg = cli.config_from_flags(config_lib.EvalConfig, **values)
    return dataclasses.replace(cfg, top_k=metrics.parse_top_k(cfg.top_k))


def main(argv):
    del argv
    model_config = rundir.read_model_flags(FLAGS.train_dir)
    cfg = config_from_flags()
    cli.check_output_path("output_json", cfg.output_json)
    data = cli.data_config_for_model(model_config.data, cfg.train_dir,
                                     cfg.eval_data_pattern,
                                     "eval_data_pattern")

    def evaluate(checkpoint_path):
        result = evaluation.evaluate_checkpoint(
            cfg.train_dir, cfg.eval_data_pattern, cfg.top_k,
            checkpoint_path=checkpoint_path, batch_size=cfg.batch_size,
            use_subspace=cfg.use_subspace, skip_corrupt=cfg.skip_corrupt,
            with_map=cfg.compute_map, csls_k=cfg.csls_k, data=data,
            gallery_size=cfg.gallery_size, gallery_draws=cfg.gallery_draws)
        path = evaluation.write_metrics(result, cfg.train_dir, cfg.output_json)
        print(evaluation.format_table(
            result, title=f"step {result['step']} ({checkpoint_path})"))
        print(f"metrics written to {path}")

    if cfg.run_once:
        evaluate(modeling.latest_checkpoint(cfg.train_dir))
        return 0
    log.info("watching %s for new checkpoints (Ctrl-C to stop)", cfg.train_dir)
    evaluation.watch_checkpoints(cfg.train_dir, evaluate,
                                 poll_seconds=cfg.poll_seconds)
    return 0


def run():
    """The command's entry point (root script and console script)."""
    cli.run(main)


if __name__ == "__main__":
    run()
