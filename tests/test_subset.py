"""Tests of the subset tool (yt8m_xmodal/subset/) and its command,
`python -m yt8m_xmodal.cli.subset`, on shards where the answer is known."""

import collections
import csv
import glob
import hashlib
import json
import os
import re
import subprocess
import sys

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import cli
from yt8m_xmodal.cli import subset as subset_cli
from yt8m_xmodal import subset
from yt8m_xmodal import vocabulary
from yt8m_xmodal import writers
from yt8m_xmodal.errors import ConfigError, DataError

# Small views keep the synthetic shards tiny; they also exercise the flags.
FRAME_NAMES = ("rgb", "audio")
VIDEO_NAMES = ("mean_rgb", "mean_audio")
SIZES = (16, 8)
CONCERT, MUSIC_VIDEO, GAME = 3, 14, 0


def _frames(rng, num_frames, size):
    return rng.uniform(-1.5, 1.5, size=(num_frames, size))


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as w:
        for record in records:
            w.write(record)


def _read(path):
    return [r for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]


def _key(video_id):
    return int.from_bytes(hashlib.sha256(video_id).digest()[:8], "big")


def _expected_split(video_id, fractions_in_tenths):
    # Independent of subset.split_of: integer arithmetic on the SHA-256 prefix.
    train, validate, _ = fractions_in_tenths
    key10 = _key(video_id) * 10
    if key10 < train * 2**64:
        return "train"
    if key10 < (train + validate) * 2**64:
        return "validate"
    return "test"


def _record_id(record, frame_level=True):
    proto = (tf.train.SequenceExample.FromString(record).context if frame_level
             else tf.train.Example.FromString(record).features)
    return proto.feature["id"].bytes_list.value[0]


def _frame_records():
    """Frame-level records with a known fate: (id, serialized, fate)."""
    rng = np.random.default_rng(0)
    out = []

    def add(video_id, labels, video, audio, fate):
        out.append((video_id.encode(), writers.make_frame_example(
            video_id, labels, video, audio).SerializeToString(), fate))

    for i in range(40):
        labels = [CONCERT] if i % 2 else [MUSIC_VIDEO, GAME]
        add(f"m{i:03d}", labels, _frames(rng, 12, 16), _frames(rng, 12, 8), "kept")
    add("x001", [GAME], _frames(rng, 12, 16), _frames(rng, 12, 8), "not_selected")
    add("x002", [], _frames(rng, 12, 16), _frames(rng, 12, 8), "not_selected")
    add("s001", [CONCERT], _frames(rng, 5, 16), _frames(rng, 5, 8), "too_short")
    # Too short and silent: the earlier rule (too_short) counts it.
    add("s002", [CONCERT], _frames(rng, 4, 16), np.zeros((4, 8)), "too_short")
    add("q001", [CONCERT], _frames(rng, 12, 16),
        np.repeat(_frames(rng, 1, 8), 12, axis=0), "no_audio_signal")
    add("q002", [MUSIC_VIDEO], _frames(rng, 12, 16), np.zeros((0, 8)),
        "no_audio_signal")
    # Constant except for the last frame: real (if odd) audio, kept.
    nearly = np.repeat(_frames(rng, 1, 8), 12, axis=0)
    nearly[-1] = _frames(rng, 1, 8)[0]
    add("q003", [CONCERT], _frames(rng, 12, 16), nearly, "kept")
    add("c001", [CONCERT], _frames(rng, 12, 16), _frames(rng, 11, 8),
        "frame_count_mismatch")
    # Two good copies of d001: the one with the smaller SHA-256 is kept.
    add("d001", [CONCERT], _frames(rng, 12, 16), _frames(rng, 12, 8), "dup")
    add("d001", [CONCERT], _frames(rng, 12, 16), _frames(rng, 12, 8), "dup")
    # d002: a good copy and a too-short copy; the good one is kept.
    add("d002", [CONCERT], _frames(rng, 12, 16), _frames(rng, 12, 8), "kept")
    add("d002", [CONCERT], _frames(rng, 3, 16), _frames(rng, 3, 8), "too_short")
    dups = [r for r in out if r[2] == "dup"]
    smaller = min(dups, key=lambda r: hashlib.sha256(r[1]).digest())
    return [(i, rec, ("kept" if rec is smaller[1] else "duplicate_id")
             if fate == "dup" else fate) for i, rec, fate in out]


