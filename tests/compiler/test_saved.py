"""Compiled models saved between runs (graphc.compiler.saved): a second `graphc train` of the
same spec restores the model the first one compiled, computes exactly what a fresh compile
computes, never restores a model for a different spec, overrides or graphc, prints the front
end's warnings again, survives a damaged cache, and starts without the front end's imports."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from graphc.compiler import saved
from graphc.compiler.checks import synthetic_batch
from tests.conftest import ROOT, SPECS

from .helpers import shifted_spec, spec_text, write

# an input nobody reads: the front end warns (GC302), and a restored model must warn again
SPEC = spec_text(
    {"x": ["B", 3], "unused": ["B", 2], "y": (["B"], "int64")},
    {"fc": {"op": "linear", "in": "x", "out": 4},
     "act": {"op": "gelu", "in": "fc"},
     "logits": {"op": "linear", "in": "act", "out": 2},
     "loss": {"op": "cross_entropy", "in": ["logits", "y"]}},
    outputs=["logits"], losses=["loss"])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _model(spec, sets=()):
    from graphc.cli.train import _model

    return _model(str(spec), tuple(sets))


def _loss_and_grads(model, seed=0):
    params = model.init_params(seed)
    batch = synthetic_batch(model, {"B": 5}, seed=seed)
    result = model.forward(params, batch, training=True, seed=seed)
    return result.losses, model.backward(result)


def test_a_second_run_restores_the_model_and_computes_the_same(tmp_path, cache, capsys):
    spec = write(tmp_path, SPEC)
    first, _ = _model(spec)
    assert "graph" in first.__dict__ and len(list((cache / "models").iterdir())) == 1
    second, _ = _model(spec)
    assert "graph" not in second.__dict__  # restored: the front end did not run
    assert second.params == first.params and second.inputs == first.inputs
    assert second.kernel_jobs() == first.kernel_jobs()
    losses1, grads1 = _loss_and_grads(first)
    losses2, grads2 = _loss_and_grads(second)
    assert losses1 == losses2
    assert all(np.array_equal(grads1[k], grads2[k]) for k in grads1)
    err = capsys.readouterr().err
    assert err.count("GC302") == 2, err  # the warning, from the compile and from the restore


def test_a_restored_model_compiles_its_spec_again_for_the_graph(tmp_path, cache):
    spec = write(tmp_path, SPEC)
    _model(spec)
    model, _ = _model(spec)
    spec.write_text(SPEC.replace("out: 4", "out: 7"))  # edited after the run started
    assert model.graph.nodes["fc"].op == "linear"
    assert model.params["fc.weight"].shape == (4, 3)  # the text it was saved from, not the file
    assert model.graph.params["fc"]["weight"].shape == (4, 3)
    assert model.sources("logits") == {"x"}
    probe = synthetic_batch(model, {"B": 2}, seed=1)
    out = model.predict(model.init_params(0), probe)  # an inference model, pruned from the graph
    assert out["logits"].shape == (2, 2)


def test_what_the_model_depends_on_is_in_the_key(tmp_path, cache, monkeypatch):
    spec = write(tmp_path, SPEC)
    key = saved.ticket(str(spec), {}, True).key
    assert saved.ticket(str(spec), {}, True).key == key
    assert saved.ticket(str(spec), {"hidden": 3}, True).key != key
    assert saved.ticket(str(spec), {}, False).key != key  # --no-fuse
    copy = tmp_path / "copy"
    copy.mkdir()
    assert saved.ticket(str(write(copy, SPEC)), {}, True).key != key  # data paths are relative to it
    spec.write_text(SPEC + "\n# an edit\n")
    assert saved.ticket(str(spec), {}, True).key != key
    monkeypatch.setattr(saved, "_graphc_digest", lambda: "another graphc")
    spec.write_text(SPEC)
    assert saved.ticket(str(spec), {}, True).key != key


def test_an_edited_spec_is_compiled_not_restored(tmp_path, cache):
    spec = write(tmp_path, SPEC)
    _model(spec)
    spec.write_text(SPEC.replace("out: 4", "out: 6"))
    model, _ = _model(spec)
    assert "graph" in model.__dict__ and model.params["fc.weight"].shape == (6, 3)
    assert len(list((cache / "models").iterdir())) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "driver_gone"])
def test_a_damaged_cache_entry_is_compiled_again(tmp_path, cache, damage):
    spec = write(tmp_path, SPEC)
    reference, _ = _model(spec)
    (entry,) = (cache / "models").iterdir()
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif damage == "garbage":
        entry.write_bytes(os.urandom(4096))
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "driver_gone":  # the driver is written again from the saved source
        for driver in (cache / "drivers").iterdir():
            driver.unlink()
    ticket = saved.ticket(str(spec), {}, True)
    restored = saved.restore(ticket)
    if damage == "driver_gone":
        assert restored is not None and os.path.exists(restored.model.source_path)
    else:
        assert restored is None
    model, _ = _model(spec)  # compiles (and saves again) where it cannot restore
    assert _loss_and_grads(model)[0] == _loss_and_grads(reference)[0]
    assert saved.restore(ticket) is not None


# Compiles or restores SPEC in a fresh process and prints which, and the loss of one forward.
LOSS = """
import sys
from graphc.cli.train import _model
from graphc.compiler.checks import synthetic_batch

