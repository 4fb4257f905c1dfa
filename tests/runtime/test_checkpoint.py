import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graphc.runtime.checkpoint as checkpoint_module
from graphc.runtime.checkpoint import load_checkpoint, save_checkpoint
from graphc.runtime.errors import CheckpointError

WRITER = Path(__file__).with_name("ckpt_writer.py")
RUNTIME_DIR = str(Path(checkpoint_module.__file__).parent)


def _save(path, k=1):
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3) * k, "b": np.ones(2, np.float32)}
    return save_checkpoint(
        path,
        params,
        {"m/w": np.full((2, 3), k, np.float32)},
        {"step": k, "data": {"kind": "stream", "batches": 3 * k}},
    )


def test_round_trip(tmp_path):
    _save(tmp_path / "ckpt", k=2)
    c = load_checkpoint(tmp_path / "ckpt")
    assert c.state["step"] == 2 and c.state["data"] == {"kind": "stream", "batches": 6}
    assert np.array_equal(c.params["w"], np.arange(6, dtype=np.float32).reshape(2, 3) * 2)
    assert c.params["w"].dtype == np.float32
    assert np.array_equal(c.optimizer["m/w"], np.full((2, 3), 2))
    _save(tmp_path / "ckpt", k=3)  # replacing leaves no temporary directories behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert load_checkpoint(tmp_path / "ckpt").state["step"] == 3


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda d: _truncate(d / "model.safetensors"), "model.safetensors is corrupt"),
        (lambda d: _flip(d / "optimizer.safetensors"), "optimizer.safetensors is corrupt"),
        (lambda d: (d / "model.safetensors").unlink(), "not a complete checkpoint"),
        (lambda d: (d / "state.json").unlink(), "state.json is missing"),
        (lambda d: (d / "state.json").write_text("{not json"), "state.json is corrupt"),
        (lambda d: (d / "state.json").write_text('{"step": 1}'), "not a graphc checkpoint"),
    ],
)
def test_damaged_checkpoints_raise_checkpoint_error(tmp_path, damage, match):
    d = _save(tmp_path / "ckpt")
    damage(d)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(d)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing")


def _writer(path, *args):
    return subprocess.Popen(
        [sys.executable, str(WRITER), RUNTIME_DIR, str(path), *args],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "stage,survivor",
    [
        ("wrote model.safetensors", 1),  # inside the temporary directory
        ("written", 1),  # complete but not yet in place
        ("old moved aside", 1),  # between the two renames: only .ckpt.old exists
        ("renamed", 2),  # new one in place, old not yet removed
    ],
)
def test_sigkill_during_save_leaves_a_complete_checkpoint(tmp_path, stage, survivor):
    path = tmp_path / "ckpt"
    proc = _writer(path, "stage", stage)
    try:
        assert proc.stdout.readline().strip() == f"AT {stage}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    c = load_checkpoint(path)
    assert c.state["step"] == survivor
    assert np.all(c.params["w"] == survivor) and np.all(c.optimizer["m/w"] == survivor)
    _save(path, k=5)  # the next save recovers from whatever state the kill left
    assert load_checkpoint(path).state["step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_sigkill_at_random_moments_while_writing_large_checkpoints(tmp_path):
    path = tmp_path / "ckpt"
    rng = random.Random(0)
    for _ in range(3):
        proc = _writer(path, "loop")
        try:
            assert proc.stdout.readline().startswith("saved")  # at least one complete save
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        c = load_checkpoint(path)
        k = c.state["step"]
        assert np.all(c.params["w"] == k) and np.all(c.params["b"] == k)
        assert np.all(c.optimizer["m/w"] == k)


def test_state_records_checksums(tmp_path):
    d = _save(tmp_path / "ckpt")
    state = json.loads((d / "state.json").read_text())
    assert set(state["sha256"]) == {"model.safetensors", "optimizer.safetensors"}


def test_load_params_from_a_run_directory_checks_the_model(tmp_path):
    from graphc.runtime import load_params

    from .toymodels import MLP

    model = MLP(hidden=4)
    params = model.init_params(0)
    save_checkpoint(tmp_path / "run" / "checkpoint", params, {}, {"step": 1})
    loaded = load_params(tmp_path / "run", model)
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
    with pytest.raises(CheckpointError, match=r"`fc1.w` has shape \[2, 4\], the model expects"):
        load_params(tmp_path / "run", MLP(hidden=5))
    with pytest.raises(CheckpointError, match="`norm.running_mean` of model 'x' is missing"):
        save_checkpoint(tmp_path / "c2", {"w": np.zeros(2, np.float32)}, {}, {"step": 1})
        load_params(tmp_path / "c2", MLP(hidden=4, name="x"))
