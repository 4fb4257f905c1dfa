"""The phases of an optimizer step: which parameters train, and with which optimizer.

Owns the parameter selection (``train.freeze``, each phase's ``params`` patterns), the
resolution of ``train.phases`` into :class:`PhaseRun` objects (its losses and loss weights,
the parameters it updates, its own optimizer and schedule), and the phases' optimizer
state as a checkpoint stores it. Without ``train.phases`` there is a single phase covering
every trainable parameter, with the ``train.optimizer`` section and plain (unweighted)
backward; its optimizer state is stored as the optimizer's own, with no ``phase<i>/`` prefix.
The training loop (:mod:`.trainer`) only runs the phases it is given, in order.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from .config import did_you_mean
from .errors import CheckpointError, ConfigError
from .optim import make_optimizer
from .schedule import make_schedule


@dataclass
class PhaseRun:
    """A phase of the optimizer step, resolved: its losses (None: all, unweighted), the
    parameters it updates, and its own optimizer and schedule."""

    losses: list[str] | None
    names: list[str]
    every: int
    optimizer: Any
    schedule: Any
    weights: dict[str, float] | None

    def runs_at(self, step: int) -> bool:
        return step % self.every == 0


def trainable_params(model, cfg) -> list[str]:
    """The model's trainable parameters minus those ``train.freeze`` matches (in model order)."""
    names = [n for n, p in model.params.items() if p.trainable]
    for pattern in cfg.freeze:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(f"train.freeze pattern `{pattern}` matches no trainable parameter")
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in cfg.freeze)]


def build_phases(model, cfg, trainable: list[str], total: int) -> list[PhaseRun]:
    """The phases of an optimizer step (one covering everything without train.phases),
    each with its own optimizer and schedule."""
    if not cfg.phases:
        return [_phase_run(model, cfg, None, trainable, 1, cfg.optimizer, total)]
    runs = []
    prefixes = sorted({n.split(".")[0] + ".*" for n in trainable})
    for i, phase in enumerate(cfg.phases):
        where = f"train.phases[{i}]"
        for loss in phase.losses:
            if loss not in model.losses:
                raise ConfigError(
                    f"{where}.loss: the model has no loss `{loss}`"
                    f"{did_you_mean(loss, model.losses)}; its losses: "
                    f"{', '.join(model.losses)}"
                )
        chosen: set[str] = set()
        for pattern in phase.params:
            hit = {n for n in trainable if fnmatch.fnmatchcase(n, pattern)}
            if not hit:
                fixed = [n for n in model.params if fnmatch.fnmatchcase(n, pattern)]
                raise ConfigError(
                    f"{where}.params: pattern `{pattern}` matches no trainable parameter"
                    + (
                        f" (only frozen parameters or buffers: {', '.join(fixed[:4])})"
                        if fixed
                        else f"; the parameters are under {', '.join(prefixes)}"
                    )
                )
            chosen |= hit
        names = [n for n in trainable if n in chosen]
        section = dict(cfg.optimizer)
        if phase.optimizer:
            renamed = phase.optimizer.get("name", section["name"]) != section["name"]
            section = {**({} if renamed else section), **phase.optimizer}
        runs.append(_phase_run(model, cfg, phase.losses, names, phase.every, section, total))
    return runs


def _phase_run(
    model, cfg, losses, names: list[str], every: int, section: dict, total: int
) -> PhaseRun:
    optimizer = make_optimizer(section, {n: model.params[n].decay for n in names})
    schedule = make_schedule(cfg.schedule, lr=optimizer.lr, total=total)
    weights = None
    if losses is not None:
        weights = {n: (1.0 if n in losses else 0.0) for n in model.losses}
    return PhaseRun(losses, names, every, optimizer, schedule, weights)


# --- optimizer state in checkpoints ---------------------------------------------------------


def optimizer_state(phases: list[PhaseRun], phased: bool) -> tuple[dict, dict]:
    """Optimizer arrays and scalars; with phases (``phased``: the run has train.phases),
    arrays are ``phase<i>/<slot>/<param>`` and the scalars ``{"phases": [...]}``."""
    if not phased:
        return phases[0].optimizer.state_dict()
    arrays, scalars = {}, []
    for i, phase in enumerate(phases):
        a, s = phase.optimizer.state_dict()
        arrays.update({f"phase{i}/{k}": v for k, v in a.items()})
        scalars.append(s)
    return arrays, {"phases": scalars}


def load_optimizer_state(
    phases: list[PhaseRun], phased: bool, arrays: dict, scalars: dict, path
) -> None:
    """Load what :func:`optimizer_state` saved into ``phases``' optimizers; CheckpointError
    when the checkpoint's phases do not match this run's."""
    saved = scalars.get("phases")
    if not phased:
        if saved is not None:
            raise CheckpointError(
                f"{path} was written by a run with train.phases ({len(saved)}); this run "
                "has none"
            )
        phases[0].optimizer.load_state_dict(arrays, scalars)
        return
    if saved is None or len(saved) != len(phases):
        raise CheckpointError(
            f"{path} was written by a run with "
            f"{'no train.phases' if saved is None else f'{len(saved)} phases'}; this run "
            f"has {len(phases)}"
        )
    for i, phase in enumerate(phases):
        prefix = f"phase{i}/"
        own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        phase.optimizer.load_state_dict(own, saved[i])
