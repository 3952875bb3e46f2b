"""Reliability sweep: corrupt shards, kills, NaNs, concurrent eval, flags.

Prints one summary table (the one in RELIABILITY.md) and exits non-zero when
any row fails.

    python bench/stress_reliability.py                 # everything, ~6 min on 2 cores
    python bench/stress_reliability.py --only=fuzz --mutants=120

Scenarios:

fuzz       Mutants of valid frame- and video-level shards (truncations, byte
           flips in the length, its CRC, the payload or its CRC, zero-length
           files, random bytes, CRC-valid garbage records, one record of the
           wrong feature size, NaN/inf at video level), read beside a good
           shard, strict and with skip_corrupt. Each mutant runs in a worker
           process under a per-mutant timeout, so a hang or an interpreter
           crash is seen and counted, never waited on. A subset of them also
           goes through `subset.extract_subset` and
           `evaluation.evaluate_checkpoint`.
kill       train.py as a subprocess SIGKILLed at 5 moments (at a random time
           between two checkpoints, while a checkpoint is being written,
           right after its index file appears, while the export is written,
           before the first checkpoint), rerun each time; checks that the
           kill landed, the checkpoints left, the resume (from the rerun's
           train_result.json), the final step, model_flags.json.
nonfinite  train.py with --base_learning_rate=1e30 (one-line error, last good
           checkpoint kept and evaluated by eval.py) and with
           --skip_nonfinite_steps; train.py on video-level shards holding NaN.
concurrent eval.py watching while train.py writes a checkpoint every step
           with --keep_checkpoint_max=2, then SIGINT.
flags      eval.py / inference.py / train.py with bad flags and paths.

The scenarios watch the package through its files (checkpoints, exports,
train_result.json, metrics.json, the TensorBoard events eval.py writes) and
its API; of the scripts' output only the one-line error each bad case must
end with is read, since that line is what is under test. The fast sample of
the fuzz checks is tests/test_reliability.py.
"""

import collections
import dataclasses
import glob
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The package of this checkout, the one its train.py / eval.py run, rather
# than whichever copy is installed.
sys.path.insert(0, REPO_ROOT)

from bench import fragments  # noqa: E402
from yt8m_xmodal import tfrecord  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402
from yt8m_xmodal.errors import ConfigError  # noqa: E402

# Small records: a mutant reads in milliseconds, and the tiny model this
# sweep trains (16-d video, 8-d audio, 40 frames, 4 classes) reads them.
FEATURE_SIZES = (16, 8)
MAX_FRAMES = 40
NUM_CLASSES = 4
RECORDS_PER_SHARD = 12
# train.py's --batch_size in every run here: a rerun's train_result.json
# counts examples, and this turns them into steps.
TRAIN_BATCH_SIZE = 32

# What a mutant may legitimately come to; anything else, a DataError that
# does not name the mutant file included, is a failure.
OK_OUTCOMES = ("error", "skipped", "clean")


# --- source shards and mutants -------------------------------------------------

def write_source_shards(out_dir, frame_features, seed=0):
    """A mutation source and a good companion shard; returns their paths."""
    import tensorflow as tf
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    level = "frame" if frame_features else "video"
    paths = []
    for name in ("source", "good"):
        path = os.path.join(out_dir, f"{level}-{name}.tfrecord")
        with tf.io.TFRecordWriter(path) as w:
            for i in range(RECORDS_PER_SHARD):
                w.write(make_record(rng, f"{level}-{name}-{i:02d}",
                                    frame_features).SerializeToString())
        paths.append(path)
    return paths


def make_record(rng, video_id, frame_features, sizes=FEATURE_SIZES):
    from yt8m_xmodal import writers
    labels = sorted(set(rng.integers(0, NUM_CLASSES, size=2).tolist()))
    if frame_features:
        frames = int(rng.integers(3, 11))
        return writers.make_frame_example(
            video_id, labels,
            rng.integers(0, 256, (frames, sizes[0]), dtype=np.uint8),
            rng.integers(0, 256, (frames, sizes[1]), dtype=np.uint8))
    # Inside the range 8-bit codes dequantize to, so subset keeps them.
    return writers.make_video_example(
        video_id, labels, rng.uniform(-1.5, 1.5, sizes[0]),
        rng.uniform(-1.5, 1.5, sizes[1]))


def record_spans(data):
    """(start, end) byte offsets of each framed record, by walking the headers
    (independent of TF's reader)."""
    return [(offset, offset + tfrecord.FRAMING_BYTES + length)
            for offset, length in tfrecord.iter_offsets(
                io.BytesIO(data), "source", len(data))]


