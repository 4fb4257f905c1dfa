"""The spec language: constants, expressions, blocks, repeat, ports, overrides, safe loading."""

import pytest

from graphc.pipeline import analyze
from graphc.shapes import fmt_shape


def shapes(a):
    g = a.graph
    return {n: fmt_shape(g.types[(n, g.nodes[n].outputs[0])].shape) for n in g.order
            if (n, g.nodes[n].outputs[0]) in g.types}


def ok(write_spec, text, overrides=None):
    a = analyze(write_spec(text), overrides)
    assert a.ok, [(d.code, d.message) for d in a.diagnostics]
    return a


NESTED = """
constants: {d: 8, n: 3}
inputs:
  x: [B, T, d]
blocks:
  inner:
    args: {w: null}
    inputs: [h]
    nodes:
      fc: {op: linear, in: h, out: w}
      act: {op: relu, in: fc}
    outputs: [act]
  outer:
    args: {w: 8, depth: 2}
    inputs: [h, skip]
    nodes:
      body: {block: inner, in: h, repeat: depth, w: w}
      res: {op: add, in: [body, skip]}
    outputs: {y: res, pre: body}
nodes:
  stack: {block: outer, in: {h: x, skip: x}, repeat: n}
  head: {op: linear, in: stack.pre, out: 2}
outputs: [stack, head]
"""


def test_nested_blocks_repeat_and_named_outputs(write_spec):
    a = ok(write_spec, NESTED)
    g = a.graph
    # 3 outer copies × (2 inner copies × 2 nodes + 1 add)
    assert sum(not n.is_input for n in g.nodes.values()) == 3 * (2 * 2 + 1) + 1
    assert "stack.2.body.1.fc" in g.nodes
    # repeat chains the first input; the second (skip) is shared by every copy
    assert [i.src for i in g.nodes["stack.1.body.0.fc"].inputs] == ["stack.0.res"]
    assert [i.src for i in g.nodes["stack.2.res"].inputs] == ["stack.2.body.1.act", "x"]
    # `stack.pre` is the inner stack's output in the last copy; `stack` the default output `y`
    assert g.nodes["head"].inputs[0].src == "stack.2.body.1.act"
    assert g.outputs["stack"] == ("stack.2.res", "out")
    frames = g.nodes["stack.1.body.0.fc"].scope
    assert [(f.block, f.index, f.repeat) for f in frames] == [("outer", 1, 3), ("inner", 0, 2)]


def test_expressions_and_symbolic_arithmetic(write_spec):
    a = ok(write_spec, """
constants: {d_model: 32, heads: 4, d_head: d_model // heads, d_ff: 4 * d_model}
inputs:
  x: [B, T, d_model]
nodes:
  ff: {op: linear, in: x, out: d_ff}
  heads: {op: reshape, in: x, shape: [B, T, heads, d_head]}
  pairs: {op: reshape, in: x, shape: [B, T * 2, d_head * 2]}
  flat: {op: reshape, in: x, shape: [B, -1]}
  both: {op: concat, in: [x, x], axis: 1}
outputs: [ff, heads, pairs, flat, both]
""")
    s = shapes(a)
    assert s["ff"] == "B×T×128"
    assert s["heads"] == "B×T×4×8"
    assert s["pairs"] == "B×2*T×16"
    assert s["flat"] == "B×32*T"
    assert s["both"] == "B×2*T×32"


def test_set_binds_dims_and_overrides_train(write_spec):
    text = """
constants: {d: 16}
inputs:
  x: [B, T, d]
nodes:
  fc: {op: linear, in: x, out: d}
outputs: [fc]
train: {optimizer: {name: adam, lr: 1e-3}}
"""
    a = ok(write_spec, text, {"B": 4, "d": 8, "optimizer.lr": 0.5, "steps": 10})
    assert shapes(a)["fc"] == "4×T×8"
    assert a.graph.train == {"optimizer": {"name": "adam", "lr": 0.5}, "steps": 10}


def test_merge_keys_and_floats(write_spec):
    path = write_spec("""
inputs:
  x: [B, 3]
nodes:
  a: &fc {op: linear, in: x, out: 4}
  b: {<<: *fc, in: a, out: 2}
outputs: [b]
train: {optimizer: {lr: 3e-4}}
""")
    a = analyze(path)
    assert a.ok
    assert shapes(a)["b"] == "B×2"
    assert a.graph.train["optimizer"]["lr"] == pytest.approx(3e-4)


