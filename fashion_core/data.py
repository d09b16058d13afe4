"""Find, verify and parse Fashion-MNIST's IDX files (numpy only), and make synthetic data.

Look-up order (the first that applies wins):

1. an explicit ``path`` argument, else the ``FASHION_MNIST_DIR`` environment variable.
   A folder named this way is authoritative: if its files are missing or bad, that is
   the error, never a silent fall-back to another copy;
2. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package);
3. ``~/.keras/datasets/fashion-mnist`` (the Keras cache);
4. Keras's own download (``keras.datasets.fashion_mnist``), only when ``download=True``.

The checksum is the sha256 of the *decompressed* IDX bytes: Debian recompressed the
files, so the .gz bytes differ from the published ones while their content does not.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

ENV_VAR = "FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name, what it holds and its published content hash."""

    name: str
    kind: str  # "images" or "labels"
    count: int
    sha256: str  # of the decompressed bytes


FILES = {
    "train_images": IdxFile("train-images-idx3-ubyte.gz", "images", TRAIN_SIZE,
                            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": IdxFile("train-labels-idx1-ubyte.gz", "labels", TRAIN_SIZE,
                            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": IdxFile("t10k-images-idx3-ubyte.gz", "images", TEST_SIZE,
                           "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte.gz", "labels", TEST_SIZE,
                           "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

# IDX magic: two zero bytes, the element type (0x08 = uint8), the number of dimensions.
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}


class DataError(ValueError):
    """The dataset could not be found or a file of it is not what it should be."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Fashion-MNIST as uint8 arrays, shaped as the tutorial's ``load_data()``."""

    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8
    source: str  # where it came from: a folder, "keras-download" or "synthetic"

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES


def parse_idx(raw: bytes, kind: str, name: str = "<bytes>") -> np.ndarray:
    """Parse decompressed IDX bytes of ``kind`` ("images" or "labels") into a uint8 array."""
    if kind not in _MAGIC:
        raise ValueError(f"kind must be 'images' or 'labels', not {kind!r}")
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: {len(raw)} bytes is too short for an IDX {kind} header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _MAGIC[kind]:
        raise DataError(
            f"{name}: magic number 0x{magic:08x}, expected 0x{_MAGIC[kind]:08x} "
            f"(IDX uint8 {kind}); is this the right file?")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if kind == "images" and dims[1:] != IMAGE_SHAPE:
        raise DataError(f"{name}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{name}: header says {'x'.join(map(str, dims))} ({expected} bytes in all) "
            f"but the file holds {len(raw)} bytes; it is truncated or padded")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and array.size and array.max() >= NUM_CLASSES:
        bad = int(np.argmax(array >= NUM_CLASSES))
        raise DataError(f"{name}: label {int(array[bad])} at index {bad} is outside 0-9")
    return array


def read_idx_gz(path: Path, spec: IdxFile, verify: bool = True) -> np.ndarray:
    """Decompress, checksum and parse one file; every failure names the file."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except gzip.BadGzipFile as e:
        raise DataError(f"{path}: not a gzip file ({e}); re-download or reinstall it") from None
    except (EOFError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip data ({e}); re-download it") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        message = (f"{path}: sha256 of the decompressed content is {digest[:16]}..., "
                   f"expected {spec.sha256[:16]}... (the published Fashion-MNIST)")
        if verify:
            raise DataError(message + "; replace the file, or pass verify=False "
                            "(--no-verify) to use it anyway")
        warnings.warn(message + "; used anyway because verification is off", stacklevel=3)
    array = parse_idx(raw, spec.kind, str(path))
    if verify and array.shape[0] != spec.count:
        raise DataError(f"{path}: {array.shape[0]} {spec.kind}, expected {spec.count}")
    return array


def load_from_dir(folder: Path | str, verify: bool = True) -> Dataset:
    """Load the four files from ``folder``; raise DataError naming the first bad one."""
    folder = Path(folder).expanduser()
    missing = [s.name for s in FILES.values() if not (folder / s.name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}")
    arrays = {key: read_idx_gz(folder / spec.name, spec, verify) for key, spec in FILES.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"{folder}: {split} set has {n_img} images but {n_lab} labels")
    return Dataset(arrays["train_images"], arrays["train_labels"],
                   arrays["test_images"], arrays["test_labels"], source=str(folder))


def candidate_dirs(path: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The folders looked in, in order, each with why it is on the list."""
    if path is not None:
        return [("the path given", Path(path).expanduser())]
    if os.environ.get(ENV_VAR):
        return [(f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser())]
    return [("Debian's dataset-fashion-mnist", DEBIAN_DIR),
            ("the Keras cache", KERAS_CACHE_DIR.expanduser())]


def load(path: str | os.PathLike | None = None, *, verify: bool = True,
         download: bool = False) -> Dataset:
    """Load Fashion-MNIST from the first place that has it (see the module docstring).

    ``verify=False`` accepts files whose content hash differs (with a warning).
    ``download=True`` lets Keras fetch the files when no local copy exists.
    """
    places = candidate_dirs(path)
    explicit = path is not None or bool(os.environ.get(ENV_VAR))
    for _, folder in places:
        if explicit:
            return load_from_dir(folder, verify)  # authoritative: its error is the error
        if all((folder / s.name).is_file() for s in FILES.values()):
            return load_from_dir(folder, verify)
    if download:
        return _keras_download()
    looked = "; ".join(f"{folder} ({why})" for why, folder in places)
    raise DataError(
        f"Fashion-MNIST not found. Looked in: {looked}. Fix: `apt-get install "
        f"dataset-fashion-mnist`, or set {ENV_VAR} (or --data-dir) to a folder holding "
        f"{', '.join(s.name for s in FILES.values())}, or allow the Keras download (--download).")


def _keras_download() -> Dataset:  # pragma: no cover - needs the network
    from keras.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist.load_data()
    return Dataset(x, y, xt, yt, source="keras-download")


def synthetic(train_size: int = 512, test_size: int = 128, seed: int = 0) -> Dataset:
    """Random data shaped like Fashion-MNIST, learnable: each class has its own mean image.

    For tests: a few training steps on it lower the loss, and nothing is read from disk.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0, 255, size=(NUM_CLASSES, *IMAGE_SHAPE))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, NUM_CLASSES, size=n).astype(np.uint8)
        noise = rng.normal(0, 60, size=(n, *IMAGE_SHAPE))
        x = np.clip(prototypes[y] + noise, 0, 255).astype(np.uint8)
        return x, y

    x, y = make(train_size)
    xt, yt = make(test_size)
    return Dataset(x, y, xt, yt, source="synthetic")


def write_idx_gz(path: Path | str, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (tests use it to build fixture folders)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x00000800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())
