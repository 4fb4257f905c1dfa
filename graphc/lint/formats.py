"""Output formats of `graphc lint`: text (like a compiler), JSON, SARIF 2.1.0, GitHub annotations."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import quote

from rich.console import Console

from graphc.diagnostics import Diagnostic, DiagnosticPrinter
from graphc.lint.engine import LintResult
from graphc.lint.table import Rule, paragraphs

FORMATS = ("text", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "note": "note"}
GITHUB_LEVEL = {"error": "error", "warning": "warning", "note": "notice"}


def _version() -> str:
    try:
        return version("graphc")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def counts(diags: list[Diagnostic]) -> str:
    parts = []
    for sev in ("error", "warning", "note"):
        n = sum(d.severity == sev for d in diags)
        if n:
            parts.append(f"{n} {sev}{'s' * (n != 1)}")
    return ", ".join(parts) or "no problems"


# ---- text ------------------------------------------------------------------------------------
def render_text(results: list[LintResult], console: Console) -> None:
    """Each file's findings with source line and caret, then a line per file and a total."""
    printer = DiagnosticPrinter(console)
    every: list[Diagnostic] = []
    suppressed = 0
    for r in results:
        for d in r.diagnostics:
            printer.print(d)
        every += r.diagnostics
        suppressed += len(r.suppressed)
        note = "" if r.linted else " (lint rules skipped: fix the check errors first)"
        hidden = f"; {len(r.suppressed)} suppressed" if r.suppressed else ""
        style = "bold red" if any(d.is_error for d in r.diagnostics) else \
            "bold yellow" if r.diagnostics else "bold green"
        console.print(f"[{style}]{r.file}[/]: {counts(r.diagnostics)}{hidden}{note}")
    if len(results) > 1:
        hidden = f" ({suppressed} suppressed)" if suppressed else ""
        console.print(f"{len(results)} files: {counts(every)}{hidden}")


# ---- JSON ------------------------------------------------------------------------------------
def render_json(results: list[LintResult], rules: dict[str, Rule]) -> str:
    files = []
    for r in results:
        files.append({
            "file": r.file,
            "linted": r.linted,
            "failed": r.failed(),
            "diagnostics": [_json(d, rules) for d in r.diagnostics],
            "suppressed": [{**_json(d, rules), "suppressed_by": by}
                           for d, by in zip(r.suppressed, r.suppressed_by, strict=True)],
        })
    every = [d for r in results for d in r.diagnostics]
    summary = {sev: sum(d.severity == sev for d in every) for sev in ("error", "warning", "note")}
    return json.dumps({"version": 1, "files": files, "summary": summary}, indent=2, default=str,
                      ensure_ascii=False)


def _json(d: Diagnostic, rules: dict[str, Rule]) -> dict:
    data = d.to_json()
    rule = rules.get(d.code)
    data["rule"] = rule.name if rule else None
    return data


# ---- SARIF 2.1.0 -----------------------------------------------------------------------------
def _uri(file: str) -> str:
    p = Path(file)
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        if p.is_absolute():
            return p.resolve().as_uri()
    return quote(p.as_posix())


def _region(span) -> dict:
    region = {"startLine": span.line, "startColumn": span.col}
    if span.end_line and span.end_line >= span.line:
        region["endLine"] = span.end_line
        if span.end_col and (span.end_line > span.line or span.end_col > span.col):
            region["endColumn"] = span.end_col
    return region


def _artifact(file: str) -> dict:
    uri = _uri(file)
    return {"uri": uri} if uri.startswith("file:") else {"uri": uri, "uriBaseId": "%SRCROOT%"}


def _location(span, message: str | None = None) -> dict:
    loc = {"physicalLocation": {"artifactLocation": _artifact(span.file), "region": _region(span)}}
    if message:
        loc["message"] = {"text": message}
    return loc


def _descriptor(rule: Rule) -> dict:
    why, fix = paragraphs(rule.rationale), paragraphs(rule.fix)
    help_md = (f"{why}\n\n**Fix:** {fix}\n\nBad:\n\n```yaml\n{rule.bad}```\n\n"
               f"Fixed:\n\n```yaml\n{rule.good}```\n")
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": why},
        "help": {"text": f"{why}\n\nFix: {fix}", "markdown": help_md},
        "defaultConfiguration": {"level": SARIF_LEVEL[rule.severity]},
        "properties": {"tags": ["graphc", "lint"]},
    }


def _check_descriptor(code: str) -> dict:
    return {"id": code, "name": f"check-{code.lower()}",
            "shortDescription": {"text": f"graphc check diagnostic {code}"},
            "properties": {"tags": ["graphc", "check"]}}


def render_sarif(results: list[LintResult], rules: dict[str, Rule]) -> str:
    descriptors = [_descriptor(r) for r in rules.values()]
    index = {r.code: i for i, r in enumerate(rules.values())}
    sarif_results = []
    for r in results:
        for d, suppressed in [*((d, None) for d in r.diagnostics), *zip(r.suppressed, r.suppressed_by, strict=True)]:
            if d.code not in index:
                index[d.code] = len(descriptors)
                descriptors.append(_check_descriptor(d.code))
            res = {"ruleId": d.code, "ruleIndex": index[d.code], "level": SARIF_LEVEL.get(d.severity, "note"),
                   "message": {"text": d.message + (f"\nhint: {d.hint}" if d.hint else "")}}
            if d.span:
                res["locations"] = [_location(d.span)]
            else:
                res["locations"] = [{"physicalLocation": {"artifactLocation": _artifact(r.file)}}]
            related = [_location(s, what) for what, s in d.related if s]
            if related:
                for i, loc in enumerate(related):
                    loc["id"] = i
                res["relatedLocations"] = related
            if d.nodes:
                res["properties"] = {"nodes": list(d.nodes)}
            if suppressed:
                res["suppressions"] = [{"kind": "inSource" if suppressed == "spec" else "external",
                                        "status": "accepted"}]
            sarif_results.append(res)
    run = {
        "tool": {"driver": {"name": "graphc", "version": _version(),
                            "informationUri": "https://graphc.dev/docs/lint-rules",
                            "rules": descriptors}},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().resolve().as_uri() + "/"}},
        "results": sarif_results,
        "columnKind": "unicodeCodePoints",
    }
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2,
                      ensure_ascii=False)


# ---- GitHub Actions workflow commands ----------------------------------------------------------
def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(results: list[LintResult]) -> str:
    lines = []
    for r in results:
        for d in r.diagnostics:
            props = []
            if d.span:
                props += [f"file={_escape_property(Path(d.span.file).as_posix())}", f"line={d.span.line}",
                          f"col={d.span.col}"]
                if d.span.end_line and d.span.end_line >= d.span.line:
                    props.append(f"endLine={d.span.end_line}")
                    if d.span.end_line == d.span.line and d.span.end_col and d.span.end_col > d.span.col:
                        props.append(f"endColumn={d.span.end_col}")
            else:
                props.append(f"file={_escape_property(Path(r.file).as_posix())}")
            props.append(f"title=graphc {d.code}")
            text = d.message + (f"\nhint: {d.hint}" if d.hint else "")
            lines.append(f"::{GITHUB_LEVEL.get(d.severity, 'notice')} {','.join(props)}::{_escape_data(text)}")
    return "\n".join(lines)
