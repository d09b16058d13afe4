"""Build the device run kit: one .tar.gz with the project, wheels and Fashion-MNIST.

    python kit/build.py                      # dist/fashion-bench-kit-<commit>.tar.gz, for 3.12
    python kit/build.py --python-version 3.11 --out /tmp/kit.tar.gz   # to try it here
    python kit/build.py --worktree           # tracked files as edited, not as committed

The project is the git-tracked files of a commit (HEAD by default; ``--worktree`` takes
them as they are on disk, uncommitted edits included; untracked files never travel).
Wheels (kit/wheels.txt) are fetched with ``pip download --no-deps --only-binary=:all:``
for the target Python and manylinux x86_64 into .kit/wheels/ (kept between builds), or
taken from ``--wheels-from DIR``. The data are the four IDX .gz files from
``--data-dir``, $FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist. See
docs/device-kit.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python kit/build.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kit import bundle
from kit.bundle import KitError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MAX_MIB = 60.0
DEBIAN_DATA = Path("/usr/share/datasets/fashion-mnist")
# pip matches manylinux_2_N exactly: list the glibc levels the wheels we carry are built for.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
RUN_SH = """\
#!/bin/sh
# The device run kit's one command: install offline, benchmark, report.
# Usage: sh run.sh OUT_DIR [options]; sh run.sh --help lists them. PYTHON picks the
# interpreter (default: python3). See project/docs/device-kit.md.
here=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-python3}" "$here/project/kit/run.py" "$@"
"""


@dataclass
class Member:
    """One file of the bundle: its path under the top folder and where its bytes come from."""

    name: str
    data: bytes | None = None
    path: Path | None = None
    mode: int = 0o644
    link: str | None = None  # a symbolic link's target (data and path unused)

    def read(self) -> bytes:
        return self.data if self.data is not None else Path(self.path).read_bytes()


def git(*args: str, repo: Path = REPO) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True)
    except FileNotFoundError:
        raise KitError("git is not installed; the kit takes the project's files from git") from None
    except subprocess.CalledProcessError as error:
        message = error.stderr.decode(errors="replace").strip().splitlines()
        raise KitError(f"git {' '.join(args)} failed in {repo}: "
                       f"{message[-1] if message else error}") from None
    return done.stdout


def changed_files(porcelain: str) -> list[str]:
    """The paths in ``git status --porcelain -z`` output (a rename's old path skipped)."""
    entries, paths = porcelain.split("\0"), []
    skip_next = False
    for entry in entries:
        if skip_next or len(entry) < 4:
            skip_next = False
            continue
        paths.append(entry[3:])
        skip_next = "R" in entry[:2] or "C" in entry[:2]  # the next entry is the old path
    return sorted(paths)


def project_members(repo: Path, worktree: bool) -> tuple[list[Member], dict]:
    """The project's files under project/, and what the manifest says of their source."""
    commit = git("rev-parse", "HEAD", repo=repo).decode().strip()
    commit_time = int(git("log", "-1", "--format=%ct", "HEAD", repo=repo).decode().strip())
    modified = changed_files(git("status", "--porcelain", "--untracked-files=no", "-z",
                                 repo=repo).decode())
    source = {"commit": commit, "commit_time": commit_time,
              "files_from": "worktree" if worktree else "commit",
              "modified_in_worktree": modified if worktree else []}
    members = []
    if worktree:
        for name in sorted(git("ls-files", "-z", "--cached", repo=repo).decode().split("\0")):
            path = repo / name
            if not name:
                continue
            if path.is_symlink():
                members.append(Member(f"{bundle.PROJECT}/{name}", link=os.readlink(path)))
            elif path.is_file():
                mode = 0o755 if os.access(path, os.X_OK) else 0o644
                members.append(Member(f"{bundle.PROJECT}/{name}", path=path, mode=mode))
            # else: deleted in the worktree, so it does not travel either
        return members, source
    archive = tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", commit, repo=repo)))
    for info in archive:
        name = f"{bundle.PROJECT}/{info.name}"
        if info.issym():
            members.append(Member(name, link=info.linkname))
        elif info.isfile():
            members.append(Member(name, data=archive.extractfile(info).read(),
                                  mode=0o755 if info.mode & 0o111 else 0o644))
    return members, source


def download_wheels(pins: list[bundle.WheelPin], python_version: str, cache: Path) -> Path:
    """pip download every pin for ``python_version`` into ``cache``; return the folder."""
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp",
               *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
               "--disable-pip-version-check", "-d", str(cache),
               *[f"{pin.name}=={pin.version}" for pin in pins]]
    print("$ " + " ".join(command), flush=True)
    if subprocess.run(command).returncode != 0:
        raise KitError("pip download failed (above); fetch the wheels some other way into a "
                       "folder and pass --wheels-from DIR, or build with --no-wheels")
    return cache


