"""Helpers for the render tests: run `graphc render` for real and read back what it drew."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphc.cli import main

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REFERENCE_SPECS = sorted((ROOT / "specs").glob("*.yaml"))
FIXTURES = HERE / "specs"
SVG = "{http://www.w3.org/2000/svg}"

# Without `dot` the drawing tests skip, unless GRAPHC_REQUIRE_DOT=1 (CI): then they run and fail,
# so a CI image that lost Graphviz cannot pass by skipping.
needs_dot = pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("GRAPHC_REQUIRE_DOT"),
                               reason="Graphviz `dot` is not installed (apt-get install graphviz)")


@dataclass
class Drawing:
    """What an SVG drawn by Graphviz shows: node/cluster ids, and every piece of visible text."""

    nodes: set[str]  # Graphviz node ids (graphc node names, `output/x`, `loss/x`)
    clusters: set[str]
    texts: list[str]
    edge_texts: list[str]
    root: ET.Element

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def node_texts(self, node_id: str) -> list[str]:
        for g in self.root.iter(f"{SVG}g"):
            if g.get("class") == "node" and _title(g) == node_id:
                return [t.text.strip() for t in g.iter(f"{SVG}text") if t.text and t.text.strip()]
        raise KeyError(node_id)

    def node_strokes(self, node_id: str) -> set[str]:
        for g in self.root.iter(f"{SVG}g"):
            if g.get("class") == "node" and _title(g) == node_id:
                return {e.get("stroke", "").lower() for e in g.iter() if e.get("stroke")}
        raise KeyError(node_id)


def _title(g: ET.Element) -> str:
    t = g.find(f"{SVG}title")
    return t.text if t is not None and t.text else ""


def read_svg(path: Path) -> Drawing:
    root = ET.parse(path).getroot()  # raises on malformed XML
    assert root.tag == f"{SVG}svg"
    groups = list(root.iter(f"{SVG}g"))
    kinds = {"node": set(), "cluster": set()}
    edge_texts = []
    for g in groups:
        kind = g.get("class")
        if kind in kinds:
            kinds[kind].add(_title(g))
        if kind == "edge":
            edge_texts += [t.text.strip() for t in g.iter(f"{SVG}text") if t.text and t.text.strip()]
    texts = [t.text.strip() for t in root.iter(f"{SVG}text") if t.text and t.text.strip()]
    return Drawing(kinds["node"], kinds["cluster"], texts, edge_texts, root)


def invoke_render(spec: Path | str, out: Path, *args: str):
    """Run `graphc render` in-process (real dot, real files); a crash re-raises its traceback."""
    result = CliRunner().invoke(main, ["render", str(spec), "-o", str(out), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_cli(*args: str, path_env: str | None = None, cwd: Path | None = None):
    """`python -m graphc ...` as a real subprocess (optionally with a PATH that lacks `dot`)."""
    env = None if path_env is None else {**os.environ, "PATH": path_env}
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)
