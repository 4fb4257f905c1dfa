"""The `train:` section's schema: every key, its type, default, bounds, choices and a one-line doc.

One table, read by everything that handles `train:`: the runtime's TrainConfig
(graphc.runtime.config), `graphc check`'s GC401 diagnostics (graphc.spec.train_check), the
`--set` leftovers of expansion (graphc.spec.expand), the GL4xx lint rules, the JSON Schema
(`graphc schema`) and the key tables of runtime/README.md (generated:
`python -m graphc.spec.train_schema --write runtime/README.md`).

`validate(train)` returns every problem as a :class:`Problem` (a path below `train`, a message
naming the setting, a hint); the runtime raises the first as a ConfigError, `graphc check`
reports each one as GC401 at its source position. Integer keys take whole numbers (`1e3` is
fine, `2.5` is not) up to a sane maximum, so a typo such as `accumulate: 1e20` is an error
instead of a process that allocates until the machine falls over; every number must be finite.

Pure Python on purpose (no numpy, no YAML): the runtime and the front end both import it.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, field, replace
from typing import Any

# -- limits: far above anything these small models train with, far below what breaks a machine
MAX_STEPS = 10**9  # steps, evaluation/log/checkpoint intervals, warmup
MAX_EPOCHS = 10**6
MAX_BATCH = 2**20  # samples per micro-batch
MAX_ACCUMULATE = 4096  # micro-batches held in memory for one optimizer step
MAX_SAMPLES = 10**7  # generated train_size / val_size (all held in memory)
MAX_EVERY = 10**6  # patience, a phase's `every`
MAX_SEED = 2**63 - 1

METRIC_NAMES = ("loss", "accuracy", "sequence_accuracy", "perplexity")
GENERATE_KINDS = ("normal", "uniform", "zeros", "ones")  # graphc.runtime.data.feed.GENERATORS


@dataclass(frozen=True)
class Key:
    """One setting: `type` is int, float, bool, str, enum, list, map, section or path (a file
    name, or a mapping of field: file name)."""

    name: str
    type: str
    doc: str
    default: Any = None  # None: off, or computed (then `default_doc` says how)
    default_doc: str | None = None
    required: bool = False
    nullable: bool = False  # `null` means "off / the default"
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # min itself is not allowed
    max_open: bool = False
    multiple_of: int | None = None
    choices: tuple = ()
    label: str = "value"  # what an enum's value is called in messages: "optimizer", "kind", ...
    unknown: str | None = None  # the message for a value not among the choices ({at}, {value})
    item: Key | None = None  # list items, map values
    bare: bool = False  # list: one item stands for [item]; section: a string names its variant
    min_items: int = 0
    length: int | None = None  # a list of exactly this many items
    section: Section | None = None
    typical: tuple[float, float] | None = None  # the range that usually trains (lint GL402)


@dataclass(frozen=True)
class Section:
    """A mapping of keys. With `tag`, the value of that key picks a variant, whose own keys
    are added to (and override) the common ones; with `sources`, exactly one of those keys
    must be present and picks a sub-section (train.data: task, dataset or file)."""

    keys: tuple[Key, ...]
    tag: str | None = None
    variants: dict[str, tuple[Key, ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # tag value -> variant
    default_variant: str | None = None  # when the tag key is absent
    sources: dict[str, Section] = field(default_factory=dict)
    example: str = ""

    def key(self, name: str) -> Key:
        return {k.name: k for k in self.keys}[name]

    def variant(self, name: str | None) -> str | None:
        name = self.default_variant if name is None else name
        return self.aliases.get(name, name) if isinstance(name, str) else None

    def keys_for(self, variant: str | None) -> dict[str, Key]:
        """The keys a variant takes (the common ones first); every key when it is unknown."""
        out = {k.name: k for k in self.keys}
        if variant in self.variants:
            out.update({k.name: k for k in self.variants[variant]})
        elif self.variants:
            for keys in self.variants.values():
                out.update({k.name: k for k in keys if k.name not in out})
        return out

    def default(self, variant: str | None, name: str) -> Any:
        key = self.keys_for(self.variant(variant)).get(name)
        return None if key is None else key.default


# -- constructors that keep the table below readable
def _int(name, doc, default=None, *, min=1, max=MAX_STEPS, **kw) -> Key:  # noqa: A002
    return Key(name, "int", doc, default, min=min, max=max, **kw)


def _float(name, doc, default=None, *, min=0.0, **kw) -> Key:  # noqa: A002
    return Key(name, "float", doc, default, min=min, **kw)


def _enum(name, doc, choices, default=None, **kw) -> Key:
    return Key(name, "enum", doc, default, choices=tuple(choices), **kw)


def _names(name, doc, what, **kw) -> Key:
    return Key(name, "list", doc, item=Key(what, "str", what), bare=True, **kw)


def _fraction(name, doc, default) -> Key:
    return _float(name, doc, default, max=1.0, max_open=True)


_SEED = _int("seed", "seed of the data (its split and generated samples), not of training", 0,
             min=0, max=MAX_SEED)

# ---- optimizer -------------------------------------------------------------------------------
_LR = _float("lr", "base learning rate (the schedule scales it)")
_WD = _float("weight_decay", "weight decay (L2 for sgd/adam, decoupled for adamw); only on "
             "parameters whose spec decays (not biases, norm gains)", 0.0)
_MOMENTUM = _float("momentum", "classic momentum: v ← αv − ηg, w ← w + v", 0.0, max=1.0,
                   max_open=True)
_BETAS = Key("betas", "list", "decay rates of Adam's first and second moments", [0.9, 0.999],
             length=2, item=_fraction("beta", "a moment's decay rate", None))
_EPS = _float("eps", "added to Adam's RMS before dividing", 1e-8)
_SGD_LR = replace(_LR, default=0.01, typical=(1e-4, 1.0))
_ADAM_LR = replace(_LR, default=1e-3, typical=(1e-5, 0.03))
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
OPTIMIZER = Section(
    keys=(_enum("name", "the optimizer (`momentum` is sgd with momentum 0.9)", OPTIMIZERS,
                  "adamw", label="optimizer"),),
    tag="name",
    default_variant="adamw",
    variants={
        "sgd": (_SGD_LR, _MOMENTUM, _WD),
        "momentum": (_SGD_LR, replace(_MOMENTUM, default=0.9), _WD),
        "adam": (_ADAM_LR, _BETAS, _EPS, _WD),
        "adamw": (_ADAM_LR, _BETAS, _EPS, replace(_WD, default=0.01)),
    },
    example="{name: adamw, lr: 1e-3}",
)

# ---- schedule --------------------------------------------------------------------------------
_MIN_LR = _float("min_lr", "the rate at the end of the run", 0.0)
SCHEDULE = Section(
    keys=(_enum("name", "the learning-rate schedule", ("constant", "step", "cosine", "linear"),
                "constant", label="schedule"),
          _int("warmup", "linear ramp lr·(t+1)/N over the first N steps; the schedule runs after",
               0, min=0)),
    tag="name",
    default_variant="constant",
    variants={
        "constant": (),
        "step": (_int("step_size", "steps between decays: lr·gamma^(t // step_size)",
                      required=True),
                 _float("gamma", "factor per decay", 0.1)),
        "cosine": (_MIN_LR,),
        "linear": (_MIN_LR,),
    },
    example="{name: cosine, warmup: 100}",
)

# ---- data ------------------------------------------------------------------------------------
_TRAIN_SIZE = _int("train_size", "a finite training set of this many samples (default: an "
                   "endless stream)", max=MAX_SAMPLES, nullable=True)
_VAL_SIZE = _int("val_size", "validation samples", 512, max=MAX_SAMPLES)
_FORMAT = _enum("format", "`features` [N,length,1] float32 or `tokens` [N,length] int64",
                ("features", "tokens"), "features")


def _length(default: int, max: int, doc: str = "sequence length", **kw) -> Key:  # noqa: A002
    return _int("length", doc, default, max=max, **kw)


_DIGITS_LENGTH = _length(8, 300, "digits per sample; sequences have 2·length tokens")
_SIZES_1000 = (replace(_TRAIN_SIZE, default=1000), replace(_VAL_SIZE, default=400))
TASKS = ("reverse_digits", "sort_digits", "majority", "brackets", "two_spirals", "xor",
         "gaussian_ring")
TASK_ALIASES = {"spirals": "two_spirals", "ring": "gaussian_ring"}
TASK = Section(
    keys=(_enum("task", "a task generated on the fly", (*TASKS, *TASK_ALIASES), label="task",
                required=True), _TRAIN_SIZE, _VAL_SIZE, _SEED),
    tag="task",
    aliases=TASK_ALIASES,
    variants={
        "reverse_digits": (_DIGITS_LENGTH,),
        "sort_digits": (_DIGITS_LENGTH,),
        "majority": (_length(15, 1000), _FORMAT),
        "brackets": (_length(20, 1000, multiple_of=2), _FORMAT),
        "two_spirals": (_float("turns", "turns of each spiral", 1.5),
                        _float("noise", "std of the Gaussian noise added to points", 0.05),
                        *_SIZES_1000),
        "xor": (_float("noise", "std of the Gaussian noise added to the corners", 0.2),
                *_SIZES_1000),
        "gaussian_ring": (_int("modes", "Gaussians on the circle", 8, max=10_000),
                          _float("radius", "radius of the circle", 2.0),
                          _float("std", "std of each Gaussian", 0.05)),
    },
    example="{task: reverse_digits, length: 8}",
)
DATASET = Section(
    keys=(_enum("dataset", "a data set shipped with graphc", ("digits",), label="dataset",
                required=True), _SEED),
    tag="dataset",
    variants={"digits": (_fraction("test_fraction", "share of each class held out", 0.2),
                         Key("flatten", "bool", "`x` as [N,64] instead of [N,1,8,8]", False))},
    example="{dataset: digits}",
)
_FILE_NAME = Key("path", "str", "a file name")
_PATH = Key("file", "path", ".npz, .npy, .csv or .txt (relative to the spec), or "
            "{field: file.npy}", required=True, item=_FILE_NAME)
FILE = Section(
    keys=(_PATH,
          replace(_PATH, name="val_file", doc="validation data in its own file(s)", required=False,
                  nullable=True),
          _fraction("val_fraction", "share held out for validation (a .txt file: its tail)", 0.1),
          Key("fields", "list", "the arrays of a .npz archive to use (default: all)",
              item=Key("field", "str", "an array name"), nullable=True),
          _names("x", "the feature columns of a .csv file (default: all but `y`)", "column"),
          Key("y", "str", "the label column of a .csv file (default: y, label, target or class)"),
          _int("block", "characters per window of a .txt file", 64, max=10**6),
          _enum("encoding", "a .txt file as `chars` (its character set) or `bytes`",
                ("chars", "bytes"), "chars"),
          _SEED),
    example="{file: data.npz}",
)
DATA = Section(
    keys=(Key("map", "map", "{model_input: data_field} for inputs named unlike their field",
              default={}, item=Key("field", "str", "a data field"), nullable=True),
          Key("generate", "map", "{model_input: kind}: inputs the runtime draws for every batch "
              "(normal N(0,1), uniform U[-1,1), zeros, ones)", default={}, nullable=True,
              item=_enum("kind", "how to draw it", GENERATE_KINDS, label="kind"))),
    sources={"task": TASK, "dataset": DATASET, "file": FILE},
    example="{task: reverse_digits, length: 8}",
)

# ---- early stopping, phases ------------------------------------------------------------------
EARLY_STOPPING = Section(
    keys=(_enum("metric", "the validation metric judged (`val_` is implied)",
                (*(f"val_{m}" for m in METRIC_NAMES), *METRIC_NAMES), "val_loss", label="metric",
                unknown="{at} `{value}` is not a metric"),
          _int("patience", "evaluations without improvement before stopping", 5, max=MAX_EVERY),
          _enum("mode", "whether the metric should go down or up", ("min", "max"),
                default_doc="min for loss/perplexity, max otherwise", label="mode"),
          _float("min_delta", "smallest change that counts as an improvement", 0.0)),
    example="{metric: val_accuracy, patience: 5}",
)
_PHASE_OPTIMIZER = Key("optimizer", "section", "keys over train.optimizer for this phase (a "
                       "different `name` starts from that optimizer's defaults)",
                       section=OPTIMIZER, bare=True, nullable=True)
PHASE = Section(
    keys=(_names("loss", "the loss (or list of losses) this phase minimizes", "loss name",
                 required=True, min_items=1),
          _names("params", "glob patterns of the parameters it updates (`<node>.<param>`)",
                 "parameter name pattern", required=True, min_items=1),
          _int("every", "run only on steps divisible by N (step 0 runs every phase)", 1,
               max=MAX_EVERY),
          _PHASE_OPTIMIZER),
    example='{loss: d_loss, params: ["disc.*"]}',
)

# ---- init_from: start from saved weights (graphc.runtime.init_from) ----------------------------
INIT_FROM = Section(
    keys=(Key("file", "str", "a .safetensors file (e.g. a PyTorch state_dict) or a graphc run or "
              "checkpoint directory, relative to the spec", required=True),
          Key("map", "map", "{graphc name: name in the file} for a parameter, a node or a prefix of "
              "nodes; `*` matches one name part", default={},
              item=Key("name", "str", "a name in the file"), nullable=True),
          Key("strict", "bool", "every parameter must be in the file, every tensor used", True)),
    example="{file: weights.safetensors}",
)

# ---- the section -----------------------------------------------------------------------------
TRAIN = Section(
    keys=(
        Key("data", "section", "where batches come from; see *Data sources*", required=True,
            section=DATA),
        _int("batch", "samples per micro-batch", 32, max=MAX_BATCH),
        _int("steps", "optimizer steps (not with `epochs`)", default_doc="1000", nullable=True),
        _int("epochs", "passes over finite data (not with `steps`)", max=MAX_EPOCHS,
             nullable=True),
        Key("optimizer", "section", "`sgd`, `momentum` (sgd with momentum 0.9), `adam`, `adamw`; "
            "a bare name works; see *Optimizer keys*", {"name": "adamw"}, section=OPTIMIZER,
            bare=True, nullable=True),
        Key("schedule", "section", "`constant`, `step`, `cosine`, `linear`, all with `warmup`; "
            "a bare name works; see *Schedule keys*", {"name": "constant"}, section=SCHEDULE,
            bare=True, nullable=True),
        _float("clip_grad_norm", "clip the global gradient norm to this value",
               default_doc="off", min_open=True, nullable=True),
        _int("accumulate", "micro-batches per optimizer step; gradients are averaged", 1,
             max=MAX_ACCUMULATE),
        _int("eval_every", "validate every N steps (0: only at the end)", 100, min=0),
        _int("log_every", "write a `metrics.jsonl` row every N steps", default_doc="total/200",
             nullable=True),
        _int("checkpoint_every", "write the checkpoint every N steps (and always at the end)",
             default_doc="`eval_every`", nullable=True),
        Key("metrics", "list", "metrics to report (`loss` is always one)",
            default_doc="loss (+accuracy with class labels)", nullable=True, bare=True,
            item=_enum("metric", "a metric", METRIC_NAMES, label="metric")),
        Key("early_stopping", "section", "stop when a validation metric stops improving; "
            "see *Early stopping*", default_doc="off", section=EARLY_STOPPING,
            nullable=True),
        _names("freeze", "glob patterns of parameter names to keep fixed (e.g. a LoRA base)",
               "parameter name pattern", default=[], nullable=True),
        Key("phases", "list", "alternating updates (a GAN): `{loss, params, every, optimizer}` "
            "each; see *Phases*", default_doc="off", nullable=True, min_items=1,
            item=Key("phase", "section", "one phase", section=PHASE)),
        Key("init_from", "section", "start from saved weights (`{file, map, strict}`): a graphc "
            "checkpoint or a PyTorch state_dict; see docs/interop.md", default_doc="off",
            section=INIT_FROM, nullable=True),
        _int("seed", "seeds initialization, data order, generated batches and dropout", 0, min=0,
             max=MAX_SEED),
    ),
    example="{data: {task: reverse_digits}, steps: 1000}",
)
TRAIN_KEYS = tuple(k.name for k in TRAIN.keys)
PHASE_KEYS = tuple(k.name for k in PHASE.keys)


def optimizer_defaults(name: str) -> dict:
    """Every key an optimizer takes with its default, e.g. {"lr": 0.001, "betas": [...], ...}."""
    keys = OPTIMIZER.keys_for(OPTIMIZER.variant(name))
    return {k: copy.deepcopy(v.default) for k, v in keys.items() if k != "name"}


def named(value: Any, section: Section, default: str | None = None) -> dict | None:
    """An optimizer/schedule given as a bare name or a mapping, as a fresh mapping with its
    tag (`name`) filled in; None when it is neither."""
    default = default or section.default_variant
    if value is None:
        return {section.tag: default}
    if isinstance(value, str):
        return {section.tag: value}
    if isinstance(value, dict):
        return {section.tag: default, **value}
    return None


# ---- values ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A value that does not fit the schema. `path` is below `train` (keys and list indices)."""

    path: tuple
    message: str
    hint: str | None = None  # what to do: the allowed names, an example
    suggestion: str | None = None  # the closest valid name, for "did you mean"
    doc: str | None = None  # what the setting is (the key's doc)

    @property
    def text(self) -> str:
        """The problem on one line (what the runtime's ConfigError says)."""
        out = self.message
        if self.suggestion:
            out += f" (did you mean `{self.suggestion}`?)"
        return out + (f"; {self.hint}" if self.hint else "")


