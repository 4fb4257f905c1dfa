"""The commands that compile and run models, through the CLI a user types (in-process).

Each error path a user can hit ends in a clear message and a non-zero exit, never a traceback.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from graphc.cli import main
from tests.conftest import SPECS

MLP = str(SPECS / "mlp.yaml")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"traceback for {args}: {result.exception!r}")
    return result


def test_compile_emits_readable_source(tmp_path):
    r = run("compile", MLP, "--emit", tmp_path / "build")
    assert r.exit_code == 0, r.output
    source = (tmp_path / "build" / "mlp.py").read_text()
    assert "def forward(P, X, buf, training, rng, dtype):" in source
    assert "def backward(P, S, buf, dtype, W):" in source
    assert "# Buffer plan" in source and 'out=buf["hidden_layers_0_fc"]' in source
    assert "# [f0] hidden_layers.0.fc · linear → B×64" in source  # node names and symbolic shapes
    compile(source, "mlp.py", "exec")  # it is valid Python


def test_compile_prints_the_buffer_plan():
    r = run("compile", MLP, "--plan", "--dim", "B=8")
    assert r.exit_code == 0, r.output
    assert "buffer plan (B=8, float32)" in r.output
    assert "hidden_layers_0_fc           (8, 64)" in r.output and " tensors in " in r.output
    r = run("compile", SPECS.parent / "examples" / "gnn.yaml", "--plan")
    assert r.exit_code == 2 and "give a size for N" in r.output


@pytest.mark.parametrize("command", [["compile", "--plan"], ["gradcheck"], ["bench", "--no-cold", "--steps", "1"]])
def test_a_dim_the_spec_does_not_have_is_an_error_not_ignored(command):
    r = run(command[0], MLP, *command[1:], "--dim", "b=8")
    assert r.exit_code == 2
    assert "`b` is not a dimension of this spec (did you mean `B`? its dimensions: B)" in r.output
    r = run(command[0], MLP, *command[1:], "--dim", "B=x")
    assert r.exit_code == 2 and "expected NAME=INT, got `B=x`" in r.output


@pytest.mark.parametrize("value", ["0", "99999999999999999999999999", "٣"])
def test_a_dim_must_be_a_positive_int64(value):
    """B=0 was a gradcheck of empty arrays that "passed"; a size past 2**63 was an OverflowError
    traceback from the plan's int64 sizes (a digit of another script passed str.isdigit)."""
    for command in (["compile", "--plan"], ["gradcheck"]):
        r = run(command[0], MLP, *command[1:], "--dim", f"B={value}")
        assert r.exit_code == 2 and "Invalid value for --dim" in r.output, r.output


@pytest.mark.parametrize("command", [["gradcheck"], ["bench", "--no-cold", "--steps", "1"],
                                     ["export", "--init-seed", "0", "--verify"]])
def test_dims_too_large_for_memory_are_refused_before_allocating(command, tmp_path):
    """`--dim B=10**12` sizes the synthetic batch: it was a MemoryError traceback (or, at sizes
    the machine can map, the OOM killer); now the step's size is checked against the budget."""
    extra = ["-o", tmp_path / "mlp.onnx"] if command[0] == "export" else []
    r = run(command[0], MLP, *command[1:], *extra, "--dim", "B=1000000000000")
    assert r.exit_code == 1, r.output
    assert "error: a step at B=1000000000000 needs about" in r.output and "lower the dims" in r.output


