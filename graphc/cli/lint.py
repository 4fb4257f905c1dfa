"""`graphc lint`: is this spec what you meant? (`check` answers whether it is valid.)

Exit status: 0 clean, 1 findings at or above the fail level (default: warning), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from graphc.cli.common import parse_overrides, set_option

if TYPE_CHECKING:
    from rich.console import Console

    from graphc.lint.table import Rule

# The choices of --format and --fail-on: graphc.lint.formats.FORMATS and graphc.lint.engine.FAIL_LEVELS,
# spelled out because importing those modules loads the front end (sympy), and `graphc --help`
# must not. tests/cli/test_startup.py checks that the copies agree.
FORMATS = ("text", "json", "sarif", "github")
FAIL_LEVELS = ("error", "warning", "note", "never")


def _split(values: tuple[str, ...]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _expand(specs: tuple[str, ...]) -> list[str]:
    """Spec files as given; a directory stands for the .yaml/.yml files under it."""
    out = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
        else:
            out.append(spec)
    return out


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def explain(rule: Rule) -> str:
    """The `--explain` text of a rule: what, why, how to fix, and the two examples."""
    def indent(text: str) -> str:
        return "\n".join("    " + line if line else "" for line in text.rstrip().splitlines())

    return (f"{rule.code} {rule.name} ({rule.severity})\n\n{rule.summary}\n\n"
            f"Why it matters:\n{indent(rule.rationale)}\n\nHow to fix it:\n{indent(rule.fix)}\n\n"
            f"Fires on:\n{indent(rule.bad)}\n\nSilent on the fixed spec:\n{indent(rule.good)}\n\n"
            f"Silence one finding where it is intended with `lint: {{ignore: [{rule.code}], "
            f"reason: \"...\"}}` on the node.\n")


@click.command()
@click.argument("specs", nargs=-1, type=click.Path())
@click.option("--select", multiple=True, metavar="CODES",
              help="Only these rules: codes or prefixes, comma-separated (GL1,GL201). Repeatable.")
@click.option("--ignore", multiple=True, metavar="CODES",
              help="Skip these rules (codes or prefixes), on top of the configured ones. Repeatable.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text for people, json for tools, sarif for code scanning, github for CI annotations.")
@click.option("--fail-on", type=click.Choice(FAIL_LEVELS), default=None,
              help="Lowest severity that makes the exit status 1 (default: warning, or pyproject's).")
@click.option("--explain", "explain_code", metavar="CODE",
              help="Explain a rule (what it catches, why it matters, how to fix it) and exit.")
@click.option("--list-rules", is_flag=True, help="List every rule with its severity and exit.")
@set_option
def lint(specs, select, ignore, fmt, fail_on, explain_code, list_rules, sets):
    """Find what is probably not what you meant: every `check` problem plus the lint rules.

    Rules are chosen by code or prefix with --select/--ignore or in pyproject.toml under
    [tool.graphc.lint] (select, ignore, fail-on, per-file-ignores). Silence one finding where
    it is intended with `lint: {ignore: [GL107], reason: "..."}` on the node (or on a block
    instance, for every node inside it).

    Exit status: 0 clean, 1 findings at or above the fail level, 2 usage error.
    """
    from rich.markup import escape

    from graphc.lint.engine import Config, LintConfigError, check_patterns, lint_file, load_config
    from graphc.lint.formats import render_github, render_json, render_sarif, render_text
    from graphc.lint.table import all_rules, find

    rules = all_rules()
    if explain_code is not None:
        rule = find(explain_code)
        if rule is None:
            raise click.UsageError(f"no lint rule `{explain_code}`; `graphc lint --list-rules` lists them")
        click.echo(explain(rule))
        return
    if list_rules:
        console = _console()
        for r in rules.values():
            console.print(f"[bold]{r.code}[/] {escape(r.name):<34} {r.severity:<8} {escape(r.summary)}")
        return
    if not specs:
        raise click.UsageError("give one or more spec files, or --explain CODE / --list-rules")
    try:
        cli_select = check_patterns(_split(select), "--select") if select else None
        cli_ignore = check_patterns(_split(ignore), "--ignore")
        overrides = parse_overrides(sets)
        results = []
        for spec in _expand(specs):
            cfg = load_config(spec)
            cfg = Config(select=cli_select if cli_select is not None else cfg.select,
                         ignore=cfg.ignore + cli_ignore, fail_on=fail_on or cfg.fail_on,
                         per_file_ignores=cfg.per_file_ignores, root=cfg.root)
            results.append(lint_file(spec, overrides=overrides, config=cfg))
    except LintConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if fmt == "text":
        render_text(results, _console())
    elif fmt == "json":
        click.echo(render_json(results, rules))
    elif fmt == "sarif":
        click.echo(render_sarif(results, rules))
    else:
        out = render_github(results)
        if out:
            click.echo(out)
    sys.exit(1 if any(r.failed() for r in results) else 0)
