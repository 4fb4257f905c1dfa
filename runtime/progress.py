"""Live training progress: a rich progress bar on a terminal, plain periodic lines otherwise.

``make_progress("auto")`` picks rich when stdout is a TTY and plain lines when it is not
(CI logs, pipes); ``"rich"``, ``"plain"`` and ``"none"`` force a choice. The trainer calls
``start`` once, ``update`` after every step, ``message`` for events (validation, early stop),
``notice`` for what the user must see even with ``"none"`` (resuming at step k of N, a
versioned run directory, an interrupt), and ``close`` at the end.
"""

from __future__ import annotations

import sys
import time
from typing import IO


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


class Progress:
    """Silent progress (``"none"``); the base of the visible kinds."""

    def start(self, total: int, step: int) -> None:
        self.total, self.first, self.t0 = total, step, time.perf_counter()
        self.samples = 0

    def rates(self, step: int) -> tuple[float, float, float]:
        """(steps/s, samples/s, seconds remaining), measured over this invocation."""
        elapsed = time.perf_counter() - self.t0
        if elapsed <= 0 or step <= self.first:
            return 0.0, 0.0, float("nan")
        rate = (step - self.first) / elapsed
        return rate, self.samples / elapsed, (self.total - step) / rate

    def update(self, step: int, stats: dict) -> None:
        """``stats``: loss, lr and samples (seen in this step)."""
        self.samples += stats.get("samples", 0)

    def message(self, text: str) -> None:
        pass

    def notice(self, text: str) -> None:
        """Shown whatever the kind (on stderr when there is no display)."""
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class PlainProgress(Progress):
    """One line every ``interval`` seconds (and at the last step)."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.interval = interval
        self.last = 0.0

    def start(self, total: int, step: int) -> None:
        super().start(total, step)
        self.last = self.t0

    def update(self, step: int, stats: dict) -> None:
        super().update(step, stats)
        now = time.perf_counter()
        if now - self.last < self.interval and step < self.total:
            return
        self.last = now
        rate, speed, eta = self.rates(step)
        line = f"step {step}/{self.total}  loss {stats.get('loss', float('nan')):.4f}"
        line += f"  lr {stats.get('lr', 0.0):.2e}"
        if speed > 0:
            line += f"  {_count(speed)} samples/s"
        if rate > 0 and step < self.total:
            line += f"  eta {_duration(eta)}"
        print(line, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def notice(self, text: str) -> None:
        self.message(text)


class RichProgress(Progress):
    """A live bar: step, loss, lr, throughput and ETA."""

    def __init__(self, console=None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        # narrow enough for an 80-column terminal
        self.bar = Progress(
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("loss [cyan]{task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = None

    def start(self, total: int, step: int) -> None:
        super().start(total, step)
        self.bar.start()
        self.task = self.bar.add_task(
            "train", total=total, completed=step, loss="-", lr="-", speed=""
        )

    def update(self, step: int, stats: dict) -> None:
        super().update(step, stats)
        speed = self.rates(step)[1]
        self.bar.update(
            self.task,
            completed=step,
            loss=f"{stats.get('loss', float('nan')):.4f}",
            lr=f"{stats.get('lr', 0.0):.2e}",
            speed=f"{_count(speed)} samples/s" if speed else "",
        )

    def message(self, text: str) -> None:
        self.bar.console.print(text, markup=False, highlight=False)

    def notice(self, text: str) -> None:
        self.message(text)

    def close(self) -> None:
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
