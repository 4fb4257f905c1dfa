"""The training loop: ``train(model, out_dir=...)``.

One optimizer step, as :meth:`Run.step` does it::

    lr = schedule(step)
    for each of `accumulate` micro-batches:
        batch = next training batch                (restorable stream position)
        result = model.forward(params, batch, training=True, seed=step_seed(seed, step, micro))
        grads += model.backward(result)            (stop on a non-finite loss or gradient)
    clip grads to `clip_grad_norm`; optimizer.step(params, grads / accumulate, lr)

With ``train.phases`` (a GAN) the step runs each phase in order, each with its own forward
(seeing the parameters earlier phases just updated), ``model.backward(result, weights=...)``
with weight 1 on its losses and 0 on the others, and its own optimizer over the parameters its
patterns match; the micro-batches (and generated inputs) are the same for every phase.

and around it: a metrics.jsonl row every ``log_every`` steps, validation and early stopping
every ``eval_every``, an atomic checkpoint every ``checkpoint_every``. Everything random derives
from ``train.seed`` and the step number (data order, generated batches, the forward seed for
dropout), so resuming from a checkpoint continues exactly as if the run had never stopped.

Run directory: ``config.json`` (resolved train config), ``metrics.jsonl`` (one JSON object per
logged step), ``summary.json`` (status and final metrics, incl. ``val_*``), ``loss.png`` and
``checkpoint/`` (the latest; see :mod:`.checkpoint`).
"""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import check_params, load_checkpoint, save_checkpoint
from .config import did_you_mean
from .errors import CheckpointError, ConfigError, NonFiniteError
from .evaluate import evaluate_dataset
from .metrics import MetricTracker
from .optim import clip_by_global_norm, global_norm, make_optimizer
from .plot import plot_losses
from .progress import make_progress
from .schedule import make_schedule
from .setup import Setup, model_fingerprint, spec_hash, step_seed

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"  # the parameters at the best evaluation, with early stopping


def train(
    model,
    *,
    out_dir: str | Path,
    overrides: dict | None = None,
    resume: bool = False,
    progress: Any = "auto",
    base_dir: str | Path | None = None,
    max_steps: int | None = None,
) -> dict:
    """Train ``model`` as its ``train:`` section says; return the summary dict.

    overrides: dotted keys over the spec's train section, e.g. ``{"optimizer.lr": 1e-3}``.
    resume: continue from ``out_dir/checkpoint`` (CheckpointError if there is none); the
        current train section applies, so a finished run can be extended with more steps.
        Without ``resume``, an existing run in ``out_dir`` is started over.
    progress: "auto" | "rich" | "plain" | "none", or a :class:`~.progress.Progress`.
    base_dir: where relative data file paths are resolved (the spec's directory).
    max_steps: stop this invocation after that many steps (checkpointed, status "stopped",
        resumable); the schedule still spans the configured total.
    Raises ConfigError/DataError/CheckpointError on bad input, NonFiniteError on NaN/Inf.
    """
    if not model.losses:
        raise ConfigError(
            f"model {model.name!r} lists no losses: there is nothing to train "
            "(add `losses: [...]` to the spec)"
        )
    run = Run(model, Path(out_dir), Setup.create(model, overrides, base_dir), overrides)
    if resume:
        run.restore()
    run.begin()
    return run.loop(max_steps, make_progress(progress))


