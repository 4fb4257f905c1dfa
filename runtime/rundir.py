"""A run's directory and its endings: resume, checkpoints, failure handling, the summary.

:class:`RunFiles` is the part of :class:`~.trainer.Run` that reads and writes ``out_dir``:

- ``restore`` (resume from ``checkpoint/``: parameters, optimizer state, data position,
  early-stopping state, the metrics rows up to the checkpoint's step) and ``begin``
  (check the parameters, write ``config.json``, rewrite ``metrics.jsonl``);
- ``record`` (append a metrics row) and ``save`` (an atomic checkpoint, see :mod:`.checkpoint`);
- ``fail`` (a NaN/Inf: name the first bad node, keep the last good checkpoint, write the
  summary, raise NonFiniteError) and ``finish`` (``summary.json`` and ``loss.png``).

It holds no state of its own: the attributes it uses are set by ``Run.__init__``. The phases'
optimizer state goes through :func:`.phases.optimizer_state` / :func:`.phases.load_optimizer_state`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import check_params, load_checkpoint, save_checkpoint
from .errors import CheckpointError, NonFiniteError
from .phases import PhaseRun, load_optimizer_state, optimizer_state
from .plot import plot_losses
from .setup import Setup, spec_hash

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"  # the parameters at the best evaluation, with early stopping


class RunFiles:
    """Resume, checkpoint, record and finish a :class:`~.trainer.Run` (a mixin of it)."""

    model: Any
    out: Path
    setup: Setup
    cfg: Any
    overrides: dict
    loader: Any
    total: int
    fingerprint: str
    trainable: list[str]
    phases: list[PhaseRun]
    params: dict[str, np.ndarray]
    step: int
    resumed_from: int | None
    last_saved: int | None
    best: dict
    history: list[dict]
    t0: float
    bar: Any

    # --- start and resume ---------------------------------------------------------------

    def restore(self) -> None:
        ckpt = load_checkpoint(self.out / CHECKPOINT_DIR)
        state = ckpt.state
        if state.get("model_hash") != self.fingerprint:
            raise CheckpointError(
                f"{ckpt.path} was written for a different model ({state.get('model')!r}, hash "
                f"{state.get('model_hash')}); this one is {self.model.name!r}, hash "
                f"{self.fingerprint}"
            )
        self.params = {k: np.array(v) for k, v in ckpt.params.items()}
        load_optimizer_state(
            self.phases, bool(self.cfg.phases), ckpt.optimizer, state["optimizer"], ckpt.path
        )
        self.loader.load_state_dict(state["data"])
        self.step = self.resumed_from = self.last_saved = int(state["step"])
        self.best = state.get("early_stopping", self.best)
        self.history = [
            r for r in read_jsonl(self.out / "metrics.jsonl") if r.get("step", 0) <= self.step
        ]

    def begin(self) -> None:
        """Check the parameters and (re)write config.json and metrics.jsonl."""
        check_params(
            self.model,
            self.params,
            "initial parameters" if self.resumed_from is None else self.out / CHECKPOINT_DIR,
        )
        self.out.mkdir(parents=True, exist_ok=True)
        if self.resumed_from is None and (self.out / BEST_DIR).exists():
            shutil.rmtree(self.out / BEST_DIR)  # a previous run's best, not this one's
        info = {k: v for k, v in self.setup.data.info.items() if k != "chars"}
        config = {
            "model": self.model.name,
            "total_steps": self.total,
            "metrics": self.setup.metrics,
            "data_info": info,
            "train": self.cfg.to_dict(),
            "overrides": self.overrides,
        }
        (self.out / "config.json").write_text(json.dumps(config, indent=2, default=str))
        with open(self.out / "metrics.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in self.history)

    def record(self, row: dict) -> None:
        if row:
            self.history.append(row)
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    # --- checkpoints and endings ----------------------------------------------------------

    def save(self) -> None:
        if not all(np.all(np.isfinite(a)) for a in self.params.values()):
            self.fail("parameters became non-finite")
        arrays, scalars = optimizer_state(self.phases, bool(self.cfg.phases))
        state = {
            "step": self.step,
            "epoch": self.loader.epochs_done,
            "data": self.loader.state_dict(),
            "rng": {"seed": self.cfg.seed, "scheme": "SeedSequence([seed, step, micro])"},
            "model": self.model.name,
            "model_hash": self.fingerprint,
            "spec_hash": spec_hash(self.model),
            "optimizer": scalars,
            "early_stopping": self.best,
            "total_steps": self.total,
        }
        save_checkpoint(self.out / CHECKPOINT_DIR, self.params, arrays, state)
        self.last_saved = self.step

    def fail(self, what: str, inputs: dict | None = None, seed: int = 0) -> None:
        """Stop on a NaN/Inf: name the first bad node, keep the last good checkpoint, raise."""
        node = None
        if inputs is not None:
            node = self.model.first_nonfinite(self.params, inputs, seed=seed)
        message = f"{what} at step {self.step + (inputs is not None)}"
        if node:
            message += f"; the first non-finite value is at node `{node}`"
        if self.last_saved is not None:
            message += (
                f"; the last good checkpoint (step {self.last_saved}) is kept in "
                f"{self.out / CHECKPOINT_DIR}"
            )
        else:
            message += "; no checkpoint had been written yet"
        self.bar.message(message)
        self.finish("nonfinite", message=message, nonfinite_node=node)
        raise NonFiniteError(message, step=self.step, node=node)

    def finish(self, status: str, **extra) -> dict:
        """Write summary.json and loss.png; return the summary."""
        last = next((r for r in reversed(self.history) if "loss" in r), {})
        val = next((r for r in reversed(self.history) if "val_loss" in r), {})
        summary = {
            "model": self.model.name,
            "status": status,
            "steps": self.step,
            "total_steps": self.total,
            "epochs": self.loader.epochs_done,
            "resumed_from": self.resumed_from,
            "trainable_params": int(
                sum(np.prod(self.model.params[n].shape) for n in self.trainable)
            ),
            "time_sec": round(time.perf_counter() - self.t0, 3),
            "metrics": {
                "loss": last.get("loss"),
                **{k: v for k, v in val.items() if k.startswith("val_")},
            },
            "best": {**self.best, "checkpoint": str(self.out / BEST_DIR)}
            if self.best["best_step"] is not None
            else None,
            "checkpoint": str(self.out / CHECKPOINT_DIR) if self.last_saved is not None else None,
            "checkpoint_step": self.last_saved,
            **extra,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        plot_losses(self.history, self.out / "loss.png", title=self.model.name)
        return summary


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl, up to the first line cut short (none if it is missing)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line cut short by a kill: drop it and what follows
    return rows
