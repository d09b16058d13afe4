"""On the box: the kit's run, step by step, each step logged.

:func:`run_steps` checks the bundle (:func:`check_bundle`), installs its wheels
(:func:`install_wheels`), checks what the box's Python has (:func:`check_versions`),
prints the host and its GPUs, runs each backend in its share of the time
(:func:`run_backends`), then the report (:func:`run_report`), and writes summary.json and
the pack (:func:`summarize`, :func:`pack`). A dry run prints every command and runs none.

Standard library only, Python 3.10+ (kit/run.py imports this before anything is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from kit import bundle
from kit.backends import (
    BACKENDS,
    MIN_BACKEND_S,
    BackendRun,
    backend_command,
    backend_timeout,
    describe,
    report_command,
    report_options,
    result_files,
    run_streamed,
)
from kit.bundle import KitError
from kit.install import (
    BOX_NEEDS,
    VERSIONS,
    child_env,
    install,
    install_command,
    probe,
    wheels_to_install,
)

PROJECT = Path(__file__).resolve().parent.parent
EXIT_ALL_RAN, EXIT_SOME_DID_NOT, EXIT_CANNOT_START = 0, 1, 2
PACK_LIMIT_MIB = 16  # the largest file some lending services hand back


class Log:
    """Prints each line and appends it to OUT/kit.log (nothing is written in a dry run)."""

    def __init__(self, path: Path | None) -> None:
        self.file = open(path, "a", encoding="utf-8") if path else None

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def quote(command: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)


def _dry(args: argparse.Namespace) -> str:
    return "dry run: " if args.dry_run else ""


def run_steps(args: argparse.Namespace, log: Log, root: Path | None, manifest: dict,
              out: Path, results: Path, report: Path, site: Path | None,
              data_dir: Path | None, deadline: float | None, start: float) -> int:
    """Every step in order; the exit status (KitError where the kit cannot start)."""
    log(f"==== fashion-bench device kit, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    check_bundle(args, log, root, manifest)
    env = install_wheels(args, log, root, manifest, site, data_dir)
    after = check_versions(args, log, env)
    host_facts(log)
    nvidia_smi = None if args.dry_run else gpu_facts(log)
    runs = run_backends(args, log, env, after, out, results, deadline)
    report_status = run_report(args, log, env, after, runs, results, report)
    if args.dry_run:
        log("dry run: nothing was installed or run")
        return EXIT_ALL_RAN
    status = summarize(args, log, manifest, after, nvidia_smi, runs, report_status, out,
                       report, start)
    if args.pack:
        pack(out, args.pack.resolve(), log)
    return status


def check_bundle(args: argparse.Namespace, log: Log, root: Path | None,
                 manifest: dict) -> None:
    """Name the bundle and check its files against their sha256 (not in a dry run)."""
    if root:
        source = manifest["project"]
        log(f"bundle {root}: project {source['commit'][:10]} ({source['files_from']}), "
            f"{len(manifest['wheels'])} wheels for Python {manifest['python_version']}, "
            f"{len(manifest['data'])} data files")
        if not args.no_verify and not args.dry_run:
            problems = bundle.verify(root, manifest)
            if problems:
                raise KitError(f"{len(problems)} files of the bundle do not match "
                               f"{bundle.MANIFEST}: " + "; ".join(problems[:5]))
            log(f"checked {len(manifest['files'])} files against their sha256")
    else:
        log(f"no bundle around {PROJECT} (no ../{bundle.MANIFEST}): running the checkout "
            f"as it is, nothing to install")


def install_wheels(args: argparse.Namespace, log: Log, root: Path | None, manifest: dict,
                   site: Path | None, data_dir: Path | None) -> dict[str, str]:
    """Install the wheels --wheels asks for, offline; the environment of every process
    started after."""
    base = dict(os.environ)
    before = probe(args.python, base, [w["name"] for w in manifest["wheels"]])
    log(f"python: {args.python} (Python {before['python']})")
    python_version = ".".join(before["python"].split(".")[:2])
    if root and manifest["wheels"] and python_version != manifest["python_version"]:
        log(f"kit: warning: the bundle's compiled wheels are for Python "
            f"{manifest['python_version']}, this is {before['python']}")
    wheels, notes = (wheels_to_install(manifest, root, args.wheels, before["versions"])
                     if root and site else ([], []))
    env = child_env(base, site if wheels else None, PROJECT, data_dir)
    if root:  # a bundle has no .git: the commit its files came from, for the result files
        source = manifest["project"]
        env.update(FASHION_BENCH_COMMIT=source["commit"],
                   FASHION_BENCH_COMMIT_TIME=str(source["commit_time"]),
                   FASHION_BENCH_COMMIT_DIRTY="1" if source.get("modified_in_worktree")
                   else "0")
    command = install_command(args.python, site, wheels) if wheels else None
    for note in notes:
        log(f"wheels: {note}")
    if command:
        log(f"{_dry(args)}install: {quote(command)}  [offline: PIP_NO_INDEX=1, "
            f"PIP_CONFIG_FILE={os.devnull}]")
        if not args.dry_run:
            install(args.python, command, base, wheels, site, log)
    log(f"PYTHONPATH={env['PYTHONPATH']}")
    log(f"FASHION_MNIST_DIR={env.get('FASHION_MNIST_DIR', '(unset: the usual look-up)')}"
        + ("  [--data synthetic]" if args.data == "synthetic" else ""))
    return env


def check_versions(args: argparse.Namespace, log: Log, env: dict[str, str]) -> dict:
    """Print the versions the runs will see; KitError where the harness's needs are missing
    (not in a dry run). :func:`kit.install.probe`'s answer."""
    after = probe(args.python, env, list(VERSIONS) + list(BOX_NEEDS))
    log("versions: " + ", ".join(f"{name} {version}" for name, version
                                 in after["versions"].items() if version and name in VERSIONS))
    if after["keras_file"]:
        log(f"keras from: {after['keras_file']}")
    missing = [name for name in BOX_NEEDS if not after["versions"].get(name)]
    if not after["modules"].get("keras"):
        missing.append("keras (build the bundle with its wheels, or drop --wheels none)")
    if missing and not args.dry_run:
        raise KitError(f"{args.python} lacks {', '.join(missing)}, which the harness needs and "
                       f"the kit does not carry; add them to kit/wheels.txt and rebuild")
    return after


