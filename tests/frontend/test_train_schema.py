"""The `train:` schema (graphc/spec/train_schema.py) and what `graphc check`/`lint` make of it.

Every bad value is a GC401 error at its line (or, for a `--set`, naming the `--set`), never a
GC900 internal error, a lint rule crash or a traceback; valid sections pass unchanged. The
README's key tables and the JSON Schema are generated from the same table.
"""

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from graphc.cli import main
from graphc.lint.engine import Config, lint_file
from graphc.pipeline import analyze
from graphc.schema import spec_schema
from graphc.spec import train_schema as ts
from tests.conftest import REFERENCE_SPECS, ROOT, SPECS

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MLP = SPECS / "mlp.yaml"
MLP_TEXT = MLP.read_text()
TRAIN_LINE = "  data: {task: two_spirals, noise: 0.05}\n"
TRAIN_AT = MLP_TEXT.splitlines().index(TRAIN_LINE.rstrip("\n")) + 1  # the line of `data:`


def gc401(a) -> list:
    assert not any(d.code == "GC900" for d in a.diagnostics), [d.message for d in a.diagnostics]
    return [d for d in a.diagnostics if d.code == "GC401" and d.is_error]


def spec_with(write_spec, line: str = "", replace: tuple[str, str] | None = None):
    """specs/mlp.yaml with `line` put right after `data:` in its train section (replacing the
    spec's own line for that key), and `replace` applied."""
    text = MLP_TEXT
    key = line.split(":")[0]
    if line:
        own = [x for x in text.splitlines(keepends=True) if x.startswith(f"{key}:")]
        text = text.replace(own[0], "") if own else text
        text = text.replace(TRAIN_LINE, TRAIN_LINE + line)
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    return write_spec(text)


# -- a bad value written in the spec: GC401 at its line -----------------------------------------
IN_SPEC = [
    ("  optimizer: {name: [adam]}\n", "train.optimizer.name must be one of"),
    ("  accumulate: 1e20\n", "train.accumulate must be <= 4096"),
    ("  epochs: 1e20\n", "train.epochs must be <= 1000000"),
    ("  seed: 1e309\n", "train.seed must be a whole number"),
    ("  clip_grad_norm: .nan\n", "train.clip_grad_norm must be a finite number"),
    ("  eval_every: 2.5\n", "train.eval_every must be a whole number"),
    ("  bacth: 3\n", "unknown key `bacth` in train"),
    ("  log_every: \"often\"\n", "train.log_every must be a whole number"),
    ("  accumulate: true\n", "train.accumulate must be a whole number"),
    ("  freeze: {a: 1}\n", "train.freeze must be a list"),
    ("  metrics: {loss: 1}\n", "train.metrics must be a list"),
    ("  schedule: {name: step}\n", "train.schedule has no `step_size`"),
    ("  schedule: {name: cosine, warmpu: 5}\n", "unknown key `warmpu`"),
    ("  early_stopping: {metric: val_f1}\n", "`val_f1` is not a metric"),
]


@pytest.mark.parametrize("line, message", IN_SPEC, ids=[c[0].strip() for c in IN_SPEC])
def test_a_bad_value_in_the_spec_is_gc401_at_its_line(write_spec, line, message):
    drop = ("  steps: 3000\n", "") if line.startswith("  epochs") else None  # not both
    a = analyze(spec_with(write_spec, line, drop))
    errors = gc401(a)
    assert len(errors) == 1, [d.message for d in errors]
    d = errors[0]
    assert message in d.message and d.span is not None
    assert d.span.line == TRAIN_AT + 1, (d.span, d.message)  # the line right after `data:`
    assert d.path.startswith("train.")


@pytest.mark.parametrize("lr", ["-1", ".nan", ".inf", "-.inf"])
def test_learning_rate_must_be_finite_and_not_negative(write_spec, lr):
    path = write_spec(MLP_TEXT.replace("{name: adam, lr: 1e-2}", f"{{name: adam, lr: {lr}}}"))
    (d,) = gc401(analyze(path))
    assert d.path == "train.optimizer.lr" and d.span.line == MLP_TEXT.count("\n", 0, MLP_TEXT.index(
        "optimizer: {name: adam")) + 1


