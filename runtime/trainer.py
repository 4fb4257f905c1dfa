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

Before anything big is allocated, :class:`.setup.Setup` checks the step's memory against the
budget (:mod:`.budget`). During the loop, the first Ctrl-C (SIGINT) asks the run to stop after
the current step: it saves a checkpoint, writes ``summary.json`` with status ``interrupted`` and
returns (a second Ctrl-C stops at once, keeping the previous checkpoint). A loss that is not
finite, or that exceeds ``DIVERGED_RATIO`` times the first step's (at least 1), stops the run
(NonFiniteError) with the last good checkpoint kept.

Resume and the schedule's horizon: ``resume=True`` continues the run in ``out_dir`` with the
overrides it was started with (``config.json``), the new ones on top. So ``--resume RUN`` alone
continues to the step count the run was started for, and ``--resume RUN --steps N`` continues
*the same schedule* to step N: the learning rate of every remaining step is the one a straight
N-step run has at that step. A run stopped early (Ctrl-C, kill, ``max_steps``) and resumed to its
N therefore equals the straight N-step run bit for bit, whatever the schedule. Extending a run
that *finished* M < N steps cannot rewrite the M steps it took on its own horizon: for schedules
that depend on the horizon (cosine, linear) the rate moves at step M to where the N-step schedule
is at step M (a notice says so); constant and step schedules are unaffected, so there too the
result equals the straight N-step run.

Run directory: ``config.json`` (resolved train config), ``metrics.jsonl`` and ``metrics.csv``
(one row per logged step), ``summary.json`` (status, final metrics incl. ``val_*``, steady-state
throughput), ``loss.png``, ``checkpoint/`` (the latest; see :mod:`.checkpoint`), ``best/`` (the
best evaluation by the early-stopping metric, else val_loss) and ``tensorboard/`` (with
tensorboardX), all written by :mod:`.rundir`; the header printed before the first step is
:func:`.runlog.describe_run`.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .budget import Budget, fmt_bytes
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import world
from .errors import ConfigError, DataError, ResourceError
from .evaluate import evaluate_dataset
from .metrics import MetricTracker
from .optim import clip_by_global_norm, global_norm, kernel_jobs
from .phases import PhaseRun, build_phases, trainable_params
from .progress import CACHED, COMPILING, make_progress
from .rundir import BEST_DIR, CHECKPOINT_DIR, LOCK_FILE, RunFiles, claim
from .runlog import describe_run
from .setup import Setup, model_fingerprint, step_seed

