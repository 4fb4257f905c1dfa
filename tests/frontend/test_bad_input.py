"""Every class of malformed spec or `--set` value the fuzzer found gets a clear diagnostic at the
offending line (never GC900, never a traceback), each with its own minimal spec.

The headline classes of issue #11 also have a file in specs/bad/ (block_arg_typo, shape_true,
flow_mapping_key, huge_int, power_tower, block_input_not_a_name, instance_in_number).
"""

import textwrap

import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.pipeline import analyze
from graphc.shapes import symbol
from graphc.spec.expr import ExprError, evaluate
from graphc.spec.loader import load_text

BLOCK = """
constants: {hidden: 16}
inputs:
  x: [B, 16]
blocks:
  dense:
    args: {width: null}
    inputs: [h]
    nodes:
      fc: {op: linear, in: h, out: width}
    outputs: [fc]
nodes:
  layer: {block: dense, in: x, width: WIDTH}
outputs: [layer]
"""


def diagnose(write_spec, text, overrides=None):
    a = analyze(write_spec(textwrap.dedent(text)), overrides)
    assert not any(d.code == "GC900" for d in a.diagnostics), [d.message for d in a.diagnostics]
    return a


def the_error(a, code):
    errors = [d for d in a.diagnostics if d.is_error]
    match = [d for d in errors if d.code == code]
    assert match, [(d.code, d.message) for d in errors]
    return match[0]


