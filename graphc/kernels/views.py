"""Kernels for ops that only move data (and reductions), written over NumPy.

NumPy already does these as views or one copy in C, so a Numba version would add compile
time and no speed. They follow the kernel calling convention of this package: keyword
arguments, `<op>_fwd` returns a tuple of outputs, `<op>_bwd` a tuple of input gradients.
Multi-input (`concat`) and multi-output (`split`) ops take/return one tensor per element.

Destination passing (see ``graphc.kernels``): transpose, permute, slice, concat, sum, mean,
softmax and log_softmax forwards take ``out=``; the backwards of transpose, permute, slice,
split, sum, mean, softmax and log_softmax take ``into_x=``. In a backward the parameter
named ``out`` is, as everywhere, the forward's output value, not a destination. No
destination is taken by ``flatten``/``reshape`` (forward and backward return views that alias
their argument, with no copy to redirect), ``split_fwd`` (one output per piece) or
``concat_bwd`` (one gradient per input of the variadic port; its pieces are copies).
"""

from __future__ import annotations

import numpy as np

from graphc.kernels import elementwise


def flatten_fwd(x, start):
    return (x.reshape(x.shape[:start] + (-1,)),)


def flatten_bwd(g_out, x, start, out=None):
    return (g_out.reshape(x.shape),)


def reshape_fwd(x, shape):
    return (np.ascontiguousarray(x).reshape(shape),)


def reshape_bwd(g_out, x, shape, out=None):
    return (g_out.reshape(x.shape),)


def _into(dest, value):
    """``value`` as a fresh C-contiguous array, or copied into ``dest`` (returned) if given."""
    if dest is None:
        return np.ascontiguousarray(value)
    np.copyto(dest, value)
    return dest


def transpose_fwd(x, dim0, dim1, out=None):
    return (_into(out, np.swapaxes(x, dim0, dim1)),)


def transpose_bwd(g_out, x, dim0, dim1, out=None, into_x=None):
    return (_into(into_x, np.swapaxes(g_out, dim0, dim1)),)


def permute_fwd(x, dims, out=None):
    return (_into(out, x.transpose(dims)),)


def permute_bwd(g_out, x, dims, out=None, into_x=None):
    return (_into(into_x, g_out.transpose(np.argsort(dims))),)


def _index(ndim, axis, start, stop):
    idx = [slice(None)] * ndim
    idx[axis] = slice(start, stop)
    return tuple(idx)


def slice_fwd(x, axis, start, stop, out=None):
    return (_into(out, x[_index(x.ndim, axis, start, stop)]),)


def slice_bwd(g_out, x, axis, start, stop, out=None, into_x=None):
    if into_x is None:
        gx = np.zeros_like(x)
    else:
        gx = into_x
        gx.fill(0)
    gx[_index(x.ndim, axis, start, stop)] = g_out
    return (gx,)


def concat_fwd(xs, axis, out=None):
    return (np.concatenate(xs, axis=axis, out=out),)


def concat_bwd(g_out, xs, axis, out=None):
    cuts = np.cumsum([x.shape[axis] for x in xs])[:-1]
    return tuple(np.ascontiguousarray(g) for g in np.split(g_out, cuts, axis=axis))


def split_fwd(x, axis, sizes):
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(p) for p in np.split(x, cuts, axis=axis))


def split_bwd(x, axis, sizes, into_x=None, **cotangents):
    """Cotangents arrive as g_0, g_1, …; a piece nobody used contributes zeros."""
    pieces = []
    for i, n in enumerate(sizes):
        g = cotangents.get(f"g_{i}")
        if g is None:
            shape = list(x.shape)
            shape[axis] = n
            g = np.zeros(shape, x.dtype)
        pieces.append(g)
    return (np.concatenate(pieces, axis=axis, out=into_x),)


def _reduce_axes(x, axis):
    return None if axis is None else tuple(a % x.ndim for a in axis)


def _expand_back(g, x, axes, keepdims):
    if axes is None:
        return np.broadcast_to(g.reshape((1,) * x.ndim), x.shape)
    if not keepdims:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, x.shape)


def sum_fwd(x, axis, keepdims, out=None):
    if out is not None:
        np.sum(x, axis=_reduce_axes(x, axis), keepdims=keepdims, out=out)
        return (out,)
    out = x.sum(axis=_reduce_axes(x, axis), keepdims=keepdims)
    return (np.ascontiguousarray(out, dtype=x.dtype).reshape(np.shape(out)),)


def sum_bwd(g_out, x, axis, keepdims, out=None, into_x=None):
    axes = _reduce_axes(x, axis)
    return (_into(into_x, _expand_back(g_out, x, axes, keepdims)),)


def mean_fwd(x, axis, keepdims, out=None):
    if out is not None:
        np.mean(x, axis=_reduce_axes(x, axis), keepdims=keepdims, out=out)
        return (out,)
    out = x.mean(axis=_reduce_axes(x, axis), keepdims=keepdims)
    return (np.ascontiguousarray(out, dtype=x.dtype).reshape(np.shape(out)),)


def mean_bwd(g_out, x, axis, keepdims, out=None, into_x=None):
    axes = _reduce_axes(x, axis)
    count = x.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
    g = _expand_back(g_out, x, axes, keepdims)
    if into_x is not None:
        np.divide(g, x.dtype.type(count), out=into_x)
        return (into_x,)
    return (np.ascontiguousarray(g / x.dtype.type(count), dtype=x.dtype),)


def _along_last(kernel, dest_name, dest, x, axis, *rest):
    """Run a last-axis kernel along any axis by moving that axis last and back. ``dest``
    (passed to the kernel as ``dest_name`` when the axis is already last) receives the
    result if given."""
    if axis % x.ndim == x.ndim - 1:
        if dest is None:
            return kernel(x, *rest)[0]
        return kernel(x, *rest, **{dest_name: dest})[0]
    moved = [np.ascontiguousarray(np.moveaxis(a, axis, -1)) for a in (x, *rest)]
    return _into(dest, np.moveaxis(kernel(*moved)[0], -1, axis))


def softmax_fwd(x, axis, out=None):
    return (_along_last(elementwise.softmax_fwd, "out", out, x, axis),)


def softmax_bwd(g_out, x, axis, out, into_x=None):
    return (_along_last(elementwise.softmax_bwd, "into_x", into_x, g_out, axis, x, out),)


def log_softmax_fwd(x, axis, out=None):
    return (_along_last(elementwise.log_softmax_fwd, "out", out, x, axis),)


def log_softmax_bwd(g_out, x, axis, out, into_x=None):
    return (_along_last(elementwise.log_softmax_bwd, "into_x", into_x, g_out, axis, x, out),)