def where(path: tuple) -> str:
    """`train.phases[0].loss` for ("phases", 0, "loss")."""
    return "train" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def closest(word: Any, choices) -> str | None:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return match[0] if match else None


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_float(value: Any) -> float | None:
    """A number (or numeric string) as a float; None for anything else, booleans included.
    Huge integers become ±inf."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except ValueError:
        return None


def coerce(key: Key, value: Any) -> Any:
    """A valid number as the key's type (int keys take `1e3` and "64"), else the value itself."""
    if key.type in ("int", "float"):
        number = as_float(value)
        if number is None or not math.isfinite(number):
            return value
        if key.type == "float":
            return number
        return value if isinstance(value, int) else int(number)
    return value


def _fmt(x: float) -> str:
    if x == MAX_SEED:
        return "2^63 - 1"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def describe(key: Key) -> str:
    """`a whole number from 1 to 4096`, `a number >= 0`, `one of sgd, momentum, adam, adamw`."""
    if key.type in ("int", "float"):
        noun = "a whole number" if key.type == "int" else "a finite number"
        lo, hi = key.min, key.max
        if lo is not None and hi is not None and not key.min_open and not key.max_open:
            return f"{noun} from {_fmt(lo)} to {_fmt(hi)}"
        if lo is not None and hi is not None:
            return (f"{noun} in {'(' if key.min_open else '['}{_fmt(lo)}, "
                    f"{_fmt(hi)}{')' if key.max_open else ']'}")
        if lo is not None:
            return f"{noun} {'>' if key.min_open else '>='} {_fmt(lo)}"
        return noun
    if key.type == "enum":
        return "one of " + ", ".join(key.choices)
    return {"bool": "true or false", "str": "a string", "map": "a mapping",
            "section": "a mapping", "path": "a file name or a mapping of field: file",
            "list": "a list"}.get(key.type, key.type)


