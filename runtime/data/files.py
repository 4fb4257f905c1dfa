"""User data files: ``.npz``, ``.npy``, ``.csv`` and plain ``.txt``.

``train.data`` keys::

    file: data.npz          # or {x: images.npy, y: labels.npy}: one .npy per field
    val_file: val.npz       # optional held-out file of the same form; else val_fraction
    val_fraction: 0.1       # share held out (stratified by `y` when it is 1-D integer)
    fields: [x, y]          # .npz: the arrays to keep (default: all)
    x: [a, b]  y: label     # .csv: feature columns -> x [N,F] float32, label column -> y
    block: 64               # .txt: context length T
    encoding: chars         # .txt: `chars` (vocabulary = sorted distinct characters) or `bytes`
    seed: 0                 # data seed for the split

What each format yields:

* ``.npz`` — one field per array, named by its key. ``.npy`` — a single field named ``x``
  (or the name given in the ``file:`` mapping). Object (pickled) arrays are refused.
* ``.csv`` — a header row is required. ``y`` is the column named by ``y:`` (default: the first
  of ``y``, ``label``, ``target``, ``class`` present); int64 when every value is an integer,
  else float32. ``x`` [N,F] float32 stacks the ``x:`` columns (default: all other columns).
* ``.txt`` — character-level language modelling: non-overlapping windows of ``block + 1``
  tokens give ``tokens`` [N,T], ``targets`` [N,T] (shifted by one) and ``loss_mask`` (ones).
  The first ``1 - val_fraction`` of the text trains, the rest validates (no window straddles).

Relative paths are resolved against ``base_dir`` (the CLI passes the spec's directory).
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ..config import as_number, check_keys
from ..errors import DataError
from .base import ArrayLoader, DataBundle, Dataset, split_dataset

_KEYS = ["file", "val_file", "val_fraction", "fields", "x", "y", "block", "encoding", "seed"]
_LABEL_COLUMNS = ("y", "label", "target", "class")


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(str(path)).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if not p.is_file():
        raise DataError(f"data path is not a file: {p}")
    return p


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"cannot read {path} as a .npy array: {err}") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError(f"{path} holds a .npz archive, not a single .npy array")
    return array


def _load_npz(path: Path, fields: list[str] | None) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.ndarray):
            raise DataError(f"{path} holds a single .npy array, not a .npz archive")
        with archive:
            names = list(archive.files)
            wanted = fields or names
            missing = [f for f in wanted if f not in names]
            if missing:
                raise DataError(
                    f"{path}: no array named {', '.join(missing)}; "
                    f"the file has {', '.join(names) or 'no arrays'}"
                )
            return {name: archive[name] for name in wanted}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as a .npz archive: {err}") from None


def _load_csv(path: Path, spec: dict) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataError(f"{path}: a header row and at least one data row are needed")
    header = [h.strip() for h in rows[0]]
    table = np.empty((len(rows) - 1, len(header)), np.float64)
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{i}: {len(row)} values, but the header has {len(header)}")
        for j, cell in enumerate(row):
            try:
                table[i - 2, j] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}:{i}: column `{header[j]}` value {cell!r} is not a number"
                ) from None
    y_col = spec.get("y", next((c for c in _LABEL_COLUMNS if c in header), None))
    x_cols = spec.get("x", [c for c in header if c != y_col])
    x_cols = [x_cols] if isinstance(x_cols, str) else list(x_cols)
    for col in [*x_cols, *([y_col] if y_col else [])]:
        if col not in header:
            raise DataError(f"{path}: no column `{col}`; the header has {', '.join(header)}")
    out = {"x": table[:, [header.index(c) for c in x_cols]].astype(np.float32)}
    if y_col:
        y = table[:, header.index(y_col)]
        out["y"] = y.astype(np.int64) if np.all(y == np.round(y)) else y.astype(np.float32)
    return out


def _text_windows(ids: np.ndarray, block: int, where: str) -> dict[str, np.ndarray]:
    n = (len(ids) - 1) // block
    if n < 1:
        raise DataError(
            f"{where}: {len(ids)} characters are too few for one window of block {block} + 1"
        )
    starts = np.arange(n) * block
    windows = ids[starts[:, None] + np.arange(block + 1)]
    return {
        "tokens": windows[:, :-1].copy(),
        "targets": windows[:, 1:].copy(),
        "loss_mask": np.ones((n, block), np.float32),
    }


def _build_text(path: Path, spec: dict, batch: int, seed: int) -> DataBundle:
    block = as_number(spec.get("block", 64), "train.data.block", kind=int, minimum=1)
    fraction = as_number(spec.get("val_fraction", 0.1), "train.data.val_fraction")
    encoding = spec.get("encoding", "chars")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if encoding == "bytes":
        ids = np.frombuffer(raw, np.uint8).astype(np.int64)
        chars, vocab = None, 256
    elif encoding == "chars":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path} is not UTF-8 text ({err}); try `encoding: bytes`") from None
        chars = "".join(sorted(set(text)))
        lookup = {c: i for i, c in enumerate(chars)}
        ids = np.fromiter((lookup[c] for c in text), np.int64, len(text))
        vocab = len(chars)
    else:
        raise DataError(f"train.data.encoding must be `chars` or `bytes`, got {encoding!r}")
    cut = int(len(ids) * (1 - fraction))
    train = Dataset(_text_windows(ids[:cut], block, str(path)), source=str(path))
    val = (
        Dataset(_text_windows(ids[cut:], block, f"{path} (validation part)"), source=str(path))
        if fraction > 0
        else None
    )

    def decode(row: np.ndarray) -> str:
        if chars is None:
            return bytes(int(t) for t in row).decode("utf-8", errors="replace")
        return "".join(chars[int(t)] for t in row)

    info = {
        "kind": "sequence",
        "file": str(path),
        "vocab": vocab,
        "chars": chars,
        "seq_len": block,
        "train_size": len(train),
        "val_size": len(val) if val else 0,
    }
    return DataBundle(ArrayLoader(train, batch, seed), val, info, decode)


def _read(file, spec: dict, base_dir: Path | None) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(file, dict):
        fields = {}
        for name, path in file.items():
            p = _resolve(path, base_dir)
            if p.suffix != ".npy":
                raise DataError(f"{p}: a `file:` mapping takes one .npy file per field")
            fields[str(name)] = _load_npy(p)
        return fields, ", ".join(str(v) for v in file.values())
    path = _resolve(file, base_dir)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, spec.get("fields")), str(path)
    if suffix == ".npy":
        return {"x": _load_npy(path)}, str(path)
    if suffix == ".csv":
        return _load_csv(path, spec), str(path)
    raise DataError(f"{path}: unsupported data file type `{suffix}` (use .npz, .npy, .csv or .txt)")


def _checked(fields: dict[str, np.ndarray], source: str) -> Dataset:
    for name, a in fields.items():
        if a.dtype.kind not in "biuf":
            raise DataError(f"{source}: field `{name}` has dtype {a.dtype}; numbers only")
    return Dataset(fields, source=source)


def build_file(spec: dict, *, batch: int, seed: int, base_dir: Path | None = None) -> DataBundle:
    check_keys(spec, _KEYS, "train.data (file)")
    file = spec["file"]
    if not isinstance(file, str | dict):
        raise DataError(f"train.data.file must be a path or a mapping of field: path, got {file!r}")
    if isinstance(file, str) and file.lower().endswith(".txt"):
        return _build_text(_resolve(file, base_dir), spec, batch, seed)
    data_seed = as_number(spec.get("seed", 0), "train.data.seed", kind=int, minimum=0)
    fields, source = _read(file, spec, base_dir)
    full = _checked(fields, source)
    if spec.get("val_file") is not None:
        vfields, vsource = _read(spec["val_file"], spec, base_dir)
        train, val = full, _checked(vfields, vsource)
        if set(val.fields) != set(train.fields):
            raise DataError(
                f"{vsource} has fields {sorted(val.fields)}, "
                f"but {source} has {sorted(train.fields)}"
            )
    else:
        fraction = as_number(spec.get("val_fraction", 0.1), "train.data.val_fraction")
        y = full.fields.get("y")
        strat = "y" if y is not None and y.ndim == 1 and y.dtype.kind in "iu" else None
        train, val = split_dataset(full, fraction, data_seed, stratify=strat)
    info = {
        "kind": "file",
        "file": source,
        "train_size": len(train),
        "val_size": len(val) if val else 0,
    }
    return DataBundle(ArrayLoader(train, batch, seed), val, info)
