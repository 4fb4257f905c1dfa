"""Language features of issue #13: numbers in `in:` (literals), `param`, parameter sharing
(`tie:`) and `repeat: 0`; what they expand to, their diagnostics, and (one compiled spec) that
a shared parameter gets the sum of both gradients."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.pipeline import analyze
from graphc.shapes import fmt_shape


def ok(write_spec, text):
    a = analyze(write_spec(text))
    assert a.ok, [(d.code, d.message) for d in a.diagnostics]
    return a


def errors(write_spec, text):
    a = analyze(write_spec(text))
    assert not any(d.code == "GC900" for d in a.diagnostics), a.diagnostics
    return [(d.code, d.message, d.span.line if d.span else None) for d in a.errors]


def shape(a, node, port="out"):
    return fmt_shape(a.graph.types[(node, port)].shape)


# ---------------------------------------------------------------------------- literals
LITERALS = """
constants: {d: 4, alpha: 0.5}
inputs:
  x: [B, T, d]
blocks:
  scale:
    args: {a: 1.0}
    inputs: [h]
    nodes:
      s: {op: mul, in: [h, a]}
    outputs: [s]
nodes:
  shifted: {op: sub, in: [x, 6]}
  scaled: {op: mul, in: [shifted, "1 / sqrt(d)"]}
  biased: {op: add, in: {a: scaled, b: [1, 2, 3, 4]}}
  grid: {op: add, in: [biased, [[1, 2, 3, 4], [5, 6, 7, 8]]], doc: "[2, 4] broadcasts over B only if T = 2"}
  named: {op: mul, in: [biased, alpha]}
  blk: {block: scale, in: named, a: alpha}
outputs: [blk, grid]
"""


def test_numbers_in_in_become_constant_nodes(write_spec):
    a = ok(write_spec, LITERALS.replace("B, T, d", "B, 2, d"))
    g = a.graph
    const = {n: node for n, node in g.nodes.items() if node.op == "constant"}
    assert set(const) == {"shifted.b", "scaled.b", "biased.b", "grid.b", "named.b", "blk.s.b"}
    assert const["shifted.b"].attrs == {"value": 6.0, "shape": ()}
    assert const["scaled.b"].attrs["value"] == pytest.approx(0.5)  # 1 / sqrt(4)
    assert const["biased.b"].attrs == {"value": (1.0, 2.0, 3.0, 4.0), "shape": (4,)}
    assert const["grid.b"].attrs["shape"] == (2, 4)
    assert const["named.b"].attrs["value"] == 0.5 and const["blk.s.b"].attrs["value"] == 0.5
    assert shape(a, "scaled.b") == "scalar" and shape(a, "biased.b") == "4"
    assert shape(a, "grid") == "B×2×4" and shape(a, "blk.s") == "B×2×4"
    assert const["scaled.b"].doc == "1 / sqrt(d)"  # as written: render shows it
    assert g.param_count() == 0


def test_a_node_name_is_always_a_reference_not_a_constant(write_spec):
    a = ok(write_spec, """
constants: {x2: 3}
inputs: {x: [B, 4]}
nodes:
  x2: {op: relu, in: x}
  y: {op: add, in: [x, x2]}
outputs: [y]
""")
    assert [i.src for i in a.graph.nodes["y"].inputs] == ["x", "x2"]


@pytest.mark.parametrize("literal, message", [
    ("true", "is a boolean"),
    ('"T * 2"', "depends on a symbolic dimension"),
    ("[[1, 2], [3]]", "rows of a list literal differ in length"),
    ("[]", "empty list"),
    ('"2 +"', "is neither a node name nor a number"),
])
def test_bad_literals_are_reported_at_the_input(write_spec, literal, message):
    errs = errors(write_spec, f"inputs: {{x: [B, T]}}\nnodes:\n  y: {{op: mul, in: [x, {literal}]}}\noutputs: [y]\n")
    assert any(code == "GC201" and message in msg and line == 3 for code, msg, line in errs), errs


def test_a_literal_cannot_feed_an_integer_port(write_spec):
    errs = errors(write_spec, """
inputs: {z: [B, 3]}
nodes:
  loss: {op: cross_entropy, in: [z, 1]}
losses: [loss]
""")
    assert any("takes integer ids" in m for _, m, _ in errs), errs


# ---------------------------------------------------------------------------- param
def test_param_is_a_learned_tensor_without_inputs(write_spec):
    a = ok(write_spec, """
