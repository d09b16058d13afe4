"""JAX backend: Keras's stateless API under one ``jax.jit`` per span of steps.

The same three choices as the TensorFlow backend, in JAX terms:

- the dataset lives on the device as uint8; a step gathers its batch by index from the
  epoch's padded permutation (``jnp.take``) and scales it there;
- a span of steps (a whole epoch by default) is one ``jax.lax.while_loop`` inside one
  compiled call, so the host is visited once per span; the loop stops early at the
  first NaN/inf loss, as the TensorFlow loop does;
- the last, partial batch is padded and masked, so every step has one static shape.

The weights, the optimizer's slots and the loss scale are a pytree of arrays ("state")
threaded through ``model.stateless_call`` and ``optimizer.stateless_apply``; the compiled
call donates the old state's buffers, so an epoch updates the weights in place instead
of holding two copies. The Keras variables are brought up to date from that state only
when someone asks for :attr:`Trainer.model`.

Measured on a 2-core CPU, MLP, batch 128, steady state: 0.24 s an epoch, against
0.32 s for Keras ``fit`` on the JAX backend with ``jit_compile=True`` and a whole epoch
per execution (the ``keras-fit`` baseline of the same benchmark run).

``jit=False`` runs the same step one operation at a time (``jax.disable_jit``), the JAX
counterpart of TensorFlow's eager mode: about 20 s an epoch for the MLP. "auto" follows
the config's rule, compiled except for the CNN on a CPU, and for the same reason as with
TensorFlow: the whole CNN step compiled by XLA:CPU took about 310 s an epoch at batch
128, op by op 67 s (each operation is still compiled, on its own).

Device memory: JAX's GPU client would take 75% of the GPU at start (preallocation);
:mod:`fashion_core.backends.jax_devices`, imported here, turns that off before JAX starts
its GPU client, so several trainers and other frameworks share the device and the
figures are the bytes really used. It also lists the devices and times the calibration
matmul. The dataset is uploaded once per device per process and shared by every trainer
there (:func:`fashion_core.backends.device_data.shared_device_data`).
"""


from __future__ import annotations

import contextlib
import weakref

import jax
import jax.numpy as jnp
import keras
import numpy as np

from fashion_core import models
from fashion_core.backends import resolve_device
from fashion_core.backends.base import BaseTrainer, DeviceMemory, StepStats
from fashion_core.backends.device_data import shared_device_data
from fashion_core.backends.jax_devices import (
    jax_device,
    list_devices,
    matmul_gflops,  # noqa: F401 - the backend interface (see fashion_core.backends)
)
from fashion_core.backends.keras_common import (
    make_optimizer,
    per_sample_losses,
    precision_policy,
    set_random_seed,
)
from fashion_core.config import TrainConfig
from fashion_core.data import Dataset
from fashion_core.host import cudnn_text

NAME = "jax"


def versions() -> dict:
    """JAX, jaxlib and Keras versions, and the CUDA/cuDNN jaxlib runs with (GPU builds)."""
    import jaxlib

    cuda = cudnn = None
    try:  # present only where a CUDA plugin is installed; private, hence guarded
        from jax._src.lib import cuda_versions

        if cuda_versions is not None:
            cuda = _cuda_text(cuda_versions.cuda_runtime_get_version())
            cudnn = cudnn_text(cuda_versions.cudnn_get_version())
    except Exception:  # noqa: BLE001 - CPU-only builds, or a plugin without a GPU
        pass
    return {"backend": NAME, "tensorflow": None, "keras": keras.__version__,
            "jax": jax.__version__, "jaxlib": jaxlib.__version__, "cuda": cuda,
            "cudnn": cudnn}


def _cuda_text(version: int | None) -> str | None:
    """CUDA runtime's integer version as text: 12040 -> '12.4' (1000 * major + 10 * minor)."""
    return f"{version // 1000}.{version % 1000 // 10}" if version else None


# Op-by-op (jit=False) trainers not closed yet: see Trainer.close.
_op_by_op_trainers: weakref.WeakSet = weakref.WeakSet()


def clear_op_by_op_cache() -> bool:
    """Drop JAX's compiled single operations, what ``jit=False`` runs; True if done.

    JAX compiles each operation it runs outside ``jit`` for its shapes and dtypes and
    keeps it (up to 4096 of them): a trainer run op by op left some 70-150 MB behind on
    a CPU, which the next trainer, at another batch size or precision, never reused.
    Private to JAX (``jax._src.dispatch``), hence guarded.
    """
    try:
        from jax._src import dispatch

        dispatch.xla_primitive_callable.cache_clear()
    except (ImportError, AttributeError):
        return False
    return True


