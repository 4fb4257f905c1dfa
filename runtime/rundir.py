"""A run's directory and its endings: resume, checkpoints, failure handling, the summary.

:class:`RunFiles` is the part of :class:`~.trainer.Run` that reads and writes ``out_dir``:

- ``restore`` (resume from ``checkpoint/``: parameters, optimizer state, data position,
  early-stopping state, the metrics rows up to the checkpoint's step; every field and tensor
  checked first, so a bad checkpoint changes nothing) and ``begin`` (write ``config.json``;
  a fresh run starts ``metrics.jsonl``, a resumed one rewrites it atomically only once its
  first new row exists, so a failed resume never truncates it);
- ``record`` (append a metrics row to ``metrics.jsonl`` and ``metrics.csv``, and to the
  TensorBoard event files when tensorboardX is installed: :mod:`.runlog`) and ``save`` (an
  atomic checkpoint, see :mod:`.checkpoint`);
- ``fail`` (a NaN/Inf or a diverged loss: name the step and the first bad node, keep the last
  good checkpoint, write the summary, raise NonFiniteError) and ``finish`` (``summary.json``,
  always strict JSON: NaN/inf become null, with the run's steady-state throughput, and
  ``loss.png``).

:func:`claim` picks and locks the directory before anything is written: an advisory
``fcntl.flock`` on ``<run>/.lock`` (holding the pid) keeps two runs out of one directory, and
a directory that already holds a run is kept: the new run goes to ``<run>-2`` (``-3``, ...)
unless ``existing="overwrite"``.

It holds no state of its own: the attributes it uses are set by ``Run.__init__``. The phases'
optimizer state goes through :func:`.phases.optimizer_state` / :func:`.phases.load_optimizer_state`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import (
    STATE_FILE,
    check_optimizer,
    check_params,
    load_checkpoint,
    save_checkpoint,
)
from .config import EarlyStopping
from .distributed import World
from .errors import CheckpointError, DataError, NonFiniteError, RunDirError
from .phases import PhaseRun, load_optimizer_state, optimizer_state
from .plot import plot_losses
from .runlog import (
    CSV_FILE,
    TENSORBOARD_DIR,
    TensorBoardLog,
    csv_columns,
    csv_lines,
    tensorboard_unavailable,
)
from .setup import Setup, spec_hash

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"  # the parameters at the best evaluation (by RunFiles.best_rule's metric)
LOCK_FILE = ".lock"
# what a run writes; `existing="overwrite"` removes exactly these (nothing else of the user's)
RUN_FILES = ("config.json", "metrics.jsonl", CSV_FILE, "summary.json", "loss.png")
RUN_DIRS = (CHECKPOINT_DIR, BEST_DIR, TENSORBOARD_DIR)


class RunFiles:
    """Resume, checkpoint, record and finish a :class:`~.trainer.Run` (a mixin of it)."""

    model: Any
    out: Path
    setup: Setup
    cfg: Any
    overrides: dict
    loader: Any
    total: int
    fingerprint: str
    trainable: list[str]
    phases: list[PhaseRun]
    params: dict[str, np.ndarray]
    step: int
    resumed_from: int | None
    last_saved: int | None
    best: dict
    history: list[dict]
    t0: float
    bar: Any
    first_loss: float | None
    rewrite_metrics: bool
    world: World
    tensorboard: TensorBoardLog | None = None  # set by begin() when tensorboardX is installed
    tensorboard_missing: str | None = None  # why there is none
    csv_cols: list[str] | None = None  # metrics.csv's columns (None: rewrite it at the next row)

    def best_rule(self) -> EarlyStopping:
        """How ``best/`` is chosen: by the early-stopping metric when there is one, else by
        val_loss (lower is better), as Keras's ModelCheckpoint does."""
        es = self.cfg.early_stopping
        return es if es is not None else EarlyStopping("val_loss", patience=0, mode="min")

    # --- start and resume ---------------------------------------------------------------

    def restore(self, ckpt=None) -> None:
        """Load ``checkpoint/`` (or ``ckpt``, already loaded) into this run; every field and
        tensor is checked before anything changes."""
        ckpt = ckpt if ckpt is not None else load_checkpoint(self.out / CHECKPOINT_DIR)
        state = check_run_state(ckpt.state, ckpt.path / STATE_FILE)
        if state["model_hash"] != self.fingerprint:
            raise CheckpointError(
                f"{ckpt.path} was written for a different model ({state.get('model')!r}, hash "
                f"{state.get('model_hash')}); this one is {self.model.name!r}, hash "
                f"{self.fingerprint}"
            )
        params = {k: np.array(v) for k, v in ckpt.params.items()}
        check_params(self.model, params, ckpt.path / "model.safetensors")
        check_optimizer(self.model, ckpt.optimizer, ckpt.path / "optimizer.safetensors")
        if not all(np.all(np.isfinite(a)) for a in params.values()):
            bad = next(k for k, a in params.items() if not np.all(np.isfinite(a)))
            raise CheckpointError(
                f"{ckpt.path / 'model.safetensors'}: parameter `{bad}` holds NaN or infinity"
            )
        try:
            load_optimizer_state(
                self.phases, bool(self.cfg.phases), ckpt.optimizer, state["optimizer"], ckpt.path
            )
            self.loader.load_state_dict(state["data"])
        except DataError as err:
            raise CheckpointError(f"{ckpt.path / STATE_FILE}: field `data`: {err}") from None
        self.params = params
        self.step = self.resumed_from = self.last_saved = state["step"]
        saved = state.get("early_stopping")
        metric = self.best_rule().metric
        if saved is not None and saved.get("metric", metric) == metric:  # else a new best
            self.best = {**saved, "metric": metric}
        self.first_loss = state.get("first_loss")
        self.history = [
            r for r in read_jsonl(self.out / "metrics.jsonl") if r.get("step", 0) <= self.step
        ]

    def begin(self, overwrite: bool = False) -> None:
        """Check the parameters and write config.json (and, for a fresh run, start
        metrics.jsonl); ``overwrite`` first removes what an earlier run left here."""
        check_params(
            self.model,
            self.params,
            "initial parameters" if self.resumed_from is None else self.out / CHECKPOINT_DIR,
        )
        if not self.world.root:  # under MPI only rank 0 writes the run directory
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.resumed_from is None:
            clear_run(self.out, everything=overwrite)
        info = {k: v for k, v in self.setup.data.info.items() if k != "chars"}
        config = {
            "model": self.model.name,
            "total_steps": self.total,
            "metrics": self.setup.metrics,
            "data_info": info,
            "train": self.cfg.to_dict(),
            "overrides": self.overrides,
        }
        write_atomic(self.out / "config.json", dumps(config, indent=2))
        if self.resumed_from is None:
            write_atomic(self.out / "metrics.jsonl", "")
            write_atomic(self.out / CSV_FILE, "")
            self.csv_cols = []
            self.rewrite_metrics = False
        else:  # keep every row until this run has one of its own
            self.csv_cols = None
            self.rewrite_metrics = True
        self.open_tensorboard()

    def open_tensorboard(self) -> None:
        """Event files in ``tensorboard/`` when tensorboardX can be loaded; else nothing (the
        header says how to enable them)."""
        self.tensorboard_missing = tensorboard_unavailable()
        if self.tensorboard_missing is not None:
            return
        resumed = self.resumed_from is not None
        try:
            self.tensorboard = TensorBoardLog(
                self.out / TENSORBOARD_DIR,
                start_step=self.step,
                purge_step=self.step + 1 if resumed else None,
            )
        except OSError as err:
            self.tensorboard_missing = f"cannot write {self.out / TENSORBOARD_DIR}: {err}"

    def close_logs(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def record(self, row: dict) -> None:
        if not row:
            return
        self.history.append(row)
        if not self.world.root:
            return
        if self.tensorboard is not None:
            self.tensorboard.add(json_safe(row))
        if self.rewrite_metrics:  # a resumed run: the rows up to its checkpoint, then its own
            write_atomic(self.out / "metrics.jsonl", "".join(dumps(r) + "\n" for r in self.history))
            self.rewrite_metrics = False
        else:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(dumps(row) + "\n")
        if self.csv_cols is None or any(k not in self.csv_cols for k in row):
            self.csv_cols = csv_columns(self.history)  # a new column: the file again, at once
            write_atomic(self.out / CSV_FILE, csv_lines(self.history, self.csv_cols, header=True))
        else:
            with open(self.out / CSV_FILE, "a") as fh:
                fh.write(csv_lines([row], self.csv_cols, header=False))

    # --- checkpoints and endings ----------------------------------------------------------

    def save(self) -> None:
        if not all(np.all(np.isfinite(a)) for a in self.params.values()):
            self.fail("parameters became non-finite")
        arrays, scalars = optimizer_state(self.phases, bool(self.cfg.phases))
        state = {
            "step": self.step,
            "epoch": self.loader.epochs_done,
            "data": self.loader.state_dict(),
            "rng": {"seed": self.cfg.seed, "scheme": "SeedSequence([seed, step, micro])"},
            "model": self.model.name,
            "model_hash": self.fingerprint,
            "spec_hash": spec_hash(self.model),
            "optimizer": scalars,
            "early_stopping": self.best,
            "total_steps": self.total,
            "first_loss": self.first_loss,
        }
        self.world.check_identical(self.params, f"at the checkpoint of step {self.step}")
        if self.world.root:
            save_checkpoint(self.out / CHECKPOINT_DIR, self.params, arrays, state)
        self.last_saved = self.step

    def fail(
        self,
        what: str,
        inputs: dict | None = None,
        seed: int = 0,
        status: str = "nonfinite",
        detail: str = "",
    ) -> None:
        """Stop on a NaN/Inf (or a diverged loss, ``status="diverged"``): name the step and the
        first bad node (for a diverged loss: the node with the largest parameters), keep the
        last good checkpoint, write the summary, raise NonFiniteError."""
        node = None
        if inputs is not None and status == "nonfinite":
            try:
                with np.errstate(all="ignore"):
                    node = self.model.first_nonfinite(self.params, inputs, seed=seed)
            except MemoryError:  # it keeps every tensor: may not fit where the step did
                node = None
        message = f"{what} at step {self.step + (inputs is not None)}{detail}"
        if node:
            message += f"; the first non-finite value is at node `{node}`"
        elif status == "diverged":
            node, size = self.largest_params()
            if node:
                message += f"; the largest parameters are at node `{node}` (|w| up to {size:.3g})"
        if self.last_saved is not None:
            message += (
                f"; the last good checkpoint (step {self.last_saved}) is kept in "
                f"{self.out / CHECKPOINT_DIR}"
            )
        else:
            message += "; no checkpoint had been written yet"
        self.bar.message(message)
        key = "nonfinite_node" if status == "nonfinite" else "node"
        self.finish(status, message=message, **{key: node})
        raise NonFiniteError(message, step=self.step, node=node)

    def largest_params(self) -> tuple[str | None, float]:
        """The node whose trainable parameters hold the largest magnitude, and that magnitude."""
        best, size = None, 0.0
        for name in self.trainable:
            value = float(np.max(np.abs(self.params[name]), initial=0.0))
            if value > size:
                best, size = name, value
        spec = self.model.params.get(best) if best else None
        return (getattr(spec, "node", best) if best else None), size

    def finish(self, status: str, **extra) -> dict:
        """Write summary.json and loss.png; return the summary."""
        last = next((r for r in reversed(self.history) if "loss" in r), {})
        val = next((r for r in reversed(self.history) if "val_loss" in r), {})
        summary = {
            "model": self.model.name,
            "status": status,
            "steps": self.step,
            "total_steps": self.total,
            "epochs": self.loader.epochs_done,
            "resumed_from": self.resumed_from,
            "trainable_params": int(
                sum(np.prod(self.model.params[n].shape) for n in self.trainable)
            ),
            "time_sec": round(time.perf_counter() - self.t0, 3),
            "throughput": self.throughput(),
            "metrics": {
                "loss": last.get("loss"),
                **{k: v for k, v in val.items() if k.startswith("val_")},
            },
            "best": {**self.best, "checkpoint": str(self.out / BEST_DIR)}
            if self.best["best_step"] is not None
            else None,
            "checkpoint": str(self.out / CHECKPOINT_DIR) if self.last_saved is not None else None,
            "checkpoint_step": self.last_saved,
            "out_dir": str(self.out),
            **extra,
        }
        summary = json_safe(summary)
        if not self.world.root:
            return summary
        self.close_logs()
        write_atomic(self.out / "summary.json", dumps(summary, indent=2))
        with contextlib.suppress(ValueError, OverflowError):  # a curve too wild to scale
            plot_losses(
                self.history,
                self.out / "loss.png",
                title=self.model.name,
                metric=self.best_rule().metric,
                best_step=self.best.get("best_step"),
            )
        return summary

    def throughput(self) -> dict | None:
        """This invocation's steady-state speed (the first steps, where kernels load or
        compile, left out): samples/s, steps/s, the first step's seconds."""
        meter = getattr(self.bar, "meter", None)
        if meter is None:
            return None
        out = meter.overall()
        for key, digits in (("samples_per_sec", 1), ("steps_per_sec", 3), ("first_step_sec", 3)):
            if isinstance(out.get(key), float):
                out[key] = round(out[key], digits)
        return out


# --- strict JSON ------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs) -> str:
    return json.dumps(json_safe(value), allow_nan=False, default=str, **kwargs)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader (or a kill) sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a line cut short (by a kill) or damaged is skipped."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step", 0), int | float):
            rows.append(row)
    return rows


