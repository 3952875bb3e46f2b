r"""The early-stopping rule on real video-level data: the old fixed patience
against the shipped rule, on one validation curve.

Runs README's video-level flow (`bench/video_level_results.py`'s subsets and
`train.py --noframe_features`) once with the old rule, five validations
without improvement (`--early_stopping_patience=5
--early_stopping_fraction=0`), which trains furthest, and replays the shipped
rule (`training.patience_exhausted` with config.TrainConfig's defaults) on
its validations: training is a pure function of --seed, so a run under the
shipped rule is the same run cut at the validation where that rule stops.
Prints, for each rule, where it stops, the best step it keeps and that
step's validation R@10 (mean of both directions; model selection reads only
the validation split).

    python bench/stopping_rule.py --work_dir=/tmp/yt8m_video_level
    python bench/stopping_rule.py --train_result=run/train_result.json
"""

import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
from bench import fragments  # noqa: E402
from bench import video_level_results as flow  # noqa: E402
from yt8m_xmodal import config as config_lib  # noqa: E402
from yt8m_xmodal import training  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402


@dataclasses.dataclass(frozen=True)
class StoppingRuleConfig(flow.FlowConfig):
    """stopping_rule.py's flags; --work_dir is video_level_results.py's, so
    the subsets are shared."""

    train_result: str = option("", "Replay this train_result.json instead "
                               "of training (it must have run under the old "
                               "rule).")


OLD_RULE = {"early_stopping_patience": 5, "early_stopping_fraction": 0.0}


def replay(validations, cfg):
    """(stop step, best step, best score) of `cfg`'s rule on a validation
    curve [(step, score)] (None for the stop: the curve ended first)."""
    best_step, best, bad = None, float("-inf"), 0
    for step, score in validations:
        if score > best:
            best_step, best, bad = step, score, 0
            continue
        bad += 1
        if training.patience_exhausted(cfg, step, best_step, bad):
            return step, best_step, best
    return None, best_step, best


def main(argv=None):
    args = fragments.parse_flags(StoppingRuleConfig, __doc__, argv)
    if args.train_result:
        result = json.load(open(args.train_result))
    else:
        data = flow.build_subsets(args.video_dir, args.work_dir)
        result = flow.train(
            os.path.join(args.work_dir, "runs", "old_stopping_rule"),
            data["train"], data["validate"],
            *(f"--{k}={v}" for k, v in OLD_RULE.items()), reuse=True)
    curve = [tuple(v) for v in result["validations"]]
    rules = {"old: 5 validations": config_lib.TrainConfig(**OLD_RULE),
             "shipped": config_lib.TrainConfig()}
    print(f"validations (step, R@10): {[(s, round(v, 4)) for s, v in curve]}")
    print(f"{'rule':<40}{'stops at':>10}{'best step':>11}{'val R@10':>10}"
          f"{'steps past best':>17}")
    for name, cfg in rules.items():
        stop, best_step, best = replay(curve, cfg)
        stop = stop if stop is not None else result["step"]
        label = (f"{name} (patience {cfg.early_stopping_patience}, "
                 f"fraction {cfg.early_stopping_fraction:g})")
        print(f"{label:<40}{stop:>10}{best_step:>11}{best:>10.4f}"
              f"{(stop - best_step) / stop:>16.0%}")


if __name__ == "__main__":
    main()
