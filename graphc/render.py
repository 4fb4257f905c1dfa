"""`graphc render`: architecture diagrams drawn by Graphviz from the analysed graph.

The picture is built from the same front end as `check` (load → expand → validate → infer), so
what is drawn is what graphc understood: every edge carries its inferred symbolic shape, every
node its op, key attributes and parameter count. Blocks become clusters; a repeated block is
folded into the cluster of its first repetition, marked ×N, so deep stacks stay readable
(`--expand` opens them). A spec with errors still renders: the offending nodes are marked and
the diagnostics printed. Without Graphviz's `dot` binary the `.dot` source is still written.
"""

from __future__ import annotations

import html
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import click
import graphviz

from graphc.cli import parse_overrides, set_option
from graphc.diagnostics import Diagnostic, DiagnosticPrinter, summary_line
from graphc.ir import BlockFrame, Graph, Node
from graphc.ops import OPS
from graphc.pipeline import Analysis, analyze
from graphc.shapes import dim, fmt_shape

FORMATS = ("svg", "png", "pdf", "dot")
FONT = "Helvetica,Arial,sans-serif"  # resolved by fontconfig; DejaVu/Liberation stand in on Linux

# (fill, border) per op family: pastel fills keep black text readable, the border carries the hue.
FAMILY_COLOURS: dict[str, tuple[str, str]] = {
    "dense": ("#DCEBFB", "#1E6FC8"),
    "conv": ("#DDF2DE", "#2E8B3A"),
    "pool": ("#EEF5DB", "#7A9A1E"),
    "sampling": ("#E4E6F6", "#3949AB"),
    "recurrent": ("#D9F3F6", "#00838F"),
    "attention": ("#FBDDE8", "#C2185B"),
    "norm": ("#ECDDF3", "#7B1FA2"),
    "activation": ("#FFE9D0", "#E07000"),
    "arith": ("#FFF6C7", "#B08C00"),
    "shape": ("#EDF0F2", "#78909C"),
    "regularization": ("#EFE5E1", "#795548"),
    "loss": ("#FCDADA", "#C62828"),
}
UNKNOWN_COLOURS = ("#FFFFFF", "#9E9E9E")  # an op graphc does not know (the spec has an error)
INPUT_FILL, INPUT_TEXT = "#37474F", "#FFFFFF"  # inputs: dark, so the eye finds where data enters
OUTPUT_COLOUR, LOSS_COLOUR, ERROR_COLOUR = "#2E7D32", "#C62828", "#D50000"
MUTED = "#607D8B"
GRADIENT_COLOUR = "#EF6C00"
REPEAT_COLOUR = "#D84315"  # the ×N of a folded block: the one number a reader must not miss
MAX_ATTRS = 3  # more than this turns a node into a paragraph; `graphc summary` has the rest


# -- what is drawn --------------------------------------------------------------------------


@dataclass
class RenderOptions:
    expand: bool = False  # draw every repetition of a repeated block instead of folding
    direction: str = "TB"
    shapes: bool = True  # label edges with their symbolic shapes


@dataclass
class Cluster:
    """One block instance (or, folded, all repetitions of one) drawn as a Graphviz cluster."""

    key: str  # the instance path as drawn, e.g. "decoder.0"
    frame: BlockFrame
    nodes: list[str] = field(default_factory=list)
    children: dict[str, Cluster] = field(default_factory=dict)
    params: int = 0  # over every repetition it stands for


def _fold_path(node: Node) -> tuple[str, list[str]]:
    """The node that stands for `node` when repeats are folded, and its drawn cluster keys.

    A node in repetition k>0 of a repeated block is drawn as the same node of repetition 0:
    the names differ only in the repetition index in each enclosing frame's path."""
    name, delta, keys = node.name, 0, []
    for frame in node.scope:  # outermost first; inner paths extend outer ones
        cut = len(frame.path) + delta
        prefix = name[:cut]
        if frame.index:  # repetition > 0: rewrite its index to 0
            folded = prefix[: len(prefix) - len(str(frame.index))] + "0"
            name, delta = folded + name[cut:], delta + len(folded) - len(prefix)
            prefix = folded
        keys.append(prefix)
    return name, keys


