"""On the box: install the kit offline, benchmark each backend, write the report.

    sh run.sh OUT_DIR                                    # quick matrix on gpu:0, every backend
    sh run.sh OUT_DIR --backends jax,torch --budget 840 --pack /tmp/run.tar.gz
    sh run.sh OUT_DIR -k "train or inference" -- --bench-batch 128,1024
    sh run.sh /tmp/try --device cpu --matrix tiny --data synthetic   # try it without a GPU
    sh run.sh OUT_DIR --dry-run                          # print the commands, run nothing

Steps: check every file of the bundle against its sha256; install the bundle's wheels
into <bundle>/site with ``pip install --no-index --no-deps --target`` (nothing is
fetched); put that folder and the project on PYTHONPATH and FASHION_MNIST_DIR on the
bundled data; print the GPU (nvidia-smi), driver and package versions; run
``python -m pytest bench --benchmark-only`` once per backend (KERAS_BACKEND=jax, torch,
tensorflow), each within its share of the time budget, going on when one fails; then
``python -m bench.report`` over OUT_DIR/results. Everything printed is also written to
OUT_DIR/kit.log, and OUT_DIR/summary.json says what ran.

Standard library only, Python 3.10+. See docs/device-kit.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python3 project/kit/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness.command import bench_command
from kit import bundle
from kit.bundle import KitError

PROJECT = Path(__file__).resolve().parent.parent
BACKENDS = ("jax", "torch", "tensorflow")  # the order they run in
EXIT_ALL_RAN, EXIT_SOME_DID_NOT, EXIT_CANNOT_START = 0, 1, 2
DEFAULT_BUDGET_S = 540  # fits a box lent for 10-minute commands, with room to spare
REPORT_RESERVE_S = 60  # kept back from the backends for the report (plots included)
MIN_BACKEND_S = 30  # less than this left: a backend is not started at all
SIGINT_GRACE_S = 30  # pytest writes the finished cases as an interrupted run meanwhile
PACK_LIMIT_MIB = 16  # the largest file some lending services hand back
SITE_MARK = ".fashion-bench-kit-site"  # only a folder holding this is ever wiped
# What the harness needs from the box itself (the kit carries Keras and its needs only).
BOX_NEEDS = ("numpy", "pytest", "pytest-benchmark", "psutil", "pandas", "scipy")
VERSIONS = ("keras", "jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "torch",
            "tensorflow", "numpy", "optree", "ml-dtypes", "pytest", "pytest-benchmark",
            "psutil", "pandas", "scipy", "matplotlib", "nvidia-ml-py")
PROBE = """\
import importlib.metadata as md, importlib.util as iu, json, sys
versions = {}
for name in sys.argv[1:]:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        versions[name] = None
modules = {m: iu.find_spec(m) is not None for m in ("jax", "torch", "tensorflow", "keras")}
keras = iu.find_spec("keras")
print(json.dumps({"python": sys.version.split()[0], "executable": sys.executable,
                  "versions": versions, "modules": modules,
                  "keras_file": keras.origin if keras else None}))
