"""Text inside the nodes: HTML-label building blocks (Graphviz's `<table>` labels, escaped),
the attributes worth showing on a node, and how values and folded repetitions are written."""

from __future__ import annotations

import html

from graphc.ir import Graph, Node
from graphc.ops import OPS
from graphc.shapes import dim, fmt_shape

MAX_ATTRS = 3  # more than this turns a node into a paragraph; `graphc summary` has the rest


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


def tooltip(graph: Graph, name: str, stands_for: int = 1) -> str:
    """The hover text of a drawn node (SVG `<title>`-like tooltip): everything the box leaves
    out — op and family, every attribute (defaults included), input and output shapes, the
    parameters with their shapes. Lines are joined with Graphviz's `\\n`."""
    node = graph.nodes[name]
    if node.is_input:
        t = graph.out_type(name)
        shape = fmt_shape(t.shape) if t else (fmt_shape(s) if (s := _declared_shape(node)) is not None else "?")
        lines = [f"{name}: input", f"shape: {shape}", f"dtype: {t.dtype if t else node.dtype}"]
        return _tip(lines + ([node.doc] if node.doc else []))
    op = OPS.get(node.op)
    lines = [f"{name}: {node.op}" + (f" ({op.family})" if op else " (unknown op)")]
    if stands_for > 1:
        lines[0] += f", drawn for {stands_for} repetitions"
    for inp in node.inputs:
        t = graph.out_type(inp.src, inp.src_port)
        src = inp.src + (f".{inp.src_port}" if inp.src_port != "out" else "")
        lines.append(f"in {inp.port} ← {src}: {fmt_shape(t.shape) if t else '?'}")
    for port in node.outputs:
        t = graph.out_type(name, port)
        lines.append(f"out{'' if port == 'out' else ' ' + port}: {fmt_shape(t.shape) if t else '?'}")
    schemas = op.attrs if op else {}
    for key, value in node.attrs.items():
        schema = schemas.get(key)
        text = str(value).lower() if isinstance(value, bool) else _fmt_value(value, schema.type if schema else "")
        lines.append(f"{key} = {text}")
    params = graph.params.get(name, {})
    if params:
        shown = ", ".join(f"{p} {'×'.join(map(str, d.shape)) or 'scalar'}"
                          + ("" if d.trainable else " (buffer)") for p, d in params.items())
        lines.append(f"params: {shown} = {sum(d.size for d in params.values()):,}")
    if node.doc:
        lines.append(node.doc)
    return _tip(lines)


def _tip(lines: list[str]) -> str:
    # Graphviz reads `\` escapes in tooltips (escString): keep the user's backslashes literal
    return "\\n".join(line.replace("\\", "\\\\") for line in lines)


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

