import numpy as np
import pytest

from graphc.runtime import (
    ConfigError,
    DataError,
    apply_overrides,
    build_data,
    evaluate,
    load_checkpoint,
    parse_override,
    sample_text,
    train,
)
from graphc.runtime.config import TrainConfig

from .toymodels import TokenModel

TEXT = "the cat sat on the mat. " * 60


def test_character_lm_on_a_text_file(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    vocab = len(set(TEXT))
    model = TokenModel(
        vocab=vocab,
        seq_len=16,
        dim=16,
        train={
            "data": {"file": "corpus.txt", "block": 16},
            "batch": 8,
            "steps": 150,
            "optimizer": {"name": "adam", "lr": 0.05},
            "eval_every": 50,
            "metrics": ["accuracy", "perplexity"],
        },
    )
    summary = train(model, out_dir=tmp_path / "run", progress="none", base_dir=tmp_path)
    m = summary["metrics"]
    # a bigram-ish model on this text predicts most next characters
    assert m["val_perplexity"] < 3.0 < vocab and m["val_accuracy"] > 0.6
    params = load_checkpoint(tmp_path / "run" / "checkpoint").params
    bundle = build_data(model.train["data"], batch=8, seed=0, base_dir=tmp_path)
    model.spec_path = str(tmp_path / "lm.yaml")  # data paths resolve next to the spec
    text = sample_text(model, params, prompt="the ", length=30, temperature=0)
    assert text.startswith("the ") and len(text) == 34 and set(text) <= set(TEXT)
    assert "at" in text  # greedy continuation of "the " follows the corpus
    a = sample_text(model, params, bundle, prompt="t", length=20, seed=1)
    assert a == sample_text(model, params, bundle, prompt="t", length=20, seed=1)
    with pytest.raises(DataError, match="not in the vocabulary"):
        sample_text(model, params, bundle, prompt="Z", length=2)
    digits = build_data({"task": "reverse_digits", "length": 4}, batch=8, seed=0)
    with pytest.raises(DataError, match="needs a character-level"):
        sample_text(model, params, digits, prompt="1")
    on_train = evaluate(model, params, {**model.train["data"]}, split="train", base_dir=tmp_path)
    assert on_train["samples"] == len(bundle.train.data)


def test_overrides():
    train_cfg = {"data": {"task": "xor"}, "optimizer": "adam", "steps": 10}
    out = apply_overrides(
        train_cfg,
        dict(
            [
                parse_override("optimizer.lr=3e-3"),
                parse_override("data.noise=0.5"),
                parse_override("steps=null"),
                parse_override("schedule.name=cosine"),
            ]
        ),
    )
    assert out == {
        "data": {"task": "xor", "noise": 0.5},
        "optimizer": {"name": "adam", "lr": 0.003},
        "schedule": {"name": "cosine"},
    }
    assert train_cfg["optimizer"] == "adam"  # the input is not modified
    assert parse_override('metrics=["accuracy"]') == ("metrics", ["accuracy"])
    assert parse_override("data.task=xor") == ("data.task", "xor")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("lr")
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"steps": 5}, {"steps.x": 1})


def test_config_defaults_and_early_stopping_mode():
    cfg = TrainConfig.from_dict(
        {"data": {"task": "xor"}, "early_stopping": {"metric": "val_accuracy"}}
    )
    assert cfg.batch == 32 and cfg.optimizer == {"name": "adamw"} and cfg.seed == 0
    assert cfg.early_stopping.mode == "max" and cfg.early_stopping.patience == 5
    bare = TrainConfig.from_dict({"data": {}, "early_stopping": {"metric": "accuracy"}})
    assert bare.early_stopping.metric == "val_accuracy"
    assert (
        TrainConfig.from_dict({"data": {"task": "xor"}, "early_stopping": {}}).early_stopping.mode
        == "min"
    )
    with pytest.raises(ConfigError, match="no `train:` section"):
        TrainConfig.from_dict(None)
    with pytest.raises(ConfigError, match="train.data is missing"):
        TrainConfig.from_dict({"steps": 3})
    with pytest.raises(ConfigError, match="clip_grad_norm must be > 0"):
        TrainConfig.from_dict({"data": {}, "clip_grad_norm": 0})
    assert np.isclose(
        TrainConfig.from_dict({"data": {}, "clip_grad_norm": "1e-1"}).clip_grad_norm, 0.1
    )


def test_data_files_resolve_next_to_the_spec(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    model = TokenModel(
        vocab=len(set(TEXT)),
        seq_len=8,
        train={"data": {"file": "corpus.txt", "block": 8}, "steps": 2, "eval_every": 0},
    )
    model.spec_path = str(tmp_path / "lm.yaml")  # what the compiler records
    summary = train(model, out_dir=tmp_path / "run", progress="none")
    assert summary["status"] == "completed"
    state = load_checkpoint(tmp_path / "run" / "checkpoint").state
    assert state["spec_hash"] is None  # the spec file itself does not exist here
    (tmp_path / "lm.yaml").write_text("name: lm\n")
    train(model, out_dir=tmp_path / "run", progress="none")
    state = load_checkpoint(tmp_path / "run" / "checkpoint").state
    assert len(state["spec_hash"]) == 16