class _Validator:
    def __init__(self, require_source: bool, phase_optimizer: str | None = None):
        self.require_source = require_source
        self.phase_optimizer = phase_optimizer  # the name a phase's optimizer keys refine
        self.problems: list[Problem] = []

    def add(self, path, message, hint=None, suggestion=None, doc=None):
        self.problems.append(Problem(tuple(path), message, hint, suggestion, doc))

    def value(self, key: Key, value: Any, path: tuple) -> None:
        if value is None:
            if not key.nullable:
                self.add(path, f"{where(path)} must be {describe(key)}, got null", doc=key.doc)
            return
        getattr(self, f"_{key.type}")(key, value, path, where(path))

    def _number(self, key: Key, value, path, at):
        number = as_float(value)
        whole = key.type == "int"
        if number is None or not math.isfinite(number) or (whole and not number.is_integer()):
            self.add(path, f"{at} must be {describe(key)}, got {show(value)}", doc=key.doc)
        elif key.min is not None and (number < key.min or (key.min_open and number == key.min)):
            self.add(path, f"{at} must be {'>' if key.min_open else '>='} {_fmt(key.min)}, got "
                     f"{show(value)}", doc=key.doc)
        elif key.max is not None and (number > key.max or (key.max_open and number == key.max)):
            self.add(path, f"{at} must be {'<' if key.max_open else '<='} {_fmt(key.max)}, got "
                     f"{show(value)}", doc=key.doc)
        elif key.multiple_of and number % key.multiple_of:
            what = "even" if key.multiple_of == 2 else f"a multiple of {key.multiple_of}"
            self.add(path, f"{at} must be {what}, got {show(value)}", doc=key.doc)

    _int = _float = _number

    def _bool(self, key: Key, value, path, at):
        if not isinstance(value, bool):
            self.add(path, f"{at} must be true or false, got {show(value)}", doc=key.doc)

    def _str(self, key: Key, value, path, at):
        if not isinstance(value, str) or (key is _FILE_NAME and not value.strip()):
            what = "a file name" if key is _FILE_NAME else "a string"
            self.add(path, f"{at} must be {what}, got {show(value)}", doc=key.doc)

    def _enum(self, key: Key, value, path, at):
        if not isinstance(value, str):
            self.add(path, f"{at} must be {describe(key)}, got {show(value)}", doc=key.doc)
        elif value not in key.choices:
            message = key.unknown or "unknown {label} {value!r} in {at}"
            self.add(path, message.format(label=key.label, value=value, at=at),
                     f"available: {', '.join(key.choices)}", closest(value, key.choices))

    def _path(self, key: Key, value, path, at):
        if isinstance(value, dict):
            self._map(key, value, path, at)
        elif not isinstance(value, str) or not value.strip():
            self.add(path, f"{at} must be {describe(key)}, got {show(value)}", doc=key.doc)

    def _list(self, key: Key, value, path, at):
        item = key.item
        what = f"{item.name}s" + (f" ({', '.join(item.choices)})" if item.choices else "")
        if key.bare and not isinstance(value, list | dict):
            self.value(item, value, path)  # one item for a one-item list
            return
        if not isinstance(value, list):
            self.add(path, f"{at} must be a list of {what}"
                     f"{f' (or one {item.name})' if key.bare else ''}, got {show(value)}", doc=key.doc)
        elif key.length is not None and len(value) != key.length:
            self.add(path, f"{at} must be a list of {key.length} ({what}), got {show(value)}",
                     doc=key.doc)
        elif len(value) < key.min_items:
            self.add(path, f"{at} must be a non-empty list, got {show(value)}", doc=key.doc)
        else:
            for i, x in enumerate(value):
                self.value(item, x, (*path, i))

    def _map(self, key: Key, value, path, at):
        if not isinstance(value, dict):
            self.add(path, f"{at} must be a mapping of name: {key.item.name}, got {show(value)}",
                     doc=key.doc)
            return
        for name, x in value.items():
            if not isinstance(name, str):
                self.add((*path, name), f"{at}: keys must be names, got {show(name)}", doc=key.doc)
            else:
                self.value(key.item, x, (*path, name))

    def _section(self, key: Key, value, path, at):
        sec = key.section
        if isinstance(value, str) and key.bare and sec.tag:
            value = {sec.tag: value}
        if not isinstance(value, dict):
            self.add(path, f"{at} must be a mapping like {sec.example}, got {show(value)}",
                     doc=key.doc)
            return
        inherit = self.phase_optimizer if key is _PHASE_OPTIMIZER else None
        self.section(sec, value, path, inherit)

    def section(self, sec: Section, value: dict, path: tuple, tag_default=None,
                also: tuple = ()) -> None:
        """Check a mapping against `sec`; `also` are names the enclosing section takes."""
        at = where(path)
        keys = {k.name: k for k in sec.keys}
        if sec.sources:  # train.data: the common keys here, the rest by the source's section
            present = [s for s in sec.sources if s in value]
            if len(present) > 1 or (not present and self.require_source):
                self.add(path, f"{at} needs exactly one of "
                         + ", ".join(f"`{s}:`" for s in sec.sources)
                         + f" (got {', '.join(present) or 'none'})", f"e.g. {sec.example}")
            if len(present) == 1:
                self.section(sec.sources[present[0]],
                             {k: v for k, v in value.items() if k not in keys}, path,
                             also=tuple(keys))
            elif not present:  # no source to judge by: only flag names no source takes
                known = {n for s in sec.sources.values() for n in s.keys_for(None)} | set(keys)
                for name in value:
                    if name not in known:
                        self.add((*path, name), f"unknown key `{name}` in {at}",
                                 f"allowed: {', '.join(sorted(known))}", closest(name, known))
            for name, k in keys.items():
                if name in value:
                    self.value(k, value[name], (*path, name))
            return
        label = at
        if sec.tag:
            if sec.tag in value:
                self.value(keys[sec.tag], value[sec.tag], (*path, sec.tag))
            variant = sec.variant(value.get(sec.tag, tag_default or sec.default_variant))
            if variant not in sec.variants:  # unknown (reported above): judge the common keys
                value = {k: v for k, v in value.items() if k in keys}
            else:
                keys = sec.keys_for(variant)
                label = f"{at} ({variant})"
        for name, x in value.items():
            if name == sec.tag:
                continue
            if name not in keys:
                allowed = sorted({*keys, *also})
                self.add((*path, name), f"unknown key `{name}` in {label}",
                         f"allowed: {', '.join(allowed)}", closest(name, allowed))
            else:
                self.value(keys[name], x, (*path, name))
        for name, k in keys.items():
            if k.required and name not in value:
                self.add(path, f"{at} has no `{name}`", k.doc)


