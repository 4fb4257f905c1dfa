"""The training loop: ``train(model, out_dir=...)`` and ``evaluate(model, params)``.

The loop, one optimizer step at a time::

    lr = schedule(step)
    for each of `accumulate` micro-batches:
        batch = next training batch               (restorable stream position)
        result = model.forward(params, batch, training=True, seed=seed_for(step, micro))
        grads += model.backward(result)           (stop on a non-finite loss or gradient)
    clip grads to `clip_grad_norm`; optimizer.step(params, grads / accumulate, lr)
    every log_every: a metrics.jsonl row; every eval_every: validate, early stopping;
    every checkpoint_every: atomic checkpoint

Everything random derives from ``train.seed`` and the step number (data order, generated
batches, the forward seed for dropout), so resuming from a checkpoint continues exactly.

Run directory: ``config.json`` (resolved train config), ``metrics.jsonl`` (one JSON object per
logged step), ``summary.json`` (status and final metrics, incl. ``val_*``), ``loss.png`` and
``checkpoint/`` (the latest; see :mod:`.checkpoint`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, apply_overrides
from .data import DataBundle, Dataset, Feeder, build_data
from .errors import CheckpointError, ConfigError, DataError, NonFiniteError
from .metrics import MetricTracker, has_class_labels
from .optim import clip_by_global_norm, global_norm, make_optimizer
from .progress import make_progress
from .schedule import make_schedule

CHECKPOINT_DIR = "checkpoint"


def model_fingerprint(model) -> str:
    """A hash of the model's structure (inputs, outputs, losses, parameter specs).

    The ``train:`` section is left out on purpose: a run may resume with more steps.
    """
    desc = {
        "name": model.name,
        "inputs": {k: [list(v.shape), v.dtype] for k, v in model.inputs.items()},
        "outputs": list(model.outputs),
        "losses": list(model.losses),
        "params": {k: [list(p.shape), p.init, p.decay, p.trainable] for k, p in model.params.items()},
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def step_seed(seed: int, step: int, micro: int = 0) -> int:
    """The forward seed (dropout etc.) for a micro-batch: a pure function of its position."""
    return int(np.random.SeedSequence([seed, step, micro]).generate_state(1)[0])


def _source_name(data: dict) -> str:
    for key in ("task", "dataset", "file"):
        if key in data:
            return f"{key} {data[key]}"
    return "the data"


def _peek(loader) -> dict:
    """The next training batch, without moving the stream."""
    state = loader.state_dict()
    batch = loader.next_batch()
    loader.load_state_dict(state)
    return batch


@dataclass
class Setup:
    """A model's train config, data and input feeder, resolved and checked."""

    cfg: TrainConfig
    data: DataBundle
    feed: Feeder
    metrics: list[str]
    total: int

    @classmethod
    def create(cls, model, overrides: dict | None = None, base_dir=None) -> Setup:
        cfg = TrainConfig.from_dict(apply_overrides(model.train, overrides))
        data = build_data(cfg.data, batch=cfg.batch, seed=cfg.seed, base_dir=base_dir)
        if cfg.steps is not None:
            total = cfg.steps
        elif cfg.epochs is not None:
            per_epoch = data.train.steps_per_epoch
            if per_epoch is None:
                raise ConfigError(
                    "train.epochs needs a finite data set; this task is an endless "
                    "stream: use train.steps (or give the task a train_size)"
                )
            total = math.ceil(cfg.epochs * per_epoch / cfg.accumulate)
        else:
            total = 1000
        feed = Feeder(model.inputs, data.info.get("map"), source=_source_name(cfg.data))
        probe = _peek(data.train)
        feed(probe)  # fail now, with a clear message, if data and inputs do not fit
        if data.val is not None:
            feed(data.val.take(slice(0, cfg.batch)))
        metrics = cfg.metrics or (["loss", "accuracy"] if has_class_labels(probe) else ["loss"])
        es = cfg.early_stopping
        if es is not None:
            if data.val is None:
                raise ConfigError(
                    "train.early_stopping needs a validation set, and this data "
                    "has none (set val_fraction or val_file)"
                )
            base = es.metric.removeprefix("val_")
            if base not in metrics:
                metrics = [*metrics, base]
        return cls(cfg, data, feed, metrics, total)


