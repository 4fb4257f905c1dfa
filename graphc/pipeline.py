"""The pass pipeline, top to bottom. Every command stops where it has what it needs.

    load → expand → validate → infer   (check, summary, lint, render)
         → compile (autodiff → plan → codegen → jit)   (train, gradcheck, bench)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphc.diagnostics import Diagnostic, DiagnosticError
from graphc.infer import infer
from graphc.ir import Graph
from graphc.spec.expand import expand
from graphc.spec.loader import load_file
from graphc.spec.train_check import check_train
from graphc.validate import validate


@dataclass
class Analysis:
    """What the front end learned about a spec: the graph (as far as it got) and diagnostics."""

    file: str
    graph: Graph | None = None
    doc: Any = None  # the loaded document with source marks, for spans the graph does not keep
    diagnostics: list[Diagnostic] = field(default_factory=list)
    reached: str = ""  # the last pass that ran

    @property
    def ok(self) -> bool:
        return self.graph is not None and not any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def _internal(pass_name: str, exc: Exception, file: str) -> Diagnostic:
    return Diagnostic("error", "GC900", f"internal error in pass `{pass_name}`: "
                      f"{type(exc).__name__}: {exc}", hint="this is a graphc bug; please report it with the spec")


def analyze(path: str | Path, overrides: dict | None = None) -> Analysis:
    """Run the front end on a spec file: load → expand → validate → infer."""
    result = Analysis(str(path))

    def step(name: str, fn: Callable):
        result.reached = name
        try:
            return fn()
        except DiagnosticError as exc:
            result.diagnostics.extend(exc.diagnostics)
        except Exception as exc:  # a bug in graphc must still not hand the user a traceback
            result.diagnostics.append(_internal(name, exc, result.file))
        return None

    doc = step("load", lambda: load_file(path))
    if doc is None:
        return result
    result.doc = doc
    expanded = step("expand", lambda: expand(doc, str(path), overrides))
    if expanded is None:
        return result
    graph, diags = expanded
    result.graph = graph
    result.diagnostics.extend(diags)
    diags = step("validate", lambda: validate(graph))
    result.diagnostics.extend(diags or [])
    if graph.order:  # acyclic: shapes can be inferred even when other errors were found
        result.diagnostics.extend(step("infer", lambda: infer(graph)) or [])
        result.diagnostics.extend(step("train", lambda: check_train(graph, doc)) or [])
    _note_block_instances(result)
    return result


def _note_block_instances(result: Analysis) -> None:
    """A problem inside a block also points at the instance that expanded it (and its arguments)."""
    for d in result.diagnostics:
        node = result.graph.nodes.get(d.nodes[0]) if d.nodes else None
        if node is None or not node.scope:
            continue
        notes = tuple((f"in `{f.path}`, an instance of block `{f.block}`", f.span)
                      for f in reversed(node.scope) if f.span)
        d.related = d.related + notes
