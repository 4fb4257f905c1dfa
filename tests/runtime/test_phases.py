"""train.phases (alternating updates), train.data.generate and the gaussian_ring task, with the
real compiler on examples/gan.yaml: one step equals the hand-written alternation, resume is
bitwise, bad phases/generators are clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.runtime import CheckpointError, ConfigError, load_checkpoint, train
from graphc.runtime.data import Feeder, build_data
from graphc.runtime.data.tasks import ring_quality
from graphc.runtime.setup import Setup, step_seed

SPEC = Path(__file__).resolve().parents[2] / "examples" / "gan.yaml"
QUICK = {"eval_every": 0, "batch": 16, "log_every": 1}


@pytest.fixture(scope="module")
def model():
    return graphc.compile(str(SPEC))


def test_one_step_is_discriminator_then_generator_on_the_updated_discriminator(model, tmp_path):
    lr = 0.05
    train(model, out_dir=tmp_path, progress="none",
          overrides={**QUICK, "steps": 1, "optimizer": {"name": "sgd", "lr": lr}})
    got = load_checkpoint(tmp_path / "checkpoint").params

    setup = Setup.create(model, {**QUICK, "steps": 1})
    inputs = setup.feed(setup.data.train.next_batch(), key=(0, 0, 0))
    p = model.init_params(0)
    r = model.forward(p, inputs, training=True, seed=step_seed(0, 0, 0, 0))
    g = model.backward(r, weights={"d_real": 1.0, "d_fake": 1.0, "g_loss": 0.0})
    p1 = {k: v - np.float32(lr) * g[k] if k.startswith("disc.") else v.copy() for k, v in p.items()}
    r = model.forward(p1, inputs, training=True, seed=step_seed(0, 0, 0, 1))
    g = model.backward(r, weights={"d_real": 0.0, "d_fake": 0.0, "g_loss": 1.0})
    p2 = {k: v - np.float32(lr) * g[k] if k.startswith("gen.") else v for k, v in p1.items()}
    for k in p:
        assert np.allclose(got[k], p2[k], rtol=1e-6, atol=1e-7), k
        assert not np.array_equal(got[k], p[k]), f"{k} was not updated"


def test_phases_resume_bitwise_with_every_and_accumulate(model, tmp_path):
    cfg = {**QUICK, "steps": 12, "accumulate": 2, "eval_every": 5,
           "phases": [{"loss": ["d_real", "d_fake"], "params": ["disc.*"]},
                      {"loss": "g_loss", "params": ["gen.*"], "every": 2,
                       "optimizer": {"lr": 3e-4}}]}
    straight = train(model, out_dir=tmp_path / "a", overrides=cfg, progress="none")
    train(model, out_dir=tmp_path / "b", overrides=cfg, progress="none", max_steps=5)
    resumed = train(model, out_dir=tmp_path / "b", overrides=cfg, progress="none", resume=True)
    assert resumed["resumed_from"] == 5
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint"), load_checkpoint(tmp_path / "b" / "checkpoint")
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    assert set(a.optimizer) == set(b.optimizer) and any(k.startswith("phase1/") for k in a.optimizer)
    for k in a.optimizer:
        assert np.array_equal(a.optimizer[k], b.optimizer[k]), k
    # adam steps per phase: the generator's every other step
    assert [s["t"] for s in a.state["optimizer"]["phases"]] == [12, 6]
    assert straight["metrics"] == resumed["metrics"]
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert all({"loss_d_real", "loss_d_fake", "loss_g_loss"} <= set(r) for r in rows if "loss" in r)

    with pytest.raises(CheckpointError, match="phases"):
        train(model, out_dir=tmp_path / "b", progress="none", resume=True,
              overrides={**cfg, "phases": cfg["phases"][:1]})


@pytest.mark.parametrize("phases, match", [
    ([{"loss": "gloss", "params": ["gen.*"]}], r"no loss `gloss` \(did you mean `g_loss`\?\)"),
    ([{"loss": "g_loss", "params": ["generator.*"]}], r"`generator.\*` matches no trainable.*gen\.\*"),
    ([{"loss": "g_loss"}], r"train.phases\[0\] has no `params`"),
    ([{"loss": "g_loss", "params": ["gen.*"], "evry": 2}], r"did you mean `every`"),
    ([{"loss": "g_loss", "params": ["gen.*"], "every": 2}], r"at least one phase run every step"),
    ([], r"non-empty list"),
])
def test_bad_phases_are_config_errors(model, tmp_path, phases, match):
    with pytest.raises(ConfigError, match=match):
        train(model, out_dir=tmp_path, progress="none", overrides={"steps": 1, "phases": phases})


@pytest.mark.parametrize("generate, match", [
    ({"noise": "normal"}, r"generate names `noise`"),
    ({"z": "gaussian"}, r"unknown kind 'gaussian'"),
])
def test_bad_generators_are_config_errors(model, tmp_path, generate, match):
    data = {"task": "gaussian_ring", "generate": {"ones": "ones", "zeros": "zeros", **generate}}
    with pytest.raises(ConfigError, match=match):
        train(model, out_dir=tmp_path, progress="none", overrides={"steps": 1, "data": data})


def test_generated_inputs_take_the_declared_shape_and_are_reproducible(model):
    feed = Feeder(model.inputs, generate={"z": "normal", "ones": "ones", "zeros": "zeros"}, seed=3)
    batch = {"real": np.zeros((5, 2), np.float32)}
    a, b, c = feed(batch, key=(0, 7, 0)), feed(batch, key=(0, 7, 0)), feed(batch, key=(0, 8, 0))
    assert a["z"].shape == (5, 8) and a["z"].dtype == np.float32
    assert np.array_equal(a["z"], b["z"]) and not np.array_equal(a["z"], c["z"])
    assert np.all(a["ones"] == 1) and a["ones"].shape == (5, 1) and np.all(a["zeros"] == 0)
    assert list(a) == list(model.inputs)
    u = Feeder(model.inputs, generate={"z": "uniform", "ones": "ones", "zeros": "zeros"})(batch)
    assert np.all(np.abs(u["z"]) <= 1) and u["z"].std() > 0.3


def test_gaussian_ring_task_and_its_score():
    bundle = build_data({"task": "gaussian_ring", "modes": 6, "std": 0.02}, batch=64, seed=0)
    x = bundle.train.next_batch()["real"]
    assert x.shape == (64, 2) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 2.0, atol=0.15)
    q = ring_quality(bundle.val.fields["real"], modes=6, std=0.02)
    assert q["high_quality"] > 0.99 and q["modes_covered"] == 6
    collapsed = np.tile([[2.0, 0.0]], (100, 1))
    assert ring_quality(collapsed)["modes_covered"] == 1
    with pytest.raises(ConfigError, match="modes"):
        build_data({"task": "gaussian_ring", "modes": 0}, batch=8, seed=0)