def make_mutants(source, frame_features, count, rng, out_dir):
    """Writes `count` mutants of `source`; returns job dicts describing them.

    Each job says which original ids a reader may return if it does not
    notice the damage (`clean_ids`: only a truncation exactly at a record
    boundary is undetectable) and which ids come before the damage
    (`before_ids`, what skip_corrupt must keep).
    """
    import tensorflow as tf
    data = open(source, "rb").read()
    spans = record_spans(data)
    proto = tf.train.SequenceExample if frame_features else tf.train.Example
    ids = []
    for _, record in tfrecord.iter_records(io.BytesIO(data), source):
        parsed = proto.FromString(record)
        context = parsed.context if frame_features else parsed.features
        ids.append(context.feature["id"].bytes_list.value[0].decode())
    kinds = ["truncate", "truncate_header", "flip_length", "flip_length_crc", "flip_payload",
             "flip_data_crc", "zero_length", "random_bytes", "garbage_record",
             "wrong_feature_size", "trailing_bytes"]
    if not frame_features:
        kinds.append("non_finite")
    level = "frame" if frame_features else "video"
    os.makedirs(out_dir, exist_ok=True)
    jobs = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        record = int(rng.integers(len(spans)))
        start, end = spans[record]
        mutant, damage, bad_record = bytearray(data), None, None
        clean_ids = ids
        if kind.startswith("truncate"):
            cut = (int(rng.integers(1, len(data))) if kind == "truncate" else
                   start + int(rng.integers(1, tfrecord.HEADER_BYTES)))
            mutant = mutant[:cut]
            clean_ids = [i for i, (s, e) in zip(ids, spans) if e <= cut]
            damage = cut
        elif kind.startswith("flip_"):
            lo, hi = {
                "flip_length": (start, start + tfrecord.LENGTH_BYTES),
                "flip_length_crc": (start + tfrecord.LENGTH_BYTES,
                                    start + tfrecord.HEADER_BYTES),
                "flip_payload": (start + tfrecord.HEADER_BYTES,
                                 end - tfrecord.CRC_BYTES),
                "flip_data_crc": (end - tfrecord.CRC_BYTES, end),
            }[kind]
            at = int(rng.integers(lo, hi))
            mutant[at] ^= int(rng.integers(1, 256))
            damage, clean_ids = start, None
        elif kind == "zero_length":
            mutant, damage, clean_ids = bytearray(), 0, []
        elif kind == "random_bytes":
            mutant = bytearray(rng.integers(0, 256, int(rng.integers(1, 4096)),
                                            dtype=np.uint8).tobytes())
            damage, clean_ids = 0, None
        elif kind == "trailing_bytes":
            # An interrupted append: a valid shard plus a partial header.
            mutant += rng.integers(0, 256, int(rng.integers(1, tfrecord.HEADER_BYTES)),
                                   dtype=np.uint8).tobytes()
            damage, clean_ids = len(data), None
        else:
            # CRC-valid records with bad content: rewrite the shard.
            damage, bad_record, clean_ids = start, record, None
            mutant = _rewrite_with(source, record, kind, frame_features, rng)
        path = os.path.join(out_dir, f"{level}-{n:04d}-{kind}.tfrecord")
        with open(path, "wb") as f:
            f.write(bytes(mutant))
        before = [i for i, (s, e) in zip(ids, spans) if e <= damage]
        # Only an empty file or a cut between records leaves a valid shard.
        undetectable = len(mutant) == 0 or (
            kind == "truncate" and damage in {e for _, e in spans})
        jobs.append({"path": path, "source": source, "kind": kind,
                     "undetectable": undetectable,
                     "frame_features": frame_features, "clean_ids": clean_ids,
                     "before_ids": before, "bad_record": bad_record,
                     "all_ids": ids})
    return jobs


def _rewrite_with(source, index, kind, frame_features, rng):
    import tensorflow as tf
    records = [bytes(r) for r in
               tf.data.TFRecordDataset(source).as_numpy_iterator()]
    if kind == "garbage_record":
        # Random bytes framed with valid CRCs: only the parse can notice.
        records[index] = rng.integers(0, 256, int(rng.integers(1, 200)),
                                      dtype=np.uint8).tobytes()
    elif kind == "wrong_feature_size":
        sizes = list(FEATURE_SIZES)
        view = int(rng.integers(2))
        sizes[view] += int(rng.choice([-3, -1, 1, 5]))
        old_id = _record_id(records[index], frame_features)
        records[index] = make_record(rng, old_id, frame_features,
                                     sizes).SerializeToString()
    elif kind == "non_finite":
        example = tf.train.Example.FromString(records[index])
        name = ("mean_rgb", "mean_audio")[int(rng.integers(2))]
        values = example.features.feature[name].float_list.value
        values[int(rng.integers(len(values)))] = float(
            rng.choice([np.nan, np.inf, -np.inf]))
        records[index] = example.SerializeToString()
    out = tempfile.mktemp(suffix=".tfrecord")
    with tf.io.TFRecordWriter(out) as w:
        for r in records:
            w.write(r)
    data = open(out, "rb").read()
    os.remove(out)
    return bytearray(data)


def _record_id(serialized, frame_features):
    import tensorflow as tf
    if frame_features:
        proto = tf.train.SequenceExample.FromString(serialized).context
    else:
        proto = tf.train.Example.FromString(serialized).features
    return proto.feature["id"].bytes_list.value[0].decode()


# --- per-mutant checks ---------------------------------------------------------

_REFERENCE = {}


def _reader(frame_features, skip_corrupt):
    from yt8m_xmodal import config as config_lib
    from yt8m_xmodal import readers
    return readers.reader_for(config_lib.DataConfig(
        frame_features=frame_features, feature_sizes=FEATURE_SIZES,
        max_frames=MAX_FRAMES, num_classes=NUM_CLASSES),
        skip_corrupt=skip_corrupt)


def reference_records(paths, frame_features):
    """id -> {key: array} read from the intact shards."""
    key = (tuple(paths), frame_features)
    if key not in _REFERENCE:
        records = {}
        for batch in _reader(frame_features, False).batches(",".join(paths), 5):
            for row, vid in enumerate(batch["id"].numpy()):
                records[vid.decode()] = {k: np.asarray(v)[row]
                                         for k, v in batch.items() if k != "id"}
        _REFERENCE[key] = records
    return _REFERENCE[key]