def test_ctrl_c_in_any_command_is_interrupted_and_exit_130(tmp_path):
    """As in `graphc train`: click's default was `Aborted!` and exit status 1, which says "a
    problem in the input". The spec is a pipe, so the command is surely waiting in its read."""
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    child = subprocess.Popen([sys.executable, "-m", "graphc", "check", str(fifo)], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    with open(fifo, "w"):  # returns once the command has opened the pipe to read it
        time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    assert child.returncode == 130 and err.strip() == "interrupted", (out, err)


def test_sample_counts_must_be_positive(tmp_path):
    # -n -3 showed all but 3 samples; a length of 10**12 kept a list growing for days
    for args in (["-n", "0"], ["-n", "-3"], ["--length", "-1"], ["--length", str(10**12)]):
        r = run("sample", MLP, "--checkpoint", tmp_path, *args)
        assert r.exit_code == 2 and "is not in the range" in r.output, r.output


def test_compile_to_an_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run("compile", MLP, "--emit", blocker / "sub")
    assert r.exit_code == 1 and "cannot write" in r.output


def test_gradcheck_passes_and_reports_json():
    r = run("gradcheck", MLP, "--format", "json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["ok"] and {row["node"] for row in report["rows"]} >= {"logits", "x"}
    assert all(row["rel_error"] < 1e-5 for row in report["rows"])


def test_bench_reports_times_and_memory():
    r = run("bench", MLP, "--no-cold", "--steps", "3", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert set(data["dims"]) == {"B"}  # the MLP has no T: the default T=16 is not reported
    assert data["step_median_ms"] > 0 and data["cached_start_s"] > 0 and data["peak_rss_mb"] > 10
    assert 0 < data["buffer_plan_mb"] < data["peak_rss_mb"]


@pytest.mark.parametrize("steps", ["0", "-2", str(10**9)])  # 10**9: a list of 10**9 step times
def test_bench_refuses_no_timed_steps_with_a_usage_error(steps):
    r = run("bench", MLP, "--no-cold", "--steps", steps)
    assert r.exit_code == 2 and "Invalid value for '--steps'" in r.output, r.output  # was a KeyError
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_bench_saves_and_restores_the_compiled_model_as_train_does(tmp_path, monkeypatch):
    """Its cached start is a user's: the model saved by an earlier run (of bench, or of train,
    under the same key) is restored, not compiled again."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    args = ("bench", MLP, "--no-cold", "--steps", "1", "--set", "hidden=16")
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert "cached start (to first step):" in first.output and "(compiled: no saved model" in first.output
    second = run(*args, "--format", "json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["cached_start_restored"] is True
    from graphc.cli.train import _model

    model, _ = _model(MLP, ("hidden=16",))
    assert "graph" not in model.__dict__  # train restores the model bench saved
    assert model.params["hidden_layers.0.fc.weight"].shape == (16, 2)


def test_train_resume_eval_sample(tmp_path):
    out = tmp_path / "run"
    r = run("train", MLP, "--steps", 30, "--out", out, "--progress", "none", "--seed", 3)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 30
    r = run("train", MLP, "--steps", 60, "--resume", out / "checkpoint", "--progress", "none")
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["resumed_from"] == 30
    r = run("eval", MLP, "--checkpoint", out, "--format", "json")
    assert r.exit_code == 0, r.output
    assert 0.0 <= json.loads(r.output)["accuracy"] <= 1.0
    r = run("sample", MLP, "--checkpoint", out, "-n", 4)
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].endswith("/4 correct")


def test_train_set_overrides_a_train_setting(tmp_path):
    r = run("train", MLP, "--steps", 5, "--out", tmp_path, "--progress", "none",
            "--set", "optimizer.lr=0.5", "--set", "hidden=8")
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["optimizer"]["lr"] == 0.5


@pytest.mark.parametrize("args,message", [
    (["train", "specs/bad/cycle.yaml"], "cycle"),
    (["train", MLP, "--set", "data.task=spiralz", "--steps", 2], "spiralz"),
    (["train", MLP, "--set", "optimizer.name=adamz", "--steps", 2], "adamz"),
    (["eval", MLP, "--checkpoint", "/nonexistent/run"], "checkpoint"),
    (["train", MLP, "--set", "nonsense"], "KEY=VALUE"),
])
def test_user_mistakes_are_clear_errors(tmp_path, args, message):
    r = run(*args, *(["--out", tmp_path] if args[0] == "train" and "--set" in args else []))
    assert r.exit_code in (1, 2), r.output
    assert message in r.output


def test_missing_data_file(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text((SPECS / "mlp.yaml").read_text().replace(
        "data: {task: two_spirals, noise: 0.05}", "data: {file: missing.npz}"))
    r = run("train", spec, "--out", tmp_path / "run", "--progress", "none")
    assert r.exit_code == 1 and "missing.npz" in r.output


def test_corrupt_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert run("train", MLP, "--steps", 3, "--out", out, "--progress", "none").exit_code == 0
    (out / "checkpoint" / "model.safetensors").write_bytes(b"not a safetensors file")
    r = run("eval", MLP, "--checkpoint", out)
    assert r.exit_code == 1 and "checkpoint" in r.output.lower()


def test_nan_loss_stops_with_the_node_and_keeps_the_checkpoint(tmp_path):
    import numpy as np

    from graphc.runtime import load_checkpoint

    cnn = SPECS / "cnn.yaml"  # relu is unbounded: huge weights overflow (tanh would saturate)
    out = tmp_path / "run"
    assert run("train", cnn, "--steps", 3, "--out", out, "--progress", "none").exit_code == 0
    r = run("train", cnn, "--steps", 50, "--resume", out, "--progress", "none",
            "--set", "optimizer.lr=1e30")
    assert r.exit_code == 1, r.output
    assert "non-finite" in r.output.lower() or "nan" in r.output.lower()
    assert "node" in r.output.lower()  # names the node that first went bad
    assert "last good checkpoint" in r.output and "--resume" in r.output
    kept = load_checkpoint(out / "checkpoint")
    assert all(np.isfinite(v).all() for v in kept.params.values())
    assert run("eval", cnn, "--checkpoint", out).exit_code == 0


def test_doctor_reports_the_toolchain():
    r = run("doctor")
    assert r.exit_code == 0
    assert "numba" in r.output and "graphviz" in r.output
    if shutil.which("dot"):
        assert "graphviz version" in r.output
    from graphc.kernels._blas import blas_cores
    from graphc.kernels.threads import default_threads

    threads = next(line for line in r.output.splitlines() if line.startswith("threads"))
    assert f"{default_threads()} kernel threads (" in threads
    assert all(core in threads for core in blas_cores())  # the OpenBLAS kernels in use
