"""What the recurrent cells (`recurrent_rnn`, `recurrent_lstm`, `recurrent_gru`) share: the
split of the batch over threads, the input's products for all steps at once, and the weight
gradients from all steps' gate gradients at once.

Only the h-side product ([rows, H] x [H, G] per step) depends on the step before; the x side
and every weight gradient do not. So, as cuDNN and PyTorch do, the forward multiplies the
whole input by W_ih^T (biases folded in) before the recurrence, one product of B*T rows
(`input_products`: RNN, GRU; the LSTM makes each step's x side in its loop, where it stays in
cache), and the backward keeps the pre-activation gradients of every step [rows, T, G] and
after the recurrence makes the input gradient, dW_ih, dW_hh and the bias gradients from them
(`block_grads`: products over all B*T rows, in chunks). In between, each step runs one
[rows, H] x [H, G] product.

Both sides are split into blocks of batch rows, one per thread, in one `run_blocks` region
(`graphc.kernels.parallel`; a cell's block functions take ``(i, n_blocks, ...)``): rows never
interact, so each thread runs the whole time loop for its own rows (a region costs a few
microseconds to start; a step of the h128 workload about 20), and its products on
`tile_gemm.mm` stay on that thread. The blocks' shares of the weight gradients are added
after the region, in block order.
"""

import numba
import numpy as np

from graphc.kernels.tile_gemm import _KC, mm, mm_bias

_CHUNK_BYTES = 512 * 1024  # of the gate gradients per chunk of rows in `block_grads` (in L2)
MIN_ROWS = 4  # batch rows per thread's block (one tile of `mm`)

# The gate loops: constants typed like the data (a float64 literal would turn float32 math
# into float64 at half the SIMD width), no branches inside, a*b + c contracted to one FMA.
GATE_LOOP = dict(cache=True, error_model="numpy", fastmath={"contract"})


@numba.njit(cache=True)
def bias_vector(b_ih, b_hh, g, n_fold, scale_from, scale_to):
    """[g]: b_ih plus the first ``n_fold`` entries of b_hh (GRU's b_hn cannot be folded: r
    multiplies it; either bias may be absent, zero-size), entries scale_from:scale_to doubled
    (LSTM's g gate, see `recurrent_lstm`)."""
    out = np.zeros(g, dtype=b_ih.dtype)
    for j in range(g):
        v = b_ih[j] if b_ih.size > 0 else out[j]
        if j < n_fold and b_hh.size > 0:
            v += b_hh[j]
        if scale_from <= j < scale_to:
            v *= 2.0
        out[j] = v
    return out


@numba.njit(cache=True)
def input_products(x, wt_ih, bias, r0, r1):
    """xw [rows, T, G] = x[r0:r1] @ wt_ih + bias: the x side of every step's pre-activations
    of batch rows r0:r1, one product of rows*T rows (x is C-contiguous [B, T, I])."""
    b_n, t_len, n_in = x.shape
    nb, g = r1 - r0, wt_ih.shape[1]
    xw = np.empty((nb, t_len, g), dtype=x.dtype)
    rows = x.reshape(b_n * t_len, n_in)[r0 * t_len : r1 * t_len]
    mm_bias(rows, wt_ih, xw.reshape(nb * t_len, g), bias)
    return xw


@numba.njit(cache=True)
def start_states(hs, r0, r1, reverse):
    """hp [rows, T, H]: the state each step of batch rows r0:r1 started from (the step before
    in processing order; zero at the first), batch-major like the gate gradients."""
    t_len, _, hd = hs.shape
    hp = np.empty((r1 - r0, t_len, hd), dtype=hs.dtype)
    for b in range(r1 - r0):
        for t in range(t_len):
            tp = t + 1 if reverse else t - 1
            dst = hp[b, t]
            if 0 <= tp < t_len:
                src = hs[tp, r0 + b]
                for j in range(hd):
                    dst[j] = src[j]
            else:
                dst[:] = 0.0
    return hp


@numba.njit(cache=True)
def _col_sums(d, out):
    for r in range(d.shape[0]):
        row = d[r]
        for j in range(d.shape[1]):
            out[j] += row[j]


