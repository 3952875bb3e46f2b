"""Records that do not match the flags: the format is read from the first
record, every entry point says in one line what the file holds and what to
pass, train.py takes the level from the records when --frame_features is not
given, and the 2017 release (`video_id`, 4,716 classes) is read."""

import json
import logging
import os
import re
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, TINY_FEATURE_SIZES
import prewarmed
from test_training import _parse_train_flags
from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import evaluation
from yt8m_xmodal import formats
from yt8m_xmodal import inference
from yt8m_xmodal import modeling
from yt8m_xmodal import rundir
from yt8m_xmodal import subset
from yt8m_xmodal import training
from yt8m_xmodal import writers
from yt8m_xmodal.errors import DataError

TINY = ",".join(map(str, TINY_FEATURE_SIZES))
# Text from inside TF that must never reach the user.
TF_INTERNALS = ("Traceback", "Reduction axis", "Graph execution",
                "Feature list", "{{function_node", "[[{{node")


def _run(script, *args, timeout=300):
    return prewarmed.run([sys.executable, str(REPO_ROOT / script),
                          *map(str, args)], timeout=timeout, cwd=REPO_ROOT)


def _one_line_error(out, script):
    """The `script: error:` line of a run that failed as a usage error."""
    assert out.returncode == 2, out.stderr[-3000:]
    for text in TF_INTERNALS:
        assert text not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: "), out.stderr[-3000:]
    return last


def _write_2017(path, num_records=40, frame_features=False, seed=0,
                sizes=TINY_FEATURE_SIZES):
    """Records in the 2017 layout: id under `video_id`, labels of the 4,716
    class vocabulary (some above the 2018 range), two classes' worth of
    signal so a model can learn something."""
    rng = np.random.default_rng(seed)
    ids = [f"v17_{i:03d}" for i in range(num_records)]
    with writers.ShardedRecordWriter(str(path), "train", 1) as w:
        for i, video_id in enumerate(ids):
            label = (4000, 4715)[i % 2]
            shared = rng.normal(size=8)
            if frame_features:
                frames = 12
                video = np.tanh(rng.normal(size=(frames, sizes[0]))
                                + np.resize(shared, sizes[0]))
                audio = np.tanh(rng.normal(size=(frames, sizes[1]))
                                + np.resize(shared, sizes[1]))
                record = writers.make_frame_example(
                    video_id, [label], video, audio, id_feature="video_id")
            else:
                video = np.resize(shared, sizes[0]) + 0.1 * rng.normal(
                    size=sizes[0])
                audio = np.resize(shared, sizes[1]) + 0.1 * rng.normal(
                    size=sizes[1])
                record = writers.make_video_example(
                    video_id, [label], video, audio, id_feature="video_id")
            w.write(record)
    return w.paths[0], ids


# -- detection ---------------------------------------------------------------


def test_detects_each_level(shared_video_dir, tiny_frame_data):
    video = formats.detect_format(f"{shared_video_dir}/validate000*.tfrecord")
    assert video.path == str(shared_video_dir / "validate0000.tfrecord")
    assert not video.frame_features
    assert video.feature_sizes == {"mean_rgb": 1024, "mean_audio": 128}
    assert video.id_feature == "id" and video.video_id
    assert all(0 <= label < 3862 for label in video.labels)
    assert video.describe() == (
        "video-level records (mean_rgb 1024, mean_audio 128 floats)")

    frame = formats.detect_format(f"{tiny_frame_data}/train-*")
    assert frame.frame_features
    assert frame.feature_sizes == {"rgb": 16, "audio": 8}
    assert frame.describe() == (
        "frame-level records (rgb 16, audio 8 bytes per frame)")
    # Records the config reads pass.
    formats.check_format(config_lib.DataConfig(feature_sizes=TINY_FEATURE_SIZES,
                                               num_classes=4), frame)
    formats.check_format(config_lib.DataConfig(frame_features=False), video)


