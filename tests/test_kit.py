"""The device run kit (kit/): the bundle's contents and limits, and the run's commands.

Nothing here downloads: bundles are built from a small git repository made by the test,
fake wheels and fake data; the run script is exercised in its dry-run mode and through
its parts. The real install-and-run is shown in docs/device-kit.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from kit import backends as kit_backends
from kit import build, bundle, collect
from kit import install as kit_install
from kit import run as kit_run
from kit import steps as kit_steps

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not

REPO = Path(__file__).resolve().parent.parent
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

PINS = """\
# test pins
keras==3.15.1        always
rich==15.0.0         if-missing
"""


def make_wheel(folder: Path, filename: str, files: dict[str, str] | None = None) -> Path:
    """A zip named like a wheel; its content matters only to the unzip installer."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in (files or {"placeholder.txt": filename}).items():
            archive.writestr(name, text)
    return path


@pytest.fixture
def wheel_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    make_wheel(folder, "keras-3.15.1-py3-none-any.whl")
    make_wheel(folder, "keras-3.14.0-py3-none-any.whl")  # stale: not the pinned version
    make_wheel(folder, "rich-15.0.0-py3-none-any.whl")
    make_wheel(folder, "optree-0.20.0-cp311-cp311-manylinux_2_28_x86_64.whl")  # not pinned
    return folder


@pytest.fixture
def pins(tmp_path: Path) -> Path:
    path = tmp_path / "pins.txt"
    path.write_text(PINS)
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in bundle.DATA_FILES:
        (folder / name).write_bytes(gzip.compress(name.encode(), mtime=0))
    return folder


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c",
                           "user.email=test@example.org", "-c", "commit.gpgsign=false", *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def source_repo(tmp_path: Path) -> Path:
    """A git checkout with the kit, a committed README edited since, and an untracked file."""
    repo = tmp_path / "repo"
    (repo / "kit").mkdir(parents=True)
    for path in (REPO / "kit").glob("*.py"):
        shutil.copy(path, repo / "kit" / path.name)
    (repo / "README.md").write_text("committed\n")
    (repo / "tool.sh").write_text("#!/bin/sh\n")
    (repo / "tool.sh").chmod(0o755)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "README.md").write_text("edited, not committed\n")
    (repo / "untracked.txt").write_text("never travels\n")
    return repo


def build_args(*extra: str):
    return build.build_parser().parse_args(list(extra))


def read_bundle(path: Path) -> dict[str, tarfile.TarInfo | bytes]:
    contents = {}
    with tarfile.open(path) as tar:
        for info in tar:
            contents[info.name] = tar.extractfile(info).read() if info.isfile() else info
            contents[info.name + ":info"] = info
    return contents


def test_the_shipped_wheel_list_carries_keras_and_its_tree_helpers():
    pins = {pin.name: pin for pin in bundle.read_pins(REPO / "kit" / "wheels.txt")}
    for name in ("keras", "namex", "optree"):
        assert pins[name].when == "always"
    assert "numpy" not in pins  # every box with JAX or PyTorch has it; 16 MB saved


@pytest.mark.parametrize("line, message", [
    ("keras>=3 always", "expected 'name==version"),
    ("keras==3.15.1 sometimes", "expected 'name==version"),
])
def test_a_bad_wheel_list_line_is_named(tmp_path, line, message):
    path = tmp_path / "pins.txt"
    path.write_text(f"# comment\n{line}\n")
    with pytest.raises(bundle.KitError, match=message) as error:
        bundle.read_pins(path)
    assert f"{path}:2" in str(error.value)


def test_two_versions_of_one_wheel_are_refused(tmp_path):
    path = tmp_path / "pins.txt"
    path.write_text("ml_dtypes==0.5.0\nml-dtypes==0.6.0\n")
    with pytest.raises(bundle.KitError, match="more than one line for ml-dtypes"):
        bundle.read_pins(path)


