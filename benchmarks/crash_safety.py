"""Crash safety: SIGKILL `graphc train` (checkpoint_every=1) at random moments.

After every kill the run directory must hold a checkpoint that loads (once one was ever
written), with a step that never goes back, finite parameters, readable metrics rows and
strict-JSON config/summary files, and no stale lock; resuming after every kill must end
exactly (bit for bit) where a run that was never killed ends.

    python benchmarks/crash_safety.py [--kills 100] [--cli-kills 10] [--steps 1500]
                                      [--seed 0] [--spec specs/mlp.yaml] [--keep DIR]

Two kinds of kill, against one run directory:

- ``--kills``: children forked from a warm server process (``serve`` below). Each child runs
  ``graphc.cli.main`` with the arguments the console script would get, so the whole command
  runs (compile, data, lock, resume, the loop, saves), only without paying the interpreter's,
  the imports' and Numba's start-up again (~2.5 s): cheap, so there can be many. The kill
  lands anywhere: while the run starts up, restores, steps, saves or writes its summary.
- ``--cli-kills``: real ``python -m graphc train`` processes, start-up included, each killed a
  random moment after its checkpoint has advanced.

tests/runtime/test_crash_safety.py runs :func:`crash_test` with 20 + 2 kills; this script runs
more and prints a report (JSON with ``--json``). A kill that comes after the run has finished
(a fast disk: every step fsyncs its checkpoint) starts the run over.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The server forks its runs. Numba's OpenMP layer (graphc's default pool where GNU OpenMP is
# there) terminates a child forked after it ran (GNU OpenMP is not fork-safe), so the server
# uses Numba's fork-safe workqueue layer: what is tested here is the checkpoints, not threads.
SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
              "NUMBA_THREADING_LAYER": "workqueue"}  # fmt: skip


# --- the fork server ---------------------------------------------------------------------------


def serve(warmup_args: list[str]) -> None:
    """Warm up by running ``graphc <warmup_args>`` in this process (imports, compiled kernels,
    matplotlib), print ``ready <exit code>``, then answer JSON commands on stdin, one a line:
    ``{"run": args}`` forks a child running ``graphc <args>``, prints ``pid <n>``, waits for it
    and prints ``exit <code>`` (negative: the signal that ended it); ``{"start": args}`` forks
    one and only prints its pid; ``{"wait": pid}`` waits for a started one and prints its exit."""
    from graphc.cli import main

    def run(args: list[str]) -> int:
        try:
            main(args, prog_name="graphc", standalone_mode=True)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0

    def fork(args: list[str]) -> int:
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child: quiet, then exactly the command
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                code = run(args)
            except BaseException:  # noqa: BLE001 - a traceback here is a failure: say so
                code = 99
            os._exit(code)
        print(f"pid {pid}", flush=True)
        return pid

    def wait(pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)

    protocol = os.dup(1)  # the warm-up run prints its summary: not on the protocol's stdout
    os.dup2(2, 1)
    code = run(warmup_args)
    sys.stdout.flush()
    os.dup2(protocol, 1)
    print(f"ready {code}", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "run" in command:
            wait(fork(command["run"]))
        elif "start" in command:
            fork(command["start"])
        else:
            wait(command["wait"])


# --- checking a run directory after a kill -----------------------------------------------------


def check_run(run: Path, last_step: int | None) -> int | None:
    """The checkpoint's step after a kill (None if no checkpoint was ever written); raises
    AssertionError (or CheckpointError) when anything is broken."""
    import numpy as np

    from graphc.runtime.checkpoint import load_checkpoint, load_params
    from graphc.runtime.errors import CheckpointError
    from graphc.runtime.rundir import RunLock, read_jsonl

    def strict(path: Path) -> None:
        if path.exists():
            json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    try:
        ckpt = load_checkpoint(run / "checkpoint")
    except CheckpointError as err:
        assert last_step is None and "no checkpoint at" in str(err), f"after a kill: {err}"
        return None
    step = ckpt.state["step"]
    assert last_step is None or step >= last_step, f"the checkpoint went back: {last_step} -> {step}"
    assert all(np.all(np.isfinite(v)) for v in ckpt.params.values())
    load_params(run)  # what `graphc eval --checkpoint RUN` reads
    strict(run / "config.json")
    strict(run / "summary.json")
    read_jsonl(run / "metrics.jsonl")
    lock = RunLock(run)
    assert lock.acquire(), "the lock outlived the killed process"
    lock.release()
    return step


# --- the test ----------------------------------------------------------------------------------


def _train_args(spec: str, run: Path, steps: int, resume: bool) -> list[str]:
    args = ["train", spec, "--out", str(run), "--steps", str(steps), "--progress", "none",
            "--set", "batch=8", "--set", "checkpoint_every=1", "--set", "eval_every=0"]
    return args + (["--resume", str(run)] if resume else ["--overwrite"])


def crash_test(
    workdir: Path,
    *,
    kills: int = 20,
    cli_kills: int = 2,
    steps: int = 200,
    seed: int = 0,
    spec: str | Path = ROOT / "specs" / "mlp.yaml",
) -> dict:
    """Kill one run ``kills`` times through the fork server and ``cli_kills`` times as a real
    process, resume it to the end and compare with a run never killed; returns a report."""
    from graphc.runtime.checkpoint import load_checkpoint

    spec, run, reference = str(spec), workdir / "killed", workdir / "reference"
    rng = random.Random(seed)
    env = {**os.environ, **SERVER_ENV}
    t0 = time.perf_counter()
    warmup = _train_args(spec, workdir / "warmup", 2, False)
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", json.dumps(warmup)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=workdir,
    )

    def ask(command: dict) -> int:
        server.stdin.write(json.dumps(command) + "\n")
        server.stdin.flush()
        return int(server.stdout.readline().split()[1])

    report = {"kills": 0, "cli_kills": 0, "advanced": 0, "missed": 0, "steps": []}
    last: int | None = None
    try:
        ready = server.stdout.readline().split()
        assert ready == ["ready", "0"], f"the warm-up run failed: {ready}"
        report["startup_s"] = round(time.perf_counter() - t0, 2)
        # the run that is never killed, alongside (it has a core and the disk queue too)
        reference_pid = ask({"start": _train_args(spec, reference, steps, False)})
        high = 0.3  # seconds: the kill comes U(0, high) after the fork
        while report["kills"] < kills:
            server.stdin.write(json.dumps({"run": _train_args(spec, run, steps, last is not None)}) + "\n")
            server.stdin.flush()
            pid = int(server.stdout.readline().split()[1])
            time.sleep(rng.uniform(0.0, high))
            with contextlib.suppress(ProcessLookupError):  # it may have finished already
                os.kill(pid, signal.SIGKILL)
            code = int(server.stdout.readline().split()[1])
            assert code in (0, -signal.SIGKILL), f"graphc train failed on its own (exit {code})"
            if code == 0:
                report["missed"] += 1  # it finished first: the run is complete, start over
                assert check_run(run, last) == steps
                last = None
                continue
            report["kills"] += 1
            step = check_run(run, last)
            if step is not None and step != last:
                report["advanced"] += 1
            elif report["kills"] % 3 == 0:
                high *= 1.3  # the kills land too early (a loaded machine): wait longer
            last = step
            report["steps"].append(step)
        for _ in range(cli_kills):
            last = _cli_kill(spec, run, steps, last, rng, env)
            report["cli_kills"] += 1
            report["steps"].append(last)
        server.stdin.write(json.dumps({"run": _train_args(spec, run, steps, last is not None)}) + "\n")
        server.stdin.flush()
        server.stdout.readline()
        code = int(server.stdout.readline().split()[1])
        assert code == 0, f"the final resume failed (exit {code})"
        assert ask({"wait": reference_pid}) == 0, "the reference run failed"
    finally:
        server.stdin.close()
        server.wait(timeout=120)
    a, b = load_checkpoint(run / "checkpoint"), load_checkpoint(reference / "checkpoint")
    assert a.state["step"] == b.state["step"] == steps
    for group in ("params", "optimizer"):
        x, y = getattr(a, group), getattr(b, group)
        assert x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x), (
            f"after {report['kills']} kills the resumed run's {group} differ from a straight run"
        )
    report["time_s"] = round(time.perf_counter() - t0, 2)
    return report


def _cli_kill(spec: str, run: Path, steps: int, last: int | None, rng, env) -> int | None:
    """Start a real `graphc train`, kill it a random moment after its checkpoint advanced."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphc", *_train_args(spec, run, steps, last is not None)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=run.parent, text=True,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            state = run / "checkpoint" / "state.json"
            try:
                step = json.loads(state.read_text())["step"]
            except (OSError, ValueError, KeyError):
                step = None
            if step is not None and step != last:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.2))
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
    return check_run(run, last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--cli-kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", default=str(ROOT / "specs" / "mlp.yaml"))
    parser.add_argument("--keep", help="work in this directory (kept) instead of a temporary one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = crash_test(work, kills=args.kills, cli_kills=args.cli_kills, steps=args.steps,
                            seed=args.seed, spec=args.spec)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['kills']} forked kills ({report['advanced']} after the checkpoint advanced, "
          f"{report['missed']} runs finished first) and {report['cli_kills']} graphc-process kills "
          f"in {report['time_s']} s (server start {report['startup_s']} s): every checkpoint "
          "loaded, and the resumed run equals the straight run bit for bit")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve(json.loads(sys.argv[2]))
    else:
        main()
