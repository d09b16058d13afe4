"""A fleet's worth of results, measured: ``python -m bench.tools.fleet``.

``build OUT --runs 20000 --machines 200`` writes synthetic result files made from real
ones (the committed results by default): run ``i`` is a copy of source file ``i mod k``
under machine id ``fleet-NNN-<hash>`` (``i mod machines``), its own run id, date and
commit, its times scaled by a factor of its machine (log-normal, sd 0.5) and of the run
(sd 0.1), the throughputs by the inverse. Deterministic for one seed.

``measure OUT`` times, each in a process of its own with its peak memory (RSS, from
``getrusage`` of the children): the index's first build (``--index-only``); the report
with the index built; adding one run and reporting again; the gate over two machines
(the older half of each one's runs against the newer half);
and, with ``--without-index``, the report reading every file. It prints a table and, with
``--json PATH``, writes the figures. A benchmark of the report itself, not a test: it takes
minutes (writing 20,000 files of about 100 KB each takes several).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.store import schema
from bench.store.results import ResultFileError, read_result, result_files

#: Times in pytest-benchmark's stats, scaled with the run.
_STAT_TIMES = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr",
               "hd15iqr", "total")
#: extra_info fields that grow with time, and those that shrink (rates).
_EXTRA_TIMES = ("seconds_per_epoch", "seconds_per_batch", "latency_p50_ms", "latency_p90_ms",
                "latency_p99_ms", "seconds_to_accuracy", "compile_seconds", "case_seconds")
_EXTRA_RATES = ("samples_per_second", "gflops", "peak_fraction")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def machine_name(index: int) -> str:
    return f"fleet-{index:03d}-{hashlib.sha256(str(index).encode()).hexdigest()[:6]}"


def sources(paths: list[str]) -> list[dict]:
    """The real-data result files under ``paths``, read and checked."""
    documents = []
    for path in result_files(paths):
        try:
            document = read_result(path)
        except ResultFileError:
            continue
        if document["machine_info"]["fashion_bench"].get("data") != schema.SYNTHETIC_DATA:
            documents.append(document)
    if not documents:
        raise SystemExit(f"error: no real-data result files under {', '.join(paths)}")
    return documents


def synthetic_run(template: dict, index: int, machines: int, rng: random.Random,
                  speed: list[float]) -> tuple[str, str, dict]:
    """(machine id, file name, document) of run ``index``."""
    document = json.loads(json.dumps(template))
    machine = index % machines
    when = START + timedelta(minutes=10 * index)
    commit = hashlib.sha1(str(index // (machines * 5)).encode()).hexdigest()
    factor = speed[machine] * rng.lognormvariate(0.0, 0.1)
    info = document["machine_info"]["fashion_bench"]
    info["machine_id"] = machine_name(machine)
    info["run_group"], info["repeat"] = None, None
    document["datetime"] = when.isoformat()
    document["commit_info"] = {"id": commit, "time": when.isoformat(), "dirty": False,
                               "project": "main", "branch": "main"}
    for benchmark in document["benchmarks"]:
        stats, extra = benchmark["stats"], benchmark["extra_info"]
        for key in _STAT_TIMES:
            if isinstance(stats.get(key), (int, float)):
                stats[key] *= factor
        if isinstance(stats.get("ops"), (int, float)) and stats["ops"]:
            stats["ops"] /= factor
        stats["data"] = [x * factor for x in stats.get("data") or []]
        for key in _EXTRA_TIMES:
            if isinstance(extra.get(key), (int, float)) and not isinstance(extra[key], bool):
                extra[key] *= factor
        for key in _EXTRA_RATES:
            if isinstance(extra.get(key), (int, float)) and not isinstance(extra[key], bool):
                extra[key] /= factor
    name = f"{when:%Y%m%d-%H%M%S}_{commit[:7]}_{rng.getrandbits(32):08x}.json"
    return info["machine_id"], name, document


def build(out: Path, runs: int, machines: int, source: list[str], seed: int = 0) -> int:
    """Write ``runs`` synthetic runs over ``machines`` machine ids under ``out``."""
    templates = sources(source)
    rng = random.Random(seed)
    speed = [rng.lognormvariate(0.0, 0.5) for _ in range(machines)]
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for index in range(runs):
        machine, name, document = synthetic_run(templates[index % len(templates)], index,
                                                machines, rng, speed)
        folder = out / machine
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(json.dumps(document), encoding="utf-8")
        if sys.stderr.isatty() or (index + 1) % 1000 == 0 or index + 1 == runs:
            print(f"\rfleet: {index + 1}/{runs} runs written "
                  f"({time.monotonic() - started:.0f} s)", end="" if sys.stderr.isatty() else "\n",
                  file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return runs


#: Runs a command and prints, last on stderr, its peak RSS in KiB: a process of its own, so
#: getrusage's children figure is that command's alone.
_WRAP = ("import resource, subprocess, sys\n"
         "code = subprocess.call(sys.argv[1:])\n"
         "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
         "file=sys.stderr)\n"
         "sys.exit(code)\n")


def _timed(command: list[str]) -> dict:
    """Run ``command``; its wall time and its peak RSS (children included)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *command], capture_output=True,
                          text=True)
    seconds = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"error: {' '.join(command)} exited {proc.returncode}:\n"
                         f"{proc.stderr[-3000:]}")
    peak = int(proc.stderr.rsplit("peak-rss-kib", 1)[1].split()[0])
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak / 1024, 1),
            "exit": proc.returncode}


