"""Run directories: a lock keeps two runs apart, an earlier run is versioned rather than
overwritten, Ctrl-C ends a run with a checkpoint, resume continues the same schedule, a
diverging loss stops the run, and memory is budgeted before it is used (issue #11)."""

import json
import signal
import warnings

import numpy as np
import pytest

from graphc.runtime import (
    ConfigError,
    NonFiniteError,
    TrainingError,
    load_checkpoint,
    train,
)
from graphc.runtime.budget import Budget, parse_size
from graphc.runtime.errors import ResourceError, RunDirError
from graphc.runtime.rundir import LOCK_FILE, RunLock

from .toymodels import MLP


def _spirals(**cfg):
    train_cfg = {
        "data": {"task": "spirals"},
        "batch": 16,
        "steps": 8,
        "eval_every": 4,
        "optimizer": {"name": "adam", "lr": 0.01},
        **cfg,
    }
    return MLP(hidden=8, train=train_cfg)


# --- versions and locks -----------------------------------------------------------------------


def test_an_earlier_run_is_versioned_not_overwritten(tmp_path, capsys):
    out = tmp_path / "cnn"
    first = train(_spirals(), out_dir=out, progress="none", existing="version")
    assert first["out_dir"] == str(out)
    before = (out / "metrics.jsonl").read_bytes()
    second = train(_spirals(seed=1), out_dir=out, progress="none", existing="version")
    assert second["out_dir"] == str(tmp_path / "cnn-2")
    assert f"{out} holds an earlier run; this one goes to {tmp_path / 'cnn-2'}" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_bytes() == before
    third = train(_spirals(), out_dir=out, progress="none", existing="version")
    assert third["out_dir"] == str(tmp_path / "cnn-3")
    with pytest.raises(RunDirError, match="already holds a run; resume it"):
        train(_spirals(), out_dir=out, progress="none", existing="error")


def test_an_empty_directory_is_used_as_it_is(tmp_path):
    (tmp_path / "run").mkdir()
    summary = train(_spirals(), out_dir=tmp_path / "run", progress="none", existing="version")
    assert summary["out_dir"] == str(tmp_path / "run")


def test_overwrite_removes_the_earlier_runs_files_only(tmp_path):
    out = tmp_path / "run"
    train(_spirals(early_stopping={"metric": "val_loss", "patience": 9}), out_dir=out, progress="none")
    assert (out / "best").is_dir()
    (out / "notes.txt").write_text("mine")
    summary = train(_spirals(steps=2), out_dir=out, progress="none", existing="overwrite")
    assert summary["out_dir"] == str(out) and load_checkpoint(out / "best").state["step"] == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert load_checkpoint(out / "checkpoint").state["step"] == 2
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()][-1] == 2


def test_a_locked_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    train(_spirals(), out_dir=out, progress="none")
    other = RunLock(out)  # a second open file: flock conflicts as with another process
    assert other.acquire()
    try:
        for kwargs in ({}, {"existing": "version"}, {"resume": True}):
            with pytest.raises(RunDirError, match=rf"{out} is in use by another training run \(pid "):
                train(_spirals(), out_dir=out, progress="none", **kwargs)
    finally:
        other.release()
    assert (out / LOCK_FILE).read_text().strip().isdigit()
    assert train(_spirals(steps=9), out_dir=out, progress="none", resume=True)["resumed_from"] == 8


def test_the_lock_is_released_after_an_error(tmp_path):
    out = tmp_path / "run"
    train(_spirals(), out_dir=out, progress="none")
    with pytest.raises(TrainingError):
        train(MLP(hidden=3, train=_spirals().train), out_dir=out, progress="none", resume=True)
    lock = RunLock(out)
    assert lock.acquire()
    lock.release()


# --- Ctrl-C -------------------------------------------------------------------------------------


class SigintAt(MLP):
    """Sends itself SIGINT during the `at`-th training forward (as a user's Ctrl-C would)."""

    def __init__(self, at, **kw):
        super().__init__(**kw)
        self.at, self.n_train = at, 0

    def forward(self, params, batch, *, training, seed):
        self.n_train += training
        if training and self.n_train == self.at:
            signal.raise_signal(signal.SIGINT)
        return super().forward(params, batch, training=training, seed=seed)