constants: {d: 8}
inputs: {x: [B, 4, d]}
nodes:
  cls: {op: param, shape: [1, 1, d]}
  token: {op: expand, in: cls, shape: [B, 1, d]}
  seq: {op: concat, in: [token, x], axis: 1}
  scale: {op: param, shape: [d], init: ones}
  y: {op: mul, in: [seq, scale]}
outputs: [y]
""")
    assert shape(a, "cls") == "1×1×8" and shape(a, "token") == "B×1×8" and shape(a, "y") == "B×5×8"
    p = a.graph.params
    assert p["cls"]["weight"].shape == (1, 1, 8) and p["cls"]["weight"].init == "normal(0.02)"
    assert p["scale"]["weight"].init == "ones" and not p["scale"]["weight"].decay
    assert a.graph.param_count() == 16


@pytest.mark.parametrize("node, message", [
    ("{op: param, shape: [1, 8], init: gaussian(1)}", "unknown initializer"),
    ("{op: param, shape: [0, 8]}", "sizes must be ≥ 1"),
    ("{op: param, in: x, shape: [8]}", "takes no inputs"),
    ("{op: expand, in: x, shape: [B, 3]}", "only size-1 axes can be expanded"),
])
def test_param_and_expand_misuse(write_spec, node, message):
    errs = errors(write_spec, f"inputs: {{x: [B, 8]}}\nnodes:\n  p: {node}\noutputs: [p]\n")
    assert any(message in m for _, m, _ in errs), errs


# ---------------------------------------------------------------------------- tie
TIED = """
constants: {vocab: 11, d: 6}
inputs:
  tokens: {shape: [B, T], dtype: int64}
  targets: {shape: [B, T], dtype: int64}
nodes:
  embed: {op: embedding, in: tokens, num: vocab, dim: d}
  hidden: {op: tanh, in: embed}
  head: {op: linear, in: hidden, out: vocab, bias: false, tie: embed.weight}
  loss: {op: cross_entropy, in: [head, targets]}
outputs: [head]
losses: [loss]
"""


def test_a_tied_parameter_is_counted_once(write_spec):
    a = ok(write_spec, TIED)
    g = a.graph
    assert g.ties == {"head.weight": "embed.weight"}
    assert "weight" not in g.params["head"] and g.param_count() == 11 * 6


def test_summary_and_check_show_the_shared_parameter(write_spec):
    path = str(write_spec(TIED))
    r = CliRunner().invoke(main, ["summary", path, "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["shared"] == {"head.weight": "embed.weight"}
    r = CliRunner().invoke(main, ["summary", path])
    assert "weight = embed.weight" in r.stdout and "counted once" in r.stdout
    r = CliRunner().invoke(main, ["check", path])
    assert "66 parameters (1 shared)" in r.stdout


def test_render_draws_one_parameter_used_twice(write_spec):
    from graphc.render import RenderOptions, build_diagram

    a = ok(write_spec, TIED)
    dot = build_diagram(a, RenderOptions()).source
    assert "shares weight" in dot and "weight = embed.weight" in dot


@pytest.mark.parametrize("tie, message", [
    ("{weight: embed.weight}", None),
    ("{wieght: embed.weight}", "has no parameter `wieght`"),
    ("{weight: embed.bias}", "`embed` (embedding) has no parameter `bias`"),
    ("{weight: tokens.weight}", "is an input, which has no parameters"),
    ("{weight: head.weight}", "tied to itself"),
    ("embed", "does not name a parameter"),
    ("{weight: 3}", "must name a node's parameter"),
])
def test_tie_misuse(write_spec, tie, message):
    errs = errors(write_spec, TIED.replace("tie: embed.weight", f"tie: {tie}"))
    if message is None:
        assert not errs
    else:
        assert any(code == "GC207" and message in m and line == 9 for code, m, line in errs), errs


def test_tie_on_a_block_instance_or_across_block_scopes(write_spec):
    text = """
inputs: {x: [B, 4]}
blocks:
  lin:
    inputs: [h]
    nodes:
      fc: {op: linear, in: h, out: 4, tie: first.weight}
    outputs: [fc]
nodes:
  first: {op: linear, in: x, out: 4}
  a: {block: lin, in: first}
  b: {block: lin, in: a, tie: {weight: first.weight}}
  c: {op: linear, in: b, out: 4, tie: {weight: a.fc.weight}}
