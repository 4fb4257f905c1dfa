"""A seeded mutator over spec files: every malformed spec or `--set` value must get a diagnostic.

Mutations are made on the YAML *text*, at the source spans the loader records for every key and
value, so the rest of a file keeps its layout (flow mappings stay flow mappings) and the
mutant looks like a typo or a wrong edit a person could make: a value replaced by another
type (list, mapping, huge or non-finite number, boolean, null, an expression), a key renamed or
turned into a list or mapping, an entry deleted, duplicated, wrapped or swapped, a line
deleted, duplicated or re-indented, and `--set` values for constants, dims and train settings.

`check_mutant` runs the front end (`analyze`), then lint's engine, and reports what would be a
graphc bug: a GC900 internal error, an exception escaping, an internal error in a lint rule, or
an error diagnostic about the file with no file:line span. `run_cli` does the same through the
`check`/`summary`/`lint` commands. A mutant that takes more than `SLOW` seconds is a problem
too (a time or memory bomb: the check must stay bounded). Each mutant is derived from `(seed, index)` alone, so a
failure found by a long run (`benchmarks/fuzz_specs.py`) replays on its own.
"""

from __future__ import annotations

import random
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from graphc.spec.loader import MDict, MList, load_text

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples").rglob("*.yaml"))

# Values a mistaken edit may put anywhere (flow YAML fragments, one line each).
VALUES = [
    "[]", "{}", "[1, 2]", "{a: 1}", "[[1]]", "{op: relu}", "[x, {a: 1}]", "0", "-1", "1", "2", "3",
    "1.5", "0.0", "-0", "0x10", "1_000", "99999999999999999999999999999", "-99999999999999999999",
    "1e309", "-1e309", "1e20", "1e-320", ".nan", ".inf", "-.inf", "true", "false", "null", "~", '""',
    '"a, b"', "x.y.z", ".", "x.", ".x", "0.x", "2001-12-14", "!!binary aGVsbG8=", "!!set {a, b}",
    "!!str 12", "!!int 7", "!!float 1", "!!omap [a: 1]", "!!python/name:os.system", "&a 3", "*nope",
    "'((9**64)**64)**64'", "'9**9**9'", "'2**64'", "'10**400'", "'2**64**2'", "'(2**62)*(2**62)*(2**62)'",
    "'1/0'", "'1 // 0'", "'B*T'", "'-B'", "'B/2'", "'B - B'", "'B ** B'", "'2 ** B'", "'max(B)'", "'min()'",
    "'sqrt(-1)'", "'int(1e309)'", "'float(\"nan\")'", "'1e308 * 10'", "'round(1e308 * 10)'",
    "'ceil(1e309)'", "'floor(-1e400)'", "'int(1e300)'", "'abs'", "'x[0]'", "'lambda: 1'", "'a if b else c'",
    "'1 +'", "'(((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))'", "'-' * 3", "'2 ** -2'",
    "'2 ** 0.5'", "'1 % 0.0'", "'True + 1'", "'d_model ** 64'", "'d_model ** d_model'",
    "'max(1, B)'", "'min(B, T)'", "'T // 2'", "'B % 2'", "'round(B)'", "'float(B)'", "'int(T)'",
]
# Text for keys: typos are made from the key itself; these are the other shapes a key can take.
KEYS = ["[a, b]", "{a: 1}", "{op: relu, in: x}", "1", "-1", "1.5", "true", "null", "~", '""',
        '"a.b"', '"a b"', "in", "op", "block", "repeat", "doc", "lint", "args", "inputs", "outputs",
        "nodes", "shape", "dtype", "? [x]", "<<", "1e309"]
# Values for `--set KEY=VALUE` (parsed like the command line does).
SET_VALUES = ["0", "-1", "1", "3", "2.5", "1e309", "-1e309", "nan", ".nan", ".inf", "1e20", "-0.0",
              "99999999999999999999999999", "[1, 2]", "{a: 1}", "true", "null", "", "abc", "a b",
              "((9**64)**64)**64", "2**64", "B*2", "d_model", "x.y", "[adam]", "{name: [adam]}",
              "'1'", "[]", "{}", "2001-12-14", "0x10", "1_0"]
