"""Metrics accumulated over batches.

Convention: predictions are the model's **first output**, read as logits over the last axis
(``[B, C]`` for classifiers, ``[B, T, V]`` for sequences; ``[B]`` or ``[B, 1]`` for a binary
classifier, thresholded at 0). Labels are the data field ``y`` or, failing that, ``targets``;
an optional ``loss_mask`` (same shape as the labels) selects the positions that count.

* ``loss``: the objective (sum of the model's losses), averaged over samples.
* ``accuracy``: share of (masked) positions whose argmax equals the label — token accuracy
  on the answer positions for sequence tasks.
* ``sequence_accuracy``: share of samples with every masked position right (exact match).
* ``perplexity``: ``exp`` of the mean (masked) negative log-likelihood of the labels under
  ``softmax(logits)``, computed from the logits, whatever loss the spec uses.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DataError

LABEL_KEYS = ("y", "targets")


def find_labels(batch: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(labels, mask) from a data batch; either may be None."""
    labels = next((batch[k] for k in LABEL_KEYS if k in batch), None)
    return labels, batch.get("loss_mask")


def has_class_labels(batch: dict) -> bool:
    labels, _ = find_labels(batch)
    return labels is not None and np.asarray(labels).dtype.kind in "iu"


def _predictions(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if logits.shape == labels.shape + (1,):
        logits = logits[..., 0]
    if logits.shape == labels.shape:
        return (logits > 0).astype(np.int64)  # binary logit
    if logits.shape[:-1] == labels.shape:
        return np.argmax(logits, axis=-1)
    raise DataError(
        f"cannot compare predictions {list(logits.shape)} (the model's first output) "
        f"with labels {list(labels.shape)}: expected logits of shape labels + [C]"
    )


def _nll(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-position negative log-likelihood under softmax over the last axis (stable)."""
    if logits.shape[:-1] != labels.shape or logits.shape[-1] < 2:
        raise DataError(
            f"perplexity needs class logits of shape labels + [C]; got "
            f"{list(logits.shape)} for labels {list(labels.shape)}"
        )
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    picked = np.take_along_axis(z, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    return log_norm - picked


class MetricTracker:
    """Sums of the requested metrics over the batches seen so far."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.samples = 0
        self.loss_sum = 0.0
        self.part_sums: dict[str, float] = {}
        self.correct = self.counted = 0.0
        self.seq_correct = 0.0
        self.nll_sum = self.nll_count = 0.0

    def add(self, logits: np.ndarray | None, losses: dict[str, float], batch: dict) -> None:
        labels, mask = find_labels(batch)
        n = len(labels) if labels is not None else len(next(iter(batch.values())))
        self.samples += n
        self.loss_sum += float(sum(losses.values())) * n
        for name, value in losses.items():
            self.part_sums[name] = self.part_sums.get(name, 0.0) + float(value) * n
        wanted = {"accuracy", "sequence_accuracy", "perplexity"} & set(self.names)
        if not wanted:
            return
        if labels is None or logits is None:
            raise DataError(
                f"metrics {', '.join(sorted(wanted))} need labels (a `y` or "
                "`targets` field) and a model output"
            )
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise DataError(
                f"metrics {', '.join(sorted(wanted))} need integer class labels; "
                f"the labels are {labels.dtype}"
            )
        logits = np.asarray(logits)
        m = np.ones(labels.shape) if mask is None else np.asarray(mask, np.float64)
        if m.shape != labels.shape:
            raise DataError(f"loss_mask {list(m.shape)} does not match labels {list(labels.shape)}")
        if wanted & {"accuracy", "sequence_accuracy"}:
            hit = _predictions(logits, labels) == labels
            self.correct += float((hit * m).sum())
            self.counted += float(m.sum())
            rows = (hit | (m == 0)).reshape(n, -1).all(axis=1)
            self.seq_correct += float(rows.sum())
        if "perplexity" in wanted:
            self.nll_sum += float((_nll(logits, labels) * m).sum())
            self.nll_count += float(m.sum())

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.samples == 0:
            return out
        out["loss"] = self.loss_sum / self.samples
        if len(self.part_sums) > 1:  # several losses (e.g. early-exit heads): report each
            for name, total in self.part_sums.items():
                out[f"loss_{name}"] = total / self.samples
        if "accuracy" in self.names:
            out["accuracy"] = self.correct / max(self.counted, 1.0)
        if "sequence_accuracy" in self.names:
            out["sequence_accuracy"] = self.seq_correct / self.samples
        if "perplexity" in self.names:
            mean = self.nll_sum / max(self.nll_count, 1.0)
            out["perplexity"] = math.exp(mean) if mean < 700 else math.inf
        return out
