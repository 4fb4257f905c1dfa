"""GFLOP/s of the attention kernel next to a linear layer over the same rows, forward+backward.

    python benchmarks/kernel_gflops.py [--threads 1 2] [--blocks 15] [--steps 3] [--busy]

For each workload (a transformer layer's attention at the issue's sizes, causal, float32) it
times `attention` and a `linear` [B*T, d] -> [B*T, 4d] (the MLP's first layer) in one process,
alternating in short blocks of steps so that whatever else the machine does hits both alike,
and prints the medians as GFLOP/s and their ratio. FLOPs are the op records' own counts
(`flops=` in graphc/ops), forward+backward taken as 3x the forward: for causal attention that
counts the masked half of the scores too, as the record does. Each figure is the median over
the blocks, then in brackets the best block (closest to a quiet machine); the machine's load
average is printed with every line, since a busy neighbour changes them; `--busy` runs one
CPU-bound process beside the measurement (benchmarks/neighbour.py).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.neighbour import busy_neighbour  # noqa: E402
from graphc.kernels import threads  # noqa: E402
from graphc.ops import OPS  # noqa: E402
from graphc.ops.registry import Ctx  # noqa: E402
from graphc.shapes import tensor  # noqa: E402

F32 = np.float32
# name -> (batch, length, width, heads); causal self-attention
WORKLOADS = {
    "gpt_mini": (16, 128, 256, 8),
    "transformer_d128": (32, 64, 128, 4),
}


def _flops(op: str, inputs: dict, attrs: dict) -> float:
    """Forward FLOPs from the op record's rule."""
    ctx = Ctx("bench", op, attrs, {k: tensor(s) for k, s in inputs.items()})
    return float(OPS[op].flops(ctx))


def _step(op: str, kw: dict, rng):
    """One forward+backward of `op` on the keyword arguments `kw`, as the generated driver
    calls it: into destinations (`out=`, `into_<port>=`)."""
    kp = OPS[op].kernel
    out = kp.fwd(**kw)[0]
    g = rng.standard_normal(out.shape).astype(F32)
    takes = inspect.signature(kp.bwd.py_func).parameters
    into = {f"into_{p}": np.empty_like(kw[p]) for p in kp.inputs if f"into_{p}" in takes}

    def step():
        _, *saved = kp.fwd(**kw, out=out)
        kp.bwd(g_out=g, **kw, **{f"saved{i}": s for i, s in enumerate(saved)}, out=out, **into)

    return step


def cases(b: int, t: int, d: int, h: int, rng) -> dict[str, tuple]:
    """name -> (step function, forward+backward FLOPs)."""

    def r(*shape, scale=0.1):
        return (rng.standard_normal(shape) * scale).astype(F32)

    empty = np.zeros(0, F32)
    x = r(b, t, d, scale=1.0)
    attn = dict(q=x, kv=empty, key_padding_mask=empty, heads=h, causal=True, has_bias=True)
    attn |= {n: r(d, d) for n in ("wq", "wk", "wv", "wo")} | {n: r(d) for n in ("bq", "bk", "bv", "bo")}
    lin = dict(x=x, weight=r(4 * d, d), bias=r(4 * d), has_bias=True)
    attn_flops = _flops("attention", {"q": (b, t, d)}, {"heads": h, "causal": True, "bias": True})
    lin_flops = _flops("linear", {"x": (b, t, d)}, {"out": 4 * d, "bias": True})
    return {
        "attention": (_step("attention", attn, rng), 3 * attn_flops),
        f"linear {d}->{4 * d}": (_step("linear", lin, rng), 3 * lin_flops),
    }


def measure(workload: str, blocks: int, steps: int) -> dict[str, tuple[float, float]]:
    """name -> GFLOP/s (median, best) over blocks of `steps` steps, the cases alternating."""
    rng = np.random.default_rng(0)
    runs = cases(*WORKLOADS[workload], rng)
    for fn, _ in runs.values():  # compile (or load from the cache) and warm up
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(blocks):
        for name, (fn, _) in runs.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: (runs[name][1] / statistics.median(ts) / 1e9, runs[name][1] / min(ts) / 1e9)
            for name, ts in times.items()}  # fmt: skip


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--blocks", type=int, default=15, help="alternating blocks per case")
    ap.add_argument("--steps", type=int, default=3, help="steps per block")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--busy", action="store_true", help="run beside one CPU-bound process")
    args = ap.parse_args()
    threads.configure()  # BLAS on one thread, as graphc runs
    with busy_neighbour(args.busy):
        report(args)


def report(args) -> None:
    for n in args.threads:
        n = threads.set_threads(n)
        for workload in args.workloads:
            before = load()
            gflops = measure(workload, args.blocks, args.steps)
            (attn_name, attn), (lin_name, lin) = gflops.items()
            print(
                f"threads={n} {workload:17s} {attn_name} {attn[0]:6.1f} ({attn[1]:6.1f}) GFLOP/s   "
                f"{lin_name} {lin[0]:6.1f} ({lin[1]:6.1f}) GFLOP/s   ratio {attn[0] / lin[0]:.2f} "
                f"({attn[1] / lin[1]:.2f})   [{before} -> {load()}]",
                flush=True,
            )


if __name__ == "__main__":
    main()
