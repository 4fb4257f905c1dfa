"""Kernels of the ops that make tensors: `param` (a learned tensor), `constant` (a literal) and
`expand` (repeat size-1 axes).

`param_fwd` copies the parameter into the op's output (a planned buffer), so nothing later in
the step can write into the parameter through an alias; its backward hands the cotangent to
the optimizer as a fresh array. `constant_fwd` fills its output from a flat tuple of values,
repeated when the tuple is shorter (one value fills the whole tensor); its backward has no
input and no parameter, so it returns nothing (autodiff never calls it: nothing flows into a
constant).
"""

import numba
import numpy as np
from numba.core import types
from numba.extending import overload


@numba.njit(cache=True)
def param_fwd(weight, out=None):
    if out is None:
        out = np.empty_like(weight)
    of = out.reshape(-1)
    wf = weight.reshape(-1)
    for i in range(wf.size):
        of[i] = wf[i]
    return (out,)


@numba.njit(cache=True)
def param_bwd(g_out, weight, out):
    return (g_out.copy(),)


def _destination(value, out):
    """`out`, or (without a destination, e.g. a test calling the kernel directly: there is no
    input whose dtype and shape to follow) the flat values as a new float64 array."""


@overload(_destination)
def _destination_typed(value, out):
    if isinstance(out, types.NoneType | types.Omitted):  # chosen per specialisation, at typing
        return lambda value, out: np.empty(len(value), dtype=np.float64)
    return lambda value, out: out


@numba.njit(cache=True)
def constant_fwd(value, out=None):
    dest = _destination(value, out)
    of = dest.reshape(-1)
    n = len(value)
    for i in range(of.size):
        of[i] = value[i % n]
    return (dest,)


@numba.njit(cache=True)
def constant_bwd(g_out, value, out):
    return ()


# --------------------------------------------------------------------------- expand
@numba.njit(cache=True)
def _expand_strides(x, shape):
    """Per output axis, the stride (in elements) of the input axis it reads, 0 where the input
    is broadcast (missing leading axis or size 1)."""
    n = len(shape)
    lead = n - x.ndim
    st = np.zeros(n, dtype=np.int64)
    s = 1
    for i in range(n - 1, lead - 1, -1):
        d = x.shape[i - lead]
        if d != 1:
            st[i] = s
        s *= d
    return st


@numba.njit(cache=True)
def _expand_index(k, shape, st):
    """The input's flat index read by the output's flat index k."""
    rem, src = k, 0
    for i in range(len(shape) - 1, -1, -1):
        src += (rem % shape[i]) * st[i]
        rem //= shape[i]
    return src


@numba.njit(cache=True)
def expand_fwd(x, shape, out=None):
    # PyTorch's Tensor.expand: size-1 (or missing leading) axes repeat.
    st = _expand_strides(x, shape)
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    of = out.reshape(-1)
    xf = x.reshape(-1)
    for k in range(of.size):
        of[k] = xf[_expand_index(k, shape, st)]
    return (out,)


@numba.njit(cache=True)
def expand_bwd(g_out, x, shape, out, into_x=None):
    # Sum the cotangent over the repeated axes.
    st = _expand_strides(x, shape)
    acc = np.zeros(x.size, dtype=np.float64)
    gf = g_out.reshape(-1)
    for k in range(gf.size):
        acc[_expand_index(k, shape, st)] += gf[k]
    if into_x is None:
        into_x = np.empty_like(x)
    gxf = into_x.reshape(-1)
    for i in range(acc.size):
        gxf[i] = acc[i]
    return (into_x,)
