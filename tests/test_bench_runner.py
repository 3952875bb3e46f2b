"""`python -m bench`: assembly of BENCHMARKS.md from fragments, and runner
failures. No real benchmark runs here: fake fragments and fake scripts."""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench import fragments  # noqa: E402
from bench import runner  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACHINE = {"cpu": "Fake CPU 9000 (x86_64)", "cores": "2 logical cores usable "
           "(2 visible)", "memory_gib": "24 GiB", "os": "Linux-test",
           "python": "3.11.7", "tensorflow": "2.99.0", "keras": "3.99.0",
           "gpu": "no GPU"}
DATE = "2031-01-02 03:04 UTC"


def _write(directory, name, markdown, figures, quick=False, **meta):
    os.makedirs(directory, exist_ok=True)
    record = {"benchmark": name, "quick": quick, "date": DATE,
              "machine": MACHINE, "command": f"python bench/bench_{name}.py",
              **meta, **figures}
    with open(os.path.join(directory, f"{name}.md"), "w") as f:
        f.write((fragments.QUICK_BANNER + "\n\n" if quick else "") + markdown)
    with open(os.path.join(directory, f"{name}.json"), "w") as f:
        json.dump(record, f)


READER_TABLE = ("| reader | examples/s |\n|---|---:|\n"
                "| (a) ours: YT8MFrameFeatureReader (batch parse) | 2,476 |\n")


def _reader_rows(ours, starter, raw):
    return [{"reader": "(a)", "role": "ours", "examples_per_s": ours,
             "cpu_ms_per_example": 0.5},
            {"reader": "(b)", "role": "starter", "examples_per_s": starter,
             "cpu_ms_per_example": 0.4},
            {"reader": "(c)", "role": "raw", "examples_per_s": raw,
             "cpu_ms_per_example": 0.1},
            {"reader": "(c')", "role": "raw_batched",
             "examples_per_s": raw * 1.4, "cpu_ms_per_example": 0.1}]


def _model_rows(chunk, lstm, mean):
    return [{"row": row, "model": row, "input_projection_units": 0,
             "examples_per_s": rate, "cpu_ms_per_example": 1.0,
             "parameters": 1}
            for row, rate in (("ChunkAttentionModel", chunk),
                              ("FrameLstmModel", lstm),
                              ("MeanPoolModel", mean))]


def _loss_rows(baseline, dcca):
    return [{"loss": "baseline: naive float32 DCCA (stock eigh grad)",
             "baseline": True, "median_ms": baseline, "min_ms": 1.0,
             "finite": True},
            {"loss": "dcca", "baseline": False, "median_ms": dcca,
             "min_ms": 1.0, "finite": True}]


@pytest.fixture
def results(tmp_path):
    """Fake fragments of every benchmark but frame_level, and notes."""
    out = tmp_path / "results"
    _write(out, "reader", "Frame-level reading, fake\n\n" + READER_TABLE,
           {"frame_level": {"rows": _reader_rows(2476.0, 3303.0, 6759.0)},
            "video_level": {"rows": _reader_rows(46375.0, 16972.0,
                                                 41081.0)}})
    _write(out, "models", "| model | train examples/s |\n|---|---:|\n"
           "| ChunkAttentionModel | 221.0 |\n",
           {"baseline": "FrameLstmModel",
            "rows": _model_rows(221.0, 115.7, 1230.1)})
    _write(out, "losses", "| loss | median ms |\n|---|---:|\n| dcca | 27.8 |\n",
           {"rows": _loss_rows(16.8, 27.8)})
    _write(out, "eval", "| part | N |\n|---|---:|\n| ours | 100,000 |\n",
           {"n": 100000, "small_n": 10000, "rows": [
               {"part": "matmul_tf", "n": 100000, "wall_s": 10.0},
               {"part": "matmul_xla", "n": 100000, "wall_s": 7.92},
               {"part": "ours", "n": 100000, "wall_s": 14.14},
               {"part": "ours", "n": 10000, "wall_s": 0.43},
               {"part": "naive_numpy", "n": 10000, "wall_s": 1.28}]})
    # Like video_level_results.py: no command/date/machine of its own, a
    # top-level heading and a plot linked relative to the results folder.
    with open(out / "video_level.md", "w") as f:
        f.write("# Video-level cross-modal retrieval\n\n| system | R@10 |\n"
                "|---|---|\n| fusion + CSLS | 0.349 |\n\n"
                "![R@10 vs gallery size](video_level_recall_vs_gallery.png)\n")
    with open(out / "video_level.json", "w") as f:
        json.dump({"fusion + CSLS": {"validation_r10": 0.35}}, f)
    (out / "video_level_recall_vs_gallery.png").write_bytes(b"\x89PNG")
    (out / "video_level_extra.png").write_bytes(b"\x89PNG")
    with open(out / runner.RUNS_FILE, "w") as f:
        json.dump({"video_level": {
            "command": "python bench/video_level_results.py "
                       "--work_dir=/tmp/vl", "date": "2031-01-01 00:00 UTC",
            "seconds": 480.0, "quick": False, "machine": MACHINE}}, f)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "reader.md").write_text("READER METHOD PROSE\n\n"
                                     f"{runner.TABLES_MARKER}\n\n"
                                     "READER AFTER-TABLE PROSE\n")
    (notes / "intro.md").write_text("INTRO PROSE\n")
    return out, notes


