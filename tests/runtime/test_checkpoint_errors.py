"""Bad checkpoints are clear errors naming the file and the tensor or field (issue #11).

Parameters of the wrong dtype or shape, optimizer slots that do not fit, a hand-edited
state.json; a failed resume changes nothing in the run directory; a run directory caught
between the two renames of an atomic save still loads (``eval --checkpoint RUN``).
"""

import json
import os

import numpy as np
import pytest
import safetensors.numpy as st

from graphc.runtime import CheckpointError, load_checkpoint, load_params, train
from graphc.runtime.checkpoint import MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, save_checkpoint

from .toymodels import MLP


def _spirals(**train_cfg):
    cfg = {
        "data": {"task": "spirals"},
        "batch": 16,
        "steps": 6,
        "eval_every": 3,
        "optimizer": {"name": "adam", "lr": 0.01},
        **train_cfg,
    }
    return MLP(hidden=8, train=cfg)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished toy run (adam: m and v slots), to copy and damage."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(_spirals(), out_dir=out, progress="none")
    return out


def _copy(run_dir, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def _rewrite(ckpt, *, params=None, optimizer=None, state=None):
    """Replace a checkpoint's tensors or state, keeping the checksums consistent (a careful
    hand edit), so that what is tested is the content, not the checksum."""
    c = load_checkpoint(ckpt)
    params = dict(c.params) if params is None else params
    optimizer = dict(c.optimizer) if optimizer is None else optimizer
    state = {k: v for k, v in c.state.items() if k not in ("format", "sha256")} | (state or {})
    save_checkpoint(ckpt, params, optimizer, state)


def _edit_state(ckpt, edit):
    state = json.loads((ckpt / STATE_FILE).read_text())
    edit(state)
    (ckpt / STATE_FILE).write_text(json.dumps(state))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.bool_])
def test_parameter_of_the_wrong_dtype(run_dir, tmp_path, dtype):
    out = _copy(run_dir, tmp_path)
    params = dict(load_checkpoint(out / "checkpoint").params)
    params["fc1.w"] = params["fc1.w"].astype(dtype)
    _rewrite(out / "checkpoint", params=params)
    want = rf"{MODEL_FILE}: parameter `fc1.w` is {np.dtype(dtype)}, the model computes in float32"
    with pytest.raises(CheckpointError, match=want):
        load_params(out, _spirals())
    with pytest.raises(CheckpointError, match=want):
        train(_spirals(), out_dir=out, progress="none", resume=True)


def test_parameter_of_the_wrong_shape_names_file_and_tensor(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    params = dict(load_checkpoint(out / "checkpoint").params)
    params["fc2.b"] = np.zeros(3, np.float32)
    _rewrite(out / "checkpoint", params=params)
    with pytest.raises(CheckpointError, match=rf"{MODEL_FILE}: parameter `fc2.b` has shape \[3\]"):
        train(_spirals(), out_dir=out, progress="none", resume=True)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda o: o.update({"m/fc1.w": np.zeros((3, 3), np.float32)}), r"`m/fc1.w` has shape \[3, 3\]"),
        (lambda o: o.update({"v/fc1.b": o["v/fc1.b"].astype(np.float64)}), "`v/fc1.b` is float64"),
        (lambda o: o.update({"m/nope.w": np.zeros(2, np.float32)}), "`m/nope.w` is for parameter `nope.w`"),
        (lambda o: o.update({"zz/fc1.b": np.zeros(8, np.float32)}), "`zz/fc1.b` is not a slot"),
    ],
)
def test_optimizer_slots_that_do_not_fit(run_dir, tmp_path, edit, match):
    out = _copy(run_dir, tmp_path)
    optimizer = dict(load_checkpoint(out / "checkpoint").optimizer)
    edit(optimizer)
    _rewrite(out / "checkpoint", optimizer=optimizer)
    with pytest.raises(CheckpointError, match=f"{OPTIMIZER_FILE}: optimizer tensor {match}"):
        train(_spirals(), out_dir=out, progress="none", resume=True)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda s: s.update(sha256=None), "field `sha256` must hold the checksum"),
        (lambda s: s["sha256"].update({MODEL_FILE: None}), "field `sha256` must hold"),
        (lambda s: s.pop("step"), "field `step` is missing"),
        (lambda s: s.update(step="12"), 'field `step` must be the step count.*found "12"'),
        (lambda s: s.update(step=-3), "field `step` must be the step count"),
        (lambda s: s.update(step=True), "field `step` must be"),
        (lambda s: s.pop("data"), "field `data` is missing"),
        (lambda s: s.update(data=None), "field `data` must be the data stream's position"),
        (lambda s: s.update(data={"kind": "array", "epoch": 0}), "field `data`:.*must be counts"),
        (lambda s: s.update(data={"kind": "stream", "batches": 2}), "field `data`:.*does not fit"),
        (lambda s: s.pop("optimizer"), "field `optimizer` is missing"),
        (lambda s: s["optimizer"].update(t="x"), r"field `optimizer.t` must be the optimizer's step"),
        (lambda s: s["optimizer"].pop("name"), r"field `optimizer.name`"),
        (lambda s: s.update(model_hash=7), "field `model_hash` must be"),
        (lambda s: s.update(early_stopping=[1]), "field `early_stopping` must be"),
        (lambda s: s.update(first_loss="big"), "field `first_loss` must be"),
    ],
)
def test_hand_edited_state_json(run_dir, tmp_path, edit, match):
    out = _copy(run_dir, tmp_path)
    _edit_state(out / "checkpoint", edit)
    with pytest.raises(CheckpointError, match=match) as err:
        train(_spirals(), out_dir=out, progress="none", resume=True)
    assert STATE_FILE in str(err.value) and str(out) in str(err.value)