def _write_frame_shards(directory, records, num_files, prefix="in"):
    os.makedirs(directory, exist_ok=True)
    for f in range(num_files):
        _write(os.path.join(directory, f"{prefix}{f}.tfrecord"),
               [rec for _, rec, _ in records[f::num_files]])
    return os.path.join(directory, f"{prefix}*.tfrecord")


def _run_frame(pattern, output_dir, **kwargs):
    args = dict(frame_features=True, feature_names=FRAME_NAMES,
                feature_sizes=SIZES, min_frames=10, split_fractions="0.5,0.3,0.2",
                num_shards=3, progress=None)
    args.update(kwargs)
    return subset.extract_subset(pattern, str(output_dir), **args)


def _run_cli(*argv):
    """The command's path: flags parsed as on the command line."""
    flag_values = flags.FlagValues()
    subset_cli.define_flags(flag_values)
    flag_values(["subset", *argv])
    return subset_cli.run_from_flags(flag_values, progress=None)


def _cli_error(error_class, *argv):
    """The error the command raises, as `cli.run` prints it (flag names)."""
    with pytest.raises(error_class) as info:
        _run_cli(*argv)
    return cli.flag_message(info.value)


def _output_files(output_dir):
    return sorted(glob.glob(os.path.join(str(output_dir), "*")))


def test_frame_level_selection_drops_and_splits_exactly(tmp_path):
    records = _frame_records()
    pattern = _write_frame_shards(tmp_path / "in", records, num_files=3)
    manifest = _run_frame(pattern, tmp_path / "out")

    fates = collections.Counter(fate for _, _, fate in records)
    assert manifest["dropped"] == {
        "not_selected": 2, "too_short": 3, "no_audio_signal": 2,
        "frame_count_mismatch": 1, "duplicate_id": 1}
    assert {r: fates[r] for r in manifest["dropped"]} == manifest["dropped"]
    assert manifest["records_read"] == len(records) == 52

    kept = [(i, rec) for i, rec, fate in records if fate == "kept"]
    assert len(kept) == 43
    for split in subset.SPLITS:
        # Expected: the original bytes of this split's videos, sorted by key
        # and dealt round-robin to the 3 shards.
        expected = sorted((r for r in kept if _expected_split(r[0], (5, 3, 2)) == split),
                          key=lambda r: (_key(r[0]), r[0]))
        assert manifest["kept"][split] == len(expected)
        for s in range(3):
            path = tmp_path / "out" / f"{split}-{s:05d}-of-00003.tfrecord"
            assert _read(path) == [rec for _, rec in expected[s::3]]
            entry = manifest["shards"][split][s]
            assert entry["file"] == path.name
            assert entry["records"] == len(expected[s::3])
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert all(manifest["kept"][s] > 0 for s in subset.SPLITS)
    assert manifest["kept"]["total"] == 43

    # Per-label counts over kept videos (20 Concert + q003, d001, d002; 20
    # Music video).
    by_index = {l["index"]: l for l in manifest["labels"]}
    assert by_index[CONCERT]["videos"]["total"] == 23
    assert by_index[CONCERT]["name"] == "Concert"
    assert by_index[MUSIC_VIDEO]["videos"]["total"] == 20
    assert sum(by_index[CONCERT]["videos"][s] for s in subset.SPLITS) == 23
    assert by_index[4]["videos"]["total"] == 0  # Musician: none carries it
    assert len(manifest["input_files"]) == 3
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest


def test_split_of_matches_the_documented_rule():
    for i in range(200):
        video_id = f"v{i:04d}".encode()
        assert subset.split_of(video_id, (0.5, 0.3, 0.2)) == \
            _expected_split(video_id, (5, 3, 2))
    # The split fractions are honoured over many ids (binomial, 20k draws).
    splits = collections.Counter(subset.split_of(f"{i}") for i in range(20000))
    assert abs(splits["train"] / 20000 - 0.8) < 0.015
    assert abs(splits["test"] / 20000 - 0.1) < 0.01