def validate(train: Any, *, require_source: bool = True) -> list[Problem]:
    """Every way `train` does not fit the schema, in order. With ``require_source=False`` a
    `data` section naming no source passes (the runtime says which sources exist later);
    a missing `data` never counts here (a spec may be checked without being trained)."""
    if not isinstance(train, dict):
        return [Problem((), f"`train` must be a mapping like {TRAIN.example}, got {show(train)}")]
    opt = named(train.get("optimizer"), OPTIMIZER)
    v = _Validator(require_source, opt.get("name") if opt else None)
    keys = {k.name: k for k in TRAIN.keys}
    for name, value in train.items():
        if name not in keys:
            v.add((name,), f"unknown key `{name}` in train", f"allowed: {', '.join(TRAIN_KEYS)}",
                  closest(name, TRAIN_KEYS))
        else:
            v.value(keys[name], value, (name,))
    if train.get("steps") is not None and train.get("epochs") is not None:
        v.add(("epochs",), "train.steps and train.epochs are both set; keep one",
              "steps counts optimizer steps, epochs passes over finite data")
    phases = train.get("phases")
    if isinstance(phases, list) and phases and all(isinstance(p, dict) for p in phases):
        every = [as_float(p.get("every", 1)) for p in phases]
        if all(e is not None and e > 1 for e in every):
            v.add(("phases",), "train.phases: every phase has `every` > 1, so some steps would "
                  "do nothing; let at least one phase run every step")
    return v.problems