def measure(out: Path, scratch: Path, without_index: bool = False) -> list[dict]:
    """Time each step in a process of its own; one dict per step."""
    report = [sys.executable, "-m", "bench.report", str(out), "--no-plots",
              "--index", str(scratch / "index.duckdb")]
    machines = sorted(p for p in out.iterdir() if p.is_dir())
    steps = []
    if (scratch / "index.duckdb").exists():
        (scratch / "index.duckdb").unlink()
    steps.append(("index: first build", report + ["--index-only"]))
    steps.append(("report, index built", report + ["--out", str(scratch / "report")]))
    added = machines[0] / "29991231-235959_0000000_00000000.json"
    steps.append(("add one run, report", report + ["--out", str(scratch / "report")]))
    # The gate between two machines' older and newer halves of their runs (links to the
    # files, so the index serves both sides).
    sides = {side: scratch / f"gate-{side}" for side in ("old", "new")}
    for folder in sides.values():
        shutil.rmtree(folder, ignore_errors=True)
    for machine in machines[:2]:
        files = sorted(machine.glob("*.json"))
        for side, part in (("old", files[:len(files) // 2]), ("new", files[len(files) // 2:])):
            (sides[side] / machine.name).mkdir(parents=True)
            for file in part:
                (sides[side] / machine.name / file.name).symlink_to(file.resolve())
    steps.append(("gate, two machines", [
        sys.executable, "-m", "bench.report", "--compare", str(sides["old"]), str(sides["new"]),
        "--index", str(scratch / "index.duckdb"), "--allow-missing"]))
    if without_index:
        steps.append(("report, no index", report[:-2] + ["--no-index", "--out",
                                                        str(scratch / "report-files")]))
    figures = []
    try:
        for name, command in steps:
            if name.startswith("add one run"):
                template = next(iter(sorted(machines[0].glob("*.json"))))
                shutil.copyfile(template, added)
            figure = {"step": name, **_timed(command)}
            figures.append(figure)
            print(f"fleet: {name}: {figure['seconds']:.1f} s, peak RSS "
                  f"{figure['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    finally:
        added.unlink(missing_ok=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.fleet",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="write synthetic runs")
    make.add_argument("out", type=Path, metavar="OUT")
    make.add_argument("--runs", type=int, default=20_000)
    make.add_argument("--machines", type=int, default=200)
    make.add_argument("--from", dest="source", nargs="+", default=["results"], metavar="PATH",
                      help="real result files or folders to copy (default: results)")
    make.add_argument("--seed", type=int, default=0)
    time_it = commands.add_parser("measure", help="time the index, report and gate over OUT")
    time_it.add_argument("out", type=Path, metavar="OUT")
    time_it.add_argument("--scratch", type=Path, default=None, metavar="DIR",
                         help="where the index and reports go (default: OUT-scratch)")
    time_it.add_argument("--without-index", action="store_true",
                         help="also time the report reading every file (slow)")
    time_it.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if args.command == "build":
        if args.runs < 1 or args.machines < 2:
            parser.error("--runs must be at least 1 and --machines at least 2")
        build(args.out, args.runs, args.machines, args.source, args.seed)
        return 0
    if not args.out.is_dir():
        parser.error(f"{args.out} is not a folder (make one with: build {args.out})")
    scratch = args.scratch or args.out.with_name(args.out.name + "-scratch")
    scratch.mkdir(parents=True, exist_ok=True)
    runs = sum(1 for _ in args.out.rglob("*.json"))
    figures = measure(args.out, scratch, args.without_index)
    print(f"| step ({runs} runs, {sum(1 for p in args.out.iterdir() if p.is_dir())} "
          f"machines) | seconds | peak RSS (MiB) |\n| --- | --- | --- |")
    for figure in figures:
        print(f"| {figure['step']} | {figure['seconds']:.1f} | {figure['peak_rss_mib']:.0f}"
              f" |")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "steps": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
