"""Every reference spec renders to SVG and PNG, and the SVG shows what the graph is."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from graphc.pipeline import analyze
from graphc.render import LOSS_COLOUR, OUTPUT_COLOUR
from graphc.shapes import fmt_shape

from .helpers import REFERENCE_SPECS, ROOT, needs_dot, read_svg

pytestmark = needs_dot


def _folded_away(node) -> bool:
    """Repetitions after the first of a repeated block are drawn as the first one."""
    return any(f.index for f in node.scope)


def _edge_shapes(graph) -> set[str]:
    tensors = {i.tensor for n in graph.nodes.values() for i in n.inputs}
    return {fmt_shape(graph.types[t].shape) for t in tensors}


def check_png(path: Path) -> None:
    with Image.open(path) as im:
        im.verify()  # a truncated or corrupt file raises here
    with Image.open(path) as im:
        assert im.format == "PNG"
        width, height = im.size
        # readable at default size: neither a thumbnail nor a poster
        assert 250 <= width <= 2500 and 250 <= height <= 4000, im.size
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 16  # an actual drawing, not a blank canvas


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.stem)
def test_reference_spec_renders_svg_with_every_node_and_shape(render, spec):
    result, out = render(spec, f"{spec.stem}.svg")
    assert result.exit_code == 0, result.output
    drawing = read_svg(out)
    graph = analyze(spec).graph
    for node in graph.nodes.values():
        if _folded_away(node):
            assert node.name not in drawing.nodes, f"{node.name} should be folded into repetition 0"
        else:
            assert node.name in drawing.nodes, f"node {node.name} missing from the SVG"
            texts = drawing.node_texts(node.name)
            assert node.name.split(".")[-1] in texts
            if not node.is_input:
                assert any(t.startswith(node.op) for t in texts), texts
    for shape in _edge_shapes(graph):
        assert shape in drawing.edge_texts, f"shape label {shape} missing"
    # one box per output and per loss: the node that computes it, framed in its colour and
    # saying so with its shape (no second box beside it)
    for kind, named in (("output", graph.outputs), ("loss", graph.losses)):
        for name, (node, port) in named.items():
            assert f"{kind}/{name}" not in drawing.nodes
            texts = " ".join(drawing.node_texts(node))
            assert kind in texts and fmt_shape(graph.types[(node, port)].shape) in texts, texts
            assert (LOSS_COLOUR if kind == "loss" else OUTPUT_COLOUR).lower() in drawing.node_strokes(node)
    assert graph.name in drawing.texts
    assert f"{graph.param_count(trainable_only=True):,} parameters" in drawing.text


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.stem)
def test_reference_spec_renders_expanded_with_every_node(render, spec):
    result, out = render(spec, f"{spec.stem}-expanded.svg", "--expand")
    assert result.exit_code == 0, result.output
    drawing = read_svg(out)
    graph = analyze(spec).graph
    assert set(graph.nodes) <= drawing.nodes
    for shape in _edge_shapes(graph):
        assert shape in drawing.edge_texts
    for name in graph.order:
        if graph.param_count(name):
            assert f"{graph.param_count(name):,} params" in drawing.node_texts(name)


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.stem)
def test_reference_spec_renders_png(render, spec):
    result, out = render(spec, f"{spec.stem}.png")
    assert result.exit_code == 0, result.output
    check_png(out)


def test_pdf_output(render):
    result, out = render(ROOT / "specs" / "mlp.yaml", "mlp.pdf")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")


def test_committed_readme_pictures_are_valid():
    images = ROOT / "docs" / "images"
    drawing = read_svg(images / "transformer.svg")
    assert "decoder.0.attn" in drawing.nodes and "decoder.1.attn" not in drawing.nodes
    assert "×2" in drawing.texts
    check_png(images / "transformer.png")
