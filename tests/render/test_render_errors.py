"""Broken specs still render (offending nodes marked); user mistakes and a missing `dot` give a
clear one-line error and a non-zero exit, never a traceback. Real subprocesses where the
process boundary matters (PATH without `dot`, exit codes, stderr)."""

from __future__ import annotations

import pytest

from .helpers import FIXTURES, ROOT, invoke_render, needs_dot, read_svg, run_cli

MLP = str(ROOT / "specs" / "mlp.yaml")
BAD_SPECS = sorted((ROOT / "specs" / "bad").glob("*.yaml"))
ERROR_RED = "#d50000"


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


@needs_dot
def test_shape_error_renders_with_the_offending_node_marked(render):
    result, out = render(FIXTURES / "bad_shape.yaml", "bad.svg")
    assert result.exit_code == 1
    assert "error[GC204]" in result.stderr  # the diagnostics are printed, compiler style
    assert out.exists()
    d = read_svg(out)
    assert {"x", "y", "fc1", "fc2", "both", "act", "logits", "loss"} <= d.nodes
    assert ERROR_RED in d.node_strokes("both")
    assert any(t.startswith("✗ GC204") for t in d.node_texts("both"))
    # downstream nodes lost their shapes: drawn, not blamed
    assert ERROR_RED not in d.node_strokes("act")
    assert "shape unknown (upstream error)" in d.node_texts("act")
    assert "?" in d.edge_texts and "B×32" in d.edge_texts


@needs_dot
def test_undefined_reference_and_unknown_op(render):
    result, out = render(FIXTURES / "bad_ref.yaml", "ref.svg")
    assert result.exit_code == 1
    d = read_svg(out)
    assert {"x", "fc1", "act"} <= d.nodes
    assert ERROR_RED in d.node_strokes("act")
    # the unknown-op node never made it into the graph: its error is listed under the title
    assert any("GC101" in t and "lienar" in t for t in d.texts)


@needs_dot
def test_error_without_node_names_is_placed_by_its_source_line(render):
    result, out = render(ROOT / "specs" / "bad" / "missing_attr.yaml", "m.svg")
    assert result.exit_code == 1
    d = read_svg(out)
    assert ERROR_RED in d.node_strokes("fc")


@needs_dot
@pytest.mark.parametrize("spec", BAD_SPECS, ids=lambda p: p.stem)
def test_every_bad_spec_renders_or_fails_cleanly(render, spec):
    result, out = render(spec, f"{spec.stem}.svg")  # raises if the renderer crashed
    assert result.exit_code in (0, 1)
    if out.exists():
        read_svg(out)  # well-formed
    else:
        assert "nothing to draw" in result.stderr


def test_without_dot_writes_the_source_and_says_how_to_install(tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    out = tmp_path / "mlp.svg"
    proc = run_cli("render", MLP, "-o", str(out), path_env=str(empty_bin))
    _no_traceback(proc)
    assert proc.returncode == 1
    assert not out.exists()
    dot_file = tmp_path / "mlp.dot"
    assert dot_file.read_text().startswith("digraph")
    assert "`dot` program is not on PATH" in proc.stderr
    assert "apt-get install -y graphviz" in proc.stderr and "brew install graphviz" in proc.stderr
    assert f"dot -Tsvg {dot_file} -o {out}" in proc.stderr


def test_dot_format_needs_no_dot_binary(tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    out = tmp_path / "mlp.dot"
    proc = run_cli("render", MLP, "-o", str(out), path_env=str(empty_bin))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("digraph")


def _one_line_error(code: int, returncode: int, stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr
    assert returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("case", ["missing_spec", "missing_dir", "output_is_dir", "unknown_ext",
                                  "no_ext"])
def test_user_mistakes_give_a_one_line_error(tmp_path, case):
    (tmp_path / "taken.svg").mkdir()
    output, code, fragments = {
        "missing_spec": ("x.svg", 1, ["no such spec file", "nope.yaml"]),
        "missing_dir": ("no/such/dir/x.svg", 1, ["cannot write", "does not exist"]),
        "output_is_dir": ("taken.svg", 1, ["cannot write", "taken.svg"]),
        "unknown_ext": ("x.jpg", 2, ["`.jpg`", ".svg, .png, .pdf, .dot"]),
        "no_ext": ("picture", 2, ["no extension"]),
    }[case]
    spec = str(tmp_path / "nope.yaml") if case == "missing_spec" else MLP
    result = invoke_render(spec, tmp_path / output)  # in-process: a crash would re-raise here
    _one_line_error(code, result.exit_code, result.stderr, *fragments)
    assert not (tmp_path / "x.svg").exists()


def test_missing_spec_as_a_real_process(tmp_path):
    proc = run_cli("render", "nope.yaml", "-o", "x.svg", cwd=tmp_path)
    assert "Traceback" not in proc.stdout
    _one_line_error(1, proc.returncode, proc.stderr, "no such spec file: `nope.yaml`")


@needs_dot
def test_default_output_is_the_spec_name_as_svg(tmp_path):
    proc = run_cli("render", MLP, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mlp" in read_svg(tmp_path / "mlp.svg").texts


@needs_dot
def test_backward_on_a_broken_spec_draws_the_forward_graph_and_says_why(render):
    result, out = render(FIXTURES / "bad_shape.yaml", "bad.svg", "--backward")
    assert result.exit_code == 1
    assert "gradient flow not drawn: the spec has errors" in result.stderr
    assert "both" in read_svg(out).nodes
