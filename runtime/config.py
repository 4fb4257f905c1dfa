"""The resolved ``train:`` section of a spec, validated, with defaults filled in.

Keys (all optional except ``data``)::

    train:
      data: {task: reverse_digits, length: 8}   # see runtime/README.md, "Data sources"
      batch: 64              # samples per micro-batch
      steps: 2000            # optimizer steps; or `epochs: 10` (finite data only), not both
      optimizer: {name: adamw, lr: 3e-3, weight_decay: 0.01, betas: [0.9, 0.98]}
      schedule: {name: cosine, warmup: 100, min_lr: 0.0}
      clip_grad_norm: 1.0    # clip the global gradient norm; null = off
      accumulate: 1          # micro-batches per optimizer step (gradients are averaged)
      eval_every: 200        # validate every N steps (0 = only at the end)
      log_every: 10          # write a metrics.jsonl row every N steps (default: ~200 rows per run)
      checkpoint_every: 200  # default: eval_every
      metrics: [loss, accuracy, sequence_accuracy, perplexity]
      early_stopping: {metric: val_accuracy, patience: 5, mode: max, min_delta: 0}
      freeze: ["embed.*"]    # glob patterns of parameter names kept fixed
      phases:                # alternating updates (a GAN): each step runs them in order
        - {loss: d_loss, params: ["disc.*"]}
        - {loss: g_loss, params: ["gen.*"], every: 1, optimizer: {lr: 2e-4}}
      seed: 0

Overrides use dotted keys (``optimizer.lr=1e-3``); see :func:`apply_overrides`.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

METRIC_NAMES = ("loss", "accuracy", "sequence_accuracy", "perplexity")

_KEYS = [
    "data",
    "batch",
    "steps",
    "epochs",
    "optimizer",
    "schedule",
    "clip_grad_norm",
    "accumulate",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "metrics",
    "early_stopping",
    "freeze",
    "phases",
    "seed",
]
_PHASE_KEYS = ["loss", "params", "every", "optimizer"]


def did_you_mean(word: object, choices) -> str:
    """`` (did you mean `x`?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def check_keys(section: dict, allowed: list[str] | tuple[str, ...], where: str) -> None:
    """Raise ConfigError for a key not in ``allowed``, suggesting the closest one."""
    for key in section:
        if key not in allowed:
            raise ConfigError(
                f"unknown key `{key}` in {where}{did_you_mean(key, allowed)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )


def as_number(value: Any, where: str, *, kind: type = float, minimum: float | None = None):
    """``value`` as an int or float, or a ConfigError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    try:
        number = float(value)
        if kind is int:
            if number != int(number):
                raise ValueError
            number = int(number)
    except ValueError:
        raise ConfigError(
            f"{where} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{where} must be >= {minimum}, got {value!r}")
    return number


def named_section(value: Any, where: str, default_name: str) -> dict:
    """Accept ``{name: x, ...}`` or the bare string ``x``; return a fresh dict with a name."""
    if value is None:
        return {"name": default_name}
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping like {{name: {default_name}}}, got {value!r}")
    out = dict(value)
    out.setdefault("name", default_name)
    return out


@dataclass
class EarlyStopping:
    metric: str
    patience: int
    mode: str  # "min" | "max"
    min_delta: float = 0.0

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.mode == "max":
            return value > best + self.min_delta
        return value < best - self.min_delta


@dataclass
class Phase:
    """One part of an optimizer step: a forward, the gradient of ``losses`` (weight 1, the
    other losses weight 0), and an update of the parameters ``params`` match, on the steps
    where ``step % every == 0``. ``optimizer`` overrides keys of ``train.optimizer``."""

    losses: list[str]
    params: list[str]
    every: int = 1
    optimizer: dict | None = None

    def runs_at(self, step: int) -> bool:
        return step % self.every == 0


@dataclass
class TrainConfig:
    data: dict
    batch: int = 32
    steps: int | None = None
    epochs: int | None = None
    optimizer: dict = field(default_factory=lambda: {"name": "adamw"})
    schedule: dict = field(default_factory=lambda: {"name": "constant"})
    clip_grad_norm: float | None = None
    accumulate: int = 1
    eval_every: int = 100
    log_every: int | None = None
    checkpoint_every: int | None = None
    metrics: list[str] | None = None  # None: loss (+ accuracy when the data has labels)
    early_stopping: EarlyStopping | None = None
    freeze: list[str] = field(default_factory=list)
    phases: list[Phase] | None = None
    seed: int = 0

    @classmethod
    def from_dict(cls, train: dict | None) -> TrainConfig:
        if not isinstance(train, dict):
            raise ConfigError("the spec has no `train:` section (a mapping with at least `data:`)")
        check_keys(train, _KEYS, "train")
        if "data" not in train:
            raise ConfigError(
                "train.data is missing: say where the data comes from, "
                "e.g. `data: {task: reverse_digits, length: 8}`"
            )
        data = train["data"]
        if not isinstance(data, dict):
            raise ConfigError(f"train.data must be a mapping, got {data!r}")
        cfg = cls(data=copy.deepcopy(data))
        for key in ("batch", "accumulate"):
            if key in train:
                setattr(cfg, key, as_number(train[key], f"train.{key}", kind=int, minimum=1))
        for key in ("steps", "epochs", "log_every", "checkpoint_every"):
            if train.get(key) is not None:
                setattr(cfg, key, as_number(train[key], f"train.{key}", kind=int, minimum=1))
        if cfg.steps is not None and cfg.epochs is not None:
            raise ConfigError("train.steps and train.epochs are both set; keep one")
        if "eval_every" in train:
            cfg.eval_every = as_number(train["eval_every"], "train.eval_every", kind=int, minimum=0)
        if "seed" in train:
            cfg.seed = as_number(train["seed"], "train.seed", kind=int, minimum=0)
        if train.get("clip_grad_norm") is not None:
            cfg.clip_grad_norm = as_number(train["clip_grad_norm"], "train.clip_grad_norm")
            if cfg.clip_grad_norm <= 0:
                raise ConfigError("train.clip_grad_norm must be > 0 (or null to turn it off)")
        cfg.optimizer = named_section(train.get("optimizer"), "train.optimizer", "adamw")
        cfg.schedule = named_section(train.get("schedule"), "train.schedule", "constant")
        if train.get("metrics") is not None:
            metrics = train["metrics"]
            if isinstance(metrics, str):
                metrics = [metrics]
            if not isinstance(metrics, list):
                raise ConfigError(f"train.metrics must be a list, got {metrics!r}")
            for m in metrics:
                if m not in METRIC_NAMES:
                    raise ConfigError(
                        f"unknown metric `{m}` in train.metrics{did_you_mean(m, METRIC_NAMES)}; "
                        f"available: {', '.join(METRIC_NAMES)}"
                    )
            cfg.metrics = list(dict.fromkeys(["loss", *metrics]))
        freeze = train.get("freeze") or []
        if isinstance(freeze, str):
            freeze = [freeze]
        if not isinstance(freeze, list) or not all(isinstance(p, str) for p in freeze):
            raise ConfigError(f"train.freeze must be a list of name patterns, got {freeze!r}")
        cfg.freeze = freeze
        if train.get("early_stopping") is not None:
            cfg.early_stopping = _early_stopping(train["early_stopping"])
        if train.get("phases") is not None:
            cfg.phases = _phases(train["phases"])
        return cfg

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _names(value: Any, where: str, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be {what} or a non-empty list of them, got {value!r}")
    return list(value)


def _phases(section: Any) -> list[Phase]:
    example = "[{loss: d_loss, params: [\"disc.*\"]}, {loss: g_loss, params: [\"gen.*\"]}]"
    if not isinstance(section, list) or not section:
        raise ConfigError(f"train.phases must be a non-empty list like {example}, got {section!r}")
    phases = []
    for i, raw in enumerate(section):
        where = f"train.phases[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping like {{loss: ..., params: [...]}}, "
                              f"got {raw!r}")
        check_keys(raw, _PHASE_KEYS, where)
        for key in ("loss", "params"):
            if key not in raw:
                raise ConfigError(
                    f"{where} has no `{key}`: a phase names the loss(es) it minimizes and "
                    "the parameter patterns it updates"
                )
        losses = _names(raw["loss"], f"{where}.loss", "a loss name")
        params = _names(raw["params"], f"{where}.params", "a parameter name pattern")
        every = as_number(raw.get("every", 1), f"{where}.every", kind=int, minimum=1)
        opt = raw.get("optimizer")
        if isinstance(opt, str):
            opt = {"name": opt}
        elif opt is not None and not isinstance(opt, dict):
            raise ConfigError(f"{where}.optimizer must be a mapping like {{lr: 2e-4}}, got {opt!r}")
        phases.append(Phase(losses, params, every, opt))
    if all(p.every > 1 for p in phases):
        raise ConfigError(
            "train.phases: every phase has `every` > 1, so some steps would do nothing; "
            "let at least one phase run every step"
        )
    return phases


def _early_stopping(section: Any) -> EarlyStopping:
    if not isinstance(section, dict):
        raise ConfigError(f"train.early_stopping must be a mapping, got {section!r}")
    check_keys(section, ["metric", "patience", "mode", "min_delta"], "train.early_stopping")
    base = str(section.get("metric", "val_loss")).removeprefix("val_")
    metric = f"val_{base}"  # always judged on the validation set
    if base not in METRIC_NAMES:
        raise ConfigError(
            f"train.early_stopping.metric `{metric}` is not a metric; use one of "
            + ", ".join(f"val_{m}" for m in METRIC_NAMES)
        )
    mode = section.get("mode", "min" if base in ("loss", "perplexity") else "max")
    if mode not in ("min", "max"):
        raise ConfigError(f"train.early_stopping.mode must be `min` or `max`, got {mode!r}")
    patience = as_number(
        section.get("patience", 5), "train.early_stopping.patience", kind=int, minimum=1
    )
    min_delta = as_number(
        section.get("min_delta", 0.0), "train.early_stopping.min_delta", minimum=0
    )
    return EarlyStopping(metric=metric, patience=patience, mode=mode, min_delta=min_delta)


def parse_value(text: str) -> Any:
    """A command-line override value: JSON when it parses (numbers, lists, true/null), else text."""
    try:
        return json.loads(text)
    except ValueError:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        try:
            return float(text)  # 3e-3, 1e4, inf are not all JSON
        except ValueError:
            return text


def parse_override(item: str) -> tuple[str, Any]:
    """``"optimizer.lr=3e-3"`` -> ``("optimizer.lr", 0.003)``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override `{item}` must look like key=value, e.g. optimizer.lr=3e-3")
    return key.strip(), parse_value(value)


def apply_overrides(train: dict | None, overrides: dict[str, Any] | None) -> dict:
    """A deep copy of ``train`` with dotted-key overrides applied (``{"optimizer.lr": 1e-3}``).

    Setting a key to ``None`` removes it, so the default applies again.
    """
    out = copy.deepcopy(train) if train else {}
    for dotted, value in (overrides or {}).items():
        parts = dotted.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and part in ("optimizer", "schedule"):
                child = {"name": child}  # `optimizer: adam` + `optimizer.lr=...`
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override `{dotted}`: train.{'.'.join(parts[: i + 1])} "
                    f"is {child!r}, not a mapping"
                )
            node[part] = child
            node = child
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return out