def test_rules_as_pure_functions():
    assert subset.selected_labels([0, 14, 3], frozenset({3, 4, 14})) == [3, 14]
    assert subset.selected_labels([0], frozenset({3})) == []
    assert subset.frame_drop_reason(5, 5, False, min_frames=10) == "too_short"
    # The earlier rule wins: too short and silent is too_short.
    assert subset.frame_drop_reason(5, 0, True, min_frames=10) == "too_short"
    assert subset.frame_drop_reason(12, 0, False, 10) == "no_audio_signal"
    assert subset.frame_drop_reason(12, 12, True, 10) == "no_audio_signal"
    assert subset.frame_drop_reason(12, 11, False, 10) == "frame_count_mismatch"
    assert subset.frame_drop_reason(12, 12, False, 10) is None
    assert subset.video_drop_reason(False) == "bad_values"
    assert subset.video_drop_reason(True) is None
    # Audio hash 1 is shared by 3 distinct ids (11 twice), hash 2 by 2.
    pairs = [(1, 10), (1, 11), (2, 13), (1, 11), (1, 12), (2, 14)]
    assert subset.repeated_audio(pairs, 3) == {1: 3}
    assert subset.repeated_audio(pairs, 2) == {1: 3, 2: 2}
    assert subset.kept_copy([5, 3, 3, 9]) == 1
    record = b"serialized record"
    assert subset.record_digest(record) == _key(record)
    assert subset.id_key("v1") == subset.id_key(b"v1") == _key(b"v1")


def test_output_is_byte_identical_and_independent_of_input_files(tmp_path):
    records = _frame_records()
    _run_frame(_write_frame_shards(tmp_path / "a", records, 3), tmp_path / "out1")
    _run_frame(_write_frame_shards(tmp_path / "a", records, 3), tmp_path / "out2")
    # The same records, reversed and spread over 2 differently named files.
    other = _write_frame_shards(tmp_path / "b", records[::-1], 2, prefix="zz")
    _run_frame(other, tmp_path / "out3")
    files1, files2 = _output_files(tmp_path / "out1"), _output_files(tmp_path / "out2")
    files3 = _output_files(tmp_path / "out3")
    assert [os.path.basename(f) for f in files1] == \
        [os.path.basename(f) for f in files3]
    assert len(files1) == 3 * 3 + 1
    for f1, f2, f3 in zip(files1, files2, files3):
        with open(f1, "rb") as a, open(f2, "rb") as b, open(f3, "rb") as c:
            one, two, three = a.read(), b.read(), c.read()
        assert one == two
        if not f1.endswith("manifest.json"):  # it lists the input files
            assert one == three


def test_video_level_quality_rules(tmp_path):
    rng = np.random.default_rng(1)
    silent = rng.uniform(-1, 1, 8)
    pair_audio = rng.uniform(-1, 1, 8)
    shared = rng.uniform(-1, 1, 8)
    nan_video = rng.uniform(-1, 1, 16)
    nan_video[3] = np.nan

    def rec(video_id, labels, video=None, audio=None):
        video = rng.uniform(-1.9, 2.0, 16) if video is None else video
        audio = rng.uniform(-1.9, 2.0, 8) if audio is None else audio
        return writers.make_video_example(video_id, labels, video,
                                          audio).SerializeToString()

    good = [rec(f"g{i:02d}", [CONCERT]) for i in range(10)]
    w001 = rec("w001", [CONCERT], audio=shared)
    records = good + [
        rec("n001", [CONCERT], video=nan_video),
        rec("r001", [CONCERT], audio=np.full(8, 2.5)),
        rec("r002", [CONCERT], video=np.full(16, -np.inf)),
        # The ends of the dequantized range are valid values.
        rec("b001", [CONCERT], video=np.full(16, -1.9921875),
            audio=np.full(8, 2.0078125)),
        # One silent vector over 3 distinct ids (one not selected).
        rec("z001", [CONCERT], audio=silent),
        rec("z002", [MUSIC_VIDEO], audio=silent),
        rec("z003", [GAME], audio=silent),
        # Shared by only 2 ids: kept.
        rec("y001", [CONCERT], audio=pair_audio),
        rec("y002", [CONCERT], audio=pair_audio),
        # w001 twice (identical) and w002 with the same audio: 2 distinct ids.
        w001, w001, rec("w002", [CONCERT], audio=shared),
    ]
    _write(tmp_path / "v0.tfrecord", records[::2])
    _write(tmp_path / "v1.tfrecord", records[1::2])
    kwargs = dict(frame_features=False, feature_names=VIDEO_NAMES,
                  feature_sizes=SIZES, num_shards=2, progress=None)
    manifest = subset.extract_subset(str(tmp_path / "v*.tfrecord"),
                                     str(tmp_path / "out"), **kwargs)
    assert manifest["level"] == "video"
    assert manifest["dropped"] == {"not_selected": 1, "bad_values": 3,
                                   "no_audio_signal": 2, "duplicate_id": 1}
    silent_hash = hashlib.sha256(silent.astype(np.float32).tobytes()).hexdigest()
    assert manifest["repeated_audio_vectors"] == [
        {"sha256_prefix": silent_hash[:16], "videos": 3}]
    kept_ids = sorted(_record_id(r, frame_level=False)
                      for f in glob.glob(str(tmp_path / "out" / "*.tfrecord"))
                      for r in _read(f))
    assert kept_ids == sorted([f"g{i:02d}".encode() for i in range(10)]
                              + [b"b001", b"y001", b"y002", b"w001", b"w002"])

    # With a threshold of 4 the silent vector (3 ids) is no longer dropped.
    manifest = subset.extract_subset(str(tmp_path / "v*.tfrecord"),
                                     str(tmp_path / "out4"),
                                     repeated_audio_min_videos=4, **kwargs)
    assert manifest["dropped"]["no_audio_signal"] == 0
    assert manifest["kept"]["total"] == 17


