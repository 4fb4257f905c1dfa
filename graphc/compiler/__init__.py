"""The back end: analyzed graph → autodiff → generated driver → CompiledModel.

    compile_spec("specs/transformer.yaml") → CompiledModel
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphc.compiler.autodiff import build
from graphc.compiler.cache import store
from graphc.compiler.codegen import generate
from graphc.compiler.model import CompiledModel, ForwardResult, InputError, ParamSpec, TensorSpec
from graphc.compiler.plan import plan
from graphc.diagnostics import Diagnostic
from graphc.pipeline import analyze


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


def compile_graph(graph, *, dtype=np.float32, wrt_inputs: bool = False) -> CompiledModel:
    """Compile an analyzed (error-free) graph."""
    program = build(graph, wrt_inputs=wrt_inputs)  # forward plan + reverse walk
    buffers = plan(program)  # live ranges; every kernel call gets its destinations
    source = generate(program, buffers, graph.file)
    path = store(source, graph.name)
    namespace = dict(program.kernels)
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - our own generated code
    model = CompiledModel(graph, program.tensors, source, str(path), namespace, buffers, dtype)
    model.kernels = sorted(program.kernels)  # the kernel functions the driver calls
    return model


def compile_spec(spec: str | Path, *, overrides: dict | None = None, dtype=np.float32,
                 wrt_inputs: bool = False) -> CompiledModel:
    """Analyze a spec file and compile it; raises CompileError when the spec has errors."""
    analysis = analyze(spec, overrides)
    if not analysis.ok:
        raise CompileError(analysis.diagnostics)
    return compile_graph(analysis.graph, dtype=dtype, wrt_inputs=wrt_inputs)


__all__ = ["CompileError", "CompiledModel", "ForwardResult", "InputError", "ParamSpec", "TensorSpec",
           "compile_graph", "compile_spec"]
