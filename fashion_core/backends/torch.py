"""PyTorch backend: a plain torch train step over the Keras model (a ``torch.nn.Module``).

The same choices as the TensorFlow backend, where torch allows them:

- the dataset lives on the device as uint8; a step gathers its batch by index
  (``index_select``) from the epoch's padded permutation and scales it there;
- the last, partial batch is padded and masked, so every step has one static shape
  (which also spares ``torch.compile`` a recompilation for the remainder);
- a span of steps is one call from the train loop with one read-back at its end: the
  loss sums and the first non-finite step are kept on the device as tensors, so no step
  waits for the device. Torch has no compiled loop over steps, so the steps themselves
  are dispatched from Python, one after another.

A step: the Keras model's forward pass, the masked cross-entropy, ``loss.backward()``
onto the weights' torch Parameters (``variable.value``), then Keras's own optimizer
(``optimizer.apply``: the same Adam, and the same dynamic loss scaling for float16, as
the other backends).

``jit=True`` compiles the forward pass and the loss with ``torch.compile`` (Inductor;
AOTAutograd compiles the backward pass with them) and, separately, the optimizer's
update. Each trainer compiles its own copies of these functions (:func:`own_function`):
Dynamo keeps compiled code on the function's code object, so trainers sharing one
would recompile against each other until Dynamo's recompile limit, after which it runs
the function eagerly, silently. ``fullgraph=True`` turns that fallback, and any graph
break, into an error, so a row labelled compiled ran compiled.

"auto" (``jit=None``) means compiled on a GPU, where per-op launch overhead is what
compiling removes, and eager on a CPU. Measured on a 2-core CPU (batch 128): the
MLP's epoch takes 0.81 s compiled against 1.10 s eager, but compiling takes 14 s with a
cold Inductor cache (3.4 s warm), more than a 20-epoch run saves; the CNN is slower
compiled (23.6 s an epoch against 21.8 s eager).

Under ``mixed_float16`` on a CPU, Inductor computes the float16 parts in float32 (the
compiled losses equal the float32 ones); the eager step computes in float16.
"""

from __future__ import annotations

import time
import types

import keras
import numpy as np
import torch

from fashion_core import models
from fashion_core.backends import DeviceInfo, resolve_device
from fashion_core.backends.base import BaseTrainer, DeviceMemory, StepStats
from fashion_core.backends.device_data import shared_device_data
from fashion_core.backends.keras_common import (
    make_optimizer,
    per_sample_losses,
    precision_policy,
    set_random_seed,
)
from fashion_core.calibration import (
    CalibrationUnsupported,
    best_matmul_gflops,
    calibration_sizes,
    check_calibration_dtype,
)
from fashion_core.config import TrainConfig
from fashion_core.data import Dataset
from fashion_core.host import cpu_model, cudnn_text

NAME = "torch"