# ---- JSON Schema (`graphc schema`) -----------------------------------------------------------
# A number may also be written as a numeric string ("1e-3"; YAML 1.1 loaders read `1e-3` so).
_NUMERIC = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def _key_json(key: Key) -> dict:
    t = key.type
    if t in ("int", "float"):
        out: dict = {"type": "integer" if t == "int" else "number"}
        if key.min is not None:
            out["exclusiveMinimum" if key.min_open else "minimum"] = key.min
        if key.max is not None:
            out["exclusiveMaximum" if key.max_open else "maximum"] = key.max
        if key.multiple_of:
            out["multipleOf"] = key.multiple_of
        out = {"anyOf": [out, {"type": "string", "pattern": _NUMERIC}]}
    elif t == "bool":
        out = {"type": "boolean"}
    elif t == "str":
        out = {"type": "string"}
    elif t == "enum":
        out = {"enum": list(key.choices)}
    elif t == "list":
        out = {"type": "array", "items": _key_json(key.item)}
        if key.length is not None:
            out |= {"minItems": key.length, "maxItems": key.length}
        elif key.min_items:
            out["minItems"] = key.min_items
        if key.bare:
            out = {"anyOf": [_key_json(key.item), out]}
    elif t == "map":
        out = {"type": "object", "additionalProperties": _key_json(key.item)}
    elif t == "path":
        name = {"type": "string", "minLength": 1}
        out = {"anyOf": [name, {"type": "object", "additionalProperties": name}]}
    else:
        out = section_json(key.section)
        if key.bare and key.section.tag:
            out = {"anyOf": [{"enum": list(key.section.key(key.section.tag).choices)}, out]}
    if key.nullable:
        out = {"anyOf": [{"type": "null"}, out]}
    default = key.default_doc or (None if key.default is None else key.default)
    return {**out, "description": key.doc + (f" (default: {default})" if default is not None
                                             else "")}


