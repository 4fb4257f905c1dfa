"""Metrics of a model's parameters on a data set: ``evaluate`` (for ``graphc eval``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import DataBundle, Dataset, Feeder
from .errors import DataError
from .metrics import MetricTracker, has_class_labels
from .setup import Setup


def evaluate_dataset(
    model, params, dataset: Dataset, feed: Feeder, metrics: list[str], batch: int, seed: int
) -> dict[str, float]:
    """Metrics over every sample of ``dataset`` (inference mode, batch by batch)."""
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
                raise DataError(
                    "the training data is an endless generated stream; evaluate on split `val`"
                )
        else:
            raise ValueError(f"split must be `val` or `train`, not {split!r}")
    if metrics is None:
        labelled = has_class_labels(dataset.take(slice(0, 1)))
        metrics = ["loss", "accuracy"] if labelled else ["loss"]
    seed = int((model.train or {}).get("seed", 0)) if isinstance(model.train, dict) else 0
    out = evaluate_dataset(model, params, dataset, feed, metrics, batch or default_batch, seed)
    return {**out, "samples": len(dataset)}
