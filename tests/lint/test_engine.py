"""Rule selection, suppressions, configuration from pyproject.toml, fail levels."""

import pytest

from graphc.lint.engine import Config, LintConfigError, lint_file, load_config
from graphc.lint.table import all_rules
from graphc.pipeline import analyze
from tests.conftest import ROOT
from tests.lint.helpers import codes, lint_text

RULES = all_rules()

# Two findings of two families: GL101 (error) and GL402 (warning).
MIXED = """\
inputs:
  x: {shape: [B, 4]}
  y: {shape: [B], dtype: int64}
nodes:
  hidden: {op: linear, in: x, out: 8}
  drop: {op: dropout, in: hidden}
  probs: {op: softmax, in: drop}
  loss: {op: cross_entropy, in: [probs, y]}
outputs: [probs]
losses: [loss]
train:
  data: {task: spirals}
  optimizer: {name: adam, lr: 2.0}
"""


def test_all_rules_by_default(tmp_path):
    assert sorted(codes(lint_text(tmp_path, MIXED))) == ["GL101", "GL402"]


def test_select_and_ignore_by_code_and_prefix(tmp_path):
    assert codes(lint_text(tmp_path, MIXED, select=["GL1"])) == ["GL101"]
    assert codes(lint_text(tmp_path, MIXED, select=["GL4"])) == ["GL402"]
    assert codes(lint_text(tmp_path, MIXED, ignore=["GL101"])) == ["GL402"]
    assert codes(lint_text(tmp_path, MIXED, select=["GL"], ignore=["GL1", "GL4"])) == []


def test_check_diagnostics_are_part_of_lint(tmp_path):
    spec = MIXED.replace("  loss:", "  unused: {op: relu, in: x}\n  loss:")
    result = lint_text(tmp_path, spec)
    assert "GC301" in codes(result)
    # check warnings can be ignored like rules; check errors never
    assert "GC301" not in codes(lint_text(tmp_path, spec, ignore=["GC301"]))
    broken = spec.replace("in: x}", "in: nowhere}")
    result = lint_text(tmp_path, broken, ignore=["GC"])
    assert "GC201" in codes(result) and result.failed()


def test_fail_levels(tmp_path):
    warn_only = lint_text(tmp_path, MIXED, select=["GL4"])
    assert warn_only.failed("warning") and not warn_only.failed("error")
    assert not warn_only.failed("never")
    note_only = lint_text(tmp_path, RULES["GL305"].bad)
    assert codes(note_only) == ["GL305"]
    assert not note_only.failed("warning") and note_only.failed("note")


def test_suppression_on_a_block_body_node(tmp_path):
    spec = RULES["GL302"].bad.replace("act: {op: tanh, in: fc}",
                                      "act: {op: tanh, in: fc, lint: {ignore: [GL302], reason: test}}")
    result = lint_text(tmp_path, spec)
    assert codes(result) == []
    assert [d.code for d in result.suppressed] == ["GL302"]


def test_suppression_by_prefix_and_unused_suppressions(tmp_path):
    spec = MIXED.replace("in: [probs, y]}", "in: [probs, y], lint: {ignore: [GL1]}}")
    assert codes(lint_text(tmp_path, spec)) == ["GL402"]
    stale = MIXED.replace("in: x, out: 8}", "in: x, out: 8, lint: {ignore: [GL303]}}")
    assert "GL002" in codes(lint_text(tmp_path, stale))
    # an ignore of a rule that is not selected in this run is not reported as stale
    assert "GL002" not in codes(lint_text(tmp_path, stale, select=["GL0", "GL1"]))


def test_invalid_suppressions(tmp_path):
    for bad in ("lint: GL101", "lint: {ignore: GL9}", "lint: {ignore: [GL101], because: x}",
                "lint: {ignore: [7]}"):
        spec = MIXED.replace("in: x, out: 8}", f"in: x, out: 8, {bad}}}")
        assert "GL001" in codes(lint_text(tmp_path, spec)), bad


PYPROJECT = """\
[project]
name = "x"

[tool.graphc.lint]
ignore = ["GL402"]
fail-on = "error"
per-file-ignores = {"nested/*.yaml" = ["GL101"]}
"""


def test_config_from_the_nearest_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "nested").mkdir()
    spec = tmp_path / "nested" / "spec.yaml"
    spec.write_text(MIXED)
    cfg = load_config(spec)
    assert cfg.ignore == ["GL402"] and cfg.fail_on == "error" and cfg.root == tmp_path
    result = lint_file(str(spec))
    assert codes(result) == []
    assert sorted(d.code for d in result.suppressed) == ["GL101"]
    assert result.suppressed_by == ["config"]
    other = tmp_path / "spec.yaml"
    other.write_text(MIXED)
    assert codes(lint_file(str(other))) == ["GL101"]


def test_a_pyproject_without_the_table_is_skipped(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert load_config(tmp_path / "sub" / "spec.yaml").root == tmp_path


@pytest.mark.parametrize("table", ['colour = "red"', 'select = ["GL9"]', 'fail-on = "sometimes"',
                                   'per-file-ignores = ["x"]', "ignore = 3"])
def test_bad_config_is_a_usage_error(tmp_path, table):
    (tmp_path / "pyproject.toml").write_text(f"[tool.graphc.lint]\n{table}\n")
    with pytest.raises(LintConfigError):
        load_config(tmp_path / "spec.yaml")


def test_default_config_without_pyproject(tmp_path):
    assert load_config(tmp_path / "spec.yaml").fail_on in ("warning",)
    assert Config().enabled(RULES) == list(RULES.values())


@pytest.mark.parametrize("spec", sorted((ROOT / "specs" / "bad").glob("*.yaml")), ids=lambda p: p.name)
def test_every_check_diagnostic_appears_in_lint(spec):
    check = analyze(str(spec))
    result = lint_file(str(spec), config=Config())
    shown = [(d.code, d.span, d.message) for d in result.diagnostics + result.suppressed]
    for d in check.diagnostics:
        assert (d.code, d.span, d.message) in shown


def test_findings_in_blocks_name_the_instance(tmp_path):
    result = lint_text(tmp_path, RULES["GL302"].bad)
    (d,) = result.diagnostics
    assert d.span.line == 9  # the tanh in the block body
    assert any("in `stack.3`, an instance of block `dense`" in what for what, _ in d.related)


def test_learned_positions_from_an_input_count_as_position(tmp_path):
    spec = RULES["GL202"].bad.replace(
        "  y: {shape: [B, T], dtype: int64}",
        "  y: {shape: [B, T], dtype: int64}\n  positions: {shape: [B, T], dtype: int64}").replace(
        "  attn: {op: attention, in: embed,",
        "  pe: {op: embedding, in: positions, num: 64, dim: 32}\n"
        "  both: {op: add, in: [embed, pe]}\n  attn: {op: attention, in: both,")
    assert codes(lint_text(tmp_path, spec)) == []
