"""Inputs declared with an expression of dims (`[B, T - 1]`, `[2*B, 4]`, `[B, H/2 + 1/2]`): the
data feeder checks a fed axis against the expression's exact value once every dim of the batch
is bound, and sizes a generated input by it, in exact arithmetic and without sympy
(graphc.dimexpr); a mismatch is a DataError naming the input, the axis, the expression, its
value and the dims (and `graphc train` exits 1 with that one line); hostile expressions are
bounded errors."""

from __future__ import annotations

import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

import graphc
from graphc import dimexpr
from graphc.runtime import DataError, train
from graphc.runtime.data import Feeder
from tests.compiler.helpers import shifted_spec
from tests.conftest import ROOT

from .toymodels import TensorSpec


def _inputs(**shapes) -> dict:
    return {k: TensorSpec(k, tuple(v), "float32") for k, v in shapes.items()}


# --- data-fed inputs ---------------------------------------------------------------------------


def test_an_expression_axis_is_checked_after_the_dims_are_bound():
    """`t` comes first: `2*B` was bound as if it were a dim's name, so no size of `t` was ever
    wrong; now it is checked once `x` has bound B and T."""
    feed = Feeder(_inputs(t=["2*B", "T - 1"], x=["B", "T"]), source="data.npz")
    out = feed({"t": np.zeros((6, 4)), "x": np.zeros((3, 5))})
    assert out["t"].shape == (6, 4) and list(out) == ["t", "x"]
    with pytest.raises(DataError) as err:
        feed({"t": np.zeros((5, 4)), "x": np.zeros((3, 5))})
    assert str(err.value) == ("model input `t` expects shape [2*B, T - 1], but data.npz gives [5, 4] "
                              "(axis 0: 5 != 2*B = 6 at B=3 from `x`)")
    with pytest.raises(DataError) as err:
        feed({"t": np.zeros((6, 5)), "x": np.zeros((3, 5))})
    assert str(err.value).endswith("(axis 1: 5 != T - 1 = 4 at T=5 from `x`)")


def test_an_expression_is_computed_exactly():
    feed = Feeder(_inputs(h=["H"], w=["W"], t=["B", "H/2 + 1/2", "W // 2", "max(H/2, 3) + H/2"], b=["B"]),
                  {"w": "width"})
    ok = feed({"h": np.zeros(7), "width": np.zeros(5), "t": np.zeros((2, 4, 2, 7)), "b": np.zeros(2)})
    assert ok["t"].shape == (2, 4, 2, 7)
    with pytest.raises(DataError) as err:  # 7/2: no array has that size (not floored to 3)
        feed({"h": np.zeros(6), "width": np.zeros(5), "t": np.zeros((2, 3, 2, 6)), "b": np.zeros(2)})
    assert str(err.value).endswith("(axis 1: 3 != H/2 + 1/2 = 7/2, not a whole number at H=6 from `h`)")
    with pytest.raises(DataError, match=r"axis 2: 3 != W // 2 = 2 at W=5 from `w`\)$"):
        feed({"h": np.zeros(7), "width": np.zeros(5), "t": np.zeros((2, 4, 3, 7)), "b": np.zeros(2)})
    # max(9/2, 3) + 9/2 = 9 is whole although each part is not
    ok = feed({"h": np.zeros(9), "width": np.zeros(5), "t": np.zeros((2, 5, 2, 9)), "b": np.zeros(2)})
    with pytest.raises(DataError, match=r"axis 3: 8 != max\(H/2, 3\) \+ H/2 = 9 at H=9 from `h`\)$"):
        feed({"h": np.zeros(9), "width": np.zeros(5), "t": np.zeros((2, 5, 2, 8)), "b": np.zeros(2)})


def test_an_expression_without_a_value_is_a_data_error():
    feed = Feeder(_inputs(x=["B", "T"], t=["B", "T/(T - 5)"]))
    assert feed({"x": np.zeros((2, 6)), "t": np.zeros((2, 6))})["t"].shape == (2, 6)
    with pytest.raises(DataError, match=r"axis 1: 1 != T/\(T - 5\) = undefined \(a division by zero\) at T=5"):
        feed({"x": np.zeros((2, 5)), "t": np.zeros((2, 1))})


