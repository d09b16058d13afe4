"""The host's identity: its CPU's name, the cores this process may use, cuDNN's version.

Framework-free: the backends name their CPU device with :func:`cpu_model` and their cuDNN
build with :func:`cudnn_text`, and the bench's machine block (:mod:`bench.store.machine`)
describes the machine with the same functions.
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cudnn_text(version: int | None) -> str | None:
    """cuDNN's integer version as text: 90100 -> '9.1.0', 8906 -> '8.9.6'; None stays None."""
    if not version:
        return None
    if version >= 90000:  # cuDNN 9 on: 10000 * major + 100 * minor + patch
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"  # 1000 * major + ...


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1
