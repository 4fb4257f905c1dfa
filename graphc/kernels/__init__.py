"""graphc's numerical kernel library: forward and backward (VJP) kernels for every op.

Calling convention (the generated driver follows it exactly; all arguments by keyword):

- ``<op>_fwd(<inputs>, <params>, <buffers>, <attrs>)`` returns a tuple
  ``(outputs..., saved...)``: first the op's outputs, then ``n_saved`` tensors for the
  backward. Always a tuple, even with one element.
- ``<op>_bwd(g_<output>..., <inputs>, <params>, <buffers>, <attrs>, saved0, saved1, ...,
  <output>...)`` returns one gradient per input port, then one per param, in table order.
  Every backward accepts the forward outputs by name (``out=``), so the driver can always
  pass them; buffers get no gradient.
- Non-differentiable inputs (``nondiff_inputs``) and absent optional inputs/params (passed
  as zero-size arrays, ``x.size == 0``) get a zero-size float array in their gradient slot.
- dtype follows the input (float32 and float64 both work); integer index inputs are int64.
  Outputs are C-contiguous; inputs are assumed C-contiguous.
- Losses return shape (1,).

Destination passing (what the buffer plan, ``graphc.compiler.plan``, relies on):

- Every ``<op>_fwd`` takes ``out=None``. Given an array (C-contiguous, the output's shape and
  dtype), the kernel writes the op's output into it and returns that very object first.
  Saved tensors and scratch stay the kernel's own allocations.
- Every ``<op>_bwd`` takes ``into_<port>=None`` for each differentiable input port (not the
  ``nondiff_inputs``). Given an array, the kernel overwrites it with that input's whole
  gradient (never accumulates) and returns that very object in the port's slot; for an absent
  optional input the caller passes a zero-size array, returned as it is. Parameter gradients
  stay kernel-allocated: they leave the step for the optimizer.
- A destination never overlaps any other argument of the same call (the plan guarantees it).
- ``None`` keeps the allocating behaviour; numba compiles the two forms as two
  specialisations and prunes the ``is None`` branch in each.

Most kernels are ``numba.njit(cache=True)`` dispatchers (``KernelPair.jit``). The exceptions
are plain Python over NumPy, because that is as fast and much simpler:
``add``/``sub``/``mul``/``matmul`` (numpy broadcasting + BLAS), and ``rnn``/``lstm``/``gru``
(thin wrappers over njit per-direction cores, since ``last`` changes the output's rank).

Importing this package raises glibc's malloc mmap/trim thresholds (see ``_alloc``; opt out
with ``GRAPHC_NO_MALLOPT=1``): without it every MiB-sized temporary is page-faulted in afresh.

Shape ops other than ``concat2`` (flatten, reshape, transpose, permute, slice, split, N-ary
concat, sum, mean, softmax along any axis) are plain NumPy functions in
``graphc.kernels.views`` and are not in ``KERNELS``.

Float32 transcendental functions (exp, sigmoid, tanh, the GELU normal CDF) use the SIMD
forms in ``graphc.kernels.vmath`` (relative error <= 5e-7, bounds tested); float64 uses libm.
``graphc.kernels._cache`` drops numba's cache files when any njit source changes (a cached
kernel embeds the helpers it calls from other modules, which numba does not track).
``python -m graphc.kernels.bench [--torch] [--threads 1]`` times fwd+bwd per op.
``set_blas_threads(n)`` sets the OpenBLAS thread count at run time (see ``_blas`` for why a
small model may want 1).
"""

from collections.abc import Callable
from dataclasses import dataclass

from graphc.kernels import (
    _alloc,
    _cache,
    attention,
    conv,
    elementwise,
    linalg,
    loss,
    norm,
    pool,
    recurrent,
    sampling,
    shape,
)
from graphc.kernels._blas import get_blas_threads, set_blas_threads

# Kernel temporaries are MiB-sized; keep glibc from mmapping them afresh on every call.
_alloc.tune_allocator()
# Cached kernels inline helpers from sibling modules; drop the cache when any source changed.
_cache.drop_stale_cache(elementwise.relu_fwd)


@dataclass(frozen=True)
class KernelPair:
    fwd: Callable
    bwd: Callable
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    n_saved: int
    nondiff_inputs: tuple[str, ...]
    attrs: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()  # passed to fwd and bwd, updated in place, no gradient
    jit: bool = True  # False: plain Python over NumPy (see module docstring)


def _pair(module, name, inputs, params=(), attrs=(), *, n_saved=0, nondiff=(), buffers=(),
          jit=True) -> KernelPair:  # fmt: skip
    return KernelPair(
        fwd=getattr(module, f"{name}_fwd"),
        bwd=getattr(module, f"{name}_bwd"),
        outputs=("out",),
        inputs=tuple(inputs),
        params=tuple(params),
        n_saved=n_saved,
        nondiff_inputs=tuple(nondiff),
        attrs=tuple(attrs),
        buffers=tuple(buffers),
        jit=jit,
    )


