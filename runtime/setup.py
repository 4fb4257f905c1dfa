"""Resolve what a run needs from a model: its train config, data, input feeder and metrics."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .budget import UNLIMITED, Budget, Estimate, batch_sizes, nbytes, optimizer_slots, step_estimate
from .config import TrainConfig, apply_overrides
from .data import DataBundle, Dataset, Feeder, build_data
from .errors import ConfigError, DataError
from .metrics import LABEL_KEYS, has_class_labels


def model_fingerprint(model) -> str:
    """A hash of the model's structure (inputs, outputs, losses, parameter specs).

    The ``train:`` section is left out on purpose: a run may resume with more steps.
    """
    desc = {
        "name": model.name,
        "inputs": {k: [list(v.shape), v.dtype] for k, v in model.inputs.items()},
        "outputs": list(model.outputs),
        "losses": list(model.losses),
        "params": {
            k: [list(p.shape), p.init, p.decay, p.trainable] for k, p in model.params.items()
        },
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def spec_hash(model) -> str | None:
    """sha256 (16 hex digits) of the spec file the model was compiled from, when known.

    Recorded in checkpoints for provenance only: editing the `train:` section changes it, and
    resuming with more steps is allowed, so :func:`model_fingerprint` is what resume checks.
    """
    path = getattr(model, "spec_path", None)
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else None
    except OSError:
        return None


def step_seed(seed: int, step: int, micro: int = 0, phase: int = 0, rank: int = 0) -> int:
    """The forward seed (dropout etc.) for a micro-batch: a pure function of its position
    (and of the phase, for the second and later phases of a step, and of the MPI rank)."""
    key = [seed, step, micro] + ([phase] if phase or rank else []) + ([rank] if rank else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def _source_name(data: dict) -> str:
    for key in ("task", "dataset", "file"):
        if key in data:
            return f"{key} {data[key]}"
    return "the data"


PROBE = 4  # samples drawn to check the data against the inputs and to size the step


def _cli_paths(overrides: dict | None) -> frozenset[str]:
    """The train.data path keys given on the command line (trusted: they may point anywhere)."""
    keys: set[str] = set()
    for key in overrides or {}:
        if key == "data":
            keys |= {"file", "val_file"}
        elif key.startswith("data."):
            keys.add(key.split(".")[1])
    return frozenset(keys & {"file", "val_file"})


def _optimizer_slots(cfg: TrainConfig) -> int:
    sections = [cfg.optimizer] + [
        {**cfg.optimizer, **(ph.optimizer or {})} for ph in (cfg.phases or [])
    ]
    return max(optimizer_slots(s) for s in sections)


def _probe_inputs(inputs: dict) -> dict:
    """Model inputs for the probe forward: integer inputs (labels, tokens) set to 0, a valid
    class and token whatever the data holds, so the probe itself cannot fail on a bad label."""
    return {k: np.zeros_like(v) if v.dtype.kind in "iu" else v for k, v in inputs.items()}


@dataclass
class Setup:
    """A model's train config, data and input feeder, resolved and checked."""

    cfg: TrainConfig
    data: DataBundle
    feed: Feeder
    metrics: list[str]
    total: int
    budget: Budget = UNLIMITED
    probe: dict | None = None  # a few raw training samples (PROBE at most)
    estimate: Estimate | None = None  # of a training step, before the probe forward
    base_dir: Path | None = None  # where the spec's relative paths start
    init_from_cli: bool = False  # train.init_from.file was given on the command line

    def initial_params(self, model, params: dict, resume: bool = False) -> dict:
        """``params`` overwritten from ``train.init_from`` (a resumed run keeps its checkpoint)."""
        if self.cfg.init_from is None or resume:
            return params
        from .init_from import load_init

        return load_init(model, params, self.cfg.init_from, self.base_dir,
                         from_cli=self.init_from_cli).params

    @classmethod
    def create(
        cls,
        model,
        overrides: dict | None = None,
        base_dir=None,
        *,
        budget: Budget | None = None,
        training: bool = True,
    ) -> Setup:
        """``base_dir`` (for relative data paths) defaults to the spec file's directory.

        ``budget`` (default: the machine's available memory) bounds the data sets and, with
        ``training``, a training step (ResourceError before anything big is allocated)."""
        cfg = TrainConfig.from_dict(apply_overrides(model.train, overrides))
        budget = Budget.detect() if budget is None else budget
        if base_dir is None and getattr(model, "spec_path", None):
            base_dir = Path(model.spec_path).resolve().parent
        itemsize = np.dtype(getattr(model, "dtype", np.float32)).itemsize
        n_params = sum(int(np.prod(p.shape, dtype=np.float64)) for p in model.params.values())
        budget.check(
            n_params * itemsize * (1 + 2 + _optimizer_slots(cfg) if training else 1),
            f"model {model.name!r} ({n_params:,} parameters"
            + (", their gradients and optimizer state)" if training else ")"),
            "make the model smaller",
        )
        data = build_data(
            cfg.data,
            batch=cfg.batch,
            seed=cfg.seed,
            base_dir=base_dir,
            cli_keys=_cli_paths(overrides),
            budget=budget,
        )
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
        feed = Feeder(
            model.inputs,
            data.info.get("map"),
            source=_source_name(cfg.data),
            generate=data.info.get("generate"),
            seed=cfg.seed,
        )
        probe = data.train.sample(PROBE)  # a few samples: the batch may be huge
        fed = feed(probe)  # fail now, with a clear message, if data and inputs do not fit
        if data.val is not None:
            feed(data.val.take(slice(0, PROBE)))
        estimate = None
        if training:
            trainable = sum(
                int(np.prod(p.shape, dtype=np.float64))
                for p in model.params.values()
                if p.trainable
            )
            estimate = step_estimate(
                model,
                trainable=trainable,
                slots=_optimizer_slots(cfg),
                raw=probe,
                fed=fed,
                outputs={},
                n_probe=len(next(iter(probe.values()))),
                batch=getattr(data.train, "batch", cfg.batch),
                accumulate=cfg.accumulate,
            )
            check_step(budget, estimate, cfg)
        metrics = cfg.metrics or (
            ["loss", "accuracy"] if has_class_labels(feed.view(probe)) else ["loss"]
        )
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
        from_cli = any(k == "init_from" or k.startswith("init_from.") for k in overrides or {})
        return cls(cfg, data, feed, metrics, total, budget, probe, estimate, base_dir, from_cli)

    def check_outputs(self, model, params: dict) -> None:
        """After the parameters exist: one small inference forward on the probe, to add the
        model's outputs and the tensors its kernels keep for the backward outside the buffer
        plan (the tape is the same in both modes) to the memory estimate, and to check the
        labels against the outputs."""
        if self.probe is None:
            return
        inputs = _probe_inputs(self.feed(self.probe))
        check_sizes = getattr(model, "check_sizes", None)  # (a CompiledModel's; not every model's)
        if check_sizes is not None:
            # a full batch's dims must fit every size of the spec (a sequence longer than max_len,
            # an image smaller than a window): said now, before the run directory is written
            n = len(next(iter(self.probe.values())))
            check_sizes(batch_sizes(model, inputs, getattr(self.data.train, "batch", self.cfg.batch), n))
        try:
            with np.errstate(all="ignore"):
                result = model.forward(params, inputs, training=False, seed=0)
            outputs = {k: np.asarray(v) for k, v in result.outputs.items()}
            saved = _unplanned(result)
        except Exception:  # noqa: BLE001 - the first real step reports what is wrong
            return
        finally:
            result = None
        if self.estimate is not None:
            n = len(next(iter(self.probe.values())))
            scale = getattr(self.data.train, "batch", self.cfg.batch) / max(1, n)
            parts = self.estimate.parts
            parts["outputs"] = nbytes(outputs) * scale
            # what the kernels keep for the backward, and the backward's own temporaries of
            # about the same size (measured on the LSTM); at least UNPLANNED x the arena
            key = "kernel results and saved tensors"
            parts[key] = max(parts.get(key, 0.0), 2 * saved * scale)
            check_step(self.budget, self.estimate, self.cfg)
        check_labels(model, self, outputs)


