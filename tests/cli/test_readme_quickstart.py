"""The README's quickstart shows real output: `check` and `summary` as printed today, the
completion and editor lines as they work."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from graphc.cli import main
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _output(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout.rstrip("\n")


def _block_after(command: str) -> str:
    """The output printed under `$ command` in a README code block (indented or fenced)."""
    m = re.search(rf"^( *)\$ {re.escape(command)}\n(.*?)(?:\n```|\n\n)", README, re.M | re.S)
    assert m, f"`$ {command}` is not in the README"
    indent = m.group(1)
    return "\n".join(line.removeprefix(indent) for line in m.group(2).splitlines())


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the README runs the commands from a clone's root


def test_quickstart_check_output_is_real():
    assert _block_after("graphc check specs/cnn.yaml") == _output("check", "specs/cnn.yaml")


def test_quickstart_summary_output_is_real():
    shown = _block_after("graphc summary specs/cnn.yaml --set B=64 --memory")
    assert shown == _output("summary", "specs/cnn.yaml", "--set", "B=64", "--memory")


def test_editor_and_shell_lines():
    assert "# yaml-language-server: $schema=" in README
    assert '_GRAPHC_COMPLETE=bash_source graphc' in README
