"""Fused pointwise kernels against the library's kernels and against no fusion (issue #17).

    python benchmarks/fusion.py [--dims B=64,T=16] [--rounds 15] [--steps 5] [--no-compile]

Two pairs of specs in benchmarks/specs/, each timed fused, unfused (`--no-fuse`) and against
its library-op twin, forward + backward per step, in one process, alternating blocks of
`--steps` steps over `--rounds` rounds (so load on the machine hits every variant alike):

  blocks:   primitive_blocks.yaml (layer norm, tanh-GELU, SwiGLU gate, scaled residual written
            from primitives, no matmuls, input gradients on) vs library_blocks.yaml
  network:  primitives.yaml (the same blocks in a pre-norm GELU MLP and a SwiGLU MLP, linear
            layers between them) vs library.yaml

Then the compile cost of the fused groups: a fresh process with empty graphc and Numba caches
compiles each generated kernel (float32 forward and backward) on its first call, and a second
process loads them from the cache. The load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"
PAIRS = {"blocks": ("primitive_blocks.yaml", "library_blocks.yaml"),
         "network": ("primitives.yaml", "library.yaml")}


def _load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _variants(pair: str) -> dict:
    from graphc.compiler import compile_spec

    prim, lib = PAIRS[pair]
    wrt = pair == "blocks"  # no parameters upstream of most blocks: differentiate the inputs
    return {"fused": compile_spec(SPECS / prim, wrt_inputs=wrt),
            "unfused": compile_spec(SPECS / prim, wrt_inputs=wrt, fuse=False),
            "library": compile_spec(SPECS / lib, wrt_inputs=wrt),
            "library unfused": compile_spec(SPECS / lib, wrt_inputs=wrt, fuse=False)}


def time_pair(pair: str, dims: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median step time (ms) of each variant, measured in alternating blocks."""
    from graphc.compiler.checks import synthetic_batch

    models = _variants(pair)
    state = {}
    for name, m in models.items():
        params, batch = m.init_params(0), synthetic_batch(m, dims)
        m._gradients(m.forward(params, batch, training=True), None)  # compile, first arena
        state[name] = (m, params, batch)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name, (m, params, batch) in state.items():
            for _ in range(steps):
                t = time.perf_counter()
                m._gradients(m.forward(params, batch, training=True), None)
                times[name].append(time.perf_counter() - t)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


_COMPILE_WORKER = r"""
import json, sys, time
import numba
from graphc.compiler import compile_spec
from graphc.compiler.kernelgen import exercise
t = time.perf_counter()
numba.njit(lambda x: x + 1)(1.0)  # Numba's own start-up (~0.5-1 s, once per process) is not the group's
warmup = time.perf_counter() - t
model = compile_spec(sys.argv[1], wrt_inputs=True)
out = {"numba start-up": {"members": 0, "fwd_s": warmup, "bwd_s": 0.0}}
for g in model.fused:  # each generated kernel's first float32 forward and backward call
    fwd_s, bwd_s = exercise(g.group)
    out[g.name] = {"members": len(g.nodes), "fwd_s": fwd_s, "bwd_s": bwd_s}
print(json.dumps(out))
"""


def compile_times(spec: Path) -> tuple[dict, dict]:
    """(cold, cached): per fused group, the seconds its first forward and backward call took in
    a fresh process with empty caches, then in another process reusing them."""
    with tempfile.TemporaryDirectory(prefix="graphc-fusion-") as cache:
        env = {**os.environ, "GRAPHC_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache}
        runs = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", _COMPILE_WORKER, str(spec)], env=env,
                               capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-2000:])
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return runs[0], runs[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="B=64,T=16")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time measurement")
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (kv.split("=") for kv in args.dims.split(","))}
    print(f"fusion benchmark, {dims}, {args.rounds} rounds × {args.steps} steps; {_load()}")
    for pair in PAIRS:
        ms = time_pair(pair, dims, args.rounds, args.steps)
        print(f"\n{pair} ({' vs '.join(PAIRS[pair])}), median step (fwd+bwd); {_load()}")
        for k, v in ms.items():
            print(f"  {k:<16} {v:8.3f} ms")
        print(f"  fused / library:   {ms['fused'] / ms['library']:.2f}×  (target ≤ 1.2)   "
              f"fused / library unfused: {ms['fused'] / ms['library unfused']:.2f}×")
        print(f"  unfused / fused:   {ms['unfused'] / ms['fused']:.2f}×  (target ≥ 2)")
    if not args.no_compile:
        cold, cached = compile_times(SPECS / "primitive_blocks.yaml")
        print(f"\nfused groups of primitive_blocks.yaml, first float32 call (fwd / bwd); {_load()}")
        for name, c in cold.items():
            w = cached[name]
            print(f"  {name:<24} {c['members']:2d} ops  cold {c['fwd_s']:.2f} + {c['bwd_s']:.2f} s   "
                  f"cached {w['fwd_s'] * 1e3:.1f} + {w['bwd_s'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
