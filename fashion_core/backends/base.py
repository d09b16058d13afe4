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


def calibration_sizes(device: str) -> tuple[int, ...]:
    """Matrix sizes the calibration matmul tries: the fastest one sets the figure.

    Frameworks peak at different sizes (on a 2-core AVX-512 CPU, TensorFlow's matmul
    rose from 370 GFLOP/s at 1024 to 478 at 4096 while JAX's fell from 375 to 91), so
    one fixed size would understate some of them.
    """
    return (1024, 2048, 4096) if device == "cpu" else (4096, 8192)


def best_matmul_gflops(make_product, sizes, repeats: int = 10,
                       budget_seconds: float = 2.0) -> float:
    """The device's float32 matmul rate in GFLOP/s: the fastest timed product of all sizes.

    ``make_product(size)`` returns a callable that multiplies two size x size float32
    matrices and reads a value of the result back to the host, so each timed call waits
    for the device. Each size gets one warm-up call, then up to ``repeats`` timed calls,
    fewer where they would take more than ``budget_seconds`` (at least two).
    """
    best_rate = 0.0
    for size in sizes:
        product = make_product(size)
        product()  # trace, compile and warm up
        spent, calls = 0.0, 0
        while calls < repeats and (calls < 2 or spent < budget_seconds):
            begin = time.perf_counter()
            product()
            elapsed = time.perf_counter() - begin
            spent, calls = spent + elapsed, calls + 1
            best_rate = max(best_rate, 2 * size**3 / elapsed / 1e9)
    return best_rate


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

    def device_peak_bytes(self) -> int | None:
        """Peak device memory since the last reset, where the framework reports it."""
        return None

    def reset_device_peak(self) -> None:
        """Start a new peak-memory window (no-op where not reported)."""
