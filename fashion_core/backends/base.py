"""What every backend's Trainer shares: epoch bookkeeping, padding, work counts.

A backend subclass keeps the dataset on its device and implements four things: build the
model and optimizer (``__init__``), run a span of steps in one compiled call
(``_run_steps``), predict a whole image set in one compiled call (``_predict_all``), and
predict one batch from the host (``predict_batch``).

It also holds what every backend builds the same way through Keras: the dtype-policy
scope (:func:`precision_policy`), the optimizer (:func:`make_optimizer`) and the seeding
(:func:`set_random_seed`, which keeps TensorFlow out of JAX and PyTorch processes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import sys
import time
import weakref
from collections.abc import Callable

import keras
import numpy as np

from fashion_core import models
from fashion_core.config import TrainConfig
from fashion_core.data import NUM_CLASSES, Dataset


@dataclasses.dataclass(frozen=True)
class StepStats:
    """Sums over a span of train steps, read back to the host (which syncs the device)."""

    loss_sum: float  # sum over samples of the cross-entropy
    mse_sum: float  # sum over samples of the tutorial's MSE(one-hot, logits)
    samples: int  # samples that were trained on
    bad_step: int  # the first step (within the epoch) whose loss was NaN/inf, or -1


@contextlib.contextmanager
def precision_policy(name: str):
    """Set Keras's global dtype policy for the block, and always restore the old one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam; wrapped in dynamic loss scaling for float16, whose gradients underflow."""
    optimizer = keras.optimizers.Adam(config.learning_rate)
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow for other backends.

    Keras seeds TensorFlow too whenever it is installed (for ``tf.data``), which imports
    all of it (seconds, and hundreds of MB) into a JAX or PyTorch process that never uses
    it. Where TensorFlow is not loaded yet and not the backend, Keras is told it is not
    there for this one call; Python's, numpy's and the backend's seeds are set as usual.
    """
    from keras.src.utils import module_utils

    lazy_tf = module_utils.tensorflow
    if keras.config.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    saved = lazy_tf._available
    lazy_tf._available = False
    try:
        keras.utils.set_random_seed(seed)
    finally:
        lazy_tf._available = saved


def per_sample_losses(logits, labels):
    """Cross-entropy on logits (what is optimised) and the tutorial's MSE(one-hot, logits).

    Written once in ``keras.ops``, so every backend's compiled step traces the same loss;
    both are computed in float32 whatever the compute precision.
    """
    ops = keras.ops
    logits = ops.cast(logits, "float32")
    ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    mse = ops.mean(ops.square(ops.one_hot(labels, NUM_CLASSES) - logits), axis=-1)
    return ce, mse


CALIBRATION_DTYPES = ("float32", "bfloat16", "float16")
#: Seconds one calibration may take (per device and dtype): $FASHION_BENCH_CALIBRATION_SECONDS,
#: default 3. The harness's own tests set it lower: their figures are not the point.
CALIBRATION_ENV = "FASHION_BENCH_CALIBRATION_SECONDS"
DEFAULT_CALIBRATION_SECONDS = 3.0


def calibration_seconds(environ=None) -> float:
    """How long a calibration may take: $FASHION_BENCH_CALIBRATION_SECONDS, else 3 s; a
    ValueError naming the variable where it is not a positive number."""
    text = (os.environ if environ is None else environ).get(CALIBRATION_ENV, "").strip()
    if not text:
        return DEFAULT_CALIBRATION_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{CALIBRATION_ENV}={text!r}: give a positive number of seconds, "
                         f"e.g. 3")
    return seconds


# Keras dtype policy -> the dtype its matmuls compute in (the calibration that applies).
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16",
                  "mixed_float16": "float16"}


class TrainerClosed(AttributeError):
    """A closed trainer was asked for something it released (see ``BaseTrainer.close``)."""


class CalibrationUnsupported(RuntimeError):
    """The framework cannot multiply matrices in this dtype on this device.

    Raised by every backend's ``matmul_gflops``; the harness records the dtype's peak
    as unknown (None) for that device and goes on.
    """


def check_calibration_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`CALIBRATION_DTYPES`, else a ValueError naming them."""
    if dtype not in CALIBRATION_DTYPES:
        raise ValueError(f"unknown calibration dtype {dtype!r}; choose one of: "
                         f"{', '.join(CALIBRATION_DTYPES)}")
    return dtype