def versions() -> dict:
    """Torch and Keras versions, and the CUDA/cuDNN torch was built with (GPU builds)."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"backend": NAME, "tensorflow": None, "keras": keras.__version__,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": cudnn_text(cudnn)}


def list_devices() -> list[DeviceInfo]:
    """The CPU and every CUDA GPU torch sees, named cpu, gpu:0, gpu:1, ..."""
    devices = [DeviceInfo("cpu", "CPU", cpu_model())]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(DeviceInfo(f"gpu:{index}", "GPU", props.name,
                                      memory_bytes=int(props.total_memory),
                                      compute_capability=f"{props.major}.{props.minor}"))
    return devices


def own_function(method):
    """A copy of a bound method with a code object of its own, bound to the same object.

    ``torch.compile`` keeps what it compiled on the function's code object, which all
    instances of a class share: each new trainer would fail the guards of the last
    one's and recompile, and past ``torch._dynamo.config.recompile_limit`` (or the
    accumulated limit) Dynamo gives up and runs the function eagerly. A copy per
    trainer gives each its own cache, freed with the trainer.
    """
    function = method.__func__
    copy = types.FunctionType(function.__code__.replace(), function.__globals__,
                              function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    return types.MethodType(copy, method.__self__)


def compile_own(method):
    """``torch.compile`` of this trainer's own copy of ``method`` (see :func:`own_function`).

    ``fullgraph=True``: a graph break, or recompiling past Dynamo's limit, raises
    instead of quietly running the function eagerly under a "compiled" label.
    """
    return torch.compile(own_function(method), fullgraph=True)


def torch_device(name: str) -> torch.device:
    """'cpu' -> cpu, 'gpu:1' -> cuda:1."""
    return torch.device("cpu" if name == "cpu" else "cuda:" + name.split(":")[1])


class Trainer(BaseTrainer):
    """A model, its optimizer and the dataset, all on one torch device."""

    backend = NAME

    def __init__(self, config: TrainConfig, dataset: Dataset) -> None:
        super().__init__(config, dataset)
        self.device = resolve_device(config.device, list_devices())
        self._device = torch_device(self.device.name)
        self.jit = self.device.kind == "GPU" if config.jit is None else bool(config.jit)
        self._scales_loss = config.precision == "mixed_float16"
        set_random_seed(config.seed)
        with precision_policy(config.precision), self._scope():
            self._model = models.build(config.model)
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self._model.trainable_variables)
        self._variables = list(self._model.trainable_variables)
        self._params = [v.value for v in self._variables]  # torch Parameters
        arrays = shared_device_data(dataset, f"{NAME}:{self.device.name}", self._upload)
        self._images = {"train": arrays["x_train"], "test": arrays["x_test"]}
        self._labels = arrays["y_train"]
        self._order = torch.zeros(self.padded_size, dtype=torch.int64, device=self._device)
        # One epoch's padded positions: True for real samples, False for the padding.
        self._real = (torch.arange(self.padded_size, device=self._device)
                      < self.n_train).reshape(self.steps_per_epoch, -1)
        # The one place the step is compiled (or not): the forward pass and loss (with
        # them, AOTAutograd compiles the backward pass) and the optimizer's update.
        compiled = compile_own if self.jit else (lambda fn: fn)
        self._loss_fn = compiled(self._loss)
        # Loss scaling branches on the gradients' finiteness (``ops.cond`` with fresh
        # closures each call), which torch.compile would retrace on every step: that
        # update stays eager.
        self._apply_fn = self._apply if self._scales_loss else compiled(self._apply)
        self._logits_fn = compiled(self._logits)

    def _scope(self):
        """Keras's device scope: Keras ops put new tensors on our device, not its default."""
        name = "cpu" if self._device.type == "cpu" else f"gpu:{self._device.index}"
        return keras.device(name)

    def _upload(self, dataset: Dataset) -> dict:
        """The dataset's arrays on this trainer's device (see shared_device_data).

        ``torch.tensor`` copies: the dataset's arrays may be read-only, which torch
        dislikes."""
        return {"x_train": torch.tensor(dataset.x_train, device=self._device),
                "x_test": torch.tensor(dataset.x_test, device=self._device),
                "y_train": torch.tensor(dataset.y_train.astype(np.int64),
                                        device=self._device)}

    # -- training ------------------------------------------------------------------------
    def _loss(self, images, labels, real):
        """Masked mean CE, masked mean MSE and the real-sample count of one batch.

        ``real`` is True for real samples, False for padding, which is masked with
        selects, never a multiply by 0: its images are zeroed and its losses replaced by
        0, so no padded row can put 0 x inf = NaN into the loss or the gradient.
        """
        images = torch.where(real[:, None, None], images, torch.zeros_like(images))
        x = models.preprocess(images, self.config.model, keras.ops)
        logits = self._model(x, training=True)
        ce, mse = per_sample_losses(logits, labels)
        count = real.sum().float()
        zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
        return (torch.where(real, ce, zero).sum() / count,
                torch.where(real, mse, zero).sum() / count, count)

    def _apply(self, grads):
        """Keras's optimizer update (Adam; unscale and skip non-finite under float16)."""
        with torch.no_grad():
            self.optimizer.apply(grads, self._variables)

    def _train_step(self, images, labels, real):
        loss, mse, count = self._loss_fn(images, labels, real)
        scaled = self.optimizer.scale_loss(loss) if self._scales_loss else loss
        for param in self._params:
            param.grad = None
        scaled.backward()
        self._apply_fn([p.grad for p in self._params])
        return loss.detach(), mse.detach(), count

    def compile(self) -> float:
        """Compile (``jit``) or warm up the whole step on one batch; return seconds.

        No weight changes: the step runs once with zero gradients, and every weight and
        optimizer variable (step count, moments, loss scale) is put back afterwards.
        """
        if self.compile_seconds is None:
            state = [v.value for v in [*self._variables, *self.optimizer.variables]]
            saved = [value.detach().clone() for value in state]
            begin = time.perf_counter()
            index = torch.arange(self.batch_size, device=self._device)
            with self._scope():
                loss, _, _ = self._loss_fn(self._images["train"].index_select(0, index),
                                           self._labels.index_select(0, index),
                                           self._real[0])
                loss.backward()
                self._apply_fn([torch.zeros_like(p) for p in self._params])
                float(loss.detach())  # the read-back waits for the device
            self.compile_seconds = time.perf_counter() - begin
            with torch.no_grad():
                for value, copy in zip(state, saved, strict=True):
                    value.copy_(copy)
            for param in self._params:
                param.grad = None
        return self.compile_seconds

    def set_order(self, order: np.ndarray) -> None:
        self._order = torch.from_numpy(self.padded_order(order).astype(np.int64)).to(
            self._device).reshape(self.steps_per_epoch, -1)

    def run_steps(self, start: int, count: int) -> StepStats:
        # Sums and the first bad step stay on the device: one read-back for the span.
        sums = torch.zeros(3, device=self._device)
        bad = torch.tensor(-1, device=self._device)
        with self._scope():
            for step in range(start, start + count):
                index = self._order[step]
                loss, mse, n = self._train_step(self._images["train"].index_select(0, index),
                                                self._labels.index_select(0, index),
                                                self._real[step])
                sums += torch.stack([loss * n, mse * n, n])
                # A NaN/inf step does not stop the span (that would need a read-back each
                # step); the first one is remembered and reported, and the run ends there.
                bad = torch.where((bad < 0) & ~torch.isfinite(loss), step, bad)
        loss_sum, mse_sum, samples = sums.tolist()  # the read-back syncs the device
        return StepStats(loss_sum, mse_sum, int(samples), int(bad.item()))

    # -- inference -----------------------------------------------------------------------
    def _logits(self, images):
        x = models.preprocess(images, self.config.model, keras.ops)
        return self._model(x, training=False).float()

    @torch.no_grad()
    def predict_all(self, which: str = "test", batch_size: int | None = None) -> np.ndarray:
        """Full batches, then the remainder as one smaller batch (no padding work)."""
        batch_size = batch_size or self.config.eval_batch_size
        images = self._images[which]
        with self._scope():
            classes = [torch.argmax(self._logits_fn(images[i:i + batch_size]), dim=-1)
                       for i in range(0, len(images), batch_size)]
        return torch.cat(classes).to(torch.int32).cpu().numpy()

    @torch.no_grad()
    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        with self._scope():
            logits = self._logits_fn(torch.tensor(np.asarray(images), device=self._device))
        return logits.cpu().numpy()

    # -- memory --------------------------------------------------------------------------
    def device_memory(self) -> DeviceMemory:
        """torch's allocator figures (``memory_allocated``: live tensors, not the cache it
        reserves); its peak is reset by :meth:`reset_device_peak`, so it is the window's."""
        if self.device.kind != "GPU":
            return DeviceMemory()
        return DeviceMemory(int(torch.cuda.max_memory_allocated(self._device)),
                            getattr(self, "_baseline_bytes", None), "window")

    def reset_device_peak(self) -> None:
        if self.device.kind == "GPU":
            torch.cuda.reset_peak_memory_stats(self._device)
            self._baseline_bytes = int(torch.cuda.memory_allocated(self._device))