@dataclass
class Layout:
    """Which nodes are drawn, where (clusters), and what hidden nodes map to."""

    visible: dict[str, str]  # every node → the node drawn for it (itself unless folded away)
    stands_for: dict[str, list[str]]  # drawn node → the nodes it represents, in order
    clusters: dict[str, Cluster]  # top-level clusters by key
    top_nodes: list[str]  # drawn nodes outside any block


def plan_layout(graph: Graph, expand: bool) -> Layout:
    visible: dict[str, str] = {}
    stands_for: dict[str, list[str]] = {}
    clusters: dict[str, Cluster] = {}
    top: list[str] = []
    for name in _node_order(graph):
        node = graph.nodes[name]
        if expand:
            rep, keys = name, [f.path for f in node.scope]
        else:
            rep, keys = _fold_path(node)
            if rep not in graph.nodes:  # repetition 0 lacks it (expansion error): draw it as is
                rep, keys = name, [f.path for f in node.scope]
        visible[name] = rep
        stands_for.setdefault(rep, []).append(name)
        siblings, cluster = clusters, None
        for key, frame in zip(keys, node.scope, strict=True):
            cluster = siblings.setdefault(key, Cluster(key, frame))
            cluster.params += graph.param_count(name)
            siblings = cluster.children
        if rep == name:
            (cluster.nodes if cluster else top).append(name)
    return Layout(visible, stands_for, clusters, top)


def _node_order(graph: Graph) -> list[str]:
    """Topological when known (nicer cluster contents), else declaration order (broken specs)."""
    order = [n for n in graph.order if n in graph.nodes]
    return order + [n for n in graph.nodes if n not in set(order)]


# -- labels ---------------------------------------------------------------------------------


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt_value(value: object, attr_type: str = "") -> str:
    if isinstance(value, list | tuple):
        if attr_type == "int2":  # a window: kernel=3×3 reads like the picture it is
            return "×".join(_fmt_value(v) for v in value)
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_default(value: object, default: object) -> bool:
    # the front end normalises `kernel: 3` to (3, 3), while the schema's default stays `1`
    if isinstance(value, tuple) and not isinstance(default, tuple):
        return all(v == default for v in value)
    return value == default


def _variants(values: list[str]) -> str:
    """What differs between folded repetitions, e.g. `192 / 4,160` (first … last when many)."""
    distinct = list(dict.fromkeys(v for v in values if v))
    if len(distinct) <= 3:
        return " / ".join(distinct)
    return f"{distinct[0]} / … / {distinct[-1]}"


def key_attributes(node: Node) -> list[str]:
    """The attributes worth a glance: those the spec set away from the op's defaults."""
    op = OPS.get(node.op)
    shown = []
    for key, value in node.attrs.items():
        schema = op.attrs.get(key) if op else None
        if schema is not None and not schema.required and _is_default(value, schema.default):
            continue
        if isinstance(value, bool):
            shown.append(key if value else f"no {key}")
        else:
            text = _fmt_value(value, schema.type if schema else "")
            shown.append(f"{key}={text if len(text) <= 14 else text[:13] + '…'}")
    return shown[:MAX_ATTRS]


def _declared_shape(node: Node) -> tuple | None:
    try:
        return tuple(dim(d) for d in node.shape_spec)
    except (TypeError, ValueError):
        return None


def _short_name(name: str, cluster_key: str | None) -> str:
    """Inside a cluster the instance path is already on the frame: `decoder.0.attn` → `attn`."""
    if cluster_key and name.startswith(cluster_key + "."):
        return name[len(cluster_key) + 1:]
    return name


def _rows(*rows: str) -> str:
    cells = "".join(f"<tr><td>{r}</td></tr>" for r in rows if r)
    return f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{cells}</table>>'


def _small(text: str, colour: str = "#37474F", size: int = 9) -> str:
    if not text:  # Graphviz rejects an empty <font></font>
        return ""
    return f'<font point-size="{size}" color="{colour}">{text}</font>'


# -- the Graphviz graph ---------------------------------------------------------------------


@dataclass
class _Marks:
    """Which nodes the diagnostics blame (with the first message), which lost their shape, and
    the errors no drawn node can carry (they go under the title, so the picture stays honest)."""

    errors: dict[str, str]
    shapeless: set[str]
    unplaced: list[str]


def _node_lines(node: Node) -> set[tuple[str, int]]:
    spans = [node.span, node.in_span, *node.attr_spans.values(), *(i.span for i in node.inputs)]
    return {(s.file, s.line) for s in spans if s is not None}


