"""Checks that TensorFlow runs the project's GPU ops there and agrees with numpy.

Run it first on a new GPU machine, before `python -m bench --gpu=only`: it
names the GPU, then runs the ops the towers and losses need (matrix products,
eigh, cholesky, svd, an XLA-compiled product, the DCCA loss and a Keras GRU)
on /GPU:0 and compares each with numpy or the CPU. Exits 1 if TensorFlow sees
no GPU or any check fails or disagrees. float32 products use TF32 on Ampere
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
print("GPUs", [tf.config.experimental.get_device_details(g) for g in gpus])
rng = np.random.default_rng(0)
a = rng.standard_normal((512, 512))
s = a @ a.T / 512 + np.eye(512)


failures = [] if gpus else ["TensorFlow sees no GPU"]


def check(name, fn, ref, tol):
    try:
        t = time.time()
        with tf.device("/GPU:0"):
            out = fn()
        err = float(np.max(np.abs(np.asarray(out[0]) - ref)))
        ok = err <= tol * max(1.0, float(np.max(np.abs(ref))))
        ok = ok and "GPU" in out[1]
        print(f"{'OK' if ok else 'FAIL'} {name}: device {out[1]} "
              f"max error {err:.2e} {time.time() - t:.2f}s", flush=True)
    except Exception as e:  # report and go on with the other checks
        ok = False
        print(f"FAIL {name}: {type(e).__name__}: {str(e)[:300]}", flush=True)
    if not ok:
        failures.append(name)


x32 = tf.constant(a, tf.float32)
check("matmul f32", lambda: (lambda c: (c.numpy(), c.device))(
    tf.matmul(x32, x32)), a.astype(np.float32) @ a.astype(np.float32), 1e-3)
check("eigvalsh f64", lambda: (lambda w: (w.numpy(), w.device))(
    tf.linalg.eigvalsh(tf.constant(s))), np.linalg.eigvalsh(s), 1e-10)
check("eigh f32", lambda: (lambda w: (w[0].numpy(), w[0].device))(
    tf.linalg.eigh(tf.constant(s, tf.float32))), np.linalg.eigvalsh(s), 1e-4)
check("cholesky f64", lambda: (lambda l: (l.numpy(), l.device))(
    tf.linalg.cholesky(tf.constant(s))), np.linalg.cholesky(s), 1e-10)
check("svd f32", lambda: (lambda v: (v.numpy(), v.device))(
    tf.linalg.svd(x32, compute_uv=False)), np.linalg.svd(a, compute_uv=False), 1e-4)
f = tf.function(lambda x: tf.matmul(x, x), jit_compile=True)
check("xla matmul", lambda: (lambda c: (c.numpy(), c.device))(f(x32)),
      a.astype(np.float32) @ a.astype(np.float32), 1e-3)

import keras  # noqa: E402
from yt8m_xmodal import losses  # noqa: E402

lat = rng.standard_normal((1024, 64))
v = (lat @ rng.standard_normal((64, 128)) + rng.standard_normal((1024, 128)))
au = (lat @ rng.standard_normal((64, 128)) + rng.standard_normal((1024, 128)))
dcca = losses.get_loss("dcca")
with tf.device("/CPU:0"):
    ref = float(dcca(tf.constant(v, tf.float32), tf.constant(au, tf.float32),
                     None))
check("dcca loss vs CPU", lambda: (lambda l: (l.numpy(), l.device))(
    dcca(tf.constant(v, tf.float32), tf.constant(au, tf.float32), None)), ref, 1e-4)
gru = keras.layers.GRU(128)
seq = rng.standard_normal((64, 20, 64)).astype(np.float32)
with tf.device("/CPU:0"):
    cpu_out = gru(seq).numpy()
check("keras GRU vs CPU", lambda: (lambda o: (o.numpy(), o.device))(
    gru(tf.constant(seq))), cpu_out, 1e-2)
if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("all GPU checks passed")