def test_op_repeat_and_split_outputs(write_spec):
    a = ok(write_spec, """
inputs:
  x: [B, 12]
nodes:
  fc: {op: linear, in: x, out: 12, repeat: 3}
  parts: {op: split, in: fc, sizes: [4, 8]}
  mix: {op: mul, in: [parts.0, parts.0]}
outputs: [mix, parts.1]
""")
    g = a.graph
    assert [n for n in g.nodes if n.startswith("fc")] == ["fc.0", "fc.1", "fc.2"]
    assert g.nodes["fc.2"].inputs[0].src == "fc.1"
    assert g.outputs["parts.1"] == ("parts", "1")
    assert fmt_shape(g.types[("parts", "1")].shape) == "B×8"


def test_all_problems_reported_in_one_run(write_spec):
    a = analyze(write_spec("""
inputs:
  x: [B, 16]
nodes:
  a: {op: lineer, in: x, out: 4}
  b: {op: relu, in: nothing}
  c: {op: linear, in: x, out: 4, bias: maybe}
outputs: [a, b, c]
"""))
    codes = sorted(d.code for d in a.diagnostics)
    assert codes == ["GC101", "GC104", "GC201"]


def test_duplicate_key_names_both_lines(write_spec):
    a = analyze(write_spec("inputs:\n  x: [B, 2]\n  x: [B, 3]\nnodes: {}\n"))
    (d,) = [d for d in a.diagnostics if d.code == "GC003"]
    assert d.span.line == 3 and d.related[0][1].line == 2


@pytest.mark.parametrize("text,code", [
    ("", "GC005"),
    ("- just\n- a list\n", "GC005"),
    ("inputs: {x: [B, 2]}\nnodes: {a: {op: relu, in: x}}\noutputs: [a]\nextra: 1\n", "GC005"),
    ("inputs: {x: [B, 2]}\nnodes: {a: {op: relu, block: b, in: x}}\noutputs: [a]\n", "GC005"),
    ("inputs: {x: {shape: [B, 2], dtype: float16}}\nnodes: {a: {op: relu, in: x}}\noutputs: [a]\n",
     "GC104"),
    ("inputs: {x: [B, 2]}\nnodes: {a: {op: relu, in: x, repeat: -1}}\noutputs: [a]\n", "GC104"),
    ("inputs: {x: [B, 2]}\nnodes: {a: {op: relu, in: x}}\n", "GC303"),
    ("inputs: {x: [B, 2]}\nnodes: {a: {op: relu, in: x}}\noutputs: [a.out2]\n", "GC201"),
    ("constants: {n: 2 ** 999}\ninputs: {x: [B, 2]}\nnodes: {a: {op: relu, in: x}}\noutputs: [a]\n",
     "GC105"),
    ("constants: {n: __import__('os')}\ninputs: {x: [B, 2]}\nnodes: {a: {op: relu, in: x}}\n"
     "outputs: [a]\n", "GC105"),
    ("inputs: {x: [B, 2]}\nnodes: {a: {op: softmax, in: x, axis: 3}}\noutputs: [a]\n", "GC204"),
])
def test_structural_errors(write_spec, text, code):
    a = analyze(write_spec(text))
    assert code in {d.code for d in a.diagnostics}, [(d.code, d.message) for d in a.diagnostics]
    assert not a.ok
    assert all(d.code != "GC900" for d in a.diagnostics)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"nodes: {caf\xe9: 1}\n")
    (d,) = analyze(bad).diagnostics
    assert d.code == "GC001" and "UTF-8" in d.message
    (d,) = analyze(tmp_path).diagnostics
    assert d.code == "GC001" and "directory" in d.message


def test_a_spec_that_is_a_pipe_is_read_only_up_to_the_size_limit(tmp_path):
    """A pipe (or /dev/zero) has no size to check first: it was read whole (/dev/zero until a
    MemoryError, reported as GC900); now reading stops past the 4 MiB limit."""
    import os
    import threading

    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)

    def write():
        try:
            with open(fifo, "w") as fh:
                fh.write("#" * (5 * 2**20) + "\n")
        except BrokenPipeError:  # the reader stopped early: what is wanted
            pass

    writer = threading.Thread(target=write)
    writer.start()
    (d,) = analyze(fifo).diagnostics
    writer.join()
    assert d.code == "GC004" and "larger than 4 MiB" in d.message