def _assemble(tmp_path, results):
    out, notes = results
    md = tmp_path / "BENCHMARKS.md"
    text = runner.assemble(str(out), str(md), str(notes))
    assert md.read_text() == text
    return text


def _section(text, title):
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_assembles_header_summary_and_sections(tmp_path, results):
    text = _assemble(tmp_path, results)
    assert text.startswith("# Benchmarks\n")
    assert "Generated by `python -m bench`" in text
    assert "do not edit by hand" in text
    assert f"**Machine:** {fragments.describe_machine(MACHINE)}" in text
    assert "TensorFlow 2.99.0, Keras 3.99.0, GPU: no GPU" in text
    assert f"**Date of the runs:** 2031-01-01 00:00 UTC to {DATE}" in text
    assert "INTRO PROSE" in text
    assert "WARNING" not in text and "QUICK" not in text

    summary = _section(text, "Throughput summary")
    # Figures and their same-run baselines only: targets are the scripts'
    # and the notes' business, not the generator's.
    assert "goal" not in summary.lower() and "met |" not in summary
    # Ratios are computed from the same-run baseline in each fragment.
    assert ("| Reader, frame level | CPU | examples/s (higher is better) | "
            "(a) ours: 2,476 | (b) starter-style: 3,303 | 0.75× |") in summary
    assert "(c) raw records, no parsing: 6,759 | 0.37× |" in summary
    assert "| Reader, video level | CPU |" in summary
    assert ("ChunkAttentionModel: 221.0 | FrameLstmModel: 115.7 | 1.91× |"
            in summary)
    assert "MeanPoolModel: 1,230 | FrameLstmModel: 115.7 | 10.63× |" in summary
    assert ("dcca (ours): 27.8 ms | naive float32 DCCA: 16.8 ms | 1.65× |"
            in summary)
    # The fastest of the two matmuls is the baseline; 14.14 / 7.92.
    assert ("| Retrieval eval, N = 100,000 | CPU | wall s (lower is better) "
            "| ours (exact R@K, ranks): 14.14 s | matmul_xla: 7.92 s | "
            "1.79× |") in summary
    assert "naive_numpy: 1.28 s | 0.34× |" in summary

    reader = _section(text, "Reader")
    assert "Command: `python bench/bench_reader.py`" in reader
    assert "| (a) ours: YT8MFrameFeatureReader (batch parse) | 2,476 |" in reader
    # Notes before the marker precede the tables, the rest follows them.
    assert (reader.index("READER METHOD PROSE") < reader.index("| reader |")
            < reader.index("READER AFTER-TABLE PROSE"))
    # Same date and machine as the header: not repeated.
    assert DATE not in reader and "machine:" not in reader

    video = _section(text, "Real video-level retrieval")
    # No command in its JSON: the runner's record is used, with its date.
    assert ("Command: `python bench/video_level_results.py --work_dir=/tmp/vl`"
            " — run 2031-01-01 00:00 UTC; took 8.0 min") in video
    assert "### Video-level cross-modal retrieval" in video
    assert ("![R@10 vs gallery size](results/video_level_recall_vs_gallery"
            ".png)") in video
    assert video.count("video_level_recall_vs_gallery.png") == 1
    assert "![video level extra](results/video_level_extra.png)" in video

    assert "_No results yet" in _section(text, "Frame-level retrieval (synthetic data)")
    gpu = _section(text, "GPU")
    assert "No GPU was available on the machine" in gpu
    assert text.index("## Retrieval evaluation") < text.index("## GPU") < \
        text.index("## Frame-level retrieval")


