"""A size with a quotient inside min, max or mod (`max(H/2, 3)`, `-(-max(H/2, 3) // 2)`): the
driver and the guards compute it in integer arithmetic, which floored each argument —
`max(3, H // 2)` — so at H = 7 the size 7/2 passed as 3 (is_integral also called it whole: no
guard), and `ceiling(Max(3, H/2)/2)` was 2 at H = 9 where the front end inferred 3.
shapes.lift_quotients takes the quotient out first: `max(6, H) // 2`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy

from graphc.compiler import InputError, compile_spec
from graphc.compiler.codegen import pyexpr
from graphc.shapes import is_integral, lift_quotients, symbol

from .helpers import spec_text, write

H, W, B = symbol("H"), symbol("W"), symbol("B")
SIZES = [
    sympy.Max(3, H / 2), sympy.Max(3, H / 2) + 1, sympy.Min(H / 2, W / 3), sympy.Mod(H / 2, 3),
    sympy.Max(3, H / 2) + H / 2, -sympy.floor(-sympy.Max(3, H / 2) / 2), sympy.ceiling(sympy.Max(3, H / 2) / 2),
    sympy.floor(sympy.Min(H / 2, W / 3) + W / 2), sympy.Max(3, H / B) * 2, sympy.Mod(H, W / 2) + W / 2,
    sympy.ceiling(sympy.Min(3, H / 2) - 2),
]


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_integer_arithmetic_computes_the_size_exactly(size):
    source = pyexpr(size)
    assert "/" not in source.replace("//", ""), source
    for h, w, b in itertools.product(range(1, 24), [1, 4, 7, 12], [1, 2, 3]):
        value = size.xreplace({H: sympy.Integer(h), W: sympy.Integer(w), B: sympy.Integer(b)})
        if value.is_Integer:
            assert eval(source, {"H": h, "W": w, "B": b}) == int(value), (source, h, w, b)  # noqa: S307


def test_lifting_keeps_the_value():
    for size in SIZES:
        lifted = lift_quotients(size)
        for h, w, b in itertools.product([1, 5, 7, 12], [2, 9], [1, 3]):
            # (xreplace: sympy 1.14's subs makes floor(W/2 + Min(36, 2*W)/6) floor(W/2) + Min(36, 2*W)/6)
            at = {H: sympy.Integer(h), W: sympy.Integer(w), B: sympy.Integer(b)}
            assert lifted.xreplace(at) == size.xreplace(at), (size, lifted, at)
    assert str(lift_quotients(sympy.Max(3, H / 2))) == "Max(6, H)/2"
    unknown_sign = sympy.Max(3, H / (W - 4))  # no common denominator keeps the order: left alone
    assert lift_quotients(unknown_sign) == unknown_sign


def test_a_min_max_or_mod_of_quotients_is_not_known_to_be_whole():
    assert is_integral(sympy.Max(3, H / 2)) is None  # was True: its expansion's coefficient is 1
    assert is_integral(sympy.Mod(H / 2, 3) + 1) is None
    assert is_integral(sympy.Mod(H, 4)) is True and is_integral(sympy.Max(H - 1, 2 * W)) is True
    assert is_integral(-sympy.floor(-sympy.Max(3, H / 2) / 2)) is True


@pytest.fixture(scope="module")
def expanded(tmp_path_factory):
    """`half` is max(H/2, 3) wide (whole only at an even H, or H ≤ 6), `quarter` its half rounded up."""
    text = spec_text({"x": ["B", "H"], "c": [1, 1]},
                     {"half": {"op": "expand", "in": "c", "shape": ["B", "max(H/2, 3)"]},
                      "quarter": {"op": "expand", "in": "c", "shape": ["B", "-(-max(H/2, 3) // 2)"]},
                      "p": {"op": "mean", "in": "half"}, "q": {"op": "mean", "in": "quarter"},
                      "r": {"op": "mean", "in": "x"}, "s": {"op": "add", "in": ["p", "q"]},
                      "loss": {"op": "add", "in": ["s", "r"]}},
                     outputs=["half", "quarter"], losses=["loss"])
    return compile_spec(write(tmp_path_factory.mktemp("quotients"), text))


@pytest.mark.parametrize("h, half, quarter", [(4, 3, 2), (5, 3, 2), (6, 3, 2), (8, 4, 2), (10, 5, 3), (12, 6, 3)])
def test_the_driver_makes_the_inferred_sizes(expanded, h, half, quarter):
    out = expanded.forward({}, {"x": np.ones((2, h)), "c": np.ones((1, 1))}).outputs
    assert out["half"].shape == (2, half) and out["quarter"].shape == (2, quarter)


@pytest.mark.parametrize("h", [7, 9, 11])
def test_a_size_that_is_not_whole_there_is_an_input_error(expanded, h):
    """max(7/2, 3) = 7/2: it passed as 3 (and at H = 9 `quarter` came out 2 wide, not 3)."""
    with pytest.raises(InputError, match=rf"\(B=2, H={h}\) do not fit node `half` \(expand\): its output axis 1, "
                                         rf"\(Max\(3, H/2\)\), is {h}/2 there, not a whole number") as err:
        expanded.forward({}, {"x": np.ones((2, h)), "c": np.ones((1, 1))})
    assert "round" not in str(err.value)  # the hint is for windowed ops (conv, pool): expand has no `round`
