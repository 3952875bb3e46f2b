"""What a YouTube-8M starter-code user pastes: its README's flags, verbatim.

The starter README documents the reader flags in these forms (with `=` or a
space before the value, with or without spaces after the commas):

    --feature_names="mean_rgb, mean_audio" --feature_sizes="1024, 128"
    --frame_features=True --feature_names="rgb, audio" --feature_sizes="1024, 128"
    eval.py ... --run_once=True

and says the same flags go to train.py, eval.py and inference.py. The table
below runs the three commands with them at both levels, as subprocesses.
"""

import csv
import dataclasses
import os
import sys

from absl import flags
import pytest

from conftest import REPO_ROOT
import prewarmed
from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import modeling
from yt8m_xmodal import rundir
from yt8m_xmodal import writers
from yt8m_xmodal.tools import synthetic

# (level, train flags, eval flags, inference flags): each list flag once with
# `=`, once with a space, and with the README's spaces after commas.
STARTER_TABLE = [
    ("video",
     ["--feature_names=mean_rgb, mean_audio", "--feature_sizes=1024, 128"],
     ["--feature_names", "mean_rgb,mean_audio", "--feature_sizes", "1024,128",
      "--run_once=True"],
     ["--feature_names=mean_rgb,mean_audio", "--feature_sizes", "1024, 128"]),
    ("frame",
     ["--frame_features=True", "--feature_names", "rgb, audio",
      "--feature_sizes", "1024, 128"],
     ["--frame_features", "--feature_names=rgb,audio",
      "--feature_sizes=1024,128", "--run_once"],
     ["--frame_features=True", "--feature_names", "rgb,audio",
      "--feature_sizes=1024,128"]),
]


def _run(script, *args):
    out = prewarmed.run([sys.executable, str(REPO_ROOT / script), *args],
                        timeout=600, cwd=REPO_ROOT)
    assert out.returncode == 0, f"{script} {args}:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def frame_data_1024(tmp_path_factory):
    """Frame-level records at YT8M's sizes (1024-d rgb, 128-d audio)."""
    root = tmp_path_factory.mktemp("frame1024")
    synthetic.generate_dataset(str(root), num_videos=120, seed=3,
                               num_shards=1, min_frames=10, max_frames=20,
                               num_classes=4)
    return root


@pytest.mark.parametrize("level,train_flags,eval_flags,inference_flags",
                         STARTER_TABLE, ids=[row[0] for row in STARTER_TABLE])
def test_starter_readme_flags_run_train_eval_and_inference(
        level, train_flags, eval_flags, inference_flags, tmp_path, request):
    if level == "video":
        video_dir = request.getfixturevalue("shared_video_dir")
        train = f"{video_dir}/validate000[0-1].tfrecord"
        test = f"{video_dir}/validate0002.tfrecord"
        schedule = ["--batch_size=160"]
    else:
        data = request.getfixturevalue("frame_data_1024")
        train, test = f"{data}/train-*", f"{data}/test-*"
        schedule = ["--batch_size=32", "--max_frames=20"]
    train_dir = tmp_path / "model"
    _run("train.py", *train_flags, *schedule, f"--train_data_pattern={train}",
         f"--train_dir={train_dir}", "--start_new_model", "--max_steps=2")
    data_config = rundir.read_model_flags(str(train_dir)).data
    names = ("rgb", "audio") if level == "frame" else ("mean_rgb", "mean_audio")
    assert data_config.feature_names == names
    assert data_config.feature_sizes == (1024, 128)
    assert data_config.frame_features == (level == "frame")

    out = _run("eval.py", *eval_flags, f"--train_dir={train_dir}",
               f"--eval_data_pattern={test}")
    assert "audio_to_video" in out.stdout

    matches = tmp_path / "matches.csv"
    _run("inference.py", *inference_flags, f"--train_dir={train_dir}",
         f"--input_data_pattern={test}", f"--output_file={matches}",
         "--top_k=5")
    with open(matches) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["QueryId", "QueryModality", "MatchScorePairs"]
    assert len(rows) > 1 and all(row[0] for row in rows[1:])


@dataclasses.dataclass(frozen=True)
class _ListConfig:
    names: tuple[str, ...] = config_lib.option((), "names")
    sizes: tuple[int, ...] = config_lib.option((1, 2), "sizes")
    count: int | None = config_lib.option(None, "count")


@pytest.mark.parametrize("argv", [
    ["--names=mean_rgb,mean_audio", "--sizes=1024,128", "--count=3"],
    ["--names", "mean_rgb, mean_audio", "--sizes", "1024, 128", "--count", "3"],
    ["--names=mean_rgb,mean_audio,", "--sizes=1024, 128", "--count=3"],
])
def test_generated_list_flags_take_both_forms(argv):
    flag_values = flags.FlagValues()
    cli.define_config_flags(_ListConfig, flag_values=flag_values)
    flag_values(["prog", *argv])
    cfg = cli.config_from_flags(_ListConfig, flag_values)
    assert cfg == _ListConfig(("mean_rgb", "mean_audio"), (1024, 128), 3)
    assert cli.set_flags(_ListConfig, flag_values) == dataclasses.asdict(cfg)


def test_unset_optional_flag_is_none_and_bad_list_names_the_flag():
    flag_values = flags.FlagValues()
    cli.define_config_flags(_ListConfig, flag_values=flag_values)
    flag_values(["prog", "--sizes=1024,x"])
    for parse in (cli.set_flags, cli.config_from_flags):
        with pytest.raises(config_lib.ConfigError) as info:
            parse(_ListConfig, flag_values)
        assert cli.flag_message(info.value) == (
            "--sizes=1024,x must be a comma-separated list of int values")
    flag_values.unparse_flags()
    flag_values(["prog"])
    assert cli.config_from_flags(_ListConfig, flag_values).count is None


def test_one_modality_records_of_the_2017_release_keep_their_ids(tmp_path):
    """A video-level model trained on 2017 records (ids under `video_id`)
    embeds audio-only records of that release with their ids."""
    import numpy as np
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    with writers.ShardedRecordWriter(str(data), "train", 1) as w:
        for i in range(64):
            shared = rng.normal(size=8)
            w.write(writers.make_video_example(
                f"v17_{i:03d}", [4000 + i % 2], np.resize(shared, 16),
                shared + 0.1 * rng.normal(size=8),
                id_feature="video_id").SerializeToString())
    run = tmp_path / "run"
    _run("train.py", f"--train_data_pattern={data}/train-*",
         "--feature_names=mean_rgb,mean_audio", "--feature_sizes=16,8",
         "--model=LinearCcaModel", "--subspace_dim=4", "--batch_size=32",
         f"--train_dir={run}")
    exported = modeling.load_export(modeling.latest_export(str(run)))
    assert exported.config.data.id_feature == "video_id"
    audio_only = writers.make_video_example(
        "v17_song", [], np.zeros(16), rng.normal(size=8),
        id_feature="video_id")
    del audio_only.features.feature["mean_rgb"]
    out = exported.embed_audio_records([audio_only.SerializeToString()])
    assert out["id"].tolist() == [b"v17_song"]
    assert out["embedding"].shape == (1, 4)
    assert os.path.isdir(str(run / "export"))