def blamed_nodes(diagnostic: Diagnostic, graph: Graph) -> list[str]:
    """The nodes a diagnostic is about: those it names, else those declared on the line it
    points at (expansion errors such as a missing attribute carry a span but no node names)."""
    named = [n for n in diagnostic.nodes if n in graph.nodes]
    if named or diagnostic.span is None:
        return named
    where = (diagnostic.span.file, diagnostic.span.line)
    return [n.name for n in graph.nodes.values() if where in _node_lines(n)]


def _marks(analysis: Analysis, layout: Layout) -> _Marks:
    graph = analysis.graph
    errors: dict[str, str] = {}
    unplaced: list[str] = []
    for d in analysis.errors:
        names = blamed_nodes(d, graph)
        if not names:
            line = f" (line {d.span.line})" if d.span else ""
            unplaced.append(f"{d.code}{line}: {d.message}")
        for name in names:  # blame the drawn node, even if it stands for a folded one
            shown = layout.visible.get(name, name)
            where = f" (in {name})" if shown != name else ""
            errors.setdefault(shown, f"{d.code}: {d.message}{where}")
    shapeless = {layout.visible.get(n, n) for n in graph.failed} - set(errors)
    return _Marks(errors, shapeless, unplaced)


@dataclass
class GradientFlow:
    """What the compiler's reverse walk does, as facts to draw: which tensors receive a gradient
    from which node, and which parameters get one."""

    edges: list[tuple[str, str]]  # (producer, consumer): d(loss)/d(producer's output) from consumer
    params: dict[str, list[str]]  # node → its parameters that receive a gradient
    seeds: list[str]  # loss nodes where the walk starts (d loss / d loss = 1)


def gradient_flow(graph: Graph) -> GradientFlow:
    """Run the compiler's autodiff (graphc.compiler.autodiff) and read back its backward plan.

    Each backward `Call` assigns one target per kernel input slot (variadic slots expanded),
    then one per kernel parameter, `_` where no gradient is kept; aligning the targets with
    the node's inputs the same way the reverse walk built them tells where gradients flow."""
    from graphc.compiler.autodiff import build  # imports the kernels: only for --backward
    from graphc.compiler.lowering import lower

    program = build(graph)
    flow = GradientFlow([], {}, [n for n, _ in graph.losses.values()
                                 if any(c.node == n for c in program.backward)])
    for call in program.backward:
        node = graph.nodes[call.node]
        first = graph.types.get(node.inputs[0].tensor) if node.inputs else None
        kernel = lower(node, first.rank if first else 0).kernel
        slots = []
        for port in kernel.inputs:
            bound = node.port_inputs(port)
            slots += bound if kernel.variadic else [bound[0] if bound else None]
        for inp, target in zip(slots, call.targets, strict=False):
            if inp is not None and target != "_":
                flow.edges.append((inp.src, node.name))
        param_targets = call.targets[len(slots):]
        trained = [p for p, t in zip(kernel.params, param_targets, strict=False) if t != "_"]
        if trained:
            flow.params[node.name] = trained
    return flow


