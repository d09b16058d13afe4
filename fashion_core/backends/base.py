"""What every backend's Trainer shares: epoch bookkeeping, padding, work counts.

A backend subclass keeps the dataset on its device and implements five things: build the
model and optimizer (``__init__``), upload an epoch's sample order (``set_order``), run a
span of steps in one compiled call (``run_steps``), predict a whole image set in one
compiled call (``predict_all``), and predict one batch from the host (``predict_batch``).

What the backends share besides the class: the Keras pieces each builds the same way
(:mod:`fashion_core.backends.keras_common`), the dataset's one copy per device
(:mod:`fashion_core.backends.device_data`), the matmul calibration
(:mod:`fashion_core.calibration`) and the host's identity (:mod:`fashion_core.host`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from fashion_core import models
from fashion_core.calibration import COMPUTE_DTYPES
from fashion_core.config import TrainConfig
from fashion_core.data import Dataset


@dataclasses.dataclass(frozen=True)
class StepStats:
    """Sums over a span of train steps, read back to the host (which syncs the device)."""

    loss_sum: float  # sum over samples of the cross-entropy
    mse_sum: float  # sum over samples of the tutorial's MSE(one-hot, logits)
    samples: int  # samples that were trained on
    bad_step: int  # the first step (within the epoch) whose loss was NaN/inf, or -1


class TrainerClosed(AttributeError):
    """A closed trainer was asked for something it released (see ``BaseTrainer.close``)."""


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
