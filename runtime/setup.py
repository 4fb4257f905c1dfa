"""Resolve what a run needs from a model: its train config, data, input feeder and metrics."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig, apply_overrides
from .data import DataBundle, Dataset, Feeder, build_data
from .errors import ConfigError, DataError
from .metrics import has_class_labels


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


def step_seed(seed: int, step: int, micro: int = 0, phase: int = 0) -> int:
    """The forward seed (dropout etc.) for a micro-batch: a pure function of its position
    (and of the phase, for the second and later phases of a step)."""
    key = [seed, step, micro] + ([phase] if phase else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


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
        """``base_dir`` (for relative data paths) defaults to the spec file's directory."""
        cfg = TrainConfig.from_dict(apply_overrides(model.train, overrides))
        if base_dir is None and getattr(model, "spec_path", None):
            base_dir = Path(model.spec_path).resolve().parent
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
        feed = Feeder(
            model.inputs,
            data.info.get("map"),
            source=_source_name(cfg.data),
            generate=data.info.get("generate"),
            seed=cfg.seed,
        )
        probe = _peek(data.train)
        feed(probe)  # fail now, with a clear message, if data and inputs do not fit
        if data.val is not None:
            feed(data.val.take(slice(0, cfg.batch)))
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
        return cls(cfg, data, feed, metrics, total)


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
        setup = Setup.create(model, {"data": data} if data is not None else None, base_dir)
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
