"""One module per Keras backend, each with the same small interface.

A backend module provides:

- ``NAME``: "tensorflow", "jax" or "torch";
- ``list_devices() -> list[DeviceInfo]``;
- ``Trainer(config, dataset)``: builds the model on the device, compiles the train step
  once, and offers ``set_order``, ``run_steps``, ``predict_all``, ``evaluate`` and memory
  figures (a :class:`fashion_core.backends.base.BaseTrainer`);
- ``versions() -> dict``: framework versions and, for GPUs, CUDA/cuDNN builds;
- ``matmul_gflops(device, dtype)``: the device's matmul rate, the calibration
  (:mod:`fashion_core.calibration`).

Beside them: ``tf_distributed``, data-parallel training with ``tf.distribute``
(TensorFlow only), and ``jax_devices``, the JAX backend's device set-up.

This package imports no framework itself: :func:`current` imports only the backend Keras
was configured with (``KERAS_BACKEND``), so a machine without TensorFlow can run the JAX
or PyTorch path.

Which backend: :func:`choose_backend` decides before Keras is imported (Keras reads
``KERAS_BACKEND`` once, at import), and importing :mod:`fashion_core` applies the choice
(:func:`select_backend`). ``KERAS_BACKEND`` wins when set; else the backend that
``keras.json`` names, if its framework is installed; else TensorFlow, JAX, then PyTorch,
the first one installed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path


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
AUTO = "auto"  # the first GPU, else the CPU: see resolve_device


def parse_device(spec: str) -> str:
    """'cpu' -> 'cpu', 'gpu' / 'GPU:0' / '/gpu:0' -> 'gpu:0', 'auto' -> 'auto'.

    Anything else is a DeviceError. "auto" stays "auto" here: which device it means
    depends on the devices there are (:func:`resolve_device`).
    """
    text = str(spec).strip().lower().lstrip("/")
    if text == AUTO:
        return AUTO
    text = text.removeprefix("device:")
    match = _DEVICE_RE.match(text)
    if not match:
        raise DeviceError(f"unknown device {spec!r}; write auto, cpu, gpu or gpu:N")
    kind, index = match.groups()
    if kind == "cpu":
        return "cpu"
    return f"gpu:{int(index or 0)}"


def resolve_device(spec: str, devices: list[DeviceInfo]) -> DeviceInfo:
    """The DeviceInfo for ``spec`` among ``devices``, or a DeviceError listing them.

    "auto" is the first GPU (the lowest index) where there is one, else the CPU.
    """
    name = parse_device(spec)
    if name == AUTO:
        gpus = sorted((d for d in devices if d.kind == "GPU"),
                      key=lambda d: int(d.name.split(":")[1]) if ":" in d.name else 0)
        cpus = [d for d in devices if d.name == "cpu"]
        if gpus or cpus:
            return (gpus or cpus)[0]
    for device in devices:
        if device.name == name:
            return device
    there = ", ".join(f"{d.name} ({d.model})" for d in devices) or "none"
    raise DeviceError(f"device {spec!r} is not there; devices found: {there}")


# -- which backend -----------------------------------------------------------------------

BACKENDS = ("tensorflow", "jax", "torch")  # also the order of preference
LABELS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
# The modules a backend (and Keras) needs; found, not imported, by importlib.util.find_spec.
_NEEDS = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib"), "torch": ("torch",),
          "keras": ("keras",)}
# pip extras of fashion-bench: the framework, and its build for NVIDIA GPUs.
EXTRAS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
GPU_EXTRAS = {"tensorflow": "tensorflow-gpu", "jax": "jax-cuda", "torch": "torch-gpu"}
INSTALL_ANY = ("pip install 'fashion-bench[tensorflow]' (or [jax], or [torch]; "
               "[tensorflow-gpu], [jax-cuda] for NVIDIA GPUs)")


class BackendError(RuntimeError):
    """No usable backend: none installed, or the one asked for is missing or unsupported.

    The message says what to install or set.
    """


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """Which Keras backend this process uses, and why.

    Attributes:
        name: "tensorflow", "jax" or "torch"; None where no framework is installed (or
            ``KERAS_BACKEND`` names one this project does not support).
        reason: why, in words: "KERAS_BACKEND=jax", "KERAS_BACKEND is unset and
            TensorFlow is not installed", ...
        automatic: True where this project picked the backend (``KERAS_BACKEND`` was
            unset), False where the user or Keras's own configuration did.
        problem: None if the backend can run; else the one-line error to show (what to
            install or set).
    """

    name: str | None
    reason: str
    automatic: bool
    problem: str | None = None

    def describe(self) -> str:
        """One line: 'jax (KERAS_BACKEND is unset and TensorFlow is not installed)'."""
        if self.problem:
            return f"none usable: {self.problem}"
        return f"{self.name} ({self.reason})"

    def check(self) -> str:
        """The backend's name; BackendError (with what to do) where it cannot run."""
        if self.problem:
            raise BackendError(self.problem)
        return self.name


