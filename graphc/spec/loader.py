"""Safe YAML loading that keeps a source mark on every value.

The result is plain dicts and lists (`MDict`, `MList` subclasses) that remember where each key
and value came from, so every later pass can point at the exact line and column.

Loading is `safe_load`-strict: no Python tags. Before composing, one cheap pass over the event
stream rejects documents nested deeper than `MAX_DEPTH` and alias bombs that would expand past
`MAX_NODES` values, so a hostile file yields a diagnostic rather than a RecursionError or a
memory blow-up. Duplicate keys are errors that name both lines.
"""

from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from pathlib import Path

import yaml

from graphc.diagnostics import Diagnostic, DiagnosticError, Span
from graphc.spec.yaml_errors import explain

MAX_DEPTH = 48
MAX_NODES = 200_000
MAX_BYTES = 4 * 1024 * 1024


class MDict(dict):
    """A mapping that knows the span of itself, of each key and of each value."""

    span: Span | None = None

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.key_spans: dict = {}
        self.value_spans: dict = {}

    def where(self, key) -> Span | None:
        return self.value_spans.get(key) or self.key_spans.get(key) or self.span

    def key_where(self, key) -> Span | None:
        return self.key_spans.get(key) or self.span


class MList(list):
    span: Span | None = None

    def __init__(self, *a):
        super().__init__(*a)
        self.item_spans: list[Span | None] = []

    def where(self, i: int) -> Span | None:
        return self.item_spans[i] if i < len(self.item_spans) else self.span


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1's implicit types, plus YAML 1.2 floats such as `3e-4` (YAML 1.1 wants `3.0e-4`).

    Like YAML 1.2's core schema it has no implicit timestamps (`2001-12-14` is text) and no
    `=` value key: a spec holds only text, numbers, booleans, null, lists and mappings."""


_Resolver.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")]
    for k, v in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
              yaml.constructor.SafeConstructor, _Resolver):
    """SafeLoader with graphc's resolver (pure Python; `--set` values are read with it)."""

    def __init__(self, stream):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)


if yaml.__with_libyaml__:
    class _FastLoader(yaml.cyaml.CParser, yaml.constructor.SafeConstructor, _Resolver):
        """The same loader over libyaml's parser: specs of 20,000 nodes parse in a second, not
        ten (the pure-Python scanner costs ~0.3 ms per node)."""

        def __init__(self, stream):
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            _Resolver.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    _FastLoader = _Loader