def _shape_problems(batch, frame_features):
    b = int(batch["id"].shape[0])
    dv, da = FEATURE_SIZES
    want = ({"video": (b, MAX_FRAMES, dv), "audio": (b, MAX_FRAMES, da),
             "num_frames": (b,), "mask": (b, MAX_FRAMES),
             "labels": (b, NUM_CLASSES)} if frame_features else
            {"video": (b, dv), "audio": (b, da), "labels": (b, NUM_CLASSES)})
    return [f"{k} has shape {tuple(batch[k].shape)}, expected {s}"
            for k, s in want.items() if tuple(batch[k].shape) != s]


def check_reader(job, good, skip_corrupt):
    """Reads `job`'s mutant beside the good shard; returns (outcome, note).

    outcome is "error" (DataError naming the mutant), "skipped" (skipped and
    counted), "clean" (nothing noticed and nothing lost, e.g. a cut at a
    record boundary) or "FAIL".
    """
    from yt8m_xmodal.errors import DataError
    frame_features = job["frame_features"]
    reference = reference_records([job["source"], good], frame_features)
    good_ids = [i for i in reference if "-good-" in i]
    reader = _reader(frame_features, skip_corrupt)
    seen, error = [], None
    try:
        for batch in reader.batches(f"{job['path']},{good}", 5):
            problems = _shape_problems(batch, frame_features)
            if problems:
                return "FAIL", "; ".join(problems)
            for row, vid in enumerate(batch["id"].numpy()):
                vid = vid.decode(errors="replace")
                if vid not in reference:
                    return "FAIL", f"yielded an id that was never written: {vid!r}"
                for k, want in reference[vid].items():
                    got = np.asarray(batch[k])[row]
                    if not np.array_equal(got, want):
                        return "FAIL", f"{vid}: {k} differs from the original"
                seen.append(vid)
    except DataError as e:
        error = str(e)
    except Exception as e:  # anything else is a raw error: a failure
        return "FAIL", f"{type(e).__name__}: {str(e)[:300]}"
    if len(seen) != len(set(seen)):
        return "FAIL", "a record was yielded twice"
    if error is not None:
        if job["path"] not in error:
            return "FAIL", f"DataError does not name the file: {error[:300]}"
        if "\n" in error or "Traceback" in error:
            return "FAIL", f"DataError is not one line: {error[:300]}"
        return "error", error
    mutant_ids = set(seen) - set(good_ids)
    if not set(good_ids) <= set(seen):
        return "FAIL", "records of the good shard were lost"
    skipped = sum(reader.skip_counts.values())
    if job["undetectable"]:
        if mutant_ids != set(job["clean_ids"]) or skipped:
            return "FAIL", "a valid (shorter) shard was not read as it is"
        return "clean", ""
    if not skip_corrupt:
        return "FAIL", (f"read {len(mutant_ids)} of the mutant's records with "
                        "no error: the damage went unnoticed")
    if not skipped:
        return "FAIL", "records were lost without a counted skip"
    if not set(job["before_ids"]) <= mutant_ids and job["bad_record"] is None:
        return "FAIL", "records before the damage were dropped"
    if job["bad_record"] is not None:
        bad_id = job["all_ids"][job["bad_record"]]
        others = set(job["all_ids"]) - {bad_id}
        if mutant_ids != others:
            return "FAIL", "skipping one bad record lost other records"
    return "skipped", reader.skip_summary()


def check_subset(job, good, skip_corrupt, out_dir):
    """Runs the subset tool on the mutant and the good shard."""
    import tensorflow as tf
    from yt8m_xmodal import subset
    from yt8m_xmodal.errors import DataError
    originals = set()
    for path in (job["source"], good):
        originals.update(bytes(r) for r in
                         tf.data.TFRecordDataset(path).as_numpy_iterator())
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        manifest = subset.extract_subset(
            f"{job['path']},{good}", out_dir,
            frame_features=job["frame_features"],
            feature_sizes=FEATURE_SIZES,
            selection=subset.build_selection(
                label_indices=list(range(NUM_CLASSES))),
            min_frames=1, num_shards=1, skip_corrupt=skip_corrupt,
            progress=None)
    except DataError as e:
        if job["path"] not in str(e):
            return "FAIL", f"DataError does not name the file: {str(e)[:300]}"
        return "error", str(e)
    except Exception as e:
        return "FAIL", f"{type(e).__name__}: {str(e)[:300]}"
    written = [bytes(r) for p in sorted(glob.glob(f"{out_dir}/*.tfrecord"))
               for r in tf.data.TFRecordDataset(p).as_numpy_iterator()]
    if not set(written) <= originals:
        return "FAIL", "the subset holds a record that was never written"
    # The good shard is kept whole (its records can only be dropped by rules).
    dropped = sum(manifest["dropped"].values())
    skipped = [s["file"] for s in manifest["skipped_files"]]
    if skipped:
        if skipped != [job["path"]]:
            return "FAIL", f"skipped the wrong files: {skipped}"
        if len(written) != RECORDS_PER_SHARD - dropped:
            return "FAIL", "the good shard was not kept whole"
        return "skipped", f"skipped_files: {job['path']}"
    if job["kind"] == "non_finite" and manifest["dropped"].get("bad_values"):
        if len(written) != 2 * RECORDS_PER_SHARD - dropped:
            return "FAIL", "dropping the NaN record lost others"
        return "skipped", "dropped as bad_values (counted in the manifest)"
    if not job["undetectable"]:
        return "FAIL", "a damaged file went through without error or skip"
    want = RECORDS_PER_SHARD + len(job["clean_ids"]) - dropped
    if len(written) != want:
        return "FAIL", f"wrote {len(written)} records, expected {want}"
    return "clean", ""


