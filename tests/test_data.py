"""IDX parsing, verification and look-up, on files the tests write themselves."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from fashion_core import data
from tests.conftest import needs_real_data, write_dataset

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not


def test_roundtrip_shapes_and_values(tiny_dir, tiny):
    with pytest.warns(UserWarning, match="used anyway"):
        loaded = data.load_from_dir(tiny_dir, verify=False)
    assert loaded.x_train.shape == (300, 28, 28) and loaded.x_train.dtype == np.uint8
    assert loaded.y_test.shape == (100,)
    np.testing.assert_array_equal(loaded.x_train, tiny.x_train)
    np.testing.assert_array_equal(loaded.y_test, tiny.y_test)
    assert loaded.source == str(tiny_dir)
    assert len(loaded.class_names) == 10


def test_checksum_mismatch_is_refused_by_default(tiny_dir):
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: sha256.*--no-verify"):
        data.load_from_dir(tiny_dir)


def test_missing_file_is_named(tiny_dir):
    (tiny_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="missing t10k-labels-idx1-ubyte.gz"):
        data.load_from_dir(tiny_dir, verify=False)


def test_truncated_gzip(tiny_dir):
    path = tiny_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: truncated"):
        data.load_from_dir(tiny_dir, verify=False)


def test_not_gzip(tiny_dir):
    (tiny_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"this is plain text, not gzip")
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte.gz: not a gzip file"):
        data.load_from_dir(tiny_dir, verify=False)


def _rewrite(path, raw: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(raw)


def test_wrong_magic(tiny_dir):
    path = tiny_dir / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.open(path).read())
    raw[3] = 0x01  # the labels' magic in an images file
    _rewrite(path, bytes(raw))
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: magic number"):
        data.load_from_dir(tiny_dir, verify=False)


def test_wrong_dimensions(tiny_dir):
    data.write_idx_gz(tiny_dir / "t10k-images-idx3-ubyte.gz", np.zeros((100, 27, 28), np.uint8))
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte.gz: images are 27x28"):
        data.load_from_dir(tiny_dir, verify=False)


def test_size_disagrees_with_header(tiny_dir):
    path = tiny_dir / "train-labels-idx1-ubyte.gz"
    _rewrite(path, gzip.open(path).read() + b"\x00\x01")
    with pytest.raises(data.DataError, match="truncated or padded"):
        data.load_from_dir(tiny_dir, verify=False)


def test_counts_differ(tiny_dir):
    data.write_idx_gz(tiny_dir / "train-labels-idx1-ubyte.gz", np.zeros(299, np.uint8))
    with pytest.raises(data.DataError, match="train set has 300 images but 299 labels"):
        data.load_from_dir(tiny_dir, verify=False)


def test_label_out_of_range(tiny_dir):
    labels = np.zeros(100, np.uint8)
    labels[42] = 10
    data.write_idx_gz(tiny_dir / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(data.DataError, match="label 10 at index 42 is outside 0-9"):
        data.load_from_dir(tiny_dir, verify=False)


def test_explicit_folder_is_authoritative(tmp_path, monkeypatch, tiny):
    """A bad folder named by the user is the error, even when a good copy exists elsewhere."""
    good = write_dataset(tmp_path / "good", tiny)
    monkeypatch.setattr(data, "DEBIAN_DIR", good)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "named-but-empty"))
    with pytest.raises(data.DataError, match="named-but-empty: missing"):
        data.load(verify=False)
    with pytest.raises(data.DataError, match="also-empty: missing"):
        data.load(tmp_path / "also-empty", verify=False)


def test_default_order_finds_debian_then_keras_cache(no_default_dirs, tmp_path, tiny):
    write_dataset(tmp_path / "keras-empty", tiny)
    with pytest.warns(UserWarning):
        assert data.load(verify=False).source == str(tmp_path / "keras-empty")
    write_dataset(tmp_path / "debian-empty", tiny)
    with pytest.warns(UserWarning):
        assert data.load(verify=False).source == str(tmp_path / "debian-empty")


def test_nothing_found_lists_every_place_and_fixes(no_default_dirs, tmp_path):
    with pytest.raises(data.DataError) as info:
        data.load()
    message = str(info.value)
    assert str(tmp_path / "debian-empty") in message and str(tmp_path / "keras-empty") in message
    assert "apt-get install dataset-fashion-mnist" in message and data.ENV_VAR in message


def test_synthetic_is_shaped_like_the_real_thing():
    ds = data.synthetic(64, 32, seed=3)
    assert ds.x_train.shape == (64, 28, 28) and ds.y_train.shape == (64,)
    assert ds.x_train.dtype == np.uint8 and set(np.unique(ds.y_train)) <= set(range(10))
    np.testing.assert_array_equal(ds.x_train, data.synthetic(64, 32, seed=3).x_train)


@needs_real_data
def test_real_dataset_matches_the_tutorial(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    ds = data.load()
    assert ds.x_train.shape == (60000, 28, 28) and ds.y_train.shape == (60000,)
    assert ds.x_test.shape == (10000, 28, 28) and ds.y_test.shape == (10000,)
    assert ds.y_train[:5].tolist() == [9, 0, 0, 3, 0]  # as the tutorial prints