model, _ = _model(sys.argv[1], ())
how = "compiled" if "graph" in model.__dict__ else "restored"
result = model.forward(model.init_params(0), synthetic_batch(model, {"B": 5}, seed=0), training=True)
print(how, repr(result.losses["loss"]))
"""


def test_generated_kernel_files_removed_from_the_cache(tmp_path, cache):
    """The fused tanh→sigmoid group lives in the cache's kernels/ folder, which a user may clear
    without clearing models/: the saved model names a file that is gone."""
    fused = SPEC.replace("  act:\n    op: gelu\n    in: fc\n",
                         "  squash:\n    op: tanh\n    in: fc\n  act:\n    op: sigmoid\n    in: squash\n")
    assert fused != SPEC
    spec = write(tmp_path, fused)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache)}

    def run() -> list[str]:
        r = subprocess.run([sys.executable, "-c", LOSS, str(spec)], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=600)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    first = run()
    assert first[0] == "compiled"
    (state,) = [pickle.loads(p.read_bytes()) for p in (cache / "models").iterdir()]
    generated = {file for _, _, file in state["kernels"].values() if file}
    assert generated and all(os.path.exists(f) for f in generated)
    for f in generated:
        os.remove(f)
    assert run() == ["compiled", first[1]]  # not restored, and no half-loaded module in the way
    assert run() == ["restored", first[1]]  # saved again


def test_an_unwritable_cache_still_trains(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(blocked))
    spec = write(tmp_path, SPEC)
    model, _ = _model(spec)
    assert _loss_and_grads(model)[0]["loss"] > 0
    assert saved.restore(saved.ticket(str(spec), {}, True)) is None


def test_runtime_overrides_are_not_the_specs(tmp_path, cache):
    spec = write(tmp_path, SPEC.replace("out: 4", "out: hidden") + "constants: {hidden: 4}\n")
    _, first = _model(spec, ["hidden=5", "train.batch=8"])
    model, second = _model(spec, ["hidden=5", "train.batch=8"])
    assert "graph" not in model.__dict__ and first == second == {"train.batch": 8}
    assert model.params["fc.weight"].shape == (5, 3)


# Runs `graphc train SPEC` up to the end of its first step, then prints what it imported.
FIRST_STEP = """
import json, os, sys
import graphc.runtime.progress as progress

def update(self, step, stats):
    print(json.dumps({"modules": sorted(sys.modules)}), flush=True)
    os._exit(0)

