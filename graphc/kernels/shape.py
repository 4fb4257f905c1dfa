"""Shape kernels.

Only ``concat2`` is a kernel here. The other shape ops are pure data movement that the
generated driver does with NumPy, because NumPy already does them as views or single copies:

- flatten / reshape: ``x.reshape(shape)``; backward ``g.reshape(x.shape)``.
- transpose / permute: ``np.ascontiguousarray(x.transpose(perm))``; backward with the
  inverse permutation ``np.argsort(perm)``.
- slice: ``np.ascontiguousarray(x[idx])``; backward ``gx = zeros_like(x); gx[idx] = g``.
- split: slices along one axis; backward concatenates the cotangents (``np.concatenate``).
- sum / mean over axes: ``x.sum(axes, keepdims=...)``; backward broadcasts ``g`` back to
  ``x.shape`` (divided by the reduced count for mean).
- concat of N > 2 inputs: the driver chains ``concat2`` (or calls ``np.concatenate`` and
  splits the cotangent with ``concat2_bwd``-style slicing).
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
def concat2_fwd(a, b, axis):
    return (np.concatenate((a, b), axis=axis if axis >= 0 else axis + a.ndim),)


@numba.njit(cache=True)
def concat2_bwd(g_out, a, b, axis, out):
    # View the cotangent as [outer, na + nb, inner] so the split is two plain slices.
    ax = axis if axis >= 0 else axis + a.ndim
    outer, inner = _outer_inner(a.shape, ax)
    na = a.shape[ax]
    nb = b.shape[ax]
    g3 = g_out.reshape(outer, na + nb, inner)
    ga = np.empty_like(a)
    gb = np.empty_like(b)
    ga.reshape(outer, na, inner)[:] = g3[:, :na, :]
    gb.reshape(outer, nb, inner)[:] = g3[:, na:, :]
    return ga, gb
