"""GL0xx: the suppressions themselves — `lint:` settings that are malformed or no longer needed."""

from __future__ import annotations

import re

from graphc.lint.context import LintContext, suppressions
from graphc.lint.table import RULES, Finding, rule

LINT_KEYS = ("ignore", "reason")
_GC = re.compile(r"^GC\d{0,3}$")


def known_pattern(code: str) -> bool:
    """A rule code or prefix that names at least one rule (GLxxx) or check diagnostic (GCxxx)."""
    from graphc.lint.table import all_rules  # every rule module, not only those imported so far

    code = code.upper()
    return bool(_GC.match(code)) or (code.startswith("GL") and any(c.startswith(code) for c in all_rules()))


@rule("GL001", "invalid-suppression", "warning",
      summary="A node's `lint:` setting is malformed or names a rule that does not exist.",
      rationale="""
        A suppression that graphc cannot read suppresses nothing: the finding it was meant
        to silence keeps showing up, and a misspelt code (GL1007 for GL107) looks to a reader
        as if the problem had been considered when nothing was silenced at all.""",
      fix="""
        Write `lint: {ignore: [GL107], reason: "why this is intended"}`; codes are listed by
        `graphc lint --explain` and in docs/lint-rules.md.""",
      bad="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B, 4]}
        nodes:
          fc: {op: linear, in: x, out: 4, lint: {ignore: [GL999], why: "typo"}}
          loss: {op: mse, in: [fc, y]}
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B, 4]}
        nodes:
          fc: {op: linear, in: x, out: 4}
          loss: {op: mse, in: [fc, y]}
        losses: [loss]
        """)
def invalid_suppression(ctx: LintContext):
    for s in suppressions(ctx).values():
        if not isinstance(s.value, dict):
            yield Finding(f"`{s.where}` must be a mapping like {{ignore: [GL107]}}", s.span,
                          hint='write `lint: {ignore: [GL107], reason: "..."}`')
            continue
        for key in s.value:
            if key not in LINT_KEYS:
                yield Finding(f"`{s.where}` has an unknown key `{key}`",
                              s.value.key_where(key) if hasattr(s.value, "key_where") else s.span,
                              hint=f"allowed keys: {', '.join(LINT_KEYS)}")
        ignore = s.value.get("ignore")
        if not (isinstance(ignore, str) or isinstance(ignore, list)
                and all(isinstance(c, str) for c in ignore)):
            yield Finding(f"`{s.where}.ignore` must be a list of rule codes", s.span,
                          hint="e.g. `ignore: [GL107]`")
        for code, span in s.codes:
            if not known_pattern(code):
                from graphc.diagnostics import did_you_mean

                yield Finding(f"`{s.where}` ignores `{code}`, which names no lint rule or check code",
                              span, hint=did_you_mean(code.upper(), RULES) or "see `graphc lint --explain`")


@rule("GL002", "unused-suppression", "note",
      summary="A `lint: {ignore: [...]}` entry that silenced nothing in this run.",
      rationale="""
        Suppressions outlive the problems they were written for: once the spec is fixed, the
        stale entry would silently hide the next real finding of that rule on the node.""",
      fix="""
        Delete the entry (or the whole `lint:` setting).""",
      bad="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B, 4]}
        nodes:
          fc: {op: linear, in: x, out: 4, lint: {ignore: [GL104], reason: "no dropout here any more"}}
          loss: {op: mse, in: [fc, y]}
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B, 4]}
        nodes:
          fc: {op: linear, in: x, out: 4}
          loss: {op: mse, in: [fc, y]}
        losses: [loss]
        """)
def unused_suppression(ctx: LintContext):
    for s in suppressions(ctx).values():
        for code, span in s.codes:
            relevant = any(c.startswith(code.upper()) for c in ctx.enabled) or code.upper().startswith("GC")
            if code not in s.used and known_pattern(code) and relevant:
                yield Finding(f"`{s.where}` ignores {code}, but nothing on this node triggered it",
                              span, hint=f"remove {code} from `{s.where}.ignore`")


unused_suppression.late = True  # runs after suppressions are applied (see engine)