@numba.njit(cache=True)
def block_grads(d_ih, d_hh, x, w_ih, hp, r0, r1, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh):
    """After the recurrence of batch rows r0:r1, from their pre-activation gradients of all
    steps, d_ih (x side) and d_hh (h side; the same array unless a gate multiplies the h side)
    [rows, T, G], and their start states hp [rows, T, H]: writes (or, when ``accumulate``,
    adds) their input gradient gx[r0:r1] = d_ih @ w_ih (none when gx is zero-size: nobody needs
    it), writes their shares of the weight gradients and adds theirs of the bias gradients
    (zeroed by the caller): products over all rows*T rows, in chunks of rows."""
    nb, t_len, g = d_ih.shape
    n, n_in = nb * t_len, x.shape[2]
    none = np.empty((0, 0), dtype=d_ih.dtype)
    di, dh = d_ih.reshape(n, g), d_hh.reshape(n, g)
    xr = x.reshape(x.shape[0] * t_len, n_in)[r0 * t_len : r1 * t_len]
    want_gx = gx.size > 0
    gxr = gx.reshape(x.shape[0] * t_len, n_in)[r0 * t_len : r1 * t_len] if want_gx else none
    hpr = hp.reshape(n, hp.shape[2])
    # All three products of a chunk of rows while it is in L2: read whole three times, the
    # gradients came from memory each time (26 MB at h256 T100 B64: 28.8 -> 26.2 ms here).
    # Chunks of whole K passes of `mm`, so the sums are added in the same order as unchunked.
    step = max(_KC, _CHUNK_BYTES // (g * d_ih.itemsize) // _KC * _KC)
    for r in range(0, max(n, 1), step):  # one pass even for no rows: the products are zero
        e = min(r + step, n)
        if want_gx:
            mm(di[r:e], w_ih, gxr[r:e], gxr[r:e] if accumulate else none)
        mm(di[r:e].T, xr[r:e], gw_ih, gw_ih if r > 0 else none)
        mm(dh[r:e].T, hpr[r:e], gw_hh, gw_hh if r > 0 else none)
    _col_sums(di, gb_ih)
    if d_hh.ctypes.data == d_ih.ctypes.data:  # one array (LSTM, RNN): the same sums
        for j in range(g):
            gb_hh[j] += gb_ih[j]
    else:
        _col_sums(dh, gb_hh)


@numba.njit(cache=True)
def grad_shares(n_blocks, w_ih, w_hh):
    """Each batch block's share of the weight and bias gradients ([n_blocks, ...] for
    `block_grads`; `add_blocks` sums them after the region)."""
    dtype = w_ih.dtype
    return (
        np.empty((n_blocks,) + w_ih.shape, dtype=dtype),
        np.empty((n_blocks,) + w_hh.shape, dtype=dtype),
        np.zeros((n_blocks, w_ih.shape[0]), dtype=dtype),
        np.zeros((n_blocks, w_hh.shape[0]), dtype=dtype),
    )


@numba.njit(cache=True)
def _add_to(dst, src):
    """dst += src for arrays of one shape (a loop: numba's array expressions are slow to
    compile)."""
    d, s = dst.reshape(-1), src.reshape(-1)
    for i in range(d.size):
        d[i] += s[i]


@numba.njit(cache=True)
def add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh):
    """Sums the batch blocks' shares of the weight gradients [n_blocks, ...]; a bias the layer
    does not have gets a zero-size gradient."""
    for i in range(1, gw_ih.shape[0]):
        _add_to(gw_ih[0], gw_ih[i])
        _add_to(gw_hh[0], gw_hh[i])
        _add_to(gb_ih[0], gb_ih[i])
        _add_to(gb_hh[0], gb_hh[i])
    out_ih = gb_ih[0].copy() if b_ih.size > 0 else np.zeros_like(b_ih)
    out_hh = gb_hh[0].copy() if b_hh.size > 0 else np.zeros_like(b_hh)
    return gw_ih[0].copy(), gw_hh[0].copy(), out_ih, out_hh
