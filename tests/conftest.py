"""Shared fixtures: tiny synthetic data, IDX folders written by the tests themselves."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist a worker's PYTEST_XDIST_* variables would reach the bench sessions that
# tests start in subprocesses, where pytest-benchmark reads them as "xdist is on" and turns
# timing off. The worker itself keeps its identity in its config, not in these.
for _name in [n for n in os.environ if n.startswith("PYTEST_XDIST_")]:
    del os.environ[_name]

# The report's results index (bench.report.index) of this test process: its own, never the
# user's cache, and one per xdist worker (one process writes an index at a time).
os.environ["FASHION_BENCH_INDEX"] = os.path.join(tempfile.mkdtemp(prefix="fashion-bench-index-"),
                                                 "results.duckdb")

import pytest

from fashion_core import data

DEBIAN_HAS_DATA = all((data.DEBIAN_DIR / spec.name).is_file() for spec in data.FILES.values())
needs_real_data = pytest.mark.skipif(
    not DEBIAN_HAS_DATA, reason="Debian's dataset-fashion-mnist is not installed")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow: whole benchmark sessions in "
                          "subprocesses, exhaustive variants (tox -e slow runs just those)")


def pytest_collection_modifyitems(config, items):
    """Tests marked tensorflow_only are skipped, with the reason, under another backend;
    tests marked slow are skipped, with the reason, unless --slow is given."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    not_tf = pytest.mark.skip(reason=f"needs the TensorFlow backend, not {backend}")
    slow = pytest.mark.skip(reason="slow: runs with --slow (tox -e slow)")
    run_slow = config.getoption("--slow")
    for item in items:
        if backend != "tensorflow" and item.get_closest_marker("tensorflow_only"):
            item.add_marker(not_tf)
        if not run_slow and item.get_closest_marker("slow"):
            item.add_marker(slow)


@pytest.fixture(scope="session")
def tiny() -> data.Dataset:
    """300 training and 100 test images, learnable; 300 is no multiple of common batches."""
    return data.synthetic(train_size=300, test_size=100, seed=1)


def write_dataset(folder: Path, dataset: data.Dataset) -> Path:
    """Write ``dataset`` as the four gzipped IDX files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": dataset.x_train, "train_labels": dataset.y_train,
              "test_images": dataset.x_test, "test_labels": dataset.y_test}
    for key, spec in data.FILES.items():
        data.write_idx_gz(folder / spec.name, arrays[key])
    return folder


@pytest.fixture
def tiny_dir(tmp_path, tiny) -> Path:
    return write_dataset(tmp_path / "fashion", tiny)


@pytest.fixture
def no_default_dirs(monkeypatch, tmp_path):
    """Point every default place at empty folders and unset FASHION_MNIST_DIR."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian-empty")
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", tmp_path / "keras-empty")
