"""`graphc summary`: input and output shapes, the trainable / frozen / buffer split, per-block
subtotals down to `--depth`, humanized totals, JSON with lists and numbers, and `--memory`
from the buffer plan."""

from __future__ import annotations

import json

from click.testing import CliRunner

from graphc.cli import main
from graphc.pipeline import analyze
from graphc.summary import fmt_count, human, json_shape, summarize
from tests.conftest import ROOT, SPECS

LORA = ROOT / "examples" / "lora.yaml"
RESNET = ROOT / "examples" / "resnet.yaml"
TRANSFORMER = SPECS / "transformer.yaml"
CNN = SPECS / "cnn.yaml"


def run(*args):
    r = CliRunner().invoke(main, ["summary", *map(str, args)])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def as_json(*args):
    r = run(*args, "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def row(data, name):
    return next(r for r in data["rows"] if r["name"] == name)


def test_lora_shows_its_frozen_base():
    data = as_json(LORA)
    base = row(data, "adapted.base")
    assert (base["trainable"], base["frozen"], base["buffers"]) == (0, 64 * 64 + 64, 0)
    t = data["totals"]
    assert t["frozen"] == 4160 and t["trainable"] == 4 * 64 * 2 + 64 * 10 + 10
    assert t["params"] == t["trainable"] + t["frozen"] and t["param_bytes"] == 4 * t["params"]
    assert data["freeze"] == ["adapted.base.*"]
    text = run(LORA).stdout
    assert "frozen 4,160 (train.freeze: adapted.base.*)" in text
    assert "512 trainable, 4,160 frozen" in text  # the block's own split


def test_batchnorm_running_statistics_are_buffers():
    t = as_json(RESNET)["totals"]
    assert t["buffers"] > 0 and t["params"] == t["trainable"] + t["buffers"]
    assert t["buffers"] == analyze(RESNET).graph.param_count() - analyze(RESNET).graph.param_count(trainable_only=True)
    assert "buffers 352" in run(RESNET).stdout


def test_input_shapes_beside_output_shapes_as_lists():
    data = as_json(TRANSFORMER, "--set", "B=8")
    norm = row(data, "decoder.0.norm1")
    assert norm["inputs"] == [[8, "T", 64], [8, "T", 64]] and norm["outputs"] == [[8, "T", 64]]
    assert row(data, "loss")["outputs"] == [[]]  # a scalar
    assert row(data, "tokens")["inputs"] == []
    assert data["sizes"] == {"B": 8}
    text = run(TRANSFORMER).stdout
    assert "input shape" in text and "B×T×64, B×T×64" in text


def test_blocks_have_subtotals_and_depth_folds_them():
    full = as_json(TRANSFORMER)
    block = row(full, "decoder.0")
    assert block["kind"] == "block" and block["op"] == "block decoder_layer" and block["repeat"] == "1 of 2"
    inside = [r for r in full["rows"] if r["name"].startswith("decoder.0.")]
    assert block["params"] == sum(r["params"] for r in inside) == 49_984
    assert block["inputs"] == [["B", "T", 64]] and block["outputs"] == [["B", "T", 64]]
    top = as_json(TRANSFORMER, "--depth", "0")
    assert [r["name"] for r in top["rows"]] == ["tokens", "targets", "loss_mask", "embed", "pos",
                                                "decoder.0", "decoder.1", "logits", "loss"]
    assert top["totals"] == full["totals"]  # folding rows changes no total
    text = run(TRANSFORMER, "--depth", "0").stdout
    assert "decoder.0" in text and "decoder.0.attn" not in text


def test_numbers_are_numbers_and_symbolic_counts_stay_expressions():
    symbolic = as_json(CNN)
    assert isinstance(symbolic["totals"]["params"], int)
    assert isinstance(symbolic["totals"]["flops"], str) and "B" in symbolic["totals"]["flops"]
    bound = as_json(CNN, "--set", "B=32")
    conv1 = row(bound, "conv1")
    assert conv1["outputs"] == [[32, 32, 8, 8]]
    assert conv1["flops"] == 2 * 32 * 32 * 8 * 8 * 9  # 2·MACs, one input channel, 3×3 taps
    assert isinstance(bound["totals"]["flops"], int)


def test_totals_are_humanized():
    assert human(35_897_344) == "35.9 M" and human(1290) == "1.3 K" and human(12) == "12"
    assert fmt_count(701_096 * analyze(CNN).graph.dims["B"]) == "701,096·B"
    assert json_shape(summarize(analyze(CNN)).nodes[0].outputs[0]) == ["B", 1, 8, 8]
    text = run(CNN, "--set", "B=64").stdout
    flops = summarize(analyze(CNN, {"B": 64})).flops
    assert f"FLOPs     {int(flops):,} ({human(int(flops))}) per forward pass" in text
    assert "params    53,002 (53.0 K), 207.0 KiB in float32" in text


def test_memory_of_a_training_step_from_the_buffer_plan():
    data = as_json(TRANSFORMER, "--set", "B=64", "--set", "T=16", "--memory")
    m = data["memory"]
    # README: the transformer at B=64, T=16 needs 8.8 MiB for 33 tensors instead of 14.1 MiB
    assert m["tensors"] == 33 and round(m["planned_bytes"] / 2**20, 1) == 8.8
    assert round(m["unshared_bytes"] / 2**20, 1) == 14.1
    assert m["param_bytes"] == m["grad_bytes"] == 4 * 105_741
    text = run(TRANSFORMER, "--set", "B=64", "--set", "T=16", "--memory").stdout
    assert "activations  8.8 MiB in" in text and "(14.1 MiB unshared)" in text


def test_memory_needs_every_dim_bound():
    r = run(TRANSFORMER, "--set", "B=64", "--memory")
    assert r.exit_code == 2
    assert "bind T with --set T=…" in r.output


def test_memory_is_only_computed_when_asked():
    assert "memory" not in as_json(CNN, "--set", "B=4")
    assert "add --memory" in run(CNN, "--set", "B=4").stdout


def test_unknown_set_key_is_an_error_with_a_suggestion():
    r = run(SPECS / "mlp.yaml", "--set", "hiden=8")
    assert r.exit_code == 1 and "did you mean `hidden`?" in r.output
    r = run(SPECS / "mlp.yaml", "--set", "optimizer.lrr=0.1")
    assert r.exit_code == 1 and "did you mean `lr`?" in r.output
