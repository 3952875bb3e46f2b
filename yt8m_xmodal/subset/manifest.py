"""The subset's `manifest.json`: what was kept, dropped and why, the rules
in words, and the shards written; the same for the tool and the pipeline."""

import json
import os

import tensorflow as tf

from yt8m_xmodal.subset.rules import (
    FEATURE_MAX, FEATURE_MIN, RANGE_TOLERANCE, SPLITS)

MANIFEST_NAME = "manifest.json"

# The rules in words, for the manifest (their code is in rules.py).
_DUPLICATE_RULE = (
    "records with the same id that pass every other rule: the one whose "
    "serialized bytes have the smallest SHA-256 (first 8 bytes, big-endian) "
    "is kept, the others are dropped as duplicate_id")


def _split_rule(split_fractions):
    return (
        "key(id) = first 8 bytes of SHA-256(id bytes), big-endian unsigned; "
        f"train if key < floor({split_fractions[0]} * 2**64), validate if "
        f"key < floor(({split_fractions[0]} + {split_fractions[1]}) * 2**64), "
        "else test; within a split records are ordered by (key, id) and "
        "dealt round-robin to the shards")


def build_manifest(args, tool, num_shards, skipped, records_read, kept_counts,
                   dropped, label_counts, shards, silent):
    """The manifest.json contents, the same for both implementations.

    Args:
      args: `Arguments`.
      tool: the command that made the subset.
      num_shards: shards per split: an int, or a dict split -> int.
      skipped: [{"file", "error"}] of skipped files.
      records_read: records read from the files not skipped.
      kept_counts: dict split -> kept videos.
      dropped: Counter reason -> count.
      label_counts: {label index: Counter split -> videos}.
      shards: {split: [{"file", "records", "sha256"}]}, in shard order.
      silent: {audio hash: videos} from `repeated_audio`.
    """
    selection = args.selection
    kept_counts = {split: kept_counts.get(split, 0) for split in SPLITS}
    kept_counts["total"] = sum(kept_counts.values())
    manifest = {
        "tool": tool,
        "level": args.level,
        "feature_names": list(args.feature_names),
        "feature_sizes": list(args.feature_sizes),
        "selection": {
            "rule": selection.rule,
            "labels": [{"index": i, "name": selection.names.get(i)}
                       for i in selection.indices],
        },
        "quality_rules": _quality_rules(args.frame_features, args.min_frames,
                                        args.repeated_audio_min_videos),
        "duplicate_rule": _DUPLICATE_RULE,
        "split_fractions": [float(f) for f in args.split_fractions],
        "split_rule": _split_rule([str(f) for f in args.split_fractions]),
        "num_shards": num_shards,
        "input_files": list(args.paths),
        "skipped_files": list(skipped),
        "records_read": records_read,
        "kept": kept_counts,
        "dropped": {reason: dropped.get(reason, 0) for reason in args.reasons},
        "labels": [
            {"index": i, "name": selection.names.get(i),
             "videos": {**{s: label_counts.get(i, {}).get(s, 0)
                           for s in SPLITS},
                        "total": sum(label_counts.get(i, {}).values())}}
            for i in selection.indices],
        "shards": {split: list(shards.get(split, [])) for split in SPLITS},
    }
    if not args.frame_features:
        manifest["repeated_audio_vectors"] = [
            {"sha256_prefix": f"{h:016x}", "videos": c}
            for h, c in sorted(silent.items(), key=lambda x: (-x[1], x[0]))]
    return manifest


def write_manifest(output_dir, manifest):
    """Writes manifest.json (last: its presence marks a finished run)."""
    with tf.io.gfile.GFile(os.path.join(output_dir, MANIFEST_NAME), "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")


def summary_line(manifest, seconds):
    """The one-line summary of a finished run."""
    kept, dropped = manifest["kept"], manifest["dropped"]
    skipped = manifest["skipped_files"]
    return (f"done in {seconds:.1f} s: kept "
            + ", ".join(f"{s} {kept[s]}" for s in SPLITS)
            + "; dropped " + ", ".join(f"{r} {n}" for r, n in dropped.items())
            + (f"; skipped {len(skipped)} unreadable files" if skipped else ""))


def _quality_rules(frame_features, min_frames, repeated_audio_min_videos):
    if frame_features:
        return {
            "too_short": f"fewer than min_frames={min_frames} frames in the "
                         "video view",
            "no_audio_signal": "the audio view has no frames, or every audio "
                               "frame is byte-identical to the first",
            "frame_count_mismatch": "audio and video views have different "
                                    "numbers of frames",
        }
    return {
        "bad_values": (f"a NaN or infinite value, or one outside "
                       f"[{FEATURE_MIN}, {FEATURE_MAX}] +- {RANGE_TOLERANCE}, "
                       "in either view"),
        "no_audio_signal": (
            "the exact audio vector (float32 bytes) is shared by at least "
            f"repeated_audio_min_videos={repeated_audio_min_videos} distinct "
            "ids over all readable input records"),
    }