def test_ctrl_c_finishes_the_step_and_saves_it(tmp_path, capsys):
    out = tmp_path / "run"
    model = SigintAt(7, hidden=8, train={**_spirals(steps=20).train, "checkpoint_every": 5})
    summary = train(model, out_dir=out, progress="none")
    assert summary["status"] == "interrupted" and summary["steps"] == 7
    assert summary["checkpoint_step"] == 7 and load_checkpoint(out / "checkpoint").state["step"] == 7
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert f"interrupted: stopped at step 7 of 20; the checkpoint is saved, continue with --resume {out}" in (
        capsys.readouterr().err
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    resumed = train(_spirals(steps=20), out_dir=out, progress="none", resume=True)
    train(_spirals(steps=20), out_dir=tmp_path / "straight", progress="none")
    assert resumed["resumed_from"] == 7
    a = load_checkpoint(out / "checkpoint").params
    b = load_checkpoint(tmp_path / "straight" / "checkpoint").params
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    class Twice(SigintAt):
        def forward(self, params, batch, *, training, seed):
            if training and self.n_train + 1 == self.at:
                signal.raise_signal(signal.SIGINT)  # the first: finish the step...
            return super().forward(params, batch, training=training, seed=seed)  # ...the second

    model = Twice(7, hidden=8, train={**_spirals(steps=20).train, "checkpoint_every": 5})
    with pytest.raises(KeyboardInterrupt):
        train(model, out_dir=tmp_path, progress="none")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["checkpoint_step"] == 5


# --- resume continues the same schedule ----------------------------------------------------------


def _params(out):
    return load_checkpoint(out / "checkpoint").params


def _same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


@pytest.mark.parametrize("schedule", [{"name": "cosine", "warmup": 3}, {"name": "linear"}])
def test_resume_to_n_equals_a_straight_run_of_n(tmp_path, capsys, schedule):
    model = lambda: _spirals(steps=10, schedule=schedule)  # noqa: E731
    train(model(), out_dir=tmp_path / "straight", progress="none", overrides={"steps": 30})
    # a run started for 30 steps and stopped at 12 (Ctrl-C, a kill, max_steps) ...
    train(model(), out_dir=tmp_path / "b", progress="none", overrides={"steps": 30}, max_steps=12)
    # ... continues to its own 30 without being told, or to --steps 30
    train(model(), out_dir=tmp_path / "b", progress="none", resume=True, max_steps=5)
    assert "resuming at step 12 of 30" in capsys.readouterr().err
    train(model(), out_dir=tmp_path / "b", progress="none", resume=True, overrides={"steps": 30})
    assert "resuming at step 17 of 30" in capsys.readouterr().err
    assert _same(_params(tmp_path / "straight"), _params(tmp_path / "b"))
    rows = lambda d: [r for r in map(json.loads, (d / "metrics.jsonl").open()) if "lr" in r]  # noqa: E731
    assert [r["lr"] for r in rows(tmp_path / "b")] == [r["lr"] for r in rows(tmp_path / "straight")]


def test_extending_a_finished_run_follows_the_longer_schedule(tmp_path, capsys):
    model = lambda: _spirals(steps=10, schedule="cosine", log_every=1)  # noqa: E731
    train(model(), out_dir=tmp_path / "straight", progress="none", overrides={"steps": 30})
    train(model(), out_dir=tmp_path / "b", progress="none")  # finished: 10 steps of 10
    train(model(), out_dir=tmp_path / "b", progress="none", resume=True, overrides={"steps": 30})
    err = capsys.readouterr().err
    assert "resuming at step 10 of 30 (the cosine schedule now spans 30 steps instead of 10" in err
    lr = lambda d: {r["step"]: r["lr"] for r in map(json.loads, (d / "metrics.jsonl").open()) if "lr" in r}  # noqa: E731
    straight, extended = lr(tmp_path / "straight"), lr(tmp_path / "b")
    assert all(extended[s] == straight[s] for s in range(11, 31))  # the remaining steps agree
    assert extended[10] < straight[10]  # the first 10 ran on their own, shorter, horizon


def test_resume_below_the_checkpoint_step_is_refused(tmp_path):
    train(_spirals(steps=8), out_dir=tmp_path, progress="none")
    with pytest.raises(ConfigError, match="is at step 8, past the 5 steps asked for; resume with --steps 8"):
        train(_spirals(), out_dir=tmp_path, progress="none", resume=True, overrides={"steps": 5})


def test_resume_keeps_the_runs_own_overrides(tmp_path):
    cfg = {"seed": 3, "optimizer.lr": 0.05, "steps": 12}
    train(_spirals(), out_dir=tmp_path / "a", progress="none", overrides=cfg)
    train(_spirals(), out_dir=tmp_path / "b", progress="none", overrides=cfg, max_steps=5)
    summary = train(_spirals(), out_dir=tmp_path / "b", progress="none", resume=True)
    assert summary["steps"] == 12 and _same(_params(tmp_path / "a"), _params(tmp_path / "b"))
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["overrides"] == cfg and saved["train"]["seed"] == 3


# --- divergence and warnings -------------------------------------------------------------------


class Exploding(MLP):
    """Multiplies its training loss by `factor` from the `at`-th training forward on."""

    def __init__(self, at, factor, **kw):
        super().__init__(**kw)
        self.at, self.factor, self.n_train = at, factor, 0

    def forward(self, params, batch, *, training, seed):
        result = super().forward(params, batch, training=training, seed=seed)
        self.n_train += training
        if training and self.n_train >= self.at:
            result.losses["ce"] *= self.factor
        return result


@pytest.mark.parametrize("factor", [3e27, 2e6])
def test_a_loss_that_explodes_without_reaching_inf_stops_the_run(tmp_path, factor):
    model = Exploding(9, factor, hidden=8, train={**_spirals(steps=20).train, "checkpoint_every": 4})
    with pytest.raises(NonFiniteError) as err:
        train(model, out_dir=tmp_path, progress="none")
    message = str(err.value)
    assert message.startswith("loss diverged at step 9: ") and "times the first step's loss" in message
    assert "the largest parameters are at node `fc" in message
    assert "the last good checkpoint (step 8) is kept" in message and err.value.step == 8
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["checkpoint_step"] == 8


def test_no_numpy_warning_leaks_from_an_exploding_optimizer(tmp_path):
    model = _spirals(optimizer={"name": "sgd", "lr": 1e30}, steps=30, checkpoint_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning (overflow, invalid) would raise
        with pytest.raises(NonFiniteError, match="at step"):
            train(model, out_dir=tmp_path, progress="none")
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    assert all(np.all(np.isfinite(v)) for v in ckpt.params.values())


# --- memory budget -----------------------------------------------------------------------------


def test_parse_size():
    assert parse_size("2GB") == 2 * 2**30 and parse_size("512m") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size("3000000") == 3_000_000
    for bad in ("lots", "-1GB", "1e400GB", "0.5KB", "GB"):
        with pytest.raises(ConfigError, match="memory size"):
            parse_size(bad)
    with pytest.raises(ConfigError, match="too large to be a size"):  # was "must be at least 1MB"
        parse_size("1e400GB")


def test_the_budget_is_the_smallest_limit():
    assert Budget.detect("64MB").limit == 64 * 2**20
    assert Budget.detect().limit <= Budget.detect("100TB").limit


@pytest.mark.parametrize(
    "make,what",
    [
        (
            lambda: MLP(in_shape=(15, 1), train={**_spirals().train, "batch": 10**6, "data": {"task": "majority"}}),
            "a training step with batch 1000000",
        ),
        (
            lambda: _spirals(batch=1000, accumulate=4096),
            "a training step with batch 1000 and accumulate 4096",
        ),
        (
            lambda: _spirals(data={"task": "spirals", "train_size": 10**7}),
            "task two_spirals with val_size 400 and train_size 10000000",
        ),
    ],
)
def test_a_run_that_does_not_fit_is_refused_before_allocating(tmp_path, make, what):
    with pytest.raises(ResourceError) as err:
        train(make(), out_dir=tmp_path / "r", progress="none", max_memory="100MB")
    assert str(err.value).startswith(what) and "the --max-memory limit is 100 MiB" in str(err.value)
    assert not (tmp_path / "r").exists()
    train(_spirals(steps=1), out_dir=tmp_path / "r", progress="none", max_memory="100MB")  # fits


def test_a_model_too_big_for_memory_is_refused_before_initialization(tmp_path):
    model = MLP(hidden=10**9, train=_spirals().train)  # 5e9 parameters: init would take 20 GB
    with pytest.raises(ResourceError, match=r"model 'mlp' \(5,000,000,004 parameters, their gradients"):
        train(model, out_dir=tmp_path / "r", progress="none", max_memory="2GB")


def test_a_memory_error_mid_run_is_a_clear_error(tmp_path):
    class Greedy(MLP):
        def forward(self, params, batch, *, training, seed):
            self.calls += 1
            if training and self.calls > 6:
                raise MemoryError
            return super().forward(params, batch, training=training, seed=seed)

    model = Greedy(hidden=8, train={**_spirals(steps=20).train, "checkpoint_every": 2})
    with pytest.raises(ResourceError, match=r"ran out of memory at step \d+ \(estimated .*; the last checkpoint"):
        train(model, out_dir=tmp_path, progress="none")
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "out_of_memory"


def test_resume_without_config_json_keeps_the_checkpoints_horizon(tmp_path):
    model = lambda: _spirals(steps=10, schedule="cosine")  # noqa: E731
    train(model(), out_dir=tmp_path / "a", progress="none", overrides={"steps": 16})
    train(model(), out_dir=tmp_path / "b", progress="none", overrides={"steps": 16}, max_steps=6)
    (tmp_path / "b" / "config.json").unlink()  # lost: the checkpoint's total_steps stands in
    assert train(model(), out_dir=tmp_path / "b", progress="none", resume=True)["steps"] == 16
    assert _same(_params(tmp_path / "a"), _params(tmp_path / "b"))