def test_section_names_a_different_machine_and_date(tmp_path, results):
    out, _ = results
    other = dict(MACHINE, cpu="Other CPU (arm64)")
    _write(out, "losses", "| loss | median ms |\n", {
        "rows": _loss_rows(10.0, 20.0)}, date="2030-05-05 05:05 UTC",
        machine=other)
    losses = _section(_assemble(tmp_path, results), "Losses")
    assert "run 2030-05-05 05:05 UTC" in losses
    assert "machine: Other CPU (arm64)" in losses


def test_quick_fragment_is_flagged_and_kept_out_of_the_repo(
        tmp_path, results, monkeypatch):
    out, notes = results
    _write(out, "losses", "| loss | median ms |\n|---|---:|\n",
           {"rows": _loss_rows(1.0, 0.5)}, quick=True)
    text = _assemble(tmp_path, results)
    assert "WARNING: QUICK-MODE fragments (losses)" in text
    assert ("| Loss, forward + backward **(QUICK run: not a real figure)** |"
            in text)
    assert fragments.QUICK_BANNER in _section(text, "Losses")
    assert fragments.QUICK_BANNER not in _section(text, "Reader")
    # The repository's BENCHMARKS.md is never written from quick fragments.
    fake_repo_md = tmp_path / "repo_BENCHMARKS.md"
    fake_repo_md.write_text("real figures\n")
    monkeypatch.setattr(runner, "DEFAULT_BENCHMARKS_MD", str(fake_repo_md))
    with pytest.raises(SystemExit, match="quick.*losses"):
        runner.assemble(str(out), str(fake_repo_md), str(notes))
    assert fake_repo_md.read_text() == "real figures\n"


def test_gpu_figures_beside_cpu_naming_the_card(tmp_path, results):
    out, _ = results
    card = "NVIDIA H100 80GB HBM3"
    gpu = out / runner.GPU_SUBDIR
    _write(gpu, "models", "| model | train examples/s |\n",
           {"baseline": "FrameLstmModel",
            "rows": _model_rows(1500.0, 300.0, 9000.0)},
           tf_visible_gpus=[card], command="python bench/bench_models.py "
           "--output_dir=bench/results/gpu")
    _write(gpu, "losses", "| loss | median ms |\n",
           {"rows": _loss_rows(4.0, 2.0)}, tf_visible_gpus=[card])
    text = _assemble(tmp_path, results)
    summary = _section(text, "Throughput summary")
    assert (f"| Model train step | GPU: {card} | train examples/s (higher is "
            "better) | ChunkAttentionModel: 1,500 | FrameLstmModel: 300.0 | "
            "5.00× |") in summary
    assert "| Model train step | CPU |" in summary
    assert f"| Loss, forward + backward | GPU: {card} |" in summary
    gpu_section = text[text.index("\n## GPU\n"):
                       text.index("\n## Frame-level retrieval")]
    assert "No GPU was available" not in gpu_section
    assert f"| model | CPU | GPU ({card}) | GPU ÷ CPU |" in gpu_section
    assert "| ChunkAttentionModel | 221.0 | 1,500 | 6.8× |" in gpu_section
    assert "| dcca | 27.8 ms | 2.0 ms | 13.9× |" in gpu_section
    assert ("Command: `python bench/bench_models.py "
            "--output_dir=bench/results/gpu`") in gpu_section
    assert f"\n### Model train step on the GPU ({card})\n" in gpu_section
    assert "## #" not in text


