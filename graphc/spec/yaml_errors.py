"""YAML syntax errors in plain words: which line, what is wrong with it, how to fix it.

PyYAML reports what its parser expected (`expected <block end>, but found '<block mapping
start>'`); a person wants to hear that line 7 is indented by 3 spaces where line 6 has 2.
`explain` recognises the common mistakes from the parser's problem, its context and the source
line; graphc.spec.loader's `_yaml_error` turns the result into the GC002 diagnostic.
"""

from __future__ import annotations


def explain(problem: str, context, mark, ctx_mark) -> tuple[str, str, tuple | None] | None:
    """(message, hint, (line, column) to point at or None) for a YAML error a person can fix
    from a plain explanation; None when PyYAML's wording is the best we have."""
    lines = _source_lines(mark)
    if lines is None or mark.line >= len(lines):
        return None
    row = mark.line
    line = lines[row]
    n = row + 1
    lead = line[: len(line) - len(line.lstrip(" \t"))]
    if "\t" in lead or "'\\t'" in problem:  # a tab in the indentation (or where a token starts)
        col = line.index("\t") if "\t" in line else mark.column
        return (f"line {n} is indented with a tab; YAML indentation must be spaces",
                f"replace the tab at the start of line {n} with spaces, lined up with the entries "
                "around it (editors: turn on 'insert spaces' for .yaml)", (row, col))
    prev = _previous_entry(lines, row)
    if problem.startswith("expected <block end>") and prev is not None:
        here, there = _indent(line), _indent(lines[prev])
        key = line.strip().split(":")[0]
        return (f"`{key}` on line {n} is indented by {_spaces(here)}, but line {prev + 1} by "
                f"{_spaces(there)}: entries of one mapping or list must start in the same column",
                f"indent line {n} like the entries it belongs with (a deeper indent only follows "
                "a key that ends with `:`)", None)
    if problem == "mapping values are not allowed here":
        stripped = line[: mark.column].strip()  # the line up to the offending `:`
        if "{" in stripped or "[" in stripped:  # `fc {op: …}` or `fc:{op: …}`
            head = stripped.split("{")[0].split("[")[0]
            opener = "{…}" if "{" in stripped else "[…]"
            if head.endswith(":"):
                return (f"line {n}: `{head}{stripped[len(head)]}` needs a space after the colon",
                        f"write `{head} {opener}`", (row, _indent(line) + len(head)))
            if ":" not in head:
                return (f"line {n}: `{head.strip()}` needs `: ` (a colon and a space) before its value",
                        f"write `{head.strip()}: {opener}`", (row, _indent(line) + len(head.rstrip())))
        if ": " not in stripped + " " and prev is not None and _indent(line) > _indent(lines[prev]) \
                and not lines[prev].rstrip().endswith(":"):  # `key: v` then a deeper `key2: w`
            return (f"line {n} is indented deeper than line {prev + 1}, which already has its value",
                    f"line it up with line {prev + 1} (indent {_spaces(_indent(lines[prev]))}); a "
                    "deeper indent only follows a key that ends with `:`", (row, _indent(line)))
        key, colon, value = line.strip().partition(":")
        if colon and ": " in value:
            return (f"line {n}: the value of `{key}` contains `: `, which YAML reads as the start "
                    "of another key", f'put the value in quotes: {key}: "{value.strip()}"', None)
        return None
    if context in ("while parsing a flow mapping", "while parsing a flow sequence") and ctx_mark is not None \
            and ctx_mark.line != mark.line:
        bracket, close = ("{", "}") if "mapping" in context else ("[", "]")
        return (f"the `{bracket}` opened on line {ctx_mark.line + 1} is not closed before line {n}",
                f"add the missing `{close}` at the end of line {ctx_mark.line + 1} (or end each "
                "line of a multi-line one with a comma)", (ctx_mark.line, ctx_mark.column))
    if context in ("while parsing a flow mapping", "while parsing a flow sequence") and ctx_mark is not None:
        bracket, close = ("{", "}") if "mapping" in context else ("[", "]")
        got = problem.rsplit("but got ", 1)[-1].strip("'")
        if got in ("}", "]") and got != close:
            return (f"line {n}: the `{bracket}` at column {ctx_mark.column + 1} is closed by `{got}`",
                    f"close it with `{close}` (or close the `{'[' if got == ']' else '{'}` that `{got}` "
                    "belongs to first)", (row, mark.column))
    if context == "while scanning a quoted scalar" and ctx_mark is not None:
        quote = lines[ctx_mark.line][ctx_mark.column] if ctx_mark.line < len(lines) else '"'
        return (f"the quote `{quote}` opened on line {ctx_mark.line + 1} is never closed",
                f"end the text with `{quote}` on line {ctx_mark.line + 1}", (ctx_mark.line, ctx_mark.column))
    if problem == "could not find expected ':'":
        at = ctx_mark.line if ctx_mark is not None else row
        text = lines[at].strip() if at < len(lines) else ""
        return (f"line {at + 1}: `{text}` is a key without a `:`",
                f"write `{text}: value`, or join it with the line before if it continues a value", (at, _indent(lines[at])))
    return None


def _source_lines(mark) -> list[str] | None:
    buffer = getattr(mark, "buffer", None)
    return buffer.rstrip("\0").split("\n") if isinstance(buffer, str) else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _previous_entry(lines: list[str], row: int) -> int | None:
    """The line number (0-based) of the nearest line above `row` with content."""
    for r in range(row - 1, -1, -1):
        text = lines[r].strip()
        if text and not text.startswith("#"):
            return r
    return None


def _spaces(n: int) -> str:
    return f"{n} space{'s' if n != 1 else ''}"