def test_detects_the_2017_release(tmp_path):
    path, ids = _write_2017(tmp_path)
    fmt = formats.detect_format(path)
    assert fmt.release_2017 and fmt.id_feature == "video_id"
    assert fmt.video_id == ids[0] and fmt.labels == (4000,)
    assert formats.detected_data_values(fmt) == {
        "frame_features": False, "id_feature": "video_id",
        "num_classes": 4716}


@pytest.mark.parametrize("data, flags", [
    (dict(), "--noframe_features --feature_sizes=16,8"),
    (dict(frame_features=False, num_classes=4), "--feature_sizes=16,8"),
    (dict(frame_features=False, feature_sizes=TINY_FEATURE_SIZES,
          feature_names=("rgb", "audio"), num_classes=4),
     "--feature_names=mean_rgb,mean_audio"),
    (dict(frame_features=False, feature_sizes=TINY_FEATURE_SIZES,
          id_feature="video_id", num_classes=4), "--id_feature=id"),
])
def test_flags_that_would_read_the_records(tiny_video_data, data, flags):
    fmt = formats.detect_format(f"{tiny_video_data}/train-*")
    with pytest.raises(DataError) as error:
        formats.check_format(config_lib.DataConfig(**data), fmt)
    message = str(error.value)
    assert "\n" not in message
    assert message == (f"{fmt.path} holds video-level records (mean_rgb 16, "
                       f"mean_audio 8 floats); pass {flags}")


def test_empty_or_unreadable_first_file_detects_nothing(tmp_path):
    (tmp_path / "a.tfrecord").write_bytes(b"")
    assert formats.detect_format(str(tmp_path / "a.tfrecord")) is None
    (tmp_path / "b.tfrecord").write_bytes(b"not a tfrecord")
    assert formats.detect_format(str(tmp_path / "b.tfrecord")) is None
    with pytest.raises(DataError, match="matches no files"):
        formats.detect_format(str(tmp_path / "none*.tfrecord"))


# -- one line per mistake, at each entry point ---------------------------------


def test_train_frame_flag_on_video_level_records(shared_video_dir, tmp_path):
    # The starter code's video-level shards read with an explicit
    # --frame_features (the flag, not the data, is wrong).
    pattern = f"{shared_video_dir}/validate000*.tfrecord"
    line = _one_line_error(_run(
        "train.py", f"--train_data_pattern={pattern}", "--frame_features",
        f"--train_dir={tmp_path}/run", "--max_steps=1"), "train.py")
    assert line == (
        f"train.py: error: {shared_video_dir}/validate0000.tfrecord holds "
        "video-level records (mean_rgb 1024, mean_audio 128 floats); pass "
        "--noframe_features")


def test_trainer_names_the_validate_pattern(tiny_frame_data, shared_video_dir,
                                            tmp_path):
    cfg = config_lib.TrainConfig(
        train_data_pattern=f"{tiny_frame_data}/train-*",
        validate_data_pattern=f"{shared_video_dir}/validate0001.tfrecord",
        train_dir=str(tmp_path / "run"),
        data=config_lib.DataConfig(feature_sizes=TINY_FEATURE_SIZES,
                                   max_frames=40, num_classes=4),
        model="MeanPoolModel", max_steps=1)
    with pytest.raises(DataError, match=(
            r"^\S*validate0001\.tfrecord \(validate_data_pattern\) holds "
            r"video-level records .*; pass --noframe_features")):
        training.Trainer(cfg)
    assert not (tmp_path / "run").exists()


def test_eval_frame_model_on_video_level_records(trained_dir, shared_video_dir):
    line = _one_line_error(_run(
        "eval.py", f"--train_dir={trained_dir}",
        f"--eval_data_pattern={shared_video_dir}/validate0000.tfrecord",
        "--run_once"), "eval.py")
    assert line == (
        f"eval.py: error: {shared_video_dir}/validate0000.tfrecord holds "
        "video-level records (mean_rgb 1024, mean_audio 128 floats), but the "
        f"model in {trained_dir} was trained on frame-level records (rgb 16, "
        "audio 8 bytes per frame; 4 classes); give it records like those, or "
        "train a model on these (train.py --noframe_features "
        "--feature_sizes=1024,128 --num_classes=3862)")