class DiagramBuilder:
    """Turns an analysed graph into a `graphviz.Digraph`."""

    def __init__(self, analysis: Analysis, options: RenderOptions,
                 gradients: GradientFlow | None = None):
        self.analysis, self.graph, self.options = analysis, analysis.graph, options
        self.gradients = gradients
        self.layout = plan_layout(self.graph, options.expand)
        self.marks = _marks(analysis, self.layout)
        self.families: set[str] = set()
        self.missing: set[str] = set()  # referenced but never defined (spec errors)
        self.dot = graphviz.Digraph(self.graph.name or "graph")

    def build(self) -> graphviz.Digraph:
        dot = self.dot
        dot.attr(rankdir=self.options.direction, fontname=FONT, nodesep="0.35", ranksep="0.4",
                 labelloc="t", labeljust="c", fontsize="18", newrank="true", bgcolor="white")
        dot.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="11",
                 margin="0.14,0.06", penwidth="1.3")
        dot.attr("edge", fontname=FONT, fontsize="9", fontcolor=MUTED, color="#78909C",
                 arrowsize="0.7")
        for name in self.layout.top_nodes:
            self._node(dot, name, None)
        for cluster in self.layout.clusters.values():
            self._cluster(dot, cluster)
        self._edges()
        self._terminals()
        if self.gradients is not None:
            self._gradient_edges()
        for name in sorted(self.missing):
            dot.node(name, _rows(f"<b>{_h(name)}</b>", _small("not defined", ERROR_COLOUR)),
                     fillcolor="#FFFFFF", color=ERROR_COLOUR, style="rounded,dashed", penwidth="2")
        # the legend rides in the title: a free-standing legend node would stretch a rank
        dot.attr(label=self._title_and_legend())
        return dot

    def _title_and_legend(self) -> str:
        g = self.graph
        params = g.param_count(trainable_only=True)
        sub = f"{len(g.nodes)} nodes" + (f" · {params:,} parameters" if g.params else "")
        errors = self.analysis.errors
        if errors:
            sub += f' · <font color="{ERROR_COLOUR}">{_h(summary_line(errors))}</font>'
        rows = [f'<font point-size="18"><b>{_h(g.name)}</b></font>',
                f'<font point-size="11" color="{MUTED}">{sub}</font>']
        for message in self.marks.unplaced[:3]:  # errors no drawn node can show
            text = textwrap.shorten(message, 100, placeholder="…")
            rows.append(f'<font point-size="10" color="{ERROR_COLOUR}">✗ {_h(text)}</font>')
        if len(self.marks.unplaced) > 3:
            rows.append(_small(f"… and {len(self.marks.unplaced) - 3} more (see the diagnostics)",
                               ERROR_COLOUR, 10))
        rows.append(self._legend())
        cells = "".join(f"<tr><td>{r}</td></tr>" for r in rows) + '<tr><td height="6"></td></tr>'
        return f'<<table border="0" cellborder="0" cellspacing="2" cellpadding="0">{cells}</table>>'

    def _cluster(self, parent: graphviz.Digraph, cluster: Cluster) -> None:
        frame = cluster.frame
        folded = not self.options.expand and frame.repeat > 1
        if folded:  # the ×N badge is the point of folding: make it the first thing one reads
            head = (f'<b>{_h(frame.instance)}</b>  <font point-size="15" color="{REPEAT_COLOUR}">'
                    f"<b>×{frame.repeat}</b></font>")
        elif frame.index is not None:
            head = f"<b>{_h(cluster.key)}</b>  ({frame.index + 1} of {frame.repeat})"
        else:
            head = f"<b>{_h(cluster.key)}</b>"
        info = f"block {_h(frame.block)}"
        if cluster.params:
            info += f" · {cluster.params:,} params" + (" in all" if folded else "")
        label = ('<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'
                 f'<tr><td align="left">{head}</td></tr>'
                 f'<tr><td align="left"><font point-size="9" color="{MUTED}">{info}</font>'
                 "</td></tr></table>>")
        # a folded stack gets a heavier frame: it stands for N copies, not one
        style = {"style": "rounded,bold", "penwidth": "2.2"} if folded else {"style": "rounded"}
        with parent.subgraph(name=f"cluster_{cluster.key}") as sub:
            sub.attr(label=label, fontsize="12", color="#90A4AE", bgcolor="#FAFBFC", margin="12",
                     labeljust="l", **style)
            for name in cluster.nodes:
                self._node(sub, name, cluster.key)
            for child in cluster.children.values():
                self._cluster(sub, child)

    def _node(self, dot: graphviz.Digraph, name: str, cluster_key: str | None) -> None:
        node = self.graph.nodes[name]
        g = self.graph
        if node.is_input:
            t = g.out_type(name)
            declared = t.shape if t else _declared_shape(node)  # inference may not have run
            shape = fmt_shape(declared) if declared is not None else "?"
            dtype = t.dtype if t else node.dtype
            label = _rows(f'<font color="{INPUT_TEXT}"><b>{_h(name)}</b></font>',
                          _small(f"input · {_h(shape)} · {_h(dtype)}", "#CFD8DC"))
            dot.node(name, label, fillcolor=INPUT_FILL, color=INPUT_FILL, shape="box",
                     style="rounded,filled")
            self.families.add("input")
            return
        op = OPS.get(node.op)
        family = op.family if op else None
        fill, border = FAMILY_COLOURS.get(family, UNKNOWN_COLOURS)
        if family:
            self.families.add(family)
        attrs = " ".join(key_attributes(node))
        rows = [f"<b>{_h(_short_name(name, cluster_key))}</b>",
                _small(f"{_h(node.op)}" + (f"  {_h(attrs)}" if attrs else ""), "#263238", 10),
                _small(self._param_text(name), MUTED)]
        if self.gradients is not None and name in self.gradients.params:
            trained = self.gradients.params[name]
            listed = ", ".join(trained if len(trained) <= 4 else [*trained[:3], f"… ({len(trained)})"])
            rows.append(_small(f"∇ {_h(listed)}", GRADIENT_COLOUR))
        extra: dict[str, str] = {}
        if name in self.marks.errors:
            message = textwrap.shorten(self.marks.errors[name], 110, placeholder="…")
            lines = textwrap.wrap(message, 42)[:3]
            rows.append(_small("<br/>".join(f"✗ {_h(lines[0])}" if i == 0 else _h(line)
                                            for i, line in enumerate(lines)), ERROR_COLOUR))
            extra = {"color": ERROR_COLOUR, "penwidth": "3"}
            self.families.add("error")
        elif name in self.marks.shapeless:
            rows.append(_small("shape unknown (upstream error)", MUTED))
            extra = {"style": "rounded,filled,dashed"}
        dot.node(name, _rows(*rows), **{"fillcolor": fill, "color": border, "tooltip": name, **extra})

    def _param_text(self, name: str) -> str:
        counts = [self.graph.param_count(n) for n in self.layout.stands_for.get(name, [name])]
        if not any(counts):
            return ""
        return _variants([f"{c:,}" for c in counts]) + " params"

    def _edge_label(self, src: str, port: str) -> str:
        if not self.options.shapes:
            return ""
        t = self.graph.out_type(src, port)
        text = fmt_shape(t.shape) if t else "?"
        node = self.graph.nodes.get(src)
        if node is not None and len(node.outputs) > 1:
            text = f"{port}: {text}"
        return text

    def _edges(self) -> None:
        g, visible = self.graph, self.layout.visible
        labels: dict[tuple, list[str]] = {}  # drawn edge → its shape in each repetition
        folded_back: dict[str, tuple[str, str, str]] = {}  # stack → first (dst order, src, dst)
        for name in _node_order(g):
            node, dst = g.nodes[name], visible[name]
            for inp in node.inputs:
                if inp.src not in g.nodes:
                    self.missing.add(inp.src)
                    self.dot.edge(inp.src, dst, color=ERROR_COLOUR, style="dashed")
                    continue
                src = visible[inp.src]
                stack = None if self.options.expand else self._repetition_crossed(inp.src, name)
                if stack is not None:  # repetition k's output feeding k+1: drawn as the ×N loop
                    folded_back.setdefault(stack, (name, src, dst))
                    continue
                key = (src, inp.src_port, dst, inp.port)
                labels.setdefault(key, []).append(self._edge_label(inp.src, inp.src_port))
        for (src, _, dst, _), shapes in labels.items():
            label = _variants([s.strip() for s in shapes])
            self.dot.edge(src, dst, label=f" {label} " if label else "")  # spaces: off the line
        # One dashed loop-back per folded stack says "and again, N times" without a wall of edges.
        for (_, src, dst) in sorted(folded_back.values()):
            self.dot.edge(src, dst, style="dashed", color="#90A4AE", constraint="false",
                          arrowhead="empty", tooltip="output of one repetition feeds the next")

    def _gradient_edges(self) -> None:
        """Gradients flow against the data: dashed edges drawn tail-first (dir=back) so they run
        beside their forward edge without changing the layout."""
        style = {"color": GRADIENT_COLOUR, "style": "dashed", "dir": "back", "arrowtail": "normal",
                 "constraint": "false", "penwidth": "1.2"}
        drawn: set[tuple[str, str]] = set()
        for src, dst in self.gradients.edges:
            if not self.options.expand and self._repetition_crossed(src, dst):
                continue  # the folded loop-back already says "repeats"
            pair = (self.layout.visible[src], self.layout.visible[dst])
            if pair not in drawn:
                drawn.add(pair)
                self.dot.edge(*pair, tooltip=f"d loss / d {src}", **style)
        for out_name, (node, _) in self.graph.losses.items():
            if node in self.gradients.seeds:
                self.dot.edge(self.layout.visible[node], f"loss/{out_name}", label=" ∂=1 ",
                              fontcolor=GRADIENT_COLOUR, **style)
        self.families.add("gradient")

    def _repetition_crossed(self, src: str, dst: str) -> str | None:
        """The drawn cluster of the repeated block whose repetition k feeds k+1 along src → dst
        (None when the edge stays within one repetition)."""
        a, b = self.graph.nodes[src].scope, self.graph.nodes[dst].scope
        for level, (fa, fb) in enumerate(zip(a, b, strict=False)):
            if fa.instance != fb.instance or fa.block != fb.block:
                return None
            if fa.index != fb.index:
                return self.graph.nodes[self.layout.visible[dst]].scope[level].path
        return None

    def _terminals(self) -> None:
        """Named outputs and losses as their own end points: where the picture says "result"."""
        g = self.graph
        for kind, named, colour in (("output", g.outputs, OUTPUT_COLOUR), ("loss", g.losses, LOSS_COLOUR)):
            for out_name, (src, port) in named.items():
                tid = f"{kind}/{out_name}"  # `/` cannot occur in spec names; `:` means a port to dot
                hint = "minimized in training" if kind == "loss" else "model output"
                self.dot.node(tid, _rows(f'<font color="{colour}"><b>{_h(out_name)}</b></font>',
                                         _small(hint, MUTED)),
                              shape="box", style="rounded,bold", color=colour, fillcolor="#FFFFFF",
                              peripheries="2", penwidth="1.5")
                self.families.add("output" if kind == "output" else "loss_terminal")
                if src not in g.nodes:
                    self.missing.add(src)
                    self.dot.edge(src, tid, color=ERROR_COLOUR, style="dashed")
                    continue
                label = self._edge_label(src, port)
                self.dot.edge(self.layout.visible[src], tid, label=f" {label} " if label else "",
                              color=colour)

    def _legend(self) -> str:
        """A key for the colours actually used, so the picture explains itself (an HTML table)."""
        items = []  # (fill, border, text)
        if "input" in self.families:
            items.append((INPUT_FILL, INPUT_FILL, "input"))
        items += [(*FAMILY_COLOURS[f], f) for f in FAMILY_COLOURS if f in self.families]
        if "output" in self.families:
            items.append(("#FFFFFF", OUTPUT_COLOUR, "output"))
        if "loss_terminal" in self.families:
            items.append(("#FFFFFF", LOSS_COLOUR, "loss (minimized)"))
        if "gradient" in self.families:
            items.append((GRADIENT_COLOUR, GRADIENT_COLOUR, "gradient flow"))
        if "error" in self.families:
            items.append(("#FFFFFF", ERROR_COLOUR, "error"))
        per_row = 5  # a narrow spec (mlp) should not get a legend wider than its drawing
        rows = []
        for start in range(0, len(items), per_row):
            cells = "".join(
                f'<td width="14" height="9" fixedsize="true" bgcolor="{fill}" color="{border}" border="1"></td>'
                f'<td align="left"><font point-size="9" color="#37474F"> {_h(text)}   </font></td>'
                for fill, border, text in items[start:start + per_row])
            rows.append(f"<tr>{cells}</tr>")
        return ('<table border="0" cellborder="0" cellspacing="1" cellpadding="1">'
                + "".join(rows) + "</table>")


