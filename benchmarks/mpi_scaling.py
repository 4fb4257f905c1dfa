"""Data-parallel scaling on this machine: samples/s of `graphc train` with N = 1, 2, … ranks
under `mpiexec`, the allreduce time per step, and the communication a step moves.

    python benchmarks/mpi_scaling.py [--spec specs/transformer.yaml] [--ranks 1 2] [--steps 300]

Each run trains the same global batch; samples/s is read from metrics.jsonl after the first
`--warmup` steps (compile and cache loading excluded). Runs alternate N so that a change in
the machine's load hits every N alike; `uptime`'s load is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from statistics import median


def _mpiexec() -> str:
    found = shutil.which("mpiexec") or str(Path(sysconfig.get_path("scripts")) / "mpiexec")
    if not Path(found).exists():
        sys.exit("no mpiexec: pip install -e '.[mpi]'")
    return found


def run(spec: str, ranks: int, steps: int, warmup: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "graphc", "train", spec, "--out", str(out), "--steps", str(steps),
           "--progress", "none", "--overwrite", "--set", "log_every=1", "--set", "eval_every=0"]
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd]
    env = dict(os.environ)  # one rank uses every core; N ranks share them (graphc.kernels.threads)
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "samples_per_sec" in r and r["step"] > warmup]
    return {"samples_per_sec": median(r["samples_per_sec"] for r in rows),
            "allreduce_ms": median(r.get("allreduce_sec", 0.0) for r in rows) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/transformer.yaml")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from graphc.compiler import compile_spec

    model = compile_spec(args.spec)
    n_params = sum(int(__import__("numpy").prod(p.shape)) for p in model.params.values() if p.trainable)
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)  spec: {args.spec}  trainable parameters: {n_params:,}")
    print(f"allreduce per step: {4 * n_params / 2**20:.2f} MiB of float32 gradients per rank "
          f"(a ring allreduce sends ≈ 2·(N-1)/N of that)")
    results: dict[int, list[dict]] = {n: [] for n in args.ranks}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for n in args.ranks:
                results[n].append(run(args.spec, n, args.steps, args.warmup, Path(tmp) / f"n{n}"))
    base = median(r["samples_per_sec"] for r in results[args.ranks[0]])
    print(f"{'ranks':>5} {'samples/s':>10} {'speed-up':>9} {'allreduce ms/step':>18}")
    for n in args.ranks:
        sps = median(r["samples_per_sec"] for r in results[n])
        ar = median(r["allreduce_ms"] for r in results[n])
        print(f"{n:>5} {sps:>10.0f} {sps / base:>8.2f}× {ar:>18.3f}")
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
