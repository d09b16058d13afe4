"""One module per Keras backend, each with the same small interface.

A backend module provides:

- ``NAME``: "tensorflow", "jax" or "torch";
- ``list_devices() -> list[DeviceInfo]``;
- ``Trainer(config, dataset)``: builds the model on the device, compiles the train step
  once, and offers ``train_steps``, ``predict_all``, ``evaluate`` and memory figures;
- ``versions() -> dict``: framework versions and, for GPUs, CUDA/cuDNN builds.

This package imports no framework itself: :func:`current` imports only the backend Keras
was configured with (``KERAS_BACKEND``), so a machine without TensorFlow can run the JAX
or PyTorch path.
"""

from __future__ import annotations

import dataclasses
import importlib
import re


class DeviceError(ValueError):
    """A device was asked for that is not there; the message lists those that are."""


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One device a backend can run on."""

    name: str  # "cpu", "gpu:0", ...
    kind: str  # "CPU" or "GPU"
    model: str  # "AMD EPYC", "NVIDIA H100 80GB HBM3", ...
    memory_bytes: int | None = None
    compute_capability: str | None = None  # GPUs only, "9.0"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_DEVICE_RE = re.compile(r"^(cpu|gpu)(?::(\d+))?$")


def parse_device(spec: str) -> str:
    """'cpu' -> 'cpu', 'gpu' / 'GPU:0' / '/gpu:0' -> 'gpu:0'; anything else: DeviceError."""
    text = str(spec).strip().lower().lstrip("/")
    text = text.removeprefix("device:")
    match = _DEVICE_RE.match(text)
    if not match:
        raise DeviceError(f"unknown device {spec!r}; write cpu, gpu or gpu:N")
    kind, index = match.groups()
    if kind == "cpu":
        return "cpu"
    return f"gpu:{int(index or 0)}"


def resolve_device(spec: str, devices: list[DeviceInfo]) -> DeviceInfo:
    """The DeviceInfo for ``spec`` among ``devices``, or a DeviceError listing them."""
    name = parse_device(spec)
    for device in devices:
        if device.name == name:
            return device
    there = ", ".join(f"{d.name} ({d.model})" for d in devices) or "none"
    raise DeviceError(f"device {spec!r} is not there; devices found: {there}")


BACKENDS = ("tensorflow", "jax", "torch")


def current():
    """The backend module for the Keras backend in use (imports that framework)."""
    import keras

    name = keras.config.backend()
    if name not in BACKENDS:
        raise RuntimeError(f"Keras backend {name!r} is not supported; use one of {BACKENDS}")
    return importlib.import_module(f"fashion_core.backends.{name}")
