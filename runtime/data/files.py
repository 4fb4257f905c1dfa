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

Relative paths are resolved against ``base_dir`` (the spec's directory) and, when written in
the spec, may not leave it (:class:`Paths`); NaN/inf cells, ragged CSV rows and files larger
than the memory budget are DataErrors naming the file and row.
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path

import numpy as np

from ..budget import UNLIMITED, Budget, fmt_bytes
from ..config import as_number, check_keys
from ..errors import DataError
from .base import ArrayLoader, DataBundle, Dataset, split_dataset

_KEYS = ["file", "val_file", "val_fraction", "fields", "x", "y", "block", "encoding", "seed"]
_LABEL_COLUMNS = ("y", "label", "target", "class")


class Paths:
    """Where the paths of ``train.data`` resolve.

    Relative paths resolve against the spec's directory (``base_dir``). A path written in the
    spec must stay inside it: no absolute paths, no ``..`` or symlink leading out (a spec from
    elsewhere cannot read arbitrary files). A path given on the command line
    (``--set data.file=...``; its key is in ``cli``) is the user's own and may point anywhere.
    Without a ``base_dir`` (no spec file) paths are taken as they are.
    """

    def __init__(self, base_dir: Path | None = None, cli: frozenset[str] = frozenset()) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.cli = cli

    def resolve(self, path, key: str) -> Path:
        """The file ``path`` given for ``train.data.<key>``; DataError if it is missing or
        (for a path in the spec) outside the spec's directory."""
        if not isinstance(path, str) or not path.strip():
            raise DataError(f"train.data.{key} must be a file path, got {path!r}")
        p = Path(path)
        top = key.split(".")[0]
        if self.base_dir is not None and top not in self.cli:
            base = self.base_dir.resolve()
            hint = (
                f"a data path in a spec must stay inside the spec's directory ({base}); "
                f"give it on the command line (--set data.{key}=...) to use a file elsewhere"
            )
            if p.is_absolute() or path.startswith("~"):
                raise DataError(f"train.data.{key}: `{path}` is an absolute path; {hint}")
            p = base / p
            real = p.resolve()
            if not real.is_relative_to(base):
                how = "leads out of it" if ".." in Path(path).parts else "is a symlink out of it"
                raise DataError(f"train.data.{key}: `{path}` {how} (to {real}); {hint}")
        else:
            p = p.expanduser()
            if not p.is_absolute() and self.base_dir is not None:
                p = self.base_dir / p
        if not p.exists():
            raise DataError(f"data file not found: {p}")
        if not p.is_file():
            raise DataError(f"data path is not a file: {p}")
        return p


def _check_size(path: Path, need: float, budget: Budget) -> None:
    budget.check(need, f"loading {path}", "use a smaller file, or raise --max-memory")


def _npz_bytes(path: Path) -> int:
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile):
        return path.stat().st_size  # np.load will say what is wrong with it


def _check_header(fh, size: int, where: str) -> None:
    """DataError when the .npy header at ``fh`` declares more data than the ``size`` bytes that
    hold it: np.load allocates what the header says before it reads, so a truncated or corrupt
    file (a few bytes claiming a shape of 10**11) would be a MemoryError, or an allocation the
    machine cannot back. Headers numpy cannot read are left for np.load to report."""
    start = fh.tell()
    try:
        version = np.lib.format.read_magic(fh)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, _, dtype = read(fh)
    except (ValueError, KeyError, OSError, EOFError):
        return
    if dtype.hasobject:
        return  # pickled objects: np.load refuses them without reading
    declared = math.prod(shape) * dtype.itemsize
    held = size - (fh.tell() - start)
    if declared > held:
        raise DataError(
            f"{where} is truncated or corrupt: its header declares a {dtype} array of shape "
            f"{list(shape)} ({fmt_bytes(declared)}), but it holds {fmt_bytes(held)} of data"
        )


def check_npy(path: Path, budget: Budget = UNLIMITED) -> None:
    """Before np.load of an .npy file: its size against ``budget``, its header against its size."""
    size = path.stat().st_size
    _check_size(path, size, budget)
    with open(path, "rb") as fh:
        _check_header(fh, size, str(path))


def check_npz(path: Path, budget: Budget = UNLIMITED) -> None:
    """Before np.load of an .npz file: its arrays' size against ``budget``, and each array's
    header against the bytes the archive holds for it."""
    _check_size(path, _npz_bytes(path), budget)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as fh:
                    _check_header(fh, info.file_size, f"{path} (array `{info.filename.removesuffix('.npy')}`)")
    except (OSError, zipfile.BadZipFile, EOFError):
        return  # np.load will say what is wrong with it


