"""graphc's numerical kernel library: forward and backward (VJP) kernels for every op.

Calling convention (the generated driver follows it exactly; all arguments by keyword):

- ``<op>_fwd(<inputs>, <params>, <buffers>, <attrs>)`` returns a tuple
  ``(outputs..., saved...)``: first the op's outputs, then ``n_saved`` tensors for the
  backward. Always a tuple, even with one element.
- ``<op>_bwd(g_<output>..., <inputs>, <params>, <buffers>, <attrs>, saved0, saved1, ...,
  <output>...)`` returns one gradient per input port, then one per param, in table order.
  Every backward accepts the forward outputs by name (``out=``), so the driver can always
  pass them; buffers get no gradient.
- Non-differentiable inputs and absent optional inputs/params (passed
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
- A gradient nobody needs (an input that needs no gradient, like a CNN's image batch): if the
  op's ``Kernel.skips`` names the port, the caller passes a zero-size array of the input's
  rank (one specialisation with the real destinations), and the kernel leaves that gradient
  uncomputed and returns the array as it is; otherwise it passes a scratch buffer.
- A destination never overlaps any other argument of the same call (the plan guarantees it).
- ``None`` keeps the allocating behaviour; numba compiles the two forms as two
  specialisations and prunes the ``is None`` branch in each.

Most kernels are ``numba.njit(cache=True)`` dispatchers (``KernelPair.jit``). The exceptions
are plain Python over NumPy, because that is as fast and much simpler: ``matmul`` (numpy
broadcasting + BLAS), and ``rnn``/``lstm``/``gru`` (thin wrappers over njit per-direction
cores, since ``last`` changes the output's rank). The ops with a pointwise rule (add, sub,
mul, relu, gelu, tanh, sigmoid, …) run kernels generated from their rule
(``graphc.kernels.pointwise``: a Python wrapper per broadcast pattern over generated njit loops).

Importing this package raises glibc's malloc mmap/trim thresholds (see ``_alloc``; opt out
with ``GRAPHC_NO_MALLOPT=1``): without it every MiB-sized temporary is page-faulted in afresh.

Shape ops (flatten, reshape, transpose, permute, slice, split, concat, sum, mean, softmax
along any axis) are plain NumPy functions in ``graphc.kernels.views``: NumPy already does them
as views or one C copy, so Numba would add compile time and no speed.

Which kernel an op calls, with which arguments, is part of the op's record (``Kernel`` in
``graphc.ops.registry``): the op's ports in order, its noise input, parameters, buffers and
lowered attributes. Non-differentiable inputs are the ports marked so there.

Float32 transcendental functions (exp, sigmoid, tanh, the GELU normal CDF) use the SIMD
forms in ``graphc.kernels.vmath`` (relative error <= 5e-7, bounds tested); float64 uses libm.
``graphc.kernels._codegen`` gives a helper compiled for its caller only Numba's cheap pass (the
caller's -O3 optimises it inlined), machine code from an -O0 engine and no C-ABI wrapper. ``graphc.kernels._cache`` drops numba's cache files when any
njit source changes (a cached kernel embeds the helpers it calls from other modules, which numba
does not track).
``python -m graphc.kernels.bench [--torch] [--threads 1]`` times fwd+bwd per op.
``set_blas_threads(n)`` sets the OpenBLAS thread count at run time (see ``_blas`` for why a
small model may want 1).
"""

from graphc.kernels import _alloc, _cache, _codegen, elementwise
from graphc.kernels._blas import get_blas_threads, set_blas_threads

# Helpers are optimised inlined in their callers, not again on their own (~13% of a cold compile).
_codegen.install()

# Kernel temporaries are MiB-sized; keep glibc from mmapping them afresh on every call.
_alloc.tune_allocator()
# Cached kernels inline helpers from sibling modules; drop the cache when any source changed.
_cache.drop_stale_cache(elementwise.softmax_fwd)

__all__ = ["get_blas_threads", "set_blas_threads"]