def test_data_options_and_phases_are_checked_too(write_spec):
    path = spec_with(write_spec, "", ("{task: two_spirals, noise: 0.05}",
                                      "{task: two_spirals, noise: -1, train_size: 1e20, lenght: 3}"))
    messages = [d.message for d in gc401(analyze(path))]
    assert any("train.data.noise must be >= 0" in m for m in messages)
    assert any("train.data.train_size must be <= 10000000" in m for m in messages)
    assert any("unknown key `lenght` in train.data (two_spirals)" in m for m in messages)
    path = spec_with(write_spec, "  phases: [{loss: loss, params: [\"logits.*\"], evry: 2}]\n")
    (d,) = gc401(analyze(path))
    assert "unknown key `evry`" in d.message and d.hint == "did you mean `every`?"


def test_valid_train_sections_pass_and_are_not_changed():
    for spec in [*REFERENCE_SPECS, *EXAMPLES]:
        a = analyze(spec)
        assert a.ok, [d.message for d in a.errors]
        doc = yaml.load(spec.read_text(), Loader=_loader())
        assert a.graph.train == doc.get("train", {}), spec


def _loader():
    from graphc.spec.loader import _Loader

    return _Loader


# -- --set values: GC401 naming the --set -----------------------------------------------------
SETS = [
    ({"batch": float("inf")}, "--set batch=inf: train.batch must be a whole number"),
    ({"steps": 1e20}, "--set steps=1e+20: train.steps must be <= 1000000000"),
    ({"data.train_size": 1e20}, "--set data.train_size=1e+20: train.data.train_size must be <="),
    ({"accumulate": 1e20}, "--set accumulate=1e+20: train.accumulate must be <= 4096"),
    ({"optimizer.lr": "nan"}, "--set optimizer.lr=nan: train.optimizer.lr must be a finite number"),
    ({"optimizer.lr": -1}, "train.optimizer.lr must be >= 0"),
    ({"optimizer.name": ["adam"]}, "--set optimizer.name=[adam]: train.optimizer.name must be one"),
    ({"optimizer": {"name": ["adam"]}}, "train.optimizer.name must be one of"),
    ({"batch": True}, "--set batch=true: train.batch must be a whole number"),
    ({"batch": "abc"}, "train.batch must be a whole number"),
    ({"freeze": {"a": 1}}, "train.freeze must be a list"),
    ({"metrics": ["los"]}, "unknown metric 'los' in train.metrics[0]"),
    ({"data.task": "spiralz"}, "unknown task 'spiralz' in train.data.task"),
    ({"bacth": 3}, "--set bacth: this spec has no constant, dimension or train setting `bacth`"),
    ({"batch.x": 3}, "--set batch.x: override `batch.x`: train.batch is 64, not a mapping"),
    # was "no constant, dimension or train setting `hidden`" with the hint "did you mean `hidden`?"
    ({"hidden.x": 3}, "--set hidden.x: `hidden` is a constant, with no setting `x`"),
]


@pytest.mark.parametrize("sets, message", SETS, ids=[str(s) for s, _ in SETS])
def test_a_bad_set_value_is_gc401_naming_the_set(sets, message):
    errors = gc401(analyze(MLP, sets))
    assert len(errors) == 1 and message in errors[0].message, [d.message for d in errors]
    assert errors[0].span is None and "--set" in errors[0].message


def test_did_you_mean_for_set_names_covers_constants_and_train_keys():
    (d,) = gc401(analyze(MLP, {"hiden": 8}))
    assert d.hint == "did you mean `hidden`?"
    (d,) = gc401(analyze(MLP, {"bacth": 8}))
    assert d.hint == "did you mean `batch`?"


def test_good_set_values_merge_like_the_runtime(write_spec):
    a = analyze(MLP, {"optimizer.lr": 0.5, "steps": None, "schedule.warmup": 5, "B": 4})
    assert a.ok and a.graph.train["optimizer"] == {"name": "adam", "lr": 0.5}
    assert "steps" not in a.graph.train and a.graph.train["schedule"]["warmup"] == 5
    bare = write_spec(MLP_TEXT.replace("schedule: {name: cosine}", "schedule: cosine"))
    a = analyze(bare, {"schedule.warmup": 5})  # a bare name becomes a mapping, as at runtime
    assert a.ok and a.graph.train["schedule"] == {"name": "cosine", "warmup": 5}


def test_a_spec_without_train_still_checks_set_values(write_spec):
    text = MLP_TEXT[: MLP_TEXT.index("train:")]
    path = write_spec(text)
    assert analyze(path, {"steps": 5}).ok
    (d,) = gc401(analyze(path, {"accumulate": 1e20}))
    assert "train.accumulate must be <= 4096" in d.message