class Run:
    """The state of one training run and the steps that change it."""

    def __init__(self, model, out: Path, setup: Setup, overrides: dict | None) -> None:
        self.model, self.out, self.setup, self.cfg = model, out, setup, setup.cfg
        self.overrides = overrides or {}
        self.loader, self.total = setup.data.train, setup.total
        self.fingerprint = model_fingerprint(model)
        self.trainable = self._trainable()
        self.phases = self._phases()
        if self.cfg.phases:  # only what some phase updates is trained
            updated = {n for ph in self.phases for n in ph.names}
            self.trainable = [n for n in self.trainable if n in updated]
        self.log_every = self.cfg.log_every or max(1, self.total // 200)
        self.eval_every = self.cfg.eval_every
        self.ckpt_every = self.cfg.checkpoint_every or (
            self.eval_every if self.eval_every > 0 else max(1, self.total // 10)
        )
        self.params = model.init_params(self.cfg.seed)
        self.step = 0
        self.resumed_from: int | None = None
        self.last_saved: int | None = None
        self.best = {"best": None, "best_step": None, "bad_evals": 0}  # early stopping
        self.history: list[dict] = []
        self.t0 = time.perf_counter()
        self.bar = make_progress("none")

    def _trainable(self) -> list[str]:
        names = [n for n, p in self.model.params.items() if p.trainable]
        for pattern in self.cfg.freeze:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(
                    f"train.freeze pattern `{pattern}` matches no trainable parameter"
                )
        return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in self.cfg.freeze)]

    def _phases(self) -> list[PhaseRun]:
        """The phases of an optimizer step (one covering everything without train.phases),
        each with its own optimizer and schedule."""
        cfg, model = self.cfg, self.model
        if not cfg.phases:
            return [self._phase_run(None, self.trainable, 1, cfg.optimizer)]
        runs = []
        prefixes = sorted({n.split(".")[0] + ".*" for n in self.trainable})
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
                hit = {n for n in self.trainable if fnmatch.fnmatchcase(n, pattern)}
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
            names = [n for n in self.trainable if n in chosen]
            section = dict(cfg.optimizer)
            if phase.optimizer:
                renamed = phase.optimizer.get("name", section["name"]) != section["name"]
                section = {**({} if renamed else section), **phase.optimizer}
            runs.append(self._phase_run(phase.losses, names, phase.every, section))
        return runs

    def _phase_run(self, losses, names: list[str], every: int, section: dict) -> PhaseRun:
        optimizer = make_optimizer(section, {n: self.model.params[n].decay for n in names})
        schedule = make_schedule(self.cfg.schedule, lr=optimizer.lr, total=self.total)
        weights = None
        if losses is not None:
            weights = {n: (1.0 if n in losses else 0.0) for n in self.model.losses}
        return PhaseRun(losses, names, every, optimizer, schedule, weights)

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
        self._load_optimizers(ckpt.optimizer, state["optimizer"], ckpt.path)
        self.loader.load_state_dict(state["data"])
        self.step = self.resumed_from = self.last_saved = int(state["step"])
        self.best = state.get("early_stopping", self.best)
        self.history = [
            r for r in _read_jsonl(self.out / "metrics.jsonl") if r.get("step", 0) <= self.step
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

    # --- the loop -------------------------------------------------------------------------

    def loop(self, max_steps: int | None, bar) -> dict:
        self.bar = bar
        stop_at = self.total if max_steps is None else min(self.total, self.step + max_steps)
        status = "completed"
        bar.start(self.total, self.step)
        try:
            window = (time.perf_counter(), 0)
            while self.step < stop_at:
                logging = (self.step + 1) % self.log_every == 0 or self.step + 1 == self.total
                tracker, norm, lr, samples = self.train_step(logging)
                self.step += 1
                window = (window[0], window[1] + samples)
                row: dict[str, Any] = {}
                if logging:
                    now = time.perf_counter()
                    row = {
                        "step": self.step,
                        "epoch": round(self.loader.epochs_done, 4),
                        "lr": lr,
                        **tracker.result(),
                        "grad_norm": norm,
                        "samples_per_sec": window[1] / max(now - window[0], 1e-9),
                        "time": round(now - self.t0, 3),
                    }
                    window = (now, 0)
                stop = False
                if self.eval_every and (
                    self.step % self.eval_every == 0 or self.step == self.total
                ):
                    stop = self.validate(row)
                self.record(row)
                bar.update(
                    self.step, {"loss": tracker.result()["loss"], "lr": lr, "samples": samples}
                )
                if stop:
                    es = self.cfg.early_stopping
                    bar.message(
                        f"early stopping at step {self.step}: {es.metric} has not "
                        f"improved for {es.patience} evaluations (best "
                        f"{self.best['best']} at step {self.best['best_step']})"
                    )
                    status = "early_stopped"
                    break
                if self.step % self.ckpt_every == 0 and self.step < stop_at:
                    self.save()
            if status == "completed" and self.step < self.total:
                status = "stopped"  # max_steps reached; resume to continue
            if not any("val_loss" in r and r["step"] == self.step for r in self.history):
                final: dict[str, Any] = {}
                self.validate(final, judge=False)  # a run that stopped between evaluations
                self.record(final)
            self.save()
        except KeyboardInterrupt:
            self.finish("interrupted")
            raise
        finally:
            bar.close()
        return self.finish(status)

    def train_step(self, logging: bool) -> tuple[MetricTracker, float, float, int]:
        """One optimizer step over `accumulate` micro-batches, phase by phase; returns
        (metrics, grad norm, lr, samples seen)."""
        model, cfg = self.model, self.cfg
        tracker = MetricTracker(self.setup.metrics if logging else ["loss"])
        raws = [self.loader.next_batch() for _ in range(cfg.accumulate)]
        # per micro-batch: each loss as its own phase saw it (before its update), else as
        # the step's first forward saw it; the first forward's outputs
        own: list[dict[str, float]] = [{} for _ in raws]
        first: list[dict[str, float] | None] = [None for _ in raws]
        logits: list[np.ndarray | None] = [None for _ in raws]
        norms, lrs = [], []
        for index, phase in enumerate(self.phases):
            if not phase.runs_at(self.step):
                continue
            lr = phase.schedule(self.step)
            lrs.append(lr)
            grads: dict[str, np.ndarray] = {}
            for micro, raw in enumerate(raws):
                inputs = self.setup.feed(raw, key=(0, self.step, micro))
                seed = step_seed(cfg.seed, self.step, micro, index)
                result = model.forward(self.params, inputs, training=True, seed=seed)
                loss = float(sum(result.losses.values()))
                if not math.isfinite(loss):
                    self.fail(f"non-finite loss ({loss})", inputs, seed)
                if phase.weights is None:
                    g = model.backward(result)
                else:
                    g = model.backward(result, weights=phase.weights)
                g = {n: g[n] for n in phase.names if n in g}
                g_norm = global_norm(g)
                if not math.isfinite(g_norm):
                    self.fail(f"non-finite gradient ({g_norm})", inputs, seed)
                for n, gn in g.items():
                    if n in grads:
                        grads[n] += gn
                    else:
                        grads[n] = np.array(gn, np.float32)
                if first[micro] is None:
                    first[micro] = dict(result.losses)
                    out = result.outputs.get(model.outputs[0]) if model.outputs else None
                    logits[micro] = np.array(out) if out is not None and logging else out
                for name, value in result.losses.items():
                    if phase.losses is None or name in phase.losses:
                        own[micro].setdefault(name, value)
            if cfg.accumulate > 1:
                for a in grads.values():
                    a /= np.float32(cfg.accumulate)
            if cfg.clip_grad_norm is not None:
                norms.append(clip_by_global_norm(grads, cfg.clip_grad_norm))
            else:
                norms.append(global_norm(grads))
            phase.optimizer.step(self.params, grads, lr)
        samples = 0
        for micro, raw in enumerate(raws):
            losses = {name: own[micro].get(name, v) for name, v in first[micro].items()}
            tracker.add(logits[micro], losses, self.setup.feed.view(raw))
            samples += len(next(iter(raw.values())))
        norm = float(np.sqrt(sum(n * n for n in norms)))
        return tracker, norm, lrs[0], samples

    def validate(self, row: dict, *, judge: bool = True) -> bool:
        """Add val_* metrics to ``row`` (in place). With ``judge``, early stopping weighs them
        (keeping the best parameters in ``best/``); True when it says stop."""
        val_set = self.setup.data.val
        if val_set is None:
            return False
        val = evaluate_dataset(
            self.model,
            self.params,
            val_set,
            self.setup.feed,
            self.setup.metrics,
            self.cfg.batch,
            self.cfg.seed,
        )
        row.update({"step": self.step, **{f"val_{k}": v for k, v in val.items()}})
        self.bar.message(
            f"step {self.step}: " + "  ".join(f"val_{k} {v:.4f}" for k, v in val.items())
        )
        es = self.cfg.early_stopping
        if es is None or not judge:
            return False
        value = row[es.metric]
        if math.isfinite(value) and es.improved(value, self.best["best"]):
            self.best = {"best": value, "best_step": self.step, "bad_evals": 0}
            state = {
                "step": self.step,
                "model": self.model.name,
                "model_hash": self.fingerprint,
                es.metric: value,
            }
            save_checkpoint(self.out / BEST_DIR, self.params, {}, state)
            return False
        self.best["bad_evals"] += 1
        return self.best["bad_evals"] >= es.patience

    def record(self, row: dict) -> None:
        if row:
            self.history.append(row)
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    # --- checkpoints and endings ----------------------------------------------------------

    def save(self) -> None:
        if not all(np.all(np.isfinite(a)) for a in self.params.values()):
            self.fail("parameters became non-finite")
        arrays, scalars = self._optimizer_state()
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

    def _optimizer_state(self) -> tuple[dict, dict]:
        """Optimizer arrays and scalars; with phases, arrays are ``phase<i>/<slot>/<param>``
        and the scalars ``{"phases": [...]}``."""
        if not self.cfg.phases:
            return self.phases[0].optimizer.state_dict()
        arrays, scalars = {}, []
        for i, phase in enumerate(self.phases):
            a, s = phase.optimizer.state_dict()
            arrays.update({f"phase{i}/{k}": v for k, v in a.items()})
            scalars.append(s)
        return arrays, {"phases": scalars}

    def _load_optimizers(self, arrays: dict, scalars: dict, path) -> None:
        saved = scalars.get("phases")
        if not self.cfg.phases:
            if saved is not None:
                raise CheckpointError(
                    f"{path} was written by a run with train.phases ({len(saved)}); this run "
                    "has none"
                )
            self.phases[0].optimizer.load_state_dict(arrays, scalars)
            return
        if saved is None or len(saved) != len(self.phases):
            raise CheckpointError(
                f"{path} was written by a run with "
                f"{'no train.phases' if saved is None else f'{len(saved)} phases'}; this run "
                f"has {len(self.phases)}"
            )
        for i, phase in enumerate(self.phases):
            prefix = f"phase{i}/"
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            phase.optimizer.load_state_dict(own, saved[i])

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


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line cut short by a kill: drop it and what follows
    return rows
