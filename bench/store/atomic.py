"""Atomic writes of the report's outputs; result JSON files are never written here."""

from __future__ import annotations

from pathlib import Path

from fashion_core.files import write_atomic as _write_atomic


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` atomically (see :func:`fashion_core.files.write_atomic`).

    Result files are never written: ``.json`` paths are refused.
    """
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"refusing to write {path}: result JSON files are read-only here")
    _write_atomic(path, data)
