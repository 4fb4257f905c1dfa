"""`graphc predict` and `CompiledModel.predict`: new inputs, no labels, only the inputs the
outputs read; files in (.npy/.npz/.csv/.txt) and out (.npy/.npz/.json/.csv); clear errors."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.compiler import InputError, compile_spec
from graphc.runtime.checkpoint import save_checkpoint
from tests.conftest import ROOT, SPECS

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """The cnn with (untrained) parameters in a checkpoint."""
    model = compile_spec(SPECS / "cnn.yaml")
    params = model.init_params(3)
    path = tmp_path_factory.mktemp("cnn") / "checkpoint"
    save_checkpoint(path, params, {}, {"step": 0, "model": model.name})
    return model, params, path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def test_predict_needs_only_the_inputs_the_outputs_read():
    model = compile_spec(SPECS / "transformer.yaml")
    params = model.init_params(0)
    tokens = np.random.default_rng(0).integers(0, 13, (3, 7))
    out = model.predict(params, {"tokens": tokens})  # no targets, no loss_mask
    full = model.forward(params, {"tokens": tokens, "targets": tokens, "loss_mask": np.ones((3, 7))})
    np.testing.assert_array_equal(out["logits"], full.outputs["logits"])
    assert list(model.inference_model().inputs) == ["tokens"]
    assert model.inference_model().losses == [] and "def backward" in model.inference_model().source
    with pytest.raises(InputError, match="missing input `tokens`.*`logits` reads `tokens`"):
        model.predict(params, {"x": tokens})


def test_predict_is_inference_mode_and_picks_outputs():
    model = compile_spec(ROOT / "examples" / "gan.yaml")
    params = model.init_params(0)
    z = np.random.default_rng(1).standard_normal((5, model.inputs["z"].shape[1]))
    out = model.predict(params, {"z": z}, outputs=["samples"])
    assert list(out) == ["samples"] and out["samples"].shape[0] == 5
    again = model.predict(params, {"z": z}, outputs=["samples"])
    np.testing.assert_array_equal(out["samples"], again["samples"])


def test_cli_classes_from_npy_csv_and_flattened_images(cnn, tmp_path):
    model, params, ckpt = cnn
    x = np.random.default_rng(0).random((6, 1, 8, 8))
    want = np.argmax(model.predict(params, {"x": x})["logits"], axis=-1)
    np.save(tmp_path / "x.npy", x.reshape(6, 64))  # flattened rows fill [B, 1, 8, 8]
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.npy")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert [int(line.split("\t")[1].split()[0]) for line in lines] == want.tolist()
    # a CSV with a header and a label column: the label is not an input
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    rows = [",".join(map(str, row)) + ",7" for row in x.reshape(6, 64)]
    (tmp_path / "x.csv").write_text("\n".join([header, *rows]) + "\n")
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.csv",
            "-o", tmp_path / "p.json", "--classes", ",".join(NAMES))
    assert r.exit_code == 0, r.output
    records = json.loads((tmp_path / "p.json").read_text())
    assert [rec["predicted"] for rec in records] == want.tolist()
    assert records[0]["class"] == NAMES[want[0]]
    assert 0 < records[0]["prob"] <= 1
    for suffix in ("npy", "csv", "npz"):
        r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.npy",
                "-o", tmp_path / f"p.{suffix}")
        assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "p.npy").tolist() == want.tolist()
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "predicted,prob"
    np.testing.assert_allclose(np.load(tmp_path / "p.npz")["logits"], model.predict(params, {"x": x})["logits"],
                               rtol=1e-6)


def test_a_large_input_runs_in_chunks_of_samples(cnn, monkeypatch):
    """A file of many samples is not one batch (a million images' activations would not fit):
    chunks of PREDICT_CHUNK samples, the same predictions as one forward."""
    predict = importlib.import_module("graphc.runtime.predict")  # the module: graphc.runtime.predict is also a function

    model, params, _ = cnn
    x = np.random.default_rng(4).random((23, 1, 8, 8))
    whole = model.predict(params, {"x": x})["logits"]
    calls = []
    monkeypatch.setattr(predict, "PREDICT_CHUNK", 5)
    forward = type(model).predict
    monkeypatch.setattr(type(model), "predict", lambda self, p, batch, **kw: calls.append(len(batch["x"]))
                        or forward(self, p, batch, **kw))
    out = predict.predict_arrays(model, params, {"x": x})["logits"]
    assert calls == [5, 5, 5, 5, 3]
    np.testing.assert_allclose(out, whole, rtol=1e-6, atol=1e-7)


def test_only_inputs_and_outputs_that_lead_with_one_batch_dim_run_in_chunks(tmp_path):
    predict = importlib.import_module("graphc.runtime.predict")  # the module: graphc.runtime.predict is also a function
    from tests.compiler.helpers import spec_text, write

    assert predict._samples_independent(compile_spec(SPECS / "cnn.yaml").inference_model())
    nodes = {"h": {"op": "linear", "in": "x", "out": 2}, "loss": {"op": "mean", "in": "h"}}
    fixed = spec_text({"x": [4, 3]}, nodes, outputs=["h"], losses=["loss"])  # no batch dim
    assert not predict._samples_independent(compile_spec(write(tmp_path, fixed)).inference_model())
    pooled = spec_text({"x": ["B", 3]}, {**nodes, "m": {"op": "mean", "in": "h"}}, outputs=["m"], losses=["loss"])
    assert not predict._samples_independent(compile_spec(write(tmp_path, pooled, "p.yaml")).inference_model())


def _npy_claiming(path, shape) -> bytes:
    """An .npy file whose header declares `shape` (float32) followed by only 64 bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32)) | {"shape": shape}
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(bytes(64))
    return path.read_bytes()


