"""A 20,000-node spec checks and lints correctly (and, with linear passes, in a few seconds).

Timing is not asserted here (timed tests are flaky on a shared machine); the numbers, at 2k, 5k
and 20k nodes, come from `python benchmarks/large_graphs.py`.
"""

import textwrap

from benchmarks.large_graphs import chain_spec, transformer_spec
from graphc.lint.engine import Config, lint_file
from graphc.pipeline import analyze
from graphc.shapes import fmt_shape

N = 20_000


def test_a_20000_node_chain_checks_and_lints(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(chain_spec(N))
    a = analyze(path)
    assert a.ok, [d.message for d in a.diagnostics[:5]]
    g = a.graph
    units = N // 3
    assert len(g.nodes) == 2 + 3 * units + 2 * 3 + 2  # inputs, the units, the block tail ×2, head
    assert g.order[0] == "x" and g.order[-1] == "loss"
    assert fmt_shape(g.types[g.outputs["logits"]].shape) == "B×4"
    assert g.param_count() == (units + 2) * (16 * 16 + 16) + 16 * 4 + 4
    r = lint_file(str(path), config=Config())
    assert r.linted and not any(d.is_error for d in r.diagnostics), [d.message for d in r.diagnostics]
    # the hand-written residual units are one finding (GL306), not one per unit
    assert [d.code for d in r.diagnostics].count("GL306") == 1


def test_a_20000_node_transformer_checks_and_lints(tmp_path):
    """Deep attention stacks are what lint's sequence and loss rules walk: each rule once over
    the graph, not once per attention layer (no-position took a minute at this size)."""
    path = tmp_path / "transformer.yaml"
    path.write_text(transformer_spec(N))
    a = analyze(path)
    assert a.ok, [d.message for d in a.diagnostics[:5]]
    layers = sum(n.op == "attention" for n in a.graph.nodes.values())
    assert layers == N // 6 // 100 * 100 and len(a.graph.losses) == layers // 100
    r = lint_file(str(path), config=Config())
    assert r.linted and not r.diagnostics, [d.message for d in r.diagnostics]


def test_a_cycle_longer_than_the_search_bound_is_still_reported(tmp_path):
    n = 100  # simple cycles are searched up to 64 nodes long; a longer one is found another way
    lines = ["inputs: {x: [B, 4]}", "nodes:", f"  a0: {{op: add, in: [x, a{n - 1}]}}"]
    lines += [f"  a{i}: {{op: relu, in: a{i - 1}}}" for i in range(1, n)] + [f"outputs: [a{n - 1}]"]
    path = tmp_path / "cycle.yaml"
    path.write_text("\n".join(lines) + "\n")
    d = [d for d in analyze(path).diagnostics if d.is_error]
    assert [x.code for x in d] == ["GC203"] and d[0].message.startswith("the graph has a cycle: a0 → a1")
    assert d[0].span.line == 3


def test_a_cycle_through_a_residual_stack_is_one_diagnostic(tmp_path):
    """A wrong `in:` that closes a loop over 40 residual layers closes 2**40 simple cycles;
    the check reports the shortest one (it used to enumerate them, for minutes and gigabytes)."""
    text = """
    inputs: {x: [B, 8]}
    blocks:
      layer:
        inputs: [h]
        nodes:
          fc: {op: linear, in: h, out: 8}
          res: {op: add, in: [h, fc]}
        outputs: [res]
    nodes:
      first: {op: add, in: [x, stack]}
      stack: {block: layer, in: first, repeat: 40}
    outputs: [stack]
    """
    path = tmp_path / "loop.yaml"
    path.write_text(textwrap.dedent(text))
    errors = [d for d in analyze(path).diagnostics if d.is_error]
    assert [d.code for d in errors] == ["GC203"]
    assert errors[0].message.startswith("the graph has a cycle: first → stack.0.res → stack.1.res")