def check_eval(job, good, skip_corrupt, train_dir):
    """Scores retrieval on the mutant and the good shard with a checkpoint."""
    from yt8m_xmodal import evaluation
    from yt8m_xmodal.errors import DataError
    try:
        result = evaluation.evaluate_checkpoint(
            str(train_dir), f"{job['path']},{good}", (1,), batch_size=8,
            skip_corrupt=skip_corrupt)
    except DataError as e:
        if job["path"] not in str(e):
            return "FAIL", f"DataError does not name the file: {str(e)[:300]}"
        return "error", str(e)
    except Exception as e:
        return "FAIL", f"{type(e).__name__}: {str(e)[:300]}"
    n = result["num_queries"]
    if job["undetectable"]:
        if n != RECORDS_PER_SHARD + len(job["clean_ids"]):
            return "FAIL", f"scored {n} queries of a valid shorter shard"
        return "clean", ""
    if not skip_corrupt:
        return "FAIL", f"scored {n} queries with no error: damage unnoticed"
    if not RECORDS_PER_SHARD <= n <= RECORDS_PER_SHARD * 2:
        return "FAIL", f"scored {n} queries"
    return "skipped", f"{n} queries"


def run_check(job, good, what, skip_corrupt, scratch=None, train_dir=None):
    if what == "reader":
        return check_reader(job, good, skip_corrupt)
    if what == "subset":
        return check_subset(job, good, skip_corrupt, scratch)
    return check_eval(job, good, skip_corrupt, train_dir)


# --- the worker pool: a timeout per mutant -------------------------------------

def worker_main():
    """Reads one JSON job a line from stdin, answers one JSON line each."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging
    logging.getLogger("absl").setLevel(logging.ERROR)
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)
    scratch = tempfile.mkdtemp(prefix="subset-")
    print("ready", flush=True)
    for line in sys.stdin:
        task = json.loads(line)
        outcome, note = run_check(task["job"], task["good"], task["what"],
                                  task["skip_corrupt"],
                                  os.path.join(scratch, "out"),
                                  task.get("train_dir"))
        print(json.dumps({"outcome": outcome, "note": note[:400]}), flush=True)


class WorkerPool:
    """One long-lived worker process (TF imports once); a task that does not
    answer within `timeout` is a hang, a worker that dies a crash, and either
    way the worker is replaced."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.proc = None

    def _start(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, cwd=REPO_ROOT)
        if self._readline(120) != "ready":
            raise RuntimeError("the worker did not start")

    def _readline(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().strip()

    def run(self, task):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(task) + "\n")
        self.proc.stdin.flush()
        line = self._readline(self.timeout)
        if line is None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            return "FAIL", f"hang: no answer in {self.timeout} s"
        if not line:
            code = self.proc.wait()
            self.proc = None
            return "FAIL", f"crash: the worker died with exit code {code}"
        answer = json.loads(line)
        return answer["outcome"], answer["note"]

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()


# --- scenarios -----------------------------------------------------------------

Row = collections.namedtuple("Row", "scenario cases outcome ok")


def train_tiny_model(data_dir, train_dir):
    """A tiny MeanPoolModel with checkpoints at steps 2 and 4: the model
    that the eval checks score mutants with."""
    from yt8m_xmodal import config as config_lib
    from yt8m_xmodal.tools import synthetic
    from yt8m_xmodal import training
    synthetic.generate_dataset(
        data_dir, num_videos=160, seed=7, num_shards=2, frame_features=True,
        min_frames=10, max_frames=40, feature_sizes=FEATURE_SIZES,
        num_classes=NUM_CLASSES)
    data = config_lib.DataConfig(feature_sizes=FEATURE_SIZES,
                                 max_frames=MAX_FRAMES, num_classes=NUM_CLASSES)
    cfg = config_lib.TrainConfig(
        train_data_pattern=os.path.join(data_dir, "train-*"),
        train_dir=train_dir, data=data, model="MeanPoolModel",
        model_config={"embedding_dim": 4, "hidden_units": 16}, subspace_dim=2,
        batch_size=32, num_epochs=5, max_steps=4, export_model_steps=2, seed=3)
    training.train(cfg)


