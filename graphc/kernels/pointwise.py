"""Kernels generated from pointwise rules: scalar math for them, and the single-op kernels.

Every elementwise op with a `Pointwise` rule (graphc/ops/elementwise.py) runs generated code:
a fused group of several ops (graphc.compiler.fuse) or of one (the `<op>_fwd`/`<op>_bwd` that
ops bound to `Kernel("pointwise")` call, looked up here by name). A generated module
(graphc.compiler.kernelgen) has a float32 and a float64 copy of each loop, calling the
scalar functions below by dtype: `<fn>32` are the SIMD-friendly pure-float32 forms of
graphc.kernels.vmath (no libm call, so the loop vectorises), `<fn>64` are libm, where
gradient checks need the accuracy. All are inlined at Numba IR level (a call per element
would stop vectorisation). Why two copies rather than one loop over dtype-dispatching stubs
(`numba.extending.overload`): an overload inlined at IR level that itself inlines the vmath
cores, used twice in one loop, trips Numba's SSA checks (NumbaIRAssumptionWarning).

The helpers are decorated with `_inline`, not `@numba.njit(...)` at the start of a line, so
graphc.kernels._cache leaves this file out of the library's source digest: no library kernel
calls them, and a generated module's cache key includes this file itself
(graphc.compiler.cache), so editing it never leaves stale machine code and never throws away
the library's Numba cache.
"""

from __future__ import annotations

import inspect
import math
from functools import cache

import numba
import numpy as np

from graphc.kernels.vmath import _INV_SQRT_2PI32, _cdf32, _exp32, _sigmoid32, _tanh32

_inline = numba.njit(inline="always", error_model="numpy")
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_ONE32 = np.float32(1.0)

# ----------------------------------------------------------------------------- float32
exp32, tanh32, sigmoid32 = _exp32, _tanh32, _sigmoid32


@_inline
def log32(x):
    return math.log(x)


@_inline
def sqrt32(x):
    return math.sqrt(x)


@_inline
def rsqrt32(x):
    return _ONE32 / math.sqrt(x)


@_inline
def cdf32(x):
    """Φ(x), the standard normal CDF."""
    return _cdf32(x)[0]


@_inline
def pdf32(x):
    """φ(x) = Φ'(x): _cdf32's tail already holds exp(-x²/2) (LLVM merges the two copies when
    a loop asks for both)."""
    return _cdf32(x)[1] * _INV_SQRT_2PI32


# ----------------------------------------------------------------------------- float64
@_inline
def exp64(x):
    return math.exp(x)


@_inline
def log64(x):
    return math.log(x)


@_inline
def tanh64(x):
    return math.tanh(x)


@_inline
def sigmoid64(x):
    if x >= 0:  # no overflow on either side
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_inline
def sqrt64(x):
    return math.sqrt(x)


@_inline
def rsqrt64(x):
    return 1.0 / math.sqrt(x)


@_inline
def cdf64(x):
    return 0.5 * (1.0 + math.erf(x * _INV_SQRT2))


@_inline
def pdf64(x):
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


# ----------------------------------------------------------------------------- both
@_inline
def fmax(a, b):
    """max(a, b), NaN when `a` is NaN."""
    return b if a < b else a


@_inline
def fmin(a, b):
    """min(a, b), NaN when `a` is NaN."""
    return b if a > b else a


