"""The back end: analyzed graph → autodiff → generated driver → CompiledModel.

    compile_spec("specs/transformer.yaml") → CompiledModel
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphc.compiler.cache import store
from graphc.compiler.model import CompiledModel, ForwardResult, InputError, ParamSpec, TensorSpec
from graphc.diagnostics import Diagnostic
from graphc.pipeline import Analysis, analyze, run


def _configure_blas_threads() -> None:
    """One BLAS thread per process unless GRAPHC_BLAS_THREADS says otherwise.

    numpy and Numba (through scipy) each load their own OpenBLAS, each with a pool of spinning
    threads; on a 2-core machine the two pools steal the cores from each other. Measured on the
    transformer step (B=64, T=16): median 516 ms with 2 threads each vs 16 ms with 1 (best
    40 ms vs 16 ms). Larger models may set GRAPHC_BLAS_THREADS=2 (or more) and compare with
    `graphc bench`.
    """
    from graphc.kernels import set_blas_threads

    value = os.environ.get("GRAPHC_BLAS_THREADS", "1")
    set_blas_threads(max(1, int(value)) if value.isdigit() else 1)


_configure_blas_threads()


class CompileError(Exception):
    """The spec has errors; `diagnostics` says which."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(f"the spec has {sum(d.is_error for d in diagnostics)} error(s)")
        self.diagnostics = diagnostics


def compile_graph(graph, *, dtype=np.float32, wrt_inputs: bool = False, fuse: bool = True) -> CompiledModel:
    """Compile an analyzed (error-free) graph: the back-end passes, then the driver is loaded.
    A failing pass raises CompileError with a GC900 diagnostic naming it. `fuse=False` keeps
    every pointwise op a call of its own (the spec's `compile: {fuse: false}` does too)."""
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
    return model


def compile_spec(spec: str | Path, *, overrides: dict | None = None, dtype=np.float32,
                 wrt_inputs: bool = False, fuse: bool = True) -> CompiledModel:
    """Analyze a spec file and compile it; raises CompileError when the spec has errors."""
    analysis = analyze(spec, overrides)
    if not analysis.ok:
        raise CompileError(analysis.diagnostics)
    return compile_graph(analysis.graph, dtype=dtype, wrt_inputs=wrt_inputs, fuse=fuse)


__all__ = ["CompileError", "CompiledModel", "ForwardResult", "InputError", "ParamSpec", "TensorSpec",
           "compile_graph", "compile_spec"]
