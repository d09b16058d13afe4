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


# -- in this process, under whichever backend the suite runs with ---------------------------
# (the tests above start the other backends in subprocesses; these use the one loaded here)

import gc  # noqa: E402
import weakref  # noqa: E402

import numpy as np  # noqa: E402

from fashion_core import calibration  # noqa: E402
from fashion_core.backends import base, device_data  # noqa: E402


def _backend():
    from fashion_core import backends

    return backends.current()


def _has_gpu() -> bool:
    return any(d.kind == "GPU" for d in _backend().list_devices())


needs_gpu = pytest.mark.skipif(not _has_gpu(), reason="no GPU here for this backend")


def _fake_clock(monkeypatch, rates: dict, fail_at: set = frozenset()):
    """A clock that moves by 2 n^3 / rate per product; products of size n in
    ``fail_at`` raise, as a framework without the dtype would."""
    clock = {"now": 0.0}
    calls = []

    def make_product(size):
        if size in fail_at:
            raise TypeError(f"no kernel for size {size}")

        def product():
            calls.append(size)
            clock["now"] += 2 * size**3 / rates[size]
        return product

    monkeypatch.setattr(calibration.time, "perf_counter", lambda: clock["now"])
    return make_product, calls, clock


def test_calibration_skips_sizes_it_cannot_afford(monkeypatch):
    """An emulated dtype on a CPU: 5 GFLOP/s. The 256 probe says a 1024 product takes
    0.43 s, so three of them fit in 3 s and 2048 (3.4 s each) is never built."""
    rates = {256: 5e9, 1024: 5e9, 2048: 5e9, 4096: 5e9}
    make_product, calls, clock = _fake_clock(monkeypatch, rates)
    rate = calibration.best_matmul_gflops(make_product, (256, 1024, 2048, 4096), total_seconds=3.0)
    assert rate == pytest.approx(5.0)
    assert set(calls) == {256, 1024} and calls.count(1024) >= 3
    assert clock["now"] < 3.0 + 3 * 0.43  # the budget, plus at most one product's overrun


def test_calibration_climbs_every_size_on_a_fast_device(monkeypatch):
    rates = {1024: 300e9, 2048: 400e9, 4096: 450e9}
    make_product, calls, clock = _fake_clock(monkeypatch, rates)
    assert calibration.best_matmul_gflops(make_product, (4096, 1024, 2048)) == pytest.approx(450.0)
    assert [size for size in dict.fromkeys(calls)] == [1024, 2048, 4096]  # ascending
    assert calls.count(4096) >= 3 and clock["now"] < 4.0


def test_calibration_of_an_unsupported_dtype_raises_what_the_harness_catches(monkeypatch):
    make_product, _, _ = _fake_clock(monkeypatch, {256: 1e9, 1024: 1e9}, fail_at={256})
    with pytest.raises(calibration.CalibrationUnsupported,
                       match="TypeError: no kernel for size 256"):
        calibration.best_matmul_gflops(make_product, (256, 1024))
    assert issubclass(calibration.CalibrationUnsupported, RuntimeError)
    # A failure at a larger size (out of memory, say) keeps the best rate so far.
    make_product, calls, _ = _fake_clock(monkeypatch, {256: 2e9, 1024: 1e9}, fail_at={1024})
    assert calibration.best_matmul_gflops(make_product, (256, 1024)) == pytest.approx(2.0)


def test_calibration_sizes_start_small_for_reduced_precision():
    assert calibration.calibration_sizes("cpu") == (1024, 2048, 4096)
    assert calibration.calibration_sizes("cpu", "bfloat16")[0] == 256
    assert calibration.calibration_sizes("gpu:0", "float16")[-1] == 8192
    with pytest.raises(ValueError, match="unknown calibration dtype 'int8'"):
        calibration.check_calibration_dtype("int8")