def _load_npy(path: Path, budget: Budget = UNLIMITED) -> np.ndarray:
    check_npy(path, budget)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"cannot read {path} as a .npy array: {err}") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError(f"{path} holds a .npz archive, not a single .npy array")
    return array


def _load_npz(
    path: Path, fields: list[str] | None, budget: Budget = UNLIMITED
) -> dict[str, np.ndarray]:
    check_npz(path, budget)
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


def _load_csv(path: Path, spec: dict, budget: Budget = UNLIMITED) -> tuple[dict, list[int]]:
    """The fields of a CSV file and the file line of each data row."""
    _check_size(path, 12 * path.stat().st_size, budget)  # Python's lists of cells
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            start = 1
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(start)
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if len(rows) < 2:
        raise DataError(f"{path}: a header row and at least one data row are needed")
    header = [h.strip() for h in rows[0]]
    table = np.empty((len(rows) - 1, len(header)), np.float64)
    for i, row in enumerate(rows[1:]):
        line = lines[i + 1]
        if len(row) != len(header):
            raise DataError(
                f"{path}:{line}: {len(row)} values, but the header has {len(header)} "
                f"({', '.join(header)})"
            )
        for j, cell in enumerate(row):
            try:
                table[i, j] = value = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}:{line}: column `{header[j]}` value {cell!r} is not a number"
                ) from None
            if not np.isfinite(value):
                raise DataError(
                    f"{path}:{line}: column `{header[j]}` value {cell.strip()!r} is not a "
                    "finite number (NaN and infinity cannot be trained on)"
                )
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
    return out, lines[1:]


def _check_finite(fields: dict[str, np.ndarray], source: str) -> None:
    """DataError naming the array and row of the first NaN/inf in a float field."""
    for name, a in fields.items():
        if a.dtype.kind != "f" or a.ndim == 0:
            continue
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(a).reshape(len(a), -1).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = a[row].ravel()[~np.isfinite(a[row].ravel())][0]
            raise DataError(
                f"{source}: array `{name}` row {row} holds {value} ({int(bad.sum())} rows with "
                "NaN or infinity); training needs finite numbers"
            )


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


def _build_text(path: Path, spec: dict, batch: int, seed: int, budget: Budget) -> DataBundle:
    _check_size(path, 32 * path.stat().st_size, budget)  # int64 ids, windows, targets
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


def _read(file, spec: dict, paths: Paths, key: str, budget: Budget) -> Dataset:
    if isinstance(file, dict):
        fields = {}
        for name, path in file.items():
            p = paths.resolve(path, f"{key}.{name}")
            if p.suffix != ".npy":
                raise DataError(f"{p}: a `file:` mapping takes one .npy file per field")
            fields[str(name)] = _load_npy(p, budget)
        return _checked(fields, ", ".join(str(v) for v in file.values()))
    path = paths.resolve(file, key)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _checked(_load_npz(path, spec.get("fields"), budget), str(path))
    if suffix == ".npy":
        return _checked({"x": _load_npy(path, budget)}, str(path))
    if suffix == ".csv":
        fields, lines = _load_csv(path, spec, budget)
        return _checked(fields, str(path), locate=lambda i: f"{path}:{lines[i]}")
    raise DataError(f"{path}: unsupported data file type `{suffix}` (use .npz, .npy, .csv or .txt)")


def _checked(fields: dict[str, np.ndarray], source: str, locate=None) -> Dataset:
    for name, a in fields.items():
        if a.dtype.kind not in "biuf":
            raise DataError(f"{source}: field `{name}` has dtype {a.dtype}; numbers only")
    _check_finite(fields, source)
    return Dataset(fields, source=source, locate=locate)


def build_file(
    spec: dict,
    *,
    batch: int,
    seed: int,
    base_dir: Path | None = None,
    paths: Paths | None = None,
    budget: Budget = UNLIMITED,
) -> DataBundle:
    """``paths`` says where files resolve (default: inside ``base_dir``, see :class:`Paths`)."""
    check_keys(spec, _KEYS, "train.data (file)")
    paths = paths if paths is not None else Paths(base_dir)
    file = spec["file"]
    if not isinstance(file, str | dict):
        raise DataError(f"train.data.file must be a path or a mapping of field: path, got {file!r}")
    if isinstance(file, str) and file.lower().endswith(".txt"):
        return _build_text(paths.resolve(file, "file"), spec, batch, seed, budget)
    data_seed = as_number(spec.get("seed", 0), "train.data.seed", kind=int, minimum=0)
    full = _read(file, spec, paths, "file", budget)
    source = full.source
    if spec.get("val_file") is not None:
        train, val = full, _read(spec["val_file"], spec, paths, "val_file", budget)
        if set(val.fields) != set(train.fields):
            raise DataError(
                f"{val.source} has fields {sorted(val.fields)}, "
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