def _span(file: str, node) -> Span:
    s, e = node.start_mark, node.end_mark
    return Span(file, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


def _limit_check(text: str, file: str) -> None:
    """Reject deep nesting and alias bombs using the (iterative) event stream."""
    depth = 0
    anchor_size: dict[str, int] = {}
    stack: list[list] = [[None, 0]]  # frames of [anchor, expanded size]
    try:
        for ev in yaml.parse(text, Loader=_FastLoader):
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _limit(file, ev, f"the document nests deeper than {MAX_DEPTH} levels")
                stack.append([ev.anchor, 1])
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
                anchor, size = stack.pop()
                if anchor:
                    anchor_size[anchor] = size
                stack[-1][1] += size
            elif isinstance(ev, yaml.ScalarEvent):
                stack[-1][1] += 1
                if ev.anchor:
                    anchor_size[ev.anchor] = 1
            elif isinstance(ev, yaml.AliasEvent):
                stack[-1][1] += anchor_size.get(ev.anchor, 1)
            if stack[-1][1] > MAX_NODES or stack[0][1] > MAX_NODES:
                raise _limit(file, ev, f"the document expands to more than {MAX_NODES} values")
    except yaml.YAMLError as exc:
        raise DiagnosticError([_yaml_error(_pure_error(text, exc), file)]) from None


def _pure_error(text: str, exc: yaml.YAMLError, compose: bool = False) -> yaml.YAMLError:
    """The pure-Python parser's account of an error libyaml found: its wording and its marks
    (which carry the source) are what the plain-words explanations of `yaml_errors` read. Only
    the event stream is re-read (iteratively) unless the document already passed the limits."""
    if _FastLoader is _Loader:
        return exc
    loader = None
    try:
        loader = _Loader(text)
        if compose:
            loader.get_single_node()
        else:
            while loader.check_event():
                loader.get_event()
    except yaml.YAMLError as pure:
        return pure
    except RecursionError:
        return exc
    finally:
        if loader is not None:
            loader.dispose()
    return exc


def _limit(file: str, ev, what: str) -> DiagnosticError:
    m = ev.start_mark
    return DiagnosticError(
        [
            Diagnostic(
                "error",
                "GC004",
                f"refusing to load: {what}",
                Span(file, m.line + 1, m.column + 1),
                hint="a network spec never needs this; check for runaway anchors/aliases (&x, *x)",
            )
        ]
    )


def _yaml_error(exc: yaml.YAMLError, file: str) -> Diagnostic:
    """A YAML syntax error as a diagnostic. The common ones (tabs, indentation that does not
    line up, a `: ` inside a value, a `{`/`[` never closed, a key without its colon) are
    explained in plain words about the line; PyYAML's own wording stays as a note."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    span = Span(file, mark.line + 1, mark.column + 1) if mark else None
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    msg = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    ctx_mark = getattr(exc, "context_mark", None)
    related = ()
    if ctx_mark is not None and mark is not None and ctx_mark.line != mark.line:
        related = ((f"{context or 'the construct'} started", Span(file, ctx_mark.line + 1, ctx_mark.column + 1)),)
    hint = None
    try:
        plain = explain(problem, context, mark, ctx_mark) if mark is not None else None
    except Exception:  # an explanation is a nicety: never let it hide the YAML error itself
        plain = None
    if plain is not None:
        text, hint, where = plain
        if where is not None:
            span = Span(file, where[0] + 1, where[1] + 1)
        at = Span(file, mark.line + 1, mark.column + 1)
        # PyYAML's wording as a note where it points elsewhere (where it points here, it adds nothing)
        related = ((f"the YAML parser stopped here: {msg.removeprefix('invalid YAML: ')}", at),) \
            if at != span else ()
        msg = f"invalid YAML: {text}"
    elif "tab" in problem.lower():
        hint = "YAML indentation must use spaces, not tabs"
    elif "could not determine a constructor" in str(exc):
        hint = "graphc loads YAML safely: Python-specific tags (!!python/...) are not allowed"
    return Diagnostic("error", "GC002", msg, span, hint=hint, related=related)


_BAD = object()  # a mapping key that is not a plain scalar
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_SCALAR_TAGS = tuple(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_NO_TAGS_HINT = "graphc loads YAML safely: Python-specific and custom tags are not allowed"


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _describe_node(node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"`{node.value}`"


class _Builder:
    """Turns a composed YAML node tree into MDict/MList values, collecting duplicate keys."""

    def __init__(self, loader, file: str):
        self.loader, self.file = loader, file
        self.diagnostics: list[Diagnostic] = []

    def build(self, node):
        plain = _PLAIN_TAGS if isinstance(node, yaml.MappingNode | yaml.SequenceNode) else _SCALAR_TAGS
        if node.tag not in plain:
            self.diagnostics.append(
                Diagnostic("error", "GC002", f"invalid YAML: unsupported tag `{_short_tag(node.tag)}`",
                           _span(self.file, node), hint=_NO_TAGS_HINT)
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            out = MList(self.build(child) for child in node.value)
            out.item_spans = [_span(self.file, c) for c in node.value]
            out.span = _span(self.file, node)
            return out
        return self.loader.construct_object(node, deep=True)

    def _key(self, key_node):
        """A key's value, or `_BAD` when it is not a plain scalar (a list, a mapping, a tag)."""
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
            return _BAD
        return self.loader.construct_object(key_node, deep=True)

    def _mapping(self, node):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node)
            if key is _BAD:
                self.diagnostics.append(
                    Diagnostic("error", "GC002", f"a mapping key must be a name or a number, found "
                               f"{_describe_node(key_node)}", _span(self.file, key_node),
                               hint="`[a, b]: …` and `{a: 1}: …` make a list or a mapping the key; "
                                    "if that text is a value, put it after a key (`key: [a, b]`)"
                               if not isinstance(key_node, yaml.ScalarNode) else _NO_TAGS_HINT)
                )
                continue
            if key in seen:
                self.diagnostics.append(
                    Diagnostic(
                        "error",
                        "GC003",
                        f"duplicate key `{key}`: the second value would silently replace the first",
                        _span(self.file, key_node),
                        related=(("first defined", seen[key]),),
                        hint="rename one of them, or delete the one you do not mean",
                    )
                )
            else:
                seen[key] = _span(self.file, key_node)
        self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
        out = MDict()
        out.span = _span(self.file, node)
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key is _BAD:
                continue  # reported above (or in the mapping a `<<` merge copied it from)
            if key in out and key in seen and out.key_spans.get(key) == seen[key]:
                continue  # keep the first of a duplicated key; the error is already reported
            out[key] = self.build(value_node)
            out.key_spans[key] = _span(self.file, key_node)
            out.value_spans[key] = _span(self.file, value_node)
        return out