@pytest.mark.parametrize("dtype", calibration.CALIBRATION_DTYPES)
def test_each_backend_multiplies_in_each_dtype(dtype):
    """A small real product per dtype on the CPU: a rate, or the documented exception."""
    try:
        rate = _backend().matmul_gflops("cpu", dtype, size=128, repeats=2)
    except calibration.CalibrationUnsupported as error:
        assert dtype in str(error)
        return
    assert rate > 0.01


def test_an_unknown_calibration_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown calibration dtype"):
        _backend().matmul_gflops("cpu", "int8", size=64)


def test_trainers_on_one_device_share_one_copy_of_the_dataset(tiny):
    from fashion_core import data, train
    from fashion_core.config import TrainConfig

    dataset = data.synthetic(train_size=200, test_size=50, seed=3)
    first = train.make_trainer(TrainConfig(batch_size=32, jit=False), dataset)
    second = train.make_trainer(TrainConfig(batch_size=64, jit=False), dataset)
    assert first._images["train"] is second._images["train"]
    assert first._labels is second._labels
    other = train.make_trainer(TrainConfig(batch_size=32, jit=False), tiny)
    assert other._images["train"] is not first._images["train"]  # another dataset
    key = [k for k in device_data.shared_device_data_keys() if k[0] == id(dataset)]
    assert len(key) == 1 and key[0][1].endswith(":cpu")
    first.close()
    second.close()
    del first, second, dataset
    gc.collect()
    assert not [k for k in device_data.shared_device_data_keys() if k == key[0]]


def test_a_dropped_or_closed_trainer_is_released(tiny):
    """Nothing global keeps a trainer (model, optimizer, compiled step) alive after it
    is dropped; a closed one says so when used."""
    from fashion_core import train
    from fashion_core.config import TrainConfig

    trainer = train.make_trainer(TrainConfig(batch_size=64), tiny)
    trainer.compile()
    trainer.set_order(np.arange(trainer.n_train))
    trainer.run_steps(0, 2)
    trainer.predict_all("test")
    model, optimizer = weakref.ref(trainer.model), weakref.ref(trainer.optimizer)
    held = trainer  # a cache or traceback still holding it
    trainer.close()
    gc.collect()
    assert model() is None and optimizer() is None
    assert held.config.batch_size == 64 and held.device.name == "cpu"  # still described
    with pytest.raises(base.TrainerClosed, match="was closed"):
        held.run_steps(0, 1)
    held.close()  # twice is harmless
    assert getattr(held, "optimizer", None) is None

    again = train.make_trainer(TrainConfig(batch_size=64), tiny)
    again.compile()
    again.set_order(np.arange(again.n_train))
    again.run_steps(0, 1)
    gone = weakref.ref(again)
    del again
    gc.collect()
    assert gone() is None


def test_device_memory_is_empty_on_a_cpu(tiny):
    from fashion_core import train
    from fashion_core.config import TrainConfig

    trainer = train.make_trainer(TrainConfig(batch_size=64), tiny)
    trainer.reset_device_peak()
    assert trainer.device_memory() == base.DeviceMemory()
    assert trainer.device_peak_bytes() is None
    assert trainer.compute_dtype == "float32"
    assert train.make_trainer(TrainConfig(precision="bf16"), tiny).compute_dtype == "bfloat16"


@needs_gpu
def test_gpu_memory_figures_count_this_window(tiny):
    """On a GPU: a peak at least the baseline; the dataset is already there, shared."""
    from fashion_core import train
    from fashion_core.config import TrainConfig

    trainer = train.make_trainer(TrainConfig(batch_size=64, device="gpu:0"), tiny)
    trainer.compile()
    trainer.reset_device_peak()
    trainer.set_order(np.arange(trainer.n_train))
    trainer.run_steps(0, trainer.steps_per_epoch)
    memory = trainer.device_memory()
    assert memory.scope in ("window", "process")
    assert memory.peak_bytes >= memory.baseline_bytes > 0
    assert trainer.device_peak_bytes() == memory.peak_bytes


@needs_gpu
def test_gpu_total_memory_is_the_devices_whole_memory():
    """Every backend reports a GPU's total memory (not an allocator's share of it)."""
    gpu = next(d for d in _backend().list_devices() if d.kind == "GPU")
    assert gpu.memory_bytes is None or gpu.memory_bytes > 2**30


