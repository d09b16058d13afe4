"""Energy meters: RAPL's wrap-around on a fake sysfs folder, NVML through a stand-in."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from bench.measure.energy import EnergyMeter, foreign_gpu_processes, rapl_domains
from fashion_core import nvml

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not


def _domain(root, name, value, max_range=None):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "energy_uj").write_text(f"{value}\n")
    if max_range is not None:
        (folder / "max_energy_range_uj").write_text(f"{max_range}\n")
    return folder


def test_rapl_sums_packages_and_folds_the_wrap_around(tmp_path):
    package0 = _domain(tmp_path, "intel-rapl:0", 900, max_range=999)
    _domain(tmp_path, "intel-rapl:0:0", 5)  # a sub-domain of package 0: not counted
    package1 = _domain(tmp_path, "intel-rapl:1", 100, max_range=10**6)
    assert [p.name for p in rapl_domains(tmp_path)] == ["intel-rapl:0", "intel-rapl:1"]
    meter = EnergyMeter.for_device("cpu", powercap=tmp_path)
    assert meter.source == "rapl" and meter.read() == 0.0
    (package0 / "energy_uj").write_text("50\n")  # wrapped: 900 -> 999 -> 0 -> 50 = 150 uJ
    (package1 / "energy_uj").write_text("1100\n")  # 1000 uJ
    assert meter.read() == pytest.approx(1150e-6)
    assert meter.read() == pytest.approx(1150e-6)  # no change, no energy


def test_the_platform_domain_is_not_added_to_the_packages(tmp_path):
    """psys covers the whole platform, packages included: adding it would count twice."""
    _domain(tmp_path, "intel-rapl:0", 100)
    (tmp_path / "intel-rapl:0" / "name").write_text("package-0\n")
    platform = _domain(tmp_path, "intel-rapl:1", 500)
    (platform / "name").write_text("psys\n")
    assert [p.name for p in rapl_domains(tmp_path)] == ["intel-rapl:0"]


def test_no_readable_counter_is_unavailable_never_zero(tmp_path):
    meter = EnergyMeter.for_device("cpu", powercap=tmp_path / "absent")
    assert meter.source == "unavailable" and meter.read() is None
    folder = _domain(tmp_path, "intel-rapl:0", 1)
    (folder / "energy_uj").write_text("not a number")
    assert EnergyMeter.for_device("cpu", powercap=tmp_path).source == "unavailable"


class FakeNvml:
    """pynvml's calls the meter makes, on one GPU that has used 5 J so far."""

    def __init__(self, energy_mj=5000, pids=(), supported=True):
        self.energy_mj, self.pids, self.supported = energy_mj, list(pids), supported

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        if index != 0:
            raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
        return "handle-0"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self.energy_mj

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=p) for p in self.pids]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return [SimpleNamespace(pid=p) for p in self.pids[:1]]


def test_nvml_energy_in_joules_and_unsupported_gpus():
    fake = FakeNvml()
    meter = EnergyMeter.for_device("gpu:0", module=fake, environ={})
    assert meter.source == "nvml" and meter.read() == pytest.approx(5.0)
    fake.energy_mj += 2500
    assert meter.read() == pytest.approx(7.5)
    assert EnergyMeter.for_device("gpu:1", module=fake, environ={}).source == "unavailable"
    old = FakeNvml(supported=False)
    assert EnergyMeter.for_device("gpu:0", module=old, environ={}).source == "unavailable"


def test_foreign_gpu_processes_leave_this_process_out():
    fake = FakeNvml(pids=[os.getpid(), 4242, 4343])
    assert foreign_gpu_processes("gpu:0", module=fake, environ={}) == 2
    assert foreign_gpu_processes("cpu", module=fake, environ={}) is None
    # In a container NVML shows host pids: ours is one of them, under another number.
    assert foreign_gpu_processes("gpu:0", module=FakeNvml(pids=[7001]), environ={}) == 0
    assert foreign_gpu_processes("gpu:0", module=FakeNvml(pids=[7001, 7002]),
                                 environ={}) == 1


def _has_nvidia_gpu() -> bool:
    return nvml.handle(0) is not None


@pytest.mark.skipif(not _has_nvidia_gpu(), reason="no NVIDIA GPU with NVML here")
def test_a_real_gpu_energy_counter_grows():
    meter = EnergyMeter.for_device("gpu:0")
    first = meter.read()
    import time

    time.sleep(0.5)  # an idle GPU still draws tens of watts
    assert meter.source == "nvml" and meter.read() > first