DIVERGED_RATIO = 1e6  # |loss| above this many times the first step's (and above 1e6): diverged
HORIZON_SCHEDULES = ("cosine", "linear")  # schedules whose rates depend on the total steps

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
    max_memory: int | str | None = None,
    existing: str = "overwrite",
    handle_sigint: bool = True,
) -> dict:
    """Train ``model`` as its ``train:`` section says; return the summary dict.

    overrides: dotted keys over the spec's train section, e.g. ``{"optimizer.lr": 1e-3}``.
    resume: continue from ``out_dir/checkpoint`` (CheckpointError if there is none) with the
        overrides the run was started with, these on top: ``{"steps": N}`` continues the same
        schedule to step N (see the module docstring).
    progress: "auto" | "rich" | "plain" | "none", or a :class:`~.progress.Progress`.
    base_dir: where relative data file paths are resolved (the spec's directory).
    max_steps: stop this invocation after that many steps (checkpointed, status "stopped",
        resumable); the schedule still spans the configured total.
    max_memory: a memory limit (bytes, or "2GB") below the machine's available memory.
    existing: when ``out_dir`` already holds a run (and not ``resume``): "overwrite" starts
        over there (removing the earlier run's files), "version" trains into ``out_dir-2``
        (``-3``, ...), "error" refuses. ``summary["out_dir"]`` says where the run went.
    handle_sigint: the first Ctrl-C stops after the current step with a checkpoint (status
        "interrupted"); only in the main thread.
    Raises ConfigError/DataError/CheckpointError/ResourceError/RunDirError on bad input,
    NonFiniteError on NaN/Inf or a diverged loss.
    """
    if not model.losses:
        raise ConfigError(
            f"model {model.name!r} lists no losses: there is nothing to train "
            "(add `losses: [...]` to the spec)"
        )
    ranks = world()  # one process, or this rank of an MPI job (only rank 0 writes and prints)
    bar = make_progress(progress if ranks.root else "none")
    requested = Path(out_dir)
    overrides = dict(overrides or {})
    saved_total = None
    if resume:
        ckpt = load_checkpoint(requested / CHECKPOINT_DIR)
        saved_total = ckpt.state.get("total_steps")
        overrides = _resumed_overrides(requested, ckpt, overrides)
    try:
        setup = Setup.create(model, overrides, base_dir, budget=Budget.detect(max_memory))
        ranks.check_batch(setup.cfg.batch)
        run = Run(model, requested, setup, overrides)
        run.params = setup.initial_params(model, run.params, resume)  # train.init_from
        # a cold start compiles here, saying so
        ready = _warm(model, bar, ranks.parallel, kernel_jobs([phase.optimizer for phase in run.phases]))
        with contextlib.nullcontext() if ready else bar.slow(COMPILING + CACHED):
            setup.check_outputs(model, run.params)  # memory of the outputs, labels in range
    except MemoryError:
        raise ResourceError(
            "ran out of memory while preparing the run (data, parameters); nothing was "
            "written; lower train.batch or the data's size, or free memory"
        ) from None
    if ranks.root:
        out, lock = claim(requested, resume=resume, existing=existing)  # nothing written before
    else:
        out, lock = requested, contextlib.nullcontext()
    try:
        if out != requested:
            bar.notice(
                f"{requested} holds an earlier run; this one goes to {out} (--overwrite reuses {requested})"
            )
        run.out, run.bar = out, bar
        if resume:
            run.restore()
            _resume_notice(run, saved_total)
        ranks.check_identical(run.params, "at the start")
        run.begin(overwrite=existing == "overwrite")
        bar.header(*describe_run(run))
        return run.loop(max_steps, bar, handle_sigint)
    except BaseException:
        if ranks.root and not resume and out != requested and _only_lock(out):
            lock.release()
            (out / LOCK_FILE).unlink(missing_ok=True)
            out.rmdir()  # the versioned directory this run made and never used
        raise
    finally:
        if ranks.root:
            lock.release()


def _warm(model, bar, parallel: bool, optimizer_jobs: list) -> bool:
    """Compile (or load) the step's kernels before the probe forward: on a cold start in
    parallel helper processes, with a notice and an estimate. True when nothing is left to
    compile at the first calls; then a slow first step is not announced as compiling either."""
    warm = getattr(model, "warm", None)
    if warm is None:
        return False
    # MPI ranks already keep every core busy: each compiles in its own process
    report = warm(say=bar.message, processes=0 if parallel else None, extra=optimizer_jobs)
    if not report.uncovered:  # a slow first step is a busy machine, not a compile
        bar.slow_start = None
    return not report.uncovered


def _only_lock(out: Path) -> bool:
    try:
        return all(p.name == LOCK_FILE for p in out.iterdir())
    except OSError:
        return False


def _resumed_overrides(out: Path, ckpt, overrides: dict) -> dict:
    """The overrides a resumed run continues with: those it was started with (config.json),
    then ``overrides``. Without a readable config.json, the checkpoint's step total stands in
    for the original ``steps``."""
    try:
        saved = json.loads((out / "config.json").read_text()).get("overrides")
    except (OSError, ValueError, AttributeError):
        saved = None
    if isinstance(saved, dict):
        return {**saved, **overrides}
    total = ckpt.state.get("total_steps")
    if "steps" not in overrides and "epochs" not in overrides and isinstance(total, int):
        return {**overrides, "steps": total, "epochs": None}
    return overrides


def _resume_notice(run: Run, saved_total) -> None:
    k, n = run.step, run.total
    if k > n:
        raise ConfigError(
            f"{run.out / CHECKPOINT_DIR} is at step {k}, past the {n} steps asked for; "
            f"resume with --steps {k} or more"
        )
    text = f"resuming at step {k} of {n}"
    name = run.cfg.schedule.get("name")
    if isinstance(saved_total, int) and saved_total != n and name in HORIZON_SCHEDULES:
        text += (
            f" (the {name} schedule now spans {n} steps instead of {saved_total}: from step "
            f"{k} the rate follows a straight {n}-step run)"
        )
    run.bar.notice(text)