@_inline
def rowsum(row):
    """The float64 sum of `row` with eight independent partial sums: a single running sum is a
    chain of dependent adds (4 cycles each), which LLVM may not reorder into SIMD lanes."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n = row.size
    j = 0
    while j + 8 <= n:
        s0 += row[j]
        s1 += row[j + 1]
        s2 += row[j + 2]
        s3 += row[j + 3]
        s4 += row[j + 4]
        s5 += row[j + 5]
        s6 += row[j + 6]
        s7 += row[j + 7]
        j += 8
    while j < n:
        s0 += row[j]
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


# ----------------------------------------------------------------------------- single-op kernels
def __getattr__(name: str):
    """`<op>_fwd` / `<op>_bwd` for an op with a pointwise rule: its fused group of one."""
    op, _, kind = name.rpartition("_")
    if kind in ("fwd", "bwd") and op:
        from graphc.ops import OPS

        if op in OPS and OPS[op].pointwise is not None:
            return _single(op)[0 if kind == "fwd" else 1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _single(op: str):
    """The library kernels of `op`, following the calling convention of graphc.kernels: the
    forward takes the ports, the attributes and `out=`; the backward the cotangent `g_out`, the
    ports, the attributes, `out` and `into_<port>=`, and returns one gradient per port. Any
    broadcast of the ports works: the kernel for each broadcast pattern is generated on first
    use (graphc.compiler.kernelgen) and cached on disk like a fused group's."""
    from graphc.ops import OPS

    rec = OPS[op]
    ports = [p.name for p in rec.inputs]
    attrs = list(rec.kernel.attrs)
    diff = [p for p in ports if p not in rec.kernel.nondiff]

    names = (*ports, *attrs)
    saved = [f"saved{i}" for i in range(rec.kernel.saved)]

    n_ports, n_names = len(ports), len(names)
    from graphc.compiler import kernelgen  # the generator: imported when a kernel is first asked for

    single_op, single_op_vjp = kernelgen.single_op, kernelgen.single_op_vjp

    def fwd(*args, out=None, **kw):
        if kw:
            args = args + tuple(kw[n] for n in names[len(args):])
        return single_op(op, args[:n_ports], args[n_ports:], out)

    into_names = [f"into_{p}" for p in ports]
    bwd_names = ("g_out", *names, *saved)

    def bwd(*args, out=None, **kw):
        into = [kw.pop(n, None) for n in into_names]
        if kw:
            args = args + tuple(kw[n] for n in bwd_names[len(args):])
        return single_op_vjp(op, args[0], args[1: 1 + n_ports], args[1 + n_ports: 1 + n_names],
                             args[1 + n_names:], out, into)

    if n_ports == 1 and not attrs and rec.kernel.saved <= 1:  # activations: one flat loop, called directly
        fwd, bwd = _unary(op, rec.kernel.saved)

    P = inspect.Parameter
    fwd.__signature__ = inspect.Signature(
        [P(n, P.POSITIONAL_OR_KEYWORD) for n in names] + [P("out", P.KEYWORD_ONLY, default=None)])
    bwd.__signature__ = inspect.Signature(
        [P(n, P.POSITIONAL_OR_KEYWORD) for n in ("g_out", *names, *saved)]
        + [P("out", P.KEYWORD_ONLY, default=None)]
        + [P(f"into_{p}", P.KEYWORD_ONLY, default=None) for p in diff])
    fwd.__name__, bwd.__name__ = f"{op}_fwd", f"{op}_bwd"
    fwd.__qualname__, bwd.__qualname__ = fwd.__name__, bwd.__name__
    fwd.__doc__ = f"`{op}` forward, generated from its pointwise rule `{rec.pointwise.out}`."
    bwd.__doc__ = f"`{op}` VJP, generated from its pointwise rule ({dict(rec.pointwise.grads)})."
    return fwd, bwd


def _unary(op: str, saved: int):
    """The kernels of a one-port op without attributes: its group of one is the same flat loop
    for any shape, so the wrappers call the njit loops directly (a call costs ~1 µs, not the
    general wrapper's ~3: a quarter of the MLP's step is such calls)."""
    from graphc.compiler.kernelgen import _single_plan

    plan = _single_plan(op, ((1,),), 0)
    mod = plan.mod
    fwd32, fwd64 = mod._fwd32, mod._fwd64
    has_bwd = hasattr(mod, "_bwd32")
    bwd32, bwd64 = (mod._bwd32, mod._bwd64) if has_bwd else (None, None)
    reads_x, reads_y = 0 in plan.reads_in, plan.reads_out
    f32 = np.dtype(np.float32)

    if saved:
        def fwd(x, out=None):
            if out is None:
                out = np.empty_like(x)
            jac = np.empty_like(x)
            (fwd32 if x.dtype == f32 else fwd64)(x.reshape(-1), out.reshape(-1), jac.reshape(-1))
            return out, jac

        def bwd(g_out, x, saved0, out=None, into_x=None):
            if into_x is None:
                into_x = np.empty_like(x)
            (bwd32 if x.dtype == f32 else bwd64)(g_out.reshape(-1), saved0.reshape(-1), into_x.reshape(-1))
            return (into_x,)

        return fwd, bwd

    def fwd(x, out=None):  # noqa: F811 - one of the two pairs is returned
        if out is None:
            out = np.empty_like(x)
        (fwd32 if x.dtype == f32 else fwd64)(x.reshape(-1), out.reshape(-1))
        return (out,)

    def bwd(g_out, x, out=None, into_x=None):  # noqa: F811
        if into_x is None:
            into_x = np.empty_like(x)
        if reads_y and out is None:
            out = fwd(x)[0]
        reads = ([x.reshape(-1)] if reads_x else []) + ([out.reshape(-1)] if reads_y else [])
        (bwd32 if x.dtype == f32 else bwd64)(g_out.reshape(-1), *reads, into_x.reshape(-1))
        return (into_x,)

    return fwd, bwd