def _npz_of(path, name, blob) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, blob)
    for other in path.parent.glob("*.npy"):
        other.unlink()


def _truncated(path, array) -> None:
    np.save(path, array)
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("setup, message", [
    (lambda d: np.save(d / "in.npy", np.zeros((3, 7))), "model input `x` expects shape [B, 1, 8, 8], but"),
    (lambda d: np.save(d / "in.npy", np.array(["a", "b"])), "model input `x`"),
    (lambda d: (d / "in.npy").write_text("not numpy"), "is not a readable .npy array"),
    (lambda d: None, "no such file"),
    (lambda d: np.savez(d / "in.npz", y=np.zeros(3)), "the outputs read `x`"),
    (lambda d: (d / "in.csv").write_text("a,b\n1,x\n"), "in.csv:2: `x` is not a number"),
    # a header that declares 400 GB was a MemoryError traceback (np.load allocates it first)
    (lambda d: _npy_claiming(d / "in.npy", (10**11, 64)), "in.npy is truncated or corrupt: its header "
     "declares a float32 array of shape [100000000000, 64] (23.3 TiB), but it holds 64 B of data"),
    (lambda d: _npz_of(d / "in.npz", "x.npy", _npy_claiming(d / "x.npy", (10**11, 64))),
     "in.npz (array `x`) is truncated or corrupt"),
    (lambda d: _truncated(d / "in.npy", np.zeros((50, 64))), "in.npy is truncated or corrupt"),
    # NaN was predicted as `p=nan` (a CSV's NaN was refused)
    (lambda d: np.save(d / "in.npy", np.full((3, 64), np.nan)), "in.npy: sample 0 holds NaN or infinity"),
    # printed nothing and exited 0
    (lambda d: np.save(d / "in.npy", np.zeros((0, 64), np.float32)), "in.npy holds no samples"),
    (lambda d: np.savez(d / "in.npz", x=np.full((3, 64), np.inf)), "in.npz (array `x`): sample 0 holds"),
    # an .npz archive named .npy was an AttributeError traceback
    (lambda d: np.savez(d / "in.npz", x=np.zeros((2, 64))) or (d / "in.npz").rename(d / "in.npy"),
     "in.npy holds a .npz archive, not a single .npy array"),
])
def test_cli_bad_inputs_are_one_message_and_exit_1(cnn, tmp_path, setup, message):
    _, _, ckpt = cnn
    setup(tmp_path)
    name = next((p.name for p in tmp_path.iterdir()), "in.npy")
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / name)
    assert r.exit_code == 1, r.output
    assert message in r.output and "Traceback" not in r.output


def test_cli_usage_errors(cnn, tmp_path):
    _, _, ckpt = cnn
    np.save(tmp_path / "x.npy", np.zeros((2, 64)))
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.npy", "-o", "p.xyz")
    assert r.exit_code == 2 and "unknown output format" in r.output
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.npy", "--output", "zz")
    assert r.exit_code == 2 and "outputs are logits" in r.output
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", tmp_path / "none", "--input", tmp_path / "x.npy")
    assert r.exit_code == 1 and "no checkpoint" in r.output
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.npy", "--classes", "a,b")
    assert r.exit_code == 1 and "2 class names given for 10 classes" in r.output
    (tmp_path / "classes.txt").write_bytes(b"\xff\xfe binary")  # was a UnicodeDecodeError traceback
    r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.npy",
            "--classes", tmp_path / "classes.txt")
    assert r.exit_code == 1 and "--classes: cannot read" in r.output and "as UTF-8 text" in r.output
    for length in ("-5", str(10**12)):  # -5 classified the tokens as 0 does; 10**12 grew a list for days
        r = run("predict", SPECS / "cnn.yaml", "--checkpoint", ckpt, "--input", tmp_path / "x.npy", "--length", length)
        assert r.exit_code == 2 and "is not in the range 0<=x<=1000000" in r.output, r.output