def fuzz(work, mutants_per_level, seed, timeout):
    rng = np.random.default_rng(seed)
    pool = WorkerPool(timeout)
    rows = []
    failures = []
    data_dir, train_dir = os.path.join(work, "data"), os.path.join(work, "trained")
    train_tiny_model(data_dir, train_dir)
    for frame_features in (True, False):
        level = "frame" if frame_features else "video"
        source, good = write_source_shards(os.path.join(work, "src"),
                                           frame_features, seed)
        jobs = make_mutants(source, frame_features, mutants_per_level, rng,
                            os.path.join(work, f"mutants-{level}"))
        whats = [("reader", j, s) for j in jobs for s in (False, True)]
        # The subset tool and eval.py on a sample of the mutants.
        sample = jobs[:max(22, mutants_per_level // 5)]
        whats += [("subset", j, s) for j in sample for s in (False, True)]
        if frame_features:  # the trained model reads frame-level records
            whats += [("eval", j, s) for j in sample for s in (False, True)]
        tally = collections.defaultdict(collections.Counter)
        for what, job, skip in whats:
            outcome, note = pool.run({"job": job, "good": good, "what": what,
                                      "skip_corrupt": skip,
                                      "train_dir": train_dir})
            tally[(what, skip)][outcome] += 1
            if outcome not in OK_OUTCOMES:
                failures.append(f"{what} {'skip' if skip else 'strict'} "
                                f"{job['path']}: {note}")
        for (what, skip), counts in sorted(tally.items()):
            rows.append(Row(
                f"fuzz {level}-level, {what}, "
                f"{'skip_corrupt' if skip else 'strict'}",
                sum(counts.values()),
                ", ".join(f"{c} {o}" for o, c in sorted(counts.items())),
                set(counts) <= set(OK_OUTCOMES)))
    pool.close()
    return rows, failures


def _script(name, *args, timeout=300, **kwargs):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, name),
                           *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def train_args(data_dir, train_dir, max_steps, export_steps, *extra,
               frame_features=True):
    return [f"--train_data_pattern={data_dir}/train-*",
            f"--train_dir={train_dir}", "--model=MeanPoolModel" if
            frame_features else "--model=VideoLevelMlpModel",
            f"--feature_sizes={','.join(map(str, FEATURE_SIZES))}",
            f"--frame_features={'true' if frame_features else 'false'}",
            f"--max_frames={MAX_FRAMES}", f"--num_classes={NUM_CLASSES}",
            "--embedding_dim=4", "--hidden_units=16", "--subspace_dim=2",
            f"--batch_size={TRAIN_BATCH_SIZE}", "--num_epochs=1000",
            f"--max_steps={max_steps}",
            f"--export_model_steps={export_steps}", "--log_every_steps=1",
            *extra]


def one_line_error(out, script, named):
    """Whether a script failed with one `script: error:` line naming `named`."""
    lines = out.stderr.strip().splitlines()
    return (out.returncode not in (0, None) and "Traceback" not in out.stderr
            and bool(lines) and lines[-1].startswith(f"{script}: error:")
            and named in lines[-1])


def checkpoint_steps(train_dir):
    import tensorflow as tf
    state = tf.train.get_checkpoint_state(train_dir)
    if state is None:
        return []
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]


