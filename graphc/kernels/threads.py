"""graphc's one thread pool: Numba's threading layer runs every parallel kernel; BLAS stays on
one thread inside it.

Why one pool: numpy and Numba (through scipy) each load an OpenBLAS with its own spinning
threads, and Numba's parallel loops bring a third pool. On a 2-core machine two pools steal the
cores from each other; measured with another CPU-bound process running, OpenBLAS at 2 threads
made the transformer's step up to 28x slower than at 1. So the kernels split their own work
(`graphc.kernels.parallel.run_blocks` over row blocks, batch items or heads; each block's GEMM
is a single-threaded BLAS call on contiguous rows) and only Numba's pool has threads. Its workers spin briefly after a
region (GNU OpenMP's default), which keeps their core when a neighbour is busy: measured here,
a 2-thread region kept its 2x with a CPU-bound neighbour; a short spin (GOMP_SPINCOUNT=10000)
lost it (0.5x).

    GRAPHC_THREADS=N   threads for the kernels (default: the cores this process may use;
                       under MPI, those cores shared among the ranks on the host)

Fork: with Numba's OpenMP layer (GNU OpenMP, the default where libgomp is installed), a
process that has run graphc's kernels cannot fork() a child that goes on running Python:
Numba terminates such a child, since GNU OpenMP is not fork-safe. Use multiprocessing's
"spawn" or "forkserver" start method, or NUMBA_THREADING_LAYER=workqueue (fork-safe; measured
here, its regions cost ~50 µs to start against ~2 µs, so small kernels gain less).

`set_threads(n)` changes it at run time (`graphc train --threads`, benchmarks). Unless the user
chose a count, `graphc train` lets a `ThreadGovernor` pick 1 or all threads from measured step
times, so a busy machine never makes the default slower than one thread.
"""

from __future__ import annotations

import os
import sys
import time

import numba

from graphc.kernels._blas import set_blas_threads


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


_warned = False  # about a GRAPHC_THREADS that is not a count
_user_chose = False  # GRAPHC_THREADS or --threads: the governor leaves the count alone


def set_threads(n: int, *, by_user: bool = False) -> int:
    """Use `n` threads for the kernels (clamped to 1..NUMBA_NUM_THREADS); returns the count.
    `by_user`: the user asked for it (`--threads`), so no ThreadGovernor changes it."""
    global _user_chose
    _user_chose = _user_chose or by_user
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def chosen_by_user() -> bool:
    return _user_chose


def get_threads() -> int:
    return numba.get_num_threads()


def default_threads(local_ranks: int = 1) -> int:
    """GRAPHC_THREADS if set (a positive integer), else the usable cores shared among
    `local_ranks` processes on this host."""
    value = os.environ.get("GRAPHC_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        global _user_chose
        _user_chose = True
        return int(value)
    global _warned
    if value and not _warned:  # a user's typo must not pass silently (said once)
        _warned = True
        print(
            f"graphc: GRAPHC_THREADS={value!r} is not a positive integer; using the default", file=sys.stderr
        )
    return max(1, usable_cores() // max(1, local_ranks))


_configured = False


def configure(local_ranks: int = 1) -> int:
    """BLAS on one thread, the kernels on `default_threads(local_ranks)`; returns that count."""
    global _configured
    _configured = True
    set_blas_threads(1)
    return set_threads(default_threads(local_ranks))


def ensure_configured() -> None:
    """configure() unless something (`graphc train` under MPI: the ranks on this host share
    its cores) already did: importing the compiler must not undo that."""
    if not _configured:
        configure()


class ThreadGovernor:
    """Keeps the thread count that makes steps fastest, measured on the steps themselves.

    Why: a parallel region ends when its slowest thread does. On a machine where other
    processes want the cores, a thread of ours can lose its core for a whole scheduler time
    slice, and every region waits for it: measured here with four busy neighbours, a 0.3 ms
    two-thread region took 16 ms. One thread never waits for another. So the governor times
    each step and, now and then, tries the other choice (1 or all threads) for a few steps,
    keeping whichever was faster.

    What a probe may cost is bounded: it stops at its first step slower than twice the
    current median (a bad choice costs one step), and after a probe that changed nothing the
    next one waits long enough for its cost to stay under ~5% of the steps in between (twice
    as long as before at least, at most `max_interval` steps, so a neighbour that has left is
    noticed). A step 3x slower than the current choice's usual time (a neighbour arrived)
    triggers a probe at once.

        governor = ThreadGovernor()
        for batch in data:
            with governor.step():
                train_step(batch)
    """

    def __init__(self, threads: int | None = None, *, warmup: int = 2, probe_steps: int = 3,
                 max_interval: int = 256, window: int = 8) -> None:  # fmt: skip
        self.most = threads or get_threads()
        self.choice = self.most  # the count kept
        self.current = self.most  # the count of the next step (differs during a probe)
        self.warmup, self.probe_steps, self.window = warmup, probe_steps, window
        self.max_interval = max_interval
        self.interval = 1  # steps at the current choice before the next probe
        self.recent: list[float] = []  # step times at `choice`, newest last
        self.trial: list[float] = []  # step times of the running probe
        self.steps = 0
        self.since_probe = 0

    @property
    def active(self) -> bool:
        return self.most > 1

    @property
    def probing(self) -> bool:
        return self.current != self.choice

    def step(self):
        """A context manager around one step: sets the thread count, times the step."""
        return _Timed(self)

    # -- the policy ------------------------------------------------------------------------
    def _before(self) -> None:
        if self.active:
            set_threads(self.current)

    def _after(self, seconds: float) -> None:
        self.steps += 1
        if not self.active or self.steps <= self.warmup:
            return  # compiling, loading caches: not what a step costs
        if self.probing:
            self.trial.append(seconds)
            if seconds > 2.0 * _median(self.recent) or len(self.trial) >= self.probe_steps:
                self._decide()
            return
        slowed = seconds > 3.0 * _median(self.recent)
        # after a sudden slowdown only the new level counts: compare the probe with it
        self.recent = [seconds] if slowed else (self.recent + [seconds])[-self.window :]
        self.since_probe += 1
        if self.since_probe >= self.interval or slowed:
            self.trial = []
            self.current = 1 if self.choice == self.most else self.most

    def _decide(self) -> None:
        mine, theirs = _median(self.recent), _median(self.trial)
        if len(self.trial) >= self.probe_steps and theirs < 0.95 * mine:
            self.choice = self.current
            self.recent = list(self.trial)
            penalty = mine / theirs - 1.0  # what a step of the old choice costs extra
            self.interval = min(self.max_interval, max(8, round(20 * penalty)))
        else:
            self.current = self.choice
            penalty = max(self.trial) / mine - 1.0  # what each probe step cost extra
            self.interval = min(self.max_interval, max(2 * self.interval, round(20 * penalty)))
        self.since_probe = 0
        self.trial = []


class _Timed:
    def __init__(self, governor: ThreadGovernor) -> None:
        self.governor = governor

    def __enter__(self):
        self.governor._before()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.governor._after(time.perf_counter() - self.t0)


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if s else float("inf")
