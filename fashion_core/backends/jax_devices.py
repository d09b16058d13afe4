"""JAX's devices for the JAX backend: preallocation off, the device list, the calibration.

JAX's GPU client would take 75% of the GPU at start (preallocation); this module turns
that off before JAX starts its GPU client (:func:`disable_preallocation`, on import), so
several trainers and other frameworks share the device and the memory figures are the
bytes really used. :mod:`fashion_core.backends.jax` imports it before it builds anything.
"""

from __future__ import annotations

import os
import warnings


def disable_preallocation(environ=None, started: bool | None = None) -> bool:
    """Turn off JAX's GPU preallocation for this process; True where it is off.

    ``XLA_PYTHON_CLIENT_PREALLOCATE`` is read when JAX starts its GPU client (on the
    first device query), so this works as long as nothing has asked JAX for its devices
    yet; Keras's import does not. A user's explicit setting is respected (False where it
    turns preallocation on). Where the client already started, preallocation is as it
    was and a warning says so. ``environ``/``started`` stand in for ``os.environ`` and
    JAX's state in tests.
    """
    environ = environ if environ is not None else os.environ
    if started is None:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    value = environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "").strip()
    if value:
        return value in ("false", "False", "0")  # the user's choice, as JAX reads it
    if started:
        warnings.warn("JAX's devices were set up before fashion_core's JAX backend was "
                      "imported: GPU preallocation stays on (set "
                      "XLA_PYTHON_CLIENT_PREALLOCATE=false before starting)", stacklevel=2)
        return False
    environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return True


import jax  # noqa: E402

PREALLOCATION_OFF = disable_preallocation()

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fashion_core import nvml  # noqa: E402
from fashion_core.backends import DeviceInfo  # noqa: E402
from fashion_core.calibration import (  # noqa: E402
    CalibrationUnsupported,
    best_matmul_gflops,
    calibration_sizes,
    check_calibration_dtype,
)
from fashion_core.host import cpu_model  # noqa: E402


def _gpus() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU backend in this jaxlib, or no GPU
        return []


def list_devices() -> list[DeviceInfo]:
    """The CPU and every GPU JAX sees, named cpu, gpu:0, gpu:1, ..."""
    devices = [DeviceInfo("cpu", "CPU", cpu_model())]
    for index, gpu in enumerate(_gpus()):
        # The device's total memory, as every backend reports it (NVML's figure; JAX's
        # own "bytes_limit" is only what its allocator may take, a share of it).
        capability = getattr(gpu, "compute_capability", None)
        devices.append(DeviceInfo(f"gpu:{index}", "GPU", gpu.device_kind,
                                  memory_bytes=nvml.total_memory(index),
                                  compute_capability=str(capability) if capability else None))
    return devices


def jax_device(name: str):
    """'cpu' -> the first CPU device, 'gpu:1' -> the second GPU."""
    if name == "cpu":
        return jax.devices("cpu")[0]
    return _gpus()[int(name.split(":")[1])]


_JAX_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def matmul_gflops(device: str, dtype: str = "float32", size: int | None = None,
                  repeats: int = 10) -> float:
    """The device's matmul rate in GFLOP/s in ``dtype`` (see :func:`best_matmul_gflops`).

    ``dtype`` is "float32" (at JAX's default precision, the one the models run at: TF32
    on NVIDIA GPUs since Ampere, as in TensorFlow), "bfloat16" or "float16": inputs and
    product in that dtype (XLA:CPU may compute a reduced-precision dot in float32
    internally; the rate is what the device gives in that dtype). Sizes as
    :func:`calibration_sizes` gives, or ``size``. Raises
    :class:`~fashion_core.calibration.CalibrationUnsupported` where JAX has no such
    matmul on the device.
    """
    jax_dtype = _JAX_DTYPES[check_calibration_dtype(dtype)]
    target = jax_device(device)
    # The product alone: fused with a reduction (jnp.sum(x @ y)), XLA:CPU emits its own
    # loop instead of calling its GEMM library and runs at half the rate (25 against 58
    # GFLOP/s at 2048 on a 2-core AVX2 CPU). block_until_ready waits for the device.
    product = jax.jit(jnp.matmul)

    def make_product(n: int):
        rng = np.random.default_rng(n)
        a = jax.device_put(rng.standard_normal((n, n), np.float32), target).astype(jax_dtype)
        b = jax.device_put(rng.standard_normal((n, n), np.float32), target).astype(jax_dtype)
        return lambda: product(a, b).block_until_ready()

    try:
        return best_matmul_gflops(make_product,
                                  (size,) if size else calibration_sizes(device, dtype),
                                  repeats)
    except CalibrationUnsupported as error:
        raise CalibrationUnsupported(f"JAX has no {dtype} matmul on {device}: "
                                     f"{error}") from error
