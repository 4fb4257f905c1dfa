"""End to end: the small reference specs train to their stated targets (README, "Training").

The transformer's main job takes minutes and is measured by `graphc train` itself; these
three take seconds each, through the same compiler and runtime a user runs.
"""

import pytest

import graphc
from graphc.runtime import train
from tests.conftest import SPECS

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
