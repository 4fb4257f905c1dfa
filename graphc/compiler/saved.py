"""Compiled models saved between runs: the second `graphc train SPEC` skips the compiler.

A second run of an unchanged spec would redo the first one's front end and back end, and
import sympy and networkx for them: about a third of a cached start (~0.35 of ~1.1 s for the
transformer). So the first run saves the compiled model's plain data (the buffer plan, the
parameter and input specs, the kernels' names and predicted Numba signatures, the driver's
source) and the next run with the same key restores it with none of those imports.

The key is everything the compiled model depends on: the spec's text, its path as given and
as resolved (data paths are relative to it), the `--set` overrides, fusion on or off, graphc's own source
(so an edited compiler never restores an old model) and the versions of Python, NumPy, Numba
and llvmlite. The graph and the typed program are not saved: a restored model compiles the
spec again, from the text saved with it, the first time something asks for them
(CompiledModel._FRONT_END).

A saved model that cannot be restored (unreadable, from another graphc, a kernel module it
names gone) is ignored and saved again; a cache that cannot be written only costs the speed.
The entries are pickles, trusted like Numba's own cache beside them: the user's cache folder.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import llvmlite
import numba
import numpy as np

from graphc.compiler.cache import cache_dir, store
from graphc.compiler.model import CompiledModel

FORMAT = 1
_MAX_SPEC_BYTES = 10 * 2**20  # the loader's own limit: a larger file takes the usual path
KEEP = 100  # saved models kept (~30 KB each); the least recently used go first


@dataclass
class Ticket:
    """A spec as read for one run: its key, and the text it was computed from."""

    spec: str
    text: str
    overrides: dict
    fuse: bool
    key: str


@dataclass
class Restored:
    model: CompiledModel
    diagnostics: list = field(default_factory=list)  # the front end's warnings, to print again
    constants: frozenset = frozenset()  # the spec's constants (`--set` names that are not runtime's)


def _graphc_digest() -> str:
    """graphc's own Python source: any edit makes a new key."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def ticket(spec: str, overrides: dict, fuse: bool) -> Ticket | None:
    """Read the spec and work out its key; None when it cannot be read (the front end then
    reports why)."""
    path = Path(spec)
    try:
        if not path.is_file() or path.stat().st_size > _MAX_SPEC_BYTES:
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    h = hashlib.sha256()
    parts = (str(FORMAT), spec, str(path.resolve()), text, repr(sorted(overrides.items())), str(fuse),
             _graphc_digest(), platform.python_version(), np.__version__, numba.__version__,
             llvmlite.__version__)
    for part in parts:
        h.update(part.encode(errors="surrogatepass") + b"\0")
    return Ticket(spec, text, dict(overrides), fuse, h.hexdigest()[:24])


def _file(t: Ticket) -> Path:
    return cache_dir() / "models" / f"{Path(t.spec).stem}-{t.key}.pickle"


def _kernel_refs(model: CompiledModel) -> dict[str, tuple[str, str, str | None]] | None:
    """(module, name, file of a generated module) of each kernel the driver calls; None if one
    cannot be found again by name (then nothing is saved)."""
    refs = {}
    for name, fn in model.program.kernels.items():
        module_name = getattr(fn, "__module__", None)
        attr = getattr(fn, "__name__", None)
        module = sys.modules.get(module_name or "")
        if module is None or attr is None or getattr(module, attr, None) is not fn:
            return None
        path = None
        if not module_name.startswith("graphc."):  # a generated kernel module in the cache
            path = getattr(module, "__file__", None)
            if path is None:
                return None
        refs[name] = (module_name, attr, path)
    return refs


def save(t: Ticket, model: CompiledModel, diagnostics: list, constants) -> Path | None:
    """Save `model`, compiled from `t`'s text, for the next run (atomically), with the front
    end's warnings and the spec's constant names; its kernel predictions are worked out now
    (the run needs them next anyway). None if not saved."""
    try:
        if Path(t.spec).read_text(encoding="utf-8") != t.text:
            return None  # the spec changed while it was being compiled
    except (OSError, UnicodeDecodeError):
        return None
    kernels = _kernel_refs(model)
    if kernels is None:
        return None
    model.kernel_jobs()
    state = {
        "format": FORMAT,
        "model": model.saved_state(),
        "kernels": kernels,
        "diagnostics": [d for d in diagnostics if not d.is_error],
        "constants": sorted(constants),
        "text": t.text,
    }
    path = _file(t)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return None
    _prune(path.parent)
    return path


def _prune(folder: Path) -> None:
    """Keep the KEEP most recently used saved models (every spec edit saves a new one)."""
    try:
        entries = sorted(((p.stat().st_mtime, p) for p in folder.glob("*.pickle")), reverse=True)
        for _, stale in entries[KEEP:]:
            stale.unlink(missing_ok=True)
    except OSError:  # another run pruning at the same time
        pass


def restore(t: Ticket) -> Restored | None:
    """The model saved under `t`'s key, ready to run; None if there is none or it cannot be
    restored."""
    from graphc.kernels.precompile import Job, dispatcher

    path = _file(t)
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
        os.utime(path)  # used: the last to be pruned
        if state.get("format") != FORMAT or state.get("text") != t.text:
            return None
        saved = state["model"]
        namespace = {name: dispatcher(Job(module, attr, (), name, file))
                     for name, (module, attr, file) in state["kernels"].items()}
        source = saved["source"]
        driver = store(source, saved["name"])  # written again if the cache lost it
        exec(compile(source, str(driver), "exec"), namespace)  # noqa: S102 - graphc's own driver
        saved["source_path"] = str(driver)
    except Exception:  # noqa: BLE001 - none, or damaged (a kernel file gone): compile instead
        return None

    def rebuild() -> CompiledModel:
        return _compile_text(t.spec, t.text, t.overrides, t.fuse)

    model = CompiledModel.restore(saved, namespace, rebuild)
    return Restored(model, state["diagnostics"], frozenset(state["constants"]))


def _compile_text(spec: str, text: str, overrides: dict, fuse: bool) -> CompiledModel:
    """Compile the spec text a model was saved from (the file may have changed since)."""
    from graphc.compiler import CompileError, compile_graph
    from graphc.pipeline import Analysis, run
    from graphc.spec.loader import load_text

    a = run(Analysis(spec, overrides, fuse=fuse, doc=load_text(text, spec)), start="expand")
    if not a.ok:
        raise CompileError(a.diagnostics)
    return compile_graph(a.graph, fuse=fuse)


def model_for(spec: str, overrides: dict, fuse: bool, analyze) -> Restored:
    """The compiled model of `spec` with these front-end overrides: the one an earlier run saved,
    else `analyze(spec, overrides)` (the front end: an Analysis with a valid graph, or it
    raises or exits) compiled and saved. What `graphc train`, `eval`, `sample` and `bench` run.
    The diagnostics are a restored model's saved warnings; empty when `analyze` ran (it reports
    its own)."""
    from graphc.compiler import compile_graph

    t = ticket(spec, overrides, fuse)
    restored = restore(t) if t is not None else None
    if restored is not None:
        return restored
    analysis = analyze(spec, overrides)
    model = compile_graph(analysis.graph, fuse=fuse)
    constants = frozenset(analysis.graph.constants)
    if t is not None:
        save(t, model, analysis.diagnostics, constants)
    return Restored(model, [], constants)