# -- lint and the command line ------------------------------------------------------------------
def test_lint_reports_instead_of_crashing(write_spec):
    path = write_spec(MLP_TEXT.replace("{name: adam, lr: 1e-2}", "{name: [adam], lr: 1e-2}"))
    result = lint_file(str(path), config=Config())
    assert not any("internal error" in d.message for d in result.diagnostics)
    assert [d.code for d in result.diagnostics if d.is_error] == ["GC401"]
    result = lint_file(str(MLP), overrides={"optimizer.name": ["adam"]}, config=Config())
    assert not any("internal error" in d.message for d in result.diagnostics)


def test_lint_rules_read_the_schema_defaults():
    from graphc.lint.rules_train import lr_range, weight_decay

    assert lr_range("adam") == (1e-5, 0.03) and lr_range("momentum") == (1e-4, 1.0)
    assert weight_decay({"name": "adamw"}) == 0.01 and weight_decay({"name": "adam"}) == 0.0


@pytest.mark.parametrize("command", ["check", "lint"])
@pytest.mark.parametrize("value", ["batch=1e309", "accumulate=1e20", "data.train_size=1e20",
                                   "optimizer.lr=nan", "optimizer.name=[adam]", "batch=true"])
def test_cli_exits_1_with_a_diagnostic(command, value):
    r = CliRunner().invoke(main, [command, str(MLP), "--set", value])
    out = r.output
    assert r.exit_code == 1, out
    assert "GC401" in out and "--set" in out
    assert "Traceback" not in out and "GC900" not in out and "internal error" not in out


def test_cli_check_points_at_the_line(write_spec):
    path = write_spec(MLP_TEXT.replace("batch: 64", "batch: 1e309"))
    r = CliRunner().invoke(main, ["check", str(path)])
    line = MLP_TEXT.splitlines().index("  batch: 64") + 1
    assert r.exit_code == 1 and f"{path}:{line}:10: error[GC401]: train.batch" in r.output


# -- the generated artifacts --------------------------------------------------------------------
def test_readme_tables_match_the_schema():
    readme = (ROOT / "runtime" / "README.md").read_text()
    assert ts.update_readme(readme) == readme, (
        "runtime/README.md's train tables are stale: "
        "python -m graphc.spec.train_schema --write runtime/README.md")


def test_json_schema_types_the_train_section():
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["train"] == ts.json_schema()
    validator = jsonschema.Draft202012Validator(schema)  # checked once above, not once per spec
    for spec in [*REFERENCE_SPECS, *EXAMPLES]:
        validator.validate(yaml.safe_load(spec.read_text()))


JSON_CASES = [
    {"optimizer": {"name": ["adam"]}}, {"accumulate": 1e20}, {"batch": True}, {"batch": "abc"},
    {"optimizer": {"name": "sgd", "betas": [0.9, 0.9]}}, {"bacth": 3}, {"optimizer": {"lr": "nan"}},
    {"data": {"task": "xor", "length": 3}}, {"data": {"task": "majority", "length": 3}},
    {"data": {"task": "brackets", "length": 3}}, {"data": {"task": "sort_digits", "length": 1000}},
    {"data": {"task": "majority", "length": 1000}}, {"schedule": {"name": "step"}},
    {"schedule": "cosine"}, {"schedule": {"name": "step", "step_size": 10, "gamma": 0.5}},
    {"optimizer": {"lr": 1e-3, "betas": [0.9, 0.99]}}, {"optimizer": "momentum"},
    {"optimizer": {"name": "momentum", "momentum": 1.0}}, {"data": {"file": "a.csv", "x": ["a"]}},
    {"phases": [{"loss": "a", "params": "b", "optimizer": {"lr": 1}}]}, {"phases": []},
    {"early_stopping": {"metric": "val_accuracy", "mode": "max"}}, {"metrics": "accuracy"},
    {"data": {"dataset": "digits", "flatten": True, "generate": {"z": "normal"}}},
    {"data": {"dataset": "digits", "generate": {"z": "gaussian"}}}, {"freeze": None},
]


@pytest.mark.parametrize("train", JSON_CASES, ids=[str(c) for c in JSON_CASES])
def test_json_schema_agrees_with_validate(train):
    by_json = jsonschema.Draft202012Validator(ts.json_schema()).is_valid(train)
    assert by_json == (not ts.validate(train, require_source=False)), ts.validate(train)
