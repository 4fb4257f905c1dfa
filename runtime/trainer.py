"""The training loop: ``train(model, out_dir=...)``.

Owns :func:`train` and :class:`Run`'s loop: the optimizer step (``train_step``), logging,
validation and early stopping. The phases and their optimizers (parameter selection,
``train.phases``, optimizer state in checkpoints) are :mod:`.phases`; the run directory
(resume, checkpoints, failure handling, summary) is :class:`.rundir.RunFiles`, a base of Run.

One optimizer step, as :meth:`Run.train_step` does it::

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
``checkpoint/`` (the latest; see :mod:`.checkpoint`), all written by :mod:`.rundir`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import save_checkpoint
from .errors import ConfigError
from .evaluate import evaluate_dataset
from .metrics import MetricTracker
from .optim import clip_by_global_norm, global_norm
from .phases import PhaseRun, build_phases, trainable_params
from .progress import make_progress
from .rundir import BEST_DIR, CHECKPOINT_DIR, RunFiles
from .setup import Setup, model_fingerprint, step_seed

# PhaseRun and CHECKPOINT_DIR live in .phases / .rundir now; still importable from here
__all__ = ["BEST_DIR", "CHECKPOINT_DIR", "PhaseRun", "Run", "train"]


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


class Run(RunFiles):
    """The state of one training run and the steps that change it (its directory, resume,
    checkpoints and endings: :class:`~.rundir.RunFiles`)."""

    def __init__(self, model, out: Path, setup: Setup, overrides: dict | None) -> None:
        self.model, self.out, self.setup, self.cfg = model, out, setup, setup.cfg
        self.overrides = overrides or {}
        self.loader, self.total = setup.data.train, setup.total
        self.fingerprint = model_fingerprint(model)
        self.trainable = trainable_params(model, self.cfg)
        self.phases = build_phases(model, self.cfg, self.trainable, self.total)
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
