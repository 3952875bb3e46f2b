"""Checks that TensorFlow runs the project's GPU ops there and agrees with numpy.

Run it first on a new GPU machine, before `python -m bench --gpu=only`: it
names the GPU, then runs the ops the towers and losses need (matrix products,
eigh, cholesky, svd, an XLA-compiled product, the DCCA loss and a Keras GRU)
on /GPU:0 and compares each with numpy or the CPU. Exits non-zero, saying
why, if TensorFlow sees no GPU or any check fails or disagrees. float32 products use TF32 on Ampere
and later cards (TensorFlow's default), hence their looser tolerance.
"""
import sys
import time
import numpy as np
import tensorflow as tf

info = tf.sysconfig.get_build_info()
print("TF", tf.__version__, "cuda", info.get("cuda_version"), "cudnn",
      info.get("cudnn_version"))
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    sys.exit("TensorFlow sees no GPU here (tf.config.list_physical_devices"
             "('GPU') is empty): check the driver and CUDA_VISIBLE_DEVICES")
print("GPUs", [tf.config.experimental.get_device_details(g) for g in gpus])
rng = np.random.default_rng(0)
a = rng.standard_normal((512, 512))
s = a @ a.T / 512 + np.eye(512)
failures = []


def check(name, fn, ref, tol):
    """Runs fn() on /GPU:0; its tensor must sit on the GPU and match ref."""
    try:
        t = time.time()
        with tf.device("/GPU:0"):
            out = fn()
        err = float(np.max(np.abs(out.numpy() - ref)))
        ok = (err <= tol * max(1.0, float(np.max(np.abs(ref))))
              and "GPU" in out.device)
        print(f"{'OK' if ok else 'FAIL'} {name}: device {out.device} "
              f"max error {err:.2e} {time.time() - t:.2f}s", flush=True)
    except Exception as e:  # report and go on with the other checks
        ok = False
        print(f"FAIL {name}: {type(e).__name__}: {str(e)[:300]}", flush=True)
    if not ok:
        failures.append(name)


x32 = tf.constant(a, tf.float32)
product = a.astype(np.float32) @ a.astype(np.float32)
check("matmul f32", lambda: tf.matmul(x32, x32), product, 1e-3)
check("eigvalsh f64", lambda: tf.linalg.eigvalsh(tf.constant(s)),
      np.linalg.eigvalsh(s), 1e-10)
check("eigh f32", lambda: tf.linalg.eigh(tf.constant(s, tf.float32))[0],
      np.linalg.eigvalsh(s), 1e-4)
check("cholesky f64", lambda: tf.linalg.cholesky(tf.constant(s)),
      np.linalg.cholesky(s), 1e-10)
check("svd f32", lambda: tf.linalg.svd(x32, compute_uv=False),
      np.linalg.svd(a, compute_uv=False), 1e-4)
xla_matmul = tf.function(lambda x: tf.matmul(x, x), jit_compile=True)
check("xla matmul", lambda: xla_matmul(x32), product, 1e-3)

import keras  # noqa: E402
from yt8m_xmodal import losses  # noqa: E402

lat = rng.standard_normal((1024, 64))
video = tf.constant(lat @ rng.standard_normal((64, 128))
                    + rng.standard_normal((1024, 128)), tf.float32)
audio = tf.constant(lat @ rng.standard_normal((64, 128))
                    + rng.standard_normal((1024, 128)), tf.float32)
dcca = losses.get_loss("dcca")
with tf.device("/CPU:0"):
    cpu_loss = dcca(video, audio, None).numpy()
check("dcca loss vs CPU", lambda: dcca(video, audio, None), cpu_loss, 1e-4)
gru = keras.layers.GRU(128)
seq = tf.constant(rng.standard_normal((64, 20, 64)), tf.float32)
with tf.device("/CPU:0"):
    cpu_out = gru(seq).numpy()
check("keras GRU vs CPU", lambda: gru(seq), cpu_out, 1e-2)
if failures:
    sys.exit("FAILED: " + ", ".join(failures))
print("all GPU checks passed")