"""
STATUS_TEXT = {0: "ok", 1: "ran; some cases failed (recorded in the result file)",
               5: "no cases selected"}


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


@dataclass
class BackendRun:
    """What happened to one backend, as summary.json records it."""

    backend: str
    command: list[str]
    status: str = "not started"
    ran: bool = False
    exit_code: int | None = None
    seconds: float | None = None
    timeout_s: float | None = None
    result_files: list[str] = field(default_factory=list)
    rows: int | None = None  # timing rows in its result files
    failures: int | None = None  # cases recorded as failed there


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s OUT_DIR [options] [-- extra pytest arguments]",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        epilog="exit status: 0 every backend ran to the end, timed at least one case (failed "
               "cases are allowed: they are recorded) and the report was written; 1 a "
               "backend did not (timed out, crashed, every case failed, not installed "
               "though named, no cases) or the report failed; 2 the kit could not start "
               "(damaged bundle, failed install, bad options)")
    parser.add_argument("out", type=Path, metavar="OUT_DIR",
                        help="folder for results/, report/, kit.log and summary.json "
                             "(created; results of earlier runs there are kept and reported)")
    parser.add_argument("--device", default="gpu:0",
                        help="--bench-device for pytest: gpu:0 (default), cpu, cpu,gpu:0, ...")
    parser.add_argument("--backends", default="auto", metavar="LIST",
                        help="jax,torch,tensorflow or a subset, in that order; 'auto' "
                             "(default): each of them that is installed")
    parser.add_argument("--matrix", default="quick", metavar="NAME",
                        help="--bench-matrix: quick (default), full or tiny")
    parser.add_argument("-k", dest="keyword", metavar="EXPR",
                        help="pytest -k: keep the cases whose id or suite matches, "
                             "e.g. \"train and b1024\"")
    parser.add_argument("--data", default="bundled", metavar="bundled|synthetic|DIR",
                        help="Fashion-MNIST: the bundle's copy (default), 'synthetic' random "
                             "data (trying the kit; the report leaves it out unless it can "
                             "include it), or a folder with the four .gz files")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                        help=f"wall-clock time for the whole run, install and report "
                             f"included (default: {DEFAULT_BUDGET_S}; 0: none). Each backend "
                             f"gets an equal share of what is left when it starts, less "
                             f"{REPORT_RESERVE_S} s for the report; one past its share is "
                             f"interrupted and its finished cases are kept")
    parser.add_argument("--backend-timeout", type=float, metavar="SECONDS",
                        help="at most this long per backend, whatever the budget leaves")
    parser.add_argument("--wheels", default="needed", choices=("needed", "all", "none"),
                        help="which bundled wheels to install: needed (default: those marked "
                             "always, and the others where the box lacks the distribution), "
                             "all, or none (use the box's own Keras)")
    parser.add_argument("--site", type=Path, metavar="DIR",
                        help="where the wheels are installed (default: <bundle>/site); "
                             "emptied first if the kit made it")
    parser.add_argument("--python", default=sys.executable, metavar="PATH",
                        help="the interpreter that installs and runs everything (default: "
                             "the one running this script; run.sh uses $PYTHON or python3)")
    parser.add_argument("--pack", type=Path, metavar="FILE.tar.gz",
                        help="at the end, pack OUT_DIR (results, report, log, summary) into "
                             "this one file, for a box that hands back only a few files or "
                             "shallow folders (results lie 3 folders down)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip checking the bundle's files against their sha256")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would run (install, each backend, report) and stop")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The kit's options; everything after a ``--`` goes to pytest unchanged."""
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.pytest_args = extra
    if args.backends != "auto":
        names = [name.strip() for name in args.backends.split(",") if name.strip()]
        unknown = [name for name in names if name not in BACKENDS]
        if unknown or not names:
            parser.error(f"--backends {args.backends!r}: choose from {', '.join(BACKENDS)} "
                         f"or auto")
        args.backend_list = [name for name in BACKENDS if name in names]
    else:
        args.backend_list = None
    if args.budget < 0 or (args.backend_timeout is not None and args.backend_timeout <= 0):
        parser.error("--budget and --backend-timeout take a positive number of seconds")
    return args


def find_bundle(project: Path = PROJECT) -> Path | None:
    """The unpacked bundle this project lies in (its MANIFEST.json beside project/), if any."""
    root = project.parent
    return root if project.name == bundle.PROJECT and (root / bundle.MANIFEST).is_file() else None


