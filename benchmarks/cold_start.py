"""Start-up of `graphc train`: seconds from launching the process to the end of the first
training step, cold (empty Numba and graphc caches) and cached (the caches the cold run filled).

    python benchmarks/cold_start.py [--spec specs/transformer.yaml ...] [--repeat 2]

Each measurement is a fresh process running `graphc train SPEC` in a temporary directory, with
NUMBA_CACHE_DIR and GRAPHC_CACHE_DIR pointing into it (so the figures do not depend on, or
disturb, the caches of other work on this machine). Python writes bytecode as it does by default
(PYTHONDONTWRITEBYTECODE, which some images set, is dropped for the child): a cached start is a
second run, with every cache the first one filled. The child stops right after its first step:
what follows (validation, checkpoints) is not start-up. `uptime`'s load is printed with each
figure, since on a shared machine the load moves the numbers a lot.

`--snapshot` runs a copy of graphc taken at the start (in the temporary directory): editing a
kernel module invalidates Numba's cache of every kernel (graphc.kernels._cache), so on a machine
where someone edits the kernels, a measurement of the working tree is not a measurement.
`--source DIR [DIR ...]` snapshots those checkouts instead of this one (another worktree, a
`git archive` of a base commit); with several, each repeat runs them in turn, so an A/B
comparison sees the same load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["specs/transformer.yaml", "specs/mlp.yaml", "specs/cnn.yaml", "specs/lstm.yaml"]

# Runs the real CLI in this process; the first progress update (the end of step 1) prints
# the wall clock time and ends the process at once.
CHILD = """
import os, sys, time
import graphc.runtime.progress as progress

_update = progress.Progress.update

def update(self, step, stats):
    _update(self, step, stats)
    print(f"FIRST_STEP_AT {time.time()!r}", flush=True)
    os._exit(0)

progress.Progress.update = update
from graphc.cli import main
main(sys.argv[1:], prog_name="graphc")
"""


def load() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout
    return out.rsplit("load average:", 1)[-1].strip()


def snapshot(tmp: Path, root: Path = ROOT) -> Path:
    """A copy of the package in checkout `root` as it is installed (graphc.runtime lives in
    runtime/)."""
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(root / "graphc", src / "graphc", ignore=ignore)
    shutil.copytree(root / "runtime", src / "graphc" / "runtime", ignore=ignore)
    return src


def first_step(spec: str, tmp: Path, extra: list[str], src: Path | None = None) -> tuple[float, str]:
    """Seconds from launch to the end of step 1, and the child's output."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        **({"PYTHONPATH": str(src)} if src else {}),
        "NUMBA_CACHE_DIR": str(tmp / "numba-cache"),
        "GRAPHC_CACHE_DIR": str(tmp / "graphc-cache"),
    }  # not `graphc`: cwd is tmp
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        "train",
        str(ROOT / spec),
        "--out",
        str(tmp / "run"),
        "--overwrite",
        "--progress",
        "plain",
        *extra,
    ]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    marks = [line for line in r.stdout.splitlines() if line.startswith("FIRST_STEP_AT ")]
    if not marks:
        sys.exit(f"{spec}: no first step (exit {r.returncode})\n{r.stdout}\n{r.stderr}")
    return float(marks[-1].split()[1]) - t0, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", nargs="+", default=SPECS)
    ap.add_argument("--repeat", type=int, default=2, help="cold and cached runs per spec")
    ap.add_argument("--show", action="store_true", help="print the cold run's output")
    ap.add_argument("--snapshot", action="store_true", help="run a copy of graphc taken now")
    ap.add_argument("--source", nargs="+", type=Path, help="run copies of these checkouts, in turn (implies --snapshot)")
    ap.add_argument("--helpers", help="GRAPHC_COMPILE_HELPERS for the runs (0: compile serially, as before)")
    args = ap.parse_args()
    if args.helpers is not None:
        os.environ["GRAPHC_COMPILE_HELPERS"] = args.helpers
    sources = [p.resolve() for p in args.source] if args.source else [ROOT if args.snapshot else None]
    name = {src: (str(src) if len(sources) > 1 else "") for src in sources}
    print(f"{'spec':<28} {'run':<7} {'seconds':>8}   load (1, 5, 15 min)")
    for spec in args.spec:
        cold = {src: [] for src in sources}
        cached = {src: [] for src in sources}
        for _ in range(args.repeat):
            for root in sources:
                with tempfile.TemporaryDirectory(prefix="graphc-cold-") as d:
                    tmp = Path(d)
                    src = snapshot(tmp, root) if root is not None else None
                    before = load()
                    seconds, out = first_step(spec, tmp, [], src)
                    cold[root].append(seconds)
                    print(f"{spec:<28} {'cold':<7} {seconds:8.2f}   {before}   {name[root]}", flush=True)
                    if args.show:
                        print(out)
                    for _ in range(args.repeat):
                        before = load()
                        seconds, _ = first_step(spec, tmp, [], src)
                        cached[root].append(seconds)
                        print(f"{spec:<28} {'cached':<7} {seconds:8.2f}   {before}   {name[root]}", flush=True)
        for root in sources:
            print(f"{spec:<28} median cold {median(cold[root]):.2f} s, cached {median(cached[root]):.2f} s"
                  f"   {name[root]}", flush=True)


if __name__ == "__main__":
    main()