@pytest.mark.parametrize("filename, python, runs", [
    ("keras-3.15.1-py3-none-any.whl", "3.12", True),
    ("optree-0.20.0-cp312-cp312-manylinux_2_28_x86_64.whl", "3.12", True),
    ("optree-0.20.0-cp312-cp312-manylinux_2_28_x86_64.whl", "3.11", False),
    ("cryptography-44.0.0-cp39-abi3-manylinux_2_28_x86_64.whl", "3.12", True),
    ("cryptography-44.0.0-cp39-abi3-manylinux_2_28_x86_64.whl", "3.8", False),
    ("six-1.17.0-py2.py3-none-any.whl", "3.11", True),
])
def test_a_wheel_runs_on_the_pythons_its_tags_name(filename, python, runs):
    assert bundle.parse_wheel(filename).runs_on(python) is runs


def test_a_file_that_is_no_wheel_is_named():
    with pytest.raises(bundle.KitError, match="notes.txt: not a wheel"):
        bundle.parse_wheel("notes.txt")


@needs_git
def test_the_bundle_holds_the_commit_the_pinned_wheels_and_the_data(
        tmp_path, source_repo, wheel_dir, pins, data_dir):
    out = tmp_path / "kit.tar.gz"
    build.build(build_args("--out", str(out), "--wheels-from", str(wheel_dir), "--wheels",
                           str(pins), "--data-dir", str(data_dir), "--python-version", "3.12"),
                repo=source_repo)
    contents = read_bundle(out)
    top = bundle.TOP
    names = {name for name in contents if not name.endswith(":info")}
    assert f"{top}/project/README.md" in names
    assert contents[f"{top}/project/README.md"] == b"committed\n"  # HEAD, not the edit
    assert f"{top}/project/untracked.txt" not in names
    assert f"{top}/project/kit/run.py" in names
    assert contents[f"{top}/project/tool.sh:info"].mode == 0o755
    assert contents[f"{top}/run.sh:info"].mode == 0o755
    assert sorted(n for n in names if "/wheels/" in n) == [
        f"{top}/wheels/keras-3.15.1-py3-none-any.whl",
        f"{top}/wheels/rich-15.0.0-py3-none-any.whl"]
    assert {n.rsplit("/", 1)[1] for n in names if "/data/" in n} == set(bundle.DATA_FILES)

    manifest = json.loads(contents[f"{top}/{bundle.MANIFEST}"])
    assert manifest["format"] == bundle.FORMAT
    assert manifest["project"]["files_from"] == "commit"
    assert manifest["project"]["modified_in_worktree"] == []
    assert [(w["name"], w["when"]) for w in manifest["wheels"]] == [
        ("keras", "always"), ("rich", "if-missing")]
    # Every file but the manifest and the sums file is in the manifest, with its sha256.
    files = {n.removeprefix(f"{top}/") for n in names} - {bundle.MANIFEST, bundle.SUMS}
    assert set(manifest["files"]) == files
    for name, entry in manifest["files"].items():
        content = contents[f"{top}/{name}"]
        assert entry == {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    sums = dict(line.split("  ")[::-1] for line in
                contents[f"{top}/{bundle.SUMS}"].decode().splitlines())
    assert sums[bundle.MANIFEST] == hashlib.sha256(
        contents[f"{top}/{bundle.MANIFEST}"]).hexdigest()
    assert len(sums) == len(files) + 1


@needs_git
def test_the_worktree_option_carries_edits_and_lists_them(
        tmp_path, source_repo, wheel_dir, pins, data_dir):
    out = tmp_path / "kit.tar.gz"
    build.build(build_args("--out", str(out), "--worktree", "--no-wheels",
                           "--data-dir", str(data_dir)), repo=source_repo)
    contents = read_bundle(out)
    assert contents[f"{bundle.TOP}/project/README.md"] == b"edited, not committed\n"
    assert f"{bundle.TOP}/project/untracked.txt" not in contents
    manifest = json.loads(contents[f"{bundle.TOP}/{bundle.MANIFEST}"])
    assert manifest["project"]["modified_in_worktree"] == ["README.md"]
    assert manifest["wheels"] == []


@needs_git
def test_the_same_inputs_build_the_same_bytes(tmp_path, source_repo, wheel_dir, pins, data_dir):
    paths = [tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"]
    for path in paths:
        if path != paths[0]:
            time.sleep(1.1)  # a file time that leaked into the archive would now differ
        build.build(build_args("--out", str(path), "--wheels-from", str(wheel_dir),
                               "--wheels", str(pins), "--data-dir", str(data_dir)),
                    repo=source_repo)
    assert paths[0].read_bytes() == paths[1].read_bytes()


@needs_git
def test_a_bundle_over_the_size_limit_is_refused_and_removed(
        tmp_path, source_repo, data_dir, capsys):
    out = tmp_path / "kit.tar.gz"
    (data_dir / bundle.DATA_FILES[0]).write_bytes(gzip.compress(os.urandom(200_000)))
    with pytest.raises(bundle.KitError) as error:
        build.build(build_args("--out", str(out), "--no-wheels", "--data-dir", str(data_dir),
                               "--max-mib", "0.1"), repo=source_repo)
    message = str(error.value)
    assert "over the 0.1 MiB limit" in message
    assert f"data/fashion-mnist/{bundle.DATA_FILES[0]}" in message  # the largest part named
    assert not out.exists()
    assert not out.with_name(out.name + ".partial").exists()


def test_a_missing_pinned_wheel_is_named(tmp_path, wheel_dir, pins):
    (wheel_dir / "rich-15.0.0-py3-none-any.whl").unlink()
    make_wheel(wheel_dir, "rich-15.0.0-cp311-cp311-manylinux_2_28_x86_64.whl")  # wrong Python
    with pytest.raises(bundle.KitError, match=r"no wheel for Python 3\.12 .*rich==15\.0\.0"):
        build.select_wheels(bundle.read_pins(pins), wheel_dir, "3.12")


def test_missing_data_is_named(data_dir):
    (data_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(bundle.KitError, match="t10k-labels-idx1-ubyte.gz is missing"):
        build.data_members(data_dir)


def test_build_prints_one_error_line_and_exits_2(tmp_path, capsys):
    status = build.main(["--out", str(tmp_path / "k.tar.gz"), "--no-wheels",
                         "--data-dir", str(tmp_path / "nowhere")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.fixture
def unpacked(tmp_path, source_repo, wheel_dir, pins, data_dir) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    out = tmp_path / "kit.tar.gz"
    build.build(build_args("--out", str(out), "--wheels-from", str(wheel_dir), "--wheels",
                           str(pins), "--data-dir", str(data_dir)), repo=source_repo)
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "box")
    return tmp_path / "box" / bundle.TOP


def test_an_unpacked_bundle_verifies_and_a_damaged_file_is_named(unpacked):
    manifest = bundle.read_manifest(unpacked)
    assert bundle.verify(unpacked, manifest) == []
    (unpacked / "project" / "README.md").write_text("changed\n")
    (unpacked / bundle.DATA / bundle.DATA_FILES[1]).unlink()
    assert bundle.verify(unpacked, manifest) == [
        f"{bundle.DATA}/{bundle.DATA_FILES[1]}: missing",
        "project/README.md: sha256 differs from the manifest (damaged in transit?)"]


def test_the_dry_run_prints_offline_install_and_each_backends_command(unpacked, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(unpacked / "project" / "kit" / "run.py"), str(out), "--dry-run",
         "--device", "cpu", "--matrix", "tiny", "--data", "synthetic", "--backends",
         "torch,jax", "--wheels", "all", "-k", "train", "--budget", "300", "--",
         "--bench-batch", "64"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    install = next(line for line in lines if line.startswith("dry run: install: "))
    for flag in ("-m pip install", "--no-index", "--no-deps", "--target",
                 "PIP_NO_INDEX=1", f"PIP_CONFIG_FILE={os.devnull}"):
        assert flag in install
    assert str(unpacked / "wheels" / "keras-3.15.1-py3-none-any.whl") in install
    assert str(unpacked / "wheels" / "rich-15.0.0-py3-none-any.whl") in install  # --wheels all
    runs = [line for line in lines if line.startswith("---- ") and "KERAS_BACKEND=" in line]
    assert [line.split(":", 1)[0] for line in runs] == ["---- jax", "---- torch"]  # fixed order
    expected = (f"-m pytest bench --benchmark-only --bench-device cpu --bench-matrix tiny "
                f"--bench-results {out / 'results'} -k train --bench-data synthetic "
                f"--bench-batch 64")
    assert all(expected in line for line in runs)
    assert "KERAS_BACKEND=jax " in runs[0] and "time limit 120 s" in runs[0]  # (300-60)/2
    assert f"PYTHONPATH={unpacked / 'site'}{os.pathsep}{unpacked / 'project'}" in lines
    report = next(line for line in lines if line.startswith("---- report: "))
    assert f"-m bench.report {out / 'results'} --out {out / 'report'}" in report
    # Synthetic data: the report is asked whether it takes --include-synthetic (it does).
    assert report.endswith(" --include-synthetic")
    assert not out.exists()  # a dry run writes nothing


def test_the_report_is_asked_for_its_options_not_read_from_a_path(tmp_path):
    project = tmp_path / "project"
    (project / "bench" / "report").mkdir(parents=True)
    (project / "bench" / "__init__.py").write_text("")
    (project / "bench" / "report" / "__init__.py").write_text("")
    main = project / "bench" / "report" / "__main__.py"
    main.write_text("print('usage: [--out DIR] [--include-synthetic] [--no-html]')\n")
    env = dict(os.environ, PYTHONPATH=str(project))
    options = kit_backends.report_options(sys.executable, env, project)
    assert {"--out", "--include-synthetic", "--no-html"} <= options
    args = kit_run.parse_args(["out", "--data", "synthetic"])
    assert kit_backends.report_command(args, tmp_path / "r", tmp_path / "o", options)[-1] == \
        "--include-synthetic"
    main.write_text("print('usage: [--out DIR]')\n")  # an older report: not passed
    older = kit_backends.report_options(sys.executable, env, project)
    assert "--include-synthetic" not in kit_backends.report_command(args, tmp_path / "r",
                                                               tmp_path / "o", older)
    main.write_text("raise SystemExit(3)\n")  # a report that cannot answer: nothing assumed
    assert kit_backends.report_options(sys.executable, env, project) == set()


def test_unknown_backends_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        kit_run.parse_args(["out", "--backends", "jax,mxnet"])
    assert exit_info.value.code == 2
    assert "--backends 'jax,mxnet'" in capsys.readouterr().err


def test_pip_runs_with_its_config_and_indexes_off():
    env = kit_install.offline_pip_env({"PATH": "/bin", "PIP_INDEX_URL": "https://example.org",
                                   "PIP_EXTRA_INDEX_URL": "x", "PIP_FIND_LINKS": "/opt"})
    assert env == {"PATH": "/bin", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
                   "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def test_only_missing_distributions_are_installed_besides_the_always_ones(tmp_path):
    manifest = {"wheels": [
        {"path": "wheels/keras.whl", "name": "keras", "version": "3.15.1", "when": "always"},
        {"path": "wheels/rich.whl", "name": "rich", "version": "15.0.0", "when": "if-missing"},
        {"path": "wheels/mdurl.whl", "name": "mdurl", "version": "0.1.2", "when": "if-missing"},
    ]}
    installed = {"keras": "3.10.0", "rich": "13.0.0", "mdurl": None}
    chosen, notes = kit_install.wheels_to_install(manifest, tmp_path, "needed", installed)
    assert chosen == [tmp_path / "wheels/keras.whl", tmp_path / "wheels/mdurl.whl"]
    assert notes == ["rich: the box's 13.0.0 kept (bundle has 15.0.0, installed only where "
                     "missing)"]
    assert kit_install.wheels_to_install(manifest, tmp_path, "none", installed)[0] == []
    assert len(kit_install.wheels_to_install(manifest, tmp_path, "all", installed)[0]) == 3


def test_each_backend_gets_its_share_of_what_is_left():
    args = kit_run.parse_args(["out", "--budget", "540"])
    now = 1000.0
    deadline = now + 540
    assert kit_backends.backend_timeout(args, deadline, now, 3) == pytest.approx(160)
    assert kit_backends.backend_timeout(args, deadline, now + 400, 1) == pytest.approx(80)
    assert kit_backends.backend_timeout(args, deadline, now + 500, 1) == 0
    capped = kit_run.parse_args(["out", "--budget", "0", "--backend-timeout", "90"])
    assert kit_backends.backend_timeout(capped, None, now, 2) == 90
    assert kit_backends.backend_timeout(kit_run.parse_args(["out", "--budget", "0"]), None, now,
                                   2) is None


@pytest.mark.parametrize("exit_code, timed_out, files, ran, status", [
    (0, False, [(3, 0)], True, "ok"),
    (1, False, [(2, 1)], True, "ran; 1 cases failed (recorded in the result file)"),
    (1, False, [(0, 2)], False, "every case failed (2; the report lists why)"),
    (0, False, [], False, "ok; but no result file was written"),
    (5, False, [], False, "no cases selected"),
    (4, False, [], False, "error (pytest exit status 4)"),
    (2, True, [(1, 0)], False, "timed out after 60 s (interrupted; 1 result files kept)"),
])
def test_a_backend_counts_as_run_only_when_it_finished_and_timed_something(
        tmp_path, exit_code, timed_out, files, ran, status):
    paths = []
    for number, (rows, failures) in enumerate(files, 1):
        paths.append(tmp_path / f"{number:04d}_20261127-100000.json")
        paths[-1].write_text(json.dumps({"benchmarks": [{}] * rows,
                                         "fashion_bench_failures": [{}] * failures}))
    item = kit_backends.BackendRun("jax", [], exit_code=exit_code, timeout_s=60)
    kit_backends.describe(item, timed_out, paths, False)
    assert (item.ran, item.status) == (ran, status)


def test_a_run_past_its_time_is_interrupted(tmp_path):
    log = kit_steps.Log(tmp_path / "log")
    start = time.monotonic()
    code, timed_out, _ = kit_backends.run_streamed(
        [sys.executable, "-c", "print('started', flush=True); import time; time.sleep(60)"],
        dict(os.environ), tmp_path, log, timeout=2)
    log.close()
    assert timed_out and code != 0
    assert time.monotonic() - start < 30
    text = (tmp_path / "log").read_text()
    assert "started" in text and "past its 2 s: interrupting (SIGINT)" in text


def test_wheels_unpack_without_pip(tmp_path):
    wheel = make_wheel(tmp_path, "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "VALUE = 1\n", "demo-1.0.dist-info/METADATA": "Name: demo\n",
        "demo-1.0.data/purelib/demo_extra.py": "", "demo-1.0.data/scripts/demo": ""})
    site = tmp_path / "site"
    kit_install.prepare_site(site)
    kit_install.unzip_wheels([wheel], site)
    assert (site / "demo" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (site / "demo_extra.py").is_file()  # a .data/purelib part goes to the top
    assert not (site / "demo-1.0.data").exists()  # and scripts are left out
    assert (site / "demo-1.0.dist-info" / "METADATA").is_file()


def test_the_site_folder_is_emptied_only_if_the_kit_made_it(tmp_path):
    site = tmp_path / "site"
    kit_install.prepare_site(site)
    (site / "old.py").write_text("")
    kit_install.prepare_site(site)
    assert not (site / "old.py").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("")
    with pytest.raises(bundle.KitError, match="was not made by the kit"):
        kit_install.prepare_site(foreign)
    assert (foreign / "precious.txt").exists()


def test_the_pack_holds_the_run_and_not_itself(tmp_path):
    out = tmp_path / "out"
    (out / "results" / "m1").mkdir(parents=True)
    (out / "results" / "m1" / "0001_20261127-100000.json").write_text("{}")
    (out / "kit.log").write_text("log\n")
    target = out / "run.tar.gz"
    kit_steps.pack(out, target, kit_steps.Log(None))
    with tarfile.open(target) as tar:
        assert sorted(tar.getnames()) == ["out", "out/kit.log", "out/results",
                                          "out/results/m1",
                                          "out/results/m1/0001_20261127-100000.json"]


def write_pack(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return path


def test_collect_files_results_under_their_machine_without_overwriting(tmp_path, capsys):
    results = tmp_path / "results"
    (results / "gpu-box").mkdir(parents=True)
    (results / "gpu-box" / "0001_20261101-000000.json").write_text('{"old": 1}')
    pack = write_pack(tmp_path / "run.tar.gz", {
        "out/results/gpu-box/0001_20261127-100000.json": '{"new": 1}',
        "out/results/gpu-box/0002_20261127-110000.json": '{"new": 2}',
        "out/results/synthetic/gpu-box/0001_20261127-120000.json": '{"synthetic": 1}',
        "out/summary.json": "{}", "out/report/report.csv": ""})
    assert collect.main([str(pack), "--results", str(results)]) == 0
    assert sorted(str(p.relative_to(results)) for p in results.rglob("*.json")) == [
        "gpu-box/0001_20261101-000000.json", "gpu-box/0002_20261127-100000.json",
        "gpu-box/0003_20261127-110000.json", "synthetic/gpu-box/0001_20261127-120000.json"]
    assert (results / "gpu-box" / "0002_20261127-100000.json").read_text() == '{"new": 1}'
    capsys.readouterr()
    assert collect.main([str(pack), "--results", str(results)]) == 0  # again: nothing new
    assert "0 result files added" in capsys.readouterr().out
    assert len(list(results.rglob("*.json"))) == 4


def test_collect_names_a_pack_without_results(tmp_path, capsys):
    pack = write_pack(tmp_path / "run.tar.gz", {"out/kit.log": "x"})
    assert collect.main([str(pack), "--results", str(tmp_path / "results")]) == 2
    assert "no result files" in capsys.readouterr().err


def test_collect_dry_run_adds_nothing_and_says_where_files_would_go(tmp_path, capsys):
    pack = write_pack(tmp_path / "run.tar.gz", {
        "out/results/gpu-box/0001_20261127-100000.json": '{"new": 1}',
        "out/results/gpu-box/0002_20261127-110000.json": '{"new": 2}'})
    results = tmp_path / "results"
    assert collect.main([str(pack), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would add {results / 'gpu-box' / '0001_20261127-100000.json'}" in out
    assert f"would add {results / 'gpu-box' / '0002_20261127-110000.json'}" in out
    assert not results.exists()


# A stand-in harness for a run end to end in seconds: bench/conftest.py takes the
# options the kit passes and writes one result file a session; the benchmark imports
# the package the kit installed from its wheel; bench/report.py writes REPORT.md and, asked
# for its --help, names --include-synthetic.
FAKE_HARNESS = {
    "bench/__init__.py": "",
    "bench/conftest.py": """\
import json, os
from pathlib import Path

def pytest_addoption(parser):
    for name in ("--bench-device", "--bench-matrix", "--bench-results", "--bench-data"):
        parser.addoption(name)

def pytest_sessionfinish(session):
    folder = Path(session.config.getoption("--bench-results")) / "fake-machine"
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.glob("*.json"))) + 1
    (folder / f"{number:04d}_20261127-10000{number}.json").write_text(json.dumps({
        "backend": os.environ["KERAS_BACKEND"],
        "data": os.environ.get("FASHION_MNIST_DIR"),
        "device": session.config.getoption("--bench-device"),
        "commit": os.environ.get("FASHION_BENCH_COMMIT")}))
""",
    "bench/test_fake.py": """\
def test_fake(benchmark):
    import fakepkg
    assert benchmark(lambda: fakepkg.VALUE) == 42
""",
    "bench/report.py": """\
import sys
from pathlib import Path

args = sys.argv[1:]
if "--help" in args:
    print("usage: report [--out DIR] [--include-synthetic]")
    sys.exit(0)
out = Path(args[args.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
runs = sorted(Path(args[0]).rglob("*.json"))
(out / "REPORT.md").write_text(f"{len(runs)} runs\\n")
print(f"report over {len(runs)} runs")
""",
}


def make_real_wheel(folder: Path) -> Path:
    """A minimal wheel that pip installs: fakepkg 1.0, pure Python."""
    info = "fakepkg-1.0.dist-info"
    return make_wheel(folder, "fakepkg-1.0-py3-none-any.whl", {
        "fakepkg/__init__.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{info}/RECORD": f"fakepkg/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n"
                          f"{info}/RECORD,,\n"})


@needs_git
def test_the_kit_installs_offline_runs_each_backend_and_packs_the_run(
        tmp_path, source_repo, data_dir):
    for name, text in FAKE_HARNESS.items():
        (source_repo / name).parent.mkdir(parents=True, exist_ok=True)
        (source_repo / name).write_text(text)
    git(source_repo, "add", "bench")
    git(source_repo, "commit", "-q", "-m", "harness")
    pins = tmp_path / "fake-pins.txt"
    pins.write_text("fakepkg==1.0 always\n")
    wheels = tmp_path / "real-wheels"
    make_real_wheel(wheels)
    kit = tmp_path / "kit.tar.gz"
    build.build(build_args("--out", str(kit), "--wheels-from", str(wheels), "--wheels",
                           str(pins), "--data-dir", str(data_dir),
                           "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}"),
                repo=source_repo)
    with tarfile.open(kit) as tar:
        tar.extractall(tmp_path / "box")
    root = tmp_path / "box" / bundle.TOP
    out, packed = tmp_path / "out", tmp_path / "run.tar.gz"
    # An index that cannot answer: the install must not need one.
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PYTHON=sys.executable)
    command = ["sh", str(root / "run.sh"), str(out), "--device", "cpu", "--matrix", "tiny",
               "--pack", str(packed)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 0
    ran = [item for item in summary["backends"] if item["exit_code"] is not None]
    assert ran and all(item["status"] == "ok" and item["ran"] for item in ran)
    results = sorted((out / "results" / "fake-machine").glob("*.json"))
    assert len(results) == len(ran)
    first = json.loads(results[0].read_text())
    assert first["data"] == str(root / bundle.DATA) and first["device"] == "cpu"
    # The bundle has no .git: the runs are told the commit its files came from.
    assert first["commit"] == git(source_repo, "rev-parse", "HEAD").strip()
    assert (out / "report" / "REPORT.md").read_text() == f"{len(ran)} runs\n"
    assert (root / "site" / "fakepkg" / "__init__.py").is_file()
    log = (out / "kit.log").read_text()
    assert "checked" in log and "against their sha256" in log
    with tarfile.open(packed) as tar:
        names = tar.getnames()
    assert "out/summary.json" in names and "out/report/REPORT.md" in names

    # A backend that cannot run (here: pytest refuses an option) makes the exit status 1,
    # and the others still run; results of the first run stay and are reported again.
    done = subprocess.run(command[:5] + ["--", "--no-such-option"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert all(item["status"] == "error (pytest exit status 4)" for item in summary["backends"]
               if item["exit_code"] is not None)
    assert "not every backend ran" in done.stdout


@needs_git
def test_a_damaged_bundle_stops_the_run_before_anything_runs(unpacked, tmp_path):
    (unpacked / bundle.WHEELS / "keras-3.15.1-py3-none-any.whl").write_bytes(b"truncated")
    done = subprocess.run(
        [sys.executable, str(unpacked / "project" / "kit" / "run.py"), str(tmp_path / "out"),
         "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert ("error: 1 files of the bundle do not match MANIFEST.json: "
            "wheels/keras-3.15.1-py3-none-any.whl: sha256 differs") in done.stdout
    assert not (tmp_path / "out" / "results").exists()
