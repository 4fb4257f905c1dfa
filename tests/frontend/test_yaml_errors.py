"""YAML syntax errors explained in plain words, pointing at the line to fix (GC002)."""

from __future__ import annotations

import pytest

from graphc.diagnostics import DiagnosticError
from graphc.spec.loader import load_text

HEAD = "graphc: 1\nname: y\ninputs:\n  x: [B, 4]\nnodes:\n"


def error(text: str):
    with pytest.raises(DiagnosticError) as info:
        load_text(text, "s.yaml")
    (d,) = info.value.diagnostics
    assert d.code == "GC002" and d.message.startswith("invalid YAML: ")
    return d


@pytest.mark.parametrize("text,line,col,message,hint", [
    (HEAD.replace("  x:", "\tx:"), 4, 1, "line 4 is indented with a tab", "replace the tab"),
    (HEAD + "  fc: {op: linear, in: x, out: 3}\n\tact: {op: relu, in: fc}\n", 7, 1,
     "line 7 is indented with a tab", "spaces"),
    (HEAD + "  fc: {op: linear, in: x, out: 3}\n   act: {op: relu, in: fc}\n", 7, 4,
     "`act` on line 7 is indented by 3 spaces, but line 6 by 2 spaces", "indent line 7"),
    (HEAD + "  fc: {op: linear, in: x, out: 3}\n act: {op: relu, in: fc}\n", 7, 2,
     "indented by 1 space, but line 6 by 2 spaces", "indent line 7"),
    (HEAD + "  fc:\n    op: linear\n    in: x\n      out: 3\n", 9, 7,
     "line 9 is indented deeper than line 8, which already has its value", "line it up with line 8"),
    ("graphc: 1\ndoc: a net: small\n", 2, 11,
     "the value of `doc` contains `: `", 'put the value in quotes: doc: "a net: small"'),
    (HEAD + "  fc {op: linear, in: x, out: 3}\n", 6, 5,
     "line 6: `fc` needs `: ` (a colon and a space) before its value", "write `fc: {…}`"),
    (HEAD + "  fc:{op: linear, in: x, out: 3}\n", 6, 6,
     "line 6: `fc:{` needs a space after the colon", "write `fc: {…}`"),
    (HEAD + "  fc: {op: linear, in: x, out: 3\n  act: {op: relu, in: fc}\n", 6, 7,
     "the `{` opened on line 6 is not closed before line 7", "add the missing `}` at the end of line 6"),
    (HEAD + "  fc: {op: linear, in: [x, out: 3}\n", 6, 34,
     "the `[` at column 24 is closed by `}`", "close it with `]`"),
    (HEAD + "  fc: {op: linear, in: x, out: 3}\n  act\noutputs: [fc]\n", 7, 3,
     "line 7: `act` is a key without a `:`", "write `act: value`"),
    ('graphc: 1\nname: "y\ninputs: {}\n', 2, 7, "the quote `\"` opened on line 2 is never closed", 'end the text'),
])
def test_yaml_mistakes_are_explained_at_their_line(text, line, col, message, hint):
    d = error(text)
    assert message in d.message, d.message
    assert hint in d.hint, d.hint
    assert (d.span.line, d.span.col) == (line, col)


def test_the_parsers_own_words_stay_as_a_note_where_they_point_elsewhere():
    d = error(HEAD + "  fc: {op: linear, in: x, out: 3\n  act: {op: relu, in: fc}\n")
    (note, span), = d.related
    assert note.startswith("the YAML parser stopped here: expected ',' or '}'") and span.line == 7
    assert error("graphc: 1\ndoc: a net: small\n").related == ()  # same place: nothing to add


def test_other_yaml_errors_keep_the_parsers_message():
    d = error("graphc: 1\nx: &a [1]\ny: *b\n")
    assert "found undefined alias" in d.message
