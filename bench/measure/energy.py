"""Energy counters around timed rounds: NVML on NVIDIA GPUs, RAPL on CPUs, else none.

``EnergyMeter.for_device("gpu:0")`` reads NVML's total-energy counter of that GPU
(millijoules since the driver loaded); ``EnergyMeter.for_device("cpu")`` sums the RAPL
package domains under ``/sys/class/powercap`` (microjoules; Intel, and AMD on recent
kernels) where the files can be read, which usually needs root. ``read()`` gives a
cumulative figure in joules that only grows: RAPL counters wrap around at
``max_energy_range_uj`` and the meter adds the range back. Where nothing can be read the
meter's ``source`` is ``"unavailable"`` and ``read()`` returns None: a row then records
the energy as unavailable, never as zero.

The counters refresh slowly (NVML's every few tens of milliseconds, RAPL's every
millisecond or so, with jitter), so a region of a few milliseconds says little: the
harness reads the meter around all timed rounds together, as optimum-benchmark does.

``foreign_gpu_processes("gpu:0")`` counts the processes other than this one that NVML
lists on the GPU, so a row timed beside them can be marked contended.
"""

from __future__ import annotations

import os
from pathlib import Path

from fashion_core import nvml

POWERCAP = Path("/sys/class/powercap")


def _gpu_index(device: str) -> int | None:
    kind, _, index = device.partition(":")
    if kind != "gpu":
        return None
    return int(index or 0)


class _RaplDomain:
    """One package domain's counter, with wrap-around folded in."""

    def __init__(self, folder: Path) -> None:
        self.counter = folder / "energy_uj"
        self.range = int((folder / "max_energy_range_uj").read_text()) \
            if (folder / "max_energy_range_uj").exists() else None
        self.last = int(self.counter.read_text())  # raises where it cannot be read
        self.total_uj = 0

    def read_uj(self) -> int:
        now = int(self.counter.read_text())
        step = now - self.last
        if step < 0 and self.range:
            step += self.range + 1  # the counter wrapped around once since the last read
        self.total_uj += max(step, 0)
        self.last = now
        return self.total_uj


def rapl_domains(root: Path = POWERCAP) -> list[Path]:
    """The package-level RAPL domains (``intel-rapl:0``, ``intel-rapl:1``, ...).

    Sub-domains (``intel-rapl:0:0``, core, uncore, dram) are parts of a package and are
    left out, so nothing is counted twice; so is ``psys`` (a top-level domain on some
    Intel machines that covers the whole platform, packages included).
    """
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("intel-rapl:*")
                  if p.name.count(":") == 1 and (p / "energy_uj").exists()
                  and _domain_name(p) != "psys")


def _domain_name(folder: Path) -> str:
    try:
        return (folder / "name").read_text().strip()
    except OSError:
        return ""


class EnergyMeter:
    """A cumulative energy reading of one device, in joules (see the module docstring)."""

    def __init__(self, source: str, reader=None) -> None:
        self.source = source
        self._reader = reader

    @classmethod
    def for_device(cls, device: str, *, powercap: Path = POWERCAP, module=None,
                   environ=None) -> EnergyMeter:
        """The meter of ``device`` ("cpu", "gpu:N"); ``source`` says which counter."""
        index = _gpu_index(device)
        if index is not None:
            return cls._nvml(index, module, environ)
        return cls._rapl(powercap)

    @classmethod
    def _nvml(cls, index: int, module, environ) -> EnergyMeter:
        handle = nvml.handle(index, module, environ)
        if handle is None:
            return cls("unavailable")
        library = nvml.load(module)

        def read() -> float | None:
            try:
                return library.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3  # mJ -> J
            except Exception:  # noqa: BLE001 - NVMLError_NotSupported on older GPUs
                return None

        if read() is None:
            return cls("unavailable")
        return cls("nvml", read)

    @classmethod
    def _rapl(cls, root: Path) -> EnergyMeter:
        domains = []
        for folder in rapl_domains(root):
            try:
                domains.append(_RaplDomain(folder))
            except (OSError, ValueError):
                return cls("unavailable")  # e.g. energy_uj readable by root only
        if not domains:
            return cls("unavailable")

        def read() -> float | None:
            try:
                return sum(domain.read_uj() for domain in domains) / 1e6  # uJ -> J
            except (OSError, ValueError):
                return None

        return cls("rapl", read)

    def read(self) -> float | None:
        """Joules since the meter was made (growing only), or None where unavailable."""
        return self._reader() if self._reader is not None else None


def foreign_gpu_processes(device: str, *, module=None, environ=None) -> int | None:
    """How many processes other than this one NVML lists on ``device`` (a GPU).

    Compute and graphics processes both count. None for a CPU, or where NVML is missing.
    Call it while this process uses the GPU. In a container NVML lists processes by the
    host's pids, so this process's own pid is not among them: it is then taken to be one
    of the listed, and the count is one less.
    """
    index = _gpu_index(device)
    if index is None:
        return None
    handle = nvml.handle(index, module, environ)
    if handle is None:
        return None
    library = nvml.load(module)
    pids = set()
    for query in ("nvmlDeviceGetComputeRunningProcesses",
                  "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            pids |= {p.pid for p in getattr(library, query)(handle)}
        except Exception:  # noqa: BLE001 - not supported on this GPU or driver
            continue
    if os.getpid() in pids:
        return len(pids) - 1
    return max(0, len(pids) - 1)  # another pid namespace: one of them is this process
