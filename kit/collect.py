"""Add the result files a kit run brought back to this checkout's results/ folder.

    python kit/collect.py fashion-bench-run.tar.gz        # a pack (run.sh --pack FILE)
    python kit/collect.py /tmp/out                        # or the run's OUT_DIR
    python kit/collect.py run.tar.gz --dry-run            # say what would be added
    python -m bench.report                                # then the report, as usual

Each result file goes to results/<machine id>/ (results/synthetic/<machine id>/ for
synthetic data, as the harness files it), keeping its time stamp but taking the next
free number there, so nothing is overwritten; a file whose content is already there is
skipped, so collecting the same pack twice adds nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# <run id>.json (<YYYYmmdd-HHMMSS>_<commit or nocommit>_<8 hex>), as bench.store.results
# names them, or the older NNNN_<YYYYmmdd-HHMMSS>.json.
RUN_ID_NAME = re.compile(r"^\d{8}-\d{6}_([0-9a-f]{7}|nocommit)_[0-9a-f]{8}\.json$")
RESULT_NAME = re.compile(r"^(\d{4,})_(?P<stamp>.+)\.json$")


def find_results(folder: Path) -> list[tuple[Path, Path]]:
    """(file, its folder relative to the results root) for each result file under folder.

    The results root is the ``results`` folder of a run's OUT_DIR; the relative folder is
    ``<machine id>`` or ``synthetic/<machine id>``.
    """
    found = []
    for path in sorted(folder.rglob("*.json")):
        if not (RUN_ID_NAME.match(path.name) or RESULT_NAME.match(path.name)):
            continue  # summary.json and the like
        parts = path.relative_to(folder).parts
        if "results" not in parts[:-1]:
            continue
        at = len(parts) - 1 - parts[::-1].index("results")  # the innermost results/
        relative = Path(*parts[at + 1:-1])
        if relative.parts:
            found.append((path, relative))
    return found


def next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.glob("*.json") if (m := RESULT_NAME.match(p.name))]
    return max(numbers, default=0) + 1


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collect(source: Path, results: Path, dry_run: bool = False) -> list[Path]:
    """Copy every result file under ``source`` into ``results``; return the new paths."""
    added = []
    for path, relative in find_results(source):
        target_folder = results / relative
        content = path.read_bytes()
        known = {digest(p): p for p in target_folder.glob("*.json")} \
            if target_folder.is_dir() else {}
        same = known.get(hashlib.sha256(content).hexdigest())
        if same:
            print(f"already there: {path.name} as {same}")
            continue
        if RUN_ID_NAME.match(path.name):  # a run id is unique: it keeps its name
            target = target_folder / path.name
            if target.exists():
                print(f"error: {target} exists with other content; {path} not copied",
                      file=sys.stderr)
                continue
        else:  # the older counter: the next number of the target folder
            stamp = RESULT_NAME.match(path.name)["stamp"]
            number = next_number(target_folder) if target_folder.is_dir() else 1
            if dry_run:  # nothing was written: count what this run would have added
                number += sum(1 for p in added if p.parent == target_folder
                              and RESULT_NAME.match(p.name))
            target = target_folder / f"{number:04d}_{stamp}.json"
        print(f"{'would add' if dry_run else 'added'} {target} (from {path.name})")
        if not dry_run:
            target_folder.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:  # never replaces a file
                out.write(content)
        added.append(target)
    return added


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python kit/collect.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, metavar="PACK_OR_DIR",
                        help="the run's pack (a .tar.gz) or its OUT_DIR")
    parser.add_argument("--results", type=Path, default=REPO / "results", metavar="DIR",
                        help="where result files live (default: results/ of this checkout)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be added")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.source.exists():
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        source = args.source
        if source.is_file():
            try:
                with tarfile.open(source) as tar:
                    # Plain files and folders inside the scratch folder, nothing else.
                    safe = [m for m in tar.getmembers() if (m.isfile() or m.isdir())
                            and not m.name.startswith("/") and ".." not in Path(m.name).parts]
                    tar.extractall(scratch, members=safe)
            except (tarfile.TarError, OSError) as error:
                print(f"error: {source}: not a readable .tar.gz ({error})", file=sys.stderr)
                return 2
            source = Path(scratch)
        added = collect(source, args.results, args.dry_run)
        if not find_results(source):
            print(f"error: no result files (results/<machine id>/*.json) in "
                  f"{args.source}", file=sys.stderr)
            return 2
    print(f"{len(added)} result files {'to add' if args.dry_run else 'added'}; "
          f"then: python -m bench.report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
