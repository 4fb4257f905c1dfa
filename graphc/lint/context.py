"""What a lint rule sees: the analyzed graph plus helpers to walk it and to point at the spec.

Op-level lint facts (which ops make probabilities, which saturate, which carry position...) are
kept here as small tables. The design puts "lint facts" in each op's registration; until the
registry grows that field, this module is the one place that knows them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx

from graphc.diagnostics import Span
from graphc.ir import BlockFrame, Graph, Input, Node
from graphc.ops import OPS, tagged

# ---- op facts -------------------------------------------------------------------------------
# Ops that only move data around: "directly before" looks through them.
# Op groups come from the ops' own tags (graphc/ops), so a new op joins them where it is defined.
SHAPE_ONLY = tagged("shape_only")
SATURATING = tagged("saturating")
NORM_OPS = tagged("norm")
SKIP_OPS = tagged("skip")  # ops that can close a residual/skip path
# Ops whose output depends on where in the sequence an element is.
POSITION_OPS = tagged("position")
# The loss ports that expect unnormalized scores (the loss applies softmax/sigmoid itself).
LOGIT_PORTS: dict[str, tuple[str, ...]] = {
    name: ports for name, op in OPS.items() if (ports := tuple(p.name for p in op.inputs if p.logits))}
# Data sources whose targets are the inputs shifted by one position (next-token prediction).
NEXT_TOKEN_TASKS = frozenset({"reverse_digits", "sort_digits"})
TEXT_SUFFIXES = (".txt",)
_NEXT = re.compile(r"\bnext\b", re.IGNORECASE)


def has_params(graph: Graph, name: str) -> bool:
    return any(p.trainable for p in graph.params.get(name, {}).values())


def _empty_doc():
    from graphc.spec.loader import MDict

    return MDict()


@dataclass
class LintContext:
    """One analyzed spec, as the rules see it."""

    graph: Graph
    file: str
    enabled: frozenset[str] = frozenset()  # codes of the rules selected for this run
    # the spec document as the pipeline loaded it (spans of train settings, `lint:` on block
    # instances): lint never parses the file a second time
    doc: Any = field(default_factory=lambda: _empty_doc())
    _consumers: dict[str, list[tuple[Node, Input]]] = field(default_factory=dict, init=False)

    def __post_init__(self):
        for node in self.graph.nodes.values():
            for inp in node.inputs:
                self._consumers.setdefault(inp.src, []).append((node, inp))

    # -- walking the graph
    @property
    def nodes(self) -> dict[str, Node]:
        return self.graph.nodes

    def ops(self, *names: str) -> Iterator[Node]:
        """Nodes of the given ops, in topological (or declaration) order."""
        by_op = self._by_op
        if len(names) == 1:
            yield from by_op.get(names[0], ())
            return
        lists = [by_op[n] for n in dict.fromkeys(names) if n in by_op]
        if len(lists) == 1:
            yield from lists[0]
            return
        position = self._position
        yield from sorted((node for nodes in lists for node in nodes), key=lambda n: position[n.name])

    @cached_property
    def _position(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.graph.order or self.graph.nodes)}

    @cached_property
    def _by_op(self) -> dict[str, list[Node]]:
        """Nodes by op, each list in topological order: rules ask for a few ops each, and
        scanning the whole graph per question made lint quadratic-ish on large graphs."""
        out: dict[str, list[Node]] = {}
        for name in self.graph.order or list(self.graph.nodes):
            node = self.graph.nodes[name]
            out.setdefault(node.op, []).append(node)
        return out

    def consumers(self, name: str) -> list[tuple[Node, Input]]:
        return self._consumers.get(name, [])

    def producer(self, node: Node, port: str) -> Node | None:
        bound = node.port_inputs(port)
        return self.graph.nodes.get(bound[0].src) if bound else None

    def source(self, node: Node, port: str, through=SHAPE_ONLY) -> Node | None:
        """The node that really produces `port`'s value, looking through shape-only ops."""
        src = self.producer(node, port)
        seen = set()
        while src is not None and src.op in through and src.name not in seen:
            seen.add(src.name)
            src = self.producer(src, OPS[src.op].inputs[0].name)
        return src

    def named_outputs(self, name: str) -> list[str]:
        return [k for k, (n, _) in self.graph.outputs.items() if n == name]

    @cached_property
    def digraph(self) -> nx.DiGraph:
        return self.graph.digraph()

    def ancestors(self, name: str) -> set[str]:
        return nx.ancestors(self.digraph, name)

    def descendants(self, name: str) -> set[str]:
        return nx.descendants(self.digraph, name)

    def type(self, name: str, port: str = "out"):
        return self.graph.types.get((name, port))

    def train_where(self, *keys: str) -> Span | None:
        """The span of `train.<keys...>` (the deepest one present)."""
        cur = self.doc
        span = None
        for i, key in enumerate(("train", *keys)):
            if not hasattr(cur, "where") or key not in cur:
                break
            span = cur.where(key) if i == len(keys) else cur.key_where(key)
            if i == len(keys):
                break
            cur = cur[key]
        return span

    @property
    def train(self) -> dict:
        return self.graph.train or {}

    def body_of(self, frames: tuple[BlockFrame, ...]) -> Any:
        """The `nodes:` mapping a node with these block frames was declared in."""
        if not frames:
            return self.doc.get("nodes") if isinstance(self.doc, dict) else None
        blocks = self.doc.get("blocks") if isinstance(self.doc, dict) else None
        block = blocks.get(frames[-1].block) if isinstance(blocks, dict) else None
        return block.get("nodes") if isinstance(block, dict) else None

    def instance_decl(self, node: Node, depth: int) -> Any:
        """The declaration of the block instance at `node.scope[depth]`."""
        body = self.body_of(node.scope[:depth])
        decl = body.get(node.scope[depth].instance) if isinstance(body, dict) else None
        return decl if isinstance(decl, dict) else None

    # -- facts shared by several rules
    def data_length(self) -> int | None:
        """The sequence length the `train.data` source produces, when it says."""
        data = self.train.get("data")
        if not isinstance(data, dict):
            return None
        for key in ("length", "block"):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return 2 * value if data.get("task") in NEXT_TOKEN_TASKS else value
        return None

    def sequence_length(self, node: Node, port: str = "x") -> int | None:
        """The time axis (axis 1) of a [B, T, ...] input: a number if known, else the data's."""
        src = node.port_inputs(port)
        t = self.graph.types.get(src[0].tensor) if src else None
        if t is None or t.rank < 2:
            return None
        if t.shape[1].is_Integer:
            return int(t.shape[1])
        return self.data_length()

    def predicts_next_token(self, loss: Node) -> bool:
        """Does this loss's target hold the next token of the sequence the model reads?

        Evidence: the target is sliced in the graph from the same input the embedding reads
        (a shift), the data source yields shifted targets, or the target input's name or doc
        says "next"."""
        bound = loss.port_inputs("target")
        if not bound:
            return False
        node, sliced = self.graph.nodes.get(bound[0].src), False
        while node is not None and node.op in SHAPE_ONLY:
            sliced |= node.op == "slice"
            node = self.producer(node, OPS[node.op].inputs[0].name)
        if node is None or not node.is_input:
            return False
        if sliced and any(self.source(e, "ids") is node for e in self.ops("embedding")):
            return True
        if self.next_token_data():
            return True
        return bool(_NEXT.search(node.name.replace("_", " ")) or _NEXT.search(node.doc))

    def next_token_data(self) -> bool:
        data = self.train.get("data")
        if not isinstance(data, dict):
            return False
        if data.get("task") in NEXT_TOKEN_TASKS:
            return True
        file = data.get("file")
        return isinstance(file, str) and file.lower().endswith(TEXT_SUFFIXES)