FAKE_SCRIPT = """\
import json, os, sys
name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--output_dir=")]
os.makedirs(out[0], exist_ok=True)
if name != "silent":
    with open(os.path.join(out[0], name + ".md"), "w") as f:
        f.write("| fake | table |\\n|---|---|\\n| 1 | 2 |\\n")
sys.exit(3 if name == "boom" else 0)
"""


def _fake_root(tmp_path, *names):
    root = tmp_path / "root"
    (root / "bench").mkdir(parents=True)
    for name in names:
        (root / "bench" / f"{name}.py").write_text(FAKE_SCRIPT)
    return root


def _bench(name, **kwargs):
    return runner.Benchmark(name, name.title(), f"bench/{name}.py", **kwargs)


def _main(tmp_path, root, registry, *extra):
    out, md = tmp_path / "out", tmp_path / "B.md"
    argv = [f"--output_dir={out}", f"--benchmarks_md={md}", "--gpu=no",
            f"--notes_dir={tmp_path / 'no_notes'}", *extra]
    return runner.main(argv, benchmarks=registry, root=str(root)), out, md


def test_runs_each_benchmark_and_records_its_command(tmp_path):
    root = _fake_root(tmp_path, "ok", "other")
    registry = (_bench("ok", args=("--flag=1",)), _bench("other"))
    rc, out, md = _main(tmp_path, root, registry, "--only=ok")
    assert rc == 0
    runs = json.loads((out / runner.RUNS_FILE).read_text())
    assert list(runs) == ["ok"]  # --only
    assert runs["ok"]["command"] == (f"python bench/ok.py --flag=1 "
                                     f"--output_dir={out}")
    assert runs["ok"]["quick"] is False
    text = md.read_text()
    assert f"Command: `python bench/ok.py --flag=1 --output_dir={out}`" in text
    assert "| fake | table |" in text
    assert "_No results yet" in _section(text, "Other")


def test_quick_passes_quick_flag_and_flags_the_output(tmp_path):
    root = _fake_root(tmp_path, "ok", "slow")
    registry = (_bench("ok"), _bench("slow", quick_args=None))
    rc, out, md = _main(tmp_path, root, registry, "--quick")
    assert rc == 0
    runs = json.loads((out / runner.RUNS_FILE).read_text())
    assert runs["ok"]["command"].endswith(f"--quick --output_dir={out}")
    assert runs["ok"]["quick"] is True
    assert "slow" not in runs  # no quick mode: skipped, not run at full size
    assert "WARNING: QUICK-MODE fragments (ok)" in md.read_text()
    # Named explicitly, a benchmark without a quick mode is an error.
    with pytest.raises(SystemExit, match="no quick mode in 'slow'"):
        _main(tmp_path, root, registry, "--quick", "--only=slow")


def test_failing_benchmark_names_it_and_leaves_the_file(tmp_path):
    root = _fake_root(tmp_path, "ok", "boom", "silent")
    registry = (_bench("ok"), _bench("boom"), _bench("silent"))
    md = tmp_path / "B.md"
    md.write_text("old\n")
    with pytest.raises(SystemExit) as failure:
        _main(tmp_path, root, registry)
    message = str(failure.value)
    assert "benchmark 'boom' FAILED with exit status 3" in message
    assert "benchmark 'silent' exited 0 but did not write" in message
    assert "--only=boom,silent" in message
    assert "'ok'" not in message
    assert md.read_text() == "old\n"  # not rewritten
    assert (tmp_path / "out" / "ok.md").exists()  # the others still ran


def test_missing_script_is_named_before_anything_runs(tmp_path):
    root = _fake_root(tmp_path, "ok")
    registry = (_bench("ok"), runner.Benchmark(
        "frame_level", "Frame level", "bench/frame_level_results.py"))
    with pytest.raises(SystemExit,
                       match="'frame_level' needs bench/frame_level_results"):
        _main(tmp_path, root, registry)
    assert not (tmp_path / "out" / "ok.md").exists()