def test_inference_frame_export_on_video_level_records(
        trained_dir, shared_video_dir, tmp_path):
    line = _one_line_error(_run(
        "inference.py", f"--train_dir={trained_dir}",
        f"--input_data_pattern={shared_video_dir}/validate0000.tfrecord",
        f"--output_file={tmp_path}/m.csv"), "inference.py")
    assert re.fullmatch(
        rf"inference\.py: error: {shared_video_dir}/validate0000\.tfrecord "
        r"holds video-level records \(mean_rgb 1024, mean_audio 128 floats\), "
        rf"but the model in {trained_dir}/export/step_\d+ was trained on "
        r"frame-level records \(rgb 16, audio 8 bytes per frame; 4 classes\); "
        r".*\(train\.py --noframe_features .*\)", line), line
    assert not (tmp_path / "m.csv").exists()


def test_inference_checks_the_gallery_too(trained_dir, tiny_frame_data,
                                          tiny_video_data, tmp_path):
    export = modeling.latest_export(str(trained_dir))
    data = rundir.read_model_flags(export).data
    with pytest.raises(DataError, match=r"^\S*/train-\S+ holds video-level "
                                        r"records .*but the model in "):
        inference.run_inference(
            None, f"{tiny_frame_data}/validate-*",
            gallery_data_pattern=f"{tiny_video_data}/train-*",
            output_file=str(tmp_path / "m.csv"), data_config=data,
            model_dir=export)


def test_train_2017_release_detects_the_id_key_whatever_else_is_set(tmp_path):
    path, _ = _write_2017(tmp_path / "data")
    common = ("train.py", f"--train_data_pattern={path}", "--noframe_features",
              f"--feature_sizes={TINY}", "--cca_input_dim=8",
              "--embedding_dim=8", "--subspace_dim=4", "--batch_size=20",
              "--max_steps=1")
    # The level flag is given; the id key and class count are still read
    # from the records, as they do not depend on it.
    out = _run(*common, f"--train_dir={tmp_path}/run")
    assert out.returncode == 0, out.stderr[-3000:]
    data = rundir.read_model_flags(str(tmp_path / "run")).data
    assert (data.id_feature, data.num_classes) == ("video_id", 4716)
    # An id key given on the command line is kept (the class count is still
    # read), and the records it cannot read stop with one line.
    line = _one_line_error(_run(*common, "--id_feature=id",
                                f"--train_dir={tmp_path}/run2"), "train.py")
    assert line == (
        f"train.py: error: {path} holds YouTube-8M 2017 video-level records "
        "(mean_rgb 16, mean_audio 8 floats; ids in 'video_id'; labels up to "
        "4000); pass --id_feature=video_id")


def test_a_record_without_audio_is_one_line(tmp_path):
    path = tmp_path / "only_rgb.tfrecord"
    record = writers.make_frame_example("x1", [1], np.zeros((5, 16)),
                                        np.zeros((5, 8)))
    del record.feature_lists.feature_list["audio"]
    with writers.tf.io.TFRecordWriter(str(path)) as w:
        w.write(record.SerializeToString())
    cfg = config_lib.TrainConfig(
        train_data_pattern=str(path), train_dir=str(tmp_path / "run"),
        data=config_lib.DataConfig(feature_sizes=TINY_FEATURE_SIZES,
                                   max_frames=40, num_classes=4),
        model="MeanPoolModel", max_steps=1)
    with pytest.raises(DataError) as error:
        training.Trainer(cfg)
    assert str(error.value) == (
        f"{path} holds frame-level records (rgb 16 bytes per frame): its "
        "first record (id 'x1') has no feature list 'audio'; every record "
        "needs a video and an audio view")


# -- the level from the records, and the 2017 release ----------------------------




