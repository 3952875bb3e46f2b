"""The commands' console: quiet by default, progress reports, one meaning
per flag, --help however a command is run."""

import csv
import dataclasses
import io
import logging
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf
from absl import flags

from conftest import REPO_ROOT
from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import progress
from yt8m_xmodal.errors import ConfigError

# A line of TensorFlow's C++ logger ("I0000 00:00:1795983572.625290 2629
# port.cc:153] ...", "E1129 20:19:37.79 ... cuda_platform.cc:52] ..."), its
# notice before absl::InitializeLog, or absl's Python prefix format.
NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]|"
                   r"WARNING: All log messages before absl::InitializeLog|"
                   r"INFO:tensorflow:)")


def noise_lines(text):
    return [line for line in text.splitlines() if NOISE.match(line)]


def run_command(args, env_changes=None, timeout=300):
    env = dict(os.environ)
    # conftest.py sets it for the test process; a user's shell has none.
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.update(env_changes or {})
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=env)


# -- quiet console ------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["train.py"], None),
    (["train.py", "--verbosity=0"], 0),
    (["train.py", "-v", "1"], 1),
    (["train.py", "--v=-1"], -1),
    (["train.py", "--verbosity", "2", "--train_dir=x"], 2),
    (["train.py", "--verbosity=debug"], 0),
    (["train.py", "--", "--verbosity=1"], None),
    (["train.py", "--vocabulary_file=v.csv"], None),
])
def test_verbosity_is_read_before_flags_are_parsed(argv, expected):
    assert cli._requested_verbosity(argv) == expected


