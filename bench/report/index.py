"""The results index: an embedded DuckDB file beside the result files, never instead of them.

Result files stay the record. The index holds what reading them gives
(:func:`bench.report.loader.parse_file`): a manifest of the files (resolved path, size,
mtime, sha256, the run, its warnings, the row fields it has) and one flat table of
rows, the long form (:data:`bench.report.loader.LEADING_COLUMNS` and every field of the
rows), so a report, gate or history over 20,000 runs reads one table instead of 20,000
files. It is updated on each use: a file not in the manifest, or whose size or mtime
changed, is read once and its rows replaced; a file gone from under the paths read is
dropped. Deleting the index costs one rebuild and changes nothing in any report: the
loader gives the same frame either way (a test holds it to that over the committed
results). The index also starts afresh when the code that builds rows changes (its
version is a hash of that code).

Why DuckDB: a column store that hands a table to pandas column by column (a 500,000-row
long form in about a second, where SQLite's row tuples take many), in one file with no
server, and a file lock that lets one process write at a time. A second process that
finds the index locked waits for it (up to ``wait`` seconds), then reads the files
instead, saying so: it never blocks a report for long and never writes beside another.

Where it lives: ``$FASHION_BENCH_INDEX`` if set, else ``$XDG_CACHE_HOME/fashion-bench/
results.duckdb`` (``~/.cache/...``): outside any checkout, so never committed. One index
serves every results folder (files are keyed by resolved path); ``--index PATH`` places
it, ``--no-index`` reads the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bench.report import loader
from bench.store import schema
from bench.store.results import result_files_with_keys

INDEX_ENV = "FASHION_BENCH_INDEX"
#: Files parsed per insert into the rows table.
BATCH_FILES = 500
#: How long a second process waits for the one writing the index, then reads the files.
WAIT_SECONDS = 30.0


def default_path() -> Path:
    """``$FASHION_BENCH_INDEX``, else the user's cache folder's fashion-bench/results.duckdb."""
    if os.environ.get(INDEX_ENV):
        return Path(os.environ[INDEX_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fashion-bench" / "results.duckdb"


def code_version() -> str:
    """A hash of the code that turns a file into a run and rows: a change to it starts the
    index afresh rather than mixing rows of two layouts."""
    digest = hashlib.sha256()
    for module in (loader, schema, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


class IndexUnavailable(RuntimeError):
    """The index cannot be used now (busy past the wait, no DuckDB, not writable); the
    message says why. The caller reads the files instead."""


def _run_to_json(run: loader.Run) -> str:
    fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name != "path"}
    for key in ("datetime", "commit_time"):  # nanoseconds since the epoch, UTC
        fields[key] = None if fields[key] is None else int(fields[key].value)
    return json.dumps(fields, default=str)


def _run_from_json(text: str, path: Path) -> loader.Run:
    fields = json.loads(text)
    for key in ("datetime", "commit_time"):
        fields[key] = None if fields[key] is None else pd.Timestamp(fields[key], tz="UTC")
    return loader.Run(path=path, **fields)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ResultsIndex:
    """One index file; :meth:`runs` brings it up to date with the files given and returns
    their runs, :meth:`rows` the long form of some of them. Use as a context manager (or
    call :meth:`close`): the file stays locked while open."""

    def __init__(self, path: Path | str | None = None, wait: float | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        wait = WAIT_SECONDS if wait is None else wait
        self.say = say or (lambda text: print(text, file=sys.stderr))
        try:
            import duckdb
        except ImportError:
            raise IndexUnavailable("duckdb is not installed (pip install duckdb)") from None
        self._duckdb = duckdb
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise IndexUnavailable(f"cannot make {self.path.parent}: "
                                   f"{error.strerror or error}") from None
        deadline, said = time.monotonic() + wait, False
        while True:
            try:
                self.db = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as error:
                locked = "lock" in str(error).lower()
                if not locked or time.monotonic() >= deadline:
                    why = "busy (another process is updating it)" if locked \
                        else f"unreadable ({error})"
                    raise IndexUnavailable(f"{self.path} is {why}") from None
                if not said:
                    self.say(f"note: waiting up to {wait:.0f} s for the results index "
                             f"{self.path}: another process is updating it")
                    said = True
                time.sleep(0.2)
            except duckdb.Error as error:  # not a DuckDB file, or a newer format
                raise IndexUnavailable(f"{self.path} is not a results index this version "
                                       f"reads ({error}); delete it to rebuild") from None
        self.db.execute("SET TimeZone = 'UTC'")
        self._prepare()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ResultsIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "db", None) is not None:
            self.db.close()
            self.db = None

    def _prepare(self) -> None:
        tables = {row[0] for row in self.db.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        version = code_version()
        if "meta" in tables:
            found = self.db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
            if found and found[0] == version:
                return
            self.say(f"note: the results index {self.path} was built by other code; "
                     f"rebuilding it")
        for table in ("meta", "files", "rows"):
            self.db.execute(f"DROP TABLE IF EXISTS {table}")
        self.db.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self.db.execute("INSERT INTO meta VALUES ('version', ?)", [version])
        self.db.execute("""CREATE TABLE files (path VARCHAR PRIMARY KEY, size BIGINT,
            mtime_ns BIGINT, sha256 VARCHAR, machine_id VARCHAR, run VARCHAR,
            warnings VARCHAR, columns VARCHAR)""")
        self.db.execute("CREATE TABLE rows (_path VARCHAR, _row INTEGER)")

    # ------------------------------------------------------------------ update
    def update(self, files: Sequence[tuple[Path, str]], roots: Sequence[Path] = ()) -> dict:
        """Bring the index up to date with ``files`` ((path, real path) pairs, as
        :func:`bench.store.results.result_files_with_keys` gives); drop files under
        ``roots`` (folders read) that are gone. Returns counts: added, changed, removed,
        unchanged."""
        known = {path: (size, mtime) for path, size, mtime in self.db.execute(
            "SELECT path, size, mtime_ns FROM files").fetchall()}
        stale, fresh = [], []
        seen = set()
        for path, key in files:
            seen.add(key)
            try:
                stat = os.stat(key)
            except OSError:
                continue
            if key not in known:
                fresh.append((Path(path), key, stat))
            elif known[key] != (stat.st_size, stat.st_mtime_ns):
                stale.append(key)
                fresh.append((Path(path), key, stat))
        prefixes = [str(Path(root).resolve()) + os.sep for root in roots if Path(root).is_dir()]
        gone = [key for key in known if key not in seen and any(
            key.startswith(prefix) for prefix in prefixes) and not os.path.exists(key)]
        self._forget(stale + gone)
        started, total = time.monotonic(), len(fresh)
        for start in range(0, total, BATCH_FILES):
            self._add(fresh[start:start + BATCH_FILES])
            if total > BATCH_FILES:
                done = min(start + BATCH_FILES, total)
                self.say(f"index: {done}/{total} new result files read "
                         f"({time.monotonic() - started:.0f} s)")
        return {"added": total - len(stale), "changed": len(stale), "removed": len(gone),
                "unchanged": len(seen) - total}

    def _forget(self, keys: list[str]) -> None:
        if not keys:
            return
        gone = pd.DataFrame({"path": keys})
        self.db.register("gone", gone)
        self.db.execute("DELETE FROM rows WHERE _path IN (SELECT path FROM gone)")
        self.db.execute("DELETE FROM files WHERE path IN (SELECT path FROM gone)")
        self.db.unregister("gone")

    def _add(self, batch: list[tuple[Path, str, os.stat_result]]) -> None:
        manifest, rows = [], []
        for path, key, stat in batch:
            run, file_rows, warnings = loader.parse_file(path)
            for number, row in enumerate(file_rows):
                row.pop("run", None), row.pop("run_file", None)
                row["_path"], row["_row"] = key, number
            columns = sorted({c for row in file_rows for c in row} - {"_path", "_row"})
            manifest.append({"path": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                             "sha256": _sha256(path), "machine_id": run and run.machine_id,
                             "run": run and _run_to_json(run),
                             "warnings": json.dumps(warnings), "columns": json.dumps(columns)})
            rows += file_rows
        self.db.execute("BEGIN TRANSACTION")
        try:
            if rows:
                self._insert_rows(loader.canonical(pd.DataFrame(rows)))
            files = pd.DataFrame(manifest)
            self.db.register("new_files", files)
            self.db.execute("INSERT INTO files BY NAME SELECT * FROM new_files")
            self.db.unregister("new_files")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _insert_rows(self, frame: pd.DataFrame) -> None:
        """Insert ``frame`` into the rows table, adding the columns it lacks and widening
        a column whose type differs (numbers to DOUBLE, anything else to VARCHAR)."""
        for column in frame:  # a column no row has a value in says nothing: left out
            if frame[column].isna().all() and column not in ("_path", "_row"):
                frame = frame.drop(columns=column)
        self.db.register("batch", frame)
        batch_types = dict(self.db.execute("SELECT column_name, column_type FROM "
                                           "(DESCRIBE SELECT * FROM batch)").fetchall())
        table_types = dict(self.db.execute("SELECT column_name, column_type FROM "
                                           "(DESCRIBE rows)").fetchall())
        select = []
        for column, kind in batch_types.items():
            have = table_types.get(column)
            if have is None:
                self.db.execute(f'ALTER TABLE rows ADD COLUMN "{column}" {kind}')
                have = kind
            elif have != kind:
                numbers = {"DOUBLE", "BIGINT", "INTEGER", "FLOAT", "BOOLEAN"}
                wider = "DOUBLE" if {have, kind} <= numbers - {"BOOLEAN"} else "VARCHAR"
                if have != wider:
                    self.db.execute(f'ALTER TABLE rows ALTER "{column}" TYPE {wider}')
                have = wider
            select.append(f'CAST("{column}" AS {have}) AS "{column}"')
        self.db.execute(f"INSERT INTO rows BY NAME SELECT {', '.join(select)} FROM batch")
        self.db.unregister("batch")

    # ------------------------------------------------------------------ reading
    def runs(self, files: Sequence[tuple[Path, str]], roots: Sequence[Path] = ()
             ) -> list[tuple[Path, loader.Run | None, list[str]]]:
        """Update from ``files`` ((path, real path) pairs), then (path, run or None,
        warnings) for each, in order: what :func:`bench.report.loader.parse_file` gives,
        from the index."""
        self.update(files, roots)
        keys = pd.DataFrame({"path": [key for _, key in files], "ord": range(len(files))})
        self.db.register("wanted", keys)
        found = self.db.execute(
            "SELECT w.ord, f.run, f.warnings, f.columns FROM wanted w JOIN files f "
            "ON f.path = w.path ORDER BY w.ord").fetchall()
        self.db.unregister("wanted")
        self._columns, self._keys = {}, {}
        result = []
        by_order = {ord_: (run, warnings, columns) for ord_, run, warnings, columns in found}
        for number, (path, key) in enumerate(files):
            if number not in by_order:  # vanished while being read
                result.append((path, None, ["cannot be read (gone); skipped"]))
                continue
            run, warnings, columns = by_order[number]
            self._columns[key], self._keys[path] = json.loads(columns), key
            result.append((path, run and _run_from_json(run, path), json.loads(warnings)))
        return result

    def rows(self, paths: Sequence[Path]) -> pd.DataFrame:
        """The long form of the runs in ``paths`` (read by :meth:`runs` first), in the
        order of ``paths`` and of the rows within each file; the columns the files have."""
        if not paths:
            return pd.DataFrame()
        keys = [self._keys.get(p) or os.path.realpath(p) for p in paths]
        wanted = pd.DataFrame({"_path": keys})
        columns = {c for key in keys for c in self._columns.get(key, [])} - {"run", "run_file"}
        have = {row[0] for row in self.db.execute(
            "SELECT column_name FROM (DESCRIBE rows)").fetchall()}
        self.db.register("wanted", wanted)
        chosen = ", ".join(f'"{c}"' for c in ["_path", "_row", *sorted(columns & have)])
        # A semi-join, then the order in pandas: a third of the time of DuckDB's ORDER BY
        # over 500,000 wide rows.
        frame = self.db.execute(f"SELECT {chosen} FROM rows WHERE _path IN "
                                f"(SELECT _path FROM wanted)").df()
        self.db.unregister("wanted")
        order = dict(zip(keys, range(len(keys)), strict=True))
        frame["_ord"] = frame["_path"].map(order)
        frame = frame.sort_values(["_ord", "_row"], kind="stable").reset_index(drop=True)
        by_key = dict(zip(keys, paths, strict=True))
        names = {key: (str(path), Path(path).name) for key, path in by_key.items()}
        frame.insert(0, "run_file", frame["_path"].map({k: v[0] for k, v in names.items()}))
        frame.insert(0, "run", frame["_path"].map({k: v[1] for k, v in names.items()}))
        frame = frame.drop(columns=["_path", "_row", "_ord"])
        for column in sorted(columns - have):  # every value of it was null
            frame[column] = None
        return frame

    def case_seconds(self, folder: Path) -> dict[tuple[str, str], float]:
        """The plan's history from the index: {(suite, case id): median ``case_seconds``}
        over the result files under ``folder`` (one machine's), rows timed alone only (not
        contended); what :func:`bench.harness.plan.history_seconds` reads from the files."""
        files = result_files_with_keys([folder])
        self.update(files, [folder])
        have = {row[0] for row in self.db.execute(
            "SELECT column_name FROM (DESCRIBE rows)").fetchall()}
        if not files or not {"suite", "case", "case_seconds"} <= have:
            return {}
        alone = "AND contended IS NOT TRUE" if "contended" in have else ""
        self.db.register("wanted", pd.DataFrame({"_path": [key for _, key in files]}))
        found = self.db.execute(
            f'SELECT suite, "case", median(CAST(case_seconds AS DOUBLE)) FROM rows '
            f"WHERE _path IN (SELECT _path FROM wanted) AND case_seconds > 0 {alone} "
            f'GROUP BY suite, "case"').fetchall()
        self.db.unregister("wanted")
        return {(suite, case): float(seconds) for suite, case, seconds in found}

    def stats(self) -> dict:
        """Files and rows held, and the index's size on disk."""
        files = self.db.execute("SELECT count(*) FROM files").fetchone()[0]
        rows = self.db.execute("SELECT count(*) FROM rows").fetchone()[0]
        return {"files": files, "rows": rows,
                "bytes": self.path.stat().st_size if self.path.exists() else 0}