class Run(RunFiles):
    """The state of one training run and the steps that change it (its directory, resume,
    checkpoints and endings: :class:`~.rundir.RunFiles`)."""

    def __init__(self, model, out: Path, setup: Setup, overrides: dict | None) -> None:
        self.model, self.out, self.setup, self.cfg = model, out, setup, setup.cfg
        self.world = world()
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
        # the best evaluation (best/) and early stopping's count of evaluations since
        self.best = {"metric": self.best_rule().metric, "best": None, "best_step": None,
                     "bad_evals": 0}  # fmt: skip
        self.history: list[dict] = []
        self.t0 = time.perf_counter()
        self.bar = make_progress("none")
        self.first_loss: float | None = None  # |loss| of the run's first step (divergence)
        self.rewrite_metrics = False
        self.stop_requested = False  # set by the first Ctrl-C

    # --- the loop -------------------------------------------------------------------------

    def loop(self, max_steps: int | None, bar, handle_sigint: bool = False) -> dict:
        self.bar = bar
        previous = self._catch_sigint() if handle_sigint else None
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                return self._loop(max_steps, bar)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _thread_governor(self):
        """1 or all kernel threads, whichever makes steps faster now (graphc.kernels.threads);
        fixed when the user chose a count, and under MPI (a rank's step time includes
        waiting for the others)."""
        from graphc.kernels.threads import ThreadGovernor, chosen_by_user, get_threads

        fixed = chosen_by_user() or self.world.parallel
        return ThreadGovernor(1 if fixed else get_threads())

    def _catch_sigint(self):
        """The first Ctrl-C asks for a stop after the current step; the second raises."""
        if threading.current_thread() is not threading.main_thread():
            return None
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return None  # started in the background (nohup, `&`): keep ignoring it

        def on_sigint(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True

        return signal.signal(signal.SIGINT, on_sigint)

    def _loop(self, max_steps: int | None, bar) -> dict:
        stop_at = self.total if max_steps is None else min(self.total, self.step + max_steps)
        status = "completed"
        bar.start(self.total, self.step)
        try:
            window = (time.perf_counter(), 0)  # the speed of the steps since the last row
            first = self.step
            governor = self._thread_governor()
            while self.step < stop_at:
                logging = (self.step + 1) % self.log_every == 0 or self.step + 1 == self.total
                with governor.step():
                    tracker, norm, lr, samples = self.train_step(logging)
                self.step += 1
                window = (window[0], window[1] + samples)
                if self.step == first + 1 and not logging:  # kernels load or compile in it
                    window = (time.perf_counter(), 0)
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
                    if self.world.parallel:  # the communication share of the logged steps
                        row["allreduce_sec"] = round(self.world.allreduce_seconds, 6)
                        self.world.allreduce_seconds = 0.0
                    window = (now, 0)
                stop = False
                if self.eval_every and (self.step % self.eval_every == 0 or self.step == self.total):
                    stop = self.validate(row)
                self.record(row)
                bar.update(self.step, {"loss": tracker.result()["loss"], "lr": lr, "samples": samples})
                if stop:
                    es = self.cfg.early_stopping
                    bar.message(
                        f"early stopping at step {self.step}: {es.metric} has not "
                        f"improved for {es.patience} evaluations (best "
                        f"{_fmt_metric(self.best['best'])} at step {self.best['best_step']})"
                    )
                    status = "early_stopped"
                    break
                if self.world.agree(self.stop_requested):  # every rank stops at the same step
                    status = "interrupted"
                    break
                if self.step % self.ckpt_every == 0 and self.step < stop_at:
                    self.save()
            if status == "completed" and self.step < self.total:
                status = "stopped"  # max_steps reached; resume to continue
            if status != "interrupted" and not any(
                "val_loss" in r and r["step"] == self.step for r in self.history
            ):
                final: dict[str, Any] = {}
                self.validate(final, judge=False)  # a run that stopped between evaluations
                self.record(final)
            if self.last_saved != self.step:
                self.save()
            if status == "interrupted":
                bar.notice(
                    f"interrupted: stopped at step {self.step} of {self.total}; the checkpoint "
                    f"is saved, continue with --resume {self.out}"
                )
        except MemoryError:  # despite the estimate (other processes, fragmentation)
            self.out_of_memory()
        except (KeyboardInterrupt, SystemError) as err:
            # a second Ctrl-C (or one raised inside a kernel call, which numba may wrap in a
            # SystemError): the step in flight is lost, the last checkpoint is kept
            if isinstance(err, SystemError) and not self.stop_requested:
                raise
            self.finish("interrupted")
            raise KeyboardInterrupt from None
        finally:
            bar.close()
            self.close_logs()
        return self.finish(status)

    def out_of_memory(self) -> None:
        """A MemoryError despite the estimate: keep the last checkpoint, say so, stop."""
        self.history = self.history[-1000:]
        kept = (
            f"the last checkpoint (step {self.last_saved}) is kept in {self.out / CHECKPOINT_DIR}"
            if self.last_saved is not None
            else "no checkpoint had been written yet"
        )
        estimate = self.setup.estimate
        message = (
            f"ran out of memory at step {self.step + 1}"
            + (f" (estimated {fmt_bytes(estimate.total)} per step)" if estimate else "")
            + f"; {kept}; lower train.batch or --max-memory, or free memory"
        )
        self.finish("out_of_memory", message=message)
        raise ResourceError(message)

    def check_loss(self, loss: float, inputs: dict, seed: int) -> None:
        """Stop on a non-finite loss, or one that exploded without reaching inf."""
        if not math.isfinite(loss):
            self.fail(f"non-finite loss ({loss})", inputs, seed)
        if self.first_loss is None:
            self.first_loss = abs(loss)
        limit = DIVERGED_RATIO * max(self.first_loss, 1.0)
        if abs(loss) > limit:
            self.fail(
                "loss diverged",
                inputs,
                seed,
                status="diverged",
                detail=(
                    f": {loss:.4g} is more than {DIVERGED_RATIO:.0e} times the first step's "
                    f"loss ({self.first_loss:.4g})"
                ),
            )

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
                # every rank feeds the global batch and computes its own shard of it
                inputs = self.world.shard(self.setup.feed(raw, key=(0, self.step, micro)))
                seed = step_seed(cfg.seed, self.step, micro, index, self.world.rank)
                try:
                    result = model.forward(self.params, inputs, training=True, seed=seed)
                except IndexError as err:  # a kernel's bounds check: a label or token id
                    raise DataError(
                        f"step {self.step + 1}: the model cannot take a batch of "
                        f"{self.setup.feed.source}: {err}"
                    ) from None
                loss = float(sum(result.losses.values()))
                self.check_loss(loss, inputs, seed)
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
            self.world.average(grads)  # the shards' mean: the one-process batch's gradient
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
            tracker.add(logits[micro], losses, self.world.shard(self.setup.feed.view(raw)))
            samples += len(next(iter(raw.values())))
        self.world.add_up(tracker)  # metrics over the global batch
        norm = float(np.sqrt(sum(n * n for n in norms)))
        return tracker, norm, lrs[0], samples

    def validate(self, row: dict, *, judge: bool = True) -> bool:
        """Add val_* metrics to ``row`` (in place). With ``judge`` (every regular evaluation;
        not the extra one of a run stopped between them), keep the parameters in ``best/``
        when the best metric improved (:meth:`best_rule`) and let early stopping weigh them;
        True when it says stop."""
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
            self.world,
        )
        row.update({"step": self.step, **{f"val_{k}": v for k, v in val.items()}})
        self.bar.message(f"step {self.step}: " + "  ".join(f"val_{k} {v:.4f}" for k, v in val.items()))
        es, rule = self.cfg.early_stopping, self.best_rule()
        if not judge or not isinstance(row.get(rule.metric), int | float):
            return False
        value = row[rule.metric]
        if math.isfinite(value) and rule.improved(value, self.best["best"]):
            self.best = {"metric": rule.metric, "best": value, "best_step": self.step,
                         "bad_evals": 0}  # fmt: skip
            state = {
                "step": self.step,
                "model": self.model.name,
                "model_hash": self.fingerprint,
                rule.metric: value,
            }
            if self.world.root:
                save_checkpoint(self.out / BEST_DIR, self.params, {}, state)
            return False
        self.best["bad_evals"] += 1
        return es is not None and self.best["bad_evals"] >= es.patience


def _fmt_metric(value) -> str:
    """A metric as the validation lines show it (0.0519), small values in 3 digits."""
    if not isinstance(value, int | float) or value == 0 or abs(value) >= 1e-3:
        return f"{value:.4f}" if isinstance(value, int | float) else str(value)
    return f"{value:.3g}"