outputs: [c]
"""
    errs = errors(write_spec, text)
    assert any("no op node `first` in block instance `a`" in m for _, m, _ in errs), errs
    assert any("belongs on an op node, not on a block instance" in m for _, m, _ in errs), errs
    assert not any("`c`" in m for _, m, _ in errs), errs  # a path into an instance is fine


def test_tie_loop(write_spec):
    errs = errors(write_spec, """
inputs: {x: [B, 4]}
nodes:
  a: {op: linear, in: x, out: 4, tie: b.weight}
  b: {op: linear, in: a, out: 4, tie: a.weight}
outputs: [b]
""")
    assert any("form a loop" in m for _, m, _ in errs), errs


def test_a_shared_parameter_gets_the_sum_of_both_gradients(write_spec):
    """Compiled in float64: the tied model's gradient for `embed.weight` matches central
    differences and equals the untied model's two gradients added."""
    from graphc.compiler import compile_spec
    from tests.compiler.helpers import check_gradients

    text = TIED.replace("T]", "3]")
    tied = compile_spec(write_spec(text, "tied.yaml"), dtype=np.float64)
    untied = compile_spec(write_spec(text.replace(", tie: embed.weight", ""), "untied.yaml"),
                          dtype=np.float64)
    assert set(tied.params) == {"embed.weight"}
    rng = np.random.default_rng(0)
    batch = {"tokens": rng.integers(0, 11, (2, 3)), "targets": rng.integers(0, 11, (2, 3))}
    params = {k: v.astype(np.float64) for k, v in tied.init_params(0).items()}
    check_gradients(tied, params, batch)
    g = tied.backward(tied.forward(params, batch))
    both = {"embed.weight": params["embed.weight"], "head.weight": params["embed.weight"].copy()}
    gu = untied.backward(untied.forward(both, batch))
    np.testing.assert_allclose(g["embed.weight"], gu["embed.weight"] + gu["head.weight"], rtol=1e-12)
    assert 'G["embed.weight"] = G["embed.weight"] + _gp' in tied.source


# ---------------------------------------------------------------------------- repeat: 0
REPEAT0 = """
constants: {n: 1}
inputs: {x: [B, 8]}
blocks:
  layer:
    inputs: [h, mask]
    nodes:
      fc: {op: linear, in: h, out: 8}
      act: {op: relu, in: fc}
      gated: {op: mul, in: [act, mask]}
    outputs: {out: gated, pre: fc}
nodes:
  first: {block: layer, in: [x, x]}
  rest: {block: layer, in: [first, x], repeat: n - 1}
  none_op: {op: linear, in: rest, out: 8, repeat: n - 1}
  head: {op: linear, in: none_op, out: 2}
outputs: [head]
"""


def test_repeat_zero_stands_for_the_first_input(write_spec):
    a = ok(write_spec, REPEAT0)
    g = a.graph
    assert not any(n.startswith(("rest.", "none_op")) for n in g.nodes)
    assert [i.src for i in g.nodes["head"].inputs] == ["first.gated"]
    a2 = ok(write_spec, REPEAT0.replace("n: 1", "n: 3"))
    assert [i.src for i in a2.graph.nodes["head"].inputs] == ["none_op.1"]


def test_repeat_zero_misuse(write_spec):
    errs = errors(write_spec, REPEAT0.replace("in: none_op, out: 2", "in: rest.pre, out: 2"))
    assert any("has no output `pre`" in m for _, m, _ in errs), errs
    a = analyze(write_spec(REPEAT0.replace("in: none_op, out: 2", "in: rest.pre, out: 2")))
    d = next(d for d in a.errors if "has no output `pre`" in d.message)
    assert "repeats 0 times: only its first output `out` exists" in d.hint
    errs = errors(write_spec, "inputs: {x: [B, 2]}\nnodes:\n  p: {op: param, shape: [2], repeat: 0}\n"
                              "  y: {op: add, in: [x, p]}\noutputs: [y]\n")
    assert any("stands for its first input" in m for _, m, _ in errs), errs
    errs = errors(write_spec, "inputs: {x: [B, 2]}\nnodes:\n  y: {op: relu, in: x, repeat: -1}\noutputs: [y]\n")
    assert any("from 0 to" in m for _, m, _ in errs), errs
