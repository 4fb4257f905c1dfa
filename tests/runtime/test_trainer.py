import json

import numpy as np
import pytest

from graphc.runtime import (
    CheckpointError,
    ConfigError,
    DataError,
    NonFiniteError,
    evaluate,
    load_checkpoint,
    predict,
    train,
)
from graphc.runtime.progress import PlainProgress

from .toymodels import MLP, TokenModel


def _spirals(**train):
    cfg = {
        "data": {"task": "spirals"},
        "batch": 32,
        "steps": 40,
        "eval_every": 10,
        "optimizer": {"name": "adam", "lr": 0.01},
        **train,
    }
    return MLP(hidden=16, train=cfg)


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_softmax_classifier_learns_digits(tmp_path):
    model = MLP(
        in_shape=(1, 8, 8),
        hidden=32,
        classes=10,
        train={
            "data": {"dataset": "digits"},
            "batch": 32,
            "epochs": 6,
            "eval_every": 100,
            "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
            "schedule": {"name": "cosine", "warmup": 20},
            "metrics": ["accuracy"],
            "seed": 1,
        },
    )
    summary = train(model, out_dir=tmp_path, progress="none")
    assert summary["status"] == "completed"
    assert summary["total_steps"] == summary["steps"] == 6 * (1438 // 32)
    assert summary["metrics"]["val_accuracy"] > 0.9
    params = load_checkpoint(tmp_path / "checkpoint").params
    again = evaluate(model, params)
    assert again["accuracy"] == pytest.approx(summary["metrics"]["val_accuracy"])
    assert again["samples"] == 359
    rows = _rows(tmp_path)
    assert rows[0]["loss"] > rows[-1]["loss"]
    assert {"step", "lr", "loss", "accuracy", "grad_norm", "epoch"} <= set(rows[0])
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["metrics"] == summary["metrics"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["epochs"] == 6 and config["total_steps"] == summary["total_steps"]


def _straight_vs_resumed(tmp_path, model_factory, first, **resume_kwargs):
    a, b = tmp_path / "a", tmp_path / "b"
    train(model_factory(), out_dir=a, progress="none")
    train(model_factory(), out_dir=b, progress="none", **first)
    summary = train(model_factory(), out_dir=b, progress="none", resume=True, **resume_kwargs)
    ca, cb = load_checkpoint(a / "checkpoint"), load_checkpoint(b / "checkpoint")
    assert ca.state["step"] == cb.state["step"] == summary["steps"]
    assert summary["resumed_from"] is not None
    for group in ("params", "optimizer"):
        x, y = getattr(ca, group), getattr(cb, group)
        assert set(x) == set(y)
        for k in x:
            assert np.array_equal(x[k], y[k]), (group, k)  # bitwise
    # the same training log; rows without "loss" are the final evaluation of a run that stopped
    drop = ("time", "samples_per_sec")
    ra = [{k: v for k, v in r.items() if k not in drop} for r in _rows(a) if "loss" in r]
    rb = [{k: v for k, v in r.items() if k not in drop} for r in _rows(b) if "loss" in r]
    assert ra == rb
    return ca


def test_resume_is_exact_mid_schedule(tmp_path):
    # cosine + warmup, dropout (seeded per step), a buffer, accumulation, clipping and the
    # early-stopping state (the stopped run's extra final evaluation must not count)
    def factory():
        model = _spirals(
            early_stopping={"metric": "val_accuracy", "patience": 50},
            steps=30,
            accumulate=2,
            clip_grad_norm=0.5,
            eval_every=7,
            schedule={"name": "cosine", "warmup": 5},
            optimizer={"name": "adamw", "lr": 0.02},
        )
        model.dropout = 0.3
        return model

    ckpt = _straight_vs_resumed(tmp_path, factory, {"max_steps": 13})
    straight = ckpt.state["early_stopping"]
    resumed = load_checkpoint(tmp_path / "b" / "checkpoint").state["early_stopping"]
    assert resumed == straight and straight["best_step"] is not None
    assert np.any(ckpt.params["norm.running_mean"] != 0)  # the buffer was trained and saved


def test_n_steps_then_n_more_equals_2n_on_a_stream(tmp_path):
    def factory():
        return MLP(
            in_shape=(9, 1),
            hidden=8,
            train={
                "data": {"task": "majority", "length": 9, "val_size": 50},
                "batch": 16,
                "steps": 24,
                "eval_every": 6,
                "optimizer": {"name": "momentum", "lr": 0.05},
            },
        )

    _straight_vs_resumed(tmp_path, factory, {"overrides": {"steps": 12}}, overrides={"steps": 24})


def test_resume_refuses_another_model_or_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(_spirals(), out_dir=tmp_path, progress="none", resume=True)
    train(_spirals(steps=5), out_dir=tmp_path, progress="none")
    other = MLP(hidden=17, train=_spirals().train)
    with pytest.raises(CheckpointError, match="different model"):
        train(other, out_dir=tmp_path, progress="none", resume=True)


class PoisonedMLP(MLP):
    """Produces a NaN at fc1 from the `poison_at`-th training forward call on."""

    def __init__(self, poison_at, where="forward", **kw):
        super().__init__(**kw)
        self.poison_at, self.where, self.training_calls = poison_at, where, 0

    def forward(self, params, batch, *, training, seed):
        result = super().forward(params, batch, training=training, seed=seed)
        if training:
            self.training_calls += 1
            if self.training_calls >= self.poison_at:
                if self.where == "forward":
                    result.losses["ce"] = float("nan")
                else:
                    result.cache["dlogits"] = result.cache["dlogits"] * np.nan
        return result

    def first_nonfinite(self, params, batch, *, seed):
        return "fc1" if self.training_calls >= self.poison_at else None


@pytest.mark.parametrize(
    "where,what", [("forward", "non-finite loss"), ("backward", "non-finite gradient")]
)
def test_nonfinite_stops_and_keeps_the_last_good_checkpoint(tmp_path, where, what):
    model = PoisonedMLP(23, where, train={**_spirals().train, "checkpoint_every": 10})
    before = None
    with pytest.raises(NonFiniteError) as err:
        train(model, out_dir=tmp_path, progress="none")
    assert err.value.step == 22 and err.value.node == "fc1"
    assert str(err.value).startswith(
        f"{what} (nan) at step 23; the first non-finite value is at node `fc1`"
    )
    assert "last good checkpoint (step 20)" in str(err.value)
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    assert ckpt.state["step"] == 20
    assert all(np.all(np.isfinite(v)) for v in ckpt.params.values())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "nonfinite" and summary["nonfinite_node"] == "fc1"
    assert summary["checkpoint_step"] == 20
    del before


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_exploding_learning_rate_is_caught(tmp_path):
    model = _spirals(optimizer={"name": "sgd", "lr": 1e30}, steps=50, checkpoint_every=1)
    with pytest.raises(NonFiniteError) as err:
        train(model, out_dir=tmp_path, progress="none")
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    assert ckpt.state["step"] <= err.value.step
    assert all(np.all(np.isfinite(v)) for v in ckpt.params.values())


def test_early_stopping(tmp_path):
    # lr 0 never improves: stop after `patience` evaluations past the first
    model = _spirals(
        steps=100,
        eval_every=5,
        optimizer={"name": "sgd", "lr": 0.0},
        early_stopping={"metric": "val_loss", "patience": 3},
    )
    summary = train(model, out_dir=tmp_path, progress="none")
    assert summary["status"] == "early_stopped" and summary["steps"] == 20
    assert summary["best"]["best_step"] == 5
    assert load_checkpoint(tmp_path / "checkpoint").state["step"] == 20
    assert load_checkpoint(tmp_path / "best").state["step"] == 5
    # a fresh run without early stopping keeps its own best/ (by val_loss), not the earlier one's
    train(_spirals(steps=3), out_dir=tmp_path, progress="none")
    assert load_checkpoint(tmp_path / "best").state["step"] == 3


def test_best_parameters_are_kept(tmp_path):
    model = _spirals(
        steps=40, eval_every=5, early_stopping={"metric": "val_accuracy", "patience": 100}
    )
    summary = train(model, out_dir=tmp_path, progress="none")
    best = summary["best"]
    rows = [r for r in _rows(tmp_path) if "val_accuracy" in r]
    top = max(r["val_accuracy"] for r in rows)
    first_top = next(r["step"] for r in rows if r["val_accuracy"] == top)
    assert best["best"] == top and best["best_step"] == first_top
    params = load_checkpoint(tmp_path / "best").params
    assert evaluate(model, params)["accuracy"] == top


def test_freeze_and_buffers(tmp_path):
    model = _spirals(steps=5, freeze=["fc1.*"])
    init = model.init_params(0)
    train(model, out_dir=tmp_path, progress="none")
    p = load_checkpoint(tmp_path / "checkpoint").params
    assert np.array_equal(p["fc1.w"], init["fc1.w"]) and np.array_equal(p["fc1.b"], init["fc1.b"])
    assert not np.array_equal(p["fc2.w"], init["fc2.w"])
    with pytest.raises(ConfigError, match="matches no trainable"):
        train(_spirals(freeze=["fc3.*"]), out_dir=tmp_path, progress="none")


@pytest.mark.parametrize(
    "train_cfg,error,match",
    [
        ({"stpes": 10}, ConfigError, "did you mean `steps`"),
        ({"steps": 10, "epochs": 2}, ConfigError, "both set"),
        ({"data": {"task": "majority"}, "steps": None, "epochs": 2}, ConfigError, "endless stream"),
        ({"metrics": ["accuracy", "perplexty"]}, ConfigError, "did you mean `perplexity`"),
        ({"early_stopping": {"metric": "val_f1"}}, ConfigError, "is not a metric"),
        ({"data": {"dataset": "digits"}}, DataError, r"input `x` expects shape \[B, 2\]"),
        ({"batch": 0}, ConfigError, "batch must be >= 1"),
    ],
)
def test_config_and_data_mismatch_errors(tmp_path, train_cfg, error, match):
    model = _spirals(**train_cfg)
    with pytest.raises(error, match=match):
        train(model, out_dir=tmp_path, progress="none")


def test_a_model_without_losses_is_refused(tmp_path):
    model = _spirals()
    model.losses = []
    with pytest.raises(ConfigError, match="lists no losses"):
        train(model, out_dir=tmp_path, progress="none")


def test_plain_progress_lines(tmp_path, capsys):
    # log_every 5: most steps have no metrics row, the progress line must not care
    model = _spirals(steps=12, log_every=5)
    train(model, out_dir=tmp_path, progress=PlainProgress(interval=0.0))
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("step ") and "/12" in line]
    assert len(steps) == 12 and steps[-1].startswith("step 12/12  loss ")
    # the first steps (kernels loading or compiling) are left out of the speed and the ETA
    assert " lr " in steps[0] and "samples/s" not in steps[0] and "eta" not in steps[0]
    assert "samples/s" in steps[4] and "eta" in steps[4]
    assert "eta" not in steps[-1]
    assert any(line.startswith("step 10: val_loss") for line in lines)


def test_predict_classes(tmp_path):
    model = _spirals(steps=5)
    params = model.init_params(0)
    rows = predict(model, params, n=4)
    assert len(rows) == 4
    assert all(r["predicted"] in (0, 1) and 0.5 <= r["prob"] <= 1 for r in rows)
    assert all("label" in r for r in rows)


class ReverseOracle(TokenModel):
    """Logits at position t come from tokens[:, :t + 1] only and solve reverse_digits exactly."""

    def __init__(self, length):
        super().__init__(vocab=11, seq_len=2 * length)
        self.length = length

    def forward(self, params, batch, *, training, seed):
        tok = batch["tokens"]
        n, t_len = tok.shape
        logits = np.zeros((n, t_len, 11))
        for t in range(self.length, t_len):  # target t is answer digit t - length
            logits[np.arange(n), t, tok[:, 2 * self.length - 1 - t]] = 5.0
        result = super().forward(params, batch, training=training, seed=seed)
        result.outputs["logits"] = logits
        return result


def test_greedy_decoding_fills_the_answer_without_seeing_it(tmp_path):
    model = ReverseOracle(4)
    model.train = {"data": {"task": "reverse_digits", "length": 4}}
    rows = predict(model, model.init_params(0), n=5)
    assert all(r["correct"] for r in rows), rows
    r = rows[0]
    assert r["input"].endswith("|") and r["predicted"] == r["input"][:4][::-1]
    assert "->" in r["text"]
    # the plain token model cannot reverse: decoding must then report mistakes
    plain = TokenModel(seq_len=8, train=model.train)
    assert not all(r["correct"] for r in predict(plain, plain.init_params(0), n=5))


def test_max_steps_stops_with_a_final_evaluation(tmp_path):
    summary = train(_spirals(eval_every=10), out_dir=tmp_path, progress="none", max_steps=13)
    assert summary["status"] == "stopped" and summary["steps"] == 13
    assert summary["checkpoint_step"] == 13
    last = _rows(tmp_path)[-1]
    assert last["step"] == 13 and summary["metrics"]["val_loss"] == last["val_loss"]


class InterruptedMLP(MLP):
    def __init__(self, at, **kw):
        super().__init__(**kw)
        self.at, self.training_calls = at, 0

    def forward(self, params, batch, *, training, seed):
        self.training_calls += training
        if self.training_calls == self.at:
            raise KeyboardInterrupt
        return super().forward(params, batch, training=training, seed=seed)


def test_ctrl_c_keeps_the_last_checkpoint_and_says_so(tmp_path):
    model = InterruptedMLP(17, train={**_spirals().train, "checkpoint_every": 5})
    with pytest.raises(KeyboardInterrupt):
        train(model, out_dir=tmp_path, progress="none")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["checkpoint_step"] == 15
    assert load_checkpoint(tmp_path / "checkpoint").state["step"] == 15
    resumed = train(_spirals(), out_dir=tmp_path, progress="none", resume=True)
    assert resumed["status"] == "completed" and resumed["resumed_from"] == 15


def test_rich_progress_renders_step_loss_and_lr(tmp_path):
    import io

    from rich.console import Console

    from graphc.runtime.progress import RichProgress

    buf = io.StringIO()
    bar = RichProgress(console=Console(file=buf, force_terminal=True, width=150))
    train(_spirals(steps=12), out_dir=tmp_path, progress=bar)
    out = buf.getvalue()
    assert "12/12" in out and "loss" in out and "lr" in out and "val_loss" in out


def test_accumulated_micro_batches_equal_one_big_batch(tmp_path):
    # same samples either way: epoch 0's order is fixed by the seed, batches are consecutive
    def run(out, batch, accumulate):
        model = MLP(
            hidden=8,
            track_stats=False,
            train={
                "data": {"task": "xor"},
                "batch": batch,
                "accumulate": accumulate,
                "steps": 3,
                "eval_every": 0,
                "optimizer": {"name": "sgd", "lr": 0.5},
            },
        )
        train(model, out_dir=tmp_path / out, progress="none")
        return load_checkpoint(tmp_path / out / "checkpoint").params

    one, two, four = run("one", 64, 1), run("two", 32, 2), run("four", 16, 4)
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(four[k], one[k], rtol=1e-5, atol=1e-6)
    summed = run("sum", 32, 1)  # a different batch really does give different weights
    assert not np.allclose(summed["fc1.w"], one["fc1.w"], rtol=1e-3)


def test_data_map_renames_fields_for_inputs_and_metrics(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (300, 2)).astype(np.float32)
    np.savez(tmp_path / "pts.npz", points=pts, label=(pts[:, 0] > 0).astype(np.int64))
    model = _spirals(
        data={"file": str(tmp_path / "pts.npz"), "map": {"x": "points", "y": "label"}},
        steps=60,
        eval_every=60,
    )
    summary = train(model, out_dir=tmp_path / "run", progress="none")
    assert summary["metrics"]["val_accuracy"] > 0.9  # accuracy found its labels via the map
    assert (
        evaluate(model, load_checkpoint(tmp_path / "run" / "checkpoint").params)["accuracy"]
        == summary["metrics"]["val_accuracy"]
    )


def test_auto_progress_is_plain_without_a_terminal(capsys):
    from graphc.runtime.progress import RichProgress, make_progress

    assert type(make_progress("auto")) is PlainProgress  # pytest captures stdout: no TTY
    assert isinstance(make_progress("rich"), RichProgress)
    with pytest.raises(ValueError, match="auto, rich, plain or none"):
        make_progress("fancy")