def offline_pip_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without pip's own settings, and with pip's config files and indexes off.

    A PIP_INDEX_URL or a pip.conf on the box could otherwise point pip at the network.
    """
    clean = {key: value for key, value in env.items() if not key.startswith("PIP_")}
    clean.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
                 PIP_DISABLE_PIP_VERSION_CHECK="1")
    return clean


def install_command(python: str, site: Path, wheels: list[Path]) -> list[str]:
    """pip, offline: these wheel files only, no dependency look-up, into ``site``."""
    return [python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
            "--no-cache-dir", "--disable-pip-version-check", "--no-warn-script-location",
            "--quiet", "--target", str(site), *map(str, wheels)]


def child_env(base: dict[str, str], site: Path | None, project: Path,
              data_dir: Path | None) -> dict[str, str]:
    """The environment of every benchmark and report process."""
    env = dict(base)
    paths = [str(site)] if site else []
    paths.append(str(project))
    if base.get("PYTHONPATH"):
        paths.append(base["PYTHONPATH"])
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
               TF_CPP_MIN_LOG_LEVEL=base.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    if data_dir is not None:
        env["FASHION_MNIST_DIR"] = str(data_dir)
    else:
        env.pop("FASHION_MNIST_DIR", None)
    return env


def backend_command(args: argparse.Namespace, results: Path) -> list[str]:
    """The benchmark run of one backend (KERAS_BACKEND is set in its environment)."""
    command = bench_command(["--bench-device", args.device, "--bench-matrix", args.matrix,
                              "--bench-results", str(results)], python=args.python)
    if args.keyword:
        command += ["-k", args.keyword]
    if args.data == "synthetic":
        command += ["--bench-data", "synthetic"]
    return command + list(args.pytest_args)


def report_options(python: str, env: dict[str, str], project: Path) -> set[str]:
    """The options the project's report takes, asked of the report itself (``python -m
    bench.report --help``) rather than read from where its source happens to lie; none
    where it cannot answer."""
    try:
        done = subprocess.run([python, "-m", "bench.report", "--help"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return set()
    if done.returncode != 0:
        return set()
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))


def report_command(args: argparse.Namespace, results: Path, report: Path,
                   options: set[str]) -> list[str]:
    """The report over the run; synthetic-data runs included where the report takes
    ``--include-synthetic`` (``options``: :func:`report_options`)."""
    command = [args.python, "-m", "bench.report", str(results), "--out", str(report)]
    if args.data == "synthetic" and "--include-synthetic" in options:
        command.append("--include-synthetic")
    return command


def backend_timeout(args: argparse.Namespace, deadline: float | None, now: float,
                    backends_left: int) -> float | None:
    """The seconds this backend may run: its share of the budget, capped by --backend-timeout."""
    share = None
    if deadline is not None:
        share = max(0.0, (deadline - now - REPORT_RESERVE_S) / max(1, backends_left))
    if args.backend_timeout is not None:
        share = args.backend_timeout if share is None else min(share, args.backend_timeout)
    return share


def quote(command: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)


def probe(python: str, env: dict[str, str], names: list[str]) -> dict:
    """Versions of ``names`` and which backends import, as ``python`` sees them in ``env``."""
    try:
        done = subprocess.run([python, "-c", PROBE, *names], env=env, capture_output=True,
                              text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KitError(f"cannot run {python}: {error}") from None
    if done.returncode != 0:
        raise KitError(f"{python} failed to report its packages: "
                       f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def wheels_to_install(manifest: dict, root: Path, choice: str,
                      installed: dict[str, str | None]) -> tuple[list[Path], list[str]]:
    """The bundle's wheels to install under ``--wheels choice``, and notes on the others."""
    chosen, notes = [], []
    for wheel in manifest.get("wheels", []):
        have = installed.get(wheel["name"])
        if choice == "none":
            notes.append(f"{wheel['name']}: not installed (--wheels none)")
        elif choice == "all" or wheel["when"] == "always" or have is None:
            chosen.append(root / wheel["path"])
        else:
            notes.append(f"{wheel['name']}: the box's {have} kept (bundle has "
                         f"{wheel['version']}, installed only where missing)")
    return chosen, notes


def unzip_wheels(wheels: list[Path], site: Path) -> None:
    """Install wheels without pip (where the box's Python has none): unpack each into site.

    Enough for the wheels the kit carries (no scripts are needed); a wheel's
    ``*.data/purelib`` and ``platlib`` parts go to the top of site, as pip puts them.
    """
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                parts = name.split("/")
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                target = site.joinpath(*parts)
                if name.endswith("/"):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))


def prepare_site(site: Path) -> None:
    """Empty the wheel folder of an earlier run; refuse to touch a folder the kit did not make."""
    if site.exists() and any(site.iterdir()):
        if not (site / SITE_MARK).is_file():
            raise KitError(f"{site} exists and was not made by the kit; pass --site with a "
                           f"new or empty folder")
        shutil.rmtree(site)
    site.mkdir(parents=True, exist_ok=True)
    (site / SITE_MARK).write_text("made by fashion-bench's kit/run.py; emptied on each run\n")


