"""Step time (forward + backward) of graphc vs PyTorch on the CPU: eager at its default threads
and at one thread, and torch.compile.

Every peer runs the same architecture on the same batch with the same weights, in one process,
alternating in short blocks of steps so that whatever else the machine is doing hits all of
them alike; ratios of medians (graphc ÷ peer, lower is better for graphc) are the numbers to
quote, with the load average printed beside them.

    python benchmarks/compare_torch.py                      # the workloads, all peers
    python benchmarks/compare_torch.py --specs transformer lstm_h128 --no-compile
    python benchmarks/compare_torch.py --busy               # with a CPU-bound neighbour

Specs are the reference specs (specs/NAME.yaml) or the workloads at realistic sizes
(benchmarks/specs/workloads/NAME.yaml). Peers:

    graphc        graphc's default: the usable cores, 1 or all chosen by the ThreadGovernor
                  from measured steps, as `graphc train` does (graphc.kernels.threads)
    graphc·1      graphc on one thread
    torch         PyTorch eager, its default threads (one per core)
    torch·1       PyTorch eager, one thread
    compile       torch.compile (inductor) of the same module, default threads

`--busy` starts one CPU-bound process beside the benchmark (a neighbour's job on a shared
machine) and adds the column `graphc ÷ graphc·1`: the default must stay within 1.3× of its own
single-thread time there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import graphc  # noqa: E402
from benchmarks.neighbour import busy_neighbour  # noqa: E402
from benchmarks.torch_models import by_name, sliced, torch_model  # noqa: E402
from graphc.compiler.checks import synthetic_batch  # noqa: E402
from graphc.kernels.threads import ThreadGovernor, default_threads, set_threads  # noqa: E402

WORKLOADS = ["transformer_d128", "gpt_mini", "cnn28", "lstm_h128", "lstm_h256", "mlp784"]
REFERENCE = ["transformer", "cnn", "lstm", "mlp"]


def spec_path(name: str) -> Path:
    for folder in (ROOT / "benchmarks" / "specs" / "workloads", ROOT / "specs"):
        if (folder / f"{name}.yaml").exists():
            return folder / f"{name}.yaml"
    raise SystemExit(f"no spec named {name!r} in specs/ or benchmarks/specs/workloads/")


def sizes(model) -> dict[str, int]:
    """B from the spec's train.batch; T from its sequence task (2×length for the digit tasks)."""
    train = model.train or {}
    data = train.get("data") or {}
    dims = {"B": int(train.get("batch", 32))}
    if data.get("task") in ("reverse_digits", "sort_digits"):
        dims["T"] = 2 * int(data.get("length", 8))
    elif "length" in data:
        dims["T"] = int(data["length"])
    dims.setdefault("T", 16)
    if not any("T" in str(d) for spec in model.inputs.values() for d in spec.shape):
        del dims["T"]
    return dims


def load_load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def peers(name: str, with_compile: bool) -> tuple[dict, dict]:
    """name → step function for each peer, and the workload's dims."""
    model = graphc.compile(spec_path(name))
    params = model.init_params(0)
    dims = sizes(model)
    batch = synthetic_batch(model, dims)
    tm = torch_model(name, model).float()
    with torch.no_grad():  # the same weights, so all do exactly the same arithmetic
        for k, ref in by_name(tm).items():
            tensor, rows = sliced(ref)
            tensor[rows].copy_(torch.from_numpy(params[k]))
    tb = {k: torch.from_numpy(v if v.dtype.kind in "iu" else v.astype(np.float32)) for k, v in batch.items()}
    threads = default_threads()

    def graphc_step(n):
        def step():
            set_threads(n)
            model.backward(model.forward(params, batch, training=True))

        return step

    governor = ThreadGovernor(threads)  # what `graphc train` does by default

    def graphc_default():
        with governor.step():
            model.backward(model.forward(params, batch, training=True))

    def torch_step(module, n):
        def step():
            torch.set_num_threads(n)
            module.zero_grad(set_to_none=True)
            _, loss = module(tb)
            loss.backward()

        return step

    steps = {"graphc": graphc_default, "graphc·1": graphc_step(1),
             "torch": torch_step(tm, threads), "torch·1": torch_step(tm, 1)}  # fmt: skip
    if with_compile:
        steps["compile"] = torch_step(torch.compile(tm), threads)
    return steps, dims


def measure(name: str, steps: int, with_compile: bool, block: int = 5) -> dict:
    fns, dims = peers(name, with_compile)
    for fn in fns.values():  # warm up: kernel compilation, torch.compile, allocator caches
        for _ in range(3):
            fn()
    times = {k: [] for k in fns}
    for _ in range(max(1, steps // block)):
        for key, fn in fns.items():
            fn()  # the first step after a switch pays for waking the other pool: not counted
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
    ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    ratios = {"torch": ms["graphc"] / ms["torch"], "torch·1": ms["graphc·1"] / ms["torch·1"],
              "self·1": ms["graphc"] / ms["graphc·1"]}  # fmt: skip
    if "compile" in ms:
        ratios["compile"] = ms["graphc"] / ms["compile"]
    return {"spec": name, "dims": dims, "ms": ms, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", nargs="*", default=WORKLOADS, help=f"default: {' '.join(WORKLOADS)}")
    ap.add_argument("--reference", action="store_true", help=f"the reference specs ({' '.join(REFERENCE)})")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per peer")
    ap.add_argument(
        "--no-compile", action="store_true", help="leave torch.compile out (it compiles for minutes)"
    )
    ap.add_argument("--busy", action="store_true", help="run beside one CPU-bound process")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    specs = REFERENCE if args.reference else args.specs
    load_before = load_load()
    with busy_neighbour(args.busy):
        rows = [measure(name, args.steps, not args.no_compile) for name in specs]
    head = {"torch": torch.__version__, "threads": default_threads(), "busy": args.busy,
            "load_before": load_before, "load_after": load_load()}  # fmt: skip
    if args.json:
        print(json.dumps({"setup": head, "rows": rows}, indent=2))
        return
    print(
        f"torch {head['torch']}, {head['threads']} threads by default; {args.steps} steps per peer "
        f"in alternating blocks, medians; {'one CPU-bound neighbour; ' if args.busy else ''}"
        f"load average {head['load_before']} → {head['load_after']}"
    )
    cols = [c for c in ("graphc", "graphc·1", "torch", "torch·1", "compile") if c in rows[0]["ms"]]
    ratio_cols = [("torch", "÷torch"), ("torch·1", "1÷1"), ("compile", "÷compile"), ("self·1", "÷self·1")]
    ratio_cols = [(k, h) for k, h in ratio_cols if k in rows[0]["ratios"]]
    print(
        f"{'spec':<17} {'dims':<11}"
        + "".join(f"{c + ' ms':>12}" for c in cols)
        + "".join(f"{h:>10}" for _, h in ratio_cols)
    )
    for r in rows:
        dims = ",".join(f"{k}={v}" for k, v in r["dims"].items())
        print(
            f"{r['spec']:<17} {dims:<11}"
            + "".join(f"{r['ms'][c]:>12.2f}" for c in cols)
            + "".join(f"{r['ratios'][k]:>9.2f}×" for k, _ in ratio_cols)
        )


if __name__ == "__main__":
    main()
