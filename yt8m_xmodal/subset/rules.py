"""The subset's rules, as pure functions of plain values.

Which labels select a video (`build_selection`), why a selected record is
dropped (`frame_drop_reason`, `video_drop_reason`, `repeated_audio`), which
copy of an id is kept (`kept_copy`, `resolve_copies`) and which split an id
goes to (`split_of`). Both the tool (`tool.py`) and the Beam pipeline
(`yt8m_xmodal.pipelines.subset`) call these, so the two cut the same subset.
The rules in full: docs/design.md, "Music subset".
"""

import dataclasses
import fractions
import functools
import hashlib

import numpy as np

from yt8m_xmodal import features
from yt8m_xmodal import vocabulary
from yt8m_xmodal.errors import ConfigError, DataError

SPLITS = ("train", "validate", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
# YT8M videos are 120-500 s long (YouTube-8M paper, Abu-El-Haija et al.
# 2016, section 3); fewer than 10 one-second frames means a broken record and
# too little time for any audio-video correlation over time.
DEFAULT_MIN_FRAMES = 10
# Two different videos with bit-identical mean audio are re-uploads at most;
# three or more sharing one vector is the silent/missing-track vector.
DEFAULT_REPEATED_AUDIO_MIN_VIDEOS = 3

# Range of dequantized 8-bit codes (features.py): byte 0 and byte 255.
FEATURE_MIN = features.DEQUANTIZE_BIAS
FEATURE_MAX = 255 * features.DEQUANTIZE_SCALAR + features.DEQUANTIZE_BIAS
# Means over frames are computed in float32 and may round past the ends.
RANGE_TOLERANCE = 1e-3

FRAME_DROP_REASONS = ("not_selected", "too_short", "no_audio_signal",
                      "frame_count_mismatch", "duplicate_id")
VIDEO_DROP_REASONS = ("not_selected", "bad_values", "no_audio_signal",
                      "duplicate_id")

# Ids and records are keyed by the first 8 bytes of their SHA-256.
HASH_BYTES = 8


# ----------------------------------------------------------------------------
# Selection


@dataclasses.dataclass(frozen=True)
class LabelSelection:
    """Which labels make a video selected.

    Attributes:
      indices: sorted tuple of class indices; a video is selected if it
        carries at least one of them.
      names: dict index -> name (empty without a vocabulary).
      rule: the exact rule in words, written to the manifest.
      vocabulary_file: the vocabulary the labels were looked up in ("" for
        none).
      vocabulary_size: its number of classes (0 without one).
      builtin: the built-in music labels, 2018 vocabulary indices.
    """
    indices: tuple
    names: dict
    rule: str
    vocabulary_file: str = ""
    vocabulary_size: int = 0
    builtin: bool = False


def _split_names(text, known_names):
    """Splits a comma list of label names that may themselves hold commas.

    Some vocabulary names contain commas ("Nike, Inc."), so at each position
    the longest run of comma-separated pieces that is a known name wins.
    """
    pieces = text.split(",")
    names, i = [], 0
    while i < len(pieces):
        if not pieces[i].strip():
            i += 1
            continue
        for j in range(len(pieces), i, -1):
            candidate = ",".join(pieces[i:j]).strip()
            if candidate in known_names:
                names.append(candidate)
                i = j
                break
        else:
            names.append(pieces[i].strip())
            i += 1
    return names


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def build_selection(label_names=None, label_indices=None, verticals=None,
                    vocabulary_file=None):
    """Builds the label selection from the tool's label arguments.

    Args:
      label_names: comma string or list of vocabulary names.
      label_indices: comma string or list of class indices.
      verticals: comma string or list of verticals (Vertical1-3).
      vocabulary_file: path of the official vocabulary.csv; needed for
        `label_names` and `verticals`, optional otherwise (adds names).

    Returns:
      A `LabelSelection`: the union of what the three arguments name, or the
      built-in `vocabulary.MUSIC_LABELS` when all three are empty.

    Raises:
      ConfigError: naming the argument, for an unknown name, vertical or
        index, or names without `vocabulary_file`.
      DataError: naming the file, for a vocabulary with the wrong columns, or
        one that disagrees with the built-in music labels.
    """
    labels = vocabulary.read_vocabulary(vocabulary_file) if vocabulary_file else None
    by_index = {l.index: l for l in labels} if labels else {}
    by_name = {l.name: l for l in labels if l.name} if labels else {}

    if isinstance(label_names, str):
        label_names = _split_names(label_names, by_name)
    else:
        label_names = _as_list(label_names)
    verticals = _as_list(verticals)
    index_texts = _as_list(label_indices)

    if (label_names or verticals) and labels is None:
        field, value = (("label_names", label_names) if label_names
                        else ("verticals", verticals))
        raise ConfigError(
            f"{{{field}}} cannot be looked up without a vocabulary: "
            "{vocabulary_file}; give the official YouTube-8M vocabulary.csv",
            **{field: ",".join(value)}, vocabulary_file="")

    if not (label_names or verticals or index_texts):
        if labels is not None:
            for index, name in vocabulary.MUSIC_LABELS:
                if by_index.get(index) is None or by_index[index].name != name:
                    found = by_index[index].name if index in by_index else None
                    raise DataError(
                        f"vocabulary file {vocabulary_file} names index {index} "
                        f"{found!r}, but the built-in music label {index} is "
                        f"{name!r} (2018 vocabulary); select labels explicitly "
                        "by index or name")
        names = dict(vocabulary.MUSIC_LABELS)
        rule = ("a video is kept if its labels include at least one of the 17 "
                "built-in music labels (vocabulary.MUSIC_LABELS, 2018 "
                "vocabulary): " + ", ".join(
                    f"{i} {n}" for i, n in vocabulary.MUSIC_LABELS))
        return LabelSelection(vocabulary.MUSIC_LABEL_INDICES, names, rule,
                              str(vocabulary_file or ""),
                              len(labels) if labels else 0, builtin=True)

    selected, parts = set(), []
    if index_texts:
        indices = []
        for text in index_texts:
            try:
                index = int(text)
            except ValueError:
                raise ConfigError(
                    f"{{label_indices}}: {text!r} is not an "
                    "integer class index",
                    label_indices=",".join(index_texts)) from None
            if index < 0 or (labels is not None and index not in by_index):
                raise ConfigError(
                    f"{{label_indices}}: {index} is not a class index"
                    + (f" of {vocabulary_file}" if labels is not None
                       else ""), label_indices=",".join(index_texts))
            indices.append(index)
        selected.update(indices)
        parts.append("label_indices=" + ",".join(str(i) for i in indices))
    if label_names:
        for name in label_names:
            if name not in by_name:
                lowered = {n.lower(): n for n in by_name}
                hint = lowered.get(name.lower())
                raise ConfigError(
                    f"{{label_names}}: {name!r} is not a label "
                    f"name in {vocabulary_file}"
                    + (f"; did you mean {hint!r}?" if hint
                       else ""), label_names=",".join(label_names))
            selected.add(by_name[name].index)
        parts.append("label_names=" + ",".join(label_names))
    if verticals:
        for vertical in verticals:
            matched = [l.index for l in labels if vertical in l.verticals]
            if not matched:
                known = sorted({v for l in labels for v in l.verticals})
                raise ConfigError(
                    f"{{verticals}}: {vertical!r} is not a "
                    f"vertical in {vocabulary_file} (Vertical1-3); "
                    f"known: {known}", verticals=",".join(verticals))
            selected.update(matched)
        parts.append("verticals=" + ",".join(verticals) +
                     " (labels whose Vertical1, Vertical2 or Vertical3 matches)")
    indices = tuple(sorted(selected))
    names = {i: by_index[i].name for i in indices if i in by_index}
    rule = (f"a video is kept if its labels include at least one of the "
            f"{len(indices)} labels named by " + "; ".join(parts) +
            " (their union)")
    return LabelSelection(indices, names, rule, str(vocabulary_file or ""),
                          len(labels) if labels else 0)


def parse_split_fractions(text):
    """Parses `split_fractions` (a "0.8,0.1,0.1" string or three numbers)
    into three exact `fractions.Fraction`s, each number taken as a decimal.

    Raises:
      ConfigError: unless there are three non-negative numbers summing to 1.
    """
    parts = _as_list(text) if isinstance(text, str) else [str(t) for t in text]
    shown = ",".join(parts)
    try:
        values = tuple(fractions.Fraction(p) for p in parts)
    except (ValueError, ZeroDivisionError):
        raise ConfigError("{split_fractions} must be three numbers for "
                          "train,validate,test, e.g. 0.8,0.1,0.1",
                          split_fractions=shown) from None
    if len(values) != 3 or any(v < 0 for v in values):
        raise ConfigError("{split_fractions} must be three non-negative "
                          "numbers for train,validate,test",
                          split_fractions=shown)
    if abs(sum(values) - 1) > fractions.Fraction(1, 10**6):
        raise ConfigError(f"{{split_fractions}} must sum to 1, not "
                          f"{float(sum(values))}", split_fractions=shown)
    return values



# ----------------------------------------------------------------------------
# The rules, as pure functions of plain values (see the module docstring)


def selected_labels(labels, selected):
    """Rule 1: the record's labels that are in `selected` (a set of class
    indices), sorted; empty means the record is dropped as not_selected."""
    return sorted(selected.intersection(labels))


def frame_drop_reason(video_frames, audio_frames, audio_constant, min_frames):
    """Rule 2 (frame level): why a selected record is dropped, or None.

    Args:
      video_frames, audio_frames: frames in each view.
      audio_constant: every audio frame is byte-identical to the first.
      min_frames: fewer video frames are too_short.
    """
    if video_frames < min_frames:
        return "too_short"
    if audio_frames == 0 or audio_constant:
        return "no_audio_signal"
    if audio_frames != video_frames:
        return "frame_count_mismatch"
    return None


def video_drop_reason(values_in_range):
    """Rule 3 (video level, per record): why a selected record is dropped, or
    None. `values_in_range`: every value of both views is finite and inside
    [FEATURE_MIN, FEATURE_MAX] widened by RANGE_TOLERANCE."""
    return None if values_in_range else "bad_values"


def repeated_audio(pairs, min_videos):
    """Rule 3 (video level, over all records): the silent-track vectors.

    Args:
      pairs: (audio hash, id key) of every readable record, in any order and
        with repeats: an [n, 2] uint64 array or a sequence of pairs.
      min_videos: an audio vector shared by this many distinct ids carries no
        signal.

    Returns:
      {audio hash: number of distinct ids} of the audio vectors to drop.
    """
    pairs = np.unique(np.asarray(pairs, np.uint64).reshape(-1, 2), axis=0)
    hashes, counts = np.unique(pairs[:, 0], return_counts=True)
    return {int(h): int(c) for h, c in zip(hashes, counts) if c >= min_videos}


def kept_copy(digests):
    """Rule 4: which of the records left with one id is kept: the index of the
    smallest `record_digest` (the first of equal ones)."""
    return min(range(len(digests)), key=digests.__getitem__)


def resolve_copies(audio_hashes, digests, silent):
    """Rules 3 and 4 for the records of one id that passed the per-record
    rules: drop the copies whose audio is a repeated vector, keep one of the
    rest.

    Args:
      audio_hashes: each copy's audio hash (0 at frame level).
      digests: each copy's `record_digest`, in the same order.
      silent: the hashes `repeated_audio` returned (a dict or set).

    Returns:
      (index of the kept copy or None, copies dropped as no_audio_signal,
      copies dropped as duplicate_id).
    """
    good = [i for i, h in enumerate(audio_hashes) if h not in silent]
    if not good:
        return None, len(audio_hashes), 0
    kept = good[kept_copy([digests[i] for i in good])]
    return kept, len(audio_hashes) - len(good), len(good) - 1


def hash64(data):
    return int.from_bytes(hashlib.sha256(data).digest()[:HASH_BYTES], "big")


def record_digest(serialized):
    """The duplicate rule's digest of a serialized record: the first 8 bytes
    of its SHA-256, as a big-endian unsigned integer."""
    return hash64(serialized)


def id_key(video_id):
    """The split and order key of an id: SHA-256 prefix as an integer."""
    if isinstance(video_id, str):
        video_id = video_id.encode()
    return hash64(video_id)


@functools.lru_cache(maxsize=None)
def _split_thresholds(split_fractions):
    total = 2 ** (8 * HASH_BYTES)
    first = split_fractions[0]
    return (int(first * total), int((first + split_fractions[1]) * total))


def split_of(video_id, split_fractions=DEFAULT_SPLIT_FRACTIONS):
    """The split ("train", "validate" or "test") an id goes to.

    Args:
      video_id: str or bytes.
      split_fractions: train, validate, test fractions: three
        `fractions.Fraction`s (as `parse_split_fractions` returns), or
        anything it parses.
    """
    if not all(isinstance(f, fractions.Fraction) for f in split_fractions):
        split_fractions = parse_split_fractions(split_fractions)
    key = id_key(video_id)
    train_end, validate_end = _split_thresholds(tuple(split_fractions))
    if key < train_end:
        return "train"
    return "validate" if key < validate_end else "test"

