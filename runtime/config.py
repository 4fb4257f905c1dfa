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
      init_from: {file: weights.safetensors, map: {logits: head}, strict: true}
      seed: 0

Every key, its type, default, limits and doc live in one table, graphc.spec.train_schema
(shared with `graphc check`, lint and the JSON Schema); :meth:`TrainConfig.from_dict` checks a
section against it and raises the first problem as a one-line ConfigError. Overrides use dotted
keys (``optimizer.lr=1e-3``); see :func:`apply_overrides`.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from graphc.spec import train_schema as schema
from graphc.spec.train_schema import METRIC_NAMES, OPTIMIZER, SCHEDULE, TRAIN

from .errors import ConfigError

__all__ = ["METRIC_NAMES", "EarlyStopping", "Phase", "TrainConfig", "apply_overrides",
           "as_number", "check_keys", "did_you_mean", "named_section", "parse_override",
           "parse_value"]


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


def as_number(
    value: Any,
    where: str,
    *,
    kind: type = float,
    minimum: float | None = None,
    maximum: float | None = None,
):
    """``value`` as a finite int or float, or a ConfigError naming ``where``."""
    number = schema.as_float(value)
    if number is None:
        raise ConfigError(
            f"{where} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        )
    if not math.isfinite(number):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if kind is int:
        if not number.is_integer():
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        number = value if isinstance(value, int) else int(number)
    if minimum is not None and number < minimum:
        raise ConfigError(f"{where} must be >= {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{where} must be <= {maximum}, got {value!r}")
    return number


def named_section(value: Any, where: str, default_name: str) -> dict:
    """Accept ``{name: x, ...}`` or the bare string ``x``; return a fresh dict with a name."""
    out = schema.named(value, OPTIMIZER, default_name)
    if out is None:
        raise ConfigError(f"{where} must be a mapping like {{name: {default_name}}}, got {value!r}")
    return out


def _default(name: str) -> Any:
    return copy.deepcopy(TRAIN.key(name).default)


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
    """The ``train:`` section, checked against graphc.spec.train_schema, defaults filled in."""

    data: dict
    batch: int = _default("batch")
    steps: int | None = None  # neither steps nor epochs: 1000 steps (see runtime.setup)
    epochs: int | None = None
    optimizer: dict = field(default_factory=lambda: _default("optimizer"))
    schedule: dict = field(default_factory=lambda: _default("schedule"))
    clip_grad_norm: float | None = None
    accumulate: int = _default("accumulate")
    eval_every: int = _default("eval_every")
    log_every: int | None = None
    checkpoint_every: int | None = None
    metrics: list[str] | None = None  # None: loss (+ accuracy when the data has labels)
    early_stopping: EarlyStopping | None = None
    freeze: list[str] = field(default_factory=lambda: _default("freeze"))
    phases: list[Phase] | None = None
    init_from: dict | None = None  # {file, map, strict}: see graphc.runtime.init_from
    seed: int = _default("seed")

    @classmethod
    def from_dict(cls, train: dict | None) -> TrainConfig:
        if not isinstance(train, dict):
            raise ConfigError("the spec has no `train:` section (a mapping with at least `data:`)")
        if "data" not in train:
            raise ConfigError(
                "train.data is missing: say where the data comes from, "
                "e.g. `data: {task: reverse_digits, length: 8}`"
            )
        problems = schema.validate(train, require_source=False)
        if problems:
            raise ConfigError(problems[0].text)
        cfg = cls(data=copy.deepcopy(train["data"]))
        for key in TRAIN.keys:
            if key.type in ("int", "float") and train.get(key.name) is not None:
                setattr(cfg, key.name, schema.coerce(key, train[key.name]))
        cfg.optimizer = named_section(train.get("optimizer"), "train.optimizer",
                                      OPTIMIZER.default_variant)
        cfg.schedule = schema.named(train.get("schedule"), SCHEDULE)
        if train.get("metrics") is not None:
            metrics = train["metrics"]
            metrics = [metrics] if isinstance(metrics, str) else metrics
            cfg.metrics = list(dict.fromkeys(["loss", *metrics]))
        freeze = train.get("freeze") or []
        cfg.freeze = [freeze] if isinstance(freeze, str) else list(freeze)
        if train.get("early_stopping") is not None:
            cfg.early_stopping = _early_stopping(train["early_stopping"])
        if train.get("phases") is not None:
            cfg.phases = [_phase(raw) for raw in train["phases"]]
        if train.get("init_from") is not None:
            from .init_from import check_section

            cfg.init_from = check_section(train["init_from"])
        return cfg

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _names(value: str | list) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _phase(raw: dict) -> Phase:
    """One entry of train.phases (already checked against the schema)."""
    every = schema.coerce(schema.PHASE.key("every"), raw.get("every", 1))
    opt = raw.get("optimizer")
    if isinstance(opt, str):
        opt = {"name": opt}
    return Phase(_names(raw["loss"]), _names(raw["params"]), every, opt)


def _early_stopping(section: dict) -> EarlyStopping:
    """train.early_stopping (already checked against the schema), judged on the validation set."""
    sec = schema.EARLY_STOPPING
    base = section.get("metric", sec.key("metric").default).removeprefix("val_")
    mode = section.get("mode", "min" if base in ("loss", "perplexity") else "max")
    patience = schema.coerce(sec.key("patience"), section.get("patience", sec.key("patience").default))
    min_delta = schema.coerce(
        sec.key("min_delta"), section.get("min_delta", sec.key("min_delta").default)
    )
    return EarlyStopping(metric=f"val_{base}", patience=patience, mode=mode, min_delta=min_delta)


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
        error = schema.set_dotted(out, dotted, value)
        if error:
            raise ConfigError(error)
    return out