_RNN_PARAMS = tuple(f"{w}_{d}" for d in (0, 1) for w in ("w_ih", "w_hh", "b_ih", "b_hh"))
_CONV2D_ATTRS = ("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups", "has_bias")
_POOL_ATTRS = ("kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w")
_ATTN_PARAMS = ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")

KERNELS: dict[str, KernelPair] = {
    # linalg
    "linear": _pair(linalg, "linear", ("x",), ("weight", "bias"), ("has_bias",)),
    "matmul": _pair(linalg, "matmul", ("a", "b"), jit=False),
    "embedding": _pair(linalg, "embedding", ("ids",), ("weight",), ("padding_idx",), nondiff=("ids",)),
    "positional_encoding": _pair(linalg, "positional_encoding", ("x",), ("weight",), ("learned",)),
    # conv
    "conv1d": _pair(
        conv,
        "conv1d",
        ("x",),
        ("weight", "bias"),
        ("stride", "padding", "dilation", "groups", "has_bias"),
    ),
    "conv2d": _pair(conv, "conv2d", ("x",), ("weight", "bias"), _CONV2D_ATTRS),
    "conv_transpose2d": _pair(
        conv,
        "conv_transpose2d",
        ("x",),
        ("weight", "bias"),
        (
            "stride_h",
            "stride_w",
            "pad_h",
            "pad_w",
            "out_pad_h",
            "out_pad_w",
            "dil_h",
            "dil_w",
            "groups",
            "has_bias",
        ),
    ),
    # pool
    "maxpool2d": _pair(pool, "maxpool2d", ("x",), (), _POOL_ATTRS, n_saved=1),
    "avgpool2d": _pair(pool, "avgpool2d", ("x",), (), _POOL_ATTRS),
    "global_avgpool": _pair(pool, "global_avgpool", ("x",)),
    "upsample": _pair(pool, "upsample", ("x",), (), ("scale",)),
    # sampling (spatial transformer)
    "affine_grid": _pair(sampling, "affine_grid", ("theta",), (), ("size", "align_corners")),
    "grid_sample": _pair(sampling, "grid_sample", ("x", "grid"), (), ("align_corners",)),
    # shape
    "concat2": _pair(shape, "concat2", ("a", "b"), (), ("axis",)),
    # elementwise
    "add": _pair(elementwise, "add", ("a", "b"), jit=False),
    "sub": _pair(elementwise, "sub", ("a", "b"), jit=False),
    "mul": _pair(elementwise, "mul", ("a", "b"), jit=False),
    "relu": _pair(elementwise, "relu", ("x",)),
    "gelu": _pair(elementwise, "gelu", ("x",), n_saved=1),
    "tanh": _pair(elementwise, "tanh", ("x",)),
    "sigmoid": _pair(elementwise, "sigmoid", ("x",)),
    "softmax": _pair(elementwise, "softmax", ("x",)),
    "log_softmax": _pair(elementwise, "log_softmax", ("x",)),
    "dropout": _pair(elementwise, "dropout", ("x", "u"), (), ("p", "training"), nondiff=("u",)),
    # norm
    "layernorm": _pair(norm, "layernorm", ("x",), ("weight", "bias"), ("eps", "affine"), n_saved=2),
    "add_norm": _pair(norm, "add_norm", ("x", "y"), ("weight", "bias"), ("eps",), n_saved=2),
    "batchnorm": _pair(
        norm,
        "batchnorm",
        ("x",),
        ("weight", "bias"),
        ("eps", "momentum", "training"),
        n_saved=2,
        buffers=("running_mean", "running_var"),
    ),
    # attention
    "attention": _pair(
        attention,
        "attention",
        ("q", "kv", "key_padding_mask"),
        _ATTN_PARAMS,
        ("heads", "causal", "has_bias"),
        n_saved=5,
        nondiff=("key_padding_mask",),
    ),
    # recurrent
    "rnn": _pair(
        recurrent,
        "rnn",
        ("x",),
        _RNN_PARAMS,
        ("hidden", "bidirectional", "last", "nonlinearity_tanh"),
        n_saved=1,
        jit=False,
    ),
    "lstm": _pair(
        recurrent,
        "lstm",
        ("x",),
        _RNN_PARAMS,
        ("hidden", "bidirectional", "last"),
        n_saved=3,
        jit=False,
    ),
    "gru": _pair(
        recurrent,
        "gru",
        ("x",),
        _RNN_PARAMS,
        ("hidden", "bidirectional", "last"),
        n_saved=3,
        jit=False,
    ),
    # loss
    "cross_entropy": _pair(
        loss,
        "cross_entropy",
        ("logits", "target", "mask"),
        (),
        ("ignore_index", "label_smoothing"),
        n_saved=1,
        nondiff=("target", "mask"),
    ),
    "bce_with_logits": _pair(loss, "bce_with_logits", ("logits", "target"), nondiff=("target",)),
    "mse": _pair(loss, "mse", ("pred", "target")),
    "hinge": _pair(loss, "hinge", ("scores", "target"), (), ("margin",), nondiff=("target",)),
    "kl_div": _pair(loss, "kl_div", ("student", "teacher"), (), ("temperature",)),
}

__all__ = ["KERNELS", "KernelPair", "get_blas_threads", "set_blas_threads"]