# -- backend-specific: each runs under its own backend, and is skipped elsewhere -------------

def _current_name() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


only = {name: pytest.mark.skipif(_current_name() != name,
                                 reason=f"the {name} backend's own code (KERAS_BACKEND="
                                        f"{_current_name()})")
        for name in ("tensorflow", "jax", "torch")}


@only["tensorflow"]
def test_tensorflow_memory_growth_is_set_before_any_gpu_op():
    from fashion_core.backends import tensorflow as tfb

    class FakeConfig:
        def __init__(self, gpus, fails=None):
            self.gpus, self.fails, self.grown = gpus, fails, []
            self.experimental = self

        def list_physical_devices(self, kind):
            return self.gpus if kind == "GPU" else []

        def set_memory_growth(self, gpu, value):
            if self.fails:
                raise self.fails("too late")
            self.grown.append((gpu.name, value))

    gpus = [type("Gpu", (), {"name": f"/physical_device:GPU:{i}"})() for i in range(2)]
    config = FakeConfig(gpus)
    assert tfb.enable_memory_growth(config, environ={}) == [g.name for g in gpus]
    assert config.grown == [(g.name, True) for g in gpus]
    # The user's explicit choice stands (TensorFlow reads the variable itself).
    assert tfb.enable_memory_growth(FakeConfig(gpus), {"TF_FORCE_GPU_ALLOW_GROWTH": "false"}) == []
    # Too late (TensorFlow started) or split into logical devices: left as it is.
    assert tfb.enable_memory_growth(FakeConfig(gpus, RuntimeError), environ={}) == []
    assert tfb.enable_memory_growth(FakeConfig(gpus, ValueError), environ={}) == []


@only["tensorflow"]
@needs_gpu
def test_tensorflow_grows_gpu_memory_as_needed():
    import tensorflow as tf

    if os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"):
        pytest.skip("TF_FORCE_GPU_ALLOW_GROWTH is set: the user decided")
    for gpu in tf.config.list_physical_devices("GPU"):
        assert tf.config.experimental.get_memory_growth(gpu)


@only["tensorflow"]
@pytest.mark.slow  # 40 s on the real dataset; the release itself: test_a_dropped_or_closed_...
def test_a_dozen_tensorflow_trainers_do_not_pile_up_in_memory():
    """Issue #14: build, compile, step, predict and drop 12 MLP trainers (XLA on and off)
    on a dataset of the real size. Before the dataset was shared and the optimizer's
    graph freed, each kept about 60 MB (47 MB of images, the traced step); now only
    XLA's compiled programs stay (TensorFlow's compilation cache never evicts), some
    10-15 MB a compiled trainer. The bound is generous against the noise of RSS."""
    import psutil

    from fashion_core import data, train
    from fashion_core.config import TrainConfig

    dataset = data.synthetic(train_size=60_000, test_size=10_000, seed=0)
    process = psutil.Process()
    rss = []
    for index in range(12):
        trainer = train.make_trainer(
            TrainConfig(batch_size=(64, 256, 1024)[index % 3], jit=index % 2 == 0), dataset)
        trainer.compile()
        trainer.set_order(np.arange(trainer.n_train))
        trainer.run_steps(0, 2)
        trainer.predict_all("test")
        trainer.close()
        del trainer
        gc.collect()
        rss.append(process.memory_info().rss)
    growth = (rss[-1] - rss[1]) / 2**20
    assert growth < 250, f"RSS grew {growth:.0f} MiB over 10 trainers: {rss}"