def test_quick_never_targets_the_repository():
    args = runner.parse_args(["--quick"], runner.BENCHMARKS)
    assert args.output_dir.startswith(runner.QUICK_ROOT)
    assert args.benchmarks_md.startswith(runner.QUICK_ROOT)
    with pytest.raises(SystemExit):
        runner.parse_args(["--quick", f"--output_dir={runner.DEFAULT_OUTPUT_DIR}"],
                          runner.BENCHMARKS)
    with pytest.raises(SystemExit):
        runner.parse_args(["--quick", "--benchmarks_md=BENCHMARKS.md"],
                          runner.BENCHMARKS)
    assert runner.parse_args([], runner.BENCHMARKS).only == (
        "reader", "models", "losses", "eval", "export", "index", "serve",
        "pipelines", "extract", "train_rate", "demo", "frame_level",
        "video_level", "learning_curve")


def test_fragment_writer_marks_quick_runs(tmp_path, capsys):
    printed = fragments.capture_stdout()
    print("| a | b |")
    assert printed.stop() == "| a | b |\n"
    fragments.write(str(tmp_path), "x", "| a | b |\n", {"rows": [1]}, True)
    assert (tmp_path / "x.md").read_text().startswith(fragments.QUICK_BANNER)
    record = json.loads((tmp_path / "x.json").read_text())
    assert record["quick"] is True and record["rows"] == [1]
    assert record["command"].startswith("python ")
    assert set(fragments.MACHINE_KEYS) <= set(record["machine"])
    assert "| a | b |" in capsys.readouterr().out


def test_cli_names_unknown_benchmark_and_assembles(tmp_path, results):
    out, notes = results
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", "bench", "--only=bogus"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "bogus" in done.stderr
    md = tmp_path / "cli.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--assemble_only",
         f"--output_dir={out}", f"--benchmarks_md={md}",
         f"--notes_dir={notes}"], cwd=REPO, env=env, capture_output=True,
        text=True)
    assert done.returncode == 0, done.stderr
    assert "## Throughput summary" in md.read_text()


def test_gpu_only_reruns_just_the_gpu_jobs_and_keeps_cpu_fragments(
        tmp_path, monkeypatch):
    root = _fake_root(tmp_path, "cpu_only", "both")
    registry = (_bench("cpu_only", throughput=True),
                _bench("both", throughput=True, gpu=True))
    out = tmp_path / "out"
    out.mkdir()
    (out / "both.md").write_text("| cpu | figures |\n|---|---|\n| 7 | 8 |\n")
    monkeypatch.setattr(runner, "detect_gpus",
                        lambda mode: ["Fake GPU"] if mode != "no" else [])
    rc, out, md = _main(tmp_path, root, registry, "--gpu=only")
    assert rc == 0
    assert not (out / runner.RUNS_FILE).exists()  # no CPU job ran
    assert not (out / "cpu_only.md").exists()
    assert (out / "both.md").read_text().startswith("| cpu | figures |")
    gpu_runs = json.loads((out / runner.GPU_SUBDIR / runner.RUNS_FILE)
                          .read_text())
    assert list(gpu_runs) == ["both"]
    assert "CUDA_VISIBLE_DEVICES" not in gpu_runs["both"]["command"]
    # Asked for benchmarks none of which runs on a GPU, it refuses.
    with pytest.raises(SystemExit):
        _main(tmp_path, root, registry, "--gpu=only", "--only=cpu_only")


def test_gpu_only_without_a_gpu_names_the_flag(monkeypatch):
    monkeypatch.setattr(runner.fragments, "gpu_names", lambda: [])
    monkeypatch.setattr(runner.glob, "glob", lambda pattern: [])
    with pytest.raises(SystemExit, match="--gpu=only but TensorFlow sees no "
                       "GPU"):
        runner.detect_gpus("only")
