"""The runtime with the real compiler: specs/mlp.yaml trains, resumes exactly, stops on NaN."""

from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.runtime import NonFiniteError, load_checkpoint, predict, train

SPEC = Path(__file__).resolve().parents[2] / "specs" / "mlp.yaml"


@pytest.fixture(scope="module")
def model():
    return graphc.compile(str(SPEC))


def test_spec_mlp_learns_and_resumes_bitwise(model, tmp_path):
    short = {"steps": 40, "eval_every": 20}
    straight = train(model, out_dir=tmp_path / "a", overrides=short, progress="none")
    assert straight["metrics"]["val_accuracy"] > 0.6  # spirals: chance is 0.5
    train(model, out_dir=tmp_path / "b", overrides=short, progress="none", max_steps=15)
    train(model, out_dir=tmp_path / "b", overrides=short, progress="none", resume=True)
    a, b = (
        load_checkpoint(tmp_path / "a" / "checkpoint"),
        load_checkpoint(tmp_path / "b" / "checkpoint"),
    )
    assert set(a.params) == set(model.params)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    for k in a.optimizer:
        assert np.array_equal(a.optimizer[k], b.optimizer[k]), k
    rows = predict(model, a.params, n=3)
    assert all(r["predicted"] in (0, 1) for r in rows)


def test_spec_mlp_exploding_lr_names_a_spec_node(model, tmp_path):
    with pytest.raises(NonFiniteError) as err:
        train(
            model,
            out_dir=tmp_path,
            progress="none",
            overrides={
                "optimizer": {"name": "sgd", "lr": 1e38},
                "steps": 30,
                "checkpoint_every": 1,
                "eval_every": 0,
            },
        )
    nodes = {p.node for p in model.params.values()} | set(model.graph.nodes)
    assert err.value.node in nodes
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    assert ckpt.state["step"] == err.value.step  # the step before the bad one
    assert all(np.all(np.isfinite(v)) for v in ckpt.params.values())
