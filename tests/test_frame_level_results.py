"""--reuse_runs bookkeeping of bench/frame_level_results.py."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench import frame_level_results as flr  # noqa: E402


def test_reuse_needs_same_command_and_existing_outputs(tmp_path):
    out = tmp_path / "out.txt"
    log = str(tmp_path / "step.log")

    def command(tag):
        return [sys.executable, "-c",
                f"open({str(out)!r}, 'a').write({tag!r}); print('ran')"]

    def runs(cmd, **kwargs):
        before = out.read_text() if out.exists() else ""
        flr.run_command(cmd, log, **kwargs)
        return (out.read_text() if out.exists() else "") != before

    assert runs(command("a"), reuse=True, outputs=[str(out)])  # first time
    assert not runs(command("a"), reuse=True, outputs=[str(out)])  # reused
    assert "ran" in open(log).read()  # the reused log is the recorded one
    assert runs(command("b"), reuse=True, outputs=[str(out)])  # new command
    out.unlink()  # e.g. train.py --start_new_model wiped the train dir
    assert runs(command("b"), reuse=True, outputs=[str(out)])
    assert runs(command("b"))  # no reuse asked: always runs