@pytest.mark.parametrize("level", ["frame", "video"])
def test_train_flags_take_the_level_from_the_records(
        level, tiny_frame_data, tiny_video_data, tmp_path, caplog):
    data = tiny_frame_data if level == "frame" else tiny_video_data
    caplog.set_level(logging.INFO, logger="yt8m_xmodal")
    # The tiny features are narrower than the video-level recipe's CCA
    # input projection.
    small = (() if level == "frame" else
             ("--cca_input_dim=8", "--embedding_dim=8", "--subspace_dim=4"))
    cfg = _parse_train_flags(f"--train_data_pattern={data}/train-*",
                             f"--train_dir={tmp_path}/run",
                             f"--feature_sizes={TINY}", "--num_classes=4",
                             *small)
    assert cfg.data.frame_features == (level == "frame")
    # The level's recipe: a video-level run gets the video-level model.
    assert cfg.model == ("ChunkAttentionModel" if level == "frame"
                         else "VideoLevelMlpModel")
    assert (cfg.data.id_feature, cfg.data.num_classes) == ("id", 4)
    flag = "--frame_features" if level == "frame" else "--noframe_features"
    assert (f"{data}/train-00000-of-00002.tfrecord (--train_data_pattern) "
            f"holds {level}-level records") in caplog.text
    assert f"so it is read with {flag} (flags not given)" in caplog.text
    # An explicit flag wins (and training checks it against the records).
    other = _parse_train_flags(f"--train_data_pattern={data}/train-*",
                               "--frame_features=" + str(level != "frame"))
    assert other.data.frame_features == (level != "frame")
    # A pattern that matches nothing is left for training to name.
    assert _parse_train_flags(
        f"--train_data_pattern={tmp_path}/none*").data.frame_features


def test_train_takes_the_2017_schema_and_level_from_the_records(tmp_path):
    """train.py with no data flags on 2017 video-level records: the level,
    the id key and the vocabulary size all come from the records, and
    model_flags.json records them for eval.py and inference.py."""
    path, _ = _write_2017(tmp_path / "data")
    out = _run("train.py", f"--train_data_pattern={path}",
               f"--train_dir={tmp_path}/run", f"--feature_sizes={TINY}",
               "--max_steps=2", "--export_model_steps=2", "--batch_size=32",
               "--embedding_dim=4", "--hidden_units=16", "--subspace_dim=2",
               "--cca_input_dim=8")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (f"{path} (--train_data_pattern) holds YouTube-8M 2017 "
            "video-level records") in out.stderr
    assert ("read with --noframe_features --id_feature=video_id "
            "--num_classes=4716") in out.stderr
    flags = json.loads((tmp_path / "run" / "model_flags.json").read_text())
    assert flags["data"]["frame_features"] is False
    assert flags["data"]["id_feature"] == "video_id"
    assert flags["data"]["num_classes"] == 4716
    assert flags["model"] == "VideoLevelMlpModel"


def test_2017_shard_trains_and_evaluates(tmp_path):
    path, ids = _write_2017(tmp_path / "data", num_records=64)
    data = config_lib.DataConfig(frame_features=False,
                                 feature_sizes=TINY_FEATURE_SIZES,
                                 id_feature="video_id", num_classes=4716)
    cfg = config_lib.recipe(False).replace(
        data=data, train_data_pattern=path, train_dir=str(tmp_path / "run"),
        model_config={"embedding_dim": 4, "hidden_units": 16},
        subspace_dim=2, batch_size=32, max_steps=4, export_model_steps=4,
        seed=1)
    result = training.train(cfg)
    assert result.step == 4
    metrics = evaluation.evaluate_checkpoint(str(tmp_path / "run"), path,
                                             (1, 5))
    assert metrics["step"] == 4 and metrics["num_queries"] == len(ids)
    # The ids are the records' video_id values, read through the reader.
    config, model, subspace, _ = modeling.restore(str(tmp_path / "run"))
    from yt8m_xmodal import readers
    emb = evaluation.embed_dataset(
        model, readers.reader_for(config.data).batches(path, 16), subspace)
    assert sorted(emb.ids.tolist()) == sorted(ids)
    assert {tuple(l) for l in emb.labels} == {(4000,), (4715,)}
    # And the export serves them with the same ids.
    signatures = modeling.load_signatures(
        modeling.latest_export(str(tmp_path / "run")))
    out = inference.run_inference(signatures, path, embeddings_file=str(
        tmp_path / "e.npz"), data_config=config.data)
    assert out["num_queries"] == len(ids)
    assert sorted(np.load(tmp_path / "e.npz")["ids"].tolist()) == sorted(ids)


