"""Step time (forward + backward) of graphc vs PyTorch eager on the CPU, per reference spec.

Both run the same architecture on the same batch in one process, alternating in short blocks
of steps so that whatever else the machine is doing hits both alike; the ratio of medians is
the number to quote.

    python benchmarks/compare_torch.py [--steps 40] [--specs transformer cnn] [--threads 1]

By default each side uses its own default threading (graphc: one BLAS thread, see
graphc/compiler/__init__.py; torch: one thread per core); `--threads N` gives both N.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import graphc  # noqa: E402
from benchmarks.torch_models import by_name, sliced, torch_model  # noqa: E402
from graphc.compiler.checks import synthetic_batch  # noqa: E402


def sizes(model) -> dict[str, int]:
    train = model.train or {}
    data = train.get("data") or {}
    dims = {"B": int(train.get("batch", 32))}
    if data.get("task") in ("reverse_digits", "sort_digits"):
        dims["T"] = 2 * int(data.get("length", 8))
    elif "length" in data:
        dims["T"] = int(data["length"])
    dims.setdefault("T", 16)
    return dims


def measure(name: str, steps: int) -> dict:
    model = graphc.compile(ROOT / "specs" / f"{name}.yaml")
    params = model.init_params(0)
    dims = sizes(model)
    batch = synthetic_batch(model, dims)
    tm = torch_model(name, model).float()
    with torch.no_grad():  # the same weights, so both do exactly the same arithmetic
        for k, ref in by_name(tm).items():
            tensor, rows = sliced(ref)
            tensor[rows].copy_(torch.from_numpy(params[k]))
    tb = {k: torch.from_numpy(v if v.dtype.kind in "iu" else v.astype(np.float32))
          for k, v in batch.items()}

    def graphc_step():
        model.backward(model.forward(params, batch, training=True))

    def torch_step():
        tm.zero_grad(set_to_none=True)
        _, loss = tm(tb)
        loss.backward()

    for _ in range(3):  # warm up: kernel compilation / caches, torch's allocator
        graphc_step()
        torch_step()
    ours, theirs = [], []
    block = 5  # alternate in short blocks: interleaving single steps makes the two thread
    # pools (torch's OpenMP, the BLAS under Numba) spin-wait against each other
    for _ in range(max(1, steps // block)):
        for fn, out in ((graphc_step, ours), (torch_step, theirs)):
            fn()  # the first step after a switch pays for waking the other pool: not counted
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    g, t = float(np.median(ours)), float(np.median(theirs))
    return {"spec": name, "dims": dims, "graphc_ms": g * 1e3, "torch_ms": t * 1e3, "ratio": g / t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--specs", nargs="*", default=["transformer", "cnn", "lstm", "mlp"])
    ap.add_argument("--threads", type=int, help="threads for both graphc's BLAS and torch")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        from graphc.kernels import set_blas_threads

        set_blas_threads(args.threads)
        torch.set_num_threads(args.threads)
    rows = [measure(name, args.steps) for name in args.specs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    from graphc.kernels import get_blas_threads

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), graphc BLAS threads "
          f"{max(get_blas_threads(), default='?')}, "
          f"{args.steps} steps each in alternating blocks, medians")
    print(f"{'spec':<12} {'dims':<14} {'graphc ms':>10} {'torch ms':>10} {'ratio':>7}")
    for r in rows:
        dims = ",".join(f"{k}={v}" for k, v in r["dims"].items())
        print(f"{r['spec']:<12} {dims:<14} {r['graphc_ms']:>10.2f} {r['torch_ms']:>10.2f} "
              f"{r['ratio']:>6.2f}×")


if __name__ == "__main__":
    main()
