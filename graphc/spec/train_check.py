"""GC401: the `train:` section, checked like the rest of the spec, at the offending entry.

Two halves. :func:`check_settings` judges every value against the schema
(graphc.spec.train_schema: keys, types, bounds, choices; the same table the runtime's
TrainConfig checks), during expansion, where it knows which values came from `--set` (those
name the `--set` instead of a line). :func:`check_train` runs after shape inference, when the
graph is known, and checks the keys that name parts of it: `phases` (losses and parameter
patterns) and `data.generate` (model inputs). The runtime checks the same again (it never
reads YAML) and raises ConfigError, so a value `graphc check` accepts does not fail later.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from graphc.diagnostics import Diagnostic, Diagnostics, Span, did_you_mean
from graphc.ir import Graph
from graphc.spec.train_schema import GENERATE_KINDS, Problem, validate, where


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


def check_settings(train: dict, tdoc, sets: dict[str, Any] | None = None) -> list[Diagnostic]:
    """GC401 for every value of `train` (the spec's section with `--set` values merged in)
    that does not fit the schema. ``tdoc`` is the section as loaded (for spans); ``sets`` the
    `--set` overrides applied (dotted key: value), whose problems name them."""
    diags = Diagnostics()
    given = [tuple(k.split(".")) for k in (sets or {})]
    for p in validate(train):
        dotted = next((".".join(g) for g in given if _overlaps(g, p.path)), None)
        hint = f"did you mean `{p.suggestion}`?" if p.suggestion else p.hint or p.doc
        if dotted is not None:
            diags.error("GC401", f"--set {dotted}={_shown(sets[dotted])}: {p.message}",
                        path=where(p.path), hint=hint)
        else:
            diags.error("GC401", p.message, _span(tdoc, p), path=where(p.path), hint=hint)
    return diags.items


def _overlaps(given: tuple, path: tuple) -> bool:
    """Does a `--set` of ``given`` decide the value at ``path`` (one is a prefix of the other)?"""
    n = min(len(given), len(path))
    return n > 0 and tuple(str(x) for x in given[:n]) == tuple(str(x) for x in path[:n])


def _shown(value) -> str:
    """A `--set` value as it would be written (flow YAML), shortened."""
    text = _flow(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _flow(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _span(tdoc, p: Problem) -> Span | None:
    """Where a problem is: the unknown key itself, else the deepest value on its path."""
    node, span = tdoc, getattr(tdoc, "span", None)
    for i, key in enumerate(p.path):
        if not hasattr(node, "where"):
            break
        try:
            child = node[key]
        except (KeyError, IndexError, TypeError):
            break
        last = i == len(p.path) - 1
        if last and p.message.startswith("unknown key") and hasattr(node, "key_where"):
            span = node.key_where(key) or span
        else:
            span = node.where(key) or span
        node = child
    return span


def check_train(graph: Graph, doc) -> list:
    """GC401 for the `train:` keys that name parts of the graph (losses, parameters, inputs)."""
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
    """Each phase's losses exist and its patterns match trainable parameters; a warning for
    parameters no phase updates. (Its shape, keys and numbers are check_settings' part.)"""
    phases = train.get("phases")
    if not isinstance(phases, list) or not phases:
        return
    where_ = _at(tdoc, "phases")
    freeze = _as_list(train.get("freeze"))
    trainable = [f"{node}.{p}" for node in graph.order for p, d in graph.params.get(node, {}).items()
                 if d.trainable]
    free = [n for n in trainable if not any(fnmatchcase(n, f) for f in freeze if isinstance(f, str))]
    prefixes = ", ".join(sorted({n.split(".")[0] + ".*" for n in free}))
    covered: set[str] = set()
    errors = len(diags.items)
    for i, phase in enumerate(phases):
        if not isinstance(phase, dict):
            continue
        at = _at(tdoc, "phases", i) or where_
        losses = phase.get("loss")
        for j, loss in enumerate(_as_list(losses)):
            if isinstance(loss, str) and loss not in graph.losses:
                span = _at(tdoc, "phases", i, "loss", j) if isinstance(losses, list) else None
                diags.error("GC401", f"train.phases[{i}]: the spec has no loss `{loss}`",
                            span or _at(tdoc, "phases", i, "loss") or at, path=f"train.phases[{i}].loss",
                            hint=did_you_mean(loss, graph.losses)
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
                        span or _at(tdoc, "phases", i, "params") or at, path=f"train.phases[{i}].params",
                        hint=f"parameter names are <node>.<param>; this spec's are under {prefixes}"
                        if prefixes else None)
    if len(diags.items) == errors and all(isinstance(p, dict) and "params" in p for p in phases):
        left = [n for n in free if n not in covered]
        if left:
            shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
            diags.warning("GC401", f"train.phases: no phase updates {shown}; they keep their "
                          "initial values", where_, path="train.phases",
                          hint="add their pattern to a phase, or list them in train.freeze to say so")


def _check_generate(graph: Graph, train: dict, tdoc, diags: Diagnostics) -> None:
    """Generated inputs exist, and real-valued draws go to float inputs. (Kinds: check_settings.)"""
    data = train.get("data")
    generate = data.get("generate") if isinstance(data, dict) else None
    if not isinstance(generate, dict):
        return
    where_ = _at(tdoc, "data", "generate")
    gdoc = _get(tdoc, "data", "generate")
    inputs = {n.name: n for n in graph.inputs}
    for name, kind in generate.items():
        at = _at(tdoc, "data", "generate", name) or where_
        if name not in inputs:
            key_at = gdoc.key_where(name) if hasattr(gdoc, "key_where") else None
            diags.error("GC401", f"train.data.generate: the spec has no input `{name}`", key_at or at,
                        path=f"train.data.generate.{name}",
                        hint=did_you_mean(str(name), inputs) or f"its inputs: {', '.join(inputs)}")
        elif kind in GENERATE_KINDS and inputs[name].dtype == "int64" and kind in ("normal", "uniform"):
            diags.error("GC401", f"train.data.generate.{name}: `{kind}` draws real numbers, but input "
                        f"`{name}` is int64", at, path=f"train.data.generate.{name}",
                        hint="use zeros or ones, or make the input float32")


def _get(node, *path):
    for key in path:
        if not hasattr(node, "get"):
            return None
        node = node.get(key)
    return node