def kill_at(cmd, train_dir, moment, rng, interval, deadline_s=240):
    """Starts training and SIGKILLs it at `moment`, judged from the files it
    writes; returns (whether the kill landed, a note on when it fired).

    The moments after the first checkpoint wait until its export is
    complete, so the kill lands in the middle of a run. "between_checkpoints"
    times the run's own pace: after the second checkpoint it waits a random
    part of the time the second interval took.
    """
    proc = subprocess.Popen([sys.executable, *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    first_index = os.path.join(train_dir, f"ckpt-{interval}.index")
    second_index = os.path.join(train_dir, f"ckpt-{2 * interval}.index")
    first_export = os.path.join(train_dir, "export", f"step_{interval:08d}")
    export_dir = os.path.join(train_dir, "export")
    deadline = time.time() + deadline_s
    fire_at, when, fired = None, "", False
    mid_run_since = None
    while time.time() < deadline and proc.poll() is None:
        names = set(os.listdir(train_dir)) if os.path.isdir(train_dir) else set()
        mid_run = os.path.isdir(first_export)
        fire = False
        if moment == "before_first_checkpoint":
            fire = "model_flags.json" in names and not os.path.exists(first_index)
            when = "model_flags.json written, no checkpoint yet"
        elif moment == "between_checkpoints":
            if mid_run and mid_run_since is None:
                mid_run_since = time.time()
            if fire_at is None and mid_run_since and os.path.exists(second_index):
                pace = time.time() - mid_run_since
                delay = float(rng.uniform(0, pace))
                fire_at = time.time() + delay
                when = f"{delay:.2f} s after ckpt-{2 * interval}.index"
            fire = fire_at is not None and time.time() >= fire_at
        elif moment == "checkpoint_writing":
            fire = mid_run and any("_temp" in n for n in names)
            when = "a checkpoint's _temp directory present"
        elif moment == "checkpoint_index":
            fire = mid_run and any(n.endswith(".index") for n in names
                                   if n != os.path.basename(first_index))
            when = "right after a second .index file appeared"
        elif moment == "export_writing":
            fire = mid_run and any(n.startswith(".tmp-")
                                   for n in os.listdir(export_dir))
            when = "an export's .tmp- directory present"
        if fire:
            proc.send_signal(signal.SIGKILL)
            fired = True
            break
        time.sleep(0.002)
    if not fired and proc.poll() is None:
        proc.kill()  # past the deadline: stop it, but the kill did not land
    code = proc.wait()
    # Only a process that was still running when the signal came dies of it.
    landed = fired and code == -signal.SIGKILL
    if not landed:
        when = (f"never landed (train.py exit code {code}"
                + (", past the deadline)" if not fired else ")"))
    return landed, when


def kill_and_resume(work, seed, kills=5):
    """SIGKILL train.py at 5 moments; after each, rerun until done."""
    import tensorflow as tf
    from yt8m_xmodal import modeling
    from yt8m_xmodal.tools import synthetic
    rng = np.random.default_rng(seed)
    data_dir = os.path.join(work, "killdata")
    synthetic.generate_dataset(
        data_dir, num_videos=160, seed=7, num_shards=2, frame_features=True,
        min_frames=10, max_frames=40, feature_sizes=FEATURE_SIZES,
        num_classes=NUM_CLASSES)
    moments = ["between_checkpoints", "checkpoint_writing", "checkpoint_index",
               "export_writing", "before_first_checkpoint"][:kills]
    max_steps, interval = 12, 3
    notes, failures = [], []
    for n, moment in enumerate(moments):
        train_dir = os.path.join(work, f"kill-{n}")
        shutil.rmtree(train_dir, ignore_errors=True)
        cmd = [os.path.join(REPO_ROOT, "train.py"),
               *train_args(data_dir, train_dir, max_steps, interval)]
        landed, when = kill_at(cmd, train_dir, moment, rng, interval)
        if not landed:
            failures.append(f"{moment}: the kill {when}")
            continue
        try:
            json.loads(open(os.path.join(train_dir, "model_flags.json")).read())
        except (OSError, ValueError) as e:
            failures.append(f"{moment}: model_flags.json unreadable: {e}")
            continue
        steps = checkpoint_steps(train_dir)
        kept = max(steps) if steps else 0
        # Every checkpoint the schedule made before the kill is there: the
        # kill can only lose the steps after the last one.
        if steps != list(range(interval, kept + 1, interval)):
            failures.append(f"{moment}: checkpoints {steps}")
        if steps:
            _, _, _, restored = modeling.restore(train_dir)
            if restored != kept:
                failures.append(f"{moment}: restored step {restored} != {kept}")
        out = subprocess.run([sys.executable, *cmd], capture_output=True,
                             text=True, timeout=300, cwd=REPO_ROOT)
        if out.returncode != 0:
            failures.append(f"{moment}: rerun failed: {out.stderr[-500:]}")
            continue
        rerun = read_train_result(train_dir)
        # The rerun trained exactly the steps after the last checkpoint.
        trained_steps = rerun["examples"] // TRAIN_BATCH_SIZE
        if rerun["step"] != max_steps or trained_steps != max_steps - kept:
            failures.append(f"{moment}: rerun ended at step {rerun['step']} "
                            f"after {trained_steps} steps, from ckpt-{kept}")
        final = tf.train.latest_checkpoint(train_dir)
        if not final.endswith(f"ckpt-{max_steps}"):
            failures.append(f"{moment}: final checkpoint {final}")
        notes.append(f"{moment}: killed ({when}); checkpoints left {steps}; "
                     f"the rerun trained steps {kept + 1}-{rerun['step']}")
    outcome = (f"{len(moments)}/{len(moments)} kills landed; every rerun "
               f"resumed from the last checkpoint left and reached "
               f"--max_steps={max_steps}; no checkpoint before the kill lost"
               if not failures else "; ".join(failures))
    return [Row("kill -9 train.py and rerun", len(moments), outcome,
                not failures)], notes + failures


def read_train_result(train_dir):
    with open(os.path.join(train_dir, "train_result.json")) as f:
        return json.load(f)


def nonfinite(work):
    """A learning rate of 1e30 via the CLI, and NaN features at video level."""
    from yt8m_xmodal.tools import synthetic
    rows, notes = [], []
    data_dir = os.path.join(work, "nandata")
    synthetic.generate_dataset(
        data_dir, num_videos=160, seed=7, num_shards=2, frame_features=True,
        min_frames=10, max_frames=40, feature_sizes=FEATURE_SIZES,
        num_classes=NUM_CLASSES)
    train_dir = os.path.join(work, "nan-run")
    # The same optimizer in both runs: a switch (adam -> sgd) leaves Adam's
    # slots unrestored, and TF lists each of them when the process exits.
    good = _script("train.py", *train_args(data_dir, train_dir, 2, 2,
                                           "--optimizer=sgd",
                                           "--clip_gradient_norm=0"))
    bad = _script("train.py", *train_args(data_dir, train_dir, 10, 2,
                                          "--base_learning_rate=1e30",
                                          "--optimizer=sgd",
                                          "--clip_gradient_norm=0"))
    steps = checkpoint_steps(train_dir)
    ev = _script("eval.py", f"--train_dir={train_dir}",
                 f"--eval_data_pattern={data_dir}/validate-*", "--top_k=1",
                 "--run_once", f"--output_json={work}/nan-eval.json")
    ok = (good.returncode == 0 and one_line_error(bad, "train.py", "not finite")
          and bad.returncode == 1 and steps and max(steps) < 10
          and ev.returncode == 0
          and json.load(open(f"{work}/nan-eval.json"))["step"] == max(steps))
    rows.append(Row("loss non-finite (sgd, lr 1e30, no clipping), train.py", 1,
                    f"one-line error, exit 1; last good checkpoint "
                    f"(ckpt-{max(steps) if steps else '?'}) kept, eval.py "
                    "scores it" if ok else
                    f"FAILED rc={bad.returncode} steps={steps}", ok))
    notes.append(f"lr 1e30: rc={bad.returncode} "
                 f"{bad.stderr.strip().splitlines()[-1:]}")
    skip_dir = os.path.join(work, "nan-skip")
    out = _script("train.py", *train_args(data_dir, skip_dir, 10, 2,
                                          "--base_learning_rate=1e30",
                                          "--optimizer=sgd",
                                          "--clip_gradient_norm=0",
                                          "--skip_nonfinite_steps",
                                          "--num_epochs=3"),
                  timeout=300)
    # Once the weights blow up every later step is skipped too: it must still
    # end (at --num_epochs) rather than loop, and count the skips in
    # train_result.json. If the applied (finite but huge) update left
    # embeddings that overflow, the final export refuses to checkpoint that
    # model: one error line, exit 1 (without --skip_nonfinite_steps the
    # first non-finite step would have been the error instead).
    refused = one_line_error(out, "train.py", "no checkpoint was written")
    skipped = (read_train_result(skip_dir)["skipped_nonfinite_steps"]
               if out.returncode == 0 else 0)
    ok = ((out.returncode == 0 and skipped > 0) or
          (refused and out.returncode == 1))
    outcome = (f"ends at --num_epochs, exit 0; {skipped} steps skipped, "
               "counted in train_result.json" if ok and not refused else
               "steps skipped; the diverged model is not checkpointed "
               "(one-line error, exit 1)" if ok else
               f"FAILED rc={out.returncode}")
    rows.append(Row("loss non-finite, --skip_nonfinite_steps", 1, outcome, ok))
    notes.append(f"skip_nonfinite: rc={out.returncode}" + (
        f", {skipped} steps skipped" if out.returncode == 0 else ""))

    # NaN/inf in video-level features, through train.py.
    import tensorflow as tf
    vdir = os.path.join(work, "nanvideo")
    os.makedirs(vdir, exist_ok=True)
    rng = np.random.default_rng(1)
    with tf.io.TFRecordWriter(f"{vdir}/train-0.tfrecord") as w:
        for i in range(70):
            ex = make_record(rng, f"v{i}", False)
            if i in (5, 40):
                name = "mean_rgb" if i == 5 else "mean_audio"
                ex.features.feature[name].float_list.value[2] = (
                    np.nan if i == 5 else np.inf)
            w.write(ex.SerializeToString())
    strict = _script("train.py", *train_args(vdir, f"{work}/nanv", 2, 2,
                                             frame_features=False))
    skip = _script("train.py", *train_args(vdir, f"{work}/nanv-skip", 2, 2,
                                           "--skip_corrupt",
                                           frame_features=False))
    # train_result.json does not carry the reader's skip counts, so the
    # reader itself counts what --skip_corrupt drops from this file.
    counter = _reader(False, skip_corrupt=True)
    for _ in counter.batches(f"{vdir}/train-0.tfrecord", 32):
        pass
    ok = (one_line_error(strict, "train.py", f"{vdir}/train-0.tfrecord:")
          and one_line_error(strict, "train.py", "NaN or inf")
          and skip.returncode == 0
          and read_train_result(f"{work}/nanv-skip")["step"] == 2
          and counter.skip_counts["non_finite"] == 2)
    rows.append(Row("NaN/inf in video-level features, train.py", 2,
                    "strict: one-line DataError naming file:record; "
                    "--skip_corrupt: trains to --max_steps, the reader "
                    "skips and counts both records" if ok else "FAILED", ok))
    notes.append(f"nan features: {strict.stderr.strip().splitlines()[-1:]}")
    return rows, notes


def concurrent_eval(work):
    """eval.py watches while train.py checkpoints every step (keep 2)."""
    from yt8m_xmodal.tools import synthetic
    data_dir = os.path.join(work, "concdata")
    synthetic.generate_dataset(
        data_dir, num_videos=160, seed=7, num_shards=2, frame_features=True,
        min_frames=10, max_frames=40, feature_sizes=FEATURE_SIZES,
        num_classes=NUM_CLASSES)
    train_dir = os.path.join(work, "conc-run")
    max_steps = 30
    first = _script("train.py", *train_args(data_dir, train_dir, 1, 1))
    watcher = subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, "eval.py"),
         f"--train_dir={train_dir}",
         f"--eval_data_pattern={data_dir}/validate-*", "--top_k=1",
         "--poll_seconds=0.2", "--batch_size=8"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # A shell that started this script in the background may have left
        # SIGINT ignored, and Python keeps an ignored SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    trainer = _script("train.py", *train_args(data_dir, train_dir, max_steps, 1,
                                              "--keep_checkpoint_max=2"))
    time.sleep(5)  # lets the watcher finish the last checkpoint
    watcher.send_signal(signal.SIGINT)
    try:
        _, stderr = watcher.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.communicate()
        return [Row("eval.py watching while train.py writes", 1,
                    "FAILED: the watcher did not stop on SIGINT", False)], []
    # Each evaluation writes its scalars at the checkpoint's step.
    evaluated = logged_steps(os.path.join(train_dir, "eval"),
                             "eval/num_queries")
    ok = (first.returncode == 0 and trainer.returncode == 0
          and watcher.returncode in (0, 130) and "Traceback" not in stderr
          and len(evaluated) > 1 and evaluated == sorted(set(evaluated))
          and evaluated[-1] == max_steps)
    outcome = (f"{len(evaluated)} of {max_steps} checkpoints evaluated, each "
               f"once, in order, the last ckpt-{max_steps}; SIGINT exit "
               f"{watcher.returncode}, no traceback" if ok else
               f"FAILED rc={watcher.returncode} evaluated steps {evaluated} "
               f"{stderr[-800:]}")
    return [Row("eval.py watching while train.py writes (keep 2)", 1, outcome,
                ok)], [f"evaluated: {evaluated}"]