def _evaluate(
    model, params, dataset: Dataset, feed: Feeder, metrics: list[str], batch: int, seed: int
) -> dict[str, float]:
    tracker = MetricTracker(metrics)
    for raw in dataset.batches(batch):
        result = model.forward(params, feed(raw), training=False, seed=seed)
        logits = result.outputs[model.outputs[0]] if model.outputs else None
        tracker.add(logits, result.losses, raw)
    return tracker.result()


def evaluate(
    model,
    params: dict[str, np.ndarray],
    data: Any = None,
    *,
    split: str = "val",
    metrics: list[str] | None = None,
    batch: int | None = None,
    base_dir=None,
) -> dict[str, float]:
    """Metrics of ``params`` on a data set (no prefixes; ``samples`` = how many were seen).

    ``data`` is None (the spec's ``train.data``), a ``train.data``-style dict, a DataBundle,
    or a Dataset. ``split`` picks ``val`` (the held-out set) or ``train`` (finite data only).
    """
    if isinstance(data, Dataset):
        dataset, feed, default_batch = data, Feeder(model.inputs), 64
    else:
        if isinstance(data, DataBundle):
            bundle, feed, default_batch = data, Feeder(model.inputs, data.info.get("map")), 64
        else:
            setup = Setup.create(model, {"data": data} if data is not None else None, base_dir)
            bundle, feed, default_batch = setup.data, setup.feed, setup.cfg.batch
            metrics = metrics or setup.metrics
        if split == "val":
            dataset = bundle.val
            if dataset is None:
                raise DataError("this data has no validation set to evaluate on")
        elif split == "train":
            dataset = getattr(bundle.train, "data", None)
            if dataset is None:
                raise DataError("the training data is an endless generated stream; evaluate on split `val`")
        else:
            raise ValueError(f"split must be `val` or `train`, not {split!r}")
    if metrics is None:
        labelled = has_class_labels(dataset.take(slice(0, 1)))
        metrics = ["loss", "accuracy"] if labelled else ["loss"]
    seed = int((model.train or {}).get("seed", 0)) if isinstance(model.train, dict) else 0
    out = _evaluate(model, params, dataset, feed, metrics, batch or default_batch, seed)
    return {**out, "samples": len(dataset)}


