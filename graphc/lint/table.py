"""The lint rule table: every rule is one small function registered with its documentation.

A rule is a generator over a `LintContext` that yields `Finding`s. Its registration carries
everything else graphc says about it (code, name, severity, summary, rationale, fix, and a bad
and a fixed example spec), so `--explain`, `docs/lint-rules.md` and the tests are all driven
from this one table (tinygrad-style: rules are data, the engine is a loop).

Codes: GL0xx suppressions · GL1xx outputs and losses · GL2xx sequences and attention ·
GL3xx depth, convolution and normalization · GL4xx the `train:` section.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from graphc.diagnostics import Span

SEVERITIES = ("error", "warning", "note")
CODE = re.compile(r"^GL\d{3}$")


@dataclass(frozen=True)
class Finding:
    """What a rule found: the engine adds the code and the default severity."""

    message: str
    span: Span | None
    nodes: tuple[str, ...] = ()
    hint: str | None = None
    related: tuple[tuple[str, Span], ...] = ()
    severity: str | None = None  # overrides the rule's default for this finding


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str  # one line: what the rule catches
    rationale: str  # why it matters
    fix: str  # how to fix it (also the default hint)
    bad: str  # a spec the rule fires on
    good: str  # the same spec, fixed: the rule stays silent
    check: Callable[..., Iterable[Finding]]

    @property
    def hint(self) -> str:
        return self.fix.split("\n\n")[0].replace("\n", " ")


RULES: dict[str, Rule] = {}


def rule(code: str, name: str, severity: str, *, summary: str, rationale: str, fix: str,
         bad: str, good: str):
    """Register a rule; decorates its check function `(ctx) -> Iterable[Finding]`."""
    if not CODE.match(code):
        raise RuntimeError(f"lint rule code `{code}` must look like GL123")
    if severity not in SEVERITIES:
        raise RuntimeError(f"lint rule {code}: severity must be one of {SEVERITIES}")

    def register(fn):
        if code in RULES:
            raise RuntimeError(f"lint rule `{code}` is defined twice")
        if any(r.name == name for r in RULES.values()):
            raise RuntimeError(f"lint rule name `{name}` is used twice")
        RULES[code] = Rule(code, name, severity, _clean(summary), _clean(rationale), _clean(fix),
                           textwrap.dedent(bad).strip() + "\n", textwrap.dedent(good).strip() + "\n",
                           fn)
        return fn

    return register


def paragraphs(text: str) -> str:
    """Reflow the table's wrapped text: one line per paragraph (for Markdown and SARIF)."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip()


def all_rules() -> dict[str, Rule]:
    """The registry, with every rule module imported (registration happens on import)."""
    from graphc.lint import rules_depth, rules_losses, rules_meta, rules_sequence, rules_train  # noqa: F401

    return dict(sorted(RULES.items()))


def find(code_or_name: str) -> Rule | None:
    rules = all_rules()
    key = code_or_name.strip()
    return rules.get(key.upper()) or next((r for r in rules.values() if r.name == key), None)
