"""Forward + backward time of each --loss at batch 1024, 128-d embeddings.

Side by side in one run, float32 inputs, on whatever device TensorFlow
picks (CPU here). The baseline row is a naive deep CCA as often found in
public code: float32 throughout, stock `tf.linalg.eigh` gradient, no
global-batch all-reduce. Prints a markdown table.

    python bench/bench_losses.py [--batch_size=1024 --dim=128 --repeats=20]
"""

import dataclasses
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_xmodal import losses  # noqa: E402
from yt8m_xmodal.config import option  # noqa: E402

try:
    from bench import fragments  # noqa: E402
except ImportError:  # run as `python bench/bench_losses.py`
    import fragments  # noqa: E402

# Each row is its own tf.function; its retracing warning is expected.
tf.get_logger().setLevel("ERROR")


@dataclasses.dataclass(frozen=True)
class LossesBenchConfig:
    """bench_losses.py's flags."""

    batch_size: int = option(1024, "Examples per batch.")
    dim: int = option(128, "Embedding size of each view.")
    num_classes: int = option(3862, "Label vocabulary (cluster_cca).")
    repeats: int = option(20, "Timed forward+backward runs per loss.")
    xla: bool = option(False, "Also time DCCA with jit_compile=True (slow on "
                       "CPU).")
    output_dir: str = option(fragments.DEFAULT_OUTPUT_DIR,
                             "Writes losses.md (the printed table) and "
                             "losses.json here.")
    quick: bool = option(False, "Tiny sizes for smoke tests (batch 128, "
                         "16-d, 2 repeats); the outputs are marked as quick.")


def naive_dcca_float32(video, audio, ridge=losses.DEFAULT_RIDGE):
    """Baseline: textbook DCCA in float32 with the stock eigh gradient."""
    m = tf.cast(tf.shape(video)[0], tf.float32)
    video = video - tf.reduce_mean(video, axis=0)
    audio = audio - tf.reduce_mean(audio, axis=0)

    def inverse_sqrt(cov):
        eigenvalues, eigenvectors = tf.linalg.eigh(cov)
        return tf.matmul(eigenvectors * tf.math.rsqrt(
            tf.maximum(eigenvalues, 1e-9)), eigenvectors, transpose_b=True)

    dim = tf.shape(video)[1]
    s11 = tf.matmul(video, video, transpose_a=True) / (m - 1)
    s22 = tf.matmul(audio, audio, transpose_a=True) / (m - 1)
    s12 = tf.matmul(video, audio, transpose_a=True) / (m - 1)
    s11 += ridge * tf.linalg.trace(s11) / tf.cast(dim, tf.float32) * tf.eye(dim)
    s22 += ridge * tf.linalg.trace(s22) / tf.cast(dim, tf.float32) * tf.eye(dim)
    t = tf.matmul(inverse_sqrt(s11), tf.matmul(s12, inverse_sqrt(s22)))
    return -tf.reduce_sum(tf.linalg.svd(t, compute_uv=False))


def _time_side_by_side(steps, args, repeats):
    """Median and min wall time (ms) per step, runs interleaved round-robin
    so that load from other processes hits every row alike."""
    results = [step(*args) for step in steps]  # warm-up: trace and compile
    finite = [all(np.all(np.isfinite(t.numpy()))
                  for t in tf.nest.flatten(result)) for result in results]
    times = [[] for _ in steps]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), step(*args))
            times[i].append(1e3 * (time.perf_counter() - start))
    return [(float(np.median(t)), float(np.min(t)), f)
            for t, f in zip(times, finite)]


def _forward_backward(loss_fn, jit_compile=False):
    @tf.function(jit_compile=jit_compile)
    def step(video, audio, labels):
        with tf.GradientTape() as tape:
            tape.watch([video, audio])
            value = loss_fn(video, audio, labels)
        return value, tape.gradient(value, [video, audio])
    return step


def _training_step(loss, monitor):
    """What a train step computes of the loss: `compute` with its reported
    total correlation returned too (as the step's report does), so the
    graph cannot prune the monitoring away."""
    @tf.function
    def step(video, audio, labels):
        with tf.GradientTape() as tape:
            tape.watch([video, audio])
            out = loss.compute(video, audio, labels, monitor=monitor)
        grads = tape.gradient(out["loss"], [video, audio])
        # NaN when not monitored: report it as 0 so `finite` checks the loss.
        total = tf.where(tf.math.is_finite(out["total_correlation"]),
                         out["total_correlation"], 0.0)
        return out["loss"], grads, total
    return step


def main(argv=None):
    flags = fragments.parse_flags(LossesBenchConfig, __doc__, argv)
    if flags.quick:
        flags = dataclasses.replace(flags, batch_size=128, dim=16, repeats=2)
    batch, dim = flags.batch_size, flags.dim
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(batch, dim // 2))
    video = tf.constant(
        (latent @ rng.normal(size=(dim // 2, dim))
         + rng.normal(size=(batch, dim))).astype(np.float32))
    audio = tf.constant(
        (latent @ rng.normal(size=(dim // 2, dim))
         + rng.normal(size=(batch, dim))).astype(np.float32))
    labels = tf.constant(
        (rng.random((batch, flags.num_classes)) < 3.0 / flags.num_classes)
        .astype(np.float32))

    rows = [("baseline: naive float32 DCCA (stock eigh grad)",
             _forward_backward(lambda v, a, l: naive_dcca_float32(v, a)))]
    for name in losses.LOSSES:
        loss = losses.get_loss(name)
        rows.append((name, _forward_backward(
            lambda v, a, l, loss=loss: loss(v, a, l))))
    # What a training step runs: `compute`, which for the losses that are
    # not CCA also reports a monitoring batch CCA. Training asks for it on
    # logged steps only; before, every step paid for it.
    for name in ("infonce", "triplet", "soft_cca"):
        loss = losses.get_loss(name)
        for monitor, when in ((True, "every step before"),
                              (False, "unlogged steps now")):
            rows.append((f"{name} training step, monitor={monitor} ({when})",
                         _training_step(loss, monitor)))
    if flags.xla:
        dcca = losses.get_loss("dcca")
        rows.append(("dcca, jit_compile=True", _forward_backward(
            lambda v, a, l: dcca(v, a, l), jit_compile=True)))

    # On a GPU machine ops run on the GPU; name it rather than CPU:0.
    device = (tf.config.list_logical_devices("GPU")
              or tf.config.list_logical_devices())[0].name
    printed = fragments.capture_stdout()
    print(f"\nforward+backward, batch {batch}, {dim}-d float32 embeddings, "
          f"{flags.repeats} runs, device {device}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}\n")
    print("| loss | median ms | min ms | vs baseline | finite |")
    print("|---|---:|---:|---:|---|")
    timings = _time_side_by_side([step for _, step in rows],
                                 (video, audio, labels), flags.repeats)
    baseline = timings[0][0]
    for (name, _), (median, fastest, finite) in zip(rows, timings):
        print(f"| {name} | {median:.1f} | {fastest:.1f} | "
              f"{median / baseline:.2f}x | {finite} |")
    fragments.write(flags.output_dir, "losses", printed.stop(), {
        "batch_size": batch, "dim": dim, "repeats": flags.repeats,
        "device": device, "rows": [
            {"loss": name, "baseline": i == 0, "median_ms": median,
             "min_ms": fastest, "vs_baseline": median / baseline,
             "finite": bool(finite)}
            for i, ((name, _), (median, fastest, finite))
            in enumerate(zip(rows, timings))]}, flags.quick)


if __name__ == "__main__":
    main()