class Trainer(BaseTrainer):
    """A model, its optimizer state and the dataset, all on one JAX device."""

    backend = NAME

    def __init__(self, config: TrainConfig, dataset: Dataset) -> None:
        super().__init__(config, dataset)
        self.device = resolve_device(config.device, list_devices())
        self._device = jax_device(self.device.name)
        self.jit = config.resolve_jit(self.device.kind)  # see the module docstring
        self._scales_loss = config.precision == "mixed_float16"
        set_random_seed(config.seed)
        with precision_policy(config.precision), jax.default_device(self._device):
            self._model = models.build(config.model)
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self._model.trainable_variables)
        put = lambda values: [jax.device_put(v.value, self._device) for v in values]  # noqa: E731
        self._state = (put(self._model.trainable_variables),
                       put(self._model.non_trainable_variables),
                       put(self.optimizer.variables))
        self._synced = True  # the Keras variables hold the state's current values
        arrays = shared_device_data(dataset, f"{NAME}:{self.device.name}", self._upload)
        self._images = {"train": arrays["x_train"], "test": arrays["x_test"]}
        self._labels = arrays["y_train"]
        self._order = jax.device_put(np.zeros(self.padded_size, np.int32), self._device)
        # The one place the steps are compiled: the old state's buffers are donated to
        # the new (argument 0), the dataset is an argument, never a baked-in constant.
        self._steps_fn = jax.jit(self._steps, donate_argnums=(0,))
        self._predict_fn = jax.jit(self._predict, static_argnums=(3,))
        self._logits_fn = jax.jit(self._logits)
        if not self.jit:
            _op_by_op_trainers.add(self)

    def close(self) -> None:
        """Release the trainer (see BaseTrainer.close); the last op-by-op trainer to
        close also drops JAX's compiled single operations (:func:`clear_op_by_op_cache`).
        Compiled trainers use them only for a few host-side copies, recompiled in
        milliseconds; no op-by-op trainer still alive has to compile its step again."""
        op_by_op = self in _op_by_op_trainers
        _op_by_op_trainers.discard(self)
        super().close()
        if op_by_op and not _op_by_op_trainers:
            clear_op_by_op_cache()

    def _upload(self, dataset: Dataset) -> dict:
        """The dataset's arrays on this trainer's device (see shared_device_data)."""
        return {"x_train": jax.device_put(dataset.x_train, self._device),
                "x_test": jax.device_put(dataset.x_test, self._device),
                "y_train": jax.device_put(dataset.y_train.astype(np.int32), self._device)}

    def _mode(self):
        """Compiled calls as they are, or (``jit=False``) run op by op."""
        return contextlib.nullcontext() if self.jit else jax.disable_jit()

    # -- the Keras model, in step with the state -----------------------------------------
    @property
    def model(self) -> keras.Model:
        """The Keras model, its variables set to the trained values (copies of them: the
        state's own buffers are donated to the next compiled call)."""
        if not self._synced:
            trainable, non_trainable, optimizer = self._state
            for variables, values in ((self._model.trainable_variables, trainable),
                                      (self._model.non_trainable_variables, non_trainable),
                                      (self.optimizer.variables, optimizer)):
                for variable, value in zip(variables, values, strict=True):
                    variable.assign(jnp.array(value, copy=True))
            self._synced = True
        return self._model

    # -- training ------------------------------------------------------------------------
    def _loss(self, trainable, non_trainable, optimizer_values, images, labels, real):
        """Masked mean CE (scaled for float16) and what the step needs besides gradients.

        ``real`` is True for the batch's real samples, False for padding, which is masked
        with selects, never a multiply by 0: its images are zeroed and its losses
        replaced by 0, so no padded row can put 0 x inf = NaN into the loss or the
        gradient; the step is exactly that of the real samples alone.
        """
        images = jnp.where(real[:, None, None], images, jnp.zeros_like(images))
        x = models.preprocess(images, self.config.model, keras.ops)
        logits, non_trainable = self._model.stateless_call(trainable, non_trainable, x,
                                                           training=True)
        ce, mse = per_sample_losses(logits, labels)
        count = jnp.sum(real.astype(jnp.float32))
        loss = jnp.sum(jnp.where(real, ce, 0.0)) / count
        scaled = loss
        if self._scales_loss:
            # The loss scale is an optimizer variable: read it from the state, not the
            # Keras variable, exactly as Keras's own JAX trainer does.
            mapping = list(zip(self.optimizer.variables, optimizer_values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                scaled = self.optimizer.scale_loss(loss)
        return scaled, (loss, jnp.sum(jnp.where(real, mse, 0.0)) / count, count, non_trainable)

    def _steps(self, state, images, labels, order, start, count):
        """Steps start .. start+count-1 in one while-loop; stops at the first NaN/inf loss.

        Returns the new state and [loss sum, MSE sum, samples, first bad step or -1].
        """
        batch = self.batch_size
        order = order.reshape(self.steps_per_epoch, batch)
        positions = jnp.arange(batch)
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)

        def body(carry):
            step, (trainable, non_trainable, optimizer_values), sums, bad = carry
            index = order[step]
            # Padding at the end of the epoch's order is masked out of the step.
            real = step * batch + positions < self.n_train
            (_, (loss, mse, n, non_trainable)), grads = grad_fn(
                trainable, non_trainable, optimizer_values,
                # Indices are always in range: "clip" spares the out-of-bounds fill.
                jnp.take(images, index, axis=0, mode="clip"),
                jnp.take(labels, index, mode="clip"), real)
            trainable, optimizer_values = self.optimizer.stateless_apply(
                optimizer_values, grads, trainable)
            bad = jnp.where(jnp.isfinite(loss), bad, step)
            sums = sums + jnp.stack([loss * n, mse * n, n])
            return step + 1, (trainable, non_trainable, optimizer_values), sums, bad

        def cond(carry):
            step, _, _, bad = carry
            return (step < start + count) & (bad < 0)

        carry = (jnp.asarray(start, jnp.int32), state, jnp.zeros(3, jnp.float32),
                 jnp.asarray(-1, jnp.int32))
        _, state, sums, bad = jax.lax.while_loop(cond, body, carry)
        return state, jnp.concatenate([sums, bad.astype(jnp.float32)[None]])

    def set_order(self, order: np.ndarray) -> None:
        self._order = jax.device_put(self.padded_order(order), self._device)

    def run_steps(self, start: int, count: int) -> StepStats:
        args = (self._state, self._images["train"], self._labels, self._order,
                np.int32(start), np.int32(count))
        with self._mode():
            self._state, result = self._steps_fn(*args)
        self._synced = False
        loss_sum, mse_sum, samples, bad = np.asarray(result)  # the read-back syncs
        return StepStats(float(loss_sum), float(mse_sum), int(samples), int(bad))

    # -- inference -----------------------------------------------------------------------
    def _logits(self, trainable, non_trainable, images):
        x = models.preprocess(images, self.config.model, keras.ops)
        logits, _ = self._model.stateless_call(trainable, non_trainable, x, training=False)
        return logits.astype(jnp.float32)

    def _predict(self, trainable, non_trainable, images, batch_size: int):
        """Classes of a whole image set: full batches in ``lax.map``, then the remainder as
        one smaller batch, so no padding work is counted as throughput."""
        n = images.shape[0]
        full = (n // batch_size) * batch_size
        classes = []
        if full:
            batches = images[:full].reshape(-1, batch_size, *images.shape[1:])
            per_batch = jax.lax.map(
                lambda b: jnp.argmax(self._logits(trainable, non_trainable, b), axis=-1),
                batches)
            classes.append(per_batch.reshape(-1))
        if full < n:
            classes.append(jnp.argmax(self._logits(trainable, non_trainable, images[full:]),
                                      axis=-1))
        return jnp.concatenate(classes).astype(jnp.int32)

    def predict_all(self, which: str = "test", batch_size: int | None = None) -> np.ndarray:
        batch_size = batch_size or self.config.eval_batch_size
        trainable, non_trainable, _ = self._state
        with self._mode():
            classes = self._predict_fn(trainable, non_trainable, self._images[which],
                                       batch_size)
        return np.asarray(classes)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        trainable, non_trainable, _ = self._state
        images = jax.device_put(np.asarray(images), self._device)
        with self._mode():
            logits = self._logits_fn(trainable, non_trainable, images)
        return np.asarray(logits)

    # -- memory --------------------------------------------------------------------------
    def _memory_stats(self) -> dict:
        if self.device.kind != "GPU":
            return {}
        try:
            return self._device.memory_stats() or {}
        except Exception:  # noqa: BLE001 - not every runtime reports memory
            return {}

    def device_memory(self) -> DeviceMemory:
        """JAX keeps one peak for the whole process and cannot reset it.

        Where the process's peak rose after :meth:`reset_device_peak`, the new peak is
        this window's own ("window"); where it did not, the window's peak lies between
        the baseline and the process's peak, which is returned as an upper bound
        ("process"). See :class:`~fashion_core.backends.base.DeviceMemory`.
        """
        return window_memory(self._memory_stats(), getattr(self, "_at_reset", None))

    def reset_device_peak(self) -> None:
        stats = self._memory_stats()
        self._at_reset = ((stats["bytes_in_use"], stats["peak_bytes_in_use"])
                          if "peak_bytes_in_use" in stats and "bytes_in_use" in stats
                          else None)


def window_memory(stats: dict, at_reset: tuple[int, int] | None) -> DeviceMemory:
    """A window's DeviceMemory from JAX's ``memory_stats()`` now and (bytes in use, peak)
    when the window began (None: no window was started)."""
    peak = stats.get("peak_bytes_in_use")
    if peak is None:
        return DeviceMemory()
    if at_reset is None:
        return DeviceMemory(int(peak), None, "process")
    baseline, peak_at_reset = at_reset
    scope = "window" if peak > peak_at_reset else "process"
    return DeviceMemory(int(peak), int(baseline), scope)
