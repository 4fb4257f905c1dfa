"""Compile a list of predicted kernel specialisations, shared among processes.

`graphc.compiler.predict` predicts, from a model's kernel calls, which njit specialisations its
first step will ask for, as a list of `Job`s. Every process that works on the list (the
trainer and its helpers, `python -m graphc.kernels.precompile DIR`) walks it in call order and
*claims* each job by creating `DIR/<i>.claim` (O_EXCL: exactly one process wins). The winner
compiles it with Numba (`cache=True` writes it to the disk cache) and then creates
`DIR/<i>.done`; the others go on to the next job. A process that needs a job it did not
compile (its return type types a later job, or the trainer needs every kernel) waits for the
`.done` file and loads the kernel from Numba's disk cache, a few milliseconds.

Nothing here can make a step wrong: a job is only a hint. A wrong prediction compiles a
specialisation nobody calls (the real one compiles at the call, as without this module); a
helper that dies leaves its claimed jobs to the caller. Numba writes each cache file to a
temporary name and renames it, so a process killed mid-compile leaves no corrupt entry.

This module imports only Numba and the kernels (no sympy, no front end), so a helper process
starts in a fraction of a second.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from numba.core import types

POLL = 0.02  # seconds between looks at a job another process is compiling


@dataclass(frozen=True)
class Ret:
    """An argument typed by what an earlier job returns: element `slot` of job `job`'s result
    tuple, as an array of rank `ndim` when the driver reshapes it (a loss to (), a view)."""

    job: int
    slot: int
    ndim: int | None = None


@dataclass(frozen=True)
class Job:
    """One njit specialisation: function `name` of `module` (imported from `path` for a
    generated module), for these argument types (numba types or `Ret`)."""

    module: str
    name: str
    args: tuple
    label: str  # what it is called in the driver, for estimates
    path: str | None = None


def job_for(kernel, args: tuple) -> Job:
    """The job of calling njit `kernel` with these arguments (real values, typed as Numba
    types a call's arguments)."""
    from numba.core.typing.typeof import Purpose, typeof

    fn = kernel.py_func
    return Job(fn.__module__, fn.__name__, tuple(typeof(a, Purpose.argument) for a in args), fn.__name__)


def dispatcher(job: Job):
    module = sys.modules.get(job.module)
    if module is None and job.path is not None:  # a generated kernel module, as kernelgen loads it
        spec = importlib.util.spec_from_file_location(job.module, job.path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[job.module] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:  # (the file is gone): no half-made module for kernelgen to find
            del sys.modules[job.module]
            raise
    elif module is None:
        module = importlib.import_module(job.module)
    return getattr(module, job.name)


def load_cached(disp, sig: tuple) -> bool:
    """Add the specialisation `sig` from Numba's disk cache without compiling; False when it is
    not there. The cache-hit half of `Dispatcher.compile` (numba 0.60-0.68)."""
    from numba.core.compiler_lock import global_compiler_lock

    if sig in disp.overloads:
        return True
    try:
        with global_compiler_lock:
            cres = disp._cache.load_overload(sig, disp.targetctx)
            if cres is None:
                return False
            disp._cache_hits[sig] += 1
            if not cres.objectmode:
                disp.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
            disp.add_overload(cres)
            return True
    except Exception:  # noqa: BLE001 - an unreadable entry or another numba: compile instead
        return False


PENDING = "pending"  # a type this job needs comes from a job another process is compiling


class Worklist:
    """One process's view of the shared job list in `folder`. Claims are per specialisation
    (module, function, argument types), so a kernel called the same way twice compiles once."""

    def __init__(self, folder: str | Path, jobs: list[Job], alive=None, stop=None):
        self.folder = Path(folder)
        self.jobs = jobs
        self.alive = alive or (lambda: True)  # False: nobody else will finish what they claimed
        self.stop = stop or (lambda: False)  # True: give up (a helper whose trainer is gone)
        self.sigs: dict[int, tuple | None] = {}
        self.compiled: list[int] = []  # jobs this process compiled
        self.seconds: dict[int, float] = {}  # and how long each took
        self.cached_only = False  # ensure() only loads from the cache (is anything missing?)

    def key(self, i: int) -> str:
        job = self.jobs[i]
        text = f"{job.module}.{job.name}{self.sigs[i]}"
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def _mark(self, i: int, kind: str) -> bool:
        try:
            path = self.folder / f"{self.key(i)}.{kind}"
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False
        except OSError:  # the folder is gone: the trainer has finished with the list
            return kind != "claim"

    def claim(self, i: int) -> bool:
        return self._mark(i, "claim")

    def done(self, i: int) -> bool:
        return (self.folder / f"{self.key(i)}.done").exists()

    def signature(self, i: int, wait: bool = True):
        """Job `i`'s argument types; None when one is unknown, PENDING (only if not `wait`)
        while one comes from a job another process has not finished."""
        if i in self.sigs:
            return self.sigs[i]
        sig: list = []
        for a in self.jobs[i].args:
            if isinstance(a, Ret):
                a = self.returned(a, wait)
                if a is PENDING:
                    return PENDING
            if a is None:
                break
            sig.append(a)
        self.sigs[i] = tuple(sig) if len(sig) == len(self.jobs[i].args) else None
        return self.sigs[i]

    def returned(self, ref: Ret, wait: bool = True):
        """The type of an earlier job's result element (loading or compiling that job here)."""
        ok = self.ensure(ref.job, wait)
        if ok is not True:
            return ok or None
        disp, sig = dispatcher(self.jobs[ref.job]), self.sigs[ref.job]
        result = disp.overloads[sig].signature.return_type
        if not isinstance(result, types.BaseTuple) or ref.slot >= len(result):
            return None
        t = result[ref.slot]
        if ref.ndim is not None and isinstance(t, types.Array):
            t = t.copy(ndim=ref.ndim, layout="C")
        return t

    def compile(self, i: int) -> bool:
        disp = dispatcher(self.jobs[i])
        t = time.perf_counter()
        try:
            disp.compile(self.sigs[i])
        except Exception:  # noqa: BLE001 - a wrong prediction: the real call compiles what it needs
            return False
        self.compiled.append(i)
        self.seconds[i] = time.perf_counter() - t
        return True

    def ensure(self, i: int, wait: bool = True):
        """Job `i` is in this process: True once loaded from the cache (when whoever claimed it
        is done) or compiled here (claimed, or its compiler gone); False if it cannot be; with
        `wait` false, PENDING while another process compiles it or a job it depends on."""
        sig = self.signature(i, wait)
        if sig is None or sig is PENDING:
            return sig is PENDING and PENDING
        disp = dispatcher(self.jobs[i])
        if sig in disp.overloads:
            return True
        if self.cached_only:
            return load_cached(disp, sig)
        if self.claim(i):
            ok = self.compile(i)
            self._mark(i, "done")
            return ok
        if not wait and not self.done(i) and self.alive():
            return PENDING
        while not self.done(i) and self.alive():
            time.sleep(POLL)
        if self.stop():
            return False
        return load_cached(disp, sig) or self.compile(i)

    def work(self, order: list[int] | None = None, from_the_end: bool = False) -> None:
        """Compile every job nobody has claimed, in `order` (default: call order), or from its
        end back (a helper: the trainer takes the front, so the two rarely compile the same
        helper functions at the same time); a job whose types wait on another process's job is
        taken up again after the others."""
        todo = list(range(len(self.jobs)) if order is None else order)[:: -1 if from_the_end else 1]
        while todo and not self.stop():
            later = [i for i in todo if self.ensure(i, wait=False) is PENDING]
            if len(later) == len(todo):  # everything left waits on the others
                if not self.alive():  # they are gone: ensure() compiles here
                    later = [i for i in later if self.ensure(i) is PENDING]
                else:
                    time.sleep(POLL)
            todo = later


class Helpers:
    """The shared folder of a job list and the helper processes working on it
    (`python -m graphc.kernels.precompile FOLDER`). Helpers started before `publish` writes the
    list get Numba ready meanwhile (imports, its first compile's set-up: ~1 s of a core that
    would otherwise wait for the trainer to read the spec)."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="graphc-compile-")
        self.procs: list[subprocess.Popen] = []

    def start(self, n: int) -> None:
        cmd = [sys.executable, "-m", "graphc.kernels.precompile", self.folder]
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs += [subprocess.Popen(cmd, **quiet) for _ in range(n)]

    def publish(self, jobs: list[Job], order: list[int]) -> None:
        """Hand the list over, and the order the trainer walks it in (renamed into place: a
        helper never reads half of it)."""
        tmp = Path(self.folder, "jobs.pickle.tmp")
        tmp.write_bytes(pickle.dumps((jobs, order)))
        tmp.rename(Path(self.folder, "jobs.pickle"))

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def close(self) -> None:
        """Remove the list (a helper still running stops at its next job) and end them."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for p in self.procs:
            if p.poll() is None:
                p.terminate()  # mid-compile is safe: Numba renames finished cache files into place
            p.wait()


def helpers() -> int:
    """How many helper processes a cold start uses: GRAPHC_COMPILE_HELPERS, else the usable
    cores minus one (at most 3)."""
    value = os.environ.get("GRAPHC_COMPILE_HELPERS", "").strip()
    if value.isdigit():
        return int(value)
    from graphc.kernels.threads import usable_cores

    return max(0, min(3, usable_cores() - 1))


_early: Helpers | None = None
_taken = False  # a warm-up has run in this process: its kernels are compiled or loaded now


def start_early(n: int) -> None:
    """Start `n` helpers now for this process's first `take_early`, if the kernel library's
    cache was empty when the process started (graphc train: a cold start is certain)."""
    from graphc.kernels import _cache

    global _early
    if _early is None and not _taken and _cache.cold and n > 0:
        _early = Helpers()
        _early.start(n)
        atexit.register(_early.close)  # nobody took them (the run stopped before compiling)


def take_early() -> Helpers | None:
    global _early, _taken
    early, _early, _taken = _early, None, True
    return early


def _get_ready() -> None:
    """Numba's one-time set-up (typing and lowering registries, the runtime's module), done by
    a first compile: a helper started early does it before the list arrives."""
    import numba

    numba.njit(lambda x: x + 1)(1)


def main(folder: str) -> None:
    """A helper process: work on the list in `folder` until it is done or its parent is gone."""
    parent = os.getppid()
    listing = Path(folder) / "jobs.pickle"

    def parent_alive() -> bool:
        return os.getppid() == parent and Path(folder).is_dir()

    if not listing.exists():  # started ahead of the list
        _get_ready()
        while not listing.exists():
            if not parent_alive():
                return
            time.sleep(POLL)
    jobs, order = pickle.loads(listing.read_bytes())
    work = Worklist(folder, jobs, alive=parent_alive, stop=lambda: not parent_alive())
    work.work(order, from_the_end=True)


if __name__ == "__main__":  # through the module's own name, so that unpickled jobs are its classes
    from graphc.kernels.precompile import main as run

    run(sys.argv[1])