# --- the checkpoint's state.json, as a run reads it -----------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_run_state(state: dict, where: Path) -> dict:
    """``state`` if it has every field a resume reads, with the right types; else a
    CheckpointError naming the file and the field."""

    def need(key: str, ok, what: str, optional: bool = False) -> None:
        if key not in state:
            if optional:
                return
            raise CheckpointError(f"{where}: field `{key}` is missing ({what})")
        if not ok(state[key]):
            raise CheckpointError(
                f"{where}: field `{key}` must be {what}, found {json.dumps(state[key])}"
            )

    need("step", lambda v: _is_int(v) and v >= 0, "the step count, an integer >= 0")
    need("model_hash", lambda v: isinstance(v, str), "the model's structural hash, a string")
    need("data", lambda v: isinstance(v, dict), "the data stream's position, a mapping")
    need("optimizer", lambda v: isinstance(v, dict), "the optimizer's scalars, a mapping")
    need("epoch", _is_num, "a number", optional=True)
    need("total_steps", lambda v: v is None or _is_int(v), "an integer", optional=True)
    need("first_loss", lambda v: v is None or _is_num(v), "a number or null", optional=True)
    es_ok = lambda v: v is None or (  # noqa: E731
        isinstance(v, dict)
        and (v.get("best") is None or _is_num(v.get("best")))
        and (v.get("best_step") is None or _is_int(v.get("best_step")))
        and _is_int(v.get("bad_evals"))
    )
    need("early_stopping", es_ok, "null or {best, best_step, bad_evals}", optional=True)
    opt = state["optimizer"]
    scalars = opt.get("phases", [opt]) if isinstance(opt.get("phases"), list) else [opt]
    for i, one in enumerate(scalars):
        label = "optimizer" + (f".phases[{i}]" if "phases" in opt else "")
        if not isinstance(one, dict) or not isinstance(one.get("name"), str):
            raise CheckpointError(f"{where}: field `{label}.name` must be the optimizer's name")
        if not (_is_int(one.get("t")) and one["t"] >= 0):
            raise CheckpointError(
                f"{where}: field `{label}.t` must be the optimizer's step count (an integer "
                f">= 0), found {json.dumps(one.get('t'))}"
            )
    if "phases" in opt and not isinstance(opt["phases"], list):
        raise CheckpointError(f"{where}: field `optimizer.phases` must be a list")
    return state


