r"""Cuts a reproducible music subset out of YouTube-8M shards.

    python -m yt8m_xmodal.cli.subset --noframe_features \
        --input_data_pattern=/data/yt8m/video/train*.tfrecord \
        --output_dir=/data/yt8m_music --vocabulary_file=/data/yt8m/vocabulary.csv

writes train/validate/test shards in the input's own format (each kept
record's bytes unchanged) and a `manifest.json` of what was kept, dropped and
why. The rules and the id-hash split (rules.py) are pure functions that the
Beam pipeline calls too; the first pass and the read-back are scan.py, the
manifest manifest.py, the options (`SubsetConfig`) and the single-process run
tool.py. In full: docs/design.md, "Music subset".
"""

from yt8m_xmodal.subset.manifest import (
    MANIFEST_NAME, build_manifest, summary_line, write_manifest)
from yt8m_xmodal.subset.rules import (
    DEFAULT_MIN_FRAMES, DEFAULT_REPEATED_AUDIO_MIN_VIDEOS,
    DEFAULT_SPLIT_FRACTIONS, FEATURE_MAX, FEATURE_MIN, FRAME_DROP_REASONS,
    RANGE_TOLERANCE, SPLITS, VIDEO_DROP_REASONS, LabelSelection,
    build_selection, frame_drop_reason, id_key, kept_copy,
    parse_split_fractions, record_digest, repeated_audio, resolve_copies,
    selected_labels, split_of, video_drop_reason)
from yt8m_xmodal.subset.scan import InputError, RecordFetcher, scan_or_skip
from yt8m_xmodal.subset.tool import (
    DEFAULT_TARGET_SHARD_MB, TOOL_COMMAND, Arguments, SubsetConfig,
    check_arguments, clear_output, extract_subset, no_readable_input,
    shard_counts)

__all__ = [
    # manifest.py
    "MANIFEST_NAME", "build_manifest", "summary_line", "write_manifest",
    # rules.py
    "DEFAULT_MIN_FRAMES", "DEFAULT_REPEATED_AUDIO_MIN_VIDEOS",
    "DEFAULT_SPLIT_FRACTIONS", "FEATURE_MAX", "FEATURE_MIN",
    "FRAME_DROP_REASONS", "RANGE_TOLERANCE", "SPLITS", "VIDEO_DROP_REASONS",
    "LabelSelection", "build_selection", "frame_drop_reason", "id_key",
    "kept_copy", "parse_split_fractions", "record_digest", "repeated_audio",
    "resolve_copies", "selected_labels", "split_of", "video_drop_reason",
    # scan.py
    "InputError", "RecordFetcher", "scan_or_skip",
    # tool.py
    "DEFAULT_TARGET_SHARD_MB", "TOOL_COMMAND", "Arguments", "SubsetConfig",
    "check_arguments", "clear_output", "extract_subset", "no_readable_input",
    "shard_counts",
]
