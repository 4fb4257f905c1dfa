"""`graphc train` under stress, as a user meets it (issue #11): a real Ctrl-C, two runs into one
--out, re-running into an existing run, --max-memory, and eval of a run caught mid-save."""

import json
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from graphc.cli import main
from graphc.runtime import load_checkpoint
from tests.conftest import SPECS

MLP = str(SPECS / "mlp.yaml")
QUIET = ("--progress", "none")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"traceback for {args}: {result.exception!r}")
    return result


def _wait_for_rows(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists() and path.read_text().count("\n") >= 1:
            return
        time.sleep(0.05)
    raise AssertionError("graphc train did not start training")


def test_ctrl_c_and_a_second_run_into_the_same_out(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphc", "train", MLP, "--out", str(out), "--steps", "100000", *QUIET],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for_rows(out / "metrics.jsonl", proc)
        second = run("train", MLP, "--out", out, "--steps", 5, *QUIET)
        assert second.exit_code == 1
        assert f"{out} is in use by another training run (pid {proc.pid})" in second.output
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted: stopped at step" in stderr
    summary = json.loads((out / "summary.json").read_text())
    step = summary["steps"]
    assert summary["status"] == "interrupted" and summary["checkpoint_step"] == step > 0
    assert load_checkpoint(out / "checkpoint").state["step"] == step
    assert f"interrupted after {step} steps" in stdout
    resumed = run("train", MLP, "--resume", out, "--steps", step + 3, *QUIET)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming at step {step} of {step + 3}" in resumed.output


def test_rerunning_versions_the_run_unless_overwrite(tmp_path):
    out = tmp_path / "mlp"
    assert run("train", MLP, "--out", out, "--steps", 2, *QUIET).exit_code == 0
    first = (out / "metrics.jsonl").read_bytes()
    again = run("train", MLP, "--out", out, "--steps", 3, *QUIET)
    assert again.exit_code == 0
    assert f"{out} holds an earlier run; this one goes to {out}-2 (--overwrite reuses {out})" in again.output
    assert f"completed after 3 steps in 0s → {out}-2" in again.output or f"→ {out}-2" in again.output
    assert (out / "metrics.jsonl").read_bytes() == first
    forced = run("train", MLP, "--out", out, "--steps", 4, "--overwrite", *QUIET)
    assert forced.exit_code == 0 and "holds an earlier run" not in forced.output
    assert load_checkpoint(out / "checkpoint").state["step"] == 4
    assert not (tmp_path / "mlp-3").exists()


def test_max_memory(tmp_path):
    r = run("train", MLP, "--out", tmp_path / "r", "--max-memory", "20MB", *QUIET)
    assert r.exit_code == 1 and "but the --max-memory limit is 20 MiB" in r.output, r.output
    assert r.output.count("\n") <= 2  # one clear line
    r = run("train", MLP, "--out", tmp_path / "r", "--max-memory", "lots", *QUIET)
    assert r.exit_code == 2 and "--max-memory" in r.output
    assert not (tmp_path / "r").exists()


def test_a_huge_batch_is_refused_in_seconds_not_after_gigabytes(tmp_path):
    start = time.perf_counter()
    r = run("train", SPECS / "transformer.yaml", "--set", "batch=1000000", "--out", tmp_path / "r", *QUIET)
    assert r.exit_code == 1, r.output
    assert "error: a training step with batch 1000000 (" in r.output and "needs about" in r.output
    assert time.perf_counter() - start < 30


def test_data_longer_than_max_len_is_refused_before_the_run_starts(tmp_path):
    """The transformer's data has T = 16: a positional encoding of max_len 4 cannot take it.
    One clear line naming the node, before the run directory is written (not the kernel's
    ValueError at the first step)."""
    r = run("train", SPECS / "transformer.yaml", "--set", "max_len=4", "--out", tmp_path / "r", *QUIET)
    assert r.exit_code == 1, r.output
    assert r.output.strip() == ("error: the batch's dims (B=64, T=16) do not fit node `pos` "
                                "(positional_encoding): max_len 4 is shorter than the sequence "
                                "(axis 1 of its input, T) (short by 12)"), r.output
    assert not (tmp_path / "r").exists()


def test_eval_works_between_the_two_renames_of_a_save(tmp_path):
    out = tmp_path / "run"
    assert run("train", MLP, "--out", out, "--steps", 3, *QUIET).exit_code == 0
    before = run("eval", MLP, "--checkpoint", out, "--format", "json")
    os.rename(out / "checkpoint", out / ".checkpoint.old")  # what a kill between them leaves
    r = run("eval", MLP, "--checkpoint", out, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == json.loads(before.output)
    assert run("sample", MLP, "--checkpoint", out, "-n", 2).exit_code == 0


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry))
    return kids


def test_ctrl_c_during_a_cold_compile_stops_at_once_and_ends_the_helpers(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "GRAPHC_CACHE_DIR": str(tmp_path / "graphc"),
           "GRAPHC_COMPILE_HELPERS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphc", "train", MLP, "--out", str(tmp_path / "run"), "--progress", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()  # the notice comes before the compile starts
        assert line.startswith("compiling kernels (first run"), line + proc.stderr.read()
        helpers = _children(proc.pid)
        assert helpers, "a cold start compiles in a helper process too"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr and "interrupted" in stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}/stat") for pid in helpers):
        time.sleep(0.1)
    left = [pid for pid in helpers if os.path.exists(f"/proc/{pid}/stat")]
    assert not left, f"helper processes outlived the interrupted run: {left}"
