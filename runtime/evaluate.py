"""Metrics of a model's parameters on a data set: ``evaluate`` (for ``graphc eval``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import Dataset, Feeder
from .distributed import World
from .metrics import MetricTracker, has_class_labels
from .setup import pick_data


def evaluate_dataset(
    model, params, dataset: Dataset, feed: Feeder, metrics: list[str], batch: int, seed: int,
    ranks: World | None = None,
) -> dict[str, float]:
    """Metrics over every sample of ``dataset`` (inference mode, batch by batch); under MPI the
    batches are dealt out to the ranks and the metrics' sums added up."""
    ranks = ranks or World()
    tracker = MetricTracker(metrics)
    for index, raw in enumerate(dataset.batches(batch)):
        if not ranks.mine(index):
            continue
        result = model.forward(params, feed(raw, key=(1, index)), training=False, seed=seed)
        logits = result.outputs[model.outputs[0]] if model.outputs else None
        tracker.add(logits, result.losses, feed.view(raw))
    ranks.add_up(tracker)
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
    ``metrics`` default to the train section's (loss, plus accuracy for class labels).
    """
    picked = pick_data(model, data, split=split, base_dir=base_dir)
    if picked.setup is not None:
        picked.setup.check_outputs(model, params)  # labels in the model's range
    if metrics is None and picked.setup is not None:
        metrics = picked.setup.metrics
    if metrics is None:
        labelled = has_class_labels(picked.feed.view(picked.dataset.take(slice(0, 1))))
        metrics = ["loss", "accuracy"] if labelled else ["loss"]
    batch = batch or (picked.setup.cfg.batch if picked.setup else 64)
    out = evaluate_dataset(model, params, picked.dataset, picked.feed, metrics, batch, seed=0)
    return {**out, "samples": len(picked.dataset)}