def _unplanned(result) -> int:
    """Bytes of the forward's tape that do not live in the buffer plan's arena."""
    arena = getattr(result, "arena", None)
    buffers = arena.buffers if arena is not None else []
    return sum(
        v.nbytes
        for v in (getattr(result, "tape", None) or {}).values()
        if isinstance(v, np.ndarray) and not any(np.may_share_memory(v, b) for b in buffers)
    )


def check_step(budget: Budget, estimate: Estimate, cfg: TrainConfig) -> None:
    what = f"a training step with batch {cfg.batch}" + (
        f" and accumulate {cfg.accumulate}" if cfg.accumulate > 1 else ""
    )
    budget.check(
        estimate.total,
        f"{what} ({estimate.describe()})",
        "lower train.batch (e.g. --set batch=...)"
        + (" or train.accumulate" if cfg.accumulate > 1 else "")
        + ", or shrink the model",
    )


def check_labels(model, setup: Setup, outputs: dict) -> None:
    """DataError naming the file and row of the first class label outside the model's range.

    Labels are the field ``y`` else ``targets`` (the metrics' convention) when a model input
    is fed from it; the classes are the last axis of the model's first output, read as logits
    per label (one logit: a binary classifier, labels 0 and 1)."""
    if not model.outputs or model.outputs[0] not in outputs or setup.probe is None:
        return
    view = setup.feed.view(setup.probe)
    key = next((k for k in LABEL_KEYS if k in view), None)
    if key is None or np.asarray(view[key]).dtype.kind not in "iu":
        return
    field = setup.feed.mapping.get(key, key)
    if not any(setup.feed.mapping.get(name, name) == field for name in model.inputs):
        return  # no input reads the labels: the loss does not index with them
    logits, labels = outputs[model.outputs[0]], np.asarray(view[key])
    if logits.shape in (labels.shape, labels.shape + (1,)):
        classes, why = 2, "a single logit: a binary classifier"
    elif logits.shape[:-1] == labels.shape:
        classes, why = logits.shape[-1], f"{logits.shape[-1]} logits per label"
    else:
        return
    sets = [("training", getattr(setup.data.train, "data", None)), ("validation", setup.data.val)]
    for split, dataset in sets:
        if dataset is None or field not in dataset.fields:
            continue
        y = np.asarray(dataset.fields[field]).reshape(len(dataset), -1)
        bad = ((y < 0) | (y >= classes)).any(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = y[i][(y[i] < 0) | (y[i] >= classes)][0]
            raise DataError(
                f"{dataset.where(i)}: label {value} (field `{field}`, {split} data) is outside "
                f"the model's classes 0..{classes - 1} (its first output "
                f"`{model.outputs[0]}` has {why}); {int(bad.sum())} sample(s) are out of range"
            )


@dataclass
class Picked:
    """A data set to evaluate or predict on, with what is needed to feed it."""

    dataset: Dataset
    feed: Feeder
    bundle: DataBundle | None  # None when a bare Dataset was given
    setup: Setup | None  # None unless it came from the model's train section


def pick_data(model, data=None, *, split: str = "val", base_dir=None) -> Picked:
    """Resolve ``data`` (None: the spec's ``train.data``; a ``train.data``-style dict; a
    DataBundle; or a Dataset) and ``split`` (``val`` or ``train``) to one Dataset."""
    if isinstance(data, Dataset):
        return Picked(data, Feeder(model.inputs), None, None)
    setup = None
    if isinstance(data, DataBundle):
        bundle = data
        feed = Feeder(model.inputs, data.info.get("map"), generate=data.info.get("generate"))
    else:
        setup = Setup.create(
            model, {"data": data} if data is not None else None, base_dir, training=False
        )
        bundle, feed = setup.data, setup.feed
    if split == "val":
        dataset = bundle.val
        if dataset is None:
            raise DataError("this data has no validation set (set val_fraction or val_file)")
    elif split == "train":
        dataset = getattr(bundle.train, "data", None)
        if dataset is None:
            raise DataError("the training data is an endless generated stream; use split `val`")
    else:
        raise ConfigError(f"split must be `val` or `train`, not {split!r}")
    return Picked(dataset, feed, bundle, setup)
