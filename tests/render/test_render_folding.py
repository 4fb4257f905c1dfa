"""Repeated blocks fold into one cluster marked ×N; --expand opens them; layout options."""

from __future__ import annotations

from .helpers import FIXTURES, ROOT, needs_dot, read_svg

pytestmark = needs_dot

TRANSFORMER = ROOT / "specs" / "transformer.yaml"
LAYER = ("attn", "norm1", "ff1", "act", "ff2", "norm2")


def test_transformer_layers_fold_into_one_cluster_marked_x2(render):
    result, out = render(TRANSFORMER, "t.svg")
    assert result.exit_code == 0, result.output
    d = read_svg(out)
    assert all(f"decoder.0.{n}" in d.nodes for n in LAYER)
    assert not any(f"decoder.1.{n}" in d.nodes for n in LAYER)
    assert d.clusters == {"cluster_decoder.0"}
    assert "×2" in d.texts and "decoder" in d.texts
    # inside the cluster a node shows its short name; the full name is its id
    assert "attn" in d.node_texts("decoder.0.attn")
    # the layer stack's output leaves from the folded cluster to the head
    edges = {_title(g) for g in d.root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "edge"}
    assert "decoder.0.norm2->logits" in edges
    # and one dashed loop-back edge says "this repeats"
    assert "decoder.0.norm2->decoder.0.attn" in edges


def _title(g):
    t = g.find("{http://www.w3.org/2000/svg}title")
    return t.text if t is not None else ""


def test_transformer_expanded_shows_every_layer(render):
    result, out = render(TRANSFORMER, "tx.svg", "--expand")
    assert result.exit_code == 0
    d = read_svg(out)
    assert all(f"decoder.{k}.{n}" in d.nodes for k in (0, 1) for n in LAYER)
    assert d.clusters == {"cluster_decoder.0", "cluster_decoder.1"}
    assert "×2" not in d.texts


def test_nested_repeats_fold_at_every_level(render):
    result, out = render(FIXTURES / "nested.yaml", "n.svg")
    assert result.exit_code == 0, result.output
    d = read_svg(out)
    assert {"×2", "×3"} <= set(d.texts)
    assert {"stages.0.inner.0.fc", "stages.0.inner.0.act", "stages.0.drop"} <= d.nodes
    assert not {n for n in d.nodes if ".inner.1." in n or n.startswith("stages.1")}
    assert d.clusters == {"cluster_stages.0", "cluster_stages.0.inner.0", "cluster_head"}
    # 6 linear layers behind one folded node: the differing sizes are all shown
    assert "144 / 272 params" in d.node_texts("stages.0.inner.0.fc")


def test_nested_repeats_expanded(render):
    result, out = render(FIXTURES / "nested.yaml", "nx.svg", "--expand")
    assert result.exit_code == 0
    d = read_svg(out)
    blocks = {f"stages.{i}.inner.{j}.{n}" for i in (0, 1) for j in (0, 1, 2) for n in ("fc", "act")}
    assert blocks <= d.nodes
    assert len([c for c in d.clusters if ".inner." in c]) == 6


def test_mlp_folded_node_shows_parameter_counts_of_each_repetition(render):
    result, out = render(ROOT / "specs" / "mlp.yaml", "m.svg")
    assert result.exit_code == 0
    d = read_svg(out)
    assert "192 / 4,160 params" in d.node_texts("hidden_layers.0.fc")


def test_no_shapes_leaves_edges_unlabelled(render):
    result, out = render(TRANSFORMER, "ns.svg", "--no-shapes")
    assert result.exit_code == 0
    d = read_svg(out)
    assert d.edge_texts == []
    assert "B×T×64" not in d.text  # input nodes still say B×T, but no edge carries a shape


def test_direction_lr_lays_out_sideways(render):
    _, tb = render(TRANSFORMER, "tb.svg")
    _, lr = render(TRANSFORMER, "lr.svg", "--direction", "LR")

    def size(path):
        root = read_svg(path).root
        return float(root.get("width").rstrip("pt")), float(root.get("height").rstrip("pt"))

    (w_tb, h_tb), (w_lr, h_lr) = size(tb), size(lr)
    assert h_tb > w_tb and w_lr > h_lr


def test_dot_output_is_graphviz_source(render):
    result, out = render(TRANSFORMER, "t.dot")
    assert result.exit_code == 0
    source = out.read_text()
    assert source.startswith("digraph") and "cluster_decoder.0" in source
    assert '"decoder.1.attn"' not in source


def test_set_override_changes_the_drawing(render):
    result, out = render(TRANSFORMER, "t4.svg", "--set", "layers=4", "--set", "d_model=32")
    assert result.exit_code == 0, result.output
    d = read_svg(out)
    assert "×4" in d.texts and "B×T×32" in d.edge_texts


def test_side_input_and_multi_output_ports(render):
    result, out = render(FIXTURES / "multi.yaml", "mu.svg")
    assert result.exit_code == 0, result.output
    d = read_svg(out)
    edges = [_title(g) for g in d.root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "edge"]
    # every repetition reads `mem`; folded, that is one edge into the drawn repetition
    assert edges.count("mem->stack.0.s") == 1
    assert {"0: B×T×8", "1: B×T×8"} <= set(d.edge_texts)  # split's outputs named by port
    assert "output/pred" not in d.nodes  # the output is drawn on its node, named
    assert "output pred · B×T×4" in " ".join(d.node_texts("out"))
    assert "split sizes=[8, 8]" in [" ".join(t.split()) for t in d.node_texts("stack.0.parts")]