SET_KEYS = ["B", "T", "H", "W", "S", "N", "d", "a.b", "nodes", "x.y.z", "batch", "steps", "seed",
            "lr", "optimizer.lr", "optimizer.name", "optimizer.betas", "optimizer", "data.task",
            "data.train_size", "data", "schedule.name", "schedule", "accumulate", "clip_grad_norm",
            "eval_every", "metrics", "freeze", "phases", "train", "optimizer.weight_decay", "epochs",
            "data.length", "early_stopping.patience", "batch.x", "name", "constants"]

# Odd attribute values by attribute type, for the shape rules.
ATTR_VALUES = {
    "int": ["0", "-1", "-3", "1", "2", "7", "1000", "65536", "2**40", "B", "1.5", "[2, 2]", "true"],
    "axis": ["0", "-1", "-5", "5", "9", "100", "-100", "1.0", "B", "[0]"],
    "axes": ["0", "-1", "[0, 0]", "[5]", "[]", "[-1, 1]", "[0, 1, 2, 3, 4]", "[-9]", "null", "B", "[B]"],
    "float": ["0", "-1", "2", "1e300", "-0.0", "1e-300", "100", "B", "1"],
    "bool": ["true", "false", "1", "0", "yes", "B"],
    "str": ["''", "nope", "exact", "floor", "nearest", "learned", "sequence", "last", "zeros", "1"],
    "int2": ["0", "[0, 0]", "[-1, 2]", "[1, 2, 3]", "[]", "[2, 0]", "-2", "[B, 1]", "100", "[1, 100]"],
    "ints": ["[]", "[0]", "[0, 0]", "[5, 4, 3, 2, 1, 0]", "[-1]", "[1, 0]", "[0, 1, 2, 3, 4, 5, 6, 7]", "[-9, 9]",
             "[0, 2, 1]", "[B]", "[2, 2]", "[1, 1, 1]", "[100]"],
    "shape": ["[]", "[-1]", "[-1, -1]", "[0]", "[B, -1]", "[-2, 4]", "[B, T]", "[1, 2, 3, 4, 5, 6]", "[B, 0]",
              "[B, 7]", "[7, -1]", "[B, 1.5]", "[B/2, -1]", "[B, 8, 8]", "[0, -1]", "[-B, -1]", "[B - B, 4]"],
}
# `lint:`, `repeat:` and `doc:` values any node may be given.
NODE_EXTRAS = [("lint", v) for v in ("3", "{ignore: 3}", "{ignore: [[GL1]]}", "{ignore: [GL999, null, 3]}",
                                     "{ignore: {a: 1}}", "{ignore: [GL306], reason: [x]}", "[GL1]",
                                     "{ignre: [GL1]}", "{ignore: ''}", "{ignore: [ALL]}", "{ignore: [GC3]}")]
NODE_EXTRAS += [("repeat", v) for v in ("0", "2", "-1", "1000", "1001", "2.0", "B", "'2 * 2'", "[2]", "true")]
NODE_EXTRAS += [("doc", v) for v in ("[a]", "{a: 1}", "3", "null", "'a, b: c'")]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Site:
    kind: str  # "key" | "value" | "item"
    path: str
    span: object
    value: object
    parent: object
    key: object = None


@dataclass
class Mutant:
    source: Path
    seed: int
    index: int
    text: str
    steps: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)  # `--set` arguments

    def describe(self) -> str:
        sets = "".join(f" --set {s}" for s in self.sets)
        return f"{self.source.name} #{self.seed}:{self.index}: {'; '.join(self.steps)}{sets}"


