"""What a YouTube-8M record file holds, read from its first record, and
whether a `config.DataConfig` can read it.

Records read with the wrong flags fail deep inside the batch parse, with text
about tensor shapes rather than about the data. Users come from the starter
code (whose `--frame_features` is off by default, where it is on here) and
from either release:

    2018  id        3,862 classes  (the default)
    2017  video_id  4,716 classes  (--id_feature=video_id --num_classes=4716)

More: docs/design.md, "Format detection".
"""

import dataclasses
import logging

from google.protobuf import message
import tensorflow as tf

from yt8m_xmodal import features
from yt8m_xmodal import readers
from yt8m_xmodal import tfrecord
from yt8m_xmodal.errors import DataError

log = logging.getLogger("yt8m_xmodal")

# The context feature holding the video id in each release.
ID_FEATURE = "id"
ID_FEATURE_2017 = "video_id"
ID_FEATURES = (ID_FEATURE, ID_FEATURE_2017)
# The 2017 vocabulary (its vocabulary.csv is not the 2018 one).
NUM_CLASSES_2017 = 4716
_LABELS = "labels"


@dataclasses.dataclass(frozen=True)
class RecordFormat:
    """What the first record of a file holds.

    Attributes:
      path: the file.
      frame_features: True for a frame-level SequenceExample, False for a
        video-level Example.
      feature_sizes: {name: size} of the feature lists (bytes of the first
        frame; None for an empty list) or float features (floats), video
        view first (names holding "audio" last).
      id_feature: the context key holding the id ("id", "video_id"), or None.
      video_id: the id of the record ("" without one).
      labels: the record's labels.
    """

    path: str
    frame_features: bool
    feature_sizes: dict
    id_feature: str
    video_id: str
    labels: tuple

    @property
    def feature_names(self):
        return tuple(self.feature_sizes)

    @property
    def release_2017(self):
        return self.id_feature == ID_FEATURE_2017

    @property
    def level(self):
        return _level(self.frame_features)

    def describe(self):
        """E.g. 'video-level records (mean_rgb 1024, mean_audio 128 floats)'."""
        release = "YouTube-8M 2017 " if self.release_2017 else ""
        unit = "bytes per frame" if self.frame_features else "floats"
        sizes = ", ".join(
            f"{name} {'no frames' if size is None else size}"
            for name, size in self.feature_sizes.items())
        extra = ""
        if self.release_2017:
            extra = f"; ids in {ID_FEATURE_2017!r}"
        if self.labels and max(self.labels) >= features.NUM_CLASSES:
            extra += f"; labels up to {max(self.labels)}"
        return f"{release}{self.level} records ({sizes} {unit}{extra})"


def _level(frame_features):
    return "frame-level" if frame_features else "video-level"


def _video_first(names):
    """The video view first: names holding "audio" go last."""
    return sorted(names, key=lambda n: ("audio" in n, names.index(n)))


def format_of(path, serialized):
    """The `RecordFormat` of one serialized record of `path`, or None when it
    is not a YT8M record (not a protobuf, or no feature at all)."""
    try:
        # An Example parses as a SequenceExample with only a context.
        record = tf.train.SequenceExample.FromString(serialized)
    except message.DecodeError:
        return None
    context = record.context.feature
    lists = record.feature_lists.feature_list
    id_feature = next((k for k in ID_FEATURES if k in context), None)
    video_id = ""
    if id_feature and context[id_feature].bytes_list.value:
        video_id = context[id_feature].bytes_list.value[0].decode(
            errors="replace")
    labels = tuple(context[_LABELS].int64_list.value) if (
        _LABELS in context) else ()
    if len(lists):
        names = _video_first(list(lists))
        sizes = {n: (len(lists[n].feature[0].bytes_list.value[0])
                     if lists[n].feature and lists[n].feature[0].bytes_list.value
                     else None) for n in names}
        frame_features = True
    else:
        names = _video_first([k for k, v in context.items()
                              if v.WhichOneof("kind") == "float_list"])
        if not names:
            return None
        sizes = {n: len(context[n].float_list.value) for n in names}
        frame_features = False
    return RecordFormat(path, frame_features, sizes, id_feature, video_id,
                        labels)


def detect_format(data_pattern):
    """The `RecordFormat` of the first record of `data_pattern`, or None.

    Empty files are passed over. None when no file has a record, or the
    first record cannot be read or parsed (the reader then reports it with
    its file and index).

    Raises:
      DataError: naming the glob, when a glob matches no file.
    """
    for path in readers.resolve_files(data_pattern):
        try:
            first = _first_record(path)
        except (tf.errors.OpError, OSError, DataError):
            return None
        if first is not None:
            return format_of(path, first)
    return None


def _first_record(path):
    """The first record's bytes (None for an empty file), read through the
    TFRecord framing with plain file reads: no TensorFlow op runs, so a
    multi-worker strategy can still be created after this (TF refuses to set
    up collective ops once its runtime has started)."""
    size = tf.io.gfile.stat(path).length
    with tf.io.gfile.GFile(path, "rb") as f:
        for _, data in tfrecord.iter_records(f, path, size):
            return data
    return None


