"""Run checkpoints: a directory written atomically.

Layout of ``<run>/checkpoint/``::

    model.safetensors      every parameter and buffer, by ParamSpec name
    optimizer.safetensors  optimizer slots, "<slot>/<param>" (m/..., v/..., velocity/...)
    state.json             step, epoch, data-stream position, RNG scheme, spec hash, the
                           optimizer's scalars, early-stopping state, and the sha256 of both
                           .safetensors files (so a damaged file is caught on load)

Atomicity: the new checkpoint is written to ``.checkpoint.tmp`` next to it and fsynced; then
the old directory is renamed to ``.checkpoint.old``, the new one renamed into place, the parent
directory fsynced, and the old one removed. A kill at any moment leaves either ``checkpoint``
complete, or (between the two renames) only ``.checkpoint.old`` complete, which
:func:`load_checkpoint` falls back to and the next save restores first. A reader racing with a
save retries. The safetensors headers carry ``metadata``: the model's name and structural
hash, the spec file's content hash and the step, so a file alone says where it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy as st

from .errors import CheckpointError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
FORMAT = 1

# Tests set this to observe (or die at) each stage of a save; None in normal use.
_stage_hook: Callable[[str], None] | None = None


def _stage(name: str) -> None:
    if _stage_hook is not None:
        _stage_hook(name)


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    state: dict
    path: Path


def _siblings(path: Path) -> tuple[Path, Path]:
    return path.parent / f".{path.name}.tmp", path.parent / f".{path.name}.old"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    _stage(f"wrote {path.name}")
    return hashlib.sha256(data).hexdigest()


def _recover(path: Path) -> None:
    """Finish a save that was interrupted between its two renames."""
    _, old = _siblings(path)
    if old.exists():
        if path.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, path)


def save_checkpoint(
    path: str | Path, params: dict[str, np.ndarray], optimizer: dict[str, np.ndarray], state: dict
) -> Path:
    """Atomically replace the checkpoint directory ``path`` with these contents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _siblings(path)
    _recover(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    meta = metadata(state)
    hashes = {
        MODEL_FILE: _write(tmp / MODEL_FILE, st.save(_contiguous(params), metadata=meta)),
        OPTIMIZER_FILE: _write(
            tmp / OPTIMIZER_FILE, st.save(_contiguous(optimizer), metadata=meta)
        ),
    }
    record = _strict({**state, "format": FORMAT, "sha256": hashes})
    _write(tmp / STATE_FILE, json.dumps(record, indent=2, sort_keys=True, allow_nan=False).encode())
    _fsync_dir(tmp)
    _stage("written")
    if path.exists():
        os.rename(path, old)
        _stage("old moved aside")
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    _stage("renamed")
    if old.exists():
        shutil.rmtree(old)
    return path


def metadata(state: dict) -> dict[str, str]:
    """The safetensors header metadata: which spec (name, content hash) and model wrote it."""
    meta = {"format": "graphc"}
    for key in ("model", "model_hash", "spec_hash", "step"):
        if state.get(key) is not None:
            meta[key] = str(state[key])
    return meta


def _strict(value):
    """``value`` as strict JSON: NaN/inf floats become null, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _contiguous(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


class _Changed(Exception):
    """The checkpoint changed while it was read (a concurrent save): read it again."""


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint directory; CheckpointError says what is wrong.

    Safe to call while a training run saves into the same place: a read that races with the
    swap of directories is retried (and between the two renames, the old one is read)."""
    for attempt in range(5):
        try:
            return _load(Path(path), racing=attempt < 4)
        except _Changed:
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")  # the last attempt raises CheckpointError itself


def _load(requested: Path, racing: bool) -> Checkpoint:
    tmp, old = _siblings(requested)
    path = requested
    if not path.exists() and old.exists():
        path = old  # a save was interrupted between its renames: the old one is complete
    if not path.is_dir():
        # a save may have moved the directories between these looks (seen: the new one renamed
        # into place between the first look and the check for the save's temporary directory)
        if racing and (requested.exists() or old.exists() or tmp.exists()):
            raise _Changed
        raise CheckpointError(f"no checkpoint at {requested}")
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except FileNotFoundError:
        if racing:
            raise _Changed from None
        raise CheckpointError(
            f"{path} is not a complete checkpoint: {STATE_FILE} is missing"
        ) from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path / STATE_FILE} is corrupt: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path / STATE_FILE} is not a graphc checkpoint (format "
            f"{state.get('format') if isinstance(state, dict) else '?'})"
        )
    sums = state.get("sha256")
    if not isinstance(sums, dict) or not all(
        isinstance(sums.get(n), str) for n in (MODEL_FILE, OPTIMIZER_FILE)
    ):
        raise CheckpointError(
            f"{path / STATE_FILE}: field `sha256` must hold the checksum (a hex string) of "
            f"{MODEL_FILE} and {OPTIMIZER_FILE}; found {json.dumps(sums)}"
        )
    arrays = {}
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        try:
            data = (path / name).read_bytes()
        except OSError as err:
            if racing:
                raise _Changed from None
            raise CheckpointError(
                f"{path} is not a complete checkpoint: cannot read {name} ({err.strerror or err})"
            ) from None
        if hashlib.sha256(data).hexdigest() != sums[name]:
            if racing:
                raise _Changed
            raise CheckpointError(
                f"{path / name} is corrupt: its checksum does not match {STATE_FILE}"
            )
        try:
            arrays[name] = st.load(data)
        except Exception as err:  # safetensors raises its own error type
            raise CheckpointError(f"{path / name} is corrupt: {err}") from None
    return Checkpoint(arrays[MODEL_FILE], arrays[OPTIMIZER_FILE], state, path)


