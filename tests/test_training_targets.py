"""End to end: the small reference specs train to their stated targets (README, "Training").

The transformer's main job takes minutes and is measured by `graphc train` itself; these
three take seconds each, through the same compiler and runtime a user runs.
"""

import numpy as np
import pytest

import graphc
from graphc.runtime import load_params, predict, train
from graphc.runtime.data.tasks import ring_quality
from tests.conftest import ROOT, SPECS

TARGETS = {  # spec: (metric, at least)
    "mlp": ("val_accuracy", 0.97),
    "lstm": ("val_accuracy", 0.95),
    "cnn": ("val_accuracy", 0.97),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reference_spec_reaches_its_target(tmp_path, name):
    model = graphc.compile(SPECS / f"{name}.yaml")
    summary = train(model, out_dir=tmp_path / name, progress="none")
    metric, target = TARGETS[name]
    assert summary["status"] == "completed"
    assert summary["metrics"][metric] >= target, summary["metrics"]
    assert (tmp_path / name / "checkpoint").is_dir() and (tmp_path / name / "loss.png").is_file()


def _ring_score(model, params, n=1000):
    """ring_quality of n generator samples (fixed noise) from examples/gan.yaml."""
    z = np.random.default_rng(123).standard_normal((n, 8)).astype(np.float32)
    batch = {"z": z, "real": np.zeros((n, 2), np.float32), "ones": np.ones((n, 1), np.float32),
             "zeros": np.zeros((n, 1), np.float32)}
    samples = model.forward(params, batch, training=False).outputs["samples"]
    return ring_quality(samples, modes=8, radius=2.0, std=0.05)


@pytest.mark.slow
def test_gan_covers_the_ring(tmp_path):
    """examples/gan.yaml as committed (2000 alternating steps, ~10 s): most generator samples
    land within 4σ of a mode and at least 6 of the 8 modes are covered; untrained, none are."""
    model = graphc.compile(ROOT / "examples" / "gan.yaml")
    untrained = _ring_score(model, model.init_params(0))
    assert untrained["high_quality"] < 0.05 and untrained["modes_covered"] < 6, untrained
    summary = train(model, out_dir=tmp_path / "gan", progress="none")
    assert summary["status"] == "completed"
    params = load_params(tmp_path / "gan", model)
    trained = _ring_score(model, params)
    assert trained["high_quality"] >= 0.6 and trained["modes_covered"] >= 6, trained
    # what `graphc sample` shows: fresh generator samples, scored against the ring
    rows = predict(model, params, n=400)
    assert [r["output"] for r in rows[:-1]] == ["samples"] * 400
    quality = rows[-1]["quality"]
    assert quality["high_quality"] >= 0.6 and quality["modes_covered"] >= 6, quality
