"""Reruns the benchmarks and experiments and rewrites BENCHMARKS.md.

    python -m bench                      # everything, then BENCHMARKS.md
    bench/run_all.sh                     # the same
    python -m bench --only=reader,losses # some, then BENCHMARKS.md
    python -m bench --assemble_only      # no reruns: BENCHMARKS.md from
                                         # bench/results + bench/notes
    python -m bench --quick --only=losses  # smoke run, tiny sizes, written
                                           # under /tmp (never into the repo)

Each benchmark runs as a subprocess with the exact command line recorded in
its fragment (`bench/results/<name>.md` + `<name>.json`). A benchmark that
fails, is missing, or exits without writing its fragment stops the runner
with an error naming it, and BENCHMARKS.md is then left as it was.

Where TensorFlow sees a GPU, the throughput benchmarks run with the GPU
hidden (CUDA_VISIBLE_DEVICES=, recorded in their commands), and the model
train step and the losses run a second time with it, into
`bench/results/gpu/`; BENCHMARKS.md shows both, naming the card.

`bench/stress_reliability.py` is not run here: its figures go to
RELIABILITY.md.
"""

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

try:
    from bench import fragments
except ImportError:  # run from inside bench/
    import fragments
from yt8m_xmodal.config import option
from yt8m_xmodal.errors import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT_DIR = os.path.join(REPO_ROOT, "bench", "results")
DEFAULT_BENCHMARKS_MD = os.path.join(REPO_ROOT, "BENCHMARKS.md")
DEFAULT_NOTES_DIR = os.path.join(REPO_ROOT, "bench", "notes")
QUICK_ROOT = os.path.join(tempfile.gettempdir(), "yt8m_bench_quick")
GPU_SUBDIR = "gpu"
RUNS_FILE = "runs.json"
TABLES_MARKER = "<!-- tables -->"


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    script: str  # relative to the repository root
    args: tuple = ()
    quick_args: tuple = ("--quick",)  # None: the script has no quick mode
    throughput: bool = False  # a timing: runs with any GPU hidden
    gpu: bool = False  # also run with the GPU visible, where there is one

    def script_path(self, root=REPO_ROOT):
        return os.path.join(root, self.script)

    def quick_flags(self, root=REPO_ROOT):
        del root  # the same for every checkout
        return None if self.quick_args is None else tuple(self.quick_args)


BENCHMARKS = (
    Benchmark("reader", "Reader", "bench/bench_reader.py", throughput=True),
    Benchmark("models", "Model train step", "bench/bench_models.py",
              ("--input_projection_units=0,128,64,32",), throughput=True,
              gpu=True),
    Benchmark("losses", "Losses", "bench/bench_losses.py",
              ("--xla", "--repeats=20"), throughput=True, gpu=True),
    Benchmark("eval", "Retrieval evaluation", "bench/bench_eval.py",
              throughput=True),
    Benchmark("export", "Export cost at scale", "bench/bench_export.py",
              throughput=True),
    Benchmark("index", "Search index", "bench/bench_index.py",
              throughput=True),
    Benchmark("serve", "Search service", "bench/bench_serve.py",
              throughput=True),
    Benchmark("pipelines", "Beam pipelines: subset and embedding",
              "bench/bench_pipelines.py", throughput=True),
    Benchmark("extract", "Media extraction (your own songs and videos)",
              "bench/bench_extract.py", throughput=True),
    Benchmark("train_rate", "Training loop against plain keras fit",
              "bench/bench_train_rate.py", throughput=True, quick_args=None),
    # README's command (1) against main before issue 25 (7f721e2).
    Benchmark("demo", "Demo command (README quick start (1))",
              "bench/bench_demo.py", ("--tree=.", "--baseline_ref=7f721e2"),
              quick_args=None),
    # A quick run gets its own --work_dir: the script reuses the data and
    # runs it finds there.
    Benchmark("frame_level", "Frame-level retrieval (synthetic data)",
              "bench/frame_level_results.py",
              quick_args=("--quick", "--work_dir=" + os.path.join(
                  QUICK_ROOT, "frame_level_work"))),
    Benchmark("video_level", "Real video-level retrieval",
              "bench/video_level_results.py", quick_args=None),
    Benchmark("learning_curve", "Learning curve (real video-level data)",
              "bench/learning_curve.py", quick_args=None),
)