def build_diagram(analysis: Analysis, options: RenderOptions | None = None,
                  gradients: GradientFlow | None = None) -> graphviz.Digraph:
    """The Graphviz graph of an analysed spec (partial graphs included)."""
    return DiagramBuilder(analysis, options or RenderOptions(), gradients).build()


# -- the command ----------------------------------------------------------------------------

INSTALL_GRAPHVIZ = """\
To draw it, install Graphviz (the `dot` program; the Python package alone is not enough):
  Debian/Ubuntu:  sudo apt-get install -y graphviz
  Fedora:         sudo dnf install graphviz
  macOS:          brew install graphviz
  conda:          conda install -c conda-forge graphviz
  Windows, other: https://graphviz.org/download/
then re-run this command, or draw the saved source directly:  dot -T{fmt} {dot} -o {out}"""


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _format_of(output: Path) -> str:
    fmt = output.suffix.lower().lstrip(".")
    if fmt == "gv":
        return "dot"
    if fmt not in FORMATS:
        what = f"`.{fmt}`" if fmt else "no extension"
        _fail(f"cannot tell the format of `{output}` ({what}); use one of "
              f"{', '.join('.' + f for f in FORMATS)}", 2)
    return fmt


def _write(path: Path, data: bytes | str) -> None:
    try:
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    except OSError as exc:
        _fail(f"cannot write `{path}`: {exc.strerror or exc}")


