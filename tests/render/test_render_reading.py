"""What makes a diagram easy to read: legible PNG text, one box per output and loss, hover text
on every node, a legend that explains the dashed edges, and `--expand` saying when it has
nothing to open."""

from __future__ import annotations

import re

from PIL import Image

from graphc.render.output import PNG_DPI

from .helpers import FIXTURES, ROOT, SVG, needs_dot, read_svg

pytestmark = needs_dot

CNN = ROOT / "specs" / "cnn.yaml"
TRANSFORMER = ROOT / "specs" / "transformer.yaml"


def _text(d, node: str) -> str:
    """A node's text as one line (Graphviz splits it into pieces at each font change)."""
    return " ".join(d.node_texts(node)).replace(" ,", ",")


def _svg_size_pt(path) -> tuple[float, float]:
    w, h = re.search(r'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"', path.read_text()).groups()
    return float(w), float(h)


def test_png_is_drawn_at_a_resolution_where_small_labels_read(render):
    # at 96-110 dpi the 9-point labels blur ("kernel" read as "kemel"); 144 dpi = 2 px per point
    assert PNG_DPI >= 144
    _, svg = render(CNN, "cnn.svg")
    result, png = render(CNN, "cnn.png")
    assert result.exit_code == 0, result.output
    width_pt, height_pt = _svg_size_pt(svg)
    with Image.open(png) as im:
        assert abs(im.size[0] - width_pt * PNG_DPI / 72) <= 3, (im.size, width_pt)
        assert abs(im.size[1] - height_pt * PNG_DPI / 72) <= 3


def test_one_box_per_output_and_loss(render):
    result, out = render(CNN, "cnn.svg")
    assert result.exit_code == 0, result.output
    d = read_svg(out)
    assert not {n for n in d.nodes if n.startswith(("output/", "loss/"))}
    assert "output · B×10" in _text(d, "logits")
    assert "loss, minimized · scalar" in _text(d, "loss")
    # logits feeds the loss and nothing else: one edge out of it
    edges = [g.find(f"{SVG}title").text for g in d.root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert [e for e in edges if e.startswith("logits->")] == ["logits->loss"]


def test_an_output_named_differently_from_its_node_is_named_on_it(render, tmp_path):
    spec = tmp_path / "named.yaml"
    spec.write_text("graphc: 1\nname: named\ninputs: {x: [B, 4], y: {shape: [B], dtype: int64}}\n"
                    "nodes:\n  fc: {op: linear, in: x, out: 3}\n"
                    "  ce: {op: cross_entropy, in: [fc, y]}\n"
                    "outputs: {scores: fc}\nlosses: {objective: ce}\n")
    result, out = render(spec, "named.svg")
    assert result.exit_code == 0, result.output
    d = read_svg(out)
    assert "output scores · B×3" in _text(d, "fc")
    assert "loss objective, minimized · scalar" in _text(d, "ce")


def test_an_output_of_an_undefined_node_is_listed_under_the_title(render, tmp_path):
    spec = tmp_path / "dangling.yaml"
    spec.write_text("graphc: 1\nname: dangling\ninputs: {x: [B, 4]}\n"
                    "nodes:\n  fc: {op: linear, in: x, out: 3}\noutputs: [fc, nowhere]\n")
    result, out = render(spec, "d.svg")
    assert result.exit_code == 1
    d = read_svg(out)
    assert d.nodes == {"x", "fc"}
    assert any("nowhere" in t for t in d.texts)


def _tooltips(d) -> dict[str, str]:
    tips = {}
    for g in d.root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            link = g.find(f"{SVG}g/{SVG}a")
            tips[g.find(f"{SVG}title").text] = link.get("{http://www.w3.org/1999/xlink}title") if link is not None else ""
    return tips


def test_svg_nodes_carry_attributes_and_shapes_as_hover_text(render):
    result, out = render(CNN, "cnn.svg")
    assert result.exit_code == 0, result.output
    tips = _tooltips(read_svg(out))
    conv = tips["conv1"].splitlines()
    assert conv[0] == "conv1: conv2d (conv)"
    assert "in x ← x: B×1×8×8" in conv and "out: B×32×8×8" in conv
    # every attribute, defaults included (the box shows only the non-default ones)
    assert {"out = 32", "kernel = 3×3", "stride = 1×1", "dilation = 1×1", "bias = true"} <= set(conv)
    assert "params: weight 32×1×3×3, bias 32 = 320" in conv
    assert tips["x"].splitlines()[:3] == ["x: input", "shape: B×1×8×8", "dtype: float32"]
    assert all(tips.values()), [n for n, t in tips.items() if not t]


def test_folded_node_hover_text_says_what_it_stands_for(render):
    result, out = render(TRANSFORMER, "t.svg")
    assert result.exit_code == 0, result.output
    tips = _tooltips(read_svg(out))
    assert tips["decoder.0.attn"].splitlines()[0] == "decoder.0.attn: attention (attention), drawn for 2 repetitions"
    assert "heads = 4" in tips["decoder.0.attn"].splitlines()


def test_legend_explains_the_dashed_repeat_edge_only_when_drawn(render):
    _, folded = render(TRANSFORMER, "t.svg")
    _, expanded = render(TRANSFORMER, "tx.svg", "--expand")
    _, cnn = render(CNN, "cnn.svg")
    assert "repeated ×N (loop-back)" in read_svg(folded).text
    assert "repeated ×N (loop-back)" not in read_svg(expanded).text
    assert "repeated ×N (loop-back)" not in read_svg(cnn).text


def test_expand_on_a_spec_without_blocks_says_so(render):
    result, out = render(CNN, "cnn.svg", "--expand")
    assert result.exit_code == 0 and out.exists()
    assert "has no blocks" in result.stderr


def test_expand_on_blocks_that_do_not_repeat_says_so(render, tmp_path):
    spec = tmp_path / "once.yaml"
    spec.write_text("graphc: 1\nname: once\ninputs: {x: [B, 4]}\n"
                    "blocks:\n  b: {inputs: [h], nodes: {fc: {op: linear, in: h, out: 4}}, outputs: [fc]}\n"
                    "nodes:\n  one: {block: b, in: x}\noutputs: [one]\n")
    result, _ = render(spec, "once.svg", "--expand")
    assert result.exit_code == 0, result.output
    assert "no repeated blocks" in result.stderr


def test_expand_on_repeated_blocks_says_nothing(render):
    result, _ = render(FIXTURES / "nested.yaml", "n.svg", "--expand")
    assert result.exit_code == 0 and "note:" not in result.stderr
