"""The back end: analyzed graph → autodiff → generated driver → CompiledModel.

    compile_spec("specs/transformer.yaml") → CompiledModel
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from graphc.compiler.cache import store
from graphc.compiler.model import CompiledModel, ForwardResult, InputError, ParamSpec, TensorSpec
from graphc.kernels import threads

if TYPE_CHECKING:  # the front end is imported when something is compiled, not by a saved model
    from graphc.diagnostics import Diagnostic

# One thread pool (Numba's), BLAS on one thread inside it: see graphc.kernels.threads.
threads.ensure_configured()


class CompileError(Exception):
    """The spec has errors; `diagnostics` says which."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(f"the spec has {sum(d.is_error for d in diagnostics)} error(s)")
        self.diagnostics = diagnostics


def compile_graph(graph, *, dtype=np.float32, wrt_inputs: bool = False, fuse: bool = True) -> CompiledModel:
    """Compile an analyzed (error-free) graph: the back-end passes, then the driver is loaded.
    A failing pass raises CompileError with a GC900 diagnostic naming it. `fuse=False` keeps
    every pointwise op a call of its own (the spec's `compile: {fuse: false}` does too)."""
    from graphc.pipeline import Analysis, run

    a = run(Analysis(graph.file, graph=graph, wrt_inputs=wrt_inputs, fuse=fuse), start="autodiff",
            until="codegen")
    if a.errors:
        raise CompileError(a.diagnostics)
    path = store(a.source, graph.name)
    namespace = dict(a.program.kernels)
    exec(compile(a.source, str(path), "exec"), namespace)  # noqa: S102 - our own generated code
    model = CompiledModel(graph, a.program.tensors, a.source, str(path), namespace, a.buffers, dtype)
    model.kernels = sorted(a.program.kernels)  # the kernel functions the driver calls
    model.fused = a.program.fused  # the generated pointwise kernels (graphc.compiler.fuse)
    model.program = a.program  # the typed kernel calls: graphc.compiler.warm predicts from them
    return model


def compile_spec(spec: str | Path, *, overrides: dict | None = None, dtype=np.float32,
                 wrt_inputs: bool = False, fuse: bool = True) -> CompiledModel:
    """Analyze a spec file and compile it; raises CompileError when the spec has errors."""
    from graphc.pipeline import analyze

    analysis = analyze(spec, overrides)
    if not analysis.ok:
        raise CompileError(analysis.diagnostics)
    return compile_graph(analysis.graph, dtype=dtype, wrt_inputs=wrt_inputs, fuse=fuse)


__all__ = ["CompileError", "CompiledModel", "ForwardResult", "InputError", "ParamSpec", "TensorSpec",
           "compile_graph", "compile_spec"]