_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16}


def matmul_gflops(device: str, dtype: str = "float32", size: int | None = None,
                  repeats: int = 10) -> float:
    """The device's matmul rate in GFLOP/s in ``dtype`` (see :func:`best_matmul_gflops`).

    ``dtype`` is "float32" (torch's default precision, the one the models run at: true
    float32, torch does not use TF32 for matmuls unless asked), "bfloat16" or
    "float16": inputs and product in that dtype. Sizes as :func:`calibration_sizes`
    gives, or ``size`` alone. Raises
    :class:`~fashion_core.calibration.CalibrationUnsupported` where torch has no such
    matmul on the device.
    """
    torch_dtype = _TORCH_DTYPES[check_calibration_dtype(dtype)]
    target = torch_device(device)

    def make_product(n: int):
        generator = torch.Generator(device=target).manual_seed(1)
        a = torch.randn(n, n, device=target, generator=generator).to(torch_dtype)
        b = torch.randn(n, n, device=target, generator=generator).to(torch_dtype)

        def run() -> float:
            with torch.no_grad():
                return float(torch.sum(a @ b, dtype=torch.float32))

        return run

    try:
        return best_matmul_gflops(make_product,
                                  (size,) if size else calibration_sizes(device, dtype),
                                  repeats)
    except CalibrationUnsupported as error:
        raise CalibrationUnsupported(f"torch has no {dtype} matmul on {device}: "
                                     f"{error}") from error
