"""The reference specs check clean, with the shapes and parameter counts their authors expect."""

import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from graphc.pipeline import analyze
from graphc.shapes import fmt_shape
from tests.conftest import REFERENCE_SPECS, ROOT, SPECS, schema_validator

EXPECTED = {
    # spec: (output shapes, trainable parameters) — counts derived by hand in the comments
    "transformer": ({"logits": "B×T×13", "loss": "scalar"},
                    # embed 13·64 + pos 64·64 + 2 layers × (attn 4·64·64+4·64 + 2 norms 2·128
                    #   + ff 64·256+256 + 256·64+64) + head 64·13+13
                    13 * 64 + 64 * 64 + 2 * (4 * 64 * 64 + 4 * 64 + 2 * 128 + 64 * 256 + 256
                                             + 256 * 64 + 64) + 64 * 13 + 13),
    "cnn": ({"logits": "B×10", "loss": "scalar"},
            32 * 9 + 32 + 64 * 32 * 9 + 64 + 256 * 128 + 128 + 128 * 10 + 10),
    "lstm": ({"logits": "B×2", "loss": "scalar"}, 4 * 32 * (1 + 32) + 2 * 4 * 32 + 32 * 2 + 2),
    "mlp": ({"logits": "B×2", "loss": "scalar"}, 2 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2),
}


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.stem)
def test_reference_spec_checks_clean(spec):
    a = analyze(spec)
    assert a.ok, [d.message for d in a.diagnostics]
    assert not a.diagnostics, [d.message for d in a.diagnostics]  # not even warnings
    shapes, params = EXPECTED[spec.stem]
    g = a.graph
    named = {**g.outputs, **g.losses}
    assert {k: fmt_shape(g.types[v].shape) for k, v in named.items()} == shapes
    assert g.param_count(trainable_only=True) == params


def test_every_reference_spec_has_expectations():
    assert {p.stem for p in REFERENCE_SPECS} == set(EXPECTED)


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.stem)
def test_schema_validates_reference_spec(spec):
    schema_validator().validate(yaml.safe_load(spec.read_text()))


def test_schema_rejects_unknown_attribute():
    doc = yaml.safe_load((SPECS / "mlp.yaml").read_text())
    doc["nodes"]["logits"]["outs"] = 3
    with pytest.raises(jsonschema.ValidationError):
        schema_validator().validate(doc)


def _graphc(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_check_all_reference_specs():
    r = _graphc("check", *[str(p.relative_to(ROOT)) for p in REFERENCE_SPECS])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": ok") == len(REFERENCE_SPECS)
    assert "logits [B×T×13]" in r.stdout


def test_cli_summary_totals_and_bound_dims():
    r = _graphc("summary", "specs/cnn.yaml", "--set", "B=32", "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"]["trainable"] == EXPECTED["cnn"][1]
    conv1 = next(n for n in data["rows"] if n["name"] == "conv1")
    assert conv1["outputs"] == [[32, 32, 8, 8]]
    assert conv1["flops"] == 2 * 32 * 32 * 8 * 8 * 9  # 2·MACs, one input channel, 3×3 taps
    text = _graphc("summary", "specs/transformer.yaml")
    assert text.returncode == 0 and "decoder.1.attn" in text.stdout and "105,741" in text.stdout


def test_cli_set_overrides_a_constant():
    r = _graphc("check", "specs/mlp.yaml", "--set", "hidden=8", "--format", "json")
    assert r.returncode == 0, r.stderr
    small = analyze(SPECS / "mlp.yaml", {"hidden": 8}).graph.param_count()
    assert small == 2 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2
    assert json.loads(r.stdout)["ok"] is True


def test_cli_schema_is_json_schema():
    r = _graphc("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert len(schema["$defs"]["node"]["oneOf"]) >= 42


def test_cli_missing_file_is_a_clear_error():
    r = _graphc("check", "specs/nope.yaml")
    assert r.returncode == 1
    assert "no such spec file" in r.stderr and "Traceback" not in r.stderr