# (id, spec text, --set overrides, code, line of the offending text, words of the message)
CASES = [
    # block arguments: misspelt, or of the wrong shape
    ("arg typo", BLOCK.replace("WIDTH", "hiden"), None, "GC105", 13, "unknown name `hiden`"),
    ("arg list", BLOCK.replace("WIDTH", "[4, 5]"), None, "GC104", 13, "is a list, but the block uses it"),
    ("arg mapping", BLOCK.replace("WIDTH", "{a: 1}"), None, "GC104", 13, "found a mapping"),
    ("arg bad expression", BLOCK.replace("WIDTH", "'hidden.x'"), None, "GC105", 13, "unsupported syntax"),
    ("arg null", BLOCK.replace("WIDTH", "null"), None, "GC107", 13, "its argument `width`"),
    ("arg huge", BLOCK.replace("WIDTH", "99999999999999999999999"), None, "GC104", 13, "too large"),
    ("arg inf", BLOCK.replace("WIDTH", ".inf"), None, "GC104", 13, "not a finite number"),
    ("arg name", BLOCK.replace("args: {width: null}", "args: {width: null, [a]: 1}").replace("WIDTH", "4"),
     None, "GC002", 7, "a mapping key must be a name"),
    # block `inputs` / `outputs` items that are not names
    ("inputs item list", BLOCK.replace("inputs: [h]", "inputs: [[h]]").replace("WIDTH", "4"), None,
     "GC005", 8, "an input must be a name, found a list"),
    ("inputs item mapping", BLOCK.replace("inputs: [h]", "inputs: [{h: 1}]").replace("WIDTH", "4"), None,
     "GC005", 8, "found a mapping"),
    ("inputs item number", BLOCK.replace("inputs: [h]", "inputs: [h, 3]").replace("WIDTH", "4"), None,
     "GC005", 8, "found the number 3"),
    ("inputs item boolean", BLOCK.replace("inputs: [h]", "inputs: [true]").replace("WIDTH", "4"), None,
     "GC005", 8, "found a boolean"),
    ("inputs a number", BLOCK.replace("inputs: [h]", "inputs: 3").replace("WIDTH", "4"), None,
     "GC005", 8, "must be a list of names"),
    ("inputs twice", BLOCK.replace("inputs: [h]", "inputs: [h, h]").replace("WIDTH", "4"), None,
     "GC202", 8, "lists the input `h` twice"),
    ("outputs item list", BLOCK.replace("outputs: [fc]", "outputs: [[fc]]").replace("WIDTH", "4"), None,
     "GC201", 11, "must name a node, found a list"),
    ("outputs value mapping", BLOCK.replace("outputs: [fc]", "outputs: {y: {a: fc}}").replace("WIDTH", "4"),
     None, "GC201", 11, "must name a node, found a mapping"),
    ("outputs a number", BLOCK.replace("outputs: [fc]", "outputs: 7").replace("WIDTH", "4"), None,
     "GC005", 11, "must be a name, a list of names or a mapping"),
    ("block name null", BLOCK.replace("  dense:", "  null:").replace("block: dense", "block: x")
     .replace("WIDTH", "4"), None, "GC005", 6, "block name `None` must be an identifier"),
    # an instance's `in:` that is not a name
    ("instance in number", BLOCK.replace("in: x,", "in: 3,").replace("WIDTH", "4"), None,
     "GC201", 13, "must be given a node name, found the number 3"),
    ("instance in mapping", BLOCK.replace("in: x,", "in: {h: {a: x}},").replace("WIDTH", "4"), None,
     "GC201", 13, "must be given a node name, found a mapping"),
    ("instance in boolean", BLOCK.replace("in: x,", "in: false,").replace("WIDTH", "4"), None,
     "GC201", 13, "found a boolean"),
    ("op in mapping value", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: {x: {a: 1}}}\noutputs: [y]\n",
     None, "GC201", 3, "found a mapping"),
    ("op in boolean", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: true}\noutputs: [y]\n",
     None, "GC201", 3, "boolean"),
    ("literal inf", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: add, in: [x, 1e309]}\noutputs: [y]\n",
     None, "GC201", 3, "inf is not a finite float32 number"),
    ("literal nan in a list", "inputs: {x: [B, 2]}\nnodes:\n  y: {op: mul, in: [x, [1, .nan]]}\noutputs: [y]\n",
     None, "GC201", 3, "nan is not a finite float32 number"),
    # keys that are flow collections, values with tags the safe loader refuses
    ("flow mapping key", "inputs: {x: [B, 4]}\nnodes:\n  {op: relu}: x\noutputs: [x]\n", None,
     "GC002", 3, "found a mapping"),
    ("flow list key", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, [in]: x}\noutputs: [y]\n", None,
     "GC002", 3, "found a list"),
    ("complex key", "inputs: {x: [B, 4]}\nnodes:\n  ? [y]\n  : {op: relu, in: x}\noutputs: [x]\n", None,
     "GC002", 3, "found a list"),
    ("binary tag", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: !!binary aGk=}\noutputs: [y]\n",
     None, "GC002", 3, "unsupported tag `!!binary`"),
    ("set tag", "inputs: {x: [B, 4]}\nnodes:\n  y: !!set {a}\noutputs: [x]\n", None,
     "GC002", 3, "unsupported tag `!!set`"),
    # shapes
    ("shape true", "inputs: {x: [B, true]}\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", None,
     "GC104", 1, "dimension true must be a positive integer"),
    ("shape on", "inputs:\n  x: [B, on]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", None,
     "GC104", 2, "dimension true must be a positive integer"),
    ("shape negative", "inputs:\n  x: [B, -B]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", None,
     "GC104", 2, "dimension -B must be a positive integer"),
    ("shape zero", "inputs:\n  x: [B, B - B]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", None,
     "GC104", 2, "dimension 0 must be a positive integer"),
    ("shape huge", "inputs:\n  x: [B, 99999999999999999999]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n",
     None, "GC105", 2, "too large"),
    ("reshape true", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: reshape, in: x, shape: [B, true]}\n"
     "outputs: [y]\n", None, "GC104", 4, "must be a number, found True"),
    ("dtype list", "inputs:\n  x: {shape: [B, 4], dtype: [float32]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC104", 2, "unknown dtype"),
    # numbers and expressions: unbounded, non-finite, or failing
    ("power tower", "constants: {w: ((9**64)**64)**64}\ninputs: {x: [B, 4]}\nnodes:\n"
     "  y: {op: linear, in: x, out: w}\noutputs: [y]\n", None, "GC105", 1, "too large"),
    ("exponent too large", "constants: {w: 9**9**9}\ninputs: {x: [B, 4]}\nnodes:\n"
     "  y: {op: linear, in: x, out: w}\noutputs: [y]\n", None, "GC105", 1, "exponent 387420489 too large"),
    ("symbolic degree", "inputs: {x: [B, T]}\nnodes:\n  y: {op: reshape, in: x, shape: ['(B + T) ** 64']}\n"
     "outputs: [y]\n", None, "GC105", 3, "too high a degree"),
    ("symbolic too many terms", "inputs: {x: [A, B, C, D]}\nnodes:\n"
     "  y: {op: reshape, in: x, shape: ['(A + B + C + D + 1) ** 6']}\noutputs: [y]\n", None, "GC105", 3,
     "more than 1000 terms multiplied out"),
    ("input size too large", "dims: [A, B, C, D, E, F, G, H, I, J, K]\ninputs:\n"
     "  x: [A+1, B+1, C+1, D+1, E+1, F+1, G+1, H+1, I+1, J+1, K+1]\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC104", 3, "too large to work with"),
    ("output size too large", "dims: [A, B, C, D, E, F, G, H, I, J, K]\ninputs:\n  x: [A+1, B+1, C+1, D+1, E+1]\n  y: [F+1, G+1, H+1, I+1, J+1, K+1]\n"
     "nodes:\n  a: {op: flatten, in: x, start: 0}\n  b: {op: flatten, in: y, start: 0}\n"
     "  d: {op: reshape, in: a, shape: [-1, 1, 1, 1, 1, 1, 1]}\n"
     "  e: {op: reshape, in: b, shape: [1, -1]}\n  f: {op: mul, in: [d, e]}\n"
     "outputs: [f]\n", None, "GC204", 10, "too large to work with"),
    ("symbolic exponent", "inputs: {x: [B, T]}\nnodes:\n  y: {op: reshape, in: x, shape: ['2 ** B']}\n"
     "outputs: [y]\n", None, "GC105", 3, "must be a number, not a dimension"),
    ("inf constant", "constants: {w: .inf}\ninputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC105", 1, "not a finite number"),
    ("overflow", "constants: {w: 1e308 * 10}\ninputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC105", 1, "inf is not a finite number"),
    ("round inf", "constants: {w: round(1e308 * 10)}\ninputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC105", 1, "not a finite number"),
    ("int of huge float", "constants: {w: int(1e300)}\ninputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC105", 1, "too large"),
    ("sqrt negative", "constants: {w: sqrt(-1)}\ninputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC105", 1, "math domain error"),
    ("min of nothing", "constants: {w: min()}\ninputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC105", 1, "cannot compute `min()`"),
    ("complex power", "constants: {w: (-8) ** 0.5}\ninputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\n"
     "outputs: [y]\n", None, "GC105", 1, "not a real number"),
    ("symbolic division by zero", "inputs: {x: [B, T]}\nnodes:\n  y: {op: reshape, in: x, shape: ['B / (T - T)']}\n"
     "outputs: [y]\n", None, "GC105", 3, "division by zero"),
    ("float attribute nan", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: dropout, in: x, p: .nan}\noutputs: [y]\n",
     None, "GC105", 3, "nan is not a finite number"),
    ("int attribute 1e20", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: linear, in: x, out: 1e20}\noutputs: [y]\n",
     None, "GC104", 3, "too large for an integer"),
    ("int attribute list", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: linear, in: x, out: [2, 2]}\noutputs: [y]\n",
     None, "GC104", 3, "must be an integer, found a list"),
    # odd attribute values reach the shape rules, which answer with GC204
    ("conv stride 0", "inputs: {x: [B, 1, 8, 8]}\nnodes:\n  y: {op: conv2d, in: x, out: 2, kernel: 3, stride: 0}\n"
     "outputs: [y]\n", None, "GC204", 3, "stride must be ≥ 1, found 0"),
    ("pool kernel 0", "inputs: {x: [B, 1, 8, 8]}\nnodes:\n  y: {op: maxpool2d, in: x, kernel: 0}\n"
     "outputs: [y]\n", None, "GC204", 3, "kernel must be ≥ 1, found 0"),
    ("conv_transpose dilation 0", "inputs: {x: [B, 1, 8, 8]}\nnodes:\n"
     "  y: {op: conv_transpose2d, in: x, out: 2, kernel: 3, dilation: 0}\noutputs: [y]\n", None,
     "GC204", 3, "dilation must be ≥ 1, found 0"),
    ("split no sizes", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: split, in: x, sizes: []}\noutputs: [y]\n",
     None, "GC204", 3, "sizes must list at least one piece"),
    ("split zero size", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: split, in: x, sizes: [0, 4]}\noutputs: [y.1]\n",
     None, "GC204", 3, "positive size"),
    ("slice past the end", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: slice, in: x, axis: 1, start: 9}\n"
     "outputs: [y]\n", None, "GC204", 3, "start 9 is past the end"),
    ("negative eps", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: layernorm, in: x, eps: -1}\noutputs: [y]\n",
     None, "GC204", 3, "eps must be ≥ 0"),
    # outputs and losses written as one name keep their span
    ("output one bad name", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\noutputs: 'B*T'\n", None,
     "GC201", 4, "output `B*T`"),
    ("loss one bad name", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\nlosses: nope\n",
     None, "GC201", 5, "loss `nope`"),
    ("output empty reference", "inputs: {x: [B, 4]}\nnodes:\n  y: {op: relu, in: x}\noutputs: ['.x']\n", None,
     "GC201", 4, "is not a reference"),
    # --set values for dimensions and constants
    ("set dim word", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", {"B": "abc"},
     "GC105", 2, "--set B=abc: unknown name `abc`"),
    ("set dim zero", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", {"B": 0},
     "GC104", 2, "--set B=0: a dimension must be a positive integer"),
    ("set dim float", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", {"B": 2.5},
     "GC104", 2, "must be a positive integer, found 2.5"),
    ("set dim list", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n", {"B": []},
     "GC104", 2, "found a list"),
    ("set dim inf", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n",
     {"B": float("inf")}, "GC105", 2, "not a finite number"),
    ("set dim huge", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n",
     {"B": "2**64"}, "GC105", 2, "too large"),
    ("set dim bytes", "inputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n",
     {"B": b"hi"}, "GC104", 2, "found a bytes"),
    ("set declared dim", "dims: [B]\ninputs:\n  x: [B, 4]\nnodes:\n  y: {op: relu, in: x}\noutputs: [y]\n",
     {"B": "x"}, "GC105", 1, "--set B=x: unknown name `x`"),
    ("set constant list", BLOCK.replace("WIDTH", "hidden"), {"hidden": [1]}, "GC104", 2,
     "constant `hidden` (--set hidden=[1]): expected a number"),
    ("set constant tower", BLOCK.replace("WIDTH", "hidden"), {"hidden": "((9**64)**64)**64"}, "GC105", 2,
     "too large"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_diagnostic_at_its_line(write_spec, case):
    _, text, overrides, code, line, words = case
    a = diagnose(write_spec, text, overrides)
    d = the_error(a, code)
    assert words in d.message, d.message
    assert d.span is not None and d.span.line == line, (d.span, d.message)


def test_block_argument_typo_says_which_name_was_meant(write_spec):
    a = diagnose(write_spec, BLOCK.replace("WIDTH", "hiden"))
    errors = [d for d in a.diagnostics if d.is_error]
    assert len(errors) == 1, [d.message for d in errors]  # once, not once per use or copy
    assert errors[0].hint == "did you mean `hidden`?"
    assert errors[0].related and errors[0].related[0][1].line == 10  # where the block uses it


def test_a_bad_constant_is_reported_once_not_at_every_use(write_spec):
    text = BLOCK.replace("WIDTH", "hidden").replace("{hidden: 16}", "{hidden: .nan, twice: 2 * hidden}")
    errors = [d for d in diagnose(write_spec, text).diagnostics if d.is_error]
    assert [d.code for d in errors] == ["GC105"], [d.message for d in errors]


def test_a_missing_block_input_does_not_cascade(write_spec):
    errors = [d for d in diagnose(write_spec, BLOCK.replace("in: x,", "in: 3,").replace("WIDTH", "4"))
              .diagnostics if d.is_error]
    assert [d.code for d in errors] == ["GC201"], [d.message for d in errors]


def test_block_arguments_may_be_lists(write_spec):
    text = """
    inputs:
      x: [B, 1, 8, 8]
    blocks:
      conv:
        args: {k: [3, 1], c: 4}
        inputs: [h]
        nodes:
          y: {op: conv2d, in: h, out: c, kernel: k, padding: [1, 0]}
        outputs: [y]
    nodes:
      a: {block: conv, in: x}
      b: {block: conv, in: a, k: [1, 3], c: 2}
    outputs: [b]
    """
    a = diagnose(write_spec, text)
    assert a.ok, [d.message for d in a.diagnostics]
    assert a.graph.nodes["a.y"].attrs["kernel"] == (3, 1)
    assert a.graph.nodes["b.y"].attrs["kernel"] == (1, 3)


def test_bare_words_still_name_ops(write_spec):
    text = BLOCK.replace("args: {width: null}", "args: {width: null, act: relu}").replace(
        "fc: {op: linear, in: h, out: width}", "fc: {op: linear, in: h, out: width}\n      a: {op: act, in: fc}"
    ).replace("outputs: [fc]", "outputs: [a]").replace("WIDTH", "hidden")
    assert diagnose(write_spec, text).ok


def test_dates_and_equals_signs_are_text():
    doc = load_text("a: 2001-12-14\nb: =\n")
    assert doc == {"a": "2001-12-14", "b": "="}


@pytest.mark.parametrize("text", ["((9**64)**64)**64", "9**9**9", "(B + T) ** 64 ** 64", "2 ** 64 ** 64",
                                  "(2**62)*(2**62)*(2**62)", "((B+T+1)**8)**8"])
def test_expressions_are_refused_past_the_budget(text):
    with pytest.raises(ExprError):
        evaluate(text, {"B": symbol("B"), "T": symbol("T")})


@pytest.mark.parametrize("sets", [["B=abc"], ["B=1e309"], ["hidden=[1]"], ["B=((9**64)**64)**64"],
                                  ["depth=1e9"], ["B=!!binary aGk="], ["hidden=!!set {a}"], ["B=0"]])
@pytest.mark.parametrize("command", ["check", "summary", "lint"])
def test_cli_set_values_exit_1_with_a_diagnostic(command, sets):
    args = [command, "specs/mlp.yaml"] + [x for s in sets for x in ("--set", s)]
    r = CliRunner().invoke(main, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 1, r.output
    out = r.output + (r.stderr or "")
    assert "error[GC1" in out and "specs/mlp.yaml:" in out, out
    assert "Traceback" not in out and "GC900" not in out


def test_huge_symbolic_sizes_are_compared_without_expanding():
    """A product of 16 sums has 2**16 terms multiplied out; comparing two such sizes must not
    multiply them out (that took minutes), and the answers stay right."""
    from graphc.shapes import dims_equal, is_integral

    syms = [symbol(f"D{i}") for i in range(16)]
    p = 1
    for s in syms:
        p = p * (s + 1)
    q = 1
    for s in reversed(syms):
        q = q * (1 + s)
    assert dims_equal(p, q)
    assert not dims_equal(p, p + 1)
    assert not dims_equal(p, p * syms[0])
    assert is_integral(p) is True
    assert is_integral(p / 2) is None  # not decidable cheaply: not reported as fractional


def test_blocks_nested_too_deep_are_one_diagnostic(write_spec):
    n = 400  # each level is a few Python frames: this used to be a RecursionError (GC900)
    lines = ["inputs: {x: [B, 4]}", "blocks:"]
    for i in range(n):
        body = f"{{block: b{i + 1}, in: h}}" if i < n - 1 else "{op: relu, in: h}"
        lines += [f"  b{i}:", "    inputs: [h]", "    nodes:", f"      s: {body}", "    outputs: [s]"]
    lines += ["nodes:", "  s: {block: b0, in: x}", "outputs: [s]"]
    errors = [d for d in diagnose(write_spec, "\n".join(lines) + "\n").diagnostics if d.is_error]
    assert [d.code for d in errors] == ["GC106"] and "nest more than 32 deep" in errors[0].message


def test_nested_repeats_are_refused_before_they_expand(write_spec):
    """1000 × 1000 × 1000 copies: refused from the repeat counts before any copy is made (the
    message is the up-front one, at the outer instance), with the repeats that multiply (this
    used to run out of memory, then to build 100,000 nodes first: 2 s and 250 MB)."""
    from tests.conftest import SPECS

    text = (SPECS / "bad" / "repeat_bomb.yaml").read_text()
    errors = [d for d in diagnose(write_spec, text).diagnostics if d.is_error]
    assert [d.code for d in errors] == ["GC004"]
    assert errors[0].span.line == 20 and "at least 1,000,000,000 nodes" in errors[0].message
    assert [s.line for _, s in errors[0].related] == [17, 12]


def test_repeats_given_by_expressions_still_stop_at_the_node_limit(write_spec):
    """Repeat counts from block arguments are not known before expanding: the graph stops at
    100,000 nodes, with the instances that multiplied."""
    text = """inputs: {x: [B, 4]}
blocks:
  inner:
    args: {n: null}
    inputs: [h]
    nodes:
      a: {op: relu, in: h, repeat: n}
    outputs: [a]
  outer:
    args: {n: null}
    inputs: [h]
    nodes:
      s: {block: inner, in: h, repeat: n, n: n}
    outputs: [s]
nodes:
  s: {block: outer, in: x, repeat: 1000, n: 1000}
outputs: [s]
"""
    errors = [d for d in diagnose(write_spec, text).diagnostics if d.is_error]
    assert [d.code for d in errors] == ["GC004"]
    assert "the graph has more than 100,000 nodes" in errors[0].message
    assert [s.line for _, s in errors[0].related] == [16, 13]


def test_many_undefined_references_in_a_large_graph_get_hints_in_linear_time(write_spec):
    """One misspelt reference per node of a 5,000-node graph: each gets its hint (the hint search
    used to compare every name with every name)."""
    n = 5000
    lines = ["inputs: {x: [B, 4]}", "nodes:"]
    lines += [f"  node{i}: {{op: relu, in: {f'nod{i - 1}' if i else 'x'}}}" for i in range(n)]
    a = diagnose(write_spec, "\n".join(lines + [f"outputs: [node{n - 1}]"]) + "\n")
    errors = [d for d in a.diagnostics if d.is_error]
    assert len(errors) == n - 1
    assert errors[-1].hint == f"did you mean `node{n - 2}`?"