def _object(keys: dict[str, Key], typed: set[str], required=()) -> dict:
    """An object of `keys`; those not in `typed` (they differ by variant) are typed by the
    variant's if/then and carry only their doc here, for completion."""
    props = {n: _key_json(k) if n in typed else {"description": k.doc} for n, k in keys.items()}
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _variants_json(sec: Section, common: dict[str, Key]) -> list[dict]:
    """One if/then per variant: only its keys are allowed, typed as that variant has them."""
    rules = []
    for name, keys in sec.variants.items():
        allowed = sorted({*common, *(k.name for k in keys)})
        values = [name, *(a for a, v in sec.aliases.items() if v == name)]
        cond = {"properties": {sec.tag: {"enum": values}}, "required": [sec.tag]}
        if name == sec.default_variant:
            cond = {"anyOf": [cond, {"not": {"required": [sec.tag]}}]}
        then: dict = {"propertyNames": {"enum": allowed}}
        if keys:
            then["properties"] = {k.name: _key_json(k) for k in keys}
        required = [k.name for k in keys if k.required]
        if required:
            then["required"] = required
        rules.append({"if": cond, "then": then})
    return rules


def section_json(sec: Section) -> dict:
    """The JSON Schema of a section: every key any variant takes, and one if/then per variant
    (or per data source) that allows only that variant's keys."""
    if sec.sources:
        keys = {k.name: k for k in sec.keys}
        typed = set(keys)
        rules = []
        for name, sub in sec.sources.items():
            common = {**{k.name: k for k in sec.keys}, **{k.name: k for k in sub.keys}}
            subkeys = sub.keys_for(None)
            keys.update({n: k for n, k in subkeys.items() if n not in keys})
            then: dict = {"propertyNames": {"enum": sorted({*common, *subkeys})},
                          "properties": {k.name: _key_json(k) for k in sub.keys}}
            if sub.variants:
                then["allOf"] = _variants_json(sub, common)
            rules.append({"if": {"required": [name]}, "then": then})
        out = _object(keys, typed)
        out["allOf"] = rules
        return out
    keys = sec.keys_for(None)
    out = _object(keys, {k.name for k in sec.keys} if sec.variants else set(keys),
                  [k.name for k in sec.keys if k.required])
    if sec.variants:
        out["allOf"] = _variants_json(sec, {k.name: k for k in sec.keys})
    return out


