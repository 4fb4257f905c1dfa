"""Live training progress: a rich progress bar on a terminal, plain periodic lines otherwise.

``make_progress("auto")`` picks rich when stdout is a TTY and plain lines when it is not
(CI logs, pipes); ``"rich"``, ``"plain"`` and ``"none"`` force a choice. The trainer calls
``header`` once with what is about to run (spec, parameters, data, steps, device, run
directory), ``start``, ``update`` after every step, ``message`` for events (validation, early
stop), ``notice`` for what the user must see even with ``"none"`` (resuming at step k of N, a
versioned run directory, an interrupt), and ``close`` at the end.

Speeds and the ETA are steady-state (:class:`Meter`): the first ``WARMUP_STEPS`` steps of an
invocation, where Numba loads or compiles the kernels, are left out, and the rate is taken over
a sliding window of recent steps. Until there is one, no ETA is shown. Numba compiles a kernel
the first time it runs (or loads it from its cache): a first step, or the trainer's probe forward
before it (``with bar.slow(...)``), still running after ``SLOW_START`` seconds says that kernels
are being compiled.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections import deque
from typing import IO

WARMUP_STEPS = 2  # steps of each invocation left out of the speed (kernel loading, compiling)
WINDOW_SECONDS = 20.0  # the sliding window spans about this long ...
WINDOW_MIN_STEPS = 20  # ... but holds at least this many steps
WINDOW_MAX_STEPS = 10_000
SLOW_START = 2.0  # seconds: a first step still running after this is compiling kernels
COMPILING = "compiling kernels…"
CACHED = " (Numba caches them for later runs)"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _count(n: float) -> str:
    """1234 -> "1234", 201654 -> "202k", 3.2e6 -> "3.2M"."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}k" if n >= 1e4 else f"{n:.0f}"


def format_header(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(label) for label, _ in rows), default=0)
    return [title] + [f"  {label:<{width}}  {text}" for label, text in rows]


