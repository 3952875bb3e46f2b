"""Result fragments of the benchmark scripts, assembled by `python -m bench`.

Each benchmark script writes, under its `--output_dir` (default
`bench/results`), `<name>.md` (the markdown it printed) and `<name>.json`
(its raw figures plus `command`, `date`, `machine` and `quick`). A `--quick`
run is flagged in both files, so that its tiny-size figures can never pass
for real ones.

Also what the scripts share: their flag parsing (`parse_flags`), the quick
recipe, and the product's trainer for timing its train step. TensorFlow is
imported only inside those helpers, so writing and reading fragments stays
light.
"""

import importlib.metadata
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

DEFAULT_OUTPUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "results")
# Real YouTube-8M shards, never copied into the repo: $YT8M_DATA_DIR
# ($YT8M_SHARED_DIR, its older name), by default ../shared/yt8m beside the
# checkout.
DATA_DIR = (os.environ.get("YT8M_DATA_DIR")
            or os.environ.get("YT8M_SHARED_DIR")
            or os.path.join(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__))), "..", "shared", "yt8m"))
QUICK_BANNER = ("> **QUICK RUN (`--quick`): tiny sizes for smoke tests only. "
                "These are not benchmark figures.**")
# The machine fields that say whether two runs ran on the same machine.
MACHINE_KEYS = ("cpu", "cores", "memory_gib", "os", "tensorflow", "keras",
                "gpu")


def utc_now():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def command_line(argv=None, env=None):
    """The shell command that reproduces this process (`python` for the
    interpreter), with an environment prefix such as CUDA_VISIBLE_DEVICES."""
    argv = list(sys.argv if argv is None else argv)
    words = [f"{k}={shlex.quote(v) if v else ''}"
             for k, v in sorted((env or {}).items())]
    words.append("python")
    words += [shlex.quote(a) for a in argv]
    return " ".join(words)


def _package_version(*names):
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "not installed"


def gpu_names():
    """Names of the NVIDIA GPUs on the machine (nvidia-smi), whether or not
    this process may use them; [] when there is none or no nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_info():
    """The machine, as a flat dict of strings (see MACHINE_KEYS)."""
    cpu = platform.processor() or platform.machine()
    memory = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) / 2**20
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    gpus = gpu_names()
    return {
        "cpu": f"{cpu} ({platform.machine()})",
        "cores": f"{cores} logical cores usable ({os.cpu_count()} visible)",
        "memory_gib": f"{memory:.0f} GiB" if memory else "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": _package_version("tensorflow", "tensorflow-cpu",
                                       "tf-nightly"),
        "keras": _package_version("keras"),
        "gpu": ", ".join(gpus) if gpus else "no GPU",
    }


def same_machine(a, b):
    return all((a or {}).get(k) == (b or {}).get(k) for k in MACHINE_KEYS)


def describe_machine(machine):
    """One line for BENCHMARKS.md."""
    if not machine:
        return "not recorded"
    return (f"{machine.get('cpu', '?')}, {machine.get('cores', '?')}, "
            f"{machine.get('memory_gib', '?')} memory, {machine.get('os', '?')}"
            f", Python {machine.get('python', '?')}, TensorFlow "
            f"{machine.get('tensorflow', '?')}, Keras {machine.get('keras', '?')}"
            f", GPU: {machine.get('gpu', '?')}")


def tf_visible_gpus():
    """Names of the GPUs TensorFlow uses in this process, if it is imported."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return []
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except Exception:  # noqa: BLE001 - details are optional
            details = {}
        names.append(details.get("device_name", device.name))
    return names


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        super().__init__()
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text):
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


class capture_stdout:  # noqa: N801 - used like a function
    """Prints as usual and keeps a copy: `.stop()` restores sys.stdout and
    returns what was printed since construction."""

    def __init__(self):
        self._tee = _Tee(sys.stdout)
        sys.stdout = self._tee
        self.text = None

    def stop(self):
        if self.text is None:
            sys.stdout = self._tee.stream
            self.text = self._tee.copy.getvalue()
        return self.text


def write(output_dir, name, markdown, figures, quick):
    """Writes `<name>.md` and `<name>.json` under output_dir; returns paths."""
    os.makedirs(output_dir, exist_ok=True)
    record = {
        "benchmark": name, "quick": bool(quick), "command": command_line(),
        "date": utc_now(), "machine": machine_info(),
        "tf_visible_gpus": tf_visible_gpus(),
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    record.update(figures)
    text = markdown.strip("\n") + "\n"
    if quick:
        text = QUICK_BANNER + "\n\n" + text
        print("\n" + QUICK_BANNER)
    md_path = os.path.join(output_dir, f"{name}.md")
    json_path = os.path.join(output_dir, f"{name}.json")
    with open(md_path, "w") as f:
        f.write(text)
    with open(json_path, "w") as f:
        json.dump(record, f, indent=2, default=float)
        f.write("\n")
    print(f"wrote {md_path} and {json_path}")
    return md_path, json_path


def quick_recipe(cfg):
    """The frame-level recipe `cfg` shrunk for a --quick smoke run (tiny
    features, chunks and towers); only the code path is exercised."""
    from yt8m_xmodal import config as config_lib  # noqa: PLC0415
    return cfg.replace(data=config_lib.DataConfig(max_frames=40,
                                                  feature_sizes=(32, 16)),
                       model_config={"chunk_size": 10, "embedding_dim": 8,
                                     "rnn_units": 16},
                       subspace_dim=4)


def parse_flags(config_class, doc, argv=None, program=None):
    """A benchmark's config from its command line, parsed by the package's
    flag generator (`cli.parse_command_line`); a bad flag ends the script
    with exit status 2 and one line naming it, as the commands do."""
    from yt8m_xmodal import cli  # noqa: PLC0415
    from yt8m_xmodal.errors import ConfigError  # noqa: PLC0415
    program = program or os.path.basename(sys.argv[0])
    try:
        return cli.parse_command_line(config_class, argv, doc, program)[0]
    except ConfigError as e:
        print(f"{program}: error: {cli.flag_message(e)}", file=sys.stderr)
        raise SystemExit(2) from None


def product_trainer(cfg, work_dir):
    """`training.Trainer` of `cfg`, the object train.py's loop steps, for
    timing its train step on batches of the bench's own.

    The trainer checks the first record of its training data before it
    builds anything, so one frame-level record of `cfg.data`'s shape is
    written under `work_dir`, which also holds the train_dir.
    """
    import numpy as np  # noqa: PLC0415
    from yt8m_xmodal import training, writers  # noqa: PLC0415
    data = cfg.data
    frames = np.zeros((data.max_frames, data.video_size), np.uint8)
    audio = np.zeros((data.max_frames, data.audio_size), np.uint8)
    with writers.ShardedRecordWriter(work_dir, "train", 1) as writer:
        writer.write(writers.make_frame_example(
            "bench", [0], frames, audio, data.feature_names, data.id_feature))
    return training.Trainer(cfg.replace(
        train_data_pattern=writer.paths[0],
        train_dir=os.path.join(work_dir, "train_dir"), start_new_model=True))
