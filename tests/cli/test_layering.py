"""The command line sits on top of the library, never inside it: no module of graphc/ or runtime/
outside graphc/cli/ imports click or graphc.cli (so the library can be used, and tested,
without the CLI, and the CLI's start-up stays its own business)."""

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIBRARY = [ROOT / "graphc", ROOT / "runtime"]
CLI = ROOT / "graphc" / "cli"
ENTRY_POINT = ROOT / "graphc" / "__main__.py"  # `python -m graphc` is the command line by definition
FORBIDDEN = ("click", "graphc.cli")


def _module_name(path: Path) -> str:
    """graphc/render/output.py → graphc.render.output; runtime/x.py → graphc.runtime.x."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "runtime":
        parts.insert(0, "graphc")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import statement names (relative imports resolved), with its line."""
    out = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]  # from graphc import cli
    return out


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = _imported(tree, _module_name(path), path.name == "__init__.py")
    bad = {}
    for line, name in found:
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            bad.setdefault(line, name)
    return [f"{path.relative_to(ROOT)}:{line}: imports {name}" for line, name in sorted(bad.items())]


def _library_files() -> list[Path]:
    return sorted(p for root in LIBRARY for p in root.rglob("*.py")
                  if CLI not in p.parents and p != ENTRY_POINT)


def test_the_library_imports_neither_click_nor_the_cli():
    files = _library_files()
    assert len(files) > 50 and any(p.name == "pipeline.py" for p in files)
    problems = [v for p in files for v in _violations(p)]
    assert not problems, "the library must not depend on the command line:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, bad", [
    ("import click", True),
    ("from click.testing import CliRunner", True),
    ("def f():\n    from graphc.cli.common import parse_overrides", True),
    ("from graphc import cli", True),
    ("from . import cli", True),  # in graphc/pipeline.py: graphc.cli
    ("from .cli import main", True),
    ("import clickhouse", False),
    ("from graphc.clio import x", False),
    ("from graphc import pipeline", False),
])
def test_the_check_sees_every_spelling(tmp_path, monkeypatch, source, bad):
    path = ROOT / "graphc" / "pipeline.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    assert bool(_violations(path)) == bad