@click.command()
@click.argument("spec", type=click.Path())
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Where to write; the format comes from the extension (.svg .png .pdf .dot). "
                   "Default: SPEC's name with .svg, in the current directory.")
@click.option("--expand", is_flag=True, help="Draw every repetition of a repeated block instead of "
                                             "folding them into one cluster marked ×N.")
@click.option("--direction", type=click.Choice(["TB", "LR", "BT", "RL"], case_sensitive=False),
              default="TB", show_default=True, help="Layout direction (top-bottom, left-right, ...).")
@click.option("--shapes/--no-shapes", default=True, show_default=True,
              help="Label edges with their symbolic tensor shapes.")
@click.option("--backward", is_flag=True,
              help="Also draw the gradient flow of the compiler's reverse-mode autodiff (dashed, "
                   "against the data) and mark the parameters that receive gradients.")
@set_option
def render(spec, output, expand, direction, shapes, backward, sets):
    """Draw SPEC as an architecture diagram with Graphviz.

    Edges carry symbolic shapes, nodes their op, key attributes and parameter count; blocks are
    clusters, repeated blocks fold into one cluster marked ×N. A spec with errors still renders
    what it can, with the offending nodes marked. --backward adds the gradient flow of the
    compiler's reverse-mode autodiff. Exit status: 0 drawn; 1 drawn with errors in the spec, or
    nothing to draw, or no `dot` (then the .dot source is written); 2 usage error.

        graphc render specs/transformer.yaml -o transformer.svg
    """
    out = Path(output) if output else Path(Path(spec).stem + ".svg")
    fmt = _format_of(out)
    if not Path(spec).is_file():
        _fail(f"no such spec file: `{spec}`" if not Path(spec).exists() else f"`{spec}` is not a file")
    if not out.parent.is_dir():
        problem = "is not a directory" if out.parent.exists() else "does not exist"
        _fail(f"cannot write `{out}`: `{out.parent}` {problem}")
    analysis = analyze(spec, parse_overrides(sets))
    DiagnosticPrinter().print_all(analysis.diagnostics)
    if analysis.graph is None or not analysis.graph.nodes:
        _fail(f"{spec}: nothing to draw ({summary_line(analysis.diagnostics)})")
    options = RenderOptions(expand=expand, direction=direction.upper(), shapes=shapes)
    gradients, gradient_problem = None, ""
    if backward and analysis.errors:
        gradient_problem = "the spec has errors, so there is no backward graph to draw"
    elif backward:
        try:
            gradients = gradient_flow(analysis.graph)
        except Exception as exc:  # e.g. an op without a kernel: still draw the forward graph
            gradient_problem = f"the compiler could not differentiate it: {type(exc).__name__}: {exc}"
    try:
        diagram = build_diagram(analysis, options, gradients)
    except Exception as exc:  # a renderer bug must still not hand the user a traceback
        _fail(f"internal error while drawing `{spec}`: {type(exc).__name__}: {exc} "
              "(this is a graphc bug; please report it with the spec)")
    if fmt == "dot":
        _write(out, diagram.source)
    else:
        if fmt == "png":
            diagram.attr(dpi="110")  # crisp on today's screens without becoming a poster
        try:
            data = diagram.pipe(format=fmt, quiet=True)
        except graphviz.ExecutableNotFound:
            dot_path = out.with_suffix(".dot")
            _write(dot_path, diagram.source)
            _fail(f"Graphviz's `dot` program is not on PATH, so `{out}` was not drawn; wrote the "
                  f"diagram source to `{dot_path}` instead.\n"
                  + INSTALL_GRAPHVIZ.format(fmt=fmt, dot=dot_path, out=out))
        except graphviz.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            _fail(f"Graphviz `dot` failed: {detail[0] if detail else exc}")
        _write(out, data)
    errors = analysis.errors
    note = f" (drawn as far as it goes: the spec has {summary_line(errors)})" if errors else ""
    click.echo(f"wrote {out}{note}", err=bool(errors))
    if gradient_problem:
        _fail(f"gradient flow not drawn: {gradient_problem}")
    sys.exit(1 if errors else 0)