def _sites(value, path="", out=None) -> list[Site]:
    out = [] if out is None else out
    if isinstance(value, MDict):
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            ks = value.key_spans.get(k)
            vs = value.value_spans.get(k)
            if ks:
                out.append(Site("key", p, ks, k, value, k))
            if vs:
                out.append(Site("value", p, vs, v, value, k))
            _sites(v, p, out)
    elif isinstance(value, MList):
        for i, v in enumerate(value):
            sp = value.where(i)
            if sp:
                out.append(Site("item", f"{path}[{i}]", sp, v, value, i))
            _sites(v, f"{path}[{i}]", out)
    return out


def _offsets(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _range(text: str, span) -> tuple[int, int]:
    starts = _offsets(text)
    a = starts[span.line - 1] + span.col - 1
    b = starts[min(span.end_line, len(starts)) - 1] + span.end_col - 1 if span.end_line else a
    return a, max(a, min(b, len(text)))


def _op_nodes(doc) -> list[MDict]:
    """The node declarations of the top level and of every block."""
    bodies = [doc.get("nodes")]
    blocks = doc.get("blocks")
    if isinstance(blocks, MDict):
        bodies += [b.get("nodes") for b in blocks.values() if isinstance(b, MDict)]
    return [d for body in bodies if isinstance(body, MDict) for d in body.values() if isinstance(d, MDict)]


def _add_key(text: str, mapping: MDict, key: str, value: str) -> str:
    """`text` with `key: value` added to `mapping` (a flow `{…}` or a block mapping)."""
    a, b = _range(text, mapping.span)
    body = text[a:b].rstrip()
    if body.startswith("{") and body.endswith("}"):
        end = a + len(body) - 1
        return text[:end] + f", {key}: {value}" + text[end:]
    first = next(iter(mapping.key_spans.values()), None)
    if first is None:
        return text
    starts = _offsets(text)
    at = starts[first.line - 1]
    return text[:at] + " " * (first.col - 1) + f"{key}: {value}\n" + text[at:]


def _typo(rng: random.Random, word: str) -> str:
    if not word:
        return "x"
    i = rng.randrange(len(word))
    match rng.randrange(4):
        case 0:
            return word[:i] + word[i + 1:] or "x"
        case 1:
            return word[:i] + rng.choice("abcdehilnorstxz_0") + word[i:]
        case 2:
            return word[:i] + word[i + 1:i + 2] + word[i:i + 1] + word[i + 2:]
        case _:
            return word[:i] + rng.choice("abcdehilnorstxz") + word[i + 1:]


class Mutator:
    """Mutants of one source text; `mutant(seed, index)` is deterministic."""

    def __init__(self, source: Path):
        self.source = source
        self.text = source.read_text(encoding="utf-8")
        self.doc = load_text(self.text, str(source))
        self.names = sorted({m for m in _IDENT.findall(self.text) if len(m) > 1})
        self.set_keys = SET_KEYS + sorted(self._set_names())

    def _set_names(self) -> set[str]:
        names = set()
        for sec in ("constants", "inputs"):
            s = self.doc.get(sec)
            if isinstance(s, dict):
                names |= {str(k) for k in s}
        train = self.doc.get("train")
        if isinstance(train, dict):
            for k, v in train.items():
                names.add(str(k))
                if isinstance(v, dict):
                    names |= {f"{k}.{kk}" for kk in v}
        return names

    def mutant(self, seed: int, index: int, *, sets: bool = True) -> Mutant:
        rng = random.Random(f"{seed}:{index}:{self.source.name}")
        m = Mutant(self.source, seed, index, self.text)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            self._step(rng, m)
        if sets and rng.random() < 0.15:
            for _ in range(rng.choice((1, 1, 2))):
                m.sets.append(f"{rng.choice(self.set_keys)}={rng.choice(SET_VALUES)}")
        return m

    # -- one mutation
    def _step(self, rng: random.Random, m: Mutant) -> None:
        try:
            doc = load_text(m.text, str(self.source))
        except Exception:  # an earlier step broke the YAML: only line edits make sense now
            doc = None
        sites = _sites(doc) if doc is not None else []
        op = rng.random()
        if not sites or op < 0.12:
            m.text, what = self._line_edit(rng, m.text)
        elif op < 0.35:
            m.text, what = self._op_edit(rng, m.text, doc)
        else:
            site = rng.choice(sites)
            m.text, what = self._site_edit(rng, m.text, site)
        m.steps.append(what)

    def _op_edit(self, rng, text, doc):
        """Give an op node an odd value of one of its attributes, or another op."""
        from graphc.ops import OPS

        decls = [d for d in _op_nodes(doc) if isinstance(d.get("op"), str)]
        if not decls:
            return text, "nothing"
        decl = rng.choice(decls)
        op = OPS.get(decl["op"])
        if rng.random() < 0.15:  # the keys every node takes
            key, value = rng.choice(NODE_EXTRAS)
            if key in decl:
                a, b = _range(text, decl.where(key))
                return text[:a] + value + text[b:], f"{key} → `{value}`"
            return _add_key(text, decl, key, value), f"{key} = `{value}`"
        if op is None or rng.random() < 0.2:
            new = rng.choice(sorted(OPS))
            a, b = _range(text, decl.where("op"))
            return text[:a] + new + text[b:], f"op `{decl['op']}` → `{new}`"
        if not op.attrs:
            return text, "nothing"
        key = rng.choice(sorted(op.attrs))
        value = rng.choice(ATTR_VALUES.get(op.attrs[key].type, ["1"]))
        if key in decl:
            a, b = _range(text, decl.where(key))
            old = text[a:b]
            return text[:a] + value + old[len(old.rstrip()):] + text[b:], f"{decl['op']}.{key} → `{value}`"
        return _add_key(text, decl, key, value), f"{decl['op']}.{key} = `{value}`"

    def _line_edit(self, rng, text):
        lines = text.splitlines(keepends=True)
        if not lines:
            return "x: 1\n", "replace the file"
        i = rng.randrange(len(lines))
        line = lines[i]
        match rng.randrange(7):
            case 0:
                del lines[i]
                what = f"delete line {i + 1}"
            case 1:
                lines.insert(i, line)
                what = f"duplicate line {i + 1}"
            case 2:
                lines[i] = "  " + line
                what = f"indent line {i + 1}"
            case 3:
                lines[i] = line[2:] if line.startswith("  ") else line
                what = f"dedent line {i + 1}"
            case 4:
                cut = rng.randrange(len(line) + 1)
                lines[i] = line[:cut] + rng.choice(["\t", ":", ",", "{", "}", "[", "]", "#", "&", "*",
                                                    "!", "|", ">", "'", '"', " - ", "? "]) + line[cut:]
                what = f"insert a character in line {i + 1}"
            case 5:
                words = list(_IDENT.finditer(line))
                if not words:
                    return "".join(lines), "nothing"
                w = rng.choice(words)
                new = rng.choice([_typo(rng, w.group()), rng.choice(self.names)])
                lines[i] = line[:w.start()] + new + line[w.end():]
                what = f"line {i + 1}: `{w.group()}` → `{new}`"
            case _:
                cut = rng.randrange(len(text) + 1)
                return text[:cut], f"truncate at {cut}"
        return "".join(lines), what

    def _site_edit(self, rng, text, site: Site):
        a, b = _range(text, site.span)
        old = text[a:b]
        trailing = old[len(old.rstrip()):]
        flow = self._in_flow(text, a)
        r = rng.random()
        if site.kind == "key":
            if r < 0.25:
                return self._delete(text, site, flow), f"delete `{site.path}`"
            if r < 0.6 and isinstance(site.value, str):
                new = _typo(rng, site.value)
            elif r < 0.75:
                new = rng.choice(self.names)
            else:
                new = rng.choice(KEYS)
            return text[:a] + new + trailing + text[b:], f"key `{site.path}` → `{new}`"
        # a value or list item
        if r < 0.12 and site.kind == "item":
            return self._delete(text, site, flow), f"delete `{site.path}`"
        if r < 0.2:
            new = "[" + old.strip() + "]" if "\n" not in old.strip() else "[1]"
            what = "wrap in a list"
        elif r < 0.25:
            new = "{a: " + old.strip() + "}" if "\n" not in old.strip() else "{a: 1}"
            what = "wrap in a mapping"
        elif r < 0.5 and isinstance(site.value, str):
            pool = [_typo(rng, site.value), rng.choice(self.names), site.value + "." + rng.choice(
                ["0", "1", "out", "x", "y", "h", "c", ""]), rng.choice(self.names) + "." +
                rng.choice(["0", "out", "x", "1", "h"])]
            new = rng.choice(pool)
        elif r < 0.6 and isinstance(site.value, int | float) and not isinstance(site.value, bool):
            v = site.value
            new = rng.choice([str(v * 1000), str(-v), "0", str(v + 1), str(v - 1), str(v / 3),
                              str(v * 10 ** 30), f"'{v} ** 64'", f"'{v} * B'"])
        elif r < 0.65 and isinstance(site.parent, MDict) and len(site.parent) > 1:
            other = rng.choice([k for k in site.parent if k != site.key])
            new = text[slice(*_range(text, site.parent.where(other)))].strip() or "1"
            if "\n" in new:
                new = "1"
            what = f"copy `{other}`'s value"
            return text[:a] + new + trailing + text[b:], f"`{site.path}` → {what}: `{new}`"
        else:
            new = rng.choice(VALUES)
        return text[:a] + new + trailing + text[b:], f"`{site.path}` → `{new}`"

    @staticmethod
    def _in_flow(text: str, pos: int) -> bool:
        """Is `pos` inside a flow collection (a `{…}` or `[…]` opened on its line)?"""
        start = text.rfind("\n", 0, pos) + 1
        depth = 0
        for ch in text[start:pos]:
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
        return depth > 0

    def _delete(self, text: str, site: Site, flow: bool) -> str:
        parent = site.parent
        if isinstance(parent, MDict):
            ks, vs = parent.key_spans.get(site.key), parent.value_spans.get(site.key)
            a = _range(text, ks)[0] if ks else _range(text, vs)[0]
            b = _range(text, vs)[1] if vs else _range(text, ks)[1]
        else:
            a, b = _range(text, site.span)
        if flow:
            rest = text[b:]
            m = re.match(r"\s*,\s*", rest)
            if m:
                return text[:a] + rest[m.end():]
            m = re.search(r",\s*$", text[:a])
            if m:
                return text[:m.start()] + rest
            return text[:a] + rest
        # block context: remove whole lines
        line_a = text.rfind("\n", 0, a) + 1
        line_b = text.find("\n", max(b - 1, a))
        line_b = len(text) if line_b < 0 else line_b + 1
        return text[:line_a] + text[line_b:]


# ---- running a mutant ----------------------------------------------------------------------
@dataclass
class Problem:
    mutant: str
    what: str  # "GC900" | "exception" | "lint" | "no span" | "cli"
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}\n    from {self.mutant}"


