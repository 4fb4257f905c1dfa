"""Predictions on the user's own files: read inputs (.npy, .npz, .csv, text prompts) and write
predictions (.npy, .npz, .json, .csv). Used by ``graphc predict``; every problem is a DataError
naming the file (and, for CSV, the row).

An array whose rank differs from the input's but whose samples hold the right number of
values is reshaped to the declared shape: a flattened 8×8 image (a CSV row of 64 values) fills
an input declared [B, 1, 8, 8]. Label columns of a CSV with a header (``y``, ``label``,
``target``, ``class``) are left out, so a labelled file predicts as well as an unlabelled one.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .budget import Budget
from .data.files import check_npy, check_npz
from .errors import DataError

LABEL_COLUMNS = ("y", "label", "target", "class", "labels", "targets")
INPUT_SUFFIXES = (".npy", ".npz", ".csv", ".txt")
OUTPUT_SUFFIXES = (".npy", ".npz", ".json", ".csv")


def _readable(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    return path


def read_arrays(path: str | Path, inputs: dict) -> dict[str, np.ndarray]:
    """Arrays for the model's ``inputs`` (name → TensorSpec) from one file: an .npz holds
    them by name; an .npy or a .csv is the one input the model needs (when it needs one)."""
    path = _readable(Path(path))
    suffix = path.suffix.lower()
    if suffix == ".npz":
        check_npz(path, Budget.detect())
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: _finite(np.asarray(z[k]), f"{path} (array `{k}`)") for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"{path} is not a readable .npz file ({err})") from None
    if suffix not in (".npy", ".csv"):
        raise DataError(f"{path}: unknown input format `{suffix or path.name}`; use one of "
                        f"{', '.join(INPUT_SUFFIXES)}")
    if len(inputs) != 1:
        raise DataError(f"the outputs read {len(inputs)} inputs ({', '.join(inputs)}); give them in "
                        f"one .npz file with those names, or one file each: --input NAME=FILE")
    (name,) = inputs
    return {name: read_array(path)}


def read_array(path: str | Path) -> np.ndarray:
    """One array from an .npy or a numeric .csv (header optional, label columns dropped)."""
    path = _readable(Path(path))
    if path.suffix.lower() == ".npy":
        check_npy(path, Budget.detect())
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            why = "it holds pickled Python objects, which are never loaded" if "pickle" in str(err) else err
            raise DataError(f"{path} is not a readable .npy array ({why})") from None
        if not isinstance(array, np.ndarray):  # an .npz archive named .npy
            array.close()
            raise DataError(f"{path} holds a .npz archive, not a single .npy array")
        return _finite(array, str(path))
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    raise DataError(f"{path}: an input file must be .npy or .csv here (or .npz for several inputs)")


def _read_csv(path: Path) -> np.ndarray:
    try:
        rows = [r for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8"))) if r]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} as CSV text ({err})") from None
    if not rows:
        raise DataError(f"{path} is empty")
    keep = list(range(len(rows[0])))
    first = 0
    if not all(_is_number(c) for c in rows[0]):  # a header
        header = [c.strip().lower() for c in rows[0]]
        keep = [i for i, h in enumerate(header) if h not in LABEL_COLUMNS]
        first = 1
    values = []
    for line, r in enumerate(rows[first:], start=first + 1):
        if len(r) != len(rows[0]):
            raise DataError(f"{path}:{line}: {len(r)} columns, the first row has {len(rows[0])}")
        bad = next((r[i] for i in keep if not _is_number(r[i])), None)
        if bad is not None:
            raise DataError(f"{path}:{line}: `{bad.strip()}` is not a number")
        values.append([float(r[i]) for i in keep])
    if not values:
        raise DataError(f"{path} has a header but no rows")
    a = np.asarray(values, np.float64)
    if not np.all(np.isfinite(a)):
        line = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0]) + first + 1
        raise DataError(f"{path}:{line}: a value is NaN or infinite")
    return a


def _finite(a: np.ndarray, where: str) -> np.ndarray:
    """``a``, or a DataError naming the first sample with NaN or infinity (as for a CSV row):
    a prediction from it would be NaN, printed as if it were one."""
    if a.dtype.kind in "fc" and a.ndim and a.size:
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(a).reshape(len(a), -1).all(axis=1)
        if bad.any():
            raise DataError(f"{where}: sample {int(np.flatnonzero(bad)[0])} holds NaN or infinity "
                            f"({int(bad.sum())} of {len(a)} samples do)")
    return a


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def fit_shapes(arrays: dict[str, np.ndarray], inputs: dict) -> dict[str, np.ndarray]:
    """Reshape each array whose samples hold as many values as the input's fixed trailing dims
    ([N, 64] → [N, 1, 8, 8]); integral float data for int64 inputs becomes int64. Other
    mismatches are left for the feeder to report."""
    out = dict(arrays)
    for name, spec in inputs.items():
        a = out.get(name)
        if a is None:
            continue
        trailing = spec.shape[1:]
        if (a.ndim >= 1 and a.ndim != len(spec.shape) and all(isinstance(d, int) for d in trailing)
                and int(np.prod(a.shape[1:], dtype=np.int64)) == int(np.prod(trailing, dtype=np.int64))):
            a = a.reshape((a.shape[0], *trailing))
        if spec.dtype == "int64" and a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        out[name] = a
    return out


def read_prompts(path: str | Path) -> list[str]:
    """The non-empty lines of a text file (trailing newline characters removed)."""
    path = _readable(Path(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} as UTF-8 text ({err})") from None
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise DataError(f"{path} has no prompts (one per line)")
    return prompts


def write_output(path: str | Path, rows: list[dict], arrays: dict[str, np.ndarray], main: np.ndarray) -> None:
    """Write predictions: .npy the main array (classes, or the raw output), .npz every raw
    output, .json the rows, .csv the rows flattened (one line per sample)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise DataError(f"{path}: unknown output format `{suffix or path.name}`; use one of "
                        f"{', '.join(OUTPUT_SUFFIXES)}")
    if path.parent and not path.parent.exists():
        raise DataError(f"cannot write {path}: directory {path.parent} does not exist")
    try:
        if suffix == ".npy":
            np.save(path, main)
        elif suffix == ".npz":
            np.savez(path, **arrays)
        elif suffix == ".json":
            path.write_text(json.dumps(rows, indent=1) + "\n")
        else:
            _write_csv(path, rows)
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or err}") from None


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    flat = []
    for r in rows:
        f = {}
        for k, v in r.items():
            if isinstance(v, list):
                values = np.ravel(np.asarray(v, dtype=object))
                f |= {f"{k}_{i}": x for i, x in enumerate(values)}
            else:
                f[k] = v
        flat.append(f)
        columns += [c for c in f if c not in columns]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(flat)