def select_wheels(pins: list[bundle.WheelPin], folder: Path,
                  python_version: str) -> list[tuple[bundle.WheelPin, Path]]:
    """For each pin, the one wheel in ``folder`` that matches it and runs on the target."""
    if not folder.is_dir():
        raise KitError(f"wheel folder {folder} does not exist")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.whl")):
        wheel = bundle.parse_wheel(path.name)
        if wheel.runs_on(python_version):
            found.setdefault(f"{wheel.name}=={wheel.version}", []).append(path)
    chosen, missing = [], []
    for pin in pins:
        candidates = found.get(f"{pin.name}=={pin.version}", [])
        if not candidates:
            missing.append(f"{pin.name}=={pin.version}")
        else:
            chosen.append((pin, candidates[0]))
    if missing:
        raise KitError(f"no wheel for Python {python_version} in {folder} for: "
                       f"{', '.join(missing)}")
    return chosen


def data_members(folder: Path) -> list[Member]:
    """The four Fashion-MNIST .gz files of ``folder``; KitError naming what is wrong."""
    members = []
    for name in bundle.DATA_FILES:
        path = folder / name
        if not path.is_file():
            raise KitError(f"{path} is missing: pass --data-dir DIR with the four Fashion-MNIST "
                           f".gz files (or install Debian's dataset-fashion-mnist)")
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                raise KitError(f"{path} is not gzip-compressed; the kit carries the .gz files")
        members.append(Member(f"{bundle.DATA}/{name}", path=path))
    return members


def write_bundle(members: list[Member], manifest: dict, out: Path, mtime: int) -> None:
    """Write the tar.gz: manifest and SHA256SUMS added, members sorted, times fixed.

    Fixed times, owners and order make the same inputs give the same bytes.
    """
    files = {}
    for member in members:
        if member.link is None:
            content = member.read()
            member.data, member.path = content, None
            files[member.name] = {"sha256": hashlib.sha256(content).hexdigest(),
                                  "size": len(content)}
    manifest = dict(manifest, files=files)
    manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    sums = dict(files, **{bundle.MANIFEST: {
        "sha256": hashlib.sha256(manifest_bytes).hexdigest()}})
    sums_bytes = "".join(f"{entry['sha256']}  {name}\n"
                         for name, entry in sorted(sums.items())).encode()
    everything = sorted([*members, Member(bundle.MANIFEST, data=manifest_bytes),
                         Member(bundle.SUMS, data=sums_bytes)], key=lambda m: m.name)
    tmp = out.with_name(out.name + ".partial")
    try:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member in everything:
                info = tarfile.TarInfo(f"{bundle.TOP}/{member.name}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
                if member.link is not None:
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, member.link, 0o777
                    tar.addfile(info)
                else:
                    info.size, info.mode = len(member.data), member.mode
                    tar.addfile(info, io.BytesIO(member.data))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def check_size(path: Path, members: list[Member], max_mib: float) -> float:
    """The bundle's size in MiB; KitError (file removed) when it is over ``max_mib``."""
    size_mib = path.stat().st_size / 2**20
    if size_mib <= max_mib:
        return size_mib
    parts: dict[str, int] = {}
    for member in members:
        if member.link is None:
            part = member.name.split("/", 1)[0]
            parts[part] = parts.get(part, 0) + len(member.read())
    largest = sorted(((len(m.read()), m.name) for m in members if m.link is None),
                     reverse=True)[:3]
    path.unlink()
    raise KitError(
        f"bundle is {size_mib:.1f} MiB, over the {max_mib:g} MiB limit (removed {path}); "
        f"uncompressed: " + ", ".join(f"{part}/ {size / 2**20:.1f} MiB"
                                      for part, size in sorted(parts.items()))
        + "; largest: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for size, name in largest)
        + ". Carry fewer wheels (kit/wheels.txt, --no-wheels) or raise --max-mib")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python kit/build.py", description=__doc__.split("\n\n")[0],
        epilog="Then carry the file to the box, unpack it (tar -xzf FILE) and run "
               "sh fashion-bench-kit/run.sh OUT_DIR there. See docs/device-kit.md.")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="the bundle to write (default: dist/fashion-bench-kit-<commit>"
                             ".tar.gz in the checkout)")
    parser.add_argument("--python-version", default="3.12", metavar="X.Y",
                        help="the box's Python, for the compiled wheels (default: 3.12; "
                             "3.11 to try the kit on this machine)")
    parser.add_argument("--worktree", action="store_true",
                        help="take the tracked files as they are on disk, uncommitted edits "
                             "included (default: as committed in HEAD); the manifest lists "
                             "the edited files")
    wheels = parser.add_mutually_exclusive_group()
    wheels.add_argument("--wheels-from", type=Path, metavar="DIR",
                        help="take the wheels from DIR instead of downloading them; every "
                             "line of --wheels must have its wheel there")
    wheels.add_argument("--no-wheels", action="store_true",
                        help="carry no wheels (for a box that has Keras and its needs)")
    parser.add_argument("--wheels", type=Path, default=REPO / "kit" / "wheels.txt",
                        metavar="FILE", help="the wheel list (default: kit/wheels.txt)")
    parser.add_argument("--cache", type=Path, default=REPO / ".kit" / "wheels", metavar="DIR",
                        help="where downloaded wheels are kept between builds, one folder per "
                             "Python (default: .kit/wheels)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data-dir", type=Path, metavar="DIR",
                      help="folder with the four Fashion-MNIST .gz files (default: "
                           "$FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist)")
    data.add_argument("--no-data", action="store_true",
                      help="carry no data (the box then needs --data DIR or --data synthetic)")
    parser.add_argument("--max-mib", type=float, default=DEFAULT_MAX_MIB, metavar="MIB",
                        help=f"refuse a bundle larger than this (default: {DEFAULT_MAX_MIB:g}, "
                             f"to fit services that carry at most 64 MiB to a lent box)")
    return parser


