"""Start-up: graphc.compiler.predict predicts the njit specialisations a training step calls and
compiles them before the first step (in helper processes on a cold start).

The prediction is checked against Numba itself: in a fresh process, one training step runs
and every dispatcher's compiled signatures must be exactly the predicted ones (a missed or a
wrong one fails). No timings here: benchmarks/cold_start.py measures the speed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, SPECS

# Runs one training step of a spec in a fresh process (its dispatchers hold only what the step
# compiled or loaded) and prints the predicted and the actual specialisations.
STEP = """
import json, os, sys
from numba.core.registry import CPUDispatcher
from graphc.compiler import compile_spec
from graphc.compiler.predict import predict, uncovered
from graphc.kernels.precompile import Worklist, dispatcher
from graphc.runtime.setup import Setup

spec = sys.argv[1]
model = compile_spec(spec)
if (model.train or {}).get("data"):
    setup = Setup.create(model, {}, os.path.dirname(spec))
    batch = setup.feed(setup.data.train.next_batch())
else:  # an example without data: every symbolic dim 4
    from graphc.compiler.checks import synthetic_batch
    batch = synthetic_batch(model, {d: 4 for i in model.inputs.values() for d in i.shape if isinstance(d, str)})
params = model.init_params(0)
jobs = predict(model.program, model.dtype)
result = model.forward(params, batch, training=True, seed=0)
model.backward(result)

work = Worklist("unused", jobs)
work.cached_only = True  # everything the step used is in the dispatchers already
predicted = {f"{j.module}.{j.name}{work.signature(i)}" for i, j in enumerate(jobs)}
dispatchers = {dispatcher(j) for j in jobs}
dispatchers |= {f for f in model.program.kernels.values() if isinstance(f, CPUDispatcher)}
actual = {f"{d.py_func.__module__}.{d.py_func.__name__}{sig}" for d in dispatchers for sig in d.overloads}
print(json.dumps({"predicted": sorted(predicted), "actual": sorted(actual),
                  "uncovered": uncovered(model.program, jobs)}))
"""


def _step(spec):
    r = subprocess.run(
        [sys.executable, "-c", STEP, str(spec)], capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "spec",
    ["transformer", "mlp", "cnn", "lstm", "../examples/tagger"],  # tagger: a bidirectional GRU
)
def test_the_prediction_is_what_a_training_step_compiles(spec):
    report = _step(SPECS / f"{spec}.yaml")
    assert report["predicted"], "nothing predicted"
    assert report["predicted"] == report["actual"]
    assert report["uncovered"] == []  # the recurrent wrappers' cores too (their `njit_calls`)


def _train(spec, cache, *extra):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache / "numba"), "GRAPHC_CACHE_DIR": str(cache / "graphc")}
    cmd = [
        sys.executable,
        "-m",
        "graphc",
        "train",
        str(spec),
        "--steps",
        "1",
        "--progress",
        "plain",
        "--out",
        str(cache / "run"),
        "--overwrite",
        "--set",
        "eval_every=0",
        *extra,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_cold_start_says_it_compiles_and_a_cached_start_says_nothing(tmp_path):
    cold = _train(SPECS / "mlp.yaml", tmp_path)
    line = next(line for line in cold.splitlines() if "compiling" in line)
    assert line.startswith("compiling kernels (first run, ~") and " s;" in line
    assert cold.index("compiling kernels") < cold.index("step 1/1")
    cached = _train(SPECS / "mlp.yaml", tmp_path)
    assert "compiling" not in cached and "step 1/1" in cached


def test_without_helpers_the_kernels_still_compile_before_the_first_step(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_HELPERS", "0")
    out = _train(SPECS / "mlp.yaml", tmp_path)
    assert "compiling kernels (first run" in out and "step 1/1" in out


# ---- the shared job list: wrong predictions and lost helpers cost time, never correctness ----


def _jobs():
    from graphc.compiler import compile_spec
    from graphc.compiler.predict import predict

    model = compile_spec(SPECS / "mlp.yaml")
    return model, predict(model.program, model.dtype)


def test_a_wrong_prediction_is_skipped_and_the_step_still_runs(tmp_path):
    from numba.core import types

    from graphc.kernels.precompile import Job, Worklist

    model, jobs = _jobs()
    wrong = Job(jobs[0].module, jobs[0].name, (types.unicode_type,) * len(jobs[0].args), "wrong")
    work = Worklist(tmp_path, [*jobs, wrong])  # (last: the jobs' Ret point at their indices)
    work.work()  # the wrong one fails to type; the others compile (or load)
    assert len(jobs) not in work.compiled and work.ensure(len(jobs)) is False
    assert all(work.ensure(i) is True for i in range(len(jobs)))
    params = model.init_params(0)
    batch = {
        name: np.zeros([4 if isinstance(d, str) else d for d in spec.shape], spec.dtype)
        for name, spec in model.inputs.items()
    }  # symbolic dims: 4
    result = model.forward(params, batch, training=True)
    assert set(model.backward(result)) == {n for n, p in model.params.items() if p.trainable}


def test_a_job_claimed_by_a_process_that_died_is_compiled_here(tmp_path):
    from graphc.kernels.precompile import Worklist, dispatcher

    _, jobs = _jobs()
    other = Worklist(tmp_path, jobs)
    assert other.signature(0) is not None and other.claim(0)  # claimed, never finished
    mine = Worklist(tmp_path, jobs, alive=lambda: False)
    assert mine.ensure(0) is True
    assert mine.sigs[0] in dispatcher(jobs[0]).overloads


# ---- helpers started early (graphc train on a cold cache) -----------------------------------

EARLY = """
import json, os, sys
from graphc.kernels import precompile