@pytest.mark.parametrize("frame_features", [True, False],
                         ids=["frame", "video"])
def test_readers_take_the_id_from_video_id(frame_features, tmp_path):
    path, ids = _write_2017(tmp_path, frame_features=frame_features)
    from yt8m_xmodal import readers
    data = config_lib.DataConfig(
        frame_features=frame_features, feature_sizes=TINY_FEATURE_SIZES,
        max_frames=12, id_feature="video_id", num_classes=4716)
    read = [b["id"].numpy() for b in
            readers.reader_for(data).batches(path, 16)]
    assert [i.decode() for i in np.concatenate(read)] == ids


# -- the subset tool -----------------------------------------------------------


def test_subset_takes_the_level_and_id_from_the_records(tmp_path):
    path, ids = _write_2017(tmp_path / "data", frame_features=True)
    manifest = subset.extract_subset(
        path, str(tmp_path / "out"), feature_sizes=TINY_FEATURE_SIZES,
        selection=subset.build_selection(label_indices="4715"),
        min_frames=1, num_shards=1, progress=None)
    assert manifest["level"] == "frame"
    assert manifest["kept"]["total"] == len(ids) // 2
    kept = formats.detect_format(str(tmp_path / "out" / "*.tfrecord"))
    assert kept.id_feature == "video_id"


def test_subset_refuses_2018_music_labels_on_2017_records(tmp_path,
                                                          shared_vocabulary):
    path, _ = _write_2017(tmp_path / "data")
    for selection in (subset.build_selection(),
                      subset.build_selection(label_names="Concert",
                                             vocabulary_file=shared_vocabulary)):
        with pytest.raises(DataError) as error:
            subset.extract_subset(path, str(tmp_path / "out"),
                                  feature_sizes=TINY_FEATURE_SIZES,
                                  selection=selection, progress=None)
        message = str(error.value)
        assert message.startswith(
            f"{path} holds YouTube-8M 2017 video-level records"), message
        assert "the 2017 vocabulary of 4716 classes" in message
        assert "give the 2017 vocabulary.csv (--vocabulary_file)" in message
        assert not os.path.exists(tmp_path / "out" / "manifest.json")


def _run_subset_cli(*argv):
    """The subset command's path, flags parsed as on the command line."""
    from absl import flags
    from yt8m_xmodal.cli import subset as subset_cli
    flag_values = flags.FlagValues()
    subset_cli.define_flags(flag_values)
    flag_values(["subset", *argv])
    return subset_cli.run_from_flags(flag_values, progress=None)


def test_subset_command_takes_the_level_from_the_records(tiny_video_data,
                                                         tmp_path):
    args = (f"--input_data_pattern={tiny_video_data}/train-*",
            f"--feature_sizes={TINY}", "--label_indices=1", "--num_shards=1")
    manifest = _run_subset_cli(*args, f"--output_dir={tmp_path}/out")
    assert manifest["level"] == "video" and manifest["kept"]["total"] > 0
    # With the level flag wrong, one line saying what to pass.
    with pytest.raises(DataError) as error:
        _run_subset_cli(*args, f"--output_dir={tmp_path}/out2",
                        "--frame_features")
    message = cli.flag_message(error.value)
    assert message == (
        f"cannot read {tiny_video_data}/train-00000-of-00002.tfrecord as "
        "frame-level YouTube-8M records (read with --feature_names=rgb,audio, "
        "--feature_sizes=16,8): its first record, id "
        f"{formats.detect_format(args[0].split('=')[1]).video_id!r}, holds "
        "video-level records (mean_rgb 16, mean_audio 8 floats); pass "
        "--noframe_features")
