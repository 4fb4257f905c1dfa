"""Train values that pass the schema train; values that do not are one-line ConfigErrors.

The schema (graphc/spec/train_schema.py) is the one table of `train:` keys; these tests hold
the runtime to it: TrainConfig rejects what `graphc check` rejects, with a one-line message and
no traceback, and the schema's defaults and option names are the ones the optimizers,
schedules and data sources really use.
"""

import math

import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.runtime import ConfigError
from graphc.runtime.config import TrainConfig, apply_overrides, as_number, parse_override
from graphc.spec import train_schema as ts
from tests.conftest import SPECS

MLP = SPECS / "mlp.yaml"
BASE = {"data": {"task": "xor"}}

BAD = [
    ({"optimizer": {"name": ["adam"]}}, "train.optimizer.name must be one of sgd, momentum"),
    ({"optimizer": ["adam"]}, "train.optimizer must be a mapping like"),
    ({"batch": 1e309}, "train.batch must be a whole number from 1 to 1048576, got inf"),
    ({"batch": 10**400}, "train.batch must be a whole number"),
    ({"steps": 1e20}, "train.steps must be <= 1000000000, got 1e+20"),
    ({"data": {"task": "xor", "train_size": 1e20}}, "train.data.train_size must be <= 10000000"),
    ({"accumulate": 1e20}, "train.accumulate must be <= 4096, got 1e+20"),
    ({"accumulate": 2.5}, "train.accumulate must be a whole number"),
    ({"epochs": 1e20}, "train.epochs must be <= 1000000"),
    ({"optimizer": {"lr": float("nan")}}, "train.optimizer.lr must be a finite number >= 0, got nan"),
    ({"optimizer": {"lr": float("inf")}}, "train.optimizer.lr must be a finite number"),
    ({"optimizer": {"lr": -1e-3}}, "train.optimizer.lr must be >= 0"),
    ({"optimizer": {"lr": "fast"}}, "train.optimizer.lr must be a finite number >= 0, got 'fast'"),
    ({"optimizer": {"name": "sgd", "betas": [0.9, 0.9]}}, "unknown key `betas` in train.optimizer (sgd)"),
    ({"optimizer": {"name": "momentum", "momentum": 1}}, "train.optimizer.momentum must be < 1"),
    ({"optimizer": {"betas": [0.9]}}, "train.optimizer.betas must be a list of 2"),
    ({"bacth": 3}, "unknown key `bacth` in train (did you mean `batch`?)"),
    ({"batch": "abc"}, "train.batch must be a whole number"),
    ({"batch": True}, "train.batch must be a whole number from 1 to 1048576, got True"),
    ({"seed": False}, "train.seed must be a whole number"),
    ({"clip_grad_norm": True}, "train.clip_grad_norm must be a finite number > 0"),
    ({"freeze": {"a": 1}}, "train.freeze must be a list of parameter name patterns"),
    ({"metrics": {"loss": 1}}, "train.metrics must be a list"),
    ({"phases": {"loss": "l"}}, "train.phases must be a list"),
    ({"phases": [{"loss": "l", "params": ["a"], "every": 1e20}]}, "train.phases[0].every must be <="),
    ({"schedule": {"name": "cosine", "warmup": 1e20}}, "train.schedule.warmup must be <="),
    ({"schedule": {"name": "cosine", "min_lr": float("nan")}}, "train.schedule.min_lr must be a finite"),
    ({"early_stopping": {"patience": float("inf")}}, "train.early_stopping.patience must be a whole"),
    ({"data": {"task": "xor", "noise": float("nan")}}, "train.data.noise must be a finite number"),
    ({"data": {"task": "reverse_digits", "length": 1000}}, "train.data.length must be <= 300"),
    ({"data": {"dataset": "digits", "test_fraction": float("inf")}}, "train.data.test_fraction"),
    ({"data": {"file": ["a.npz"]}}, "train.data.file must be a file name or a mapping"),
    ({"data": {"task": "xor", "generate": ["z"]}}, "train.data.generate must be a mapping"),
]


