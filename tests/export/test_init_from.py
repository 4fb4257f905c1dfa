"""train.init_from: parameters from a safetensors file (a graphc checkpoint or a PyTorch
state_dict), with a name map and strict checking (graphc.runtime.init_from)."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from graphc.compiler import compile_spec
from graphc.runtime import evaluate, load_params, train
from graphc.runtime.errors import CheckpointError, ConfigError
from graphc.runtime.init_from import load_init
from tests.conftest import SPECS


@pytest.fixture(scope="module")
def mlp():
    return compile_spec(SPECS / "mlp.yaml")


def test_round_trip_train_save_init_same_metrics(mlp, tmp_path):
    summary = train(mlp, out_dir=tmp_path / "run", overrides={"steps": 60, "eval_every": 0},
                    progress="none")
    trained = load_params(tmp_path / "run", mlp)
    fresh = mlp.init_params(123)  # another seed: nothing in common but the shapes
    loaded = load_init(mlp, fresh, {"file": str(tmp_path / "run")}, from_cli=True)
    assert set(loaded.source) == set(mlp.params) and not loaded.missing and not loaded.unused
    assert loaded.metadata.get("model") == mlp.name  # a graphc checkpoint describes itself
    for name in mlp.params:
        np.testing.assert_array_equal(loaded.params[name], trained[name])
    assert evaluate(mlp, loaded.params) == evaluate(mlp, trained)
    assert summary["metrics"]["val_accuracy"] == evaluate(mlp, trained)["accuracy"]


def _save(tmp_path, tensors, name="w.safetensors"):
    path = tmp_path / name
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(path))
    return path


def test_map_renames_nodes_prefixes_and_parameters(mlp, tmp_path):
    params = mlp.init_params(0)
    nodes = sorted({s.node for s in mlp.params.values()})
    renamed = {f"net.{k}": v for k, v in params.items()}
    path = _save(tmp_path, renamed)
    loaded = load_init(mlp, mlp.init_params(9), {"file": str(path), "map": {"*": "net.*"}}, from_cli=True)
    assert all(np.array_equal(loaded.params[k], params[k]) for k in params)
    one = nodes[0]
    mapping = {n: f"other_{i}" for i, n in enumerate(nodes)}
    tensors = {f"{mapping[s.node]}{k[len(s.node):]}": params[k] for k, s in mlp.params.items()}
    path = _save(tmp_path, tensors, "x.safetensors")
    loaded = load_init(mlp, mlp.init_params(9), {"file": str(path), "map": mapping}, from_cli=True)
    assert loaded.source[f"{one}.weight"] == "other_0.weight"


def test_strict_reports_every_missing_unexpected_and_misshapen_name(mlp, tmp_path):
    params = mlp.init_params(0)
    names = list(params)
    tensors = dict(params)
    del tensors[names[0]]
    tensors[names[1]] = np.zeros((7, 7))
    tensors["extra.weight"] = np.zeros(3)
    tensors["bn.num_batches_tracked"] = np.zeros(1)  # PyTorch's BatchNorm counter: ignored
    path = _save(tmp_path, tensors)
    with pytest.raises(ConfigError) as err:
        load_init(mlp, params, {"file": str(path)}, from_cli=True)
    text = str(err.value)
    assert f"missing in the file: `{names[0]}`" in text
    assert (f"shape mismatch: `{names[1]}`: the model's is {list(params[names[1]].shape)}, the file's "
            f"`{names[1]}` is [7, 7]") in text
    assert "not used (no parameter of the model is named so): `extra.weight`" in text
    assert "num_batches_tracked" not in text and "strict: false" in text
    # not strict: missing and extra names are fine, a wrong shape never is
    del tensors[names[1]]
    path = _save(tmp_path, tensors)
    start = mlp.init_params(5)
    loaded = load_init(mlp, start, {"file": str(path), "strict": False}, from_cli=True)
    assert sorted(loaded.missing) == sorted(names[:2]) and loaded.unused == ["extra.weight"]
    np.testing.assert_array_equal(loaded.params[names[0]], start[names[0]])


@pytest.mark.parametrize("section, message", [
    ({"file": "w.safetensors", "strct": True}, "unknown key `strct` in train.init_from (did you mean `strict`?)"),
    ({"map": {}}, "train.init_from.file must name"),
    ({"file": "w.safetensors", "map": {"a.*": "b"}}, "as many `*` on each side"),
    ({"file": "w.safetensors", "map": {"nope": "x"}}, "map key `nope` matches no parameter or node"),
    ({"file": "missing.safetensors"}, "no such file or directory"),
    ({"file": "/etc/w.safetensors"}, "is an absolute path; a path in a spec must stay inside"),
    ({"file": "../w.safetensors"}, "leads out of the spec's directory"),
])
def test_bad_sections_are_clear_errors(mlp, tmp_path, section, message):
    (tmp_path / "spec").mkdir()
    _save(tmp_path / "spec", mlp.init_params(0))
    with pytest.raises(ConfigError) as err:
        load_init(mlp, mlp.init_params(0), section, tmp_path / "spec")
    assert message in str(err.value)


def test_a_pipe_is_not_called_a_directory(mlp, tmp_path):
    """A FIFO (or a device) was reported as 'a directory without model.safetensors'."""
    import os

    os.mkfifo(tmp_path / "w.safetensors")
    with pytest.raises(ConfigError, match="w.safetensors is not a regular file \\(a device, a pipe or a socket\\)"):
        load_init(mlp, mlp.init_params(0), {"file": "w.safetensors"}, tmp_path)


def test_an_unreadable_file_is_a_checkpoint_error(mlp, tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="cannot read .* as safetensors"):
        load_init(mlp, mlp.init_params(0), {"file": "w.safetensors"}, tmp_path)


@pytest.mark.torch
def test_transformer_loads_a_pytorch_state_dict_with_in_proj_weight(tmp_path):
    """PyTorch's TransformerEncoderLayer (post-norm, GELU) stack is the reference transformer;
    its state_dict loads through the map documented in docs/interop.md, and both compute the
    same logits."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    model = compile_spec(SPECS / "transformer.yaml")
    d, heads, ff, vocab, layers, max_len = 64, 4, 256, 13, 2, 64

    class Reference(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, d)
            self.pos = torch.nn.Embedding(max_len, d)  # learned positions: weight [max_len, d]
            self.layers = torch.nn.ModuleList(torch.nn.TransformerEncoderLayer(
                d, heads, ff, dropout=0.0, activation="gelu", batch_first=True) for _ in range(layers))
            self.head = torch.nn.Linear(d, vocab)

        def forward(self, tokens):
            t = tokens.shape[1]
            x = self.embed(tokens) + self.pos.weight[:t]
            mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
            for layer in self.layers:
                x = layer(x, src_mask=mask, is_causal=True)
            return self.head(x)

    torch.manual_seed(0)
    ref = Reference().eval()
    save_torch(ref.state_dict(), str(tmp_path / "torch.safetensors"))
    section = {"file": str(tmp_path / "torch.safetensors"),
               "map": {"decoder.*.attn": "layers.*.self_attn", "decoder.*.ff1": "layers.*.linear1",
                       "decoder.*.ff2": "layers.*.linear2", "decoder.*": "layers.*", "logits": "head"}}
    loaded = load_init(model, model.init_params(0), section, from_cli=True)
    assert loaded.source["decoder.0.attn.wk"] == "layers.0.self_attn.in_proj_weight"
    assert not loaded.missing and not loaded.unused
    tokens = np.random.default_rng(0).integers(0, vocab, (3, 11))
    with torch.no_grad():
        want = ref(torch.from_numpy(tokens)).numpy()
    got = model.predict(loaded.params, {"tokens": tokens})["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_fresh_run_starts_from_the_saved_weights(mlp, tmp_path):
    """train → its checkpoint → train.init_from of a new run (learning rate 0, so the step
    changes nothing): the new run evaluates exactly as the first one."""
    train(mlp, out_dir=tmp_path / "first", overrides={"steps": 60, "eval_every": 0}, progress="none")
    first = evaluate(mlp, load_params(tmp_path / "first", mlp))
    # from a spec's own train section (a path inside the spec's directory)
    text = (SPECS / "mlp.yaml").read_text().replace(
        "train:\n", "train:\n  init_from: {file: first/checkpoint/model.safetensors}\n", 1)
    (tmp_path / "mlp.yaml").write_text(text)
    model = compile_spec(tmp_path / "mlp.yaml")
    assert model.train["init_from"]
    summary = train(model, out_dir=tmp_path / "second", progress="none",
                    overrides={"steps": 1, "eval_every": 0, "optimizer.lr": 0.0})
    assert summary["metrics"]["val_accuracy"] == first["accuracy"]
    assert evaluate(model, load_params(tmp_path / "second", model)) == first
    # from the command line (--set init_from.file=...), anywhere
    summary = train(mlp, out_dir=tmp_path / "third", progress="none",
                    overrides={"steps": 1, "eval_every": 0, "optimizer.lr": 0.0,
                               "init_from.file": str(tmp_path / "first")})
    assert summary["metrics"]["val_loss"] == first["loss"]


def test_graphc_check_validates_init_from(tmp_path):
    from graphc.pipeline import analyze

    text = (SPECS / "mlp.yaml").read_text().replace(
        "train:\n", "train:\n  init_from: {file: w.safetensors, strickt: true}\n", 1)
    (tmp_path / "mlp.yaml").write_text(text)
    errors = [d for d in analyze(tmp_path / "mlp.yaml").diagnostics if d.is_error]
    assert errors and errors[0].code == "GC401" and "strickt" in errors[0].message
