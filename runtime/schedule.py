"""Learning-rate schedules: the rate for optimizer step ``t`` (0-based) of ``total``.

``train.schedule`` keys::

    {name: constant}
    {name: step, step_size: 1000, gamma: 0.1}   # lr * gamma ** (t // step_size)
    {name: cosine, min_lr: 0.0}                 # half cosine from lr down to min_lr at `total`
    {name: linear, min_lr: 0.0}                 # straight line from lr down to min_lr at `total`

Every schedule also takes ``warmup: N``: a linear ramp over the first N steps,
``lr * (t + 1) / N`` (so step 0 already moves), after which the main schedule runs over the
remaining ``total - N`` steps, starting from its own t = 0. A bare name (``schedule: cosine``)
works too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import as_number, check_keys
from .errors import ConfigError

_OPTIONS = {
    "constant": [],
    "step": ["step_size", "gamma"],
    "cosine": ["min_lr"],
    "linear": ["min_lr"],
}


@dataclass(frozen=True)
class Schedule:
    name: str
    lr: float
    total: int
    warmup: int = 0
    step_size: int = 1
    gamma: float = 0.1
    min_lr: float = 0.0

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return self.lr * (t + 1) / self.warmup
        t -= self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, t / span)
        if self.name == "step":
            return self.lr * self.gamma ** (t // self.step_size)
        if self.name == "cosine":
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.name == "linear":
            return self.lr + (self.min_lr - self.lr) * progress
        return self.lr


def make_schedule(section: dict, *, lr: float, total: int) -> Schedule:
    """The schedule for ``train.schedule`` with base rate ``lr`` over ``total`` steps."""
    section = dict(section)
    name = section.pop("name")
    if name not in _OPTIONS:
        raise ConfigError(f"unknown schedule `{name}`; available: {', '.join(_OPTIONS)}")
    check_keys(section, ["warmup", *_OPTIONS[name]], f"train.schedule ({name})")
    where = f"train.schedule.{{}} ({name})"
    kwargs = {}
    if "warmup" in section:
        kwargs["warmup"] = as_number(section["warmup"], where.format("warmup"), kind=int, minimum=0)
    if "step_size" in section:
        kwargs["step_size"] = as_number(
            section["step_size"], where.format("step_size"), kind=int, minimum=1
        )
    if "gamma" in section:
        kwargs["gamma"] = as_number(section["gamma"], where.format("gamma"), minimum=0)
    if "min_lr" in section:
        kwargs["min_lr"] = as_number(section["min_lr"], where.format("min_lr"), minimum=0)
    if name == "step" and "step_size" not in section:
        raise ConfigError("train.schedule (step) needs `step_size` (steps between decays)")
    return Schedule(name=name, lr=float(lr), total=int(total), **kwargs)