def logged_steps(log_dir, tag):
    """The steps, in the order written, of TensorBoard scalar `tag` in the
    event files of `log_dir`."""
    import tensorflow as tf
    steps = []
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            event = tf.compat.v1.Event.FromString(record)
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return steps


def bad_flags(work):
    """One-line errors naming the flag or path, from the scripts."""
    from yt8m_xmodal import rundir
    data_dir, train_dir = os.path.join(work, "data"), os.path.join(work, "trained")
    if not os.path.isdir(train_dir):
        train_tiny_model(data_dir, train_dir)
    foreign = os.path.join(work, "foreign")
    shutil.rmtree(foreign, ignore_errors=True)
    shutil.copytree(train_dir, foreign)
    flags = rundir.read_model_flags(foreign).replace(
        model="FrameLstmModel",
        model_config={"embedding_dim": 4, "rnn_units": 8, "hidden_units": 16})
    rundir.write_model_flags(foreign, flags)
    pattern = f"--eval_data_pattern={data_dir}/validate-*"
    infer = [f"--input_data_pattern={data_dir}/validate-*"]
    cases = [
        ("eval.py", ["--train_dir=/nonexistent/run", pattern, "--run_once"],
         "--train_dir=/nonexistent/run"),
        ("eval.py", [f"--train_dir={foreign}", pattern, "--run_once"],
         "does not match"),
        ("eval.py", [f"--train_dir={train_dir}", pattern, "--run_once",
                     "--top_k=0"], "--top_k"),
        ("eval.py", [f"--train_dir={train_dir}", pattern, "--run_once",
                     "--top_k=-3"], "--top_k"),
        ("eval.py", [f"--train_dir={train_dir}", pattern, "--run_once",
                     "--top_k=ten"], "--top_k"),
        ("eval.py", [f"--train_dir={train_dir}", pattern, "--run_once",
                     "--top_k=1,,5"], "--top_k"),
        ("eval.py", [f"--train_dir={train_dir}", pattern, "--run_once",
                     "--output_json=/nonexistent/dir/m.json"], "--output_json"),
        ("inference.py", ["--train_dir=/nonexistent/run", *infer,
                          f"--output_file={work}/m.csv"], "/nonexistent/run"),
        ("inference.py", [f"--train_dir={train_dir}", *infer, "--top_k=0",
                          f"--output_file={work}/m.csv"], "--top_k"),
        ("inference.py", [f"--train_dir={train_dir}", *infer, "--top_k=-2",
                          f"--output_file={work}/m.csv"], "--top_k"),
        ("inference.py", [f"--train_dir={train_dir}", *infer,
                          "--output_file=/nonexistent/dir/m.csv"],
         "--output_file"),
        ("inference.py", [f"--train_dir={train_dir}", *infer,
                          "--embeddings_file=/nonexistent/dir/e.npz"],
         "--embeddings_file"),
        ("train.py", train_args(data_dir, f"{work}/fs-run", 2, 2)[:3]
         + ["--feature_sizes=32,8", f"--max_frames={MAX_FRAMES}",
            f"--num_classes={NUM_CLASSES}", "--embedding_dim=4",
            "--batch_size=32", "--subspace_dim=2", "--max_steps=2"],
         "--feature_sizes"),
        ("train.py", train_args(data_dir, f"{work}/fs-run2", 2, 2)[:3]
         + ["--feature_sizes=16,8", "--frame_features=false",
            "--model=VideoLevelMlpModel", f"--num_classes={NUM_CLASSES}",
            "--embedding_dim=4", "--batch_size=32", "--subspace_dim=2",
            "--max_steps=2"], "train-"),
    ]
    failed = []
    for script, args, named in cases:
        out = _script(script, *args, timeout=180)
        if not one_line_error(out, script, named):
            failed.append(f"{script} {' '.join(args[-2:])}: rc={out.returncode} "
                          f"{out.stderr.strip().splitlines()[-3:]}")
    outcome = (f"all {len(cases)}: exit 2, one '<script>: error:' line naming "
               "the flag or path, no traceback" if not failed
               else f"{len(failed)} FAILED: " + " | ".join(failed))
    return [Row("bad flags and paths (eval/inference/train)", len(cases),
                outcome, not failed)], failed