def _all_finite(arrays: dict[str, np.ndarray]) -> bool:
    return all(np.all(np.isfinite(a)) for a in arrays.values())


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
    resume: continue from ``out_dir/checkpoint`` (CheckpointError if there is none).
    progress: "auto" | "rich" | "plain" | "none" or a :class:`~.progress.Progress`.
    base_dir: where relative data file paths are resolved (the spec's directory).
    max_steps: stop this invocation after that many steps (checkpointed, resumable); the
        schedule still spans the configured total.
    Raises ConfigError/DataError/CheckpointError on bad input and NonFiniteError on NaN/Inf.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup = Setup.create(model, overrides, base_dir)
    cfg, loader, total = setup.cfg, setup.data.train, setup.total
    fingerprint = model_fingerprint(model)

    trainable = [n for n, p in model.params.items() if p.trainable]
    for pattern in cfg.freeze:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in trainable):
            raise ConfigError(f"train.freeze pattern `{pattern}` matches no trainable parameter")
    trainable = [n for n in trainable if not any(fnmatch.fnmatchcase(n, p) for p in cfg.freeze)]
    optimizer = make_optimizer(cfg.optimizer, {n: model.params[n].decay for n in trainable})
    schedule = make_schedule(cfg.schedule, lr=optimizer.lr, total=total)
    eval_every = cfg.eval_every
    log_every = cfg.log_every or max(1, total // 200)
    ckpt_every = cfg.checkpoint_every or (eval_every if eval_every > 0 else max(1, total // 10))

    step, es_state, resumed_from = 0, {"best": None, "best_step": None, "bad_evals": 0}, None
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT_DIR)
        state = ckpt.state
        if state.get("model_hash") != fingerprint:
            raise CheckpointError(
                f"{ckpt.path} was written for a different model "
                f"({state.get('model')!r}, hash {state.get('model_hash')}); "
                f"this one is {model.name!r}, hash {fingerprint}"
            )
        params = {k: np.array(v) for k, v in ckpt.params.items()}
        optimizer.load_state_dict(ckpt.optimizer, state["optimizer"])
        loader.load_state_dict(state["data"])
        step = resumed_from = int(state["step"])
        es_state = state.get("early_stopping", es_state)
    else:
        params = model.init_params(cfg.seed)
    missing = set(model.params) - set(params)
    if missing:
        raise CheckpointError(f"parameters missing: {', '.join(sorted(missing))}")

    (out / "config.json").write_text(
        json.dumps(
            {
                "model": model.name,
                "total_steps": total,
                "metrics": setup.metrics,
                "data_info": {k: v for k, v in setup.data.info.items() if k != "chars"},
                "train": cfg.to_dict(),
                "overrides": overrides or {},
            },
            indent=2,
            default=str,
        )
    )
    metrics_path = out / "metrics.jsonl"
    history = [r for r in _read_jsonl(metrics_path) if r.get("step", 0) <= step] if resume else []
    with open(metrics_path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in history)

    def checkpoint_state() -> dict:
        _, scalars = optimizer.state_dict()
        return {
            "step": step,
            "epoch": loader.epochs_done,
            "data": loader.state_dict(),
            "rng": {"seed": cfg.seed, "scheme": "SeedSequence([seed, step, micro])"},
            "model": model.name,
            "model_hash": fingerprint,
            "spec_hash": getattr(model, "spec_hash", None),
            "optimizer": scalars,
            "early_stopping": es_state,
            "total_steps": total,
        }

    last_saved = resumed_from

    def save() -> None:
        nonlocal last_saved
        if not _all_finite(params):
            fail(f"parameters became non-finite after step {step}", None)
        save_checkpoint(out / CHECKPOINT_DIR, params, optimizer.state_dict()[0], checkpoint_state())
        last_saved = step

    summary: dict = {
        "model": model.name,
        "total_steps": total,
        "resumed_from": resumed_from,
        "trainable_params": int(sum(np.prod(model.params[n].shape) for n in trainable)),
    }
    t0 = time.perf_counter()

    def finish(status: str, **extra) -> dict:
        last = next((r for r in reversed(history) if "loss" in r), {})
        val = next((r for r in reversed(history) if any(k.startswith("val_") for k in r)), {})
        summary.update(
            status=status,
            steps=step,
            epochs=loader.epochs_done,
            time_sec=round(time.perf_counter() - t0, 3),
            metrics={"loss": last.get("loss"), **{k: v for k, v in val.items() if k.startswith("val_")}},
            best=es_state if cfg.early_stopping else None,
            checkpoint=str(out / CHECKPOINT_DIR) if last_saved is not None else None,
            checkpoint_step=last_saved,
            **extra,
        )
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        plot_losses(history, out / "loss.png", title=model.name)
        return summary

    def fail(what: str, node: str | None) -> None:
        where = f"; the first non-finite value is at node `{node}`" if node else ""
        kept = (
            f"the last good checkpoint (step {last_saved}) is kept in {out / CHECKPOINT_DIR}"
            if last_saved is not None
            else "no checkpoint had been written yet"
        )
        message = f"{what}{where}; {kept}"
        bar.message(message)
        finish("nonfinite", message=message, nonfinite_node=node)
        raise NonFiniteError(message, step=step, node=node)

    bar = make_progress(progress)
    bar.start(total, step)
    status = "completed"
    stop_at = total if max_steps is None else min(total, step + max_steps)
    window_t, window_samples = time.perf_counter(), 0
    try:
        while step < stop_at:
            lr = schedule(step)
            logging = (step + 1) % log_every == 0 or step + 1 == total
            tracker = MetricTracker(setup.metrics if logging else ["loss"])
            grads: dict[str, np.ndarray] = {}
            for micro in range(cfg.accumulate):
                raw = loader.next_batch()
                inputs = setup.feed(raw)
                seed = step_seed(cfg.seed, step, micro)
                result = model.forward(params, inputs, training=True, seed=seed)
                loss = float(sum(result.losses.values()))
                if not math.isfinite(loss):
                    node = model.first_nonfinite(params, inputs, seed=seed)
                    fail(f"non-finite loss ({loss}) at step {step + 1}", node)
                g = model.backward(result)
                g_norm = global_norm({n: g[n] for n in trainable if n in g})
                if not math.isfinite(g_norm):
                    node = model.first_nonfinite(params, inputs, seed=seed)
                    fail(f"non-finite gradient ({g_norm}) at step {step + 1}", node)
                for n in trainable:
                    if n in g:
                        if n in grads:
                            grads[n] += g[n]
                        else:
                            grads[n] = np.array(g[n], np.float32)
                logits = result.outputs.get(model.outputs[0]) if model.outputs else None
                tracker.add(logits, result.losses, raw)
                window_samples += len(next(iter(raw.values())))
            if cfg.accumulate > 1:
                for a in grads.values():
                    a /= np.float32(cfg.accumulate)
            if cfg.clip_grad_norm is not None:
                norm = clip_by_global_norm(grads, cfg.clip_grad_norm)
            else:
                norm = global_norm(grads)
            optimizer.step(params, grads, lr)
            step += 1

            row: dict[str, Any] = {}
            if logging:
                now = time.perf_counter()
                row = {
                    "step": step,
                    "epoch": round(loader.epochs_done, 4),
                    "lr": lr,
                    **tracker.result(),
                    "grad_norm": norm,
                    "samples_per_sec": window_samples / max(now - window_t, 1e-9),
                    "time": round(now - t0, 3),
                }
                window_t, window_samples = now, 0
            stop_early = False
            if setup.data.val is not None and eval_every and (step % eval_every == 0 or step == total):
                val = _evaluate(model, params, setup.data.val, setup.feed, setup.metrics, cfg.batch, cfg.seed)
                row = {"step": step, **row, **{f"val_{k}": v for k, v in val.items()}}
                bar.message(f"step {step}: " + "  ".join(f"val_{k} {v:.4f}" for k, v in val.items()))
                stop_early = _early_stop(cfg, es_state, row, step)
            if row:
                history.append(row)
                with open(metrics_path, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            bar.update(
                step,
                {"loss": tracker.result()["loss"], "lr": lr, "samples_per_sec": row.get("samples_per_sec")},
            )
            if stop_early:
                bar.message(
                    f"early stopping at step {step}: {cfg.early_stopping.metric} has not "
                    f"improved for {cfg.early_stopping.patience} evaluations "
                    f"(best {es_state['best']:.4f} at step {es_state['best_step']})"
                )
                status = "early_stopped"
                break
            if step % ckpt_every == 0 and step < stop_at:
                save()
        if step < total and status == "completed":
            status = "stopped"  # max_steps reached; resume to continue
        if setup.data.val is not None and not any("val_loss" in r and r["step"] == step for r in history):
            val = _evaluate(model, params, setup.data.val, setup.feed, setup.metrics, cfg.batch, cfg.seed)
            row = {"step": step, **{f"val_{k}": v for k, v in val.items()}}
            history.append(row)
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        save()
    finally:
        bar.close()
    return finish(status)


def _early_stop(cfg: TrainConfig, state: dict, row: dict, step: int) -> bool:
    es = cfg.early_stopping
    if es is None:
        return False
    value = row[es.metric]
    if es.improved(value, state["best"]):
        state.update(best=value, best_step=step, bad_evals=0)
        return False
    state["bad_evals"] += 1
    return state["bad_evals"] >= es.patience


def plot_losses(history: list[dict], path: Path, *, title: str = "") -> None:
    """loss.png: training loss per logged step, validation loss at each evaluation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, style in (("loss", "-"), ("val_loss", "o-")):
        pts = [
            (r["step"], r[key]) for r in history if key in r and r[key] is not None and math.isfinite(r[key])
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=key, markersize=3)
    values = [r[k] for r in history for k in ("loss", "val_loss") if r.get(k) is not None]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if ax.lines:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
