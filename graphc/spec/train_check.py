"""GC401 checks of the `train:` keys that name parts of the graph: `phases` (losses and
parameter patterns) and `data.generate` (model inputs). Runs after shape inference, when the
parameters are known, so `graphc check` reports these like any other error, with a source
position; the runtime checks the same again (it never reads YAML) and raises ConfigError.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from graphc.diagnostics import Diagnostics, Span, did_you_mean
from graphc.ir import Graph

GENERATE_KINDS = ("normal", "uniform", "zeros", "ones")  # graphc.runtime.data.feed.GENERATORS
PHASE_KEYS = ("loss", "params", "every", "optimizer")


def _at(node, *path) -> Span | None:
    """The span of doc[path...] (the deepest one present)."""
    span = None
    for key in path:
        if not hasattr(node, "where"):
            break
        try:
            node[key]
        except (KeyError, IndexError, TypeError):
            break
        span = node.where(key) or span
        node = node[key]
    return span


def check_train(graph: Graph, doc) -> list:
    diags = Diagnostics()
    train = graph.train or {}
    if not isinstance(train, dict):
        return []
    tdoc = doc.get("train") if hasattr(doc, "get") else None
    _check_phases(graph, train, tdoc, diags)
    _check_generate(graph, train, tdoc, diags)
    return diags.items


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else value if isinstance(value, list) else []


def _check_phases(graph: Graph, train: dict, tdoc, diags: Diagnostics) -> None:
    phases = train.get("phases")
    if phases is None:
        return
    where = _at(tdoc, "phases")
    if not isinstance(phases, list) or not phases:
        diags.error("GC401", "train.phases must be a non-empty list of {loss: ..., params: [...]}",
                    where, hint='e.g. [{loss: d_loss, params: ["disc.*"]}, {loss: g_loss, params: ["gen.*"]}]')
        return
    freeze = _as_list(train.get("freeze"))
    trainable = [f"{node}.{p}" for node in graph.order for p, d in graph.params.get(node, {}).items()
                 if d.trainable]
    free = [n for n in trainable if not any(fnmatchcase(n, f) for f in freeze if isinstance(f, str))]
    prefixes = ", ".join(sorted({n.split(".")[0] + ".*" for n in free}))
    covered: set[str] = set()
    for i, phase in enumerate(phases):
        at = _at(tdoc, "phases", i) or where
        if not isinstance(phase, dict):
            diags.error("GC401", f"train.phases[{i}] must be a mapping {{loss: ..., params: [...]}}", at)
            continue
        for key in phase:
            if key not in PHASE_KEYS:
                diags.error("GC401", f"unknown key `{key}` in train.phases[{i}]",
                            _at(tdoc, "phases", i, key) or at,
                            hint=did_you_mean(str(key), PHASE_KEYS) or f"allowed: {', '.join(PHASE_KEYS)}")
        for key in ("loss", "params"):
            if key not in phase:
                diags.error("GC401", f"train.phases[{i}] has no `{key}`", at,
                            hint="a phase names the loss(es) it minimizes and the parameter patterns "
                                 "(globs such as `disc.*`) it updates")
        losses = phase.get("loss")
        for j, loss in enumerate(_as_list(losses)):
            if loss not in graph.losses:
                span = _at(tdoc, "phases", i, "loss", j) if isinstance(losses, list) else None
                diags.error("GC401", f"train.phases[{i}]: the spec has no loss `{loss}`",
                            span or _at(tdoc, "phases", i, "loss") or at,
                            hint=did_you_mean(str(loss), graph.losses)
                            or f"its losses: {', '.join(graph.losses) or 'none'}")
        patterns = phase.get("params")
        for j, pattern in enumerate(_as_list(patterns)):
            if not isinstance(pattern, str):
                continue
            hit = {n for n in free if fnmatchcase(n, pattern)}
            covered |= hit
            if hit:
                continue
            span = _at(tdoc, "phases", i, "params", j) if isinstance(patterns, list) else None
            fixed = [n for n in trainable if fnmatchcase(n, pattern)]
            diags.error("GC401", f"train.phases[{i}]: pattern `{pattern}` matches no trainable parameter"
                        + (" (only frozen ones, see train.freeze)" if fixed else ""),
                        span or _at(tdoc, "phases", i, "params") or at,
                        hint=f"parameter names are <node>.<param>; this spec's are under {prefixes}"
                        if prefixes else None)
    if not diags.items:
        left = [n for n in free if n not in covered]
        if left:
            shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
            diags.warning("GC401", f"train.phases: no phase updates {shown}; they keep their "
                          "initial values", where,
                          hint="add their pattern to a phase, or list them in train.freeze to say so")


def _check_generate(graph: Graph, train: dict, tdoc, diags: Diagnostics) -> None:
    data = train.get("data")
    generate = data.get("generate") if isinstance(data, dict) else None
    if generate is None:
        return
    where = _at(tdoc, "data", "generate")
    if not isinstance(generate, dict):
        diags.error("GC401", "train.data.generate must be a mapping of input: kind", where,
                    hint=f"kinds: {', '.join(GENERATE_KINDS)}, e.g. {{z: normal}}")
        return
    inputs = {n.name: n for n in graph.inputs}
    for name, kind in generate.items():
        at = _at(tdoc, "data", "generate", name) or where
        if name not in inputs:
            key_at = tdoc["data"]["generate"].key_where(name) if hasattr(
                _get(tdoc, "data", "generate"), "key_where") else None
            diags.error("GC401", f"train.data.generate: the spec has no input `{name}`", key_at or at,
                        hint=did_you_mean(str(name), inputs) or f"its inputs: {', '.join(inputs)}")
        elif kind not in GENERATE_KINDS:
            diags.error("GC401", f"train.data.generate.{name}: unknown kind {kind!r}", at,
                        hint=did_you_mean(str(kind), GENERATE_KINDS)
                        or f"kinds: {', '.join(GENERATE_KINDS)}")
        elif inputs[name].dtype == "int64" and kind in ("normal", "uniform"):
            diags.error("GC401", f"train.data.generate.{name}: `{kind}` draws real numbers, but input "
                        f"`{name}` is int64", at, hint="use zeros or ones, or make the input float32")


def _get(node, *path):
    for key in path:
        if not hasattr(node, "get"):
            return None
        node = node.get(key)
    return node