# ---- suppressions: `lint: {ignore: [GL107], reason: "..."}` on a node or a block instance -------
@dataclass
class Suppression:
    path: tuple[str, ...]  # ("nodes", name) or ("blocks", block, name)
    value: Any  # the `lint:` value as written
    span: Span | None
    codes: list[tuple[str, Span | None]] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    @property
    def where(self) -> str:
        return ".".join(self.path) + ".lint"


def _suppressions(doc) -> dict[tuple[str, ...], Suppression]:
    bodies = []
    if isinstance(doc, dict):
        if isinstance(doc.get("nodes"), dict):
            bodies.append((("nodes",), doc["nodes"]))
        blocks = doc.get("blocks")
        for bname, block in (blocks.items() if isinstance(blocks, dict) else ()):
            if isinstance(block, dict) and isinstance(block.get("nodes"), dict):
                bodies.append((("blocks", str(bname)), block["nodes"]))
    out = {}
    for prefix, body in bodies:
        for name, decl in body.items():
            if not isinstance(decl, dict) or "lint" not in decl:
                continue
            value = decl["lint"]
            s = Suppression((*prefix, str(name)), value, decl.where("lint"))
            ignore = value.get("ignore") if isinstance(value, dict) else None
            items = [ignore] if isinstance(ignore, str) else ignore if isinstance(ignore, list) else []
            for i, code in enumerate(items):
                if isinstance(code, str):
                    s.codes.append((code.strip(), ignore.where(i) if hasattr(ignore, "item_spans")
                                    else decl.where("lint")))
            out[s.path] = s
    return out


def decl_paths(ctx: LintContext, node: Node) -> list[tuple[str, ...]]:
    """Where `lint:` settings for a node may be written: on it, or on any block instance around it."""
    paths = []
    for depth, f in enumerate(node.scope):
        paths.append(("nodes", f.instance) if depth == 0 else ("blocks", node.scope[depth - 1].block, f.instance))
    body = ctx.body_of(node.scope)
    local = node.name[len(node.scope[-1].path) + 1:] if node.scope else node.name
    if isinstance(body, dict) and local not in body:
        local = local.rsplit(".", 1)[0]  # a copy made by `repeat:` on an op node
    paths.append(("blocks", node.scope[-1].block, local) if node.scope else ("nodes", local))
    return paths


def suppressions(ctx: LintContext) -> dict[tuple[str, ...], Suppression]:
    """Every `lint:` setting in the spec. The IR keeps `lint:` of op nodes only (not of block
    instances), so they are read from the document, which is parsed again only when its text
    mentions `lint` at all."""
    if "_suppressions" not in ctx.__dict__:
        try:
            mentioned = "lint" in Path(ctx.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            mentioned = False
        ctx.__dict__["_suppressions"] = _suppressions(ctx.doc) if mentioned else {}
    return ctx.__dict__["_suppressions"]