def test_an_expression_over_a_dim_only_a_generated_input_binds_is_checked_after_it():
    """`k` is generated with the sample count as K (its leading dim): `t` must then be 2*K long."""
    feed = Feeder(_inputs(x=["B"], t=["2*K"], k=["K"]), generate={"k": "zeros"})
    out = feed({"x": np.zeros(3), "t": np.zeros(6)})
    assert out["t"].shape == (6,) and out["k"].shape == (3,)
    with pytest.raises(DataError, match=r"\(axis 0: 4 != 2\*K = 6 at K=3 \(the sample count\)\)$"):
        feed({"x": np.zeros(3), "t": np.zeros(4)})


# --- generated inputs --------------------------------------------------------------------------


def test_generated_inputs_are_sized_by_their_expressions():
    feed = Feeder(_inputs(x=["B", "T"], z=["2*B", "T - 1", 3], w=["B", "(T + 1)/2"]),
                  generate={"z": "normal", "w": "ones"})
    out = feed({"x": np.zeros((3, 5))}, key=(0, 1, 0))
    assert out["z"].shape == (6, 4, 3) and out["w"].shape == (3, 3) and out["z"].dtype == np.float32
    with pytest.raises(DataError) as err:
        feed({"x": np.zeros((3, 6))})
    assert str(err.value) == ("generated input `w` [B, (T + 1)/2]: cannot size axis 1: `(T + 1)/2` is 7/2, "
                              "not a whole number ≥ 0 (T=6 from `x`)")


def test_a_generated_size_must_be_whole_and_not_negative():
    feed = Feeder(_inputs(x=["B", "T"], z=["B", "T - 9"]), generate={"z": "zeros"})
    with pytest.raises(DataError, match=r"`T - 9` is -4, not a whole number ≥ 0 \(T=5 from `x`\)"):
        feed({"x": np.zeros((3, 5))})
    unbound = Feeder(_inputs(x=["B", "T"], z=["B", "2*K"]), generate={"z": "zeros"})
    with pytest.raises(DataError, match=r"cannot size axis 1 \(`2\*K`\): no data-fed input binds K "
                                        r"\(bound: B=3, T=5\)"):
        unbound({"x": np.zeros((3, 5))})


def test_an_unbound_leading_dim_of_a_generated_input_is_the_sample_count():
    feed = Feeder(_inputs(x=[4], z=["N", "2*N"]), generate={"z": "zeros"})
    assert feed({"x": np.zeros((5, 4))[0]})["z"].shape == (4, 8)


# --- hostile expressions -----------------------------------------------------------------------