def parse_sets(sets: list[str]) -> dict:
    from graphc.cli import parse_overrides

    return parse_overrides(tuple(sets))


SLOW = 10.0  # seconds: a mutant takes ~10 ms; one that takes this long is a time (or memory) bomb


def check_mutant(m: Mutant, path: Path, *, lint: bool = True) -> list[Problem]:
    """Run the front end and lint's engine on a mutant written at `path`; what graphc got wrong."""
    from graphc.lint.engine import Config, lint_file
    from graphc.pipeline import analyze

    path.write_text(m.text, encoding="utf-8")
    problems: list[Problem] = []
    overrides = parse_sets(m.sets)
    nlines = m.text.count("\n") + 1
    start = time.perf_counter()
    try:
        a = analyze(path, dict(overrides))
    except Exception as exc:  # noqa: BLE001 - the point is to catch them all
        return [Problem(m.describe(), "exception", _trace(exc))]
    for d in a.diagnostics:
        if d.code == "GC900":
            problems.append(Problem(m.describe(), "GC900", d.message))
        elif d.is_error and d.span is None and not _not_from_file(d):
            problems.append(Problem(m.describe(), "no span", f"{d.code}: {d.message}"))
        elif d.span is not None and (d.span.file != str(path) or not 1 <= d.span.line <= nlines):
            problems.append(Problem(m.describe(), "bad span", f"{d.code} at {d.span}: {d.message}"))
    if lint and not problems:
        try:
            r = lint_file(str(path), overrides=dict(overrides), config=Config())
        except Exception as exc:  # noqa: BLE001
            return [Problem(m.describe(), "lint exception", _trace(exc))]
        for d in r.diagnostics:
            if "internal error" in d.message:
                problems.append(Problem(m.describe(), "lint", f"{d.code}: {d.message}"))
    if time.perf_counter() - start > SLOW:
        problems.append(Problem(m.describe(), "slow", f"check and lint took {time.perf_counter() - start:.0f} s"))
    return problems


