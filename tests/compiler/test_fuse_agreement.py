"""Fused and unfused drivers agree (float32, 1e-6) on every reference spec, example and the
primitives benchmark spec: one training step each (forward in training mode, backward), the
losses and every parameter and input gradient compared. A spec without a group compiles to the
same driver either way, which is checked instead of run."""

from __future__ import annotations

import numpy as np
import pytest

from graphc.compiler import compile_graph
from graphc.compiler.checks import synthetic_batch
from graphc.pipeline import analyze
from tests.conftest import ROOT

SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml")) + [
    ROOT / "benchmarks/specs/primitives.yaml"]
DIMS = {"B": 2, "T": 4, "S": 3, "N": 4}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b), initial=0.0)) / max(float(np.max(np.abs(b), initial=0.0)), 1e-3)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_fused_and_unfused_agree(spec):
    graph = analyze(spec).graph
    fused = compile_graph(graph, wrt_inputs=True)
    plain = compile_graph(graph, wrt_inputs=True, fuse=False)
    if not fused.fused:
        assert fused.source == plain.source
        return
    params = fused.init_params(0)
    batch = synthetic_batch(fused, DIMS)
    steps = []
    for model in (fused, plain):
        result = model.forward({k: v.copy() for k, v in params.items()}, batch, training=True, seed=1)
        steps.append((result.losses, model.backward(result), model.input_gradients(result)))
    (l1, g1, x1), (l2, g2, x2) = steps
    assert set(l1) == set(l2) and set(g1) == set(g2) and set(x1) == set(x2)
    for k in l2:
        assert _rel(l1[k], l2[k]) <= 1e-6, (k, l1[k], l2[k])
    for k in g2:
        assert _rel(g1[k], g2[k]) <= 1e-6, ("param", k, _rel(g1[k], g2[k]))
    for k in x2:
        assert _rel(x1[k], x2[k]) <= 1e-6, ("input", k, _rel(x1[k], x2[k]))