def _write_vocabulary(path, columns=vocabulary.REQUIRED_COLUMNS):
    rows = [(0, "Game", "Games"), (3, "Concert", "Arts & Entertainment"),
            (14, "Music video", "Arts & Entertainment"),
            (20, "Nike, Inc.", "Shopping")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for index, name, vertical in rows:
            w.writerow([index, name, vertical, "", ""][:len(columns)])
    return str(path)


def test_label_selection_flags(tmp_path):
    vocab = _write_vocabulary(tmp_path / "vocabulary.csv")
    default = subset.build_selection()
    assert default.indices == vocabulary.MUSIC_LABEL_INDICES
    assert len(default.indices) == 17

    by_name = subset.build_selection(label_names="Game,Nike, Inc.",
                                     vocabulary_file=vocab)
    assert by_name.indices == (0, 20)
    assert by_name.names == {0: "Game", 20: "Nike, Inc."}
    by_vertical = subset.build_selection(verticals="Arts & Entertainment",
                                         vocabulary_file=vocab)
    assert by_vertical.indices == (3, 14)
    union = subset.build_selection(label_indices="20,0", verticals="Games",
                                   vocabulary_file=vocab)
    assert union.indices == (0, 20)
    assert "label_indices=20,0; verticals=Games" in union.rule

    # Selecting GAME only keeps x001 and the 20 m-videos that carry it.
    records = _frame_records()
    manifest = _run_frame(_write_frame_shards(tmp_path / "in", records, 2),
                          tmp_path / "out", selection=subset.build_selection(
                              label_indices=[GAME]))
    assert manifest["kept"]["total"] == 21
    assert manifest["labels"] == [{"index": 0, "name": None, "videos": {
        **{s: manifest["kept"][s] for s in subset.SPLITS}, "total": 21}}]


def test_bad_label_arguments_and_vocabulary(tmp_path):
    vocab = _write_vocabulary(tmp_path / "vocabulary.csv")
    # The library names its arguments...
    with pytest.raises(ConfigError, match=r"^label_names=Game,Concertt: "
                                          r"'Concertt' is not a label name"):
        subset.build_selection(label_names="Game,Concertt", vocabulary_file=vocab)
    with pytest.raises(ConfigError, match="did you mean 'Concert'"):
        subset.build_selection(label_names="concert", vocabulary_file=vocab)
    with pytest.raises(ConfigError, match=r"^label_names=Concert cannot be "
                                          "looked up without a vocabulary: "
                                          "vocabulary_file;"):
        subset.build_selection(label_names="Concert")
    with pytest.raises(ConfigError, match=r"^verticals=Music: 'Music'"):
        subset.build_selection(verticals="Music", vocabulary_file=vocab)
    with pytest.raises(ConfigError, match=r"^label_indices=x3: 'x3'"):
        subset.build_selection(label_indices="x3")
    with pytest.raises(ConfigError, match=r"^label_indices=7: 7 is not a "
                                          "class index"):
        subset.build_selection(label_indices="7", vocabulary_file=vocab)
    bad = _write_vocabulary(tmp_path / "bad.csv", ("Index", "Label", "Vertical1"))
    with pytest.raises(DataError, match=r"bad\.csv lacks the column\(s\) Name, "
                                        r"Vertical2, Vertical3"):
        subset.build_selection(label_indices="3", vocabulary_file=bad)
    # The built-in music labels against a vocabulary that disagrees.
    with pytest.raises(DataError, match="names index 4 None.*'Musician'"):
        subset.build_selection(vocabulary_file=vocab)
    for fractions in ("0.8,0.1", "0.8,0.3,0.1", "a,b,c", "1.2,-0.1,-0.1"):
        with pytest.raises(ConfigError, match=f"^split_fractions={fractions}"):
            subset.parse_split_fractions(fractions)


@pytest.mark.parametrize("argv, message", [
    (["--label_names=Game,Concertt", "--vocabulary_file={vocab}"],
     r"^--label_names=Game,Concertt: 'Concertt' is not a label name"),
    (["--label_names=concert", "--vocabulary_file={vocab}"],
     "did you mean 'Concert'"),
    (["--verticals=Music", "--vocabulary_file={vocab}"],
     r"^--verticals=Music: 'Music' is not a vertical"),
    (["--label_indices=7", "--vocabulary_file={vocab}"],
     r"^--label_indices=7: 7 is not a class index"),
    (["--label_names=Concert"],
     r"^--label_names=Concert cannot be looked up without a vocabulary: "
     "--vocabulary_file;"),
    (["--split_fractions=0.8,0.3,0.1"],
     r"^--split_fractions=0.8,0.3,0.1 must sum to 1"),
    (["--num_shards=0"], r"^--num_shards=0 must be at least 1"),
    (["--min_frames=0"], r"^--min_frames=0 must be at least 1"),
    (["--repeated_audio_min_videos=1"],
     r"^--repeated_audio_min_videos=1 must be at least 2"),
])
def test_command_line_errors_name_the_flags(tmp_path, argv, message):
    vocab = _write_vocabulary(tmp_path / "vocabulary.csv")
    text = _cli_error(ConfigError,
                      f"--input_data_pattern={tmp_path}/*.tfrecord",
                      f"--output_dir={tmp_path / 'out'}",
                      *[a.format(vocab=vocab) for a in argv])
    assert re.search(message, text), text


def test_command_line_requires_pattern_and_output(tmp_path):
    assert _cli_error(ConfigError, f"--input_data_pattern={tmp_path}/*.tfrecord"
                      ) == "--output_dir is required"
    assert _cli_error(ConfigError, f"--output_dir={tmp_path}"
                      ) == "--input_data_pattern is required"


def test_bad_inputs(tmp_path):
    records = _frame_records()
    pattern = _write_frame_shards(tmp_path / "in", records, 2)
    with pytest.raises(DataError, match=r"^input_data_pattern=.*nothing\*"
                                        r"\.tfrecord: .* matches no files"):
        _run_frame(str(tmp_path / "nothing*.tfrecord"), tmp_path / "out")
    # Frames whose byte length contradicts feature_sizes.
    with pytest.raises(DataError, match=r"in0\.tfrecord .*feature_sizes=16,4"
                                        r".*id 'm000', holds frame-level "
                                        r"records \(rgb 16, audio 8 bytes per "
                                        r"frame\); pass --feature_sizes=16,8$"):
        _run_frame(pattern, tmp_path / "out", feature_sizes=(16, 4))
    # Frame-level input read as video level.
    with pytest.raises(DataError, match=r"cannot read .*in0\.tfrecord as "
                                        "video-level"):
        _run_frame(pattern, tmp_path / "out", frame_features=False,
                   feature_names=VIDEO_NAMES)
    manifest = _run_frame(pattern, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"^output_dir=.*out already holds "
                                          "a subset .*; set overwrite=true"):
        _run_frame(pattern, tmp_path / "out")
    assert _run_frame(pattern, tmp_path / "out", overwrite=True) == manifest

    # The command line names the flags.
    flags_of_run = ["--feature_sizes=16,8", "--min_frames=10",
                    f"--output_dir={tmp_path / 'out'}"]
    text = _cli_error(DataError, "--input_data_pattern="
                      f"{tmp_path / 'nothing*.tfrecord'}", *flags_of_run)
    assert re.search(r"^--input_data_pattern=.*nothing\*\.tfrecord: .* "
                     "matches no files", text), text
    text = _cli_error(DataError, f"--input_data_pattern={pattern}",
                      "--feature_sizes=16,4",
                      f"--output_dir={tmp_path / 'out2'}")
    assert re.search(r"in0\.tfrecord .*--feature_sizes=16,4.*id 'm000', "
                     "holds .*; pass --feature_sizes=16,8$", text), text
    text = _cli_error(ConfigError, f"--input_data_pattern={pattern}",
                      *flags_of_run)
    assert re.search(r"^--output_dir=.*out already holds a subset .*; set "
                     "--overwrite=true", text), text


def test_corrupt_shard_with_and_without_skip_corrupt(tmp_path):
    records = _frame_records()
    pattern = _write_frame_shards(tmp_path / "in", records, 2)
    good = _run_frame(str(tmp_path / "in" / "in0.tfrecord"), tmp_path / "good")
    # in1 with a flipped byte in the middle (CRC failure), in2 not a TFRecord.
    data = bytearray((tmp_path / "in" / "in1.tfrecord").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "in" / "in1.tfrecord").write_bytes(bytes(data))
    (tmp_path / "in" / "in2.tfrecord").write_bytes(b"not a tfrecord at all")
    with pytest.raises(DataError, match=r"cannot read .*in1\.tfrecord.*"
                                        "; set skip_corrupt=true to skip"):
        _run_frame(pattern, tmp_path / "out")
    manifest = _run_frame(pattern, tmp_path / "out", skip_corrupt=True)
    assert [s["file"] for s in manifest["skipped_files"]] == [
        str(tmp_path / "in" / "in1.tfrecord"), str(tmp_path / "in" / "in2.tfrecord")]
    assert all(s["error"] for s in manifest["skipped_files"])
    # Nothing of the skipped files is kept: the result equals in0 alone.
    assert manifest["kept"] == good["kept"]
    assert manifest["dropped"] == good["dropped"]
    for split in subset.SPLITS:
        assert [s["sha256"] for s in manifest["shards"][split]] == \
            [s["sha256"] for s in good["shards"][split]]
    with pytest.raises(DataError, match="no input file .* could be read"):
        _run_frame(str(tmp_path / "in" / "in[12].tfrecord"), tmp_path / "none",
                   skip_corrupt=True)


def test_flags_run_the_tool(tmp_path):
    pattern = _write_frame_shards(tmp_path / "in", _frame_records(), 2)
    # --frame_features is the default, as for train, eval and inference.
    manifest = _run_cli(f"--input_data_pattern={pattern}",
                        f"--output_dir={tmp_path / 'out'}",
                        "--feature_names=rgb,audio", "--feature_sizes=16,8",
                        "--label_indices=3", "--min_frames=10",
                        "--num_shards=2", "--split_fractions=0.5,0.3,0.2")
    assert manifest["level"] == "frame"
    assert manifest["tool"] == "python -m yt8m_xmodal.cli.subset"
    # Concert: 20 m-videos, q003, d001, d002.
    assert manifest["kept"]["total"] == 23
    assert manifest["num_shards"] == 2
    assert len(glob.glob(str(tmp_path / "out" / "*.tfrecord"))) == 6
    # The same frame-level shards read with --noframe_features are an error.
    with pytest.raises(DataError, match="as video-level"):
        _run_cli(f"--input_data_pattern={pattern}",
                 f"--output_dir={tmp_path / 'out2'}", "--noframe_features",
                 "--feature_sizes=16,8")


def test_command_line_reports_bad_pattern_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "yt8m_xmodal.cli.subset",
         f"--input_data_pattern={tmp_path}/missing*.tfrecord",
         f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: --input_data_pattern=" in result.stderr
    assert "matches no files" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------
# Real YT8M video-level shards (skipped when $YT8M_DATA_DIR is absent).

REAL_SHARDS = 10
# Derived with (independent of the tool: protobuf parsing in plain Python):
#   python -c "import glob,collections,tensorflow as tf
#   fs=sorted(glob.glob('../shared/yt8m/video/validate*.tfrecord'))[:10]
#   rs=[tf.train.Example.FromString(r).features.feature for f in fs
#       for r in tf.compat.v1.io.tf_record_iterator(f)]
#   m={3,4,8,9,10,13,14,28,31,33,34,37,38,41,54,61,97}
#   c=collections.Counter(tuple(r['mean_audio'].float_list.value) for r in rs)
#   print(len(rs), sum(bool(m&set(r['labels'].int64_list.value)) for r in rs),
#         max(c.values()))"
#   -> 2950 723 37
REAL_RECORDS, REAL_MUSIC, REAL_REPEATED_AUDIO = 2950, 723, 37


def _real_records(shared_video_dir):
    files = sorted(glob.glob(str(shared_video_dir / "validate*.tfrecord")))
    records = []
    for path in files[:REAL_SHARDS]:
        for raw in _read(path):
            feature = tf.train.Example.FromString(raw).features.feature
            records.append((feature["id"].bytes_list.value[0],
                            set(feature["labels"].int64_list.value),
                            tuple(feature["mean_audio"].float_list.value), raw))
    return files[:REAL_SHARDS], records


def test_real_shards_music_count_and_silent_audio(tmp_path, shared_video_dir,
                                                  shared_vocabulary):
    files, records = _real_records(shared_video_dir)
    music = set(vocabulary.MUSIC_LABEL_INDICES)
    audio_counts = collections.Counter(audio for _, _, audio, _ in records)
    repeated = {a for a, n in audio_counts.items() if n >= 3}
    assert len(records) == REAL_RECORDS
    assert sum(1 for _, labels, _, _ in records if labels & music) == REAL_MUSIC
    assert sum(1 for *_, a, _ in records if a in repeated) == REAL_REPEATED_AUDIO

    pattern = ",".join(files)
    manifest = subset.extract_subset(
        pattern, str(tmp_path / "music"), frame_features=False, progress=None,
        selection=subset.build_selection(vocabulary_file=str(shared_vocabulary)))
    music_ids = {i for i, labels, audio, _ in records
                 if labels & music and audio not in repeated}
    assert manifest["records_read"] == REAL_RECORDS
    assert manifest["dropped"]["not_selected"] == REAL_RECORDS - REAL_MUSIC
    assert manifest["kept"]["total"] + manifest["dropped"]["no_audio_signal"] \
        == REAL_MUSIC
    assert manifest["labels"][0] | {"videos": None} == {
        "index": 3, "name": "Concert", "videos": None}
    out = glob.glob(str(tmp_path / "music" / "*.tfrecord"))
    assert {_record_id(r, frame_level=False) for f in out for r in _read(f)} \
        == music_ids

    # Every labelled video selected: exactly the repeated-audio records go.
    everything = subset.build_selection(label_indices=range(3862))
    manifest = subset.extract_subset(pattern, str(tmp_path / "all"),
                                     frame_features=False,
                                     selection=everything, progress=None)
    assert manifest["dropped"] == {"not_selected": 0, "bad_values": 0,
                                   "no_audio_signal": REAL_REPEATED_AUDIO,
                                   "duplicate_id": 0}
    kept = {r for f in glob.glob(str(tmp_path / "all" / "*.tfrecord"))
            for r in _read(f)}
    # Output records are the input bytes, unchanged.
    assert kept == {raw for *_, audio, raw in records if audio not in repeated}


def test_builtin_music_labels_match_the_official_vocabulary(shared_vocabulary):
    with open(shared_vocabulary, newline="") as f:
        rows = {int(r["Index"]): r for r in csv.DictReader(f)}
    for index, name in vocabulary.MUSIC_LABELS:
        assert rows[index]["Name"] == name
    arts = subset.build_selection(verticals="Arts & Entertainment",
                                  vocabulary_file=str(shared_vocabulary))
    assert arts.indices == tuple(sorted(
        i for i, r in rows.items()
        if "Arts & Entertainment" in (r["Vertical1"], r["Vertical2"], r["Vertical3"])))
    assert set(vocabulary.MUSIC_LABEL_INDICES) <= set(arts.indices)
    nike = subset.build_selection(label_names="Nike, Inc.,Concert",
                                  vocabulary_file=str(shared_vocabulary))
    assert len(nike.indices) == 2 and 3 in nike.indices