def format_table(rows):
    lines = ["| scenario | cases | outcome | pass |", "|---|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.cases} | {r.outcome} | "
                     f"{'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)


SCENARIOS = ("fuzz", "kill", "nonfinite", "concurrent", "flags")


@dataclasses.dataclass(frozen=True)
class StressConfig:
    """stress_reliability.py's flags."""

    worker: bool = option(False, "Internal: serve fuzz checks to the parent "
                          "process (one JSON job a line on stdin).")
    only: tuple[str, ...] = option(SCENARIOS, "Comma-separated scenarios "
                                   "to run.")
    mutants: int = option(120, "Mutants per level (frame, video).")
    seed: int = option(0, "Seed of the mutants and the kill moments.")
    timeout: float = option(60.0, "Seconds a mutant may take before it is a "
                            "hang.")
    work_dir: str = option("", "Where the runs go (default: a new temporary "
                           "directory).")

    def __post_init__(self):
        unknown = set(self.only) - set(SCENARIOS)
        if not self.only or unknown:
            raise ConfigError(f"{{only}}: names among {','.join(SCENARIOS)}",
                              only=",".join(self.only))


def main(argv=None):
    args = fragments.parse_flags(StressConfig, __doc__, argv)
    if args.worker:
        return worker_main()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = args.work_dir or tempfile.mkdtemp(prefix="stress_reliability_")
    only = args.only
    rows, notes = [], []
    started = time.time()
    scenarios = [("fuzz", lambda: fuzz(work, args.mutants, args.seed,
                                       args.timeout)),
                 ("kill", lambda: kill_and_resume(work, args.seed)),
                 ("nonfinite", lambda: nonfinite(work)),
                 ("concurrent", lambda: concurrent_eval(work)),
                 ("flags", lambda: bad_flags(work))]
    for name, scenario in scenarios:
        if name in only:
            t = time.time()
            r, n = scenario()
            rows += r
            notes += n
            print(f"[{name}: {time.time() - t:.0f} s]", file=sys.stderr,
                  flush=True)
    for note in notes:
        print("  " + note, file=sys.stderr)
    print(format_table(rows))
    print(f"\n{sum(r.cases for r in rows)} cases in {time.time() - started:.0f} s; "
          f"work dir {work}")
    return 0 if rows and all(r.ok is True for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
