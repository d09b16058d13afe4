"""The run journal: every finished case is on disk the moment it finishes.

A bench session appends one JSON line per finished case (passed or failed) to
``<results>/<machine_id>/.journal-<stamp>-<pid>.jsonl``, flushed and fsynced at once. The
name does not end in ``.json``, so the report never reads a journal as a result.

- At the end of a session the result file is written as always
  (:func:`bench.store.results.save_run`) and the journal is deleted.
- If the process dies (``kill -9``, out of memory, a CI timeout), the journal stays. The
  next bench session and ``python -m bench.report`` call :func:`recover_orphans`: a journal
  whose process is gone is published as a normal result file with
  ``fashion_bench_status: "incomplete"`` and every case it had finished, then deleted.

A journal is claimed by renaming it before it is published, so two recoverers running at
once publish it once; nothing is ever overwritten (see :mod:`bench.store.results`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from bench.store.results import save_run
from bench.store.schema import (  # noqa: F401 (the run statuses, for importers)
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    STATUS_INTERRUPTED,
)

PREFIX = ".journal-"
SUFFIX = ".jsonl"
CLAIMED = ".claimed-"  # a journal being published: .claimed-<pid>-<journal name>



def _process_start(pid: int) -> float | None:
    """When process ``pid`` started; None where it is gone, or a zombie.

    A zombie (killed, its parent not yet reaped it: a CI timeout or an OOM kill that took
    the parent too) writes nothing more, yet psutil still finds its start time: counted
    as alive, its journal would wait unpublished until something reaped it.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def process_alive(pid: int, started: float | None = None, host: str | None = None) -> bool:
    """Whether process ``pid`` still runs: the one check of the harness (a journal's writer,
    the other side of an A/B turn). ``started``: its start time as recorded, so a reused
    pid does not count; ``host``: where it ran (another host's process is taken as alive:
    not ours to judge). A zombie is dead."""
    if host and host != socket.gethostname():
        return True  # another host's journal on a shared folder: not ours to judge
    now_started = _process_start(pid)
    if now_started is None:
        return False
    return started is None or abs(now_started - started) < 1.0


class Journal:
    """Append-only record of one session's finished cases."""

    def __init__(self, folder: Path, header: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        pid = os.getpid()
        self.path = folder / f"{PREFIX}{stamp}-{pid}{SUFFIX}"
        # Exclusive create: never reuse another session's journal.
        self._file = open(self.path, "x", encoding="utf-8")  # noqa: SIM115 - kept open
        self._write({"kind": "header", "pid": pid, "host": socket.gethostname(),
                     "process_start": _process_start(pid), **header})

    @classmethod
    def attach(cls, path: Path) -> Journal:
        """Append to another process's journal (a ``--bench-isolate`` worker's cases)."""
        journal = cls.__new__(cls)
        journal.path = Path(path)
        journal._file = open(journal.path, "a", encoding="utf-8")  # noqa: SIM115
        return journal

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def add_benchmark(self, entry: dict) -> None:
        """A finished benchmark, as pytest-benchmark's ``as_dict(include_data=True)``."""
        self._write({"kind": "benchmark", "entry": entry})

    def add_failure(self, failure: dict) -> None:
        self._write({"kind": "failure", "entry": failure})

    def add_not_run(self, entry: dict) -> None:
        """A case the plan or the budget left out: ``{case, suite, reason}``."""
        self._write({"kind": "not_run", "entry": entry})

    def add_calibration(self, device: str, dtype: str, gflops: float) -> None:
        self._write({"kind": "calibration", "device": device, "dtype": dtype,
                     "gflops": gflops})

    def close(self, delete: bool) -> None:
        """Close the file; delete it once the result file holds its content."""
        if not self._file.closed:
            self._file.close()
        if delete:
            self.path.unlink(missing_ok=True)


def read_journal(path: Path) -> dict:
    """A journal as a result document (pytest-benchmark's format), marked incomplete.

    A torn last line (the process died mid-write) is ignored; every complete line counts.
    """
    header: dict = {}
    benchmarks: list[dict] = []
    failures: list[dict] = []
    not_run: list[dict] = []
    calibration: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = record.get("kind")
            if kind == "header":
                header = record
            elif kind == "benchmark":
                benchmarks.append(record["entry"])
            elif kind == "failure":
                failures.append(record["entry"])
            elif kind == "not_run":
                not_run.append(record["entry"])
            elif kind == "calibration":
                calibration.setdefault(record["device"], {})[record["dtype"]] = record["gflops"]
    if not header:
        raise ValueError(f"{path}: no header line; not a fashion-bench journal")
    machine_info = dict(header.get("machine_info") or {})
    info = dict(machine_info.get("fashion_bench") or {})
    by_dtype = {d: dict(v) for d, v in (info.get("calibration_gflops_by_dtype") or {}).items()}
    for device, rates in calibration.items():
        for dtype, rate in rates.items():
            by_dtype.setdefault(device, {})[dtype] = max(rate, by_dtype.get(device, {})
                                                         .get(dtype, 0.0))
    info["calibration_gflops_by_dtype"] = by_dtype
    info["calibration_gflops"] = {d: r["float32"] for d, r in by_dtype.items() if "float32" in r}
    machine_info["fashion_bench"] = info
    return {
        "machine_info": machine_info,
        "commit_info": header.get("commit_info") or {},
        "benchmarks": benchmarks,
        "datetime": header.get("datetime"),
        "version": header.get("version"),
        "fashion_bench_failures": failures,
        "fashion_bench_not_run": not_run,
        "fashion_bench_status": STATUS_INCOMPLETE,
    }


def _journals(paths: Iterable[str | Path]) -> list[Path]:
    found = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(path.rglob(f"{PREFIX}*{SUFFIX}"))
            found += sorted(path.rglob(f"{CLAIMED}*{SUFFIX}"))
        elif path.name.startswith((PREFIX, CLAIMED)) and path.suffix == SUFFIX:
            found.append(path)
    return found


def _header(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return {}


def recover_orphans(paths: Iterable[str | Path], log=None) -> list[Path]:
    """Publish the journals of dead sessions under ``paths``; return the files written.

    A journal whose process still runs is left alone. ``log`` (optional) is called with
    one line per journal published or found unreadable.
    """
    published = []
    for path in _journals(paths):
        if path.name.startswith(CLAIMED):
            claimer = int(path.name[len(CLAIMED):].split("-", 1)[0] or 0)
            if _process_start(claimer) is not None:
                continue  # another process is publishing it right now
            original = path.name.split("-", 2)[2]
        else:
            header = _header(path)
            if header and process_alive(int(header.get("pid", 0)), header.get("process_start"),
                                 header.get("host")):
                continue
            original = path.name
        claimed = path.with_name(f"{CLAIMED}{os.getpid()}-{original}")
        try:
            os.rename(path, claimed)  # atomic: only one recoverer wins
        except OSError:
            continue
        try:
            document = read_journal(claimed)
        except (OSError, ValueError) as error:
            if log:
                log(f"{path}: cannot recover this journal ({error}); left as {claimed.name}")
            continue
        if not document["benchmarks"] and not document["fashion_bench_failures"]:
            claimed.unlink(missing_ok=True)  # died before any case finished: nothing to keep
            continue
        machine_id = document["machine_info"].get("fashion_bench", {}).get("machine_id")
        final = save_run(document, claimed.parent.parent, machine_id or claimed.parent.name)
        claimed.unlink(missing_ok=True)
        published.append(final)
        if log:
            log(f"{final}: recovered from the journal of a run that died "
                f"({len(document['benchmarks'])} case(s) finished); marked incomplete")
    return published
