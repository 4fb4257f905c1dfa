"""What a run tells its user besides ``metrics.jsonl``: the header printed before the first
step, ``metrics.csv`` and TensorBoard event files.

- :func:`describe_run`: the header's facts (spec, parameters trainable/frozen/buffers, data and
  its sizes, steps × batch × accumulate, optimizer, device and threads, MPI ranks, run directory).
- :func:`csv_columns` / :func:`csv_lines`: ``metrics.csv``, one line per ``metrics.jsonl`` row.
  Its columns are the union of the rows' keys in the order they first appear (``step`` first),
  so a column that appears later (``val_*`` at the first evaluation) rewrites the file once.
- :class:`TensorBoardLog`: event files under ``tensorboard/train`` and ``tensorboard/val``
  (Keras's layout, so ``loss`` and ``val_loss`` share a chart), written with tensorboardX when it
  is installed (``pip install 'graphc[tensorboard]'``); without it nothing is written.

The event files are written synchronously, one event per logged row, flushed at once: no
writer thread, no queue, nothing lost to a kill beyond the row in flight.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_HINT = "pip install 'graphc[tensorboard]'"
_NOT_SCALARS = ("step", "time")  # the x axis and wall time: TensorBoard has both already


# --- the header ---------------------------------------------------------------------------------


def _n(x: int) -> str:
    return f"{x:,}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def describe_run(run) -> tuple[str, list[tuple[str, str]]]:
    """(title, [(label, text), ...]) of a run about to take its first step."""
    model, cfg, setup = run.model, run.cfg, run.setup
    spec = getattr(model, "spec_path", None)
    title = f"training {model.name}" + (f" from {spec}" if spec else "")
    rows = [("parameters", _describe_params(model, run.trainable))]
    rows.append(("data", _describe_data(setup)))
    rows.append(("steps", _describe_steps(run)))
    rows.append(("optimizer", _describe_optimizer(cfg)))
    rows.append(("device", describe_device(run.world, cfg.batch)))
    rows.append(("run dir", str(run.out)))
    if getattr(run, "tensorboard", None) is not None:
        rows.append(("tensorboard", f"tensorboard --logdir {run.out / TENSORBOARD_DIR}"))
    else:
        reason = getattr(run, "tensorboard_missing", None) or "tensorboardX is not installed"
        rows.append(("tensorboard", f"off ({reason}): {TENSORBOARD_HINT} to write event files"))
    return title, rows


def _describe_params(model, trainable: list[str]) -> str:
    trained = set(trainable)
    counts = {"trainable": 0, "frozen": 0, "buffers": 0}
    for name, p in model.params.items():
        size = int(np.prod(p.shape, dtype=np.int64))
        kind = "trainable" if name in trained else ("frozen" if p.trainable else "buffers")
        counts[kind] += size
    return ", ".join(f"{_n(v)} {k}" for k, v in counts.items() if v or k == "trainable")


def _describe_data(setup) -> str:
    info, data = setup.data.info, setup.data
    train = info.get("train_size")
    val = len(data.val) if data.val is not None else 0
    text = f"{setup.feed.source}: " + (
        f"{_n(train)} training samples" if train else "an endless generated stream"
    )
    return text + (f", {_n(val)} validation" if val else ", no validation set")


def _describe_steps(run) -> str:
    cfg = run.cfg
    text = f"{_n(run.total)}"
    per_epoch = getattr(run.loader, "steps_per_epoch", None)
    if per_epoch:
        epochs = run.total * cfg.accumulate / per_epoch
        text += f" ({epochs:.3g} epochs)"
    if run.step:
        text += f", from step {_n(run.step)}"
    text += f" × batch {cfg.batch}"
    if cfg.accumulate > 1:
        text += f" × {cfg.accumulate} accumulated = {_n(cfg.batch * cfg.accumulate)} samples a step"
    return text


def _describe_optimizer(cfg) -> str:
    opt, sched = cfg.optimizer, cfg.schedule
    text = f"{opt.get('name')} lr {opt.get('lr', 0):g}"
    if sched.get("name", "constant") != "constant":
        text += f", {sched['name']} schedule"
    if sched.get("warmup"):
        text += f", {_plural(sched['warmup'], 'warmup step')}"
    if cfg.clip_grad_norm is not None:
        text += f", clip {cfg.clip_grad_norm:g}"
    if cfg.phases:
        text += f"; {_plural(len(cfg.phases), 'phase')}"
    return text


def kernel_threads() -> int | None:
    """Threads of graphc's kernel pool, when the kernels are loaded (the runtime itself never
    loads Numba to find out)."""
    if "graphc.kernels" not in sys.modules:
        return None
    try:
        from graphc.kernels.threads import get_threads

        return get_threads()
    except Exception:  # noqa: BLE001 - a header line is not worth failing a run over
        return None


def describe_device(world, batch: int) -> str:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    text = f"CPU, {_plural(cores, 'core')}"
    threads = kernel_threads()
    if threads:
        text += f", {_plural(threads, 'kernel thread')} (--threads, GRAPHC_THREADS)"
    if world.parallel:
        text += f"; {world.size} MPI ranks, {batch // world.size} samples each"
    return text


# --- metrics.csv --------------------------------------------------------------------------------


def csv_columns(rows: list[dict]) -> list[str]:
    """The union of the rows' keys, ``step`` first, then in the order they first appear."""
    columns = {"step": None}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return "" if value is None else int(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value if isinstance(value, int | str) else str(value)


def csv_lines(rows: list[dict], columns: list[str], *, header: bool) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    if header:
        out.writerow(columns)
    for row in rows:
        out.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


# --- TensorBoard --------------------------------------------------------------------------------


# What tensorboardX's package __init__ imports when it can, for what graphc never logs: torch
# (about a second, and another thread pool in this process) only to recognise torch tensors,
# boto3 (~0.1 s of a cached start) only for s3:// log directories. Those not already loaded are
# hidden from it: we log floats to local files.
_HIDDEN_FROM_TENSORBOARDX = ("torch", "boto3")


def _import_tensorboardx():
    """tensorboardX's event writer and protos."""
    hide = (
        []
        if "tensorboardX" in sys.modules
        else [m for m in _HIDDEN_FROM_TENSORBOARDX if m not in sys.modules]
    )
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` -> ImportError
    try:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.proto.summary_pb2 import Summary
    finally:
        for name in hide:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return EventsWriter, Event, SessionLog, Summary


def tensorboard_unavailable() -> str | None:
    """None when tensorboardX can be loaded, else why not (one short phrase)."""
    try:
        _import_tensorboardx()
    except ModuleNotFoundError:
        return "tensorboardX is not installed"
    except Exception as err:  # noqa: BLE001 - a broken install must not stop training
        return f"tensorboardX could not be loaded: {type(err).__name__}: {err}"
    return None


class TensorBoardLog:
    """Scalars of every metrics row: ``tensorboard/train`` (loss, accuracy, lr, grad_norm,
    samples_per_sec, ...) and ``tensorboard/val`` (the ``val_*`` keys without their prefix).

    ``purge_step`` (a resumed run: its checkpoint's step + 1) tells TensorBoard to drop what an
    earlier process logged from that step on, so the curves do not double back."""

    def __init__(self, logdir: Path, *, start_step: int = 0, purge_step: int | None = None):
        EventsWriter, Event, SessionLog, self._summary = _import_tensorboardx()
        self._event = Event
        self.writers: dict[str, Any] = {}
        # one file per process and start: a resume within the same second gets its own name
        suffix = f".graphc{os.getpid()}.s{start_step:012d}"
        for split in ("train", "val"):
            path = logdir / split
            path.mkdir(parents=True, exist_ok=True)
            writer = EventsWriter(str(path / "events"), suffix)
            if purge_step is not None:
                writer.write_event(Event(step=purge_step, file_version="brain.Event:2"))
                writer.write_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
            writer.flush()
            self.writers[split] = writer

    def add(self, row: dict, walltime: float | None = None) -> None:
        step = row.get("step")
        if not isinstance(step, int):
            return
        values: dict[str, list] = {"train": [], "val": []}
        for key, value in row.items():
            if key in _NOT_SCALARS or isinstance(value, bool):
                continue
            if not isinstance(value, int | float | np.number) or not math.isfinite(value):
                continue
            split, tag = ("val", key[4:]) if key.startswith("val_") else ("train", key)
            values[split].append(self._summary.Value(tag=tag, simple_value=float(value)))
        now = time.time() if walltime is None else walltime
        for split, vals in values.items():
            if vals:
                event = self._event(wall_time=now, step=step, summary=self._summary(value=vals))
                self.writers[split].write_event(event)
                self.writers[split].flush()

    def close(self) -> None:
        for writer in self.writers.values():
            with contextlib.suppress(OSError):
                writer.close()
        self.writers = {}
