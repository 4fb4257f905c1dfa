import math

import numpy as np
import pytest

from graphc.runtime.errors import DataError
from graphc.runtime.metrics import MetricTracker

ALL = ["loss", "accuracy", "sequence_accuracy", "perplexity"]


def _onehot_logits(pred, classes=4, scale=10.0):
    return scale * np.eye(classes)[pred]


def test_classification_accuracy_and_loss_weighted_by_samples():
    t = MetricTracker(["loss", "accuracy"])
    t.add(_onehot_logits(np.array([0, 1, 2, 3])), {"ce": 1.0}, {"y": np.array([0, 1, 0, 0])})
    t.add(_onehot_logits(np.array([2, 2])), {"ce": 4.0}, {"y": np.array([2, 1])})
    r = t.result()
    assert r["accuracy"] == pytest.approx(3 / 6)
    assert r["loss"] == pytest.approx((4 * 1.0 + 2 * 4.0) / 6)


def test_sequence_metrics_respect_the_loss_mask():
    targets = np.array([[5, 1, 2, 3], [5, 1, 2, 3]])
    mask = np.array([[0, 1, 1, 1], [0, 1, 1, 1]], np.float32)
    pred = np.array([[0, 1, 2, 3], [5, 1, 0, 3]])  # row 0 wrong only where unmasked
    t = MetricTracker(ALL)
    t.add(_onehot_logits(pred, classes=6), {"ce": 0.5}, {"targets": targets, "loss_mask": mask})
    r = t.result()
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["sequence_accuracy"] == pytest.approx(1 / 2)
    # perplexity from the logits on the 6 masked positions only
    z = _onehot_logits(pred, classes=6)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    assert r["perplexity"] == pytest.approx(math.exp((nll * mask).sum() / 6))


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    t = MetricTracker(["loss", "perplexity"])
    t.add(np.zeros((3, 5, 7)), {"ce": 1.0}, {"targets": np.zeros((3, 5), np.int64)})
    assert t.result()["perplexity"] == pytest.approx(7.0)


def test_binary_logit_thresholded_at_zero():
    t = MetricTracker(["loss", "accuracy"])
    t.add(np.array([[2.0], [-1.0], [0.5]]), {"bce": 0.1}, {"y": np.array([1, 0, 0])})
    assert t.result()["accuracy"] == pytest.approx(2 / 3)


def test_several_losses_are_reported_each():
    t = MetricTracker(["loss"])
    t.add(None, {"exit1": 1.0, "exit2": 3.0}, {"y": np.zeros(2, np.int64)})
    assert t.result() == {"loss": 4.0, "loss_exit1": 1.0, "loss_exit2": 3.0}


def test_metric_errors_are_clear():
    t = MetricTracker(["loss", "accuracy"])
    with pytest.raises(DataError, match="need labels"):
        t.add(np.zeros((2, 3)), {"l": 1.0}, {"x": np.zeros(2)})
    with pytest.raises(DataError, match="integer class labels"):
        t.add(np.zeros((2, 3)), {"l": 1.0}, {"y": np.zeros(2)})
    with pytest.raises(DataError, match=r"cannot compare predictions \[2, 3, 4\]"):
        t.add(np.zeros((2, 3, 4)), {"l": 1.0}, {"y": np.zeros(2, np.int64)})
