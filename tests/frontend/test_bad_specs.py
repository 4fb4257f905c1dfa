"""Every file in specs/bad/ yields the diagnostic its first line promises, at the right line."""

import re

import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.pipeline import analyze
from tests.conftest import SPECS

BAD = sorted((SPECS / "bad").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (error|warning) (GC\d+) line (\d+): (.+)$")


def expectation(path):
    m = EXPECT.match(path.read_text().splitlines()[0])
    assert m, f"{path.name} must start with '# expect: <severity> <code> line <n>: <text>'"
    return m.group(1), m.group(2), int(m.group(3)), m.group(4)


def test_there_are_bad_specs():
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_spec_diagnostic(path):
    severity, code, line, text = expectation(path)
    diags = analyze(path).diagnostics
    match = [d for d in diags if d.code == code and d.severity == severity]
    assert match, f"no {code}; got {[(d.code, d.message) for d in diags]}"
    d = match[0]
    assert d.span is not None and d.span.file == str(path)
    assert d.span.line == line, f"{code} at line {d.span.line}, expected {line}: {d.message}"
    assert text in d.message, d.message
    assert not any(d.code == "GC900" for d in diags), "an internal error leaked"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_spec_cli_exit_status(path):
    severity, code, line, _ = expectation(path)
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == (1 if severity == "error" else 0)
    assert f"{path}:{line}:" in r.stderr
    assert f"{severity}[{code}]" in r.stderr