def host_facts(log: Log) -> None:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 2**20:.0f} GiB memory"
    except OSError:
        pass
    log(f"host: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs{memory}")


def gpu_facts(log: Log) -> str | None:
    """Print nvidia-smi's view of the GPUs and driver; its output, or None without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        log("nvidia-smi: not found (no NVIDIA driver here)")
        return None
    text = []
    for command in ([smi, "--query-gpu=index,name,driver_version,memory.total,power.limit,"
                          "clocks.max.sm", "--format=csv"], [smi]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            text.append((done.stdout + done.stderr).rstrip())
        except (OSError, subprocess.TimeoutExpired) as error:
            text.append(f"{quote(command)}: {error}")
    for block in text:
        log(block)
    return "\n".join(text)


def run_backends(args: argparse.Namespace, log: Log, env: dict[str, str], after: dict,
                 out: Path, results: Path, deadline: float | None) -> list[BackendRun]:
    """Each backend in turn, in an equal share of the time left (the report's kept back);
    one that fails or runs out of time does not stop the others."""
    dry = _dry(args)
    names = args.backend_list or list(BACKENDS)
    importable = {name: bool(after["modules"].get(name)) for name in names}
    if not any(importable.values()) and not args.dry_run:
        raise KitError(f"{args.python} can import none of {', '.join(names)}; the kit runs "
                       f"on the box's own JAX, PyTorch or TensorFlow")
    runs = [BackendRun(name, backend_command(args, results)) for name in names]
    no_save = "--bench-no-save" in args.pytest_args
    for index, item in enumerate(runs):
        if not importable[item.backend] and not args.dry_run:
            if args.backend_list:
                item.status = f"not installed: {args.python} cannot import {item.backend}"
            else:
                item.status = "skipped: not installed (--backends auto)"
                item.ran = True  # nothing was asked of it
            log(f"---- {item.backend}: {item.status}")
            continue
        left = sum(1 for later in runs[index:] if importable[later.backend] or args.dry_run)
        item.timeout_s = backend_timeout(args, deadline, time.monotonic(), left)
        limit = f"{item.timeout_s:.0f} s" if item.timeout_s is not None else "no limit"
        log(f"---- {item.backend}: {dry}KERAS_BACKEND={item.backend} {quote(item.command)}"
            f"  [cwd {PROJECT}; time limit {limit}]"
            + ("" if importable[item.backend] else f"  ({item.backend} is not importable "
               f"here: it would be skipped)"))
        if args.dry_run:
            continue
        if item.timeout_s is not None and item.timeout_s < MIN_BACKEND_S:
            item.status = f"not started: {item.timeout_s:.0f} s left of the budget"
            log(f"---- {item.backend}: {item.status}")
            continue
        known = result_files(results)
        item.exit_code, timed_out, seconds = run_streamed(
            item.command, dict(env, KERAS_BACKEND=item.backend), PROJECT, log, item.timeout_s)
        item.seconds = round(seconds, 1)
        new = sorted(result_files(results) - known)
        item.result_files = [str(path.relative_to(out)) for path in new]
        describe(item, timed_out, new, no_save)
        rows = "" if item.rows is None else f", {item.rows} timing rows"
        log(f"---- {item.backend}: {item.status}, {item.seconds:.0f} s, "
            f"{len(new)} result files{rows}")
    return runs


def run_report(args: argparse.Namespace, log: Log, env: dict[str, str], after: dict,
               runs: list[BackendRun], results: Path, report: Path) -> dict:
    """The report over OUT_DIR/results; what summary.json says of it."""
    command = report_command(args, results, report, report_options(args.python, env, PROJECT))
    log(f"---- report: {_dry(args)}{quote(command)}")
    # A report that leaves synthetic runs out has nothing to say about a synthetic run.
    needed = args.data != "synthetic" or "--include-synthetic" in command
    report_status = {"command": command, "exit_code": None, "written": False,
                     "needed": needed}
    if not args.dry_run:
        backend_env = dict(env, KERAS_BACKEND=next(
            (item.backend for item in runs if after["modules"].get(item.backend)), "jax"))
        began = time.time()
        code, _, _ = run_streamed(command, backend_env, PROJECT, log, timeout=None)
        written = (report / "REPORT.md").is_file() and \
            (report / "REPORT.md").stat().st_mtime >= began - 1
        report_status.update(exit_code=code, written=written)
    return report_status


def summarize(args: argparse.Namespace, log: Log, manifest: dict, after: dict,
              nvidia_smi: str | None, runs: list[BackendRun], report_status: dict,
              out: Path, report: Path, start: float) -> int:
    """Print what ran and write OUT_DIR/summary.json; the exit status."""
    needed = report_status["needed"]
    all_ran = all(item.ran for item in runs) and (report_status["written"] or not needed)
    status = EXIT_ALL_RAN if all_ran else EXIT_SOME_DID_NOT
    log("==== summary")
    for item in runs:
        seconds = f"{item.seconds:7.1f} s" if item.seconds is not None else "      -  "
        log(f"{item.backend:<11} {seconds}  {item.status}")
        for name in item.result_files:
            log(f"{'':<11}            {name}")
    if report_status["written"]:
        report_line = str(report / "REPORT.md")
    elif not needed:
        report_line = "none: this version of the report leaves synthetic-data runs out"
    else:
        report_line = f"not written (exit status {report_status['exit_code']})"
    log(f"{'report':<11}            {report_line}")
    log(f"total {time.monotonic() - start:.0f} s; exit status {status} ("
        + ("every backend ran" if all_ran else "not every backend ran, or no report") + ")")
    summary = {"exit_status": status, "device": args.device, "matrix": args.matrix,
               "keyword": args.keyword, "data": args.data, "pytest_args": args.pytest_args,
               "budget_s": args.budget, "seconds": round(time.monotonic() - start, 1),
               "project": manifest.get("project"), "python": after["python"],
               "versions": after["versions"], "nvidia_smi": nvidia_smi,
               "backends": [vars(item) for item in runs], "report": report_status}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return status


def pack(out: Path, target: Path, log: Log) -> None:
    """Write OUT_DIR (without the pack itself) into one tar.gz."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    itself = {target.resolve(), partial.resolve()}

    def leave_out_the_pack(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if (out.parent / info.name).resolve() in itself else info

    with tarfile.open(partial, "w:gz") as tar:
        tar.add(out, arcname=out.name, filter=leave_out_the_pack)
    os.replace(partial, target)
    size_mib = target.stat().st_size / 2**20
    log(f"packed {out} into {target} ({size_mib:.2f} MiB; unpack with tar -xzf)")
    if size_mib > PACK_LIMIT_MIB:
        log(f"kit: warning: the pack is over {PACK_LIMIT_MIB} MiB, more than some services "
            f"hand back in one file; pack OUT_DIR/results alone, or split it")
