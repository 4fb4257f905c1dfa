"""The lint engine: choose rules, run them over an analyzed spec, apply suppressions.

    analyze (the `check` front end) → its diagnostics, then every selected rule's findings
    → one finding per spec line (block copies collapse) → suppressions (`lint:` on the node or
    on a block instance around it; `per-file-ignores` in pyproject) → late rules (GL002).

Configuration lives in the nearest pyproject.toml (walking up from the spec) that has a
`[tool.graphc.lint]` table:

    [tool.graphc.lint]
    select = ["GL"]              # codes or prefixes; default: every rule
    ignore = ["GL306"]
    fail-on = "warning"          # error | warning | note | never
    per-file-ignores = {"specs/experimental/*.yaml" = ["GL2"]}

Check diagnostics (GCxxx) are always shown; `ignore`/`lint:` can silence GC warnings but never
errors. Rules run only on specs that `check` accepts: shapes must be known to judge intent.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path

from graphc.diagnostics import Diagnostic, sort_key
from graphc.lint.context import LintContext, decl_paths, suppressions
from graphc.lint.rules_meta import known_pattern
from graphc.lint.table import Rule, all_rules
from graphc.pipeline import analyze
from graphc.spec.loader import paused_gc

FAIL_LEVELS = ("error", "warning", "note", "never")
RANK = {"note": 0, "warning": 1, "error": 2}
CONFIG_KEYS = ("select", "ignore", "fail-on", "per-file-ignores")


class LintConfigError(Exception):
    """A bad rule selection or configuration: a usage error (exit status 2)."""


@dataclass
class Config:
    select: list[str] | None = None  # None: every rule
    ignore: list[str] = field(default_factory=list)
    fail_on: str = "warning"
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    root: Path | None = None  # the directory of the pyproject.toml it came from

    def enabled(self, rules: dict[str, Rule]) -> list[Rule]:
        select = self.select if self.select is not None else ["GL"]
        return [r for r in rules.values() if matches(r.code, select) and not matches(r.code, self.ignore)]

    def file_ignores(self, file: str) -> list[str]:
        path = Path(file).resolve()
        rel = path.relative_to(self.root).as_posix() if self.root and path.is_relative_to(self.root) \
            else Path(file).as_posix()
        return [c for pattern, codes in self.per_file_ignores.items()
                if fnmatch(rel, pattern) or fnmatch(Path(file).as_posix(), pattern) for c in codes]


def matches(code: str, patterns: list[str]) -> bool:
    return any(p.upper() == "ALL" or code.startswith(p.upper()) for p in patterns)


def check_patterns(patterns: list[str], where: str) -> list[str]:
    out = []
    for p in patterns:
        p = p.strip()
        if not p:
            continue
        if p.upper() != "ALL" and not known_pattern(p):
            raise LintConfigError(f"{where}: `{p}` is not a rule code or prefix "
                                  f"(`graphc lint --explain` lists the rules)")
        out.append(p.upper())
    return out


def _codes(value, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LintConfigError(f"{where} must be a list of rule codes")
    return check_patterns(value, where)


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.graphc.lint] table."""
    for d in [start, *start.parents]:
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            if isinstance(data.get("tool", {}).get("graphc", {}).get("lint"), dict):
                return candidate
    return None


def load_config(spec: str | Path) -> Config:
    """The configuration that applies to a spec file (defaults when there is none)."""
    start = Path(spec).resolve().parent
    path = find_pyproject(start)
    if path is None:
        return Config()
    table = tomllib.loads(path.read_text(encoding="utf-8"))["tool"]["graphc"]["lint"]
    where = f"{path} [tool.graphc.lint]"
    for key in table:
        if key not in CONFIG_KEYS:
            raise LintConfigError(f"{where}: unknown key `{key}`; allowed: {', '.join(CONFIG_KEYS)}")
    cfg = Config(root=path.parent)
    if "select" in table:
        cfg.select = _codes(table["select"], f"{where} select")
    if "ignore" in table:
        cfg.ignore = _codes(table["ignore"], f"{where} ignore")
    if "fail-on" in table:
        if table["fail-on"] not in FAIL_LEVELS:
            raise LintConfigError(f"{where}: fail-on must be one of {', '.join(FAIL_LEVELS)}")
        cfg.fail_on = table["fail-on"]
    pfi = table.get("per-file-ignores", {})
    if not isinstance(pfi, dict):
        raise LintConfigError(f"{where}: per-file-ignores must be a table of glob = [codes]")
    cfg.per_file_ignores = {str(k): _codes(v, f"{where} per-file-ignores.{k}") for k, v in pfi.items()}
    return cfg