def installed(name: str) -> bool:
    """Whether backend ``name``'s framework (or "keras") is installed; imports nothing."""
    return all(module_found(module) for module in _NEEDS[name])


def module_found(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (but its parents)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module with no spec
        return False


def keras_config_path(environ=os.environ) -> Path:
    """Where Keras keeps keras.json: $KERAS_HOME, else ~/.keras (/tmp/.keras if ~ is
    read-only), as Keras itself decides."""
    if "KERAS_HOME" in environ:
        return Path(environ["KERAS_HOME"]).expanduser() / "keras.json"
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras" / "keras.json"


def _keras_json_backend(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def choose_backend(environ=os.environ, is_installed=None,
                   keras_json: Path | None = None) -> BackendChoice:
    """Decide the Keras backend without importing Keras or any framework.

    ``KERAS_BACKEND`` wins where set. Else the backend ``keras.json`` names, if its
    framework is installed (Keras writes the file with "tensorflow" on first import,
    and one file serves every virtual environment of the user, so a name whose
    framework is absent here is no choice). Else TensorFlow, JAX, then PyTorch: the first
    one installed. ``is_installed(name)`` (default :func:`installed`) is for tests.
    """
    is_installed = is_installed or installed
    if not is_installed("keras"):
        return BackendChoice(None, "Keras is not installed", False,
                             "Keras is not installed: pip install fashion-bench")
    asked = environ.get("KERAS_BACKEND", "")
    if asked:
        return _checked(asked, f"KERAS_BACKEND={asked}", False, is_installed)
    path = keras_json or keras_config_path(environ)
    configured = _keras_json_backend(path)
    if configured in BACKENDS and is_installed(configured) and configured != "tensorflow":
        return BackendChoice(configured, f"{path} names it", False)
    missing = []
    for name in BACKENDS:
        if is_installed(name):
            if not missing:
                reason = "the default; KERAS_BACKEND is unset"
            else:
                absent = (f"{LABELS[missing[0]]} is not" if len(missing) == 1 else
                          "neither " + " nor ".join(LABELS[m] for m in missing) + " is")
                reason = f"KERAS_BACKEND is unset and {absent} installed"
            return BackendChoice(name, reason, True)
        missing.append(name)
    return BackendChoice(None, "no framework installed", True,
                         f"no framework for Keras is installed (TensorFlow, JAX or PyTorch): "
                         f"{INSTALL_ANY}")


def _checked(name: str, reason: str, automatic: bool, is_installed) -> BackendChoice:
    """A choice the user (or Keras) made, with the problem if it cannot run here."""
    if name not in BACKENDS:
        return BackendChoice(None, reason, automatic,
                             f"{reason}: the {name!r} backend is not supported; "
                             f"set KERAS_BACKEND to one of {', '.join(BACKENDS)}")
    if not is_installed(name):
        others = [b for b in BACKENDS if b != name and is_installed(b)]
        instead = f", or set KERAS_BACKEND={others[0]} (installed)" if others else ""
        return BackendChoice(None, reason, automatic,
                             f"{reason}, but {LABELS[name]} is not installed: "
                             f"pip install 'fashion-bench[{EXTRAS[name]}]'{instead}")
    return BackendChoice(name, reason, automatic)


_CHOICE: BackendChoice | None = None


def select_backend() -> BackendChoice:
    """Choose the backend once per process and tell Keras, before Keras is imported.

    Sets ``KERAS_BACKEND`` where it was unset, so Keras (and any subprocess) uses the
    choice. :mod:`fashion_core` calls this on import; later calls return the same choice.
    """
    global _CHOICE
    if _CHOICE is None:
        keras = sys.modules.get("keras")
        if keras is not None and hasattr(keras, "config"):
            # Keras has read its configuration already: the choice is made; say so.
            _CHOICE = _checked(keras.config.backend(), "Keras was imported before "
                               "fashion_core", False, installed)
        else:
            _CHOICE = choose_backend()
            if _CHOICE.name:
                os.environ["KERAS_BACKEND"] = _CHOICE.name
    return _CHOICE


def backend_choice() -> BackendChoice:
    """This process's backend choice (see :func:`select_backend`)."""
    return select_backend()


def current():
    """The backend module for the Keras backend in use (imports that framework).

    BackendError, saying what to install or set, where no backend can run.
    """
    backend_choice().check()
    import keras

    name = keras.config.backend()
    if name not in BACKENDS:
        raise BackendError(f"Keras backend {name!r} is not supported; use one of "
                           f"{', '.join(BACKENDS)}")
    return importlib.import_module(f"fashion_core.backends.{name}")