def build(args: argparse.Namespace, repo: Path = REPO) -> Path:
    """Build the bundle ``args`` describe; return its path."""
    members, source = project_members(repo, args.worktree)
    pins = bundle.read_pins(args.wheels)
    wheels = []
    if not args.no_wheels:
        folder = args.wheels_from or download_wheels(
            pins, args.python_version, args.cache / f"cp{args.python_version.replace('.', '')}")
        for pin, path in select_wheels(pins, folder, args.python_version):
            wheel = bundle.parse_wheel(path.name)
            members.append(Member(f"{bundle.WHEELS}/{path.name}", path=path))
            wheels.append({"path": f"{bundle.WHEELS}/{path.name}", "name": wheel.name,
                           "version": wheel.version, "when": pin.when})
    data = []
    if not args.no_data:
        data_dir = args.data_dir or Path(os.environ.get("FASHION_MNIST_DIR") or DEBIAN_DATA)
        data_files = data_members(data_dir)
        members += data_files
        data = [member.name for member in data_files]
    members.append(Member("run.sh", data=RUN_SH.encode(), mode=0o755))
    manifest = {"format": bundle.FORMAT, "project": source,
                "python_version": args.python_version, "platforms": list(PLATFORMS),
                "wheels": wheels, "data": data}
    short = source["commit"][:10] + ("-worktree" if source["modified_in_worktree"] else "")
    out = args.out or repo / "dist" / f"{bundle.TOP}-{short}.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bundle(members, manifest, out, mtime=source["commit_time"])
    size_mib = check_size(out, members, args.max_mib)
    print(f"wrote {out}: {size_mib:.1f} MiB (limit {args.max_mib:g}); project "
          f"{source['commit'][:10]} ({source['files_from']}"
          + (f", {len(source['modified_in_worktree'])} edited files" if args.worktree else "")
          + f"), {len(wheels)} wheels for Python {args.python_version}, "
          f"{len(data)} data files")
    if args.worktree and source["modified_in_worktree"]:
        print("edited files carried: " + ", ".join(source["modified_in_worktree"]))
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        build(args)
    except KitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