HOSTILE = [
    "9**9**9", "(2**64)**64", "2**64**2", "B**100", "9" * 900, "B**(1/2)", "1.5*B",
    "__import__('os').system('true')", "B.__class__", "[B][0]", "B if B else T", "lambda: B",
    "min()", "floor(B, T)", "Mod(B)", "B + " * 300 + "B", "(" * 300 + "B" + ")" * 300, "-" * 999 + "B",
    "B\0", "B; T", "f'{B}'", "max(*[B])", "floor(B=1)",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_expressions_are_errors_at_once(text):
    start = time.perf_counter()
    with pytest.raises(dimexpr.DimExprError):
        dimexpr.value(text, {"B": 3, "T": 4})
    fed = Feeder(_inputs(x=["B", "T"], t=["B", text]))
    with pytest.raises(DataError, match=r"model input `t` declares axis 1 as"):
        fed({"x": np.zeros((3, 4)), "t": np.zeros((3, 4))})
    generated = Feeder(_inputs(x=["B", "T"], t=["B", text]), generate={"t": "zeros"})
    with pytest.raises(DataError, match=r"generated input `t` .*cannot size axis 1"):
        generated({"x": np.zeros((3, 4))})
    assert time.perf_counter() - start < 2


def test_dimexpr_agrees_with_sympy():
    """The expressions as the compiler prints them (sympy's spelling: Max, Mod, floor, ceiling,
    powers), at many dims: the same exact value as sympy's."""
    import itertools

    from graphc.shapes import symbol
    from graphc.spec.expr import evaluate

    scope = {k: symbol(k) for k in ("B", "T", "H", "N")}
    written = ["2*B", "T - 1", "H/2 + 1/2", "(H - 3)//2 + 1", "T % 4", "max(T/2, 3)", "min(B, T) - 1",
               "-(-T // 2)", "B**2", "1/B", "(B + 1)**2", "3*B/2", "(T + 1)/(B + 1)", "B**-2", "2*N",
               "(T % 3)/2 + max(H/3, B//2)", "max(T/2, 3) % 2", "(H - 7)//3", "T - 2*B", "-(-max(H/2, 3) // 2)"]
    for text in written:
        e = evaluate(text, scope)
        printed = str(e)
        for b, t, h in itertools.product([1, 2, 3, 7], [1, 4, 5], [2, 7, 12]):
            at = {"B": b, "T": t, "H": h, "N": b + t}
            want = e.subs({scope[k]: v for k, v in at.items()})
            want = Fraction(int(want.p), int(want.q)) if want.is_Rational else None
            if want is None:  # sympy: zoo (a division by zero)
                with pytest.raises(dimexpr.UndefinedDim):
                    dimexpr.value(printed, at)
                continue
            got = dimexpr.value(printed, at)
            assert got == want and type(got) is (int if want.denominator == 1 else Fraction), (printed, at)
    assert dimexpr.names("Max(3, T/2) + floor(N/B)") == {"T", "N", "B"}
    assert dimexpr.names("floor + max(floor, 2)") == {"floor"}  # a dim may be named like a function


FEED_WITHOUT_SYMPY = """
import sys
import numpy as np
from graphc.compiler.model import TensorSpec
from graphc.runtime.data import Feeder

inputs = {k: TensorSpec(k, shape, "float32") for k, shape in
          {"x": ("B", "T", 3), "t": ("B", "T - 1", 3), "z": ("2*B", "floor(T/2) + Max(1, T/2)")}.items()}
feed = Feeder(inputs, generate={"z": "normal"})
out = feed({"x": np.zeros((4, 6, 3)), "t": np.zeros((4, 5, 3))})
try:
    feed({"x": np.zeros((4, 6, 3)), "t": np.zeros((4, 6, 3))})
except Exception as exc:
    print(type(exc).__name__)
print(out["z"].shape, "sympy" in sys.modules)
"""


def test_the_feed_path_imports_no_sympy():
    r = subprocess.run([sys.executable, "-c", FEED_WITHOUT_SYMPY], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["DataError", "(8, 6) False"], r.stdout


# --- specs, trained --------------------------------------------------------------------------

DOUBLED = """
graphc: 1
name: doubled
inputs:
  a: {shape: [B, 4]}
  b: {shape: [2*B, 4], doc: drawn for each batch}
nodes:
  fc: {op: linear, in: a, out: 4}
  both: {op: concat, in: [fc, fc], axis: 0}
  loss: {op: mse, in: [both, b]}
losses: [loss]
train:
  data: {file: data.npz, val_fraction: 0, generate: {b: normal}}
  batch: 4
  steps: 3
  eval_every: 0
  optimizer: {name: sgd, lr: 0.1}
"""


@pytest.fixture
def shifted(tmp_path):
    return lambda t_length: shifted_spec(tmp_path, t_length)


def test_a_spec_with_an_expression_input_trains_from_data(shifted, tmp_path):
    model = graphc.compile(str(shifted(4)))
    summary = train(model, out_dir=tmp_path / "run", progress="none")
    assert summary["status"] == "completed" and np.isfinite(summary["metrics"]["loss"])


def test_a_spec_with_a_generated_expression_input_trains(tmp_path):
    np.savez(tmp_path / "data.npz", a=np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32))
    (tmp_path / "doubled.yaml").write_text(DOUBLED)
    model = graphc.compile(str(tmp_path / "doubled.yaml"))
    fed = Feeder(model.inputs, generate={"b": "normal"})({"a": np.zeros((4, 4), np.float32)})
    assert fed["b"].shape == (8, 4)
    summary = train(model, out_dir=tmp_path / "run", progress="none")
    assert summary["status"] == "completed" and np.isfinite(summary["metrics"]["loss"])


def test_a_mismatching_batch_is_one_error_line_from_graphc_train(shifted, tmp_path, monkeypatch):
    from graphc.cli import main

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    spec = shifted(5)  # t should be T - 1 = 4 long
    r = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "run"), "--progress", "none"])
    assert r.exit_code == 1, r.output
    assert r.output.strip() == ("error: model input `t` expects shape [B, T - 1, 3], but file data.npz gives "
                                "[4, 5, 3] (axis 1: 5 != T - 1 = 4 at T=5 from `x`)"), r.output
    assert "Traceback" not in r.output and not (tmp_path / "run").exists()
