"""Generate docs/lint-rules.md from the rule table: `python -m graphc.lint.docs [--write PATH]`.

A test compares the committed file with this output, so the page cannot go stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from graphc.lint.table import Rule, all_rules, paragraphs

DEFAULT_PATH = Path("docs/lint-rules.md")

_INTRO = """\
# graphc lint rules

<!-- Generated from the rule table in graphc/lint/ by `python -m graphc.lint.docs --write`.
     Do not edit by hand: tests/lint/test_docs.py fails when this file is stale. -->

`graphc check` answers "is this spec valid?"; `graphc lint` answers "is this what you meant?".
Lint reports every `check` diagnostic (GCxxx) and then runs the rules below (GLxxx) on specs
that check accepts.

```
graphc lint specs/*.yaml                              # all problems, grouped by file
graphc lint spec.yaml --select GL1 --ignore GL104     # choose rules by code or prefix
graphc lint spec.yaml --format json|sarif|github      # for editors, code scanning, CI
graphc lint --explain GL107                           # what, why, how to fix
graphc lint --list-rules
```

Exit status: 0 clean, 1 findings at or above the fail level (`--fail-on`, default
`warning`), 2 usage error (an unknown rule code, a bad option or configuration).

## Silencing a finding

On the node, with the reason next to it (a block instance's `lint:` covers every node inside
it; a `lint:` in a block's body covers that node in every instance):

```yaml
nodes:
  scores: {op: attention, in: items, heads: 4, lint: {ignore: [GL202], reason: "a set: order is meaningless"}}
```

Project-wide, in the nearest `pyproject.toml` above the spec:

```toml
[tool.graphc.lint]
select = ["GL"]                 # codes or prefixes (default: every rule)
ignore = ["GL306"]
fail-on = "warning"             # error | warning | note | never
per-file-ignores = {"specs/experiments/*.yaml" = ["GL3"]}
```

Findings about the `train:` section (GL4xx) belong to no node; silence them with
`per-file-ignores` (the runtime accepts no extra keys under `train:`).

`--select` replaces the configured `select`; `--ignore` adds to the configured `ignore`.
Check errors cannot be silenced; check warnings (such as GC301, a node that reaches no output
or loss, and GC302, an unused input) can, like any rule.

Findings from the copies of a block made by `repeat` point at the same line and are reported
once. Suppressions that silence nothing are reported as GL002.

## Rules

| code | name | severity | what it catches |
|---|---|---|---|
"""


def _section(r: Rule) -> str:
    return (f"### {r.code} `{r.name}` ({r.severity})\n\n{r.summary}\n\n"
            f"**Why it matters.** {paragraphs(r.rationale)}\n\n**How to fix it.** {paragraphs(r.fix)}\n\n"
            f"Fires on:\n\n```yaml\n{r.bad}```\n\n`graphc lint spec.yaml` says:\n\n```\n{_findings(r)}```\n\n"
            f"Silent on the fixed spec:\n\n```yaml\n{r.good}```\n")


def _findings(r: Rule) -> str:
    """What lint reports on the bad example (only this rule's findings), as the text format shows."""
    from graphc.lint.engine import Config, lint_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(r.bad, encoding="utf-8")
        result = lint_file(str(path), config=Config())
        lines = []
        for d in result.diagnostics:
            if d.code != r.code:
                continue
            where = f"spec.yaml:{d.span.line}:{d.span.col}: " if d.span else ""
            lines.append(f"{where}{d.severity}[{d.code}]: {d.message.replace(str(path), 'spec.yaml')}")
            if d.hint:
                lines.append(f"  = hint: {d.hint}")
    return "".join(line + "\n" for line in lines)


def render_markdown(rules: dict[str, Rule] | None = None) -> str:
    rules = rules or all_rules()
    table = "".join(f"| [{r.code}](#{r.code.lower()}-{r.name}-{r.severity}) | `{r.name}` | {r.severity} | "
                    f"{r.summary.replace('|', '∣')} |\n" for r in rules.values())
    return _INTRO + table + "\n" + "\n".join(_section(r) for r in rules.values())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render_markdown()
    if args[:1] == ["--write"]:
        path = Path(args[1]) if len(args) > 1 else DEFAULT_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
