"""Tier 4: the destination convention the buffer plan relies on (graphc/kernels/__init__.py).

Every row whose kernels take destinations is run in both dtypes twice: once with every
destination (`out=`, `into_<port>=`) filled with NaN, once filled with a finite value. Each
destination must be the very object returned in its slot and be wholly overwritten (no NaN
left, the same result whatever it held before: never read, never accumulated into);
the arguments must come out unchanged (buffers aside) and parameter gradients must be fresh
arrays (they leave the step), sharing memory with no argument."""

import zlib

import numpy as np
import pytest

from tests.op_cases import ROWS, case

from .harness import Run, grad_names, takes

FILLS = (np.nan, 1e3)


def _writes_into(r) -> bool:
    k = case(r).op.kernel
    return takes(k.fwd, "out") or any(takes(k.bwd, f"into_{p}") for p in k.inputs)


def _arrays(args):
    return [x for v in args.values() for x in (v if isinstance(v, list) else [v]) if isinstance(x, np.ndarray)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("r", [r for r in ROWS if _writes_into(r)], ids=lambda r: r.key)
def test_kernel_writes_into_destinations(r, dtype):
    c = case(r)
    run = Run(c, dtype)
    k = run.op.kernel
    cot = None
    results = []
    for fill in FILLS:
        args = run.args()
        before = {n: v.copy() for n, v in args.items() if isinstance(v, np.ndarray) and n not in k.buffers}
        outs, saved, dest = run.forward(args, fill=fill)
        if dest is not None:
            assert outs["out"] is dest, f"{r.key}: the forward did not return its `out` destination"
            assert not np.isnan(dest).any(), f"{r.key}: `out` not wholly written"
        if cot is None:
            cot = run.cotangents(np.random.default_rng(zlib.crc32(f"dest/{r.key}".encode())), outs)
        bwd_args = run.args()
        grads, into = run.backward(bwd_args, outs, saved, cot, fill=fill)
        for port, d in into.items():
            assert grads[port] is d, f"{r.key}: the backward did not return `into_{port}`"
            assert not np.isnan(d).any(), f"{r.key}: `into_{port}` not wholly written"
        for name in k.params:
            g = grads[name]
            assert not any(np.shares_memory(g, a) for a in _arrays(bwd_args) + list(into.values())
                           if a.size), f"{r.key}: the gradient of parameter `{name}` aliases an argument"
        for name, v in before.items():
            np.testing.assert_array_equal(args[name], v, err_msg=f"{r.key}: the forward changed `{name}`")
            np.testing.assert_array_equal(bwd_args[name], v, err_msg=f"{r.key}: the backward changed `{name}`")
        results.append(({**outs, **{f"saved{i}": s for i, s in enumerate(saved)}}, grads))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for name in outs_a:
        np.testing.assert_array_equal(outs_b[name], outs_a[name], err_msg=f"{r.key}: {name} depends on what `out` held")
    for name in grad_names(run.op, args):
        np.testing.assert_array_equal(grads_b[name], grads_a[name],
                                      err_msg=f"{r.key}: gradient {name} depends on what its destination held")
