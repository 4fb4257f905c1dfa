"""A busy neighbour for the benchmarks' `--busy` mode: one CPU-bound process beside the
measurement, as another user's job on a shared machine.

    with busy_neighbour(args.busy):
        ...measure...
"""

from __future__ import annotations

import multiprocessing
from contextlib import contextmanager


def _spin(stop) -> None:  # one core's worth of pure Python
    while not stop.is_set():
        sum(range(10_000))


@contextmanager
def busy_neighbour(on: bool = True):
    """Run the block beside one spinning process (nothing when `on` is false)."""
    if not on:
        yield
        return
    stop = multiprocessing.Event()
    neighbour = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    neighbour.start()
    try:
        yield
    finally:
        stop.set()
        neighbour.join()