precompile.start_early(1)
early = precompile._early
print(json.dumps({"started": early is not None, "pids": [p.pid for p in early.procs] if early else [],
                  "folder": early.folder if early else None}), flush=True)
if sys.argv[1] == "warm":
    from graphc.compiler import compile_spec
    from graphc.compiler.warm import warm

    report = warm(compile_spec(sys.argv[2]))
    print(json.dumps({"helpers": report.helpers, "jobs": report.jobs, "here": len(report.compiled_here),
                      "cached": report.cached, "ended": early is None or all(p.poll() is not None for p in early.procs)}))
"""


def _early(tmp_path, *args):
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
        "GRAPHC_CACHE_DIR": str(tmp_path / "graphc"),
    }
    r = subprocess.run(
        [sys.executable, "-c", EARLY, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.strip().splitlines()]


def test_helpers_started_early_get_the_list_and_share_the_compile(tmp_path):
    started, report = _early(tmp_path, "warm", str(SPECS / "mlp.yaml"))
    assert started["started"] and len(started["pids"]) == 1
    assert report["helpers"] == 1 and not report["cached"] and report["ended"]
    assert 0 < report["here"] < report["jobs"]  # the early helper compiled the rest
    assert not os.path.exists(started["folder"])
    # the cache is warm now: nothing starts early, and the warm-up loads everything
    started, report = _early(tmp_path, "warm", str(SPECS / "mlp.yaml"))
    assert not started["started"] and report["cached"] and report["helpers"] == 0


def test_helpers_started_early_end_with_a_run_that_stops_before_compiling(tmp_path):
    import time

    (started,) = _early(tmp_path, "exit")
    assert started["started"]
    deadline = time.monotonic() + 30
    alive = started["pids"]
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if os.path.exists(f"/proc/{pid}") and _not_zombie(pid)]
        time.sleep(0.1)
    assert not alive, "a helper outlived the run that started it"
    assert not os.path.exists(started["folder"])


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_the_schedule_keeps_a_modules_jobs_together_and_splits_the_modules_by_cost():
    from graphc.compiler.warm import schedule
    from graphc.kernels.precompile import Job

    labels = [("linalg", "embedding_fwd"), ("linalg", "positional_encoding_fwd"), ("attention", "attention_fwd"),
              ("linalg", "linear_fwd"), ("norm", "add_norm_fwd"), ("loss", "cross_entropy_fwd"),
              ("loss", "cross_entropy_bwd"), ("norm", "add_norm_bwd"), ("linalg", "linear_bwd"),
              ("attention", "attention_bwd")]  # call order, as predicted
    jobs = [Job(f"graphc.kernels.{m}", name, (), name) for m, name in labels]
    order = schedule(jobs, n_helpers=1)
    assert sorted(order) == list(range(len(jobs)))
    modules = [jobs[i].module.rsplit(".", 1)[1] for i in order]
    runs = [m for k, m in enumerate(modules) if k == 0 or modules[k - 1] != m]
    assert len(runs) == len(set(runs)) == 4  # each module's jobs in one run
    # the costliest module is the trainer's (the front); the helper, walking from the end, takes
    # the others, its costliest first
    assert runs == ["attention", "loss", "norm", "linalg"]
    # a module's jobs in call order (a backward's types may come from its forward)
    assert [jobs[i].name for i in order if jobs[i].module.endswith("attention")] == ["attention_fwd", "attention_bwd"]
    assert sorted(schedule(jobs, n_helpers=0)) == list(range(len(jobs)))


def test_a_module_over_one_process_share_is_split_between_the_trainer_and_a_helper():
    from graphc.compiler.warm import schedule
    from graphc.kernels.precompile import Job

    labels = [("recurrent_lstm", "lstm_fwd"), ("linalg", "linear_fwd"), ("loss", "cross_entropy_fwd"),
              ("loss", "cross_entropy_bwd"), ("linalg", "linear_bwd"), ("recurrent_lstm", "lstm_bwd")]
    jobs = [Job(f"graphc.kernels.{m}", name, (), name) for m, name in labels]
    order = schedule(jobs, n_helpers=1)
    assert sorted(order) == list(range(len(jobs)))
    ends = {jobs[order[0]].name, jobs[order[-1]].name}  # what each side starts with
    assert ends == {"lstm_fwd", "lstm_bwd"}
