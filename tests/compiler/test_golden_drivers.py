"""The generated drivers of the four reference specs are pinned: a change to the back end that
changes what a spec compiles to shows up here as a diff, to be explained in its commit.

Regenerate after an intended change with `GRAPHC_UPDATE_GOLDEN=1 python -m pytest
tests/compiler/test_golden_drivers.py` and review `git diff tests/compiler/golden`."""

import difflib
import os

import pytest

from graphc.pipeline import Analysis, analyze, run
from tests.conftest import REFERENCE_SPECS, ROOT

GOLDEN = ROOT / "tests" / "compiler" / "golden"


def _driver(spec) -> str:
    a = analyze(spec.relative_to(ROOT))
    assert a.ok, a.diagnostics
    return run(Analysis(a.file, graph=a.graph), start="autodiff", until="codegen").source


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.stem)
def test_generated_driver_is_the_pinned_one(spec, monkeypatch):
    monkeypatch.chdir(ROOT)  # the driver names its spec by the path it was given
    source = _driver(spec)
    golden = GOLDEN / f"{spec.stem}.driver"
    if os.environ.get("GRAPHC_UPDATE_GOLDEN") == "1":
        golden.write_text(source)
    diff = "".join(difflib.unified_diff(golden.read_text().splitlines(True), source.splitlines(True),
                                        "pinned", "generated now"))
    assert not diff, f"the driver of {spec.name} changed:\n{diff[:4000]}"


def test_a_failing_back_end_pass_is_a_gc900_naming_it(monkeypatch):
    """A bug in a back-end pass reaches the user as a diagnostic naming the pass, not a traceback."""
    import graphc.compiler.plan
    from graphc.compiler import CompileError, compile_graph

    a = analyze(ROOT / "specs" / "mlp.yaml")

    def broken(program):
        raise RuntimeError("boom")

    monkeypatch.setattr(graphc.compiler.plan, "plan", broken)
    with pytest.raises(CompileError) as info:
        compile_graph(a.graph)
    (d,) = info.value.diagnostics
    assert d.code == "GC900" and "pass `plan`" in d.message and "boom" in d.message


def test_dump_after_each_pass_shows_its_result():
    from graphc.pipeline import PASS_NAMES, dump

    a = run(Analysis(str(ROOT / "specs" / "mlp.yaml")), until="codegen")
    assert a.ok and a.reached == "codegen"
    dumps = {name: dump(a, name) for name in PASS_NAMES}
    assert '"nodes"' in dumps["load"]
    assert "logits = linear(x=hidden_layers.1.act; out=2, bias=True)" in dumps["expand"]
    assert "→ [B×2]" in dumps["infer"]
    assert "linear_bwd(" in dumps["autodiff"] and "ParamGrad(name='logits.weight')" in dumps["autodiff"]
    assert "tensors" not in dumps["autodiff"] and "live" in dumps["plan"]
    assert dumps["codegen"].startswith('"""Forward and backward of `mlp`')
