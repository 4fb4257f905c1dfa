"""Diagnostics: every problem graphc finds in a spec, with where it is and what to do about it.

A `Diagnostic` is data (severity, code, message, span, YAML path, nodes, hint); printing is a
separate concern, done like a compiler (``file:line:col: error[GC204]: ...`` followed by the
source line and a caret) or as JSON for editors and CI.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape


@dataclass(frozen=True)
class Span:
    """A region of a source file, 1-based lines and columns."""

    file: str
    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass
class Diagnostic:
    severity: str  # "error" | "warning" | "note"
    code: str  # GC1xx structure, GC2xx graph & shapes, GC3xx reachability, GC4xx train section
    message: str
    span: Span | None = None
    path: str = ""  # YAML path, e.g. "nodes.attn.heads"
    nodes: tuple[str, ...] = ()
    hint: str | None = None
    related: tuple[tuple[str, Span], ...] = ()  # (what, where): e.g. the first definition

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict:
        data = asdict(self)
        data["related"] = [{"message": m, "span": asdict(s)} for m, s in self.related]
        return data


class DiagnosticError(Exception):
    """Raised to stop a pass early; carries the diagnostics found so far."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest valid choice, if one is close enough.

    difflib compares the word with every choice; with the node names of a large graph as the
    choices and one undefined reference per node, that is quadratic (3,000 bad references took
    30 s). Past `_MANY` choices held in a dict or set, only the names one edit away are looked
    up instead (a dropped, added, swapped or changed character: most typos)."""
    word = str(word)
    if isinstance(choices, dict | set | frozenset) and len(choices) > _MANY:
        match = word if word in choices else \
            next((c for c in _one_edit(word) if c in choices and isinstance(c, str)), None)
        return f"did you mean `{match}`?" if match else None
    match = difflib.get_close_matches(word, [c for c in choices if isinstance(c, str)], n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


_MANY = 500
_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZ."


def _one_edit(word: str):
    """Every string one edit away from `word`, the likeliest edits first."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    yield from (a + b[1:] for a, b in splits if b)
    yield from (a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1)
    yield from (a + c + b for a, b in splits for c in _LETTERS)
    yield from (a + c + b[1:] for a, b in splits if b for c in _LETTERS)


def sort_key(d: Diagnostic) -> tuple:
    s = d.span
    return (s.file, s.line, s.col) if s else ("", 0, 0)


def summary_line(diags: list[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diags)
    warnings = sum(d.severity == "warning" for d in diags)
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' * (errors != 1)}")
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    return ", ".join(parts) or "no problems"


_STYLE = {"error": "bold red", "warning": "bold yellow", "note": "bold cyan"}


class DiagnosticPrinter:
    """Prints diagnostics like a compiler, with the offending source line and a caret."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._sources: dict[str, list[str]] = {}

    def _line(self, file: str, line: int) -> str | None:
        if file not in self._sources:
            try:
                self._sources[file] = Path(file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                self._sources[file] = []
        lines = self._sources[file]
        return lines[line - 1] if 0 < line <= len(lines) else None

    def print(self, d: Diagnostic) -> None:
        where = f"{d.span}: " if d.span else ""
        style = _STYLE.get(d.severity, "bold")
        self.console.print(
            f"[bold]{escape(where)}[/][{style}]{d.severity}[{d.code}][/]: {escape(d.message)}"
        )
        if d.span:
            self._excerpt(d.span)
        for what, span in d.related:
            self.console.print(f"  [cyan]note[/]: {escape(what)} at {escape(str(span))}")
            self._excerpt(span)
        if d.hint:
            self.console.print(f"  [cyan]= hint[/]: {escape(d.hint)}")

    def _excerpt(self, span: Span) -> None:
        text = self._line(span.file, span.line)
        if text is None:
            return
        gutter = f"{span.line:>5} | "
        width = 1
        if span.end_line == span.line and span.end_col and span.end_col > span.col:
            width = span.end_col - span.col
        self.console.print(f"[dim]{gutter}[/]{escape(text)}")
        pad = " " * (len(gutter) - 2)
        self.console.print(f"[dim]{pad}| [/]{' ' * (span.col - 1)}[bold red]{'^' * width}[/]")

    def print_all(self, diags: list[Diagnostic]) -> None:
        for d in sorted(diags, key=sort_key):
            self.print(d)


def to_json(diags: list[Diagnostic], **extra) -> str:
    payload = {"diagnostics": [d.to_json() for d in sorted(diags, key=sort_key)], **extra}
    return json.dumps(payload, indent=2, default=str, ensure_ascii=False)


@dataclass
class Diagnostics:
    """A collector passes append to; all problems of a run are reported together."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, severity: str, code: str, message: str, span: Span | None = None, **kw):
        self.items.append(Diagnostic(severity, code, message, span, **kw))

    def error(self, code: str, message: str, span: Span | None = None, **kw):
        self.add("error", code, message, span, **kw)

    def warning(self, code: str, message: str, span: Span | None = None, **kw):
        self.add("warning", code, message, span, **kw)

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.items.extend(diags)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)