class BenchmarkError(SystemExit):
    """Exits non-zero with a message that names the benchmark(s)."""


# --------------------------------------------------------------------------
# Running


def _display_path(path):
    path = os.path.abspath(path)
    rel = os.path.relpath(path, REPO_ROOT)
    return path if rel.startswith("..") else rel


def detect_gpus(mode):
    """Names of the GPUs TensorFlow can use ([] for none); mode auto/yes/no."""
    if mode == "no":
        return []
    names = []
    if fragments.gpu_names() or glob.glob("/dev/nvidia[0-9]*"):
        probe = ("import json, os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; "
                 "import tensorflow as tf; print(json.dumps(["
                 "tf.config.experimental.get_device_details(d).get("
                 "'device_name', d.name) for d in "
                 "tf.config.list_physical_devices('GPU')]))")
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            names = json.loads(done.stdout.strip().splitlines()[-1])
    if mode in ("yes", "only") and not names:
        raise BenchmarkError(f"--gpu={mode} but TensorFlow sees no GPU here")
    return names


def _command(bench, output_dir, quick, root):
    argv = [bench.script, *bench.args]
    if quick:
        argv += list(bench.quick_flags(root) or ())
    if os.path.abspath(output_dir) != os.path.join(
            os.path.abspath(root), "bench", "results"):
        argv.append(f"--output_dir={_display_path(output_dir)}")
    return argv


def run_one(bench, output_dir, quick, env_extra, root=REPO_ROOT, label=""):
    """Runs one benchmark; returns its run record, or raises BenchmarkError."""
    argv = _command(bench, output_dir, quick, root)
    shown = fragments.command_line(argv, env_extra)
    print(f"\n=== {label}{bench.name}: {shown}", flush=True)
    env = dict(os.environ, **env_extra)
    fragment = os.path.join(output_dir, f"{bench.name}.md")
    start, date = time.time(), fragments.utc_now()
    try:
        done = subprocess.run([sys.executable, *argv], cwd=root, env=env,
                              check=False)
    except OSError as e:
        raise BenchmarkError(f"benchmark {bench.name!r} could not start "
                             f"({shown}): {e}") from e
    seconds = time.time() - start
    if done.returncode != 0:
        raise BenchmarkError(
            f"benchmark {bench.name!r} FAILED with exit status "
            f"{done.returncode} after {seconds:.0f} s: {shown}")
    if (not os.path.exists(fragment)
            or os.path.getmtime(fragment) < start - 1):
        raise BenchmarkError(
            f"benchmark {bench.name!r} exited 0 but did not write "
            f"{_display_path(fragment)}: {shown}")
    record = {"command": shown, "date": date, "seconds": round(seconds, 1),
              "quick": bool(quick), "machine": fragments.machine_info()}
    runs_path = os.path.join(output_dir, RUNS_FILE)
    runs = _read_json(runs_path)
    runs[bench.name] = record
    with open(runs_path, "w") as f:
        json.dump(runs, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"=== {bench.name}: done in {seconds:.0f} s", flush=True)
    return record


def run_all(selected, output_dir, quick, gpus, root=REPO_ROOT, cpu=True):
    """Runs the selected benchmarks (CPU, then GPU); all or nothing.

    cpu=False runs only the GPU jobs and keeps the CPU fragments that are
    already in output_dir (e.g. a lent GPU machine whose host CPU is not the
    reference machine).
    """
    missing = [b for b in selected if not os.path.exists(b.script_path(root))]
    if missing:
        raise BenchmarkError("missing benchmark script(s), nothing was run: "
                             + "; ".join(f"{b.name!r} needs {b.script}"
                                         for b in missing))
    os.makedirs(output_dir, exist_ok=True)
    hide = {"CUDA_VISIBLE_DEVICES": ""} if gpus else {}
    jobs = ([(b, output_dir, hide if b.throughput else {}, "")
             for b in selected] if cpu else [])
    if gpus:
        jobs += [(b, os.path.join(output_dir, GPU_SUBDIR), {},
                  f"GPU ({gpus[0]}) ") for b in selected if b.gpu]
    failures, failed = [], []
    for i, (bench, directory, env, label) in enumerate(jobs):
        os.makedirs(directory, exist_ok=True)
        try:
            run_one(bench, directory, quick, env, root,
                    f"[{i + 1}/{len(jobs)}] {label}")
        except BenchmarkError as e:
            print(f"=== {e}", file=sys.stderr, flush=True)
            failures.append(str(e))
            failed += [bench.name] if bench.name not in failed else []
    if failures:
        names = ",".join(failed)
        raise BenchmarkError(
            f"{len(failures)} benchmark run(s) FAILED ({names}), so the "
            "benchmarks file was NOT rewritten. The other runs' fragments "
            f"are in {_display_path(output_dir)}; after a fix, rerun with "
            f"`python -m bench --only={names}`.\n  " + "\n  ".join(failures))