def test_commands_use_tensorflows_bfc_cpu_allocator_unless_set():
    # Set before TensorFlow starts (BENCHMARKS.md, "Demo command"); a value
    # the user set is kept.
    show = ("import os, yt8m_xmodal.cli; "
            "print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])")
    env = {k: v for k, v in os.environ.items()
           if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    unset = subprocess.run([sys.executable, "-c", show], cwd=REPO_ROOT,
                           capture_output=True, text=True, env=env,
                           timeout=300)
    assert unset.stdout.split()[-1] == "true"
    kept = run_command(["-c", show], {"TF_CPU_ALLOCATOR_USE_BFC": "false"})
    assert kept.stdout.split()[-1] == "false"


def test_quiet_unless_the_user_asked_for_tensorflow_logs():
    assert cli._quiet_console_wanted(["train.py"], {})
    assert cli._quiet_console_wanted(["train.py", "--verbosity=-1"], {})
    assert not cli._quiet_console_wanted(["train.py", "--verbosity=0"], {})
    assert not cli._quiet_console_wanted(["train.py"],
                                         {"TF_CPP_MIN_LOG_LEVEL": "0"})


def test_eval_console_holds_tensorflow_back_unless_verbose(trained_dir,
                                                           tiny_frame_data):
    args = ["eval.py", f"--train_dir={trained_dir}", "--run_once",
            f"--eval_data_pattern={tiny_frame_data}/validate-*",
            f"--output_json={trained_dir}/../quiet_metrics.json"]
    quiet = run_command(args)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert noise_lines(quiet.stderr + quiet.stdout) == []
    # The project's lines stay: the table, where it wrote, and (off a
    # terminal) one progress line for the embedding pass.
    assert "16 queries" in quiet.stdout
    assert "metrics written to" in quiet.stdout
    assert re.search(r"^embed: 16/16 videos in \d+:\d\d$", quiet.stderr,
                     re.MULTILINE), quiet.stderr
    # The same command with --verbosity=0 shows TensorFlow's lines: the check
    # above can fail.
    verbose = run_command(args + ["--verbosity=0"])
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert noise_lines(verbose.stderr)


# -- flags ----------------------------------------------------------------------


def test_starter_code_flags_are_refused_with_what_to_use():
    flag_values = flags.FlagValues()
    cli.define_starter_flags(flag_values)
    flag_values(["inference.py"])
    cli.check_starter_flags(flag_values)  # none set: nothing to say
    for name, _, instead in cli.STARTER_FLAGS:
        flag_values.unparse_flags()
        value = [f"--{name}"] if name == "segment_labels" else [f"--{name}=4"]
        flag_values(["inference.py", *value])
        with pytest.raises(cli.FlagError) as error:
            cli.check_starter_flags(flag_values)
        assert f"--{name}" in str(error.value)
        assert instead in str(error.value)


def test_starter_flag_is_one_line_from_the_command():
    out = run_command(["inference.py", "--num_readers=4",
                       "--untar_model_dir=/tmp/x"])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("inference.py: error: --num_readers")
    assert "drop --num_readers" in last


def test_inference_top_k_is_a_list_and_writes_the_largest(trained_dir,
                                                          tiny_frame_data,
                                                          tmp_path):
    matches = tmp_path / "matches.csv"
    out = run_command(["inference.py", f"--train_dir={trained_dir}",
                       f"--input_data_pattern={tiny_frame_data}/validate-*",
                       f"--output_file={matches}", "--top_k=5,1,3"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "top-5 matches" in out.stdout
    with open(matches, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert rows and all(len(row[2].split()) == 2 * 5 for row in rows)
    bad = run_command(["inference.py", f"--train_dir={trained_dir}",
                       "--top_k=0,5"])
    assert bad.returncode == 2
    assert "--top_k=0,5" in bad.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("how, flag", [
    (["train.py"], "--train_data_pattern"),
    # What pip's console script does: argv[0] is the script, __main__ a
    # wrapper without the flags.
    (["-c", "import sys; sys.argv[0] = 'yt8m-xmodal-inference'; "
            "from yt8m_xmodal.cli.inference import run; sys.exit(run())"],
     "--input_data_pattern"),
    (["-c", "import sys; sys.argv[0] = 'yt8m-xmodal-subset'; "
            "from yt8m_xmodal.cli.subset import run; sys.exit(run())"],
     "--vocabulary_file"),
])
def test_help_lists_the_command_flags_however_it_runs(how, flag):
    out = run_command([*how, "--help"])
    # absl's --help exits with status 1 after printing the usage.
    assert out.returncode in (0, 1), out.stderr[-3000:]
    assert flag in out.stdout, out.stdout[-3000:]
    # Starter-code flags are in --helpfull only.
    assert "--num_readers" not in out.stdout


# -- programs outside cli.run: the pipelines and benchmarks -------------------


@dataclasses.dataclass(frozen=True)
class _ToolConfig:
    rounds: int = config_lib.option(3, "Timed rounds.")
    sizes: tuple[int, ...] = config_lib.option((1, 2), "Gallery sizes.")
    quick: bool = config_lib.option(False, "Tiny sizes.")


def _parse(argv, **kwargs):
    return cli.parse_command_line(_ToolConfig, argv, "Tool: times things."
                                  "\n\nDetails.", program="tool", **kwargs)


def test_parse_command_line_types_a_configs_flags():
    assert _parse([]) == (_ToolConfig(), [])
    config, rest = _parse(["--rounds=5", "--sizes", "4,8", "--quick"])
    assert config == _ToolConfig(rounds=5, sizes=(4, 8), quick=True)
    assert rest == []
    assert _parse(["--noquick"])[0].quick is False


def test_parse_command_line_refuses_what_is_not_a_flag_of_the_config():
    with pytest.raises(ConfigError, match="bogus"):
        _parse(["--bogus=1"])
    with pytest.raises(ConfigError, match="rounds"):
        _parse(["--rounds=many"])
    with pytest.raises(ConfigError, match="^sizes=4,x must be a comma"):
        _parse(["--sizes=4,x"])
    with pytest.raises(ConfigError, match="unexpected argument 'extra'"):
        _parse(["extra"])
    # A pipeline passes the others on (to Beam), its own flags parsed.
    config, rest = _parse(["--rounds=2", "--runner=DirectRunner"],
                          others="Beam's own flags pass through.")
    assert config.rounds == 2 and rest == ["--runner=DirectRunner"]


def test_parse_command_line_help_shows_the_summary_and_flags(capsys):
    with pytest.raises(SystemExit) as done:
        _parse(["--help"], others="Beam's own flags pass through.")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("tool: Tool: times things.\n")
    assert "Details." not in out
    assert "--rounds: Timed rounds." in out and "--[no]quick" in out
    assert out.rstrip().endswith("Beam's own flags pass through.")


# -- progress -------------------------------------------------------------------


@pytest.fixture
def progress_mode():
    """Restores the library default (off) after a test turns reports on."""
    yield progress
    progress.close_all()
    progress.disable()


def test_progress_is_silent_unless_enabled(capsys, caplog):
    caplog.set_level(logging.INFO, logger="yt8m_xmodal")
    assert not progress.enabled()
    with progress.Progress("work", total=3, unit="step") as bar:
        for i in range(3):
            bar.update(i + 1)
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    assert caplog.records == []


def test_progress_bar_shows_percent_and_eta(progress_mode, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    progress_mode.enable("bar", stream=stream)
    bar = progress.Progress("train", total=10, unit="step")
    bar.update(1)          # the rate counts from the first update
    clock[0] += 4.0
    bar.update(3, loss=0.5)  # 2 steps in 4 s: 7 steps left take 14 s
    assert bar.eta() == pytest.approx(14.0)
    clock[0] += 1.0
    bar.update(4)
    text = stream.getvalue()
    assert "\r\033[K" in text
    assert "train  30% [======>" in text
    assert "3/10 steps" in text and "ETA 0:14" in text and "loss 0.5" in text
    bar.close()
    assert stream.getvalue().endswith("\n")


def test_progress_off_a_terminal_logs_lines(progress_mode, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="yt8m_xmodal")
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    progress_mode.enable("auto", stream=io.StringIO(), log_interval=30.0)
    with progress.Progress("embed", total=100, unit="video") as bar:
        for _ in range(10):
            clock[0] += 10.0
            bar.advance(10)
    lines = [r.getMessage() for r in caplog.records]
    # Every 30 s one line, and one at the end.
    assert len(lines) == 4
    # 20 videos in the 20 s since the first update: 1 video/s, 70 to go.
    assert lines[0] == "embed: 30/100 videos (30%), 1 videos/s, ETA 1:10"
    assert lines[-1] == "embed: 100/100 videos in 1:40"


def test_total_below_the_count_is_shown_as_unknown(progress_mode):
    stream = io.StringIO()
    progress_mode.enable("bar", stream=stream)
    with progress.Progress("train", total=2, unit="step") as bar:
        bar.update(3)
        assert bar.eta() is None
    assert "3 steps" in stream.getvalue() and "150%" not in stream.getvalue()


def test_log_lines_and_nested_bars_keep_the_bar_intact(progress_mode):
    stream = io.StringIO()
    progress_mode.enable("bar", stream=stream)
    handler = progress.LogHandler(stream)
    logger = logging.getLogger("yt8m_xmodal.test_progress")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        outer = progress.Progress("train", total=4, unit="step")
        outer.update(1)
        logger.warning("a message")
        # The bar's line was cleared before the message, and redrawn after.
        assert stream.getvalue().endswith(
            "\r\033[K" + "a message\n" + "\r\033[K" + outer._line())
        with progress.Progress("validate", total=2, unit="video") as inner:
            inner.update(2)
            assert progress._active_bar() is inner
        assert progress._active_bar() is outer
        assert stream.getvalue().endswith(outer._line())
        outer.close()
    finally:
        logger.removeHandler(handler)


def test_count_records_matches_the_records_read(tiny_frame_data):
    pattern = f"{tiny_frame_data}/train-*"
    files = tf.io.gfile.glob(pattern)
    expected = sum(1 for _ in tf.data.TFRecordDataset(files))
    assert progress.count_records(pattern) == expected
    assert progress.count_records(files) == expected
    assert progress.count_records("gs://bucket/train-*") is None


def test_count_records_gives_up_on_other_framing(tmp_path):
    path = tmp_path / "not_a_tfrecord"
    path.write_bytes(b"\xff" * 64)
    assert progress.count_records([str(path)]) is None
