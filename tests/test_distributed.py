"""tf.distribute: MirroredStrategy over 2 logical CPUs and MultiWorkerMirroredStrategy with
2 worker processes on 127.0.0.1 both match single-device training at the same global batch.

Stated tolerance: epoch mean losses agree within 1e-4 relative. The replicas sum the same
gradients in another order, so only float32 rounding may differ; a wrong batch split,
a missing all-reduce or a wrong loss scale would differ by far more.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fashion_core import data, train
from fashion_core.config import TrainConfig
from tests.conftest import write_dataset

pytestmark = pytest.mark.tensorflow_only  # tf.distribute

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4
GLOBAL_BATCH = 64
EPOCHS = 2


@pytest.fixture(scope="module")
def even() -> data.Dataset:
    """256 samples: 4 whole global batches of 64, so no step is partial on any path."""
    return data.synthetic(train_size=256, test_size=64, seed=5)


@pytest.fixture(scope="module")
def single_device_losses(even) -> list[float]:
    config = TrainConfig(epochs=EPOCHS, batch_size=GLOBAL_BATCH, jit=False, seed=0)
    return [e.loss for e in train.train(config, even).epochs]


def _cli(args, env_extra=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "fashion_core", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mirrored_two_logical_cpus_matches_single_device(tmp_path, even, single_device_losses):
    folder = write_dataset(tmp_path / "even", even)
    out = tmp_path / "mirrored.json"
    proc = _cli(["--strategy", "mirrored", "--replicas", "2", "--batch-size",
                 str(GLOBAL_BATCH // 2), "--epochs", str(EPOCHS), "--no-jit", "--no-verify",
                 "--data-dir", str(folder), "--json", str(out)])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["strategy"] == "mirrored" and record["replicas"] == 2
    assert record["backend"] == "tensorflow"
    assert record["global_batch"] == GLOBAL_BATCH and record["samples_per_epoch"] == 256
    losses = [e["loss"] for e in record["epochs"]]
    assert losses == pytest.approx(single_device_losses, rel=TOLERANCE)
    assert "x 2 replicas (mirrored)" in stdout


def test_multiworker_two_processes_match_single_device(tmp_path, even, single_device_losses):
    folder = write_dataset(tmp_path / "even", even)
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": {"worker": workers},
                                    "task": {"type": "worker", "index": index}})
            procs.append(_cli(
                ["--strategy", "multiworker", "--batch-size", str(GLOBAL_BATCH // 2),
                 "--epochs", str(EPOCHS), "--no-jit", "--no-verify", "--data-dir",
                 str(folder), "--json", str(tmp_path / f"worker{index}.json")],
                {"TF_CONFIG": tf_config}, start_new_session=True))
        deadline = time.monotonic() + 300
        for proc in procs:
            _, stderr = proc.communicate(timeout=max(1, deadline - time.monotonic()))
            assert proc.returncode == 0, stderr[-3000:]
    finally:
        for proc in procs:  # never leave a worker behind, whatever happened
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for index in range(2):
        record = json.loads((tmp_path / f"worker{index}.json").read_text())
        assert record["strategy"] == "multiworker" and record["replicas"] == 2
        losses = [e["loss"] for e in record["epochs"]]
        assert losses == pytest.approx(single_device_losses, rel=TOLERANCE), index


def test_multiworker_without_tf_config_is_a_clear_error(tmp_path, even):
    folder = write_dataset(tmp_path / "even", even)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "fashion_core", "train", "--strategy",
                           "multiworker", "--no-verify", "--data-dir", str(folder)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: multiworker needs TF_CONFIG" in proc.stderr