def test_state_json_that_is_not_json(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    (out / "checkpoint" / STATE_FILE).write_text('{"step": 3,')
    with pytest.raises(CheckpointError, match=f"{STATE_FILE} is corrupt"):
        train(_spirals(), out_dir=out, progress="none", resume=True)
    (out / "checkpoint" / STATE_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a graphc checkpoint"):
        load_params(out)


def test_a_failed_resume_changes_nothing(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    # rows after the checkpoint's step (a run killed after logging) must survive a failed resume
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 99, "loss": 0.5}) + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    _edit_state(out / "checkpoint", lambda s: s.update(step="x"))
    ckpt_before = {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()}
    with pytest.raises(CheckpointError):
        train(_spirals(), out_dir=out, progress="none", resume=True)
    with pytest.raises(CheckpointError):  # another model: refused before any file is touched
        train(MLP(hidden=5, train=_spirals().train), out_dir=out, progress="none", resume=True)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }
    assert ckpt_before == {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()}


def test_a_resume_keeps_old_rows_until_it_has_its_own(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    rows = (out / "metrics.jsonl").read_text()
    summary = train(_spirals(steps=8), out_dir=out, progress="none", resume=True)
    assert summary["status"] == "completed" and summary["resumed_from"] == 6
    new = (out / "metrics.jsonl").read_text()
    assert new.startswith(rows) and len(new.splitlines()) > len(rows.splitlines())


def test_run_directory_between_the_two_renames_still_loads(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    expected = load_params(out)
    os.rename(out / "checkpoint", out / ".checkpoint.old")  # killed between the renames
    got = load_params(out, _spirals())
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    summary = train(_spirals(steps=7), out_dir=out, progress="none", resume=True)
    assert summary["resumed_from"] == 6 and (out / "checkpoint").is_dir()
    assert not (out / ".checkpoint.old").exists()


def test_safetensors_metadata_names_the_spec(tmp_path):
    model = _spirals(steps=2)
    spec = tmp_path / "toy.yaml"
    spec.write_text("name: mlp\n")
    model.spec_path = str(spec)
    train(model, out_dir=tmp_path / "run", progress="none")
    state = load_checkpoint(tmp_path / "run" / "checkpoint").state
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        header = (tmp_path / "run" / "checkpoint" / name).read_bytes()
        n = int.from_bytes(header[:8], "little")
        meta = json.loads(header[8 : 8 + n])["__metadata__"]
        assert meta["model"] == "mlp" and meta["spec_hash"] == state["spec_hash"]
        assert meta["model_hash"] == state["model_hash"] and meta["step"] == "2"
    assert len(state["spec_hash"]) == 16
    st.load_file(tmp_path / "run" / "checkpoint" / MODEL_FILE)  # still plain safetensors


def test_a_reader_racing_with_saves_always_gets_one_complete_checkpoint(tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    import graphc.runtime.checkpoint as checkpoint_module

    writer = Path(__file__).with_name("ckpt_writer.py")
    runtime_dir = str(Path(checkpoint_module.__file__).parent)
    path = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [sys.executable, str(writer), runtime_dir, str(path), "loop"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().startswith("saved")
        seen, deadline = set(), time.monotonic() + 1.5
        while time.monotonic() < deadline:  # what `graphc eval` does while a run saves
            c = load_checkpoint(path)
            k = c.state["step"]
            assert np.all(c.params["w"] == k) and np.all(c.optimizer["m/w"] == k)
            seen.add(k)
    finally:
        proc.kill()
        proc.wait()
    assert len(seen) > 1  # the saves really did go on meanwhile
