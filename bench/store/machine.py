"""Environment capture: a machine id that names the hardware, versions, devices, calibration.

The id is readable and unique per hardware: ``amd-epyc-2c-3f9a1c`` is the CPU's name, the
cores this process may use, and a short hash of the CPU's exact identity (vendor, family,
model, stepping, flags), so two different CPUs sold under one name never share an id.
GPU models are appended: ``...-nvidia-h100-80gb-hbm3``.
"""

from __future__ import annotations

import hashlib
import platform
import re

import psutil

from bench.store.schema import SCHEMA  # the version of the fashion_bench block and its rows
from fashion_core.backends import DeviceInfo
from fashion_core.host import cpu_count, cpu_model


def _cpu_identity() -> str:
    """The lines of /proc/cpuinfo that tell one CPU design from another."""
    keys = ("vendor_id", "cpu family", "model", "stepping", "model name", "flags")
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in keys and key not in found:
                    found[key] = value.strip()
    except OSError:
        found["platform"] = f"{platform.processor()} {platform.machine()}"
    return "|".join(f"{k}={found.get(k, '')}" for k in keys)


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def machine_id(devices: list[DeviceInfo], identity: str | None = None,
               cores: int | None = None) -> str:
    """A stable, readable id of the hardware (see the module docstring)."""
    cpu = next((d for d in devices if d.kind == "CPU"), None)
    identity = identity if identity is not None else _cpu_identity()
    cores = cores if cores is not None else cpu_count()
    digest = hashlib.sha256(f"{identity}|{cores}".encode()).hexdigest()[:6]
    parts = [slug(cpu.model if cpu else cpu_model()), f"{cores}c", digest]
    gpus = [slug(d.model) for d in devices if d.kind == "GPU"]
    for name in dict.fromkeys(gpus):  # "2x" prefix where several of one model
        count = gpus.count(name)
        parts.append(f"{count}x-{name}" if count > 1 else name)
    return "-".join(p for p in parts if p)


def capture(backend, calibration: dict[str, float]) -> dict:
    """The ``fashion_bench`` entry of pytest-benchmark's machine_info."""
    devices = backend.list_devices()
    memory = psutil.virtual_memory().total
    device_dicts = []
    for device in devices:
        entry = device.as_dict()
        if device.kind == "CPU" and entry["memory_bytes"] is None:
            entry["memory_bytes"] = memory
        device_dicts.append(entry)
    return {
        "schema": SCHEMA,
        "machine_id": machine_id(devices),
        "cpu_model": cpu_model(),
        "cpu_cores": cpu_count(),
        "gpus": [d.model for d in devices if d.kind == "GPU"],
        **backend.versions(),
        "memory_bytes": memory,
        "devices": device_dicts,
        "calibration_gflops": dict(calibration),
    }
