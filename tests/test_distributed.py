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
    assert proc.stderr.startswith("error:") and "multiworker needs TF_CONFIG" in proc.stderr


# -- which devices a strategy uses, decided on the CPU with stand-ins for TensorFlow --------
# tf.distribute is TensorFlow's: without TensorFlow installed the whole module is skipped.
pytest.importorskip("tensorflow", reason="tf.distribute needs TensorFlow (not installed)")
from fashion_core.backends import tf_distributed as distributed  # noqa: E402

tf = distributed.tf


class _Recorder:
    """Stands in for a tf.distribute strategy class: records how it was made."""

    made: list

    def __init__(self, devices=None, cross_device_ops=None, cluster_resolver=None):
        self.devices, self.cross, self.resolver = devices, cross_device_ops, cluster_resolver
        type(self).made.append(self)


@pytest.fixture
def fake_tf(monkeypatch):
    """TensorFlow's strategies and GPU list replaced; returns a setter for the GPU count."""
    class Mirrored(_Recorder):
        made = []

    class MultiWorker(_Recorder):
        made = []

    gpus = {"count": 0}
    real_list = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: [f"GPU:{i}" for i in range(gpus["count"])]
                        if kind == "GPU" else real_list(kind))
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", Mirrored)
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", MultiWorker)
    logical = []
    monkeypatch.setattr(distributed, "ensure_logical_cpus", logical.append)
    monkeypatch.setattr(distributed, "_multiworker", {})
    return gpus, Mirrored, MultiWorker, logical


@pytest.mark.parametrize("spec, gpus, kind", [("cpu", 2, "CPU"), ("gpu:1", 0, "GPU"),
                                              ("gpu", 1, "GPU"), ("auto", 0, "CPU"),
                                              ("auto", 1, "GPU")])
def test_device_kind_of_a_config(spec, gpus, kind):
    assert distributed.device_kind(spec, gpus) == kind


def test_cpu_replicas_stay_on_the_cpu_of_a_gpu_host(fake_tf):
    """Before, any GPU on the host made every mirrored case a GPU case: cpu-...-r1 ran on
    the GPU and cpu-...-r2 failed on a one-GPU box."""
    gpus, mirrored, _, logical = fake_tf
    gpus["count"] = 1
    strategy = distributed.make_strategy("mirrored", 2, "cpu")
    assert strategy.devices == ["/CPU:0", "/CPU:1"] and logical == [2]
    assert strategy.cross is not None  # reduced on the host: NCCL needs GPUs
    assert distributed.make_strategy("mirrored", 1, "gpu:0").devices == ["/GPU:0"]
    with pytest.raises(distributed.ScaleOutError, match="2 replicas asked for, but only 1"):
        distributed.make_strategy("mirrored", 2, "gpu:0")
    gpus["count"] = 2
    assert distributed.make_strategy("mirrored", 2, "auto").devices == ["/GPU:0", "/GPU:1"]
    gpus["count"] = 0
    assert distributed.make_strategy("mirrored", 2, "auto").devices == ["/CPU:0", "/CPU:1"]


def test_one_multiworker_strategy_a_process(fake_tf, monkeypatch):
    """TensorFlow configures its collectives once a process: the strategy is made once
    and reused; a case on the other kind of device is refused with its own error."""
    gpus, _, multiworker, _ = fake_tf
    gpus["count"] = 1
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 0}}))
    first = distributed.make_strategy("multiworker", device="gpu:0")
    assert distributed.make_strategy("multiworker", device="auto") is first
    assert len(multiworker.made) == 1 and first.resolver is None  # every local GPU
    with pytest.raises(distributed.OnePerProcess, match="runs on the GPU"):
        distributed.make_strategy("multiworker", device="cpu")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(distributed.ScaleOutError, match="TF_CONFIG changed"):
        distributed.make_strategy("multiworker", device="gpu:0")


def test_a_cpu_multiworker_strategy_sees_no_accelerators(fake_tf, monkeypatch):
    fake_tf[0]["count"] = 1
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    strategy = distributed.make_strategy("multiworker", device="cpu")
    assert strategy.resolver.num_accelerators() == {}


def test_the_scaling_suite_runs_each_case_on_its_own_device(monkeypatch, tiny):
    """bench/suites/test_scaling.py builds its config with the case's device."""
    from bench.harness.cases import Case
    from bench.suites import test_scaling

    seen = []

    def make_trainer(config, dataset, strategy, replicas):
        seen.append((config.device, strategy, replicas))
        raise distributed.OnePerProcess("stop here")

    monkeypatch.setattr(distributed, "make_trainer", make_trainer)
    case = Case("scaling", "mlp", "cpu", 128, xla=False, replicas=2, strategy="mirrored")
    with pytest.raises(pytest.skip.Exception, match="stop here"):
        test_scaling.test_scaling_epoch(benchmark=None, case=case, dataset=tiny, bench_state=None)
    assert seen == [("cpu", "mirrored", 2)]


def _gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


@pytest.mark.skipif(_gpu_count() == 0, reason="no GPU here: CPU replicas on a GPU host")
def test_cpu_replicas_on_a_gpu_host_really_run_on_the_cpu(tmp_path, even):
    folder = write_dataset(tmp_path / "even", even)
    out = tmp_path / "cpu.json"
    proc = _cli(["--strategy", "mirrored", "--replicas", "2", "--device", "cpu",
                 "--batch-size", "32", "--epochs", "1", "--no-verify", "--data-dir",
                 str(folder), "--json", str(out)])
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert json.loads(out.read_text())["device"] == "cpux2"


@pytest.mark.skipif(_gpu_count() < 2, reason="needs 2 GPUs: mirrored over GPUs")
def test_gpu_replicas_run_on_the_gpus(tmp_path, even, single_device_losses):
    folder = write_dataset(tmp_path / "even", even)
    out = tmp_path / "gpu.json"
    proc = _cli(["--strategy", "mirrored", "--replicas", "2", "--device", "gpu",
                 "--batch-size", str(GLOBAL_BATCH // 2), "--epochs", str(EPOCHS), "--no-jit",
                 "--no-verify", "--data-dir", str(folder), "--json", str(out)])
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["device"] == "gpux2"
    # GPU arithmetic (TF32, other reduction orders) differs more than the CPU's.
    assert [e["loss"] for e in record["epochs"]] == pytest.approx(single_device_losses,
                                                                  rel=1e-2)