# --- claiming the directory -------------------------------------------------------------------


class RunLock:
    """An advisory lock on a run directory (``fcntl.flock`` on ``<run>/.lock``, which holds the
    pid). The kernel releases it when the process ends, however it ends."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.fd: int | None = None

    def acquire(self) -> bool:
        """True if this process now holds the lock; False if another process does."""
        fd = os.open(self.out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        try:
            pid = (self.out / LOCK_FILE).read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "another process"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _holds_a_run(path: Path) -> bool:
    return any(p.name != LOCK_FILE for p in path.iterdir())


def _in_use(out: Path, lock: RunLock) -> RunDirError:
    return RunDirError(
        f"{out} is in use by another training run ({lock.holder()}); wait for it to end, "
        "or train into another --out"
    )


def claim(out: Path, *, resume: bool, existing: str = "version") -> tuple[Path, RunLock]:
    """Pick and lock the run directory.

    ``resume``: ``out`` itself (it must not be in use). Otherwise ``existing`` says what to do
    when ``out`` already holds a run: ``"version"`` trains into the first free ``out-2``,
    ``out-3``, ...; ``"overwrite"`` reuses ``out`` (:meth:`RunFiles.begin` then removes the
    earlier run's files); ``"error"`` refuses. RunDirError when ``out`` is locked by a live run.
    """
    if existing not in ("version", "overwrite", "error"):
        raise ValueError(f"existing must be version, overwrite or error, not {existing!r}")
    out = Path(out)
    if resume:
        lock = RunLock(out)
        if out.is_dir() and not lock.acquire():
            raise _in_use(out, lock)
        return out, lock
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory; choose another --out")
    base = out if out.name else Path(os.path.abspath(out))
    for k in range(1, 10_000):
        candidate = out if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            fresh = True
        except FileExistsError:
            fresh = False
        except OSError as err:
            raise RunDirError(f"cannot create the run directory {candidate}: {err}") from None
        if not candidate.is_dir():
            continue
        lock = RunLock(candidate)
        try:
            locked = lock.acquire()
        except OSError as err:
            raise RunDirError(f"cannot write to the run directory {candidate}: {err}") from None
        if not locked:
            if k == 1:
                raise _in_use(out, lock)
            continue
        if fresh or not _holds_a_run(candidate) or existing == "overwrite":
            return candidate, lock
        lock.release()
        if existing == "error":
            raise RunDirError(
                f"{out} already holds a run; resume it (--resume {out}), overwrite it "
                "(--overwrite), or train into another --out"
            )
    raise RunDirError(f"no free run directory next to {out}")


def clear_run(out: Path, *, everything: bool) -> None:
    """Remove an earlier run's best/ (``everything``: all the files a run writes) from ``out``."""
    names = RUN_DIRS + RUN_FILES if everything else (BEST_DIR,)
    for name in names:
        for path in (out / name, out / f".{name}.old", out / f".{name}.tmp"):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
