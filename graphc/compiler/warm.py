"""Compile a model's kernels before its first step: only the specialisations it calls, in parallel.

A cold start (empty Numba cache) used to compile each kernel lazily at its first call, one after
the other in the trainer's process: ~15-30 s for the transformer, nearly all of it Numba typing
and LLVM, on one core. Here the exact Numba signatures the first step will ask for
(graphc.compiler.predict, from the driver's typed kernel calls) are compiled by this process and
`helpers()` helper processes at once (`graphc.kernels.precompile`: they share the list through
claim files and Numba's disk cache; the trainer loads what the helpers compiled from the cache).

    report = warm(model, say=print)   # before the first forward; `say` gets the notice

A cached start loads every predicted kernel from the cache, says nothing and starts no helper.
`graphc train` starts the helpers as soon as it sees the kernel library's cache empty
(`precompile.start_early`): they get Numba ready while the spec is read, and `warm` hands them
the list.
A prediction that does not match (a kernel this module cannot type, a Numba that types an
argument differently) only costs the old lazy compile at the call: the driver still calls the
dispatchers with real arrays.

    GRAPHC_COMPILE_HELPERS=N   helper processes (default: the usable cores minus one, at most 3;
                               0 compiles in this process only, still ahead of the first step)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from graphc.kernels.precompile import Helpers, Job, Worklist, helpers, take_early
from graphc.kernels.threads import usable_cores

# ---- the estimate --------------------------------------------------------------------------

# Seconds of one core to compile a kernel, measured on the reference specs (CPU time per job,
# compiled serially in a fresh process with empty caches; numba 0.68, 2026-12-01, after the
# callees' quick machine code, graphc.kernels._codegen); a kernel that shares helpers with one
# compiled before it costs less than listed. Not listed: DEFAULT_COST.
COSTS = {
    "attention_fwd": 3.2,
    "attention_bwd": 2.8,
    "linear_fwd": 0.5,
    "linear_bwd": 1.2,
    "add_norm_fwd": 1.25,
    "add_norm_bwd": 1.4,
    "layernorm_fwd": 1.2,
    "layernorm_bwd": 1.3,
    "embedding_fwd": 0.5,
    "embedding_bwd": 0.15,
    "positional_encoding_fwd": 0.5,
    "positional_encoding_bwd": 0.3,
    "cross_entropy_fwd": 0.9,
    "cross_entropy_bwd": 0.4,
    "adam_update": 0.5,
    "sum_of_squares": 0.3,
    "conv2d_fwd": 3.2,
    "conv2d_bwd": 3.4,
    "maxpool2d_fwd": 1.2,
    "maxpool2d_bwd": 0.3,
    "lstm_fwd": 3.5,
    "lstm_bwd": 3.9,
}
DEFAULT_COST = 0.8
GENERATED_COST = 0.5  # a generated pointwise loop (gelu's forward ~1 s, relu's ~0.2 s, backwards ~0.2 s)
START_COST = 1.0  # a process's first compile (Numba's own set-up), a helper's imports


def _cost(jobs: list[Job]) -> float:
    kernels = {(j.module, j.name): j for j in jobs}  # a kernel called alike in every layer compiles once
    return sum(GENERATED_COST if j.path else COSTS.get(j.label, DEFAULT_COST) for j in kernels.values())


def estimate(jobs: list[Job], processes: int) -> float:
    """Seconds to compile `jobs` with this many processes, slowed by the machine's load."""
    work = _cost(jobs)
    seconds = START_COST + work / max(1, processes)
    try:
        busy = os.getloadavg()[0]  # other runnable processes share the cores
    except OSError:
        busy = 0.0
    return seconds * max(1.0, (busy + processes) / max(1, usable_cores()))


def schedule(jobs: list[Job], n_helpers: int) -> list[int]:
    """The order the trainer walks the list in; helpers walk it from the end. A kernel module's
    jobs stay together: they share helper functions, compiled once by the process that takes
    the module rather than by two at once (the transformer's attention backward took 4.2 s of
    CPU beside its forward compiling in the other process, 3.0 s after it in the same one).
    The modules are split between the front (the trainer) and the back (the helpers) costliest
    first, each to the side that would finish it sooner; the back's costliest at its end. A
    module that is more than one process's share of the work (the LSTM's cores) is split after
    all: waiting costs more than compiling some helpers twice."""
    by_module: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        by_module.setdefault(job.path or job.module, []).append(i)
    share = _cost(jobs) / (1 + n_helpers)
    groups = [[i] for g in by_module.values() if _cost([jobs[i] for i in g]) > share for i in g]
    groups += [g for g in by_module.values() if _cost([jobs[i] for i in g]) <= share]
    front, back, loads = [], [], [0.0, 0.0]
    for group in sorted(groups, key=lambda g: -_cost([jobs[i] for i in g])):
        cost = _cost([jobs[i] for i in group])
        side = 0 if n_helpers == 0 or loads[0] + cost <= (loads[1] + cost) / n_helpers else 1
        loads[side] += cost
        (front if side == 0 else back).append(group)
    return [i for group in front + back[::-1] for i in group]


# ---- compiling -----------------------------------------------------------------------------


@dataclass
class Report:
    jobs: int = 0  # predicted specialisations
    cached: bool = True  # every one was in the disk cache
    estimate: float = 0.0  # seconds announced (cold start)
    seconds: float = 0.0  # spent here
    helpers: int = 0
    compiled_here: list[int] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)  # kernels that may compile at their call


def warm(model, say=None, processes: int | None = None, extra: list[Job] = ()) -> Report:
    """Make every kernel specialisation of `model`'s training step ready before it runs: load
    them from Numba's disk cache or, on a cold start, compile them in this process and helper
    processes at once. `say(text)` is called once, before compiling, with a notice and the
    estimated time; it is not called on a cached start. `extra`: jobs the step calls outside the
    model (the optimizer's, runtime.optim.kernel_jobs)."""
    t0 = time.perf_counter()
    predicted, unpredicted = model.kernel_jobs()
    jobs = predicted + list(extra)
    report = Report(jobs=len(jobs), uncovered=unpredicted)
    team = take_early() or Helpers()  # graphc train starts helpers early on a cold cache
    try:
        work = Worklist(team.folder, jobs, alive=team.alive)
        work.cached_only = True
        missing = next(
            (i for i in range(len(jobs)) if work.signature(i) is not None and not work.ensure(i)), None
        )
        work.cached_only = False
        work.sigs = {i: s for i, s in work.sigs.items() if s is not None}
        if missing is None:
            report.seconds = time.perf_counter() - t0
            return report
        report.cached = False
        if not team.procs:
            n = helpers() if processes is None else processes
            team.start(min(n, len(jobs) - missing - 1))  # no helper for a job or two
        report.helpers = len(team.procs)
        report.estimate = estimate(jobs[missing:], 1 + report.helpers)
        if say is not None:
            say(f"compiling kernels (first run, ~{report.estimate:.0f} s; Numba caches them for later runs)")
        order = schedule(jobs, report.helpers)
        if team.procs:
            team.publish(jobs, order)
        work.work(order)  # ours compiled, the helpers' loaded from the cache
        report.compiled_here = list(work.compiled)
    finally:
        team.close()
    report.seconds = time.perf_counter() - t0
    return report
