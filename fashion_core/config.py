"""Frozen dataclasses that describe one training run; validated on construction."""

from __future__ import annotations

import dataclasses
import json
import math
import os

from fashion_core.backends import DeviceError, parse_device

MODELS = ("mlp", "cnn")  # built by fashion_core.models; named here so config needs no Keras

# Keras policy name -> short name used in case ids and tables.
PRECISIONS = {"float32": "fp32", "mixed_float16": "fp16", "mixed_bfloat16": "bf16"}
_PRECISION_ALIASES = {short: full for full, short in PRECISIONS.items()}
_PRECISION_ALIASES.update({"fp32": "float32", "f32": "float32", "fp16": "mixed_float16",
                           "float16": "mixed_float16", "bf16": "mixed_bfloat16",
                           "bfloat16": "mixed_bfloat16"})

SEED_RANGE = (0, 2**32 - 1)  # what numpy.random.seed (Keras's set_random_seed) accepts


class ConfigError(ValueError):
    """A run was described with a value that cannot work; the message names it."""


def canonical_precision(name: str) -> str:
    """'fp16', 'float16' or 'mixed_float16' -> 'mixed_float16'; unknown -> ConfigError."""
    if name in PRECISIONS:
        return name
    if name in _PRECISION_ALIASES:
        return _PRECISION_ALIASES[name]
    raise ConfigError(f"unknown precision {name!r}; choose one of: "
                      f"{', '.join(PRECISIONS)} (or fp32, fp16, bf16)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        model: "mlp" (the tutorial's 784-256-128-64-32-10) or "cnn".
        epochs: passes over the 60,000 training images.
        batch_size: samples per optimizer step; the last step of an epoch takes the rest.
        precision: Keras dtype policy: "float32", "mixed_float16" (with dynamic loss
            scaling) or "mixed_bfloat16"; short names fp32/fp16/bf16 are accepted.
        device: "auto" (the first GPU where there is one, else the CPU), "cpu", "gpu"
            (the first GPU) or "gpu:N"; a device that is not there is an error when the
            trainer is built, naming those that are.
        jit: compile the whole train step: XLA for TensorFlow
            (``tf.function(jit_compile=True)``) and JAX (one ``jax.jit`` program), and
            ``torch.compile`` for PyTorch. None (the default) means auto: TensorFlow and
            JAX compile, except the CNN on a CPU, where XLA:CPU's convolutions ran 40x
            slower than TensorFlow's own kernels (about 290 s an epoch against 7 s at
            batch 128 on a 2-core machine); PyTorch compiles on a GPU only (on a CPU,
            torch.compile's start-up outweighs what it saves in a 20-epoch run).
        seed: seeds weight initialisation and the per-epoch shuffle; 0 to 2**32 - 1.
        learning_rate: Adam's step size (the tutorial's 1e-3); positive and finite.
        eval_batch_size: batch used to predict the test set for accuracy.
    """

    model: str = "mlp"
    epochs: int = 20
    batch_size: int = 128
    precision: str = "float32"
    device: str = "auto"
    jit: bool | None = None
    seed: int = 0
    learning_rate: float = 1e-3
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        object.__setattr__(self, "precision", canonical_precision(self.precision))
        for field in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{field} must be a positive whole number, not {value!r}")
        low, high = SEED_RANGE
        if (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                or not low <= self.seed <= high):
            raise ConfigError(f"seed must be a whole number from {low} to {high} (2**32 - 1), "
                              f"not {self.seed!r}")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0
                and math.isfinite(self.learning_rate)):
            raise ConfigError(f"learning_rate must be positive and finite, not "
                              f"{self.learning_rate!r}")
        # Only the spelling is checked here; whether the device is there is known once a
        # backend lists its devices (a DeviceError then).
        try:
            object.__setattr__(self, "device", parse_device(self.device))
        except DeviceError as e:
            raise ConfigError(str(e)) from None

    @property
    def precision_short(self) -> str:
        return PRECISIONS[self.precision]

    def resolve_jit(self, device_kind: str) -> bool:
        """The XLA setting to use on a device of ``device_kind`` ("CPU" or "GPU").

        TensorFlow's and JAX's rule; the torch backend has its own (see above).
        """
        if self.jit is not None:
            return self.jit
        return not (self.model == "cnn" and device_kind == "CPU")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def tf_config(required: bool = False) -> dict | None:
    """``TF_CONFIG`` (tf.distribute's cluster and task) parsed, read without importing
    TensorFlow; None where it is unset. ConfigError where it is not JSON, or where it is
    ``required`` (a multi-worker run) and unset."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        if required:
            raise ConfigError("multiworker needs TF_CONFIG (cluster and task) in the "
                              "environment of every worker; see the README")
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {e}") from None