def describe_config(data):
    """The records a `DataConfig` reads, in `RecordFormat.describe`'s words."""
    unit = "bytes per frame" if data.frame_features else "floats"
    sizes = ", ".join(f"{n} {s}" for n, s in
                      zip(data.feature_names, data.feature_sizes))
    extra = ""
    if data.id_feature != ID_FEATURE:
        extra += f"; ids in {data.id_feature!r}"
    if data.num_classes != features.NUM_CLASSES:
        extra += f"; {data.num_classes} classes"
    return f"{_level(data.frame_features)} records ({sizes} {unit}{extra})"


def flag_text(name, value):
    """How a data field's value is passed as a flag: --noframe_features,
    --feature_sizes=1024,128."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (tuple, list)):
        value = ",".join(str(v) for v in value)
    return f"--{name}={value}"


def reading_flags(data, fmt):
    """The data flags to change so that `data` reads records like `fmt`.

    Returns:
      (flags, problem): a list of flag strings (empty when `data` reads
      `fmt`), and why the records cannot be read even so (a record without
      one of the two views), or None.
    """
    changes = {}
    if fmt.frame_features != data.frame_features:
        changes["frame_features"] = fmt.frame_features
    record_names = fmt.feature_names
    if len(record_names) < 2:
        wanted = (data.feature_names if not changes
                  else features.default_feature_names(fmt.frame_features))
        missing = [n for n in wanted if n not in fmt.feature_sizes]
        kind = "feature list" if fmt.frame_features else "feature"
        what = (f"{kind} {missing[0]!r}" if missing
                else f"a second {kind}")
        return [], (f"its first record (id {fmt.video_id!r}) has no {what}; "
                    "every record needs a video and an audio view")
    if all(n in fmt.feature_sizes for n in data.feature_names):
        names = data.feature_names
    else:
        # Names left at their level's defaults follow the level, so only
        # names the records do not have by default need the flag.
        defaults = features.default_feature_names(fmt.frame_features)
        names_defaulted = tuple(data.feature_names) == (
            features.default_feature_names(data.frame_features))
        if ("frame_features" in changes and names_defaulted
                and all(n in fmt.feature_sizes for n in defaults)):
            names = defaults
        else:
            names = tuple(record_names[:2])
            changes["feature_names"] = names
    sizes = tuple(fmt.feature_sizes.get(n) for n in names)
    if None not in sizes and sizes != tuple(data.feature_sizes):
        changes["feature_sizes"] = sizes
    if fmt.id_feature and fmt.id_feature != data.id_feature:
        changes["id_feature"] = fmt.id_feature
    num_classes = data.num_classes
    if fmt.release_2017 and num_classes < NUM_CLASSES_2017:
        num_classes = NUM_CLASSES_2017
    if fmt.labels and max(fmt.labels) >= num_classes:
        num_classes = (features.NUM_CLASSES
                       if max(fmt.labels) < features.NUM_CLASSES
                       else NUM_CLASSES_2017
                       if max(fmt.labels) < NUM_CLASSES_2017
                       else max(fmt.labels) + 1)
    if num_classes != data.num_classes:
        changes["num_classes"] = num_classes
    return [flag_text(k, v) for k, v in changes.items()], None


def check_format(data, fmt, model_dir=None, field=None, skip_corrupt=False):
    """Raises `DataError` unless `data` (a `DataConfig`) reads `fmt`'s records.

    Args:
      data: the `DataConfig` the records will be read with.
      fmt: a `RecordFormat` (None: nothing to check).
      model_dir: the trained model's directory, when `data` comes from it
        (evaluation, inference): the error then says what the model was
        trained on rather than which flags to pass.
      field: the config field or argument naming the pattern, for the
        message (e.g. "validate_data_pattern").
      skip_corrupt: the reader skips bad records, so a first record whose
        features or labels are off may be one of them: that is logged, and
        only a level or id key the config does not read (never one bad
        record) raises.

    Raises:
      DataError: one line naming the file, what it holds and the flags that
        would read it.
    """
    if fmt is None:
        return
    flags, problem = reading_flags(data, fmt)
    if not flags and not problem:
        return
    where = f"{fmt.path} ({field})" if field else fmt.path
    if skip_corrupt and not any(
            f.startswith(("--frame_features", "--noframe_features",
                          "--id_feature")) for f in flags):
        log.warning("%s: the first record holds %s (%s); reading on, as bad "
                    "records are skipped", where, fmt.describe(),
                    problem or "pass " + " ".join(flags))
        return
    if problem:
        raise DataError(f"{where} holds {fmt.describe()}: {problem}")
    if model_dir is not None:
        raise DataError(
            f"{where} holds {fmt.describe()}, but the model in {model_dir} "
            f"was trained on {describe_config(data)}; give it records like "
            "those, or train a model on these (train.py "
            f"{' '.join(flags)})")
    raise DataError(f"{where} holds {fmt.describe()}; pass {' '.join(flags)}")


def check_records(data, data_pattern, model_dir=None, field=None,
                  skip_corrupt=False):
    """`check_format(data, detect_format(data_pattern), ...)`; returns the
    detected `RecordFormat` (or None)."""
    fmt = detect_format(data_pattern)
    check_format(data, fmt, model_dir=model_dir, field=field,
                 skip_corrupt=skip_corrupt)
    return fmt


def detected_data_values(fmt):
    """The data fields the records decide: the level and, for the 2017
    release, the id key and its vocabulary size."""
    values = {"frame_features": fmt.frame_features}
    if fmt.release_2017:
        values["id_feature"] = ID_FEATURE_2017
        values["num_classes"] = NUM_CLASSES_2017
    return values
