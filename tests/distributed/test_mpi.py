"""Data-parallel training under a real MPI launcher (`mpiexec -n 2`, from the `[mpi]` extra).

The loss curve of two ranks must equal one process's with the same global batch; a run
resumes with another number of ranks; a failing or killed rank ends the whole job quickly."""

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("mpi4py", reason="MPI tests need the [mpi] extra: pip install -e '.[mpi]'")


def _mpiexec() -> str:
    found = shutil.which("mpiexec") or str(Path(sysconfig.get_path("scripts")) / "mpiexec")
    # the [mpi] extra brings MPICH's launcher with mpi4py: one without the other is a broken install
    assert Path(found).exists(), "mpi4py is installed but no mpiexec: pip install -e '.[mpi]'"
    return found


GRAPHC = [sys.executable, "-m", "graphc"]
ENV = dict(os.environ)  # graphc shares the host's cores among the ranks itself


def _train(tmp: Path, spec: str, ranks: int, *extra: str, timeout: float = 300):
    out = tmp / f"{Path(spec).stem}-n{ranks}"
    cmd = [*GRAPHC, "train", str(ROOT / spec), "--out", str(out), "--progress", "none",
           "--set", "log_every=1", "--set", "eval_every=0", *extra]
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=tmp)
    return run, out


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("spec", ["specs/transformer.yaml", "specs/cnn.yaml"])
def test_two_ranks_follow_the_one_process_loss_curve(tmp_path, spec):
    one, out1 = _train(tmp_path, spec, 1, "--steps", "50")
    two, out2 = _train(tmp_path, spec, 2, "--steps", "50")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = _losses(out1), _losses(out2)
    assert len(a) == len(b) == 50
    worst = max(abs(x - y) / max(abs(x), 1e-3) for x, y in zip(a, b, strict=True))
    assert worst < 1e-5, f"largest relative loss difference {worst:.2e}"
    assert a[-1] < a[0]  # it trained
    assert not (out2.parent / f"{out2.name}-2").exists()  # one run directory, written by rank 0


def test_a_parallel_run_resumes_on_one_process(tmp_path):
    """Two ranks train 20 steps, one process continues to 40: the curve of a straight 40-step
    run (a constant schedule, so the 20-step run's horizon does not matter)."""
    spec, constant = "specs/mlp.yaml", ("--set", "schedule.name=constant")
    straight, out1 = _train(tmp_path, spec, 1, "--steps", "40", *constant)
    half, out2 = _train(tmp_path, spec, 2, "--steps", "20", *constant)
    assert straight.returncode == 0 and half.returncode == 0, straight.stderr + half.stderr
    resumed = subprocess.run([*GRAPHC, "train", str(ROOT / spec), "--resume", str(out2), "--steps", "40",
                              "--progress", "none"], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _losses(out1), _losses(out2)
    assert len(a) == len(b) == 40
    assert max(abs(x - y) / max(abs(x), 1e-3) for x, y in zip(a, b, strict=True)) < 1e-5


def test_batch_that_does_not_divide_is_refused(tmp_path):
    run, _ = _train(tmp_path, "specs/mlp.yaml", 2, "--steps", "2", "--set", "batch=33")
    assert run.returncode == 1
    assert "does not divide among 2 processes" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_killed_rank_ends_the_job(tmp_path):
    out = tmp_path / "killed"
    cmd = [_mpiexec(), "-n", "2", *GRAPHC, "train", str(ROOT / "specs/transformer.yaml"), "--out", str(out),
           "--progress", "none", "--steps", "100000"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)  # both ranks are past start-up once rank 0 logs
        assert job.poll() is None, job.communicate()[1]
        ranks = _rank_pids(job.pid)
        assert len(ranks) == 2, ranks
        t0 = time.time()
        os.kill(ranks[-1], signal.SIGKILL)
        _, err = job.communicate(timeout=60)
        assert job.returncode != 0
        assert time.time() - t0 < 60
    finally:
        if job.poll() is None:
            job.kill()


def _rank_pids(launcher: int) -> list[int]:
    """The python processes below the launcher (its children's children on hydra)."""
    found, todo = [], [launcher]
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            cmdline = Path(f"/proc/{c}/cmdline").read_bytes()
            if b"graphc" in cmdline and b"mpiexec" not in cmdline and b"hydra" not in cmdline:
                found.append(c)
            todo.append(c)
    return sorted(found)


FAULTY_RANK = """
import sys, time
from pathlib import Path
from graphc.runtime import distributed, trainer

if distributed.world().rank == 1:  # this rank's fourth step raises; rank 0 is then in an allreduce
    step = trainer.Run.train_step

    def train_step(self, logging):
        if self.step == 3:
            Path("fault-time").write_text(repr(time.time()))
            raise RuntimeError("injected fault")
        return step(self, logging)

    trainer.Run.train_step = train_step
from graphc.cli import main

sys.argv[0] = "graphc"
main()
"""


def test_an_error_on_one_rank_ends_every_rank_naming_it(tmp_path):
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY_RANK)
    cmd = [_mpiexec(), "-n", "2", sys.executable, str(script), "train", str(ROOT / "specs/mlp.yaml"),
           "--out", str(tmp_path / "run"), "--progress", "none", "--steps", "1000"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    ended = time.time()
    assert run.returncode != 0
    assert "rank 1 of 2: RuntimeError: injected fault" in run.stderr
    assert ended - float((tmp_path / "fault-time").read_text()) < 60  # from the fault to the job's end
