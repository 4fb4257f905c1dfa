"""`graphc lint` on the command line: exit status, formats (SARIF validated against the schema)."""

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.lint.table import all_rules
from tests.conftest import REFERENCE_SPECS

RULES = all_rules()
SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


def run(*args):
    return CliRunner().invoke(main, ["lint", *map(str, args)])


@pytest.fixture
def bad(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(RULES["GL101"].bad)
    return path


NOISY = """\
inputs:
  x: {shape: [B, 3, 8, 8]}
  y: {shape: [B], dtype: int64}
nodes:
  conv: {op: conv2d, in: x, out: 16, kernel: 3, padding: 1}
  bn: {op: batchnorm, in: conv}
  act: {op: relu, in: bn}
  pool: {op: global_avgpool, in: act}
  logits: {op: linear, in: pool, out: 10}
  probs: {op: softmax, in: logits}
  loss: {op: cross_entropy, in: [probs, y]}
  feat: {op: dropout, in: pool, lint: {ignore: [GL104], reason: "noisy features are the point"}}
outputs: [probs, feat]
losses: [loss]
train:
  data: {dataset: digits}
  optimizer: {name: adam, lr: 5}
"""


@pytest.fixture
def noisy(tmp_path):
    """Findings of every severity (GL101, GL402, GL305), related locations, a suppressed GL104."""
    path = tmp_path / "noisy.yaml"
    path.write_text(NOISY)
    return path


def test_exit_status(tmp_path, bad):
    assert run(*REFERENCE_SPECS).exit_code == 0
    assert run(bad).exit_code == 1
    assert run(bad, "--ignore", "GL101").exit_code == 0
    assert run(bad, "--fail-on", "never").exit_code == 0
    assert run().exit_code == 2
    assert run(bad, "--select", "GL999").exit_code == 2
    assert run(bad, "--format", "xml").exit_code == 2
    assert run("--explain", "GL999").exit_code == 2
    assert run(tmp_path / "missing.yaml").exit_code == 1  # GC001, like `check`


def test_text_output_groups_by_file(bad):
    result = run(bad, *REFERENCE_SPECS)
    out = result.output
    assert f"{bad}:7:34: error[GL101]" in out
    assert "loss: {op: cross_entropy, in: [probs, y]}" in out and "^^^^^" in out
    assert "hint:" in out
    assert f"{bad}: 1 error" in out
    assert "specs/cnn.yaml: no problems" in out or "cnn.yaml: no problems" in out
    assert "5 files: 1 error" in out


def test_select_and_ignore_accept_commas_and_prefixes(noisy):
    out = run(noisy, "--format", "json", "--select", "GL1,GL3", "--ignore", "GL305").output
    found = {d["code"] for d in json.loads(out)["files"][0]["diagnostics"]}
    assert found == {"GL101"}


def test_json(noisy):
    result = run(noisy, "--format", "json", "--fail-on", "error")
    data = json.loads(result.output)
    assert result.exit_code == 1
    (f,) = data["files"]
    assert f["linted"] and f["failed"]
    by_code = {d["code"]: d for d in f["diagnostics"]}
    assert set(by_code) == {"GL101", "GL305", "GL402"}
    assert [(d["code"], d["suppressed_by"]) for d in f["suppressed"]] == [("GL104", "spec")]
    assert by_code["GL101"]["rule"] == "probabilities-into-logits-loss"
    assert by_code["GL101"]["span"]["line"] > 0 and by_code["GL101"]["hint"]
    assert data["summary"]["error"] == 1


def test_sarif_validates_against_the_schema(noisy, bad):
    result = run(noisy, bad, "--format", "sarif")
    log = json.loads(result.output)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)
    (sarif_run,) = log["runs"]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules[:len(RULES)]] == list(RULES)
    results = sarif_run["results"]
    assert {r["ruleId"] for r in results} >= {"GL101", "GL305"}
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        region = r["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
    assert any("suppressions" in r for r in results)  # the suppressed GL104 is kept, marked


def test_sarif_of_a_clean_run_validates():
    log = json.loads(run(*REFERENCE_SPECS, "--format", "sarif").output)
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(log)
    assert log["runs"][0]["results"] == []


def test_github_annotations(bad):
    out = run(bad, "--format", "github").output.strip().splitlines()
    assert len(out) == 1
    line = out[0]
    assert line.startswith(f"::error file={bad},line=7,col=34,")
    assert "title=graphc GL101::" in line
    assert "%0Ahint: feed" in line  # newlines escaped: one annotation per line


def test_explain_and_list():
    out = run("--explain", "GL107").output
    for part in ("GL107 unused-piece (note)", "Why it matters", "How to fix it", "Fires on:",
                 "Silent on the fixed spec:", "parts: {op: split"):
        assert part in out
    assert run("--explain", "causal-leak").output.startswith("GL201 causal-leak")
    listing = run("--list-rules").output
    assert all(code in listing for code in RULES)


def test_overrides_reach_the_rules(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(RULES["GL402"].good)
    assert run(path).exit_code == 0
    assert run(path, "--set", "optimizer.lr=5").exit_code == 1


def test_a_directory_stands_for_its_specs(tmp_path, bad):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.yml").write_text(RULES["GL101"].good)
    (tmp_path / "notes.txt").write_text("not a spec")
    out = run(tmp_path, "--format", "json").output
    files = [f["file"] for f in json.loads(out)["files"]]
    assert files == [str(bad), str(tmp_path / "sub" / "ok.yml")]
