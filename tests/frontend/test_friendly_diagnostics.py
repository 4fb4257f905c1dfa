"""Diagnostics for what newcomers type: PyTorch's (and Keras') attribute names get a "did you
mean", and one error does not drag a train of unreachable-node warnings behind it."""

from __future__ import annotations

import pytest

from graphc.ops import OPS
from graphc.pipeline import analyze
from graphc.spec.aliases import NOTES, RENAMES, foreign_name_hint

HEAD = "graphc: 1\nname: t\ninputs: {x: [B, 1, 8, 8], v: [B, 4], y: {shape: [B], dtype: int64}}\nnodes:\n"


def diagnostics(write_spec, nodes: str, tail: str = "outputs: [out]\n"):
    a = analyze(write_spec(HEAD + nodes + tail))
    return [(d.code, d.severity, d.message, d.hint) for d in a.diagnostics]


@pytest.mark.parametrize("node,foreign,ours", [
    ("{op: conv2d, in: x, out_channels: 4, kernel: 3}", "out_channels", "out"),
    ("{op: conv2d, in: x, out: 4, kernel_size: 3}", "kernel_size", "kernel"),
    ("{op: linear, in: v, out_features: 4}", "out_features", "out"),
    ("{op: maxpool2d, in: x, kernel: 2, strides: 2}", "strides", "stride"),
    ("{op: dropout, in: v, dropout: 0.1}", "dropout", "p"),
    ("{op: dropout, in: v, rate: 0.1}", "rate", "p"),
    ("{op: softmax, in: v, dim: -1}", "dim", "axis"),
    ("{op: flatten, in: x, start_dim: 1}", "start_dim", "start"),
    ("{op: layernorm, in: v, elementwise_affine: false}", "elementwise_affine", "affine"),
    ("{op: embedding, in: y, num_embeddings: 10, embedding_dim: 4}", "num_embeddings", "num"),
])
def test_pytorch_names_suggest_graphcs(write_spec, node, foreign, ours):
    found = diagnostics(write_spec, f"  out: {node}\n")
    hits = [d for d in found if d[0] == "GC102" and f"`{foreign}`" in d[2]]
    assert hits, found
    assert hits[0][3].startswith(f"did you mean `{ours}`?") and foreign in hits[0][3]
    # the renamed attribute is not reported missing as well: one mistake, one error
    assert not [d for d in found if d[0] == "GC103" and f"`{ours}`" in d[2]], found


def test_attention_heads_and_causal(write_spec):
    found = diagnostics(write_spec, "  e: {op: embedding, in: y, num: 10, dim: 8}\n"
                        "  out: {op: attention, in: e, num_heads: 2, is_causal: true}\n")
    hints = {d[2].split("`")[3]: d[3] for d in found if d[0] == "GC102"}
    assert hints["num_heads"].startswith("did you mean `heads`?")
    assert hints["is_causal"].startswith("did you mean `causal`?")


@pytest.mark.parametrize("node,foreign,words", [
    ("{op: linear, in: v, out: 4, in_features: 4}", "in_features", "infers"),
    ("{op: conv2d, in: x, out: 4, kernel: 3, in_channels: 1}", "in_channels", "infers"),
    ("{op: linear, in: v, out: 4, activation: relu}", "activation", "nodes of their own"),
])
def test_pytorch_names_graphc_does_not_need_are_explained(write_spec, node, foreign, words):
    found = diagnostics(write_spec, f"  out: {node}\n")
    hit = next(d for d in found if d[0] == "GC102" and f"`{foreign}`" in d[2])
    assert words in hit[3]


def test_an_own_attribute_is_never_renamed_away():
    # `dim` is embedding's own attribute; `dropout` is not an attribute of dropout's
    assert foreign_name_hint(OPS["embedding"], "axis") is None
    assert foreign_name_hint(OPS["softmax"], "dim").startswith("did you mean `axis`")
    for foreign, ours in RENAMES.items():
        assert not any(foreign in op.attrs and ours in op.attrs for op in OPS.values()), foreign
    assert NOTES["in_features"] and foreign_name_hint(OPS["linear"], "in_features") == NOTES["in_features"]


def test_typos_still_get_the_usual_suggestion(write_spec):
    found = diagnostics(write_spec, "  out: {op: linear, in: v, outt: 4}\n")
    assert any(d[0] == "GC102" and d[3] == "did you mean `out`?" for d in found), found


LINEAR = "  fc1: {op: linear, in: v, out: 8}\n  out: {op: linear, in: fc1, out: 3}\n"


@pytest.mark.parametrize("nodes,tail", [
    (LINEAR + "  side: {op: linear, in: v, out: 2}\n", "outputs: [out, sidee]\n"),  # a misspelt output
    (LINEAR + "  loss: {op: cross_entropy, in: [out, y]}\n", "outputs: [out]\nlosses: [losss]\n"),
    ("  fc1: {op: linear, in: v, out: 8}\n  act: {op: relu, in: fc1}\n"
     "  out: {op: lineer, in: act, out: 3}\n", "outputs: [out]\n"),  # an unknown op drops its node
])
def test_an_error_does_not_cascade_into_unreachable_warnings(write_spec, nodes, tail):
    found = diagnostics(write_spec, nodes, tail)
    assert any(sev == "error" for _, sev, _, _ in found)
    assert not [d for d in found if d[0] in ("GC301", "GC302")], found


def test_unreachable_warnings_remain_without_errors(write_spec):
    found = diagnostics(write_spec, LINEAR + "  extra: {op: relu, in: fc1}\n")
    assert {d[0] for d in found} == {"GC301", "GC302"}  # `extra`; inputs x and y
    assert [d[2] for d in found if d[0] == "GC301"] == ["node `extra` (relu) reaches no output or loss"]
