"""Training under tf.distribute: mirrored replicas and two worker processes."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

from conftest import REPO_ROOT, TINY_FEATURE_SIZES
from test_training import tiny_config
from yt8m_xmodal import training


def test_mirrored_strategy_trains_on_two_logical_cpus(tiny_frame_data, tmp_path):
    # Early stopping under two replicas is test_early_stopping's; here the
    # plain loop (one checkpoint, export and validation at step 3).
    cfg = tiny_config(tiny_frame_data, tmp_path / "run", model="MeanPoolModel",
                      distribution_strategy="mirrored",
                      early_stopping_patience=0)
    trainer = training.Trainer(cfg)
    assert trainer.strategy.num_replicas_in_sync == 2
    result = trainer.run()
    assert result.step == 3
    assert all(np.all(np.isfinite(w.numpy())) for w in trainer.model.weights)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _checkpoint_values(path):
    """Every trained value a checkpoint holds: the model's weights (saved
    under the first path that reaches them, the optimizer's), optimizer
    state, step and data position. The subspace is left out: only the chief
    fits it (the other workers' checkpoints are scratch)."""
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
            and not name.startswith("subspace/")}


def test_two_worker_processes_end_with_identical_weights(tiny_frame_data, tmp_path):
    """MultiWorkerMirroredStrategy over loopback, TF_CONFIG as on a cluster."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    train_dir = tmp_path / "run"
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        cmd = [sys.executable, str(REPO_ROOT / "train.py"),
               f"--train_data_pattern={tiny_frame_data}/train-*",
               f"--train_dir={train_dir}", "--model=MeanPoolModel",
               f"--feature_sizes={','.join(map(str, TINY_FEATURE_SIZES))}",
               "--max_frames=40", "--num_classes=4", "--embedding_dim=4",
               "--hidden_units=16", "--subspace_dim=2", "--batch_size=32",
               "--max_steps=4", "--export_model_steps=4",
               "--distribution_strategy=multi_worker_mirrored"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    chief = tf.train.latest_checkpoint(str(train_dir))
    worker = tf.train.latest_checkpoint(str(train_dir / ".worker-1"))
    assert chief.endswith("ckpt-4") and worker.endswith("ckpt-4")
    a, b = _checkpoint_values(chief), _checkpoint_values(worker)
    assert a.keys() == b.keys() and len(a) > 0
    assert any(name.startswith("optimizer/") for name in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