# --------------------------------------------------------------------------
# Assembly


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


@dataclasses.dataclass
class Fragment:
    name: str
    directory: str
    markdown: str  # None when the benchmark has not written one
    figures: dict
    run: dict  # the runner's record of the run, {} if none

    @property
    def command(self):
        return self.figures.get("command") or self.run.get("command")

    @property
    def date(self):
        return self.figures.get("date") or self.run.get("date")

    @property
    def machine(self):
        return self.figures.get("machine") or self.run.get("machine")

    @property
    def quick(self):
        return bool(self.figures.get("quick") or self.run.get("quick")
                    or (self.markdown and fragments.QUICK_BANNER
                        in self.markdown))


def load_fragment(directory, name):
    return Fragment(name, directory,
                    _read(os.path.join(directory, f"{name}.md")),
                    _read_json(os.path.join(directory, f"{name}.json")),
                    _read_json(os.path.join(directory, RUNS_FILE)).get(name,
                                                                       {}))


_LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)\)")


def _rebase_links(text, from_dir, to_dir):
    """Relative links of a fragment, made relative to BENCHMARKS.md."""
    def fix(match):
        target = match.group(2)
        if re.match(r"^([a-z]+:|#|/)", target):
            return match.group(0)
        path = os.path.relpath(os.path.join(from_dir, target), to_dir)
        return f"{match.group(1)}({path})"
    return _LINK.sub(fix, text)


def _demote_headings(text, levels=2):
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"^#{1,6} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def _notes(notes_dir, name):
    """(before the tables, after them) from bench/notes/<name>.md."""
    text = _read(os.path.join(notes_dir, f"{name}.md")) or ""
    before, _, after = text.partition(TABLES_MARKER)
    return before.strip(), after.strip()


def _fmt(value, unit):
    if unit == "examples/s":
        return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:g}"


def _row(bench, measure, unit, ours, baseline):
    """A summary row; ours / baseline are (name, value)."""
    ratio = ours[1] / baseline[1] if baseline[1] else float("nan")
    return (bench, measure, f"{ours[0]}: {_fmt(ours[1], unit)}",
            f"{baseline[0]}: {_fmt(baseline[1], unit)}", f"{ratio:.2f}×")


def _summary_reader(figures):
    rows = []
    for level, label in (("frame_level", "Reader, frame level"),
                         ("video_level", "Reader, video level")):
        part = figures.get(level)
        if not part:
            continue
        by_role = {r["role"]: r for r in part["rows"]}
        ours = ("(a) ours", by_role["ours"]["examples_per_s"])
        for role, name in (("starter", "(b) starter-style"),
                           ("raw", "(c) raw records, no parsing")):
            rows.append(_row(label, "examples/s (higher is better)",
                             "examples/s", ours,
                             (name, by_role[role]["examples_per_s"])))
    return rows


def _summary_models(figures):
    rows = {r["row"]: r for r in figures.get("rows", ())}
    baseline = rows.get(figures.get("baseline", "FrameLstmModel"))
    if not baseline:
        return []
    out = []
    for name in ("ChunkAttentionModel", "MeanPoolModel"):
        if name in rows:
            out.append(_row("Model train step", "train examples/s (higher "
                            "is better)", "examples/s",
                            (name, rows[name]["examples_per_s"]),
                            (baseline["row"], baseline["examples_per_s"])))
    return out