def check_params(model, params: dict[str, np.ndarray], where: str | Path) -> None:
    """CheckpointError unless ``params`` has every ParamSpec of ``model`` with its shape and
    the model's float dtype."""
    dtype = np.dtype(getattr(model, "dtype", np.float32))
    for name, spec in model.params.items():
        if name not in params:
            raise CheckpointError(
                f"{where}: parameter `{name}` of model {model.name!r} is "
                "missing; was the checkpoint written for another spec?"
            )
        if tuple(params[name].shape) != tuple(spec.shape):
            raise CheckpointError(
                f"{where}: parameter `{name}` has shape "
                f"{list(params[name].shape)}, the model expects "
                f"{list(spec.shape)}"
            )
        if params[name].dtype != dtype:
            raise CheckpointError(
                f"{where}: parameter `{name}` is {params[name].dtype}, the model computes in "
                f"{dtype} (was the file edited, or written by another tool?)"
            )


def check_optimizer(model, arrays: dict[str, np.ndarray], where: str | Path) -> None:
    """CheckpointError unless every optimizer slot (``[phase<i>/]<slot>/<param>``) belongs to
    a parameter of ``model`` and has its shape, in float32."""
    for key, a in arrays.items():
        parts = key.split("/")
        if parts and parts[0].startswith("phase") and parts[0][5:].isdigit():
            parts = parts[1:]
        if len(parts) != 2 or parts[0] not in SLOTS:
            raise CheckpointError(
                f"{where}: optimizer tensor `{key}` is not a slot of this runtime's optimizers "
                f"(expected <slot>/<parameter> with slot {' | '.join(SLOTS)})"
            )
        spec = model.params.get(parts[1])
        if spec is None:
            raise CheckpointError(
                f"{where}: optimizer tensor `{key}` is for parameter `{parts[1]}`, which model "
                f"{model.name!r} does not have"
            )
        if tuple(a.shape) != tuple(spec.shape):
            raise CheckpointError(
                f"{where}: optimizer tensor `{key}` has shape {list(a.shape)}, but parameter "
                f"`{parts[1]}` has {list(spec.shape)}"
            )
        if a.dtype != np.float32:
            raise CheckpointError(
                f"{where}: optimizer tensor `{key}` is {a.dtype}; optimizer state is float32"
            )


SLOTS = ("m", "v", "velocity")


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory of a run directory (``<run>/checkpoint``, also while a save is
    between its two renames), or ``path`` itself."""
    path = Path(path)
    if (path / STATE_FILE).exists():
        return path
    inner = path / "checkpoint"
    if inner.exists() or _siblings(inner)[1].exists() or _siblings(inner)[0].exists():
        return inner
    return path


def load_params(path: str | Path, model=None) -> dict[str, np.ndarray]:
    """The parameters of a run directory (``<run>/checkpoint``) or a checkpoint directory.

    With ``model``, the names, shapes and dtypes must match its ParamSpecs (CheckpointError
    if not).
    """
    ckpt = load_checkpoint(checkpoint_dir(path))
    params = {k: np.array(v) for k, v in ckpt.params.items()}
    if model is not None:
        check_params(model, params, ckpt.path / MODEL_FILE)
    return params