@contextmanager
def paused_gc():
    """Python's cyclic garbage collector off while a pass builds many long-lived objects.

    Loading makes ~10 objects per spec node (values, spans, nodes) that all survive; each
    young-generation collection re-scans them, which made loading a 20,000-node spec take
    three times as long. Nothing built here needs the collector (no reference cycles)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_text(text: str, file: str = "<string>") -> MDict:
    """Parse spec text into marked values, or raise DiagnosticError."""
    with paused_gc():
        return _load_text(text, file)


def _load_text(text: str, file: str) -> MDict:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: only possible in text not read from a file
        line = text.count("\n", 0, exc.start) + 1
        raise DiagnosticError([Diagnostic("error", "GC001", f"the text holds a character that is not "
                                          f"valid Unicode (U+{ord(text[exc.start]):04X})",
                                          Span(file, line, exc.start - text.rfind("\n", 0, exc.start)))]) from None
    _limit_check(text, file)
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise DiagnosticError(
                [Diagnostic("error", "GC005", "the spec is empty", Span(file, 1, 1),
                            hint="a spec is a YAML mapping with at least `inputs:` and `nodes:`")]
            )
        builder = _Builder(loader, file)
        value = builder.build(node)
    except yaml.YAMLError as exc:
        raise DiagnosticError([_yaml_error(_pure_error(text, exc, compose=True), file)]) from None
    finally:
        loader.dispose()
    if builder.diagnostics:  # an aliased node is built once per alias: report each problem once
        raise DiagnosticError(list({(d.code, d.span, d.message): d for d in builder.diagnostics}.values()))
    if not isinstance(value, MDict):
        raise DiagnosticError(
            [Diagnostic("error", "GC005", f"a spec must be a YAML mapping, found {type(value).__name__}",
                        _span(file, node))]
        )
    return value


def load_file(path: str | Path) -> MDict:
    """Read and parse a spec file; file-system problems become diagnostics too."""
    p = Path(path)
    file = str(path)
    try:
        if p.is_dir():
            raise DiagnosticError([Diagnostic("error", "GC001", f"`{file}` is a directory, not a spec file")])
        with p.open(encoding="utf-8") as fh:  # at most MAX_BYTES + 1: /dev/zero or a pipe has no size
            text = fh.read(MAX_BYTES + 1)
        if len(text) > MAX_BYTES:
            raise DiagnosticError(
                [Diagnostic("error", "GC004", f"`{file}` is larger than {MAX_BYTES // 2**20} MiB")]
            )
    except FileNotFoundError:
        raise DiagnosticError(
            [Diagnostic("error", "GC001", f"no such spec file: `{file}`",
                        hint="check the path; specs that ship with graphc are in specs/")]
        ) from None
    except UnicodeDecodeError as exc:
        raise DiagnosticError(
            [Diagnostic("error", "GC001", f"`{file}` is not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise DiagnosticError([Diagnostic("error", "GC001", f"cannot read `{file}`: {exc.strerror}")]) from None
    return load_text(text, file)