def _not_from_file(d) -> bool:
    """Diagnostics that are about the command line or the file as a whole carry no span."""
    return "--set" in d.message or d.code in ("GC001",)


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-4:]).strip()


def run_cli(m: Mutant, path: Path, command: str) -> list[Problem]:
    """Run `graphc <command>` on a mutant through click; exit 0/1 and no traceback."""
    from click.testing import CliRunner

    from graphc.cli import main

    path.write_text(m.text, encoding="utf-8")
    args = [command, str(path)] + [x for s in m.sets for x in ("--set", s)]
    r = CliRunner().invoke(main, args)
    out = (r.stdout or "") + (r.stderr or "")
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return [Problem(m.describe(), f"cli {command}", _trace(r.exception))]
    if r.exit_code not in (0, 1) or "Traceback" in out or "GC900" in out or "internal error" in out:
        return [Problem(m.describe(), f"cli {command}", f"exit {r.exit_code}: {out[-600:]}")]
    return []


def mutants(seed: int, n: int, *, sources=None, sets: bool = True):
    """`n` mutants spread over the sources, round robin."""
    mutators = [Mutator(s) for s in (sources or SOURCES)]
    for i in range(n):
        yield mutators[i % len(mutators)].mutant(seed, i, sets=sets)


# ---- every op's shape rule with odd attribute values ----------------------------------------
_DEFAULTS = {"int": "4", "int2": "3", "axis": "1", "axes": "1", "float": "0.5", "bool": "false",
             "shape": "[B, -1]", "ints": "[0, 1]"}