def calibration_sizes(device: str, dtype: str = "float32") -> tuple[int, ...]:
    """Matrix sizes the calibration matmul tries, smallest first: the fastest sets the figure.

    Frameworks peak at different sizes (on a 2-core AVX-512 CPU, TensorFlow's matmul
    rose from 370 GFLOP/s at 1024 to 478 at 4096 while JAX's fell from 375 to 91), so
    one fixed size would understate some of them. On a CPU, bfloat16 and float16 may be
    emulated at a few GFLOP/s, where one 1024 product would take seconds: they start
    with a 256 probe, whose rate tells :func:`best_matmul_gflops` which larger sizes fit
    its time budget.
    """
    if device == "cpu":
        return (1024, 2048, 4096) if dtype == "float32" else (256, 1024, 2048, 4096)
    return (4096, 8192) if dtype == "float32" else (1024, 4096, 8192)


def best_matmul_gflops(make_product, sizes, repeats: int = 10,
                       budget_seconds: float | None = None,
                       total_seconds: float | None = None) -> float:
    """A device's matmul rate in GFLOP/s: the fastest timed product over ``sizes``.

    ``make_product(size)`` returns a callable that multiplies two size x size matrices
    (in whatever dtype is being calibrated) and waits for the result (reads a value of
    it back to the host, or blocks until it is ready), so each timed call waits for the
    device. Sizes are tried smallest first; each
    gets one warm-up call (trace, compile), then up to ``repeats`` timed calls, fewer
    where they would take more than ``budget_seconds`` for that size or run past
    ``total_seconds`` for the whole calibration (at least two timed calls a size).
    ``total_seconds`` defaults to :func:`calibration_seconds` (3 s), ``budget_seconds``
    to two thirds of it.

    A size is skipped, with every larger one, when the rate measured so far says its
    warm-up and two timed calls would not fit in what is left of ``total_seconds``:
    that keeps an emulated dtype on a CPU (a few GFLOP/s) from taking minutes. So the
    whole call takes about ``total_seconds``, plus at most the smallest size's first
    three calls.

    Raises :class:`CalibrationUnsupported` when the smallest size cannot be built or run
    (the framework has no such matmul on the device); a failure at a larger size (out
    of memory, say) ends the climb and the best rate so far stands.
    """
    if total_seconds is None:
        total_seconds = calibration_seconds()
    if budget_seconds is None:
        budget_seconds = total_seconds * 2 / 3
    begin = time.perf_counter()
    deadline = begin + total_seconds
    best_rate = 0.0  # FLOP/s
    for position, size in enumerate(sorted(sizes)):
        flops = 2 * size**3
        if best_rate and 3 * flops / best_rate > deadline - time.perf_counter():
            break
        try:
            product = make_product(size)
            product()  # trace, compile and warm up
        except Exception as error:  # noqa: BLE001 - frameworks raise their own types
            if position == 0:
                text = str(error).strip().splitlines()
                raise CalibrationUnsupported(
                    f"{type(error).__name__}: {text[0] if text else ''}"[:300]) from error
            break
        spent, calls = 0.0, 0
        while calls < repeats:
            start = time.perf_counter()
            product()
            elapsed = max(time.perf_counter() - start, 1e-9)
            spent, calls = spent + elapsed, calls + 1
            best_rate = max(best_rate, flops / elapsed)
            if calls >= 2 and (spent >= budget_seconds
                               or time.perf_counter() + elapsed > deadline):
                break
    return best_rate / 1e9


