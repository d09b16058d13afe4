"""On the box: the bundle's wheels installed offline, and what the box's Python has.

Standard library only, Python 3.10+ (kit/run.py imports this before anything is installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from kit.bundle import KitError

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


def install(python: str, command: list[str], base: dict[str, str], wheels: list[Path],
            site: Path, log: Callable[[str], None]) -> None:
    """Run ``command`` (:func:`install_command`) into a fresh ``site``, pip's lines logged;
    where ``python`` has no pip, unpack the wheels there instead."""
    prepare_site(site)
    has_pip = subprocess.run([python, "-m", "pip", "--version"],
                             capture_output=True, env=offline_pip_env(base)
                             ).returncode == 0
    if has_pip:
        done = subprocess.run(command, env=offline_pip_env(base), capture_output=True,
                              text=True)
        for line in (done.stdout + done.stderr).strip().splitlines():
            log(f"pip: {line}")
        if done.returncode != 0:
            raise KitError(f"installing the wheels failed (pip exit status "
                           f"{done.returncode}, above)")
    else:
        log("kit: this Python has no pip: unpacking the wheels into the site folder")
        unzip_wheels(wheels, site)
