"""Start a run from saved weights: ``train: {init_from: {file, map, strict}}``.

    init_from:
      file: weights.safetensors     # a safetensors file, or a run/checkpoint directory of graphc
      map: {decoder.*.attn: layers.*.self_attn, logits: head}   # optional renames
      strict: true                  # default: every parameter found, every tensor used

graphc's parameters are ``<node>.<param>`` in PyTorch's layouts, so a PyTorch ``state_dict``
saved with ``safetensors.torch.save_file(model.state_dict(), path)`` loads when its module
names are the spec's node names, and ``map`` renames the ones that differ:

* ``graphc.name: file.name`` — one parameter, or one node (all of its parameters), or a
  prefix of nodes (``decoder.0: layers.0`` maps ``decoder.0.ff1.weight`` to
  ``layers.0.ff1.weight``); the longest matching key wins.
* ``*`` matches one name part, and the value's ``*`` receive what they matched in order
  (``decoder.*.attn: layers.*.self_attn``).

Where graphc's parameter names differ from PyTorch's, the PyTorch name is tried too:
attention's ``wq/wk/wv`` are the three row blocks of ``in_proj_weight`` (``bq/bk/bv`` of
``in_proj_bias``; ``q_proj_weight`` etc. when kdim ≠ embed_dim), ``wo/bo`` are
``out_proj.weight/bias``; recurrent layers' ``w_ih_0, w_hh_0, b_ih_0, b_hh_0`` are
``weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0`` (``…_l0_reverse`` for direction 1).
BatchNorm's ``num_batches_tracked`` is ignored. See docs/interop.md.

Problems are ConfigErrors that list every name at fault: a tensor whose shape differs from the
parameter's (always), parameters the file does not have and tensors nothing used (with
``strict``, the default), map keys that match no parameter. Without ``strict`` the missing
parameters keep their initial values. Paths follow ``train.data``'s rule: relative to the
spec's directory and inside it, unless given on the command line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import did_you_mean
from .errors import CheckpointError, ConfigError

KEYS = ("file", "map", "strict")
IGNORED = re.compile(r"(^|\.)num_batches_tracked$")  # BatchNorm's step counter (PyTorch)

# op → graphc parameter → [(PyTorch name under the module, row block k of n or None)]
TORCH_NAMES: dict[str, dict[str, list[tuple[str, tuple[int, int] | None]]]] = {
    "attention": {
        **{w: [("in_proj_weight", (k, 3)), (f"{w[1]}_proj_weight", None)]
           for k, w in enumerate(("wq", "wk", "wv"))},
        **{b: [("in_proj_bias", (k, 3))] for k, b in enumerate(("bq", "bk", "bv"))},
        "wo": [("out_proj.weight", None)],
        "bo": [("out_proj.bias", None)],
    },
    **{kind: {f"{ours}_{d}": [(f"{theirs}_l0{'_reverse' if d else ''}", None)]
              for d in (0, 1)
              for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                   ("b_hh", "bias_hh"))}
       for kind in ("rnn", "lstm", "gru")},
}


@dataclass
class Loaded:
    """What init_from did: the parameters, and which came from where."""

    params: dict[str, np.ndarray]
    source: dict[str, str] = field(default_factory=dict)  # parameter → tensor it was read from
    missing: list[str] = field(default_factory=list)  # parameters left at their initial values
    unused: list[str] = field(default_factory=list)  # tensors of the file nothing read
    file: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        what = f"{len(self.source)} of {len(self.params)} parameters from {self.file}"
        if self.missing:
            what += f"; {len(self.missing)} kept their initial values"
        if self.unused:
            what += f"; {len(self.unused)} tensors of the file unused"
        return what


def check_section(value) -> dict:
    """The ``init_from`` section with defaults, or a ConfigError."""
    if isinstance(value, str):
        value = {"file": value}
    if not isinstance(value, dict):
        raise ConfigError(f"train.init_from must be a mapping like {{file: weights.safetensors}}, got {value!r}")
    for key in value:
        if key not in KEYS:
            raise ConfigError(f"unknown key `{key}` in train.init_from{did_you_mean(key, KEYS)}; "
                              f"allowed: {', '.join(KEYS)}")
    if not isinstance(value.get("file"), str) or not value["file"].strip():
        raise ConfigError("train.init_from.file must name a .safetensors file or a checkpoint directory")
    mapping = value.get("map") or {}
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in mapping.items()):
        raise ConfigError("train.init_from.map must map graphc names to names in the file "
                          "(strings), e.g. {decoder.*.attn: layers.*.self_attn}")
    for k, v in mapping.items():
        if k.count("*") != v.count("*"):
            raise ConfigError(f"train.init_from.map: `{k}: {v}` must have as many `*` on each side")
    strict = value.get("strict", True)
    if not isinstance(strict, bool):
        raise ConfigError(f"train.init_from.strict must be true or false, got {strict!r}")
    return {"file": value["file"], "map": dict(mapping), "strict": strict}


def resolve_path(path: str, base_dir=None, *, from_cli: bool = False) -> Path:
    """The safetensors file of ``path``: a file, or ``<dir>/model.safetensors`` of a checkpoint
    directory, or ``<dir>/checkpoint/model.safetensors`` of a run directory."""
    p = Path(path).expanduser()
    if base_dir is not None and not from_cli:
        base = Path(base_dir).resolve()
        hint = (f"a path in a spec must stay inside the spec's directory ({base}); give it on the "
                "command line (--set init_from.file=...) to use a file elsewhere")
        if p.is_absolute() or path.startswith("~"):
            raise ConfigError(f"train.init_from.file: `{path}` is an absolute path; {hint}")
        p = base / p
        if not p.resolve().is_relative_to(base):
            raise ConfigError(f"train.init_from.file: `{path}` leads out of the spec's directory; {hint}")
    elif base_dir is not None and not p.is_absolute():
        p = Path(base_dir) / p
    for candidate in (p, p / "model.safetensors", p / "checkpoint" / "model.safetensors"):
        if candidate.is_file():
            return candidate
    if not p.exists():
        raise ConfigError(f"train.init_from.file: no such file or directory: {p}")
    if not p.is_dir():
        raise ConfigError(f"train.init_from.file: {p} is not a regular file (a device, a pipe or a socket); "
                          "expected a .safetensors file or a checkpoint or run directory")
    raise ConfigError(f"train.init_from.file: {p} is a directory without model.safetensors "
                      "(expected a checkpoint or run directory)")


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and header metadata of a safetensors file; CheckpointError if unreadable."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None
    try:
        with path.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            meta = json.loads(fh.read(n)).get("__metadata__") or {}
    except (OSError, ValueError):
        meta = {}
    return tensors, meta


def _compile(mapping: dict[str, str]) -> list[tuple[re.Pattern, str, str]]:
    rules = []
    for key, value in mapping.items():
        pattern = re.compile("^" + re.escape(key).replace(r"\*", r"([^.]+)") + r"(\..+)?$")
        rules.append((pattern, key, value))
    return sorted(rules, key=lambda r: -len(r[1]))  # the longest (most specific) key first


def _renamed(name: str, rules) -> tuple[str, str | None, bool]:
    """``name`` (a node or parameter) under the map: the new name, the key that applied, and
    whether that key named all of ``name`` (not a prefix of it)."""
    for pattern, key, value in rules:
        m = pattern.match(name)
        if m:
            *stars, rest = m.groups()
            head = value
            for part in stars:
                head = head.replace("*", part, 1)
            return head + (rest or ""), key, rest is None
    return name, None, False


def candidates(model, param: str, rules) -> tuple[list[tuple[str, tuple[int, int] | None]], str | None]:
    """The file names that may hold ``param`` (graphc's name first, then PyTorch's), each with
    the row block to take (or None), and the map key used."""
    renamed, key, whole = _renamed(param, rules)
    if key is not None and whole:  # a rule for this very parameter
        return [(renamed, None)], key
    node = model.params[param].node
    short = param[len(node) + 1:]
    prefix, key, _ = _renamed(node, rules)
    graph = getattr(model, "graph", None)
    op = graph.nodes[node].op if graph is not None else None
    out = [(f"{prefix}.{short}", None)]
    out += [(f"{prefix}.{theirs}", block) for theirs, block in TORCH_NAMES.get(op, {}).get(short, [])]
    return out, key


def load_init(model, params: dict[str, np.ndarray], section, base_dir=None, *, from_cli: bool = False
              ) -> Loaded:
    """``params`` with the values ``section`` (train.init_from) names; see the module doc."""
    section = check_section(section)
    path = resolve_path(section["file"], base_dir, from_cli=from_cli)
    tensors, meta = read_safetensors(path)
    rules = _compile(section["map"])
    dtype = np.dtype(getattr(model, "dtype", np.float32))
    out, source, used, keys_used = dict(params), {}, set(), set()
    missing, misshapen = [], []
    for name, spec in model.params.items():
        tried, key = candidates(model, name, rules)
        keys_used.add(key)
        hit = next(((n, b) for n, b in tried if n in tensors), None)
        if hit is None:
            looked = list(dict.fromkeys(n for n, _ in tried))
            missing.append(f"`{name}`" + ("" if looked == [name] else
                                          f" (looked for {', '.join(f'`{n}`' for n in looked)})"))
            continue
        src, block = hit
        value = np.asarray(tensors[src])
        if block is not None:
            k, n = block
            if value.shape[0] % n:
                misshapen.append(f"`{src}` {list(value.shape)} does not split into {n} row blocks for `{name}`")
                continue
            rows = value.shape[0] // n
            value = value[k * rows:(k + 1) * rows]
        if tuple(value.shape) != tuple(spec.shape):
            misshapen.append(f"`{name}`: the model's is {list(spec.shape)}, the file's `{src}`"
                             + (f" (row block {block[0] + 1} of {block[1]})" if block else "")
                             + f" is {list(value.shape)}")
            continue
        if value.dtype.kind not in "fiu":
            misshapen.append(f"`{src}` holds {value.dtype}, not numbers")
            continue
        out[name] = np.ascontiguousarray(value, dtype=dtype)
        source[name] = src
        used.add(src)
    unused = sorted(t for t in tensors if t not in used and not IGNORED.search(t))
    stale = [k for k in section["map"] if k not in keys_used]
    problems = [f"map key `{k}` matches no parameter or node of model {model.name!r}"
                + did_you_mean(k, sorted({p.node for p in model.params.values()})) for k in stale]
    problems += [f"shape mismatch: {m}" for m in misshapen]
    if section["strict"]:
        problems += [f"missing in the file: {m}" for m in missing]
        problems += [f"not used (no parameter of the model is named so): `{t}`" for t in unused]
    if problems:
        shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
        hint = ("; add a `map` entry for names that differ" if missing or unused else "")
        hint += ("; or set `strict: false` to keep missing parameters at their initial values and "
                 "ignore extra tensors" if section["strict"] and (missing or unused) else "")
        raise ConfigError(f"train.init_from: {path} does not fit model {model.name!r}{hint}:\n"
                          + "\n".join(f"  {p}" for p in shown))
    return Loaded(out, source, [m.split("`")[1] for m in missing], unused, path, meta)


def init_from(model, params: dict[str, np.ndarray], section, base_dir=None, *, from_cli: bool = False
              ) -> dict[str, np.ndarray]:
    """The trainer's hook: initial ``params`` overwritten from ``train.init_from``."""
    return load_init(model, params, section, base_dir, from_cli=from_cli).params
