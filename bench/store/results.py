"""Result files: one pytest-benchmark JSON file a run, named by its run id, never overwritten.

Layout: ``<root>/<machine_id>/<run id>.json``, the run id being
``<YYYYmmdd-HHMMSS>_<commit, 7 digits, or "nocommit">_<8 random hex digits>`` (UTC):
sorted by name, a machine's files are in the order they were written, and two runs
writing into one folder at once (shards, ``--bench-allow-concurrent``, CI legs sharing a
cache) never take one name (32 random bits; on the rare clash a new random part is
drawn). Files named by the older per-folder counter (``NNNN_<YYYYmmdd-HHMMSS>.json``) are
read alike. A file is written to a
temporary name first and then linked to its final name, which fails rather than replace
a file that is already there. Where the filesystem has
no hard links, the final name is created exclusively (``open(..., "x")``) instead: it
too fails rather than replace a file. The format is
pytest-benchmark's own, so ``pytest-benchmark compare FILE...`` reads these files too.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.store import schema

#: A run id: UTC time, the commit measured (7 digits) or "nocommit", a random part.
RUN_ID = re.compile(r"^(\d{8}-\d{6})_([0-9a-f]{7}|nocommit)_([0-9a-f]{8})$")


def new_run_id(commit: str | None = None, when: float | None = None) -> str:
    """A fresh run id: ``<YYYYmmdd-HHMMSS>_<commit[:7] or nocommit>_<8 random hex>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if when is None else when))
    part = commit[:7].lower() if commit and re.fullmatch(r"[0-9a-fA-F]{7,}", commit) \
        else "nocommit"
    return f"{stamp}_{part}_{secrets.token_hex(4)}"


_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def _publish(tmp: Path, final: Path) -> None:
    """Give ``tmp``'s content the name ``final``; FileExistsError if ``final`` exists."""
    try:
        os.link(tmp, final)  # atomic, and refuses to replace an existing file
        return
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
    # No hard links here: exclusive create, then copy the content in and sync it.
    with open(final, "xb") as out:
        out.write(tmp.read_bytes())
        out.flush()
        os.fsync(out.fileno())


def save_run(output: dict, root: Path | str, machine_id: str) -> Path:
    """Write ``output`` under ``root/machine_id/<run id>.json`` (:func:`new_run_id`, the
    commit taken from ``output["commit_info"]``); return the path."""
    folder = Path(root) / machine_id
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a result file is for everyone
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(output, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        commit = output.get("commit_info") if isinstance(output.get("commit_info"), dict) else {}
        now = time.time()
        for _ in range(100):
            final = folder / f"{new_run_id(str(commit.get('id') or ''), now)}.json"
            try:
                _publish(Path(tmp), final)
                return final
            except FileExistsError:
                continue  # 1 in 4 billion: draw another random part
        raise RuntimeError(f"could not find a free run id in {folder}")
    finally:
        Path(tmp).unlink(missing_ok=True)


# --------------------------------------------------------------------------- reading

class ResultFileError(ValueError):
    """A file that is not a result file this checkout reads; the message says why and
    ends in "skipped" (the report warns with it and goes on)."""


def result_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files, and folders searched recursively for ``*.json``: each file once (by its real
    path), in the order given, a folder's sorted. Missing paths give nothing."""
    return [path for path, _ in result_files_with_keys(paths)]


def result_files_with_keys(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """:func:`result_files`, each with its real path (symbolic links resolved) as text:
    a folder is resolved once and its files joined to it, a link resolved where met, so
    20,000 files cost 20,000 directory entries, not 20,000 path resolutions."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(_walk(str(path), os.path.realpath(path)),
                           key=lambda item: item[0].split(os.sep))
        elif path.is_file():
            files = [(str(path), os.path.realpath(path))]
        else:
            files = []
        for name, key in files:
            found.setdefault(key, Path(name))
    return [(path, key) for key, path in found.items()]


def _walk(folder: str, real: str) -> Iterator[tuple[str, str]]:
    """(path, real path) of every ``*.json`` file under ``folder`` (whose real path is
    ``real``); a link to a file is resolved, a link to a folder not followed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, os.path.join(real, entry.name))
        elif entry.name.endswith(".json") and entry.is_file():
            yield entry.path, (os.path.realpath(entry.path) if entry.is_symlink()
                               else os.path.join(real, entry.name))
def read_result(path: Path, check: bool = True) -> dict:
    """One result file, checked against the schema (:func:`bench.store.schema.file_problem`;
    ``check=False``: JSON alone, for a harness reading back its own machine's files):
    the document, or ResultFileError saying why it is not one. The one reader every tool
    shares: the report, the plan's history, ``bench.ab`` and the noise study."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ResultFileError("is not JSON (not UTF-8 text); skipped") from None
    except OSError as error:
        raise ResultFileError(f"cannot be read ({error.strerror or error}); skipped") from None
    except json.JSONDecodeError as error:
        raise ResultFileError(f"is not JSON ({error.msg} at line {error.lineno}); "
                              f"skipped") from None
    problem = schema.file_problem(document) if check else (
        None if isinstance(document, dict) else "is JSON but not an object; skipped")
    if problem:
        raise ResultFileError(problem)
    return document


def timing_rows(document: dict) -> Iterator[tuple[dict, dict, str | None]]:
    """Each benchmark of a result document: (its extra_info row, its stats, its name)."""
    for benchmark in document.get("benchmarks", []):
        yield benchmark.get("extra_info") or {}, benchmark.get("stats") or {}, \
            benchmark.get("name")