# (id of a Dataset, "backend:device") -> that dataset's arrays on that device.
_DEVICE_DATA: dict[tuple[int, str], dict] = {}


def shared_device_data(dataset: Dataset, where: str,
                       upload: Callable[[Dataset], dict]) -> dict:
    """The dataset's arrays on one device, uploaded once per process and shared.

    ``where`` names the device and framework ("tensorflow:gpu:0"); ``upload(dataset)``
    returns what lives on it (a dict of the framework's arrays) and is called only the
    first time a dataset is asked for there. Every trainer on that device then reads the
    same arrays, so ten trainers of a benchmark matrix hold one 47 MB copy of
    Fashion-MNIST, not ten. The copy is dropped when the Dataset object itself is
    garbage-collected (trainers keep a reference to it while they live).
    """
    key = (id(dataset), where)
    if key not in _DEVICE_DATA:
        if not any(k[0] == id(dataset) for k in _DEVICE_DATA):
            # ids are reused after an object dies: forget its entries when it does.
            weakref.finalize(dataset, _forget_dataset, id(dataset))
        _DEVICE_DATA[key] = upload(dataset)
    return _DEVICE_DATA[key]


def _forget_dataset(dataset_id: int) -> None:
    for key in [k for k in _DEVICE_DATA if k[0] == dataset_id]:
        del _DEVICE_DATA[key]


def shared_device_data_keys() -> list[tuple[int, str]]:
    """What :func:`shared_device_data` holds now: (dataset id, "backend:device") pairs."""
    return list(_DEVICE_DATA)


@dataclasses.dataclass(frozen=True)
class DeviceMemory:
    """A trainer's device memory over one window (from ``reset_device_peak`` to now).

    Every backend counts the same thing: bytes its allocator holds in live buffers on
    the device (TensorFlow's ``get_memory_info``, JAX's ``bytes_in_use``, torch's
    ``memory_allocated``), not memory reserved by its pool or cache, and not other
    processes'. All None on a CPU, where the host's RSS is the figure.

    Attributes:
        peak_bytes: the most bytes held at once during the window.
        baseline_bytes: bytes held when the window began: what earlier work (other
            trainers, the shared dataset) left on the device. ``peak_bytes -
            baseline_bytes`` is what the window itself added at its peak.
        scope: "window" where ``peak_bytes`` is exactly this window's peak;
            "process" where the framework cannot reset its peak (JAX) and the window
            set no new high: then ``peak_bytes`` is the process's peak so far, an upper
            bound on the window's, and the window's own peak lies between
            ``baseline_bytes`` and it.
    """

    peak_bytes: int | None = None
    baseline_bytes: int | None = None
    scope: str | None = None  # "window" or "process"; None where nothing is reported

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cudnn_text(version: int | None) -> str | None:
    """cuDNN's integer version as text: 90100 -> '9.1.0', 8906 -> '8.9.6'; None stays None."""
    if not version:
        return None
    if version >= 90000:  # cuDNN 9 on: 10000 * major + 100 * minor + patch
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"  # 1000 * major + ...


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


