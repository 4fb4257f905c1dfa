"""docs/lint-rules.md is generated from the rule table; the reference specs lint clean."""

import pytest

from graphc.lint.docs import render_markdown
from graphc.lint.engine import lint_file
from graphc.lint.table import all_rules
from tests.conftest import REFERENCE_SPECS, ROOT


def test_docs_are_up_to_date():
    committed = (ROOT / "docs" / "lint-rules.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), \
        "docs/lint-rules.md is stale: run `python -m graphc.lint.docs --write`"


def test_docs_show_every_rule_with_both_examples():
    text = render_markdown()
    for r in all_rules().values():
        assert f"### {r.code} `{r.name}`" in text
        assert r.bad in text and r.good in text


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.name)
def test_reference_specs_lint_clean(spec):
    result = lint_file(str(spec))
    assert result.linted
    assert result.diagnostics == [], [f"{d.code} {d.span}: {d.message}" for d in result.diagnostics]
    for d in result.suppressed:  # a suppression in a reference spec must say why
        assert d.code.startswith("GL")


def test_no_rule_crashes_on_any_spec_in_the_repository():
    specs = sorted(p for p in ROOT.glob("**/*.yaml")
                   if ".git" not in p.parts and "node_modules" not in p.parts)
    assert specs
    for spec in specs:
        result = lint_file(str(spec))
        crashed = [d.message for d in result.diagnostics if "internal error" in d.message]
        assert not crashed, f"{spec}: {crashed}"