def test_cli_text_prompts_continue_greedily_like_the_answer_decoder(tmp_path):
    from graphc.runtime import greedy_answers

    model = compile_spec(SPECS / "transformer.yaml")
    params = model.init_params(1)
    ckpt = tmp_path / "checkpoint"
    save_checkpoint(ckpt, params, {}, {"step": 0, "model": model.name})
    (tmp_path / "prompts.txt").write_text("31415926|\n12345678|\n")
    r = run("predict", SPECS / "transformer.yaml", "--checkpoint", ckpt, "--input", tmp_path / "prompts.txt")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert [line[:9] for line in lines] == ["31415926|", "12345678|"]
    # the runtime's answer decoder (full forward, answer slots blanked) agrees
    digits = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [1, 2, 3, 4, 5, 6, 7, 8]])
    seq = np.concatenate([digits, np.full((2, 1), 10), np.zeros((2, 8), int)], axis=1)
    mask = np.zeros((2, 16), np.float32)
    mask[:, 8:] = 1
    pred = greedy_answers(model, params, {"tokens": seq[:, :-1], "targets": seq[:, 1:], "loss_mask": mask})
    assert [line[9:] for line in lines] == ["".join(map(str, p[8:])) for p in pred]


def test_many_prompts_run_in_chunks_with_the_same_continuations(monkeypatch):
    predict = importlib.import_module("graphc.runtime.predict")
    model = compile_spec(SPECS / "transformer.yaml")
    params = model.init_params(2)
    prompts = ["31415926|", "12345678|", "99|", "1|", "27182818|"]
    whole = predict.continue_prompts(model, params, prompts, output="logits", length=4, base_dir=SPECS)
    monkeypatch.setattr(predict, "PREDICT_CHUNK", 2)
    assert predict.continue_prompts(model, params, prompts, output="logits", length=4, base_dir=SPECS) == whole
    assert [r["prompt"] for r in whole] == prompts


def test_cli_generated_inputs_are_drawn_when_not_given(tmp_path):
    spec = ROOT / "examples" / "spatial_transformer.yaml"
    model = compile_spec(spec)
    params = model.init_params(0)
    ckpt = tmp_path / "checkpoint"
    save_checkpoint(ckpt, params, {}, {"step": 0, "model": model.name})
    x = np.random.default_rng(0).random((4, 1, 8, 8))
    np.save(tmp_path / "x.npy", x)
    r = run("predict", spec, "--checkpoint", ckpt, "--input", tmp_path / "x.npy", "--raw", "-o", tmp_path / "o.npy")
    assert r.exit_code == 0, r.output
    ones, zeros = np.ones((4, 1)), np.zeros((4, 1))
    want = model.predict(params, {"x": x, "one": ones, "zero": zeros})["logits"]
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), want, rtol=1e-6)


CHAR_LM = """
graphc: 1
name: char_lm
inputs:
  tokens: {shape: [B, T], dtype: int64}
  targets: {shape: [B, T], dtype: int64}
  loss_mask: {shape: [B, T]}
nodes:
  embed: {op: embedding, in: tokens, num: 11, dim: 16}
  pos: {op: positional_encoding, in: embed, kind: learned, max_len: 16}
  attn: {op: attention, in: pos, heads: 2, causal: true}
  norm: {op: add_norm, in: [pos, attn]}
  logits: {op: linear, in: norm, out: 11}
  loss: {op: cross_entropy, in: {logits: logits, target: targets, mask: loss_mask}}
outputs: [logits]
losses: [loss]
train: {data: {file: corpus.txt, block: 16}, steps: 10}
"""


def test_cli_prompts_to_a_character_model_continue_as_sample_text(tmp_path):
    from graphc.runtime import sample_text

    (tmp_path / "corpus.txt").write_text("the cat sat on the mat. " * 20)  # 11 characters
    (tmp_path / "char_lm.yaml").write_text(CHAR_LM)
    model = compile_spec(tmp_path / "char_lm.yaml")
    params = model.init_params(2)
    save_checkpoint(tmp_path / "ckpt", params, {}, {"step": 0, "model": model.name})
    (tmp_path / "prompts.txt").write_text("the c\nmat\n")
    r = run("predict", tmp_path / "char_lm.yaml", "--checkpoint", tmp_path / "ckpt", "--input",
            tmp_path / "prompts.txt", "--length", "20", "-o", tmp_path / "out.json")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "out.json").read_text())
    for row in rows:
        assert row["continuation"] == sample_text(model, params, prompt=row["prompt"], length=20,
                                                  temperature=0)[len(row["prompt"]):]
    (tmp_path / "bad.txt").write_text("the dog\n")
    r = run("predict", tmp_path / "char_lm.yaml", "--checkpoint", tmp_path / "ckpt", "--input", tmp_path / "bad.txt")
    assert r.exit_code == 1 and "characters not in the vocabulary: 'dg'" in r.output