def _interruptible() -> None:
    """In the child, before it starts: SIGINT back to its default. A shell's background job
    (nohup, `&`) starts with SIGINT ignored, which Python then keeps, so the interrupt
    that lets pytest save its finished cases would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_streamed(command: list[str], env: dict[str, str], cwd: Path, log: Log,
                 timeout: float | None) -> tuple[int, bool, float]:
    """Run ``command``, copying its output to the log; (exit code, timed out, seconds).

    Past ``timeout`` it gets SIGINT (pytest then saves the finished cases as an
    interrupted run), then SIGTERM and SIGKILL if it lingers.
    """
    start = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace",
                               bufsize=1, start_new_session=True,
                               preexec_fn=_interruptible)

    def copy_output() -> None:
        for line in process.stdout:
            log(line.rstrip("\n"))

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        log(f"kit: past its {timeout:.0f} s: interrupting (SIGINT), "
            f"{SIGINT_GRACE_S} s to save what it finished")
        for sig, grace in ((signal.SIGINT, SIGINT_GRACE_S), (signal.SIGTERM, 10),
                           (signal.SIGKILL, None)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
    reader.join(timeout=10)
    return process.returncode, timed_out, time.monotonic() - start


def result_files(results: Path) -> set[Path]:
    return set(results.rglob("*.json")) if results.is_dir() else set()


def count_rows(paths: list[Path]) -> tuple[int | None, int | None]:
    """(timing rows, failed cases) in these result files; None where they cannot be read."""
    rows = failures = 0
    try:
        for path in paths:
            document = json.loads(path.read_text(encoding="utf-8"))
            rows += len(document.get("benchmarks") or [])
            failures += len(document.get("fashion_bench_failures") or [])
    except (OSError, ValueError, AttributeError, TypeError):
        return None, None
    return rows, failures


def describe(run: BackendRun, timed_out: bool, new_files: list[Path], no_save: bool) -> None:
    """Fill in the run's status and whether it counts as having run.

    It ran when pytest finished (exit status 0, or 1: some cases failed and were
    recorded), wrote its result file, and at least one case gave a timing row.
    """
    run.rows, run.failures = count_rows(new_files)
    finished = not timed_out and run.exit_code in (0, 1)
    if timed_out:
        run.status = (f"timed out after {run.timeout_s:.0f} s (interrupted; "
                      f"{len(new_files)} result files kept)")
    elif run.exit_code == 1 and run.failures:
        run.status = f"ran; {run.failures} cases failed (recorded in the result file)"
    elif run.exit_code in STATUS_TEXT:
        run.status = STATUS_TEXT[run.exit_code]
    else:
        run.status = f"error (pytest exit status {run.exit_code})"
    run.ran = finished and (bool(new_files) or no_save)
    if finished and not new_files and not no_save:
        run.status += "; but no result file was written"
    elif finished and run.rows == 0 and run.failures:
        run.ran = False
        run.status = f"every case failed ({run.failures}; the report lists why)"


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


def host_facts(log: Log) -> None:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 2**20:.0f} GiB memory"
    except OSError:
        pass
    log(f"host: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs{memory}")


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


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    deadline = start + args.budget if args.budget else None
    root = find_bundle()
    manifest = bundle.read_manifest(root) if root else {"wheels": [], "data": []}
    out = args.out.resolve()
    results, report = out / "results", out / "report"
    site = (args.site or (root / "site" if root else None))
    site = site.resolve() if site else None
    if args.data == "bundled":
        if root is None or not manifest["data"]:
            if root is not None:
                raise KitError("this bundle carries no data (built with --no-data): pass "
                               "--data DIR or --data synthetic")
            data_dir = None  # a plain checkout: the harness's own look-up
        else:
            data_dir = root / bundle.DATA
    elif args.data == "synthetic":
        data_dir = None
    else:
        data_dir = Path(args.data).resolve()
        if not all((data_dir / name).is_file() for name in bundle.DATA_FILES):
            raise KitError(f"--data {args.data}: expected the four files "
                           f"{', '.join(bundle.DATA_FILES)} there")

    if not args.dry_run:
        out.mkdir(parents=True, exist_ok=True)
    log = Log(None if args.dry_run else out / "kit.log")
    try:
        return _run(args, log, root, manifest, out, results, report, site, data_dir,
                    deadline, start)
    except KitError as error:
        log(f"error: {error}")
        return EXIT_CANNOT_START
    finally:
        log.close()


def _run(args, log: Log, root: Path | None, manifest: dict, out: Path, results: Path,
         report: Path, site: Path | None, data_dir: Path | None, deadline: float | None,
         start: float) -> int:
    dry = "dry run: " if args.dry_run else ""
    log(f"==== fashion-bench device kit, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
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
    install = install_command(args.python, site, wheels) if wheels else None
    for note in notes:
        log(f"wheels: {note}")
    if install:
        log(f"{dry}install: {quote(install)}  [offline: PIP_NO_INDEX=1, "
            f"PIP_CONFIG_FILE={os.devnull}]")
        if not args.dry_run:
            prepare_site(site)
            has_pip = subprocess.run([args.python, "-m", "pip", "--version"],
                                     capture_output=True, env=offline_pip_env(base)
                                     ).returncode == 0
            if has_pip:
                done = subprocess.run(install, env=offline_pip_env(base), capture_output=True,
                                      text=True)
                for line in (done.stdout + done.stderr).strip().splitlines():
                    log(f"pip: {line}")
                if done.returncode != 0:
                    raise KitError(f"installing the wheels failed (pip exit status "
                                   f"{done.returncode}, above)")
            else:
                log("kit: this Python has no pip: unpacking the wheels into the site folder")
                unzip_wheels(wheels, site)
    log(f"PYTHONPATH={env['PYTHONPATH']}")
    log(f"FASHION_MNIST_DIR={env.get('FASHION_MNIST_DIR', '(unset: the usual look-up)')}"
        + ("  [--data synthetic]" if args.data == "synthetic" else ""))

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
    host_facts(log)
    nvidia_smi = None if args.dry_run else gpu_facts(log)

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

    command = report_command(args, results, report, report_options(args.python, env, PROJECT))
    log(f"---- report: {dry}{quote(command)}")
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

    if args.dry_run:
        log("dry run: nothing was installed or run")
        return EXIT_ALL_RAN
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
    if args.pack:
        pack(out, args.pack.resolve(), log)
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return run(args)
    except KitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CANNOT_START


if __name__ == "__main__":
    sys.exit(main())
