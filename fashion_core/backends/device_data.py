"""The dataset on a device: one copy per device and framework, shared by every trainer.

Each backend's Trainer asks :func:`shared_device_data` for the dataset's arrays on its
device; the first trainer there uploads them, the rest reuse them. Framework-free: the
backend passes the upload.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from fashion_core.data import Dataset

# (id of a Dataset, "backend:device") -> that dataset's arrays on that device.
_DEVICE_DATA: dict[tuple[int, str], dict] = {}


def shared_device_data(dataset: Dataset, where: str,
                       upload: Callable[[Dataset], dict]) -> dict:
    """The dataset's arrays on one device, uploaded once per process and shared.

    ``where`` names the device and framework ("tensorflow:gpu:0"); ``upload(dataset)``
    returns what lives on it (a dict of the framework's arrays) and is called only the
    first time a dataset is asked for there. Every trainer on that device then reads the
    same arrays, so ten trainers of a benchmark matrix hold one 47 MB copy of
    Fashion-MNIST, not ten. The copy is dropped when the Dataset object itself is
    garbage-collected (trainers keep a reference to it while they live).
    """
    key = (id(dataset), where)
    if key not in _DEVICE_DATA:
        if not any(k[0] == id(dataset) for k in _DEVICE_DATA):
            # ids are reused after an object dies: forget its entries when it does.
            weakref.finalize(dataset, _forget_dataset, id(dataset))
        _DEVICE_DATA[key] = upload(dataset)
    return _DEVICE_DATA[key]


def _forget_dataset(dataset_id: int) -> None:
    for key in [k for k in _DEVICE_DATA if k[0] == dataset_id]:
        del _DEVICE_DATA[key]


def shared_device_data_keys() -> list[tuple[int, str]]:
    """What :func:`shared_device_data` holds now: (dataset id, "backend:device") pairs."""
    return list(_DEVICE_DATA)