def _summary_losses(figures):
    rows = figures.get("rows", ())
    baseline = next((r for r in rows if r.get("baseline")), None)
    ours = next((r for r in rows if r["loss"] == "dcca"), None)
    if not (baseline and ours):
        return []
    return [_row("Loss, forward + backward", "median ms (lower is better)",
                 "ms", ("dcca (ours)", ours["median_ms"]),
                 ("naive float32 DCCA", baseline["median_ms"]))]


def _summary_eval(figures):
    rows = figures.get("rows", ())
    out = []
    for n, baseline_parts in (
            (figures.get("n"), ("matmul_tf", "matmul_xla")),
            (figures.get("small_n"), ("naive_numpy",))):
        ours = next((r for r in rows if r["part"] == "ours"
                     and r["n"] == n), None)
        bases = [r for r in rows if r["part"] in baseline_parts
                 and r["n"] == n]
        if ours and bases:
            base = min(bases, key=lambda r: r["wall_s"])
            out.append(_row(f"Retrieval eval, N = {n:,}", "wall s (lower is "
                            "better)", "s", ("ours (exact R@K, ranks)",
                                             ours["wall_s"]),
                            (base["part"], base["wall_s"])))
    return out


SUMMARIES = {"reader": _summary_reader, "models": _summary_models,
             "losses": _summary_losses, "eval": _summary_eval}


def _gpu_card(fragment):
    names = fragment.figures.get("tf_visible_gpus") or []
    if names:
        return ", ".join(names)
    machine = fragment.machine or {}
    return machine.get("gpu", "GPU")


def summary_table(cpu, gpu):
    """The throughput summary: (markdown, names with no figures)."""
    lines = ["| benchmark | device | measure | ours | baseline (same run) "
             "| ours ÷ baseline |",
             "|---|---|---|---|---|---:|"]
    absent = []
    for name, extract in SUMMARIES.items():
        for fragment, device in ((cpu.get(name), "CPU"),
                                 (gpu.get(name), None)):
            if fragment is None or not fragment.figures:
                if device == "CPU":
                    absent.append(name)
                continue
            device = device or f"GPU: {_gpu_card(fragment)}"
            flag = " **(QUICK run: not a real figure)**" if fragment.quick else ""
            try:
                rows = extract(fragment.figures)
            except (KeyError, TypeError, ValueError) as e:
                raise BenchmarkError(
                    f"benchmark {name!r}: {fragment.directory}/{name}.json "
                    f"lacks the figures the summary needs ({e!r})") from e
            for bench, measure, ours, base, ratio in rows:
                lines.append(f"| {bench}{flag} | {device} | {measure} | "
                             f"{ours} | {base} | {ratio} |")
    return "\n".join(lines), absent


# Per benchmark shown on the GPU: (title, key column, value, unit, whether
# higher is better).
_GPU_TABLES = (
    ("models", "Frame-level train step", "model", "row", "examples_per_s",
     "examples/s", True),
    ("losses", "Losses, forward + backward", "loss", "loss", "median_ms",
     "ms", False),
)


