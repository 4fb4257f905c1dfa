"""Shape kernels: ``concat2`` (two inputs along one axis).

The other data-movement ops (flatten, reshape, transpose, permute, slice, split, concat of N
inputs, sum, mean, softmax along any axis) live in ``graphc.kernels.views`` as plain NumPy
functions with the same calling convention: NumPy already does them as views or one C copy,
so numba would add compile time and no speed. ``concat2`` stays an njit kernel for drivers
that want a fixed-arity kernel.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def _outer_inner(shape, axis):
    """Sizes of the dims before and after ``axis``: the array is then [outer, n, inner]."""
    outer = 1
    inner = 1
    for i in range(len(shape)):
        if i < axis:
            outer *= shape[i]
        elif i > axis:
            inner *= shape[i]
    return outer, inner


@numba.njit(cache=True)
def concat2_fwd(a, b, axis, out=None):
    ax = axis if axis >= 0 else axis + a.ndim
    if out is None:
        return (np.concatenate((a, b), axis=ax),)
    # numba's np.concatenate takes no `out`: the same two slice copies as the backward.
    outer, inner = _outer_inner(a.shape, ax)
    na = a.shape[ax]
    nb = b.shape[ax]
    o3 = out.reshape(outer, na + nb, inner)
    o3[:, :na, :] = a.reshape(outer, na, inner)
    o3[:, na:, :] = b.reshape(outer, nb, inner)
    return (out,)


@numba.njit(cache=True)
def concat2_bwd(g_out, a, b, axis, out, into_a=None, into_b=None):
    # View the cotangent as [outer, na + nb, inner] so the split is two plain slices.
    ax = axis if axis >= 0 else axis + a.ndim
    outer, inner = _outer_inner(a.shape, ax)
    na = a.shape[ax]
    nb = b.shape[ax]
    g3 = g_out.reshape(outer, na + nb, inner)
    if into_a is None:
        into_a = np.empty_like(a)
    if into_b is None:
        into_b = np.empty_like(b)
    ga = into_a
    gb = into_b
    ga.reshape(outer, na, inner)[:] = g3[:, :na, :]
    gb.reshape(outer, nb, inner)[:] = g3[:, na:, :]
    return ga, gb
