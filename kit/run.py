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

Here: the options and the run's set-up; the steps in kit/steps.py, the offline install
in kit/install.py, a backend's run and its status in kit/backends.py. Standard library
only, Python 3.10+. See docs/device-kit.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python3 project/kit/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kit import bundle
from kit.backends import BACKENDS, REPORT_RESERVE_S
from kit.bundle import KitError
from kit.steps import EXIT_CANNOT_START, PROJECT, Log, run_steps

DEFAULT_BUDGET_S = 540  # fits a box lent for 10-minute commands, with room to spare


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


def run(args: argparse.Namespace) -> int:
    """The run of :func:`kit.steps.run_steps` in OUT_DIR; its exit status."""
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
        return run_steps(args, log, root, manifest, out, results, report, site,
                         data_dir, deadline, start)
    except KitError as error:
        log(f"error: {error}")
        return EXIT_CANNOT_START
    finally:
        log.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return run(args)
    except KitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CANNOT_START


if __name__ == "__main__":
    sys.exit(main())