@pytest.mark.parametrize("train, message", BAD, ids=[str(t) for t, _ in BAD])
def test_bad_values_are_one_line_config_errors(train, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({**BASE, **train})
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("item, message", [
    ("batch=1e309", "train.batch must be a whole number"),
    ("accumulate=1e20", "train.accumulate must be <= 4096"),
    ("data.train_size=1e20", "train.data.train_size must be <= 10000000"),
    ("optimizer.lr=nan", "train.optimizer.lr must be a finite number"),
    ("optimizer.lr=inf", "train.optimizer.lr must be a finite number"),
    ("optimizer.lr=-1", "train.optimizer.lr must be >= 0"),
    ('optimizer.name=["adam"]', "train.optimizer.name must be one of"),
    ("steps=true", "train.steps must be a whole number"),
    ("stesp=3", "did you mean `steps`"),
])
def test_bad_overrides_are_config_errors(item, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        TrainConfig.from_dict(apply_overrides(BASE, dict([parse_override(item)])))


def test_valid_sections_resolve_as_before():
    cfg = TrainConfig.from_dict({**BASE, "batch": "64", "steps": 1e3, "clip_grad_norm": "1e-1",
                                 "optimizer": "momentum", "schedule": "cosine",
                                 "early_stopping": {"metric": "accuracy", "patience": 3.0},
                                 "metrics": "accuracy", "freeze": "fc.*",
                                 "phases": [{"loss": "l", "params": "p", "every": 1.0}]})
    assert cfg.batch == 64 and type(cfg.batch) is int and cfg.steps == 1000 and type(cfg.steps) is int
    assert cfg.clip_grad_norm == pytest.approx(0.1)
    assert cfg.optimizer == {"name": "momentum"} and cfg.schedule == {"name": "cosine"}
    es = cfg.early_stopping
    assert (es.metric, es.patience, es.mode, es.min_delta) == ("val_accuracy", 3, "max", 0.0)
    assert cfg.metrics == ["loss", "accuracy"] and cfg.freeze == ["fc.*"]
    assert cfg.phases[0].losses == ["l"] and cfg.phases[0].params == ["p"] and cfg.phases[0].every == 1
    bare = TrainConfig.from_dict({"data": {}})  # the source is build_data's to judge
    assert (bare.batch, bare.accumulate, bare.eval_every, bare.seed, bare.freeze) == (32, 1, 100, 0, [])


def test_as_number_refuses_non_finite_and_huge_values():
    for value in (float("nan"), float("inf"), "nan", "-inf", 10**400):
        with pytest.raises(ConfigError, match="finite"):
            as_number(value, "x")
    with pytest.raises(ConfigError, match="<= 10"):
        as_number(11, "x", kind=int, maximum=10)
    assert as_number("3", "x", kind=int) == 3 and as_number(2**70, "x", kind=int) == 2**70
    assert math.isclose(as_number("1e-3", "x"), 1e-3)


# -- the schema is the runtime's truth -----------------------------------------------------------
def test_optimizer_defaults_are_the_optimizers_own():
    from graphc.runtime.optim import OPTIMIZERS

    for name in ts.OPTIMIZERS:
        cls = OPTIMIZERS["sgd" if name == "momentum" else name]
        expected = {**cls.defaults, **({"momentum": 0.9} if name == "momentum" else {})}
        assert ts.optimizer_defaults(name) == expected, name


def test_schedule_options_are_the_schedules_own():
    from graphc.runtime.schedule import _OPTIONS, Schedule

    assert set(ts.SCHEDULE.variants) == set(_OPTIONS)
    for name, options in _OPTIONS.items():
        keys = set(ts.SCHEDULE.keys_for(name)) - {"name"}
        assert keys == {"warmup", *options}, name
        for key in keys:
            if not ts.SCHEDULE.keys_for(name)[key].required:
                assert ts.SCHEDULE.default(name, key) == getattr(Schedule, key), (name, key)


def test_data_sources_are_the_runtimes_own():
    from graphc.runtime.data import DATASETS, GENERATORS, TASKS
    from graphc.runtime.data.files import _KEYS
    from graphc.runtime.data.tasks import ALIASES

    assert tuple(GENERATORS) == ts.GENERATE_KINDS
    assert set(ts.DATASET.variants) == set(DATASETS)
    assert set(ts.FILE.keys_for(None)) == set(_KEYS)
    assert tuple(TASKS) == ts.TASKS and ts.TASK_ALIASES == ALIASES
    for name, task in TASKS.items():
        keys = ts.TASK.keys_for(name)
        assert set(keys) == {"task", "train_size", "val_size", "seed", *task.options}, name
        assert keys["train_size"].default == task.train_size, name
        assert keys["val_size"].default == task.val_size, name
        for option, default in task.options.items():
            assert keys[option].default == default, (name, option)


def test_metric_names_are_the_runtimes_own():
    from graphc.runtime import config

    assert config.METRIC_NAMES is ts.METRIC_NAMES


# -- graphc train: a bad value ends in one line and exit 1 ----------------------------------------
@pytest.mark.parametrize("value, message", [
    ("data.train_size=1e20", "error: train.data.train_size must be <= 10000000"),  # runtime
    ("optimizer.name=[adam]", "error: train.optimizer.name must be one of"),  # runtime
    ("accumulate=1e20", "error[GC401]: --set accumulate=1e+20: train.accumulate must be <= 4096"),
    ("optimizer.lr=nan", "train.optimizer.lr must be a finite number"),
])
def test_graphc_train_refuses_bad_values(tmp_path, value, message):
    r = CliRunner().invoke(main, ["train", str(MLP), "--steps", "1", "--out", str(tmp_path),
                                  "--progress", "none", "--set", value])
    assert r.exit_code == 1, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)
    assert not (tmp_path / "checkpoint").exists()
