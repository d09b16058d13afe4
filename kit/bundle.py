"""What the build and run scripts agree on: the bundle's layout, manifest and wheel list.

Standard library only, Python 3.10+: the run script imports this on a box where nothing
else may be installed yet.

Layout of a bundle (one ``.tar.gz``; everything under one top folder)::

    fashion-bench-kit/
      run.sh               the one command on the box: exec python3 project/kit/run.py "$@"
      MANIFEST.json        what is inside: source commit, wheels, data, sha256 of every file
      SHA256SUMS           the same digests for ``sha256sum -c`` (MANIFEST.json included)
      project/             the checkout (git-tracked files)
      wheels/              *.whl for the box's Python
      data/fashion-mnist/  the four IDX .gz files
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

TOP = "fashion-bench-kit"
MANIFEST = "MANIFEST.json"
SUMS = "SHA256SUMS"
PROJECT = "project"
WHEELS = "wheels"
DATA = "data/fashion-mnist"
FORMAT = 1
DATA_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
WHEN = ("always", "if-missing")

# name-version(-build)?-python-abi-platform.whl (PEP 427); names use _ for - in files.
_WHEEL_NAME = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-\d[^-]*)?-(?P<python>[^-]+)-(?P<abi>[^-]+)-"
    r"(?P<platform>[^-]+)\.whl$")


class KitError(Exception):
    """A problem the user can fix; the scripts print it as one ``error:`` line."""


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it: ml_dtypes, ML-Dtypes -> ml-dtypes."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class WheelPin:
    """One line of kit/wheels.txt: a distribution, its version, and when to install it."""

    name: str
    version: str
    when: str


def read_pins(path: Path) -> list[WheelPin]:
    """Parse kit/wheels.txt; comments (#) and blank lines are skipped."""
    pins = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        spec = parts[0]
        when = parts[1] if len(parts) > 1 else "always"
        if "==" not in spec or len(parts) > 2 or when not in WHEN:
            raise KitError(f"{path}:{number}: expected 'name==version  always|if-missing', "
                           f"got {raw.strip()!r}")
        name, version = spec.split("==", 1)
        pins.append(WheelPin(normalize(name), version, when))
    names = [pin.name for pin in pins]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KitError(f"{path}: more than one line for {', '.join(duplicates)}; keep one "
                       f"version of each (two stop the whole install)")
    return pins


@dataclass(frozen=True)
class WheelFile:
    """What a wheel's file name says."""

    name: str  # normalized
    version: str
    python: str  # e.g. cp312, py3, py2.py3
    abi: str
    platform: str

    def runs_on(self, python_version: str) -> bool:
        """Whether this wheel installs on CPython ``python_version`` ("3.12")."""
        major, minor = (int(part) for part in python_version.split(".")[:2])
        for tag in self.python.split("."):  # a wheel may carry several: py2.py3
            if tag in (f"py{major}", f"py{major}{minor}", f"cp{major}{minor}"):
                return True
            # The stable ABI: a cp39-abi3 wheel runs on every CPython 3.9 and later.
            older = tag.removeprefix(f"cp{major}")
            if self.abi == "abi3" and older != tag and older.isdigit() and int(older) <= minor:
                return True
        return False


def parse_wheel(filename: str) -> WheelFile:
    """Split a wheel file name into its parts; KitError when it is not one."""
    match = _WHEEL_NAME.match(filename)
    if not match:
        raise KitError(f"{filename}: not a wheel file name (name-version-python-abi-platform"
                       f".whl)")
    return WheelFile(normalize(match["name"]), match["version"], match["python"],
                     match["abi"], match["platform"])


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(root: Path) -> dict:
    """The MANIFEST.json of the bundle unpacked at ``root``; KitError if missing or foreign."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError(f"{path} is missing: {root} is not an unpacked kit bundle") from None
    except (OSError, ValueError) as error:
        raise KitError(f"{path}: cannot read it ({error}); unpack the bundle again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise KitError(f"{path}: not a format-{FORMAT} kit manifest; build the bundle again "
                       f"with this version's kit/build.py")
    return manifest


def verify(root: Path, manifest: dict) -> list[str]:
    """Problems with the unpacked files against the manifest's sha256s (empty: all good)."""
    problems = []
    for name, entry in sorted(manifest["files"].items()):
        path = Path(root) / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (damaged in transit?)")
    return problems
