"""The pass pipeline, top to bottom: one list of named passes for the front and the back end.

    load → expand → validate → infer → train          (check, summary, lint, render stop here)
         → autodiff → fuse → plan → codegen            (compile, train, gradcheck, bench)

Every pass reads and extends one `Analysis`. A pass that raises a `DiagnosticError` adds its
diagnostics; any other exception is a graphc bug and becomes a GC900 diagnostic naming the
pass, never a traceback. `run(..., dump_after=NAME)` hands back the state after a pass for
`graphc compile --dump-after NAME`. The back-end passes import the compiler (and so Numba's
kernels) only when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphc.diagnostics import Diagnostic, DiagnosticError

if TYPE_CHECKING:  # the pass list is importable without networkx/sympy (the CLI's start-up)
    from graphc.ir import Graph


@dataclass
class Analysis:
    """A spec on its way through the passes: what each pass learned, and the diagnostics."""

    file: str
    overrides: dict | None = None
    wrt_inputs: bool = False  # back end: also differentiate with respect to float inputs
    fuse: bool = True  # back end: fuse pointwise chains (off: --no-fuse, or `compile: {fuse: false}`)
    doc: Any = None  # the loaded document with source marks, for spans the graph does not keep
    graph: Graph | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    reached: str = ""  # the last pass that ran
    program: Any = None  # graphc.compiler.calls.Program, after autodiff
    buffers: Any = None  # graphc.compiler.plan.BufferPlan, after plan
    source: str = ""  # the generated driver, after codegen

    @property
    def ok(self) -> bool:
        return self.graph is not None and not any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Analysis], None]
    ready: Callable[[Analysis], bool]  # whether what the pass needs is there
    back_end: bool = False


def _load(a: Analysis) -> None:
    from graphc.spec.loader import load_file

    a.doc = load_file(a.file)


def _expand(a: Analysis) -> None:
    from graphc.spec.expand import expand

    a.graph, diags = expand(a.doc, a.file, a.overrides)
    a.diagnostics.extend(diags)


def _validate(a: Analysis) -> None:
    from graphc.validate import validate

    a.diagnostics.extend(validate(a.graph, after_errors=bool(a.errors)))


def _infer(a: Analysis) -> None:
    from graphc.infer import infer
    from graphc.spec import ties

    a.diagnostics.extend(infer(a.graph))
    a.diagnostics.extend(ties.apply(a.graph))  # shared parameters (`tie:`) once their shapes are known


def _train(a: Analysis) -> None:
    from graphc.spec.train_check import check_train

    a.diagnostics.extend(check_train(a.graph, a.doc))


def _autodiff(a: Analysis) -> None:
    from graphc.compiler.autodiff import build

    a.program = build(a.graph, wrt_inputs=a.wrt_inputs)  # forward plan + reverse walk


def _fuse(a: Analysis) -> None:
    from graphc.compiler.fuse import fuse

    if a.fuse and a.graph.compile.get("fuse", True):
        fuse(a.program)  # pointwise chains → one generated kernel each, forward and backward


def _plan(a: Analysis) -> None:
    from graphc.compiler.plan import plan

    a.buffers = plan(a.program)  # live ranges; where every destination lives


def _codegen(a: Analysis) -> None:
    from graphc.compiler.codegen import generate

    a.source = generate(a.program, a.buffers, a.graph.file)


def _acyclic(a: Analysis) -> bool:  # shapes can be inferred even when other errors were found
    return a.graph is not None and bool(a.graph.order)


PASSES: tuple[Pass, ...] = (
    Pass("load", _load, lambda a: True),
    Pass("expand", _expand, lambda a: a.doc is not None),
    Pass("validate", _validate, lambda a: a.graph is not None),
    Pass("infer", _infer, _acyclic),
    Pass("train", _train, _acyclic),
    Pass("autodiff", _autodiff, lambda a: a.ok, back_end=True),
    Pass("fuse", _fuse, lambda a: a.program is not None, back_end=True),
    Pass("plan", _plan, lambda a: a.program is not None, back_end=True),
    Pass("codegen", _codegen, lambda a: a.buffers is not None, back_end=True),
)
PASS_NAMES = tuple(p.name for p in PASSES)
FRONT_END = tuple(p.name for p in PASSES if not p.back_end)


def _internal(pass_name: str, exc: Exception) -> Diagnostic:
    return Diagnostic("error", "GC900", f"internal error in pass `{pass_name}`: "
                      f"{type(exc).__name__}: {exc}", hint="this is a graphc bug; please report it with the spec")


def run(a: Analysis, until: str = FRONT_END[-1], start: str = PASS_NAMES[0]) -> Analysis:
    """Run the passes from `start` through `until` on `a`, each one that has what it needs."""
    names = PASS_NAMES[PASS_NAMES.index(start): PASS_NAMES.index(until) + 1]
    first_new = len(a.diagnostics)
    for p in PASSES:
        if p.name not in names or not p.ready(a):
            continue
        a.reached = p.name
        try:
            p.run(a)
        except DiagnosticError as exc:
            a.diagnostics.extend(exc.diagnostics)
        except Exception as exc:  # a bug in graphc must still not hand the user a traceback
            a.diagnostics.append(_internal(p.name, exc))
    _note_block_instances(a, a.diagnostics[first_new:])
    return a


def analyze(path: str | Path, overrides: dict | None = None) -> Analysis:
    """Run the front end on a spec file: load → expand → validate → infer → train."""
    return run(Analysis(str(path), overrides))


def _note_block_instances(result: Analysis, new: list[Diagnostic]) -> None:
    """A problem inside a block also points at the instance that expanded it (and its arguments)."""
    if result.graph is None:
        return
    for d in new:
        node = result.graph.nodes.get(d.nodes[0]) if d.nodes else None
        if node is None or not node.scope:
            continue
        notes = tuple((f"in `{f.path}`, an instance of block `{f.block}`", f.span)
                      for f in reversed(node.scope) if f.span)
        d.related = d.related + notes


def dump(a: Analysis, pass_name: str) -> str:
    """The state after `pass_name`, as text (`graphc compile --dump-after`)."""
    if pass_name == "load":
        import json

        return json.dumps(a.doc, indent=2, default=str) if a.doc is not None else ""
    if pass_name in ("expand", "validate", "infer", "train"):
        return _dump_graph(a.graph, types=pass_name in ("infer", "train"))
    if pass_name in ("autodiff", "fuse"):
        calls = [_dump_call(tag, c) for tag, cs in (("f", a.program.forward), ("b", a.program.backward))
                 for c in cs]
        return "\n".join([g.header() for g in a.program.fused] + calls)
    if pass_name == "plan":
        from graphc.compiler.plan import describe

        return "\n".join(describe(a.buffers))
    return a.source


def _dump_graph(graph: Graph | None, types: bool) -> str:
    if graph is None:
        return ""
    lines = []
    for node in graph.nodes.values():
        ins = ", ".join(f"{i.port}={i.src}" + (f".{i.src_port}" if i.src_port != "out" else "")
                        for i in node.inputs)
        attrs = ", ".join(f"{k}={v}" for k, v in node.attrs.items())
        out = ""
        if types:
            out = " → " + ", ".join(str(t) for p in node.outputs if (t := graph.types.get((node.name, p))))
        lines.append(f"{node.name} = {node.op}({'; '.join(x for x in (ins, attrs) if x)}){out}")
    return "\n".join(lines)


def _dump_call(tag: str, c) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in c.args.items())
    results = ", ".join(repr(r) for r in c.results)
    return f"[{tag}] {c.node}: {results} = {c.kernel}({args})"