def json_schema() -> dict:
    """The JSON Schema of the `train:` section."""
    out = section_json(TRAIN)
    out["required"] = []  # a spec may be checked without being trained
    return {**out, "description": "training settings (runtime/README.md, *The train: section*)"}


# ---- runtime/README.md's tables --------------------------------------------------------------
BEGIN = "<!-- train-schema:{name} (generated from graphc/spec/train_schema.py; "
END = "<!-- /train-schema:{name} -->"


def _num(x: float) -> str:
    if x == MAX_SEED:
        return "2^63-1"
    if float(x).is_integer() and x >= 10**5 and math.log10(x).is_integer():
        return f"1e{int(math.log10(x))}"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def allowed(key: Key) -> str:
    """The values a key takes, short: `int 1–4096`, `number in [0, 1)`, `list of metric`."""
    t = key.type
    if t in ("int", "float"):
        noun = ("even int" if key.multiple_of == 2 else "int") if t == "int" else "number"
        lo, hi = key.min, key.max
        if lo is not None and hi is not None and not (key.min_open or key.max_open):
            text = f"{noun} {_num(lo)}–{_num(hi)}"
        elif lo is not None and hi is not None:
            text = (f"{noun} in {'(' if key.min_open else '['}{_num(lo)}, {_num(hi)}"
                    f"{')' if key.max_open else ']'}")
        else:
            text = f"{noun} {'>' if key.min_open else '≥'} {_num(lo)}" if lo is not None else noun
    elif t == "enum":
        text = ", ".join(f"`{c}`" for c in key.choices)
    elif t == "list":
        what = f"{key.item.name}s" if key.item.type in ("str", "section") else allowed(key.item)
        text = (f"{key.length} × {what}" if key.length else f"list of {what}") + (
            " (or one)" if key.bare else "")
    elif t == "map":
        text = f"{{input: {key.item.name}}}"
    else:
        text = {"bool": "true, false", "str": "string", "path": "path or {field: path}",
                "section": "mapping" + (" or name" if key.bare else "")}[t]
    return text + (", null" if key.nullable and t != "section" else "")


