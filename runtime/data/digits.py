"""The UCI 8x8 handwritten digits (1797 images), shipped as ``digits.csv.gz``.

Yields ``x`` [N,1,8,8] float32 in [0,1] (pixel counts 0..16 divided by 16) and ``y`` [N]
int64 (0..9); with ``flatten: true``, ``x`` is [N,64]. The train/test split is stratified by
class and fixed by the data seed (default 0), not by the training seed: ``test_fraction``
(default 0.2) of every class is held out (rounded): 1438 training and 359 test images.
See DIGITS-LICENSE.md for the source and license.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..config import as_number, check_keys
from ..errors import DataError
from .base import ArrayLoader, DataBundle, Dataset, split_dataset

DIGITS_FILE = Path(__file__).with_name("digits.csv.gz")


def load_digits_arrays(path: Path = DIGITS_FILE) -> tuple[np.ndarray, np.ndarray]:
    """(images [1797,8,8] float32 in 0..16, labels [1797] int64)."""
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"cannot read the digits data set {path}: {err}") from None
    if table.ndim != 2 or table.shape[1] != 65:
        raise DataError(f"{path}: expected 65 columns (64 pixels + label), got {table.shape}")
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)


def build_digits(spec: dict, *, batch: int, seed: int) -> DataBundle:
    check_keys(spec, ["dataset", "test_fraction", "flatten", "seed"], "train.data (digits)")
    fraction = as_number(spec.get("test_fraction", 0.2), "train.data.test_fraction")
    data_seed = as_number(spec.get("seed", 0), "train.data.seed", kind=int, minimum=0)
    images, labels = load_digits_arrays()
    x = images / 16.0
    x = x.reshape(len(x), 64) if spec.get("flatten") else x[:, None, :, :]
    full = Dataset({"x": x.astype(np.float32), "y": labels}, source="digits")
    train, test = split_dataset(full, fraction, data_seed, stratify="y")
    info = {
        "kind": "classification",
        "dataset": "digits",
        "classes": 10,
        "train_size": len(train),
        "val_size": len(test) if test else 0,
    }
    return DataBundle(ArrayLoader(train, batch, seed), test, info)