_INPUTS = """inputs:
  x1: [B]
  x2: [B, 16]
  x3: [B, 8, 16]
  x4: [B, 4, 8, 8]
  i1: {shape: [B], dtype: int64}
  i2: {shape: [B, 8], dtype: int64}
  i3: {shape: [B, 8, 16], dtype: int64}
"""


def op_cases():
    """(name, spec text): a one-node spec per op × attribute × odd value × input rank."""
    from graphc.ops import OPS

    for op in OPS.values():
        required = {k: _DEFAULTS.get(a.type, "1") for k, a in op.attrs.items() if a.required}
        trials = [(k, v) for k, a in op.attrs.items() for v in ATTR_VALUES.get(a.type, ["1"])]
        for key, value in trials or [(None, None)]:
            for rank in (1, 2, 3, 4):
                ins = []
                for p in op.inputs:
                    name = f"i{min(rank, 3)}" if p.dtype == "int" else f"x{rank}"
                    ins.append(f"{p.name}: [{name}, {name}]" if p.variadic else f"{p.name}: {name}")
                attrs = {**required, **({key: value} if key else {})}
                body = ", ".join(f"{k}: {v}" for k, v in attrs.items())
                text = (_INPUTS + f"nodes:\n  n: {{op: {op.name}, in: {{{', '.join(ins)}}}"
                        + (f", {body}" if body else "") + "}\noutputs: [n]\n")
                yield f"{op.name} {key}={value} rank {rank}", text


def check_text(name: str, text: str, path: Path) -> list[Problem]:
    """`check_mutant` for a spec text that is not a mutant (e.g. from `op_cases`)."""
    m = Mutant(path, 0, 0, text, [name])
    return check_mutant(m, path, lint=False)