def _default(key: Key) -> str:
    if key.required:
        return "(required)"
    if key.default_doc:
        return key.default_doc
    if key.default is None or key.default == {} or key.default == []:
        return "—" if key.default is None else f"`{_flow(key.default)}`"
    if isinstance(key.default, bool | str | list | dict):
        return f"`{_flow(key.default)}`"
    return _num(key.default)


def _flow(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return _num(value) if isinstance(value, int | float) else str(value)


def _rows(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _plain_table(keys) -> str:
    return _rows(["key", "default", "values", "meaning"],
                 [[f"`{k.name}`", _default(k), allowed(k), k.doc] for k in keys])


def _variant_table(sec: Section, tag_doc: str) -> str:
    names = list(sec.variants)
    keys: dict[str, list] = {}
    for n in names:
        for k in sec.keys_for(n).values():
            if k.name != sec.tag:
                keys.setdefault(k.name, []).append((n, k))
    rows = []
    for name, found in keys.items():
        by = dict(found)
        first = found[0][1]
        rows.append([f"`{name}`", *(_default(by[n]) if n in by else "" for n in names),
                     allowed(first), first.doc])
    return _rows(["key", *(f"`{n}`" for n in names), "values", "meaning"], rows) + (
        f"\n\n{tag_doc}" if tag_doc else "")


def _data_table() -> str:
    rows = [["every source", f"`{k.name}`", _default(k), allowed(k), k.doc] for k in DATA.keys]

    def add(label: str, keys) -> None:
        for k in keys:
            rows.append([label, f"`{k.name}`", _default(k), allowed(k), k.doc])
            label = ""

    for src, sub in DATA.sources.items():
        add(f"`{src}:` (every {src})" if sub.variants else f"`{src}:`",
            [k for k in sub.keys if k.name != sub.tag])
        for variant, keys in sub.variants.items():
            aliases = "".join(f" / `{a}`" for a, v in sub.aliases.items() if v == variant)
            add(f"`{src}: {variant}`{aliases}", keys)
    return _rows(["source", "key", "default", "values", "meaning"], rows)


def readme_tables() -> dict[str, str]:
    """The README's generated tables, by marker name."""
    return {
        "keys": _plain_table(TRAIN.keys),
        "optimizer": _variant_table(OPTIMIZER, "A blank cell: that optimizer does not take the "
                                    "key. `momentum` is `sgd` with momentum 0.9."),
        "schedule": _variant_table(SCHEDULE, "`step` needs `step_size`; `warmup` ramps linearly, "
                                   "then the schedule runs over the remaining steps."),
        "early_stopping": _plain_table(EARLY_STOPPING.keys),
        "phases": _plain_table(PHASE.keys),
        "data": _data_table(),
    }


def update_readme(text: str) -> str:
    """``text`` with every generated table replaced by the current one."""
    for name, table in readme_tables().items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        start = text.index(begin)
        start = text.index("-->", start) + 3
        stop = text.index(end, start)
        text = text[:start] + "\n" + table + "\n" + text[stop:]
    return text


# ---- `--set` ---------------------------------------------------------------------------------
def set_dotted(train: dict, dotted: str, value: Any) -> str | None:
    """Apply one dotted override (`optimizer.lr`, 1e-3) to ``train`` in place; `None` removes
    the key (its default applies again). A bare-name optimizer or schedule becomes a mapping
    first. Returns an error message, or None."""
    parts = dotted.split(".")
    node = train
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and i == 0 and part in ("optimizer", "schedule"):
            child = {"name": child}  # `optimizer: adam` + `optimizer.lr=...`
        if child is None:
            child = {}
        if not isinstance(child, dict):
            return (f"override `{dotted}`: train.{'.'.join(parts[: i + 1])} is {show(child)}, "
                    "not a mapping")
        node[part] = child
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return None


if __name__ == "__main__":  # python -m graphc.spec.train_schema [--write runtime/README.md]
    import sys

    if sys.argv[1:2] == ["--write"]:
        path = sys.argv[2]
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(update_readme(old))
    else:
        for name, table in readme_tables().items():
            print(f"{name}:\n{table}\n")
