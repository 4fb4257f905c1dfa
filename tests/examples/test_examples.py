"""The model families of models.md as example specs: each checks clean, compiles, and its
generated backward matches finite differences (float64) for every parameter and input."""

import pytest

from graphc.compiler import compile_graph
from graphc.compiler.checks import gradcheck
from graphc.pipeline import analyze
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
DIMS = {"B": 2, "T": 4, "S": 3, "N": 4}


def test_there_are_examples():
    assert len(EXAMPLES) >= 12


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_example_checks_compiles_and_gradchecks(spec):
    analysis = analyze(spec)
    assert analysis.ok and not analysis.diagnostics, [(d.code, d.message) for d in analysis.diagnostics]
    model = compile_graph(analysis.graph, wrt_inputs=True)
    rows = gradcheck(model, DIMS)
    assert rows, "nothing was checked"
    bad = [(r.node, r.what, r.rel_error) for r in rows if not r.ok]
    assert not bad, bad