def _gpu_comparison(cpu, gpu):
    """Tables with GPU figures beside the CPU ones."""
    parts = []
    for name, title, column, key, value, unit, higher in _GPU_TABLES:
        on_gpu, on_cpu = gpu.get(name), cpu.get(name)
        if not (on_gpu and on_gpu.figures):
            continue
        card = _gpu_card(on_gpu)
        cpu_rows = {r[key]: r for r in (on_cpu.figures.get("rows", ())
                                        if on_cpu else ())}
        better = "higher" if higher else "lower"
        speedup = "GPU ÷ CPU" if higher else "CPU ÷ GPU"
        lines = [f"**{title}** ({unit}, {better} is better); GPU: {card}", "",
                 f"| {column} | CPU | GPU ({card}) | {speedup} |",
                 "|---|---:|---:|---:|"]
        for row in on_gpu.figures.get("rows", ()):
            cpu_row = cpu_rows.get(row[key])
            cpu_text, ratio = "–", "–"
            if cpu_row:
                cpu_text = _fmt(cpu_row[value], unit)
                gain = (row[value] / cpu_row[value] if higher
                        else cpu_row[value] / row[value])
                ratio = f"{gain:.1f}×"
            lines.append(f"| {row[key]} | {cpu_text} | "
                         f"{_fmt(row[value], unit)} | {ratio} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _day(date):
    return (date or "")[:10]


def _section(bench, fragment, header_machine, header_day, md_dir, notes_dir,
             heading=None, include_notes=True, level="##"):
    out = [f"{level} {heading or bench.title}", ""]
    if fragment.markdown is None:
        out += [f"_No results yet: `{bench.script}` has not written "
                f"`{_display_path(os.path.join(fragment.directory, bench.name))}"
                f".md`. Run `python -m bench --only={bench.name}`._", ""]
        if include_notes:
            before, after = _notes(notes_dir, bench.name)
            out += [t for t in (before, after) if t]
        return "\n".join(out).rstrip()
    command = fragment.command
    line = (f"Command: `{command}`" if command else
            f"Command: not recorded (default: `python {bench.script}`)")
    facts = []
    if fragment.date and _day(fragment.date) != header_day:
        facts.append(f"run {fragment.date}")
    elif not fragment.date:
        facts.append("date not recorded")
    if fragment.run.get("seconds"):
        facts.append(f"took {fragment.run['seconds'] / 60:.1f} min")
    if fragment.machine and not fragments.same_machine(fragment.machine,
                                                       header_machine):
        facts.append("machine: "
                     + fragments.describe_machine(fragment.machine))
    if facts:
        line += " — " + "; ".join(facts)
    out += [line, ""]
    if fragment.quick:
        out += [fragments.QUICK_BANNER, ""]
    before, after = (_notes(notes_dir, bench.name) if include_notes
                     else ("", ""))
    if before:
        out += [before, ""]
    body = _rebase_links(fragment.markdown.strip(), fragment.directory,
                         md_dir)
    body = body.replace(fragments.QUICK_BANNER, "").strip()
    out += [_demote_headings(body), ""]
    for png in sorted(glob.glob(os.path.join(fragment.directory,
                                             f"{bench.name}*.png"))):
        rel = os.path.relpath(png, md_dir)
        if f"({rel})" not in body:
            stem = os.path.splitext(os.path.basename(png))[0]
            out += [f"![{stem.replace('_', ' ')}]({rel})", ""]
    if after:
        out += [after, ""]
    return "\n".join(out).rstrip()


def _header_machine_and_date(loaded):
    """The machine most fragments ran on, and the latest run date."""
    machines = [f.machine for f in loaded if f.machine]
    groups = []
    for machine in machines:
        for group in groups:
            if fragments.same_machine(group[0], machine):
                group.append(machine)
                break
        else:
            groups.append([machine])
    machine = (max(groups, key=len)[0] if groups
               else fragments.machine_info())
    dates = sorted(f.date for f in loaded if f.date)
    return machine, (dates[-1] if dates else None), (dates[0] if dates
                                                      else None)


def assemble(output_dir, benchmarks_md, notes_dir=DEFAULT_NOTES_DIR,
             benchmarks=BENCHMARKS):
    """BENCHMARKS.md from the fragments in output_dir; returns its text."""
    md_dir = os.path.dirname(os.path.abspath(benchmarks_md))
    gpu_dir = os.path.join(output_dir, GPU_SUBDIR)
    cpu = {b.name: load_fragment(output_dir, b.name) for b in benchmarks}
    gpu = {b.name: load_fragment(gpu_dir, b.name) for b in benchmarks
           if b.gpu}
    gpu = {k: v for k, v in gpu.items() if v.markdown is not None}
    present = [f for f in cpu.values() if f.markdown is not None]
    machine, latest, earliest = _header_machine_and_date(present)
    quick = [f.name for f in present if f.quick] + [
        f"{f.name} (GPU)" for f in gpu.values() if f.quick]
    if (quick and os.path.abspath(benchmarks_md)
            == os.path.abspath(DEFAULT_BENCHMARKS_MD)):
        raise BenchmarkError(
            "refusing to write the repository's BENCHMARKS.md from quick "
            f"(--quick) fragments: {', '.join(quick)}; rerun them at full "
            "size")
    date_text = latest or "not recorded"
    if earliest and _day(earliest) != _day(latest):
        date_text = f"{earliest} to {latest}"
    out = [
        "# Benchmarks", "",
        "<!-- Generated by `python -m bench` (bench/runner.py); do not edit "
        "by hand. -->", "",
        "_Generated by `python -m bench` (or `bench/run_all.sh`) from the "
        f"fragments in `{_display_path(output_dir)}/` and the notes in "
        f"`{_display_path(notes_dir)}/`; do not edit by hand: change the "
        "notes or rerun the benchmark._", ""]
    if quick:
        out += [f"> **WARNING: QUICK-MODE fragments ({', '.join(quick)}): "
                "tiny sizes from a smoke run; their figures are not "
                "benchmark results.**", ""]
    out += [
        f"**Machine:** {fragments.describe_machine(machine)}.", "",
        f"**Date of the runs:** {date_text} (assembled "
        f"{fragments.utc_now()}).", "",
        "**Commands:** `python -m bench` reruns everything below and "
        "rewrites this file; `python -m bench --only=NAME[,NAME]` reruns "
        "some (names: " + ", ".join(f"`{b.name}`" for b in benchmarks)
        + "); `python -m bench --assemble_only` rebuilds this file from the "
        "saved fragments. Each section shows the exact command that produced "
        "its figures, which also runs on its own. Fault-injection figures "
        "are in RELIABILITY.md (`python bench/stress_reliability.py`, not "
        "run by `python -m bench`).", ""]
    intro = _read(os.path.join(notes_dir, "intro.md"))
    if intro:
        out += [intro.strip(), ""]
    table, absent = summary_table(cpu, gpu)
    out += ["## Throughput summary", "",
            "One row per headline figure; each baseline was measured in the "
            "same run as the figure beside it.", "", table, ""]
    if absent:
        out += ["No figures yet for: " + ", ".join(absent) + ".", ""]
    header_day = _day(latest)
    sections = [_section(bench, cpu[bench.name], machine, header_day, md_dir,
                         notes_dir) for bench in benchmarks]
    # The GPU section follows the last throughput benchmark.
    at = max((i + 1 for i, b in enumerate(benchmarks) if b.throughput),
             default=len(sections))
    sections.insert(at, _gpu_section(benchmarks, cpu, gpu, machine,
                                     header_day, md_dir, notes_dir))
    out += ["\n\n".join(sections), ""]
    text = "\n".join(out)
    with open(benchmarks_md, "w") as f:
        f.write(text)
    return text


def _gpu_section(benchmarks, cpu, gpu, machine, header_day, md_dir,
                 notes_dir):
    out = ["## GPU", ""]
    if not gpu:
        card = (machine or {}).get("gpu", "no GPU")
        present = (f" (it has {card}, but TensorFlow could not use it)"
                   if card != "no GPU" else "")
        out += [f"No GPU was available on the machine that generated these "
                f"figures{present}, so there are no GPU figures. Where "
                "TensorFlow sees a GPU, `python -m bench` also runs the "
                "frame-level train step (`models`) and the losses there and "
                "shows them here beside the CPU figures, naming the card."]
        return "\n".join(out)
    before, after = _notes(notes_dir, "gpu")
    if before:
        out += [before, ""]
    out += ["The same commands as the CPU sections, with the GPU visible; "
            "the CPU figures beside them are from the CPU sections (GPU "
            "hidden with `CUDA_VISIBLE_DEVICES=`).", "",
            _gpu_comparison(cpu, gpu), ""]
    for bench in benchmarks:
        if bench.name in gpu:
            out += [_section(bench, gpu[bench.name], machine, header_day,
                             md_dir, notes_dir, heading=f"{bench.title} "
                             f"on the GPU ({_gpu_card(gpu[bench.name])})",
                             include_notes=False, level="###"), ""]
    if after:
        out += [after, ""]
    return "\n".join(out).rstrip()


# --------------------------------------------------------------------------
# Command line


GPU_MODES = ("auto", "yes", "no", "only")
PROGRAM = "python -m bench"


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """`python -m bench`'s flags."""

    only: tuple[str, ...] = option(
        (), "Comma-separated subset of " + ",".join(b.name for b in BENCHMARKS)
        + " (default: all).")
    quick: bool = option(
        False, "Tiny sizes (each script's --quick; smoke runs only); "
        "benchmarks without a quick mode are skipped; writes under "
        f"{QUICK_ROOT} unless --output_dir / --benchmarks_md say otherwise, "
        "never into the repo.")
    assemble_only: bool = option(
        False, "No reruns: rebuild the benchmarks file from the fragments in "
        "--output_dir.")
    output_dir: str = option("", "Where the fragments are written and read "
                             "(default: bench/results).")
    benchmarks_md: str = option("", "The file to rewrite (default: "
                                "BENCHMARKS.md).")
    notes_dir: str = option(DEFAULT_NOTES_DIR, "Static prose per benchmark "
                            "(default: bench/notes).")
    gpu: str = option(
        "auto", "Also run models and losses on a GPU: auto (where TensorFlow "
        "sees one), yes (fail if none), no, or only (just the GPU runs, fail "
        "if none; the CPU fragments already in --output_dir are kept).")

    def __post_init__(self):
        if self.gpu not in GPU_MODES:
            raise ConfigError(f"{{gpu}} must be one of {', '.join(GPU_MODES)}",
                              gpu=self.gpu)


def _usage_error(message):
    return BenchmarkError(f"{PROGRAM}: error: {message}")


def parse_args(argv, benchmarks):
    """The RunnerConfig of `argv`, with --only checked against `benchmarks`
    (all of them when not given) and the output paths made absolute."""
    names = [b.name for b in benchmarks]
    args = fragments.parse_flags(RunnerConfig, __doc__, argv, PROGRAM)
    only = args.only or tuple(names)
    unknown = [n for n in only if n not in names]
    if unknown:
        raise _usage_error(f"--only: unknown benchmark(s) "
                           f"{', '.join(unknown)}; known: {', '.join(names)}")
    if args.gpu == "only":
        gpu_ones = [b.name for b in benchmarks if b.gpu]
        if not set(only) & set(gpu_ones):
            raise _usage_error(f"--gpu=only: none of {', '.join(only)} runs "
                               f"on a GPU; those that do: "
                               f"{', '.join(gpu_ones)}")
    output_dir, benchmarks_md = args.output_dir, args.benchmarks_md
    if args.quick:
        output_dir = output_dir or os.path.join(QUICK_ROOT, "results")
        benchmarks_md = benchmarks_md or os.path.join(QUICK_ROOT,
                                                      "BENCHMARKS.md")
        if (os.path.abspath(output_dir) == DEFAULT_OUTPUT_DIR
                or os.path.abspath(benchmarks_md) == DEFAULT_BENCHMARKS_MD):
            raise _usage_error("--quick never writes into bench/results or "
                               "BENCHMARKS.md; give other --output_dir / "
                               "--benchmarks_md")
    return dataclasses.replace(
        args, only=only,
        output_dir=os.path.abspath(output_dir or DEFAULT_OUTPUT_DIR),
        benchmarks_md=os.path.abspath(benchmarks_md or DEFAULT_BENCHMARKS_MD))


def main(argv=None, benchmarks=BENCHMARKS, root=REPO_ROOT):
    args = parse_args(sys.argv[1:] if argv is None else argv, benchmarks)
    selected = [b for b in benchmarks if b.name in args.only]
    if not args.assemble_only:
        if args.quick:
            no_quick = [b for b in selected if b.quick_flags(root) is None
                        and os.path.exists(b.script_path(root))]
            named = set(args.only) != {b.name for b in benchmarks}
            if no_quick and named:
                raise BenchmarkError(
                    "--quick: no quick mode in " + ", ".join(
                        f"{b.name!r} ({b.script})" for b in no_quick))
            for b in no_quick:
                print(f"=== --quick: skipping {b.name} ({b.script} has no "
                      "quick mode)", flush=True)
            selected = [b for b in selected if b not in no_quick]
        gpus = detect_gpus(args.gpu)
        print(f"=== GPU: {', '.join(gpus) if gpus else 'none'}; writing "
              f"fragments to {_display_path(args.output_dir)}", flush=True)
        start = time.time()
        if args.gpu == "only":
            selected = [b for b in selected if b.gpu]
        run_all(selected, args.output_dir, args.quick, gpus, root,
                cpu=args.gpu != "only")
        print(f"\n=== all {len(selected)} benchmark(s) done in "
              f"{(time.time() - start) / 60:.1f} min", flush=True)
    assemble(args.output_dir, args.benchmarks_md, args.notes_dir, benchmarks)
    print(f"=== wrote {_display_path(args.benchmarks_md)}")
    return 0


__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkError", "assemble", "main",
           "run_all"]