class BaseTrainer:
    """Shared state and helpers; see the module docstring for what subclasses add."""

    backend = ""  # the Keras backend the subclass runs on: "tensorflow", "jax", "torch"

    def __init__(self, config: TrainConfig, dataset: Dataset) -> None:
        self.config = config
        self.dataset = dataset
        self.n_train = len(dataset.x_train)
        if config.batch_size > self.n_train:
            from fashion_core.config import ConfigError

            raise ConfigError(f"batch_size {config.batch_size} is larger than the "
                              f"{self.n_train} training samples")
        self.batch_size = config.batch_size
        # The last step takes the remainder: its missing samples are padded and masked out.
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.padded_size = self.steps_per_epoch * self.batch_size
        self.samples_per_epoch = self.n_train  # samples an epoch trains on
        self.compile_seconds: float | None = None

    # -- work counts -------------------------------------------------------------------
    @property
    def model(self):  # the Keras model, set by subclasses
        return self._model

    @property
    def train_flops_per_epoch(self) -> int:
        return models.train_flops_per_sample(self.model) * self.samples_per_epoch

    @property
    def flops_per_sample(self) -> int:
        return models.flops_per_sample(self.model)

    def padded_order(self, order: np.ndarray) -> np.ndarray:
        """An epoch's sample order padded to whole batches (pads are masked in the step)."""
        order = np.asarray(order, dtype=np.int32)
        if order.shape != (self.n_train,):
            raise ValueError(f"order must hold {self.n_train} indices, not {order.shape}")
        pad = np.zeros(self.padded_size - self.n_train, dtype=np.int32)
        return np.concatenate([order, pad])

    # -- the interface the train loop and the benchmarks use ------------------------------
    def set_order(self, order: np.ndarray) -> None:
        """Upload the sample order of the coming epoch (a permutation of the train set)."""
        raise NotImplementedError

    def run_steps(self, start: int, count: int) -> StepStats:
        """Run steps ``start .. start+count-1`` of the epoch in one compiled call."""
        raise NotImplementedError

    def compile(self) -> float:
        """Trace and compile the train step without changing any weight; return seconds."""
        if self.compile_seconds is None:
            self.set_order(np.arange(self.n_train))
            begin = time.perf_counter()
            self.run_steps(0, 0)  # zero steps: compiles the whole loop, trains nothing
            self.compile_seconds = time.perf_counter() - begin
        return self.compile_seconds

    def predict_all(self, which: str = "test", batch_size: int | None = None) -> np.ndarray:
        """Predicted classes of every image of ``which`` ("test" or "train"), int32."""
        raise NotImplementedError

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """Logits for uint8 images given on the host, returned to the host."""
        raise NotImplementedError

    def evaluate(self) -> float:
        """Test accuracy: the share of test images whose predicted class is right."""
        predictions = self.predict_all("test", self.config.eval_batch_size)
        return float(np.mean(predictions == self.dataset.y_test))

    @property
    def compute_dtype(self) -> str:
        """The dtype the model's matmuls compute in: "float32", "bfloat16" or "float16"
        (the calibration a row's share of peak divides by)."""
        return COMPUTE_DTYPES[self.config.precision]

    # -- device memory (see DeviceMemory for what every backend counts) -----------------
    def device_memory(self) -> DeviceMemory:
        """Peak and baseline device memory since :meth:`reset_device_peak`."""
        return DeviceMemory()

    def device_peak_bytes(self) -> int | None:
        """Bytes held on the device at peak since :meth:`reset_device_peak` (None on a
        CPU); see :class:`DeviceMemory` for what is counted and JAX's upper bound."""
        return self.device_memory().peak_bytes

    def reset_device_peak(self) -> None:
        """Start a new device-memory window (no-op where nothing is reported)."""

    # -- releasing -----------------------------------------------------------------------
    # What a closed trainer still answers: its description and the figures it measured.
    _KEPT_WHEN_CLOSED = frozenset({
        "config", "n_train", "batch_size", "steps_per_epoch", "padded_size",
        "samples_per_epoch", "compile_seconds", "device", "jit", "global_batch",
        "replicas", "strategy_name", "_closed"})

    def close(self) -> None:
        """Release what the trainer holds: model, optimizer state, compiled functions and
        its references to the device data; the trainer cannot train or predict after.

        Dropping the last reference to a trainer releases the same (these are cycles
        that ``gc`` collects); ``close`` does it now, even while something still
        refers to the trainer (a cache, a traceback). Calling it twice is harmless.
        """
        for name in list(vars(self)):
            if name not in self._KEPT_WHEN_CLOSED:
                delattr(self, name)
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):
        # Only reached for missing attributes: say why, rather than a bare AttributeError.
        if name != "_closed" and vars(self).get("_closed"):
            raise TrainerClosed(f"this {type(self).__name__} was closed (no {name!r} any "
                                "more); build a new one")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