@dataclass
class LintResult:
    file: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    suppressed: list[Diagnostic] = field(default_factory=list)
    suppressed_by: list[str] = field(default_factory=list)  # "spec" (`lint:`) or "config", per entry
    linted: bool = False  # False when check errors kept the rules from running
    fail_on: str = "warning"

    def failed(self, fail_on: str | None = None) -> bool:
        level = fail_on or self.fail_on
        if level == "never":
            return False
        return any(RANK.get(d.severity, 0) >= RANK[level] for d in self.diagnostics)


def _run(rule: Rule, ctx: LintContext) -> list[Diagnostic]:
    try:
        return [Diagnostic(f.severity or rule.severity, rule.code, f.message, f.span, nodes=f.nodes,
                           hint=f.hint or rule.hint, related=f.related + _instances(ctx, f.nodes))
                for f in rule.check(ctx)]
    except Exception as exc:  # a bug in a rule must not hide the other findings or crash
        return [Diagnostic("error", rule.code, f"internal error in lint rule {rule.code} "
                           f"({rule.name}): {type(exc).__name__}: {exc}",
                           hint="this is a graphc bug; please report it with the spec")]


def _instances(ctx: LintContext, nodes: tuple[str, ...]) -> tuple:
    """A finding inside a block also points at the instance that expanded it (as `check` does)."""
    node = ctx.graph.nodes.get(nodes[0]) if nodes else None
    if node is None:
        return ()
    return tuple((f"in `{f.path}`, an instance of block `{f.block}`", f.span)
                 for f in reversed(node.scope) if f.span)


def _collapse(diags: list[Diagnostic]) -> list[Diagnostic]:
    """One finding per (rule, spec position): the copies of a block or `repeat` share a line.

    Copies differ only in the repetition index inside node names (`layers.0.fc`, `layers.1.fc`),
    so messages are compared with those indices masked."""
    groups: dict = {}
    for d in diags:
        key = (d.code, d.span, d.severity, _COPY_INDEX.sub(".#", d.message)) if d.span else id(d)
        if key in groups:
            groups[key][1] += 1
        else:
            groups[key] = [d, 0]
    return [replace(d, message=f"{d.message} (and {n} more cop{'y' if n == 1 else 'ies'} of this node)")
            if n else d for d, n in groups.values()]


_COPY_INDEX = re.compile(r"\.\d+\b")


@paused_gc()
def lint_file(spec: str, *, overrides: dict | None = None, config: Config | None = None) -> LintResult:
    cfg = config or load_config(spec)
    rules = all_rules()
    enabled = cfg.enabled(rules)
    analysis = analyze(spec, dict(overrides or {}))
    result = LintResult(spec, fail_on=cfg.fail_on)
    found = list(analysis.diagnostics)
    ctx = None
    if analysis.ok:
        ctx = LintContext(analysis.graph, spec, frozenset(r.code for r in enabled), analysis.doc)
        for r in enabled:
            if not getattr(r.check, "late", False):
                found += _run(r, ctx)
        result.linted = True
    file_ignores = cfg.file_ignores(spec)
    for d in _collapse(found):
        if d.is_error and d.code.startswith("GC"):
            result.diagnostics.append(d)  # check errors cannot be silenced
        elif matches(d.code, cfg.ignore + file_ignores):
            result.suppressed.append(d)
            result.suppressed_by.append("config")
        elif ctx is not None and _suppressed_on_node(ctx, d):
            result.suppressed.append(d)
            result.suppressed_by.append("spec")
        else:
            result.diagnostics.append(d)
    if ctx is not None:
        for r in enabled:
            if getattr(r.check, "late", False):
                result.diagnostics += _run(r, ctx)
    result.diagnostics.sort(key=sort_key)
    return result


def _suppressed_on_node(ctx: LintContext, d: Diagnostic) -> bool:
    node = ctx.graph.nodes.get(d.nodes[0]) if d.nodes else None
    if node is None or d.code == "GL001":
        return False
    table = suppressions(ctx)
    hit = False
    for path in decl_paths(ctx, node):
        s = table.get(path)
        if s is None:
            continue
        for code, _ in s.codes:
            if d.code.startswith(code.upper()):
                s.used.add(code)
                hit = True
    return hit
