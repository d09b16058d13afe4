"""NVIDIA's management library (NVML), where the ``nvidia-ml-py`` package and a driver are.

It answers what the frameworks do not all say: a GPU's total memory, its energy counter,
the processes on it. Everything here returns None where NVML is missing or refuses
(no package, no driver, a GPU it does not manage), and imports no framework.

Which NVML device is ``gpu:N``: the frameworks number the GPUs CUDA shows this process;
NVML numbers every GPU of the machine, in PCI bus order. Where ``CUDA_VISIBLE_DEVICES``
is set, its Nth entry names the device (an NVML index, or a UUID ``GPU-...`` or a
prefix of one); a MIG slice (``MIG-...``) has no counters of its own and gives None.
CUDA also orders GPUs fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``: on a
machine that mixes GPU models, set that, or the indices may not agree.

Tests pass a stand-in for the ``pynvml`` module as ``module=``.
"""

from __future__ import annotations

import os

_loaded: dict = {}  # "module": the initialised pynvml, or None once it failed


def load(module=None):
    """The initialised NVML module, or None where the package or the driver is missing.

    ``module`` stands in for ``pynvml`` (tests); it is initialised on every call. The
    real one is imported and initialised once per process.
    """
    if module is not None:
        try:
            module.nvmlInit()
        except Exception:  # noqa: BLE001 - NVMLError, or a stand-in's own
            return None
        return module
    if "module" not in _loaded:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - ImportError, NVMLError_LibraryNotFound, ...
            pynvml = None
        _loaded["module"] = pynvml
    return _loaded["module"]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def handle(gpu_index: int, module=None, environ=None):
    """NVML's handle of the framework's ``gpu:<gpu_index>``, or None (see the module doc)."""
    nvml = load(module)
    if nvml is None:
        return None
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    try:
        if visible is None:
            return nvml.nvmlDeviceGetHandleByIndex(gpu_index)
        entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
        if gpu_index >= len(entries):
            return None
        entry = entries[gpu_index]
        if entry.isdigit():
            return nvml.nvmlDeviceGetHandleByIndex(int(entry))
        if not entry.startswith("GPU-"):
            return None  # a MIG slice, or something CUDA itself would not accept
        for index in range(nvml.nvmlDeviceGetCount()):
            candidate = nvml.nvmlDeviceGetHandleByIndex(index)
            if _text(nvml.nvmlDeviceGetUUID(candidate)).startswith(entry):
                return candidate
    except Exception:  # noqa: BLE001 - NVMLError of any kind: no figure
        return None
    return None


def total_memory(gpu_index: int, module=None, environ=None) -> int | None:
    """The GPU's total memory in bytes, as the driver reports it; None where unknown."""
    device = handle(gpu_index, module, environ)
    if device is None:
        return None
    try:
        return int(load(module).nvmlDeviceGetMemoryInfo(device).total)
    except Exception:  # noqa: BLE001
        return None
