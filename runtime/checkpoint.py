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
:func:`load_checkpoint` falls back to and the next save restores first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
    meta = {"format": "graphc"}
    hashes = {
        MODEL_FILE: _write(tmp / MODEL_FILE, st.save(_contiguous(params), metadata=meta)),
        OPTIMIZER_FILE: _write(
            tmp / OPTIMIZER_FILE, st.save(_contiguous(optimizer), metadata=meta)
        ),
    }
    record = {**state, "format": FORMAT, "sha256": hashes}
    _write(tmp / STATE_FILE, json.dumps(record, indent=2, sort_keys=True).encode())
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


def _contiguous(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint directory; CheckpointError says what is wrong."""
    path = Path(path)
    _, old = _siblings(path)
    if not path.exists() and old.exists():
        path = old  # a save was interrupted between its renames: the old one is complete
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except FileNotFoundError:
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
    arrays = {}
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        try:
            data = (path / name).read_bytes()
        except OSError as err:
            raise CheckpointError(
                f"{path} is not a complete checkpoint: cannot read {name} ({err.strerror or err})"
            ) from None
        if hashlib.sha256(data).hexdigest() != state.get("sha256", {}).get(name):
            raise CheckpointError(
                f"{path / name} is corrupt: its checksum does not match {STATE_FILE}"
            )
        try:
            arrays[name] = st.load(data)
        except Exception as err:  # safetensors raises its own error type
            raise CheckpointError(f"{path / name} is corrupt: {err}") from None
    return Checkpoint(arrays[MODEL_FILE], arrays[OPTIMIZER_FILE], state, path)


def check_params(model, params: dict[str, np.ndarray], where: str | Path) -> None:
    """CheckpointError unless ``params`` has every ParamSpec of ``model`` with its shape."""
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


def load_params(path: str | Path, model=None) -> dict[str, np.ndarray]:
    """The parameters of a run directory (``<run>/checkpoint``) or a checkpoint directory.

    With ``model``, the names and shapes must match its ParamSpecs (CheckpointError if not).
    """
    path = Path(path)
    if not (path / STATE_FILE).exists() and (path / "checkpoint").exists():
        path = path / "checkpoint"
    params = {k: np.array(v) for k, v in load_checkpoint(path).params.items()}
    if model is not None:
        check_params(model, params, path)
    return params
