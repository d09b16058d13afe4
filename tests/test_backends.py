"""The JAX and PyTorch backends, each in a subprocess with KERAS_BACKEND set.

Keras picks its backend once, at import, so every backend runs in a fresh interpreter:
one subprocess a backend does all the work (train, predict, precision policies, a loss
that diverges, the tiny benchmark matrix) and prints what it saw as one JSON line; the
tests below check that record. A backend whose framework is not installed is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("jax", "torch")
MARKER = "BACKEND-RECORD "

# Runs in the subprocess. TensorFlow must not be imported at any point: the check is made
# after importing the package and again after everything else, benchmarks included.
SCRIPT = r'''
import json, sys

import keras
import numpy as np

import fashion_core
from fashion_core import backends, data, models, train
from fashion_core.config import TrainConfig

record = {"backend": keras.config.backend()}
module = backends.current()
record["tf_after_import"] = "tensorflow" in sys.modules
record["name"] = module.NAME
record["versions"] = module.versions()
record["devices"] = [d.as_dict() for d in module.list_devices()]

tiny = data.synthetic(train_size=300, test_size=100, seed=1)
config = TrainConfig(model="mlp", epochs=3, batch_size=64, eval_batch_size=50)

result = train.train(config, tiny)
record["losses"] = [e.loss for e in result.epochs]
record["accuracy"] = result.test_accuracy
record["compile_seconds"] = result.compile_seconds

trainer = train.make_trainer(config, tiny)
trainer.compile()
trainer.set_order(np.arange(300))
record["samples"] = [trainer.run_steps(0, 4).samples, trainer.run_steps(4, 1).samples]
record["predict_shapes"] = [list(trainer.predict_all("test", b).shape)
                            for b in (1, 7, 64, 100, 128)]
record["predict_range"] = [int(trainer.predict_all("test").min()),
                           int(trainer.predict_all("test").max())]
record["logits_shape"] = list(trainer.predict_batch(tiny.x_test[:3]).shape)
record["attributes"] = {"device": trainer.device.name, "jit": trainer.jit,
                        "model": trainer.model.name,
                        "peak": trainer.device_peak_bytes()}

# The step compiled the other way round (JAX: op by op; torch: torch.compile), one epoch.
other = config.replace(epochs=1, jit=not trainer.jit)
record["other_jit_loss"] = train.train(other, tiny).epochs[0].loss

record["precision"] = {}
for precision in ("mixed_float16", "mixed_bfloat16"):
    before = keras.config.dtype_policy().name
    mixed = train.make_trainer(config.replace(precision=precision), tiny)
    after_build = keras.config.dtype_policy().name
    run = train.train(mixed.config, tiny, trainer=mixed)
    record["precision"][precision] = {
        "before": before, "after_build": after_build,
        "after_train": keras.config.dtype_policy().name,
        "first_layer": mixed.model.layers[0].dtype_policy.name,
        "logits_dtype": mixed.model.layers[-1].compute_dtype,
        "loss_scaled": isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer),
        "losses": [e.loss for e in run.epochs]}

real_build = models.build
def broken(name):
    raise RuntimeError("boom")
models.build = broken
try:
    train.make_trainer(config.replace(precision="mixed_bfloat16"), tiny)
except RuntimeError:
    pass
models.build = real_build
record["policy_after_failure"] = keras.config.dtype_policy().name

try:
    train.train(config.replace(learning_rate=1e30), tiny)
    record["diverged"] = None
except train.NonFiniteLossError as error:
    record["diverged"] = str(error)

import pytest
code = pytest.main(["bench", "--benchmark-only", "--bench-matrix", "tiny",
                    "--bench-device", "cpu", "--bench-data", "synthetic", "--bench-no-save",
                    "-q", "-p", "no:cacheprovider"])
record["bench_exit"] = int(code)
record["tf_at_end"] = "tensorflow" in sys.modules
print("BACKEND-RECORD " + json.dumps(record), flush=True)
'''


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


@pytest.fixture(scope="module", params=BACKENDS)
def record(request) -> dict:
    """What one backend's subprocess saw (run once per backend, shared by the tests)."""
    backend = request.param
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed (pip install -e .[{backend}])")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len(MARKER):])


def test_the_backend_is_the_one_asked_for(record):
    assert record["backend"] == record["name"] == record["versions"]["backend"]
    versions = record["versions"]
    assert versions["tensorflow"] is None and versions["keras"]
    assert versions["jax" if record["backend"] == "jax" else "torch"]
    assert record["devices"][0]["name"] == "cpu" and record["devices"][0]["kind"] == "CPU"


def test_a_few_epochs_lower_the_loss(record):
    losses = record["losses"]
    assert all(map(lambda x: x == x and abs(x) < 1e6, losses)), losses  # finite
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.2, losses
    assert record["accuracy"] > 0.3  # chance is 0.1
    assert record["compile_seconds"] > 0


def test_the_other_compile_mode_trains_the_same(record):
    """JAX op by op, or torch compiled: the first epoch's loss as with the default mode."""
    assert abs(record["other_jit_loss"] - record["losses"][0]) < 1e-3, record


def test_every_sample_is_trained_once_and_padding_is_masked(record):
    assert record["samples"] == [256, 44]  # 300 = 4 x 64 + 44


def test_predictions_agree_in_shape(record):
    assert record["predict_shapes"] == [[100]] * 5
    low, high = record["predict_range"]
    assert 0 <= low <= high <= 9
    assert record["logits_shape"] == [3, 10]
    assert record["attributes"]["device"] == "cpu" and record["attributes"]["model"] == "mlp"
    assert record["attributes"]["peak"] is None  # not reported on a CPU


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_restores_the_policy(record, precision):
    seen = record["precision"][precision]
    assert seen["before"] == seen["after_build"] == seen["after_train"] == "float32"
    assert seen["first_layer"] == precision and seen["logits_dtype"] == "float32"
    assert seen["loss_scaled"] == (precision == "mixed_float16")
    assert seen["losses"][-1] < seen["losses"][0], seen["losses"]
    assert record["policy_after_failure"] == "float32"


def test_diverging_loss_stops_naming_epoch_and_step(record):
    assert record["diverged"] and "epoch 1, step" in record["diverged"], record["diverged"]


def test_tensorflow_is_never_imported(record):
    assert not record["tf_after_import"], "importing fashion_core imported TensorFlow"
    assert record["bench_exit"] == 0, "the tiny benchmark matrix failed"
    assert not record["tf_at_end"], "training or the benchmarks imported TensorFlow"