class Meter:
    """Steady-state training speed of one invocation.

    Steps after the first ``warmup`` enter a window of (time, step, samples) marks; the rates
    are over the window, which keeps the last ``WINDOW_SECONDS`` (at least
    ``WINDOW_MIN_STEPS`` steps). ``overall()`` is the steady rate over every step after the
    warm-up, for the summary."""

    def __init__(self, step: int, now: float | None = None, warmup: int = WARMUP_STEPS) -> None:
        self.t0 = time.perf_counter() if now is None else now
        self.first = step
        self.warmup = warmup
        self.first_step_sec: float | None = None
        self.marks: deque[tuple[float, int, int]] = deque()
        self.warm: tuple[float, int] | None = None  # (time, step) where steady state starts
        self.samples = 0  # after the warm-up
        self.all_samples = 0
        self.last = (self.t0, step)

    def add(self, step: int, samples: int, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self.all_samples += samples
        self.last = (now, step)
        if self.first_step_sec is None:
            self.first_step_sec = now - self.t0
        if step - self.first < self.warmup:
            return
        if self.warm is None:
            self.warm = (now, step)
            self.marks.append((now, step, 0))
            return
        self.samples += samples
        self.marks.append((now, step, self.samples))
        marks = self.marks
        while len(marks) > WINDOW_MIN_STEPS + 1 and (
            now - marks[1][0] >= WINDOW_SECONDS or len(marks) > WINDOW_MAX_STEPS
        ):
            marks.popleft()

    @property
    def steady(self) -> bool:
        return len(self.marks) >= 2 and self.marks[-1][0] > self.marks[0][0]

    def rates(self) -> tuple[float, float]:
        """(steps/s, samples/s) over the window; zeros before there is one."""
        if not self.steady:
            return 0.0, 0.0
        (t0, s0, n0), (t1, s1, n1) = self.marks[0], self.marks[-1]
        return (s1 - s0) / (t1 - t0), (n1 - n0) / (t1 - t0)

    def eta(self, total: int) -> float:
        """Seconds until step ``total`` at the window's rate; NaN before there is one."""
        rate = self.rates()[0]
        return (total - self.last[1]) / rate if rate > 0 else float("nan")

    def overall(self) -> dict:
        """The invocation's speed for the summary: steady state (every step after the warm-up)
        when there was one, else over all its steps (``steady: false``)."""
        out: dict = {"first_step_sec": self.first_step_sec, "warmup_steps": self.warmup}
        t, step = self.last
        if self.warm is not None and t > self.warm[0] and step > self.warm[1]:
            dt = t - self.warm[0]
            return {**out, "steady": True, "samples_per_sec": self.samples / dt,
                    "steps_per_sec": (step - self.warm[1]) / dt}  # fmt: skip
        if t > self.t0 and step > self.first:
            dt = t - self.t0
            return {**out, "steady": False, "samples_per_sec": self.all_samples / dt,
                    "steps_per_sec": (step - self.first) / dt}  # fmt: skip
        return {**out, "steady": False, "samples_per_sec": None, "steps_per_sec": None}


class Progress:
    """Silent progress (``"none"``); the base of the visible kinds."""

    slow_start: float | None = SLOW_START  # None: never say "compiling kernels"

    def header(self, title: str, rows: list[tuple[str, str]]) -> None:
        """What is about to run, before the first step."""

    def start(self, total: int, step: int) -> None:
        self.total, self.first = total, step
        self.meter = Meter(step)
        self.t0 = self.meter.t0
        self.samples = 0
        self._timer: threading.Timer | None = None
        if self.slow_start is not None and type(self).compiling is not Progress.compiling:
            self._timer = threading.Timer(self.slow_start, self.compiling)
            self._timer.daemon = True
            self._timer.start()

    def compiling(self) -> None:
        """Called from a timer thread while a slow first step runs."""

    @contextlib.contextmanager
    def slow(self, text: str, after: float | None = None):
        """Say ``text`` (a :meth:`message`) if the block still runs after ``after`` seconds
        (default ``slow_start``); nothing for the silent kind."""
        after = self.slow_start if after is None else after
        if after is None or type(self).message is Progress.message:
            yield
            return
        timer = threading.Timer(after, self.message, [text])
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _first_step_done(self) -> None:
        timer, self._timer = getattr(self, "_timer", None), None
        if timer is not None:
            timer.cancel()

    def rates(self, step: int) -> tuple[float, float, float]:
        """(steps/s, samples/s, seconds remaining) in steady state; zeros and NaN before."""
        rate, speed = self.meter.rates()
        return rate, speed, self.meter.eta(self.total)

    def update(self, step: int, stats: dict) -> None:
        """``stats``: loss, lr and samples (seen in this step)."""
        self._first_step_done()
        self.samples += stats.get("samples", 0)
        self.meter.add(step, stats.get("samples", 0))

    def message(self, text: str) -> None:
        pass

    def notice(self, text: str) -> None:
        """Shown whatever the kind (on stderr when there is no display)."""
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self._first_step_done()


class PlainProgress(Progress):
    """One line every ``interval`` seconds (and at the last step)."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.interval = interval
        self.last = 0.0

    def header(self, title: str, rows: list[tuple[str, str]]) -> None:
        for line in format_header(title, rows):
            self.message(line)

    def start(self, total: int, step: int) -> None:
        super().start(total, step)
        self.last = self.t0

    def compiling(self) -> None:
        self.message(f"step {self.first + 1}: {COMPILING}")

    def update(self, step: int, stats: dict) -> None:
        super().update(step, stats)
        now = time.perf_counter()
        if now - self.last < self.interval and step < self.total:
            return
        self.last = now
        rate, speed, eta = self.rates(step)
        if step >= self.total:  # the last line: the run's steady speed, not the window's
            speed = self.meter.overall()["samples_per_sec"] or 0.0
        line = f"step {step}/{self.total}  loss {stats.get('loss', float('nan')):.4f}"
        line += f"  lr {stats.get('lr', 0.0):.2e}"
        if speed > 0:
            line += f"  {_count(speed)} samples/s"
        if rate > 0 and step < self.total and math.isfinite(eta):
            line += f"  eta {_duration(eta)}"
        print(line, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def notice(self, text: str) -> None:
        self.message(text)


class RichProgress(Progress):
    """A live bar: step, loss, lr, steady-state throughput and ETA."""

    def __init__(self, console=None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        # narrow enough for an 80-column terminal
        self.bar = Progress(
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("loss [cyan]{task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[eta]}"),
            console=console,
        )
        self.task = None

    def header(self, title: str, rows: list[tuple[str, str]]) -> None:
        for line in format_header(title, rows):
            self.message(line)

    def start(self, total: int, step: int) -> None:
        self.task = self.bar.add_task(
            "train", total=total, completed=step, loss="-", lr="-", speed="", eta=""
        )
        super().start(total, step)
        self.bar.start()

    def compiling(self) -> None:
        self.bar.update(self.task, speed=COMPILING)

    def update(self, step: int, stats: dict) -> None:
        super().update(step, stats)
        rate, speed, eta = self.rates(step)
        if step >= self.total:
            speed = self.meter.overall()["samples_per_sec"] or 0.0
        self.bar.update(
            self.task,
            completed=step,
            loss=f"{stats.get('loss', float('nan')):.4f}",
            lr=f"{stats.get('lr', 0.0):.2e}",
            speed=f"{_count(speed)} samples/s" if speed else "",
            eta=f"eta {_duration(eta)}" if step < self.total and math.isfinite(eta) else "",
        )

    def message(self, text: str) -> None:
        self.bar.console.print(text, markup=False, highlight=False)

    def notice(self, text: str) -> None:
        self.message(text)

    def close(self) -> None:
        super().close()
        self.bar.stop()


def make_progress(kind: str | Progress = "auto") -> Progress:
    if isinstance(kind, Progress):
        return kind
    if kind == "auto":
        kind = "rich" if sys.stdout.isatty() else "plain"
    if kind == "rich":
        return RichProgress()
    if kind == "plain":
        return PlainProgress()
    if kind == "none":
        return Progress()
    raise ValueError(f"progress must be auto, rich, plain or none, not {kind!r}")