@only["jax"]
def test_jax_preallocation_is_off_unless_the_user_said_otherwise():
    from fashion_core.backends import jax_devices as jb

    environ = {}
    assert jb.disable_preallocation(environ, started=False)
    assert environ == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert not jb.disable_preallocation({"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}, False)
    assert jb.disable_preallocation({"XLA_PYTHON_CLIENT_PREALLOCATE": "0"}, False)
    with pytest.warns(UserWarning, match="preallocation stays on"):
        assert not jb.disable_preallocation({}, started=True)
    # This process: imported before JAX started its devices, so it is off.
    assert jb.PREALLOCATION_OFF or os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")


@only["jax"]
def test_jax_window_peak_reads_a_figure_whatever_the_process_peak_did():
    """JAX cannot reset its peak: a window that set a new high is exact ("window"),
    one that did not gets the process's peak as an upper bound ("process"), never None."""
    from fashion_core.backends import jax as jb

    rose = jb.window_memory({"bytes_in_use": 10, "peak_bytes_in_use": 900}, (100, 500))
    assert rose == base.DeviceMemory(900, 100, "window")
    flat = jb.window_memory({"bytes_in_use": 10, "peak_bytes_in_use": 500}, (100, 500))
    assert flat == base.DeviceMemory(500, 100, "process")
    assert jb.window_memory({"peak_bytes_in_use": 7}, None) == base.DeviceMemory(7, None,
                                                                                  "process")
    assert jb.window_memory({}, (1, 2)) == base.DeviceMemory()


@only["jax"]
def test_the_last_op_by_op_jax_trainer_takes_the_compiled_operations_with_it(tiny):
    """JAX keeps every single operation it compiled for a jit=False trainer; the last
    such trainer to close drops them (70-150 MB each on a CPU, never reused)."""
    from jax._src import dispatch

    from fashion_core import train
    from fashion_core.config import TrainConfig

    cache = dispatch.xla_primitive_callable
    first, second = (train.make_trainer(TrainConfig(batch_size=b, jit=False), tiny)
                     for b in (64, 100))
    for trainer in (first, second):
        trainer.set_order(np.arange(trainer.n_train))
        trainer.run_steps(0, 1)
    assert cache.cache_info().currsize > 0
    first.close()
    assert cache.cache_info().currsize > 0  # the second still runs op by op
    second.close()
    assert cache.cache_info().currsize == 0


@only["jax"]
@needs_gpu
def test_jax_does_not_take_the_gpu_at_start():
    import jax

    if os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false") != "false":
        pytest.skip("XLA_PYTHON_CLIENT_PREALLOCATE is set by the user")
    stats = jax.devices("gpu")[0].memory_stats() or {}
    pool = stats.get("pool_bytes", stats.get("bytes_reserved"))  # what the allocator took
    assert pool is not None and stats.get("bytes_limit"), stats
    assert pool < 0.5 * stats["bytes_limit"], stats  # preallocated, it would be all of it


@only["torch"]
def test_torch_trainers_compile_their_own_functions(tiny):
    """Each trainer compiles its own copy of the step, so one trainer's compiled code
    never counts against another's recompile limit: under a limit of 1 (which a shared
    function would hit at the second trainer), three trainers all run compiled."""
    import torch

    from fashion_core import train
    from fashion_core.backends import torch as tb
    from fashion_core.config import TrainConfig

    first = tb.own_function(tb.Trainer._loss.__get__(object()))
    second = tb.own_function(tb.Trainer._loss.__get__(object()))
    assert first.__func__.__code__ is not second.__func__.__code__
    config = TrainConfig(batch_size=100, jit=True)
    with torch._dynamo.config.patch(recompile_limit=1, accumulated_recompile_limit=2):
        trainers = [train.make_trainer(config, tiny) for _ in range(3)]
        for trainer in trainers:
            trainer.set_order(np.arange(trainer.n_train))
            assert trainer.run_steps(0, 1).bad_step == -1


@only["torch"]
def test_torch_recompiling_past_the_limit_fails_rather_than_running_eager(tiny):
    import torch

    from fashion_core import train
    from fashion_core.config import TrainConfig

    trainer = train.make_trainer(TrainConfig(batch_size=100, jit=True), tiny)
    with torch._dynamo.config.patch(recompile_limit=1, automatic_dynamic_shapes=False):
        trainer.predict_batch(tiny.x_test[:3])
        with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
            trainer.predict_batch(tiny.x_test[:5])  # another shape: a recompile
