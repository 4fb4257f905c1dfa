"""--backward draws the gradient flow of the compiler's reverse-mode autodiff."""

from __future__ import annotations

from .helpers import ROOT, SVG, needs_dot, read_svg

pytestmark = needs_dot

GRADIENT = "#ef6c00"


def _gradient_edges(drawing) -> set[str]:
    """Edge titles (`src->dst`) of the dashed gradient edges."""
    found = set()
    for g in drawing.root.iter(f"{SVG}g"):
        if g.get("class") == "edge" and any(e.get("stroke", "").lower() == GRADIENT for e in g.iter()):
            found.add(g.find(f"{SVG}title").text)
    return found


def test_transformer_gradient_flow(render):
    result, out = render(ROOT / "specs" / "transformer.yaml", "tb.svg", "--backward")
    assert result.exit_code == 0, result.output
    d = read_svg(out)
    grads = _gradient_edges(d)
    # from the loss back through the head, the folded layer and the embeddings
    for edge in ("logits->loss", "decoder.0.norm2->logits",
                 "decoder.0.ff2->decoder.0.norm2", "decoder.0.attn->decoder.0.norm1",
                 "pos->decoder.0.attn", "embed->pos"):
        assert edge in grads, edge
    # token ids, targets and the mask are not differentiable: no gradient reaches them
    assert not {e for e in grads if e.split("->")[0] in ("tokens", "targets", "loss_mask")}
    assert any(t.startswith("∇ weight") for t in d.node_texts("embed"))
    assert any(t.startswith("∇") for t in d.node_texts("decoder.0.attn"))
    assert "gradient flow" in d.texts
    # the walk starts at the loss: said on the loss node itself
    assert any(t.startswith("∂ = 1") for t in d.node_texts("loss"))


def test_backward_expanded_reaches_every_layer(render):
    result, out = render(ROOT / "specs" / "mlp.yaml", "mb.svg", "--backward", "--expand")
    assert result.exit_code == 0, result.output
    grads = _gradient_edges(read_svg(out))
    assert "hidden_layers.0.act->hidden_layers.1.fc" in grads
    assert "x->hidden_layers.0.fc" not in grads  # inputs get no gradient by default