progress.Progress.update = update
from graphc.cli import main
main(sys.argv[1:], prog_name="graphc")
"""


@pytest.mark.parametrize("name", ["transformer", "gan", "shifted"])
def test_a_restored_run_starts_without_the_front_end(tmp_path, cache, name):
    """Up to the end of the first step (its feed checks the batch against the inputs and the
    guards: `shifted`'s `T - 1`, in Python generated at compile time)."""
    spec = {"transformer": SPECS / "transformer.yaml", "gan": ROOT / "examples" / "gan.yaml"}.get(name)
    spec = spec or shifted_spec(tmp_path)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache)}
    loaded = []
    for run in ("first", "second"):
        r = subprocess.run([sys.executable, "-c", FIRST_STEP, "train", str(spec),
                            "--out", str(tmp_path / run), "--progress", "plain"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        assert r.returncode == 0, r.stderr
        loaded.append(set(json.loads(r.stdout.strip().splitlines()[-1])["modules"]))
    front_end = {"sympy", "networkx", "graphc.ir", "graphc.spec.expand", "graphc.compiler.autodiff"}
    assert front_end <= loaded[0]
    assert not front_end & loaded[1], front_end & loaded[1]


# Runs `graphc train SPEC` and says at exit whether it imported sympy.
SYMPY_AT_EXIT = """
import atexit, sys
atexit.register(lambda: print("sympy" in sys.modules, flush=True))
from graphc.cli import main
main(sys.argv[1:], prog_name="graphc")
"""


def test_a_wrong_size_for_an_input_declared_with_an_expression(tmp_path, cache):
    """The same message and exit status whether the model was compiled or restored; a restored
    model checks `T - 1` without sympy."""
    spec = shifted_spec(tmp_path, t_length=5)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache)}
    for run, sympy_loaded in (("compiled", "True"), ("restored", "False")):
        r = subprocess.run([sys.executable, "-c", SYMPY_AT_EXIT, "train", str(spec),
                            "--out", str(tmp_path / run), "--progress", "none"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        assert r.returncode == 1, (run, r.stdout, r.stderr)
        # the data feeder's check (graphc.runtime.data.feed), before a step runs
        assert r.stderr.strip() == ("error: model input `t` expects shape [B, T - 1, 3], but file data.npz "
                                    "gives [4, 5, 3] (axis 1: 5 != T - 1 = 4 at T=5 from `x`)"), (run, r.stderr)
        assert r.stdout.split() == [sympy_loaded], (run, r.stdout)


def test_a_restored_model_checks_inputs_declared_with_expressions(tmp_path, cache):
    from graphc.compiler import InputError

    spec = write(tmp_path, spec_text({"a": ["B", "H"], "b": ["2 * B", "H/2 + 1/2"]},
                                     {"p": {"op": "mean", "in": "a"}, "q": {"op": "mean", "in": "b"},
                                      "loss": {"op": "add", "in": ["p", "q"]}}, losses=["loss"]))
    _model(spec)
    model, _ = _model(spec)
    assert "graph" not in model.__dict__
    assert model.forward({}, {"a": np.ones((2, 5)), "b": np.ones((4, 3))}).losses["loss"] == 2.0
    with pytest.raises(InputError, match=r"^input `b` has shape \(4, 4\); axis 1 must be H/2 \+ 1/2 = 3 "
                                         r"\(H=5 from `a`\)$"):
        model.forward({}, {"a": np.ones((2, 5)), "b": np.ones((4, 4))})
    with pytest.raises(InputError, match=r"^input `b` has shape \(4, 3\); axis 1 must be H/2 \+ 1/2 = 7/2 "
                                         r"\(H=6 from `a`\)$"):
        model.forward({}, {"a": np.ones((2, 6)), "b": np.ones((4, 3))})
    with pytest.raises(InputError, match=r"^input `b` has shape \(2, 3\); axis 0 must be 2\*B = 4 \(B=2 from `a`\)$"):
        model.forward({}, {"a": np.ones((2, 5)), "b": np.ones((2, 3))})
    assert "graph" not in model.__dict__  # checked without the front end


def test_the_saved_models_are_bounded_least_recently_used_first(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(saved, "KEEP", 2)
    specs = [write(tmp_path, SPEC.replace("out: 4", f"out: {n}"), f"s{n}.yaml") for n in (4, 5, 6)]
    files = [saved._file(saved.ticket(str(s), {}, True)) for s in specs]
    _model(specs[0])
    _model(specs[1])
    os.utime(files[0], (1, 1))  # saved first, and
    os.utime(files[1], (2, 2))  # second
    model, _ = _model(specs[0])  # restored: now the most recently used
    assert "graph" not in model.__dict__
    _model(specs[2])  # a third: the least recently used (specs[1]) goes
    assert sorted((cache / "models").iterdir()) == sorted([files[0], files[2]])


def test_no_saved_state_holds_a_front_end_object(tmp_path):
    """What a restore unpickles names no sympy, networkx or front-end class (any of them would
    import the front end again): every reference spec's and example's saved state, unpickled
    in a fresh process."""
    from graphc.compiler import compile_spec

    specs = sorted(SPECS.glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))
    for i, spec in enumerate(specs):
        model = compile_spec(spec)
        model.kernel_jobs()
        (tmp_path / f"{i}.pickle").write_bytes(pickle.dumps(model.saved_state()))
    code = ("import pickle, sys, pathlib\n"
            "for p in sorted(pathlib.Path(sys.argv[1]).glob('*.pickle')): pickle.loads(p.read_bytes())\n"
            "print(' '.join(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.split()
    front_end = ("sympy", "networkx", "graphc.ir", "graphc.spec", "graphc.shapes", "graphc.ops", "graphc.pipeline")
    assert len(specs) >= 10 and not [m for m in loaded if m.startswith(front_end)]
