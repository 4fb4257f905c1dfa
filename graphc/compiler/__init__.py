"""The back end: analyzed graph → autodiff → generated driver → CompiledModel.

    compile_spec("specs/transformer.yaml") → CompiledModel
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphc.compiler.autodiff import build
from graphc.compiler.cache import store
from graphc.compiler.codegen import generate
from graphc.compiler.model import CompiledModel, ForwardResult, InputError, ParamSpec, TensorSpec
from graphc.diagnostics import Diagnostic
from graphc.pipeline import analyze


class CompileError(Exception):
    """The spec has errors; `diagnostics` says which."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(f"the spec has {sum(d.is_error for d in diagnostics)} error(s)")
        self.diagnostics = diagnostics


def compile_graph(graph, *, dtype=np.float32, wrt_inputs: bool = False) -> CompiledModel:
    """Compile an analyzed (error-free) graph."""
    program = build(graph, wrt_inputs=wrt_inputs)
    source = generate(program, graph.file)
    path = store(source, graph.name)
    namespace = dict(program.kernels)
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - our own generated code
    return CompiledModel(graph, program.tensors, source, str(path), namespace, dtype)


def compile_spec(spec: str | Path, *, overrides: dict | None = None, dtype=np.float32,
                 wrt_inputs: bool = False) -> CompiledModel:
    """Analyze a spec file and compile it; raises CompileError when the spec has errors."""
    analysis = analyze(spec, overrides)
    if not analysis.ok:
        raise CompileError(analysis.diagnostics)
    return compile_graph(analysis.graph, dtype=dtype, wrt_inputs=wrt_inputs)


__all__ = ["CompileError", "CompiledModel", "ForwardResult", "InputError", "ParamSpec", "TensorSpec",
           "compile_graph", "compile_spec"]
