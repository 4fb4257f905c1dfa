"""`graphc export SPEC --checkpoint DIR -o model.onnx [--verify]`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.compiler import compile_spec
from graphc.runtime.checkpoint import save_checkpoint
from tests.conftest import SPECS

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = compile_spec(SPECS / "lstm.yaml")
    path = tmp_path_factory.mktemp("lstm") / "checkpoint"
    save_checkpoint(path, model.init_params(0), {}, {"step": 7, "model": model.name, "model_hash": "abc"})
    return model, path


def test_export_with_verify(checkpoint, tmp_path):
    model, ckpt = checkpoint
    out = tmp_path / "lstm.onnx"
    r = run("export", SPECS / "lstm.yaml", "--checkpoint", ckpt, "-o", out, "--verify", "--dim", "T=9")
    assert r.exit_code == 0, r.output
    assert "inputs x[B×T×1]; outputs logits[B×2]" in r.output
    assert "on a batch with B=3, T=9" in r.output and r.output.rstrip().endswith("ok")
    m = onnx.load(str(out))
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["graphc.checkpoint_step"] == "7" and meta["graphc.checkpoint_model_hash"] == "abc"
    assert meta["graphc.spec"] == "lstm"


def test_export_errors(checkpoint, tmp_path, monkeypatch):
    _, ckpt = checkpoint
    r = run("export", SPECS / "lstm.yaml", "-o", tmp_path / "a.onnx")
    assert r.exit_code == 2 and "--checkpoint" in r.output
    r = run("export", SPECS / "lstm.yaml", "--checkpoint", tmp_path / "none", "-o", tmp_path / "a.onnx")
    assert r.exit_code == 1 and "no checkpoint" in r.output
    r = run("export", SPECS / "cnn.yaml", "--checkpoint", ckpt, "-o", tmp_path / "a.onnx")
    assert r.exit_code == 1 and "no value for parameter `conv1.weight`" in r.output
    r = run("export", SPECS / "lstm.yaml", "--checkpoint", ckpt, "-o", tmp_path / "no" / "a.onnx")
    assert r.exit_code == 1, r.output  # was a FileNotFoundError traceback
    assert f"cannot write {tmp_path / 'no' / 'a.onnx'}: No such file or directory; nothing was written" in r.output
    r = run("export", SPECS / "lstm.yaml", "--init-seed", "-1", "-o", tmp_path / "a.onnx")
    assert r.exit_code == 2 and "is not in the range x>=0" in r.output  # was a ValueError traceback
    from graphc.ops import OPS

    monkeypatch.delitem(OPS["lstm"].rules, "onnx")
    r = run("export", SPECS / "lstm.yaml", "--checkpoint", ckpt, "-o", tmp_path / "a.onnx")
    assert r.exit_code == 1 and "node `rnn` (lstm): this op has no ONNX exporter" in r.output
    assert "nothing was written" in r.output and not (tmp_path / "a.onnx").exists()
    assert "Traceback" not in r.output
