"""Recurrent kernels: rnn (tanh or relu), lstm, gru — batch-first, one layer, optional
reverse direction, zero initial state, torch gate orders (LSTM i,f,g,o; GRU r,z,n).

Each direction is a parallel njit core over blocks of batch rows: rows never interact, so
each thread runs the whole time loop for its own rows (one parallel region per direction).
A step is two small products, x_t W_ih^T (started from the bias rows) and h W_hh^T, on
`_mm`, a register-tiled GEMM that reads the [B, T, I] input's time slices in place. The
backward (BPTT) adds each step's terms of the weight gradients (gate gradients^T times x_t
and h_{t-1}) while that step's gate gradients are in cache, and writes the input gradient
straight into gx [B, T, I]; with two threads each block sums its own share, added after.
Gate nonlinearities go through ``vmath`` over whole [rows, G*H] blocks (LSTM's tanh gate as
2*sigmoid(2x) - 1 with its weights doubled, so one sigmoid call covers all four gates), and
the hidden bias is folded into the bias rows (except GRU's b_hn, which r multiplies).

``rnn_fwd``/``lstm_fwd``/``gru_fwd`` and their ``_bwd`` are thin plain-Python wrappers over
these cores: they pick the directions, and the ``last`` attr changes the output's rank
([B, D*H] instead of [B, T, D*H]), which one numba specialisation cannot return. The
reverse-direction params arrive zero-size when not bidirectional and never reach numba.

Saved tensors (stacked over directions, time-major, indexed by *time* not step):
rnn: hs[D,T,B,H]; lstm: hs, cs[D,T,B,H], gates[D,T,B,4H] (after activation);
gru: hs, gates[D,T,B,3H] (r, z, n after activation), hn[D,T,B,H] (= W_hn h + b_hn).
"""

import numba
import numpy as np
from llvmlite import ir
from llvmlite.binding import get_host_cpu_features
from numba.core import cgutils, types
from numba.extending import intrinsic

from graphc.kernels.parallel import block_bounds, row_blocks
from graphc.kernels.vmath import vsigmoid, vtanh

# --------------------------------------------------------------------------- small GEMMs
# The recurrence is a chain of small products ([B, H] x [H, 4H] per step), where OpenBLAS as
# loaded here runs its AVX2 kernels (it does not know this CPU) at 45-85 GFLOP/s. `_mm`
# instead tiles the product into blocks of 4 rows x 4 vector registers of columns whose
# partial sums stay in 16 registers for a whole pass over K; LLVM compiles it for the host's
# widest vectors (AVX-512 here: 160-240 GFLOP/s on the LSTM's products, 2-4x np.dot). It
# reads any row strides, so it multiplies time slices of [B, T, I] inputs and transposed
# gate gradients in place, and it can start from a given matrix (a bias, the x-side part).
_VEC_BYTES = 64 if "+avx512f" in get_host_cpu_features().flatten() else 32
_MR = 4  # rows per tile
_NV = 4  # vector registers of columns per tile
_KC = 128  # K per pass: the tile's [_KC, _NV vectors] slice of b (32 KB) stays in L1


@intrinsic
def _tile(typingctx, dtype, mr, nv, wide, c_in, ldi, c_out, ldc, a, a_rs, a_ks, b, ldb, k_len):
    """c_out[:mr, :nv*W] = c_in[:mr, :nv*W] (0 when c_in is 0) + a[:mr, :k_len] @ b[:k_len,
    :nv*W], W = the vector width if ``wide`` else 1 (a single column); all other arguments are
    addresses, or strides in elements."""
    literals = (mr, nv, wide)
    if not all(isinstance(v, (types.IntegerLiteral, types.BooleanLiteral)) for v in literals):
        return None
    m, n, is_wide = (v.literal_value for v in literals)
    sig = types.void(dtype, mr, nv, wide, *([types.intp] * 10))

    def codegen(context, builder, signature, args):
        c_in, ldi, c_out, ldc, a, a_rs, a_ks, b, ldb, k_len = args[4:]
        elem = context.get_value_type(dtype.dtype)
        lanes = _VEC_BYTES * 8 // dtype.dtype.bitwidth if is_wide else 1
        vec = ir.VectorType(elem, lanes)
        i64 = ir.IntType(64)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{lanes}{elem.intrinsic_name}"
        )

        def ptr(base, row, row_stride, col):
            off = builder.add(builder.mul(row, row_stride), col)
            return builder.gep(builder.inttoptr(base, elem.as_pointer()), [off])

        def vptr(base, row, row_stride, v):
            p = ptr(base, row, row_stride, ir.Constant(i64, v * lanes))
            return builder.bitcast(p, vec.as_pointer())

        # partial sums in allocas: LLVM promotes them to registers
        acc = [[cgutils.alloca_once(builder, vec) for _ in range(n)] for _ in range(m)]
        with builder.if_else(builder.icmp_unsigned("!=", c_in, ir.Constant(i64, 0))) as (start, zero):
            with start:
                for r in range(m):
                    for v in range(n):
                        row = ir.Constant(i64, r)
                        builder.store(builder.load(vptr(c_in, row, ldi, v), align=1), acc[r][v])
            with zero:
                for r in range(m):
                    for v in range(n):
                        builder.store(ir.Constant(vec, None), acc[r][v])
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        with cgutils.for_range(builder, k_len) as loop:
            k = loop.index
            bv = [builder.load(vptr(b, k, ldb, v), align=1) for v in range(n)]
            for r in range(m):
                s = builder.load(ptr(a, ir.Constant(i64, r), a_rs, builder.mul(k, a_ks)))
                sv = builder.shuffle_vector(
                    builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)), undef, splat
                )
                for v in range(n):
                    builder.store(builder.call(fma, [sv, bv[v], builder.load(acc[r][v])]), acc[r][v])
        for r in range(m):
            for v in range(n):
                builder.store(builder.load(acc[r][v]), vptr(c_out, ir.Constant(i64, r), ldc, v), align=1)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True)
def _mm_core(dtype, es, m, n, k_len, pa, a_rs, a_ks, pb, ldb, pc, ldc, pi, ldi):
    """`_mm` on addresses and strides: one compiled body per dtype, whatever the callers'
    array layouts (each tile variant is a sizeable piece of machine code)."""
    lanes = _VEC_BYTES // es
    for k0 in range(0, max(k_len, 1), _KC):  # one pass even for k_len 0: c = init or 0
        kc = min(_KC, k_len - k0)
        if k0 > 0:
            pi, ldi = pc, ldc  # later passes add to what the first wrote
        j0 = 0
        while j0 < n:
            cols = n - j0  # 4, 2 or 1 vectors of columns; past the last vector, single columns
            nv = 4 if cols >= 4 * lanes else (2 if cols >= 2 * lanes else 1)
            wide = cols >= lanes
            bo = pb + (k0 * ldb + j0) * es
            i0 = 0
            while i0 < m:
                ao = pa + (i0 * a_rs + k0 * a_ks) * es
                co = pc + (i0 * ldc + j0) * es
                io = pi + (i0 * ldi + j0) * es if pi != 0 else 0
                if m - i0 >= _MR:
                    if not wide:
                        _tile(dtype, 4, 1, False, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    elif nv == 4:
                        _tile(dtype, 4, 4, True, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    elif nv == 2:
                        _tile(dtype, 4, 2, True, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    else:
                        _tile(dtype, 4, 1, True, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    i0 += _MR
                else:  # the last rows, one at a time
                    if not wide:
                        _tile(dtype, 1, 1, False, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    for v in range(nv if wide else 0):
                        off = v * lanes * es
                        io_v = io + off if io != 0 else 0
                        _tile(dtype, 1, 1, True, io_v, ldi, co + off, ldc, ao, a_rs, a_ks, bo + off, ldb, kc)
                    i0 += 1
            j0 += nv * lanes if wide else 1


@numba.njit(cache=True)
def _mm(a, b, c, init):
    """c = init + a @ b (c = a @ b when init is empty; init may be c itself). a may have any
    strides; b, c and init need contiguous rows (unit stride along their last axis)."""
    es = a.itemsize
    has_init = init.size > 0
    _mm_core(
        a.dtype, es, a.shape[0], b.shape[1], a.shape[1],
        a.ctypes.data, a.strides[0] // es, a.strides[1] // es,
        b.ctypes.data, b.strides[0] // es,
        c.ctypes.data, c.strides[0] // es,
        init.ctypes.data if has_init else 0, init.strides[0] // es if has_init else 0,
    )  # fmt: skip
    return c


# --------------------------------------------------------------------------- shared
# Batch rows never interact in a recurrence, so each thread runs the whole time loop for its
# own block of rows: one parallel region per direction instead of one per step (a region
# costs a few microseconds to start; a step of the h128 workload takes about 30).
_MIN_ROWS = 4  # batch rows per thread's block (one tile of `_mm`)


# The gate loops: constants typed like the data (a float64 literal would turn float32 math
# into float64 at half the SIMD width), no branches inside, a*b + c contracted to one FMA.
_GATE_LOOP = dict(cache=True, error_model="numpy", fastmath={"contract"})


@numba.njit(cache=True)
def _bias_rows(nb, b_ih, b_hh, n_fold, scale_from, scale_to):
    """[nb, G] rows of b_ih plus the first ``n_fold`` entries of b_hh (GRU's b_hn cannot be
    folded: r multiplies it), columns scale_from:scale_to doubled (see `_lstm_weights`): the
    start of each step's product."""
    n = max(b_ih.size, b_hh.size)
    rows = np.zeros((nb, n), dtype=b_ih.dtype)
    for j in range(n):
        v = b_ih[j] if b_ih.size > 0 else 0.0
        if j < n_fold and b_hh.size > 0:
            v += b_hh[j]
        if scale_from <= j < scale_to:
            v *= 2.0
        for b in range(nb):
            rows[b, j] = v
    return rows


@numba.njit(cache=True)
def _add_to(dst, src):
    """dst += src for arrays of one shape (a loop: numba's array expressions are slow to
    compile)."""
    d, s = dst.reshape(-1), src.reshape(-1)
    for i in range(d.size):
        d[i] += s[i]


@numba.njit(cache=True)
def _add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh):
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


@numba.njit(cache=True)
def _step_weight_grads(dx, dh, xs, hp, first, gw_ih, gw_hh, gb_ih, gb_hh):
    """Adds one step's terms of the weight gradients: dx, dh are the gradients of the x-side
    and h-side pre-activations [nb, G], xs, hp the step's input and previous state (zero, so
    no term, at the forward's first step)."""
    _mm(dx.T, xs, gw_ih, gw_ih)
    if not first:
        _mm(dh.T, hp, gw_hh, gw_hh)
    for b in range(dx.shape[0]):
        _add_to(gb_ih, dx[b])
        _add_to(gb_hh, dh[b])


# --------------------------------------------------------------------------- rnn
@numba.njit(**_GATE_LOOP)
def _rnn_rows_fwd(x, wt_ih, wt_hh, b_ih, b_hh, reverse, use_tanh, r0, r1, hs):
    """The recurrence of batch rows r0:r1: fills their hs [T, B, H]."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    zero = hs.dtype.type(0.0)
    pre = np.empty((nb, hd), dtype=hs.dtype)
    bias_rows = _bias_rows(nb, b_ih, b_hh, hd, 0, 0)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        _mm(x[r0:r1, t], wt_ih, pre, bias_rows)
        if k > 0:
            _mm(hs[t + 1 if reverse else t - 1, r0:r1], wt_hh, pre, pre)
        hn = hs[t, r0:r1]
        if use_tanh:
            vtanh(pre.reshape(-1), hn.reshape(-1))
        else:
            for b in range(nb):
                pb, hb = pre[b], hn[b]
                for j in range(hd):
                    hb[j] = max(pb[j], zero)


@numba.njit(cache=True, parallel=True)
def _rnn_dir_fwd(x, w_ih, w_hh, b_ih, b_hh, reverse, use_tanh, hs):
    wt_ih, wt_hh = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    b_n = hs.shape[1]
    n_blocks = row_blocks(b_n, _MIN_ROWS)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, b_n)
        _rnn_rows_fwd(x, wt_ih, wt_hh, b_ih, b_hh, reverse, use_tanh, r0, r1, hs)


@numba.njit(**_GATE_LOOP)
def _rnn_rows_bwd(
    gh, x, w_ih, w_hh, hs, reverse, use_tanh, r0, r1, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh
):
    """BPTT for batch rows r0:r1 (see `_lstm_rows_bwd`)."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one, zero = hs.dtype.type(1.0), hs.dtype.type(0.0)
    none = np.empty((0, 0), dtype=hs.dtype)
    d = np.empty((nb, hd), dtype=hs.dtype)
    dh = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        tp = t + 1 if reverse else t - 1
        first = k == t_len - 1
        hn, g_h = hs[t, r0:r1], gh[t, r0:r1]
        for b in range(nb):
            db, yb, dhb, ghb = d[b], hn[b], dh[b], g_h[b]
            for j in range(hd):
                y = yb[j]
                dv = ghb[j] + dhb[j]
                if use_tanh:
                    db[j] = dv * (one - y * y)
                else:
                    db[j] = dv if y > zero else zero
        gxt = gx[r0:r1, t]
        _mm(d, w_ih, gxt, gxt if accumulate else none)
        if not first:
            _mm(d, w_hh, dh, none)
        _step_weight_grads(d, d, x[r0:r1, t], hs[tp, r0:r1], first, gw_ih, gw_hh, gb_ih, gb_hh)


@numba.njit(cache=True, parallel=True)
def _rnn_dir_bwd(gh, x, w_ih, w_hh, b_ih, b_hh, hs, reverse, use_tanh, gx, accumulate):
    b_n, hd = hs.shape[1], hs.shape[2]
    n_blocks = row_blocks(b_n, _MIN_ROWS)
    gw_ih = np.zeros((n_blocks, hd, x.shape[2]), dtype=hs.dtype)
    gw_hh = np.zeros((n_blocks, hd, hd), dtype=hs.dtype)
    gb_ih = np.zeros((n_blocks, hd), dtype=hs.dtype)
    gb_hh = np.zeros((n_blocks, hd), dtype=hs.dtype)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, b_n)
        _rnn_rows_bwd(
            gh,
            x,
            w_ih,
            w_hh,
            hs,
            reverse,
            use_tanh,
            r0,
            r1,
            gx,
            accumulate,
            gw_ih[i],
            gw_hh[i],
            gb_ih[i],
            gb_hh[i],
        )
    return _add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh)


# --------------------------------------------------------------------------- lstm
@numba.njit(cache=True)
def _lstm_weights(w_ih, w_hh):
    """w_ih.T [I, 4H], w_hh.T [H, 4H] (so each step's product reads contiguous rows) with the
    g gate's columns doubled: then tanh(g) = 2 sigmoid(2g) - 1 and one sigmoid covers all four
    gates (doubling is exact; `_bias_rows` doubles the bias alike)."""
    hd = w_hh.shape[1]
    wt_ih = np.ascontiguousarray(w_ih.T)
    wt_hh = np.ascontiguousarray(w_hh.T)
    for j in range(2 * hd, 3 * hd):
        for i in range(wt_ih.shape[0]):
            wt_ih[i, j] *= 2.0
        for i in range(hd):
            wt_hh[i, j] *= 2.0
    return wt_ih, wt_hh


@numba.njit(**_GATE_LOOP)
def _lstm_rows_fwd(x, wt_ih, wt_hh, b_ih, b_hh, reverse, r0, r1, hs, cs, gates):
    """The recurrence of batch rows r0:r1: fills their hs, cs [T, B, H] and gates [T, B, 4H]."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one, two = hs.dtype.type(1.0), hs.dtype.type(2.0)
    pre = np.empty((nb, 4 * hd), dtype=hs.dtype)
    tc = np.empty((nb, hd), dtype=hs.dtype)
    bias_rows = _bias_rows(nb, b_ih, b_hh, 4 * hd, 2 * hd, 3 * hd)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        tp = t + 1 if reverse else t - 1  # the step before, in processing order
        _mm(x[r0:r1, t], wt_ih, pre, bias_rows)
        c_prev = zero_state
        if k > 0:
            _mm(hs[tp, r0:r1], wt_hh, pre, pre)
            c_prev = cs[tp, r0:r1]
        act = gates[t, r0:r1]
        vsigmoid(pre.reshape(-1), act.reshape(-1))
        cn = cs[t, r0:r1]
        for b in range(nb):
            ab, cb, cpb = act[b], cn[b], c_prev[b]
            for j in range(hd):
                g = two * ab[2 * hd + j] - one
                ab[2 * hd + j] = g
                cb[j] = ab[hd + j] * cpb[j] + ab[j] * g
        vtanh(cn.reshape(-1), tc.reshape(-1))
        hn = hs[t, r0:r1]
        for b in range(nb):
            ab, hb, tb = act[b], hn[b], tc[b]
            for j in range(hd):
                hb[j] = ab[3 * hd + j] * tb[j]


@numba.njit(cache=True, parallel=True)
def _lstm_dir_fwd(x, w_ih, w_hh, b_ih, b_hh, reverse, hs, cs, gates):
    """x [B, T, I]; fills hs, cs [T, B, H] and the activated gates [T, B, 4H]."""
    wt_ih, wt_hh = _lstm_weights(w_ih, w_hh)
    b_n = hs.shape[1]
    n_blocks = row_blocks(b_n, _MIN_ROWS)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, b_n)
        _lstm_rows_fwd(x, wt_ih, wt_hh, b_ih, b_hh, reverse, r0, r1, hs, cs, gates)


@numba.njit(**_GATE_LOOP)
def _lstm_rows_bwd(
    gh, x, w_ih, w_hh, hs, cs, gates, reverse, r0, r1, gx, accumulate, gw_ih, gw_hh, gb, gb_hh
):
    """BPTT for batch rows r0:r1: writes (or, when ``accumulate``, adds) their input gradient
    into gx [B, T, I] and adds their share of the weight and bias gradients to gw_ih, gw_hh
    and gb. The weight gradients are accumulated step by step while the step's gate gradients
    are still in cache, instead of storing them all [T, B, 4H] for one product afterwards."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one = hs.dtype.type(1.0)
    none = np.empty((0, 0), dtype=hs.dtype)
    d = np.empty((nb, 4 * hd), dtype=hs.dtype)  # pre-activation gate gradients of a step
    dh = np.zeros((nb, hd), dtype=hs.dtype)
    dc = np.zeros((nb, hd), dtype=hs.dtype)
    tc = np.empty((nb, hd), dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        tp = t + 1 if reverse else t - 1
        first = k == t_len - 1  # the forward's first step: zero previous state
        c_prev = zero_state if first else cs[tp, r0:r1]
        vtanh(cs[t, r0:r1].reshape(-1), tc.reshape(-1))
        act, g_h = gates[t, r0:r1], gh[t, r0:r1]
        for b in range(nb):
            ab, db, cpb, tb, dhb, dcb, ghb = act[b], d[b], c_prev[b], tc[b], dh[b], dc[b], g_h[b]
            for j in range(hd):
                ig, fg, gg, og = ab[j], ab[hd + j], ab[2 * hd + j], ab[3 * hd + j]
                tcv = tb[j]
                dhv = ghb[j] + dhb[j]
                dcv = dcb[j] + dhv * og * (one - tcv * tcv)
                dcb[j] = dcv * fg  # flows to the previous cell state
                db[j] = dcv * gg * ig * (one - ig)
                db[hd + j] = dcv * cpb[j] * fg * (one - fg)
                db[2 * hd + j] = dcv * ig * (one - gg * gg)
                db[3 * hd + j] = dhv * tcv * og * (one - og)
        gxt = gx[r0:r1, t]
        _mm(d, w_ih, gxt, gxt if accumulate else none)
        if not first:
            _mm(d, w_hh, dh, none)
        _step_weight_grads(d, d, x[r0:r1, t], hs[tp, r0:r1], first, gw_ih, gw_hh, gb, gb_hh)


@numba.njit(cache=True, parallel=True)
def _lstm_dir_bwd(gh, x, w_ih, w_hh, b_ih, b_hh, hs, cs, gates, reverse, gx, accumulate):
    """gh [T, B, H]: the cotangent of hs. Writes (or adds to) gx [B, T, I]; returns the weight
    and bias gradients."""
    b_n, hd = hs.shape[1], hs.shape[2]
    g4 = 4 * hd
    n_blocks = row_blocks(b_n, _MIN_ROWS)
    # each block of batch rows sums its own share of the weight gradients; added up after
    gw_ih = np.zeros((n_blocks, g4, x.shape[2]), dtype=hs.dtype)
    gw_hh = np.zeros((n_blocks, g4, hd), dtype=hs.dtype)
    gb_ih = np.zeros((n_blocks, g4), dtype=hs.dtype)
    gb_hh = np.zeros((n_blocks, g4), dtype=hs.dtype)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, b_n)
        _lstm_rows_bwd(
            gh,
            x,
            w_ih,
            w_hh,
            hs,
            cs,
            gates,
            reverse,
            r0,
            r1,
            gx,
            accumulate,
            gw_ih[i],
            gw_hh[i],
            gb_ih[i],
            gb_hh[i],
        )
    return _add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh)


# --------------------------------------------------------------------------- gru
@numba.njit(**_GATE_LOOP)
def _gru_rows_fwd(x, wt_ih, wt_hh, b_ih, b_hh, reverse, r0, r1, hs, gates, hns):
    """The recurrence of batch rows r0:r1: fills their hs [T, B, H], activated gates
    [T, B, 3H] and hns = W_hn h + b_hn [T, B, H]."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one = hs.dtype.type(1.0)
    none = np.empty((0, 0), dtype=hs.dtype)
    bias_rows = _bias_rows(nb, b_ih, b_hh, 2 * hd, 0, 0)
    b_hn = np.zeros(hd, dtype=hs.dtype)
    if b_hh.size > 0:
        b_hn[:] = b_hh[2 * hd :]
    ax = np.empty((nb, 3 * hd), dtype=hs.dtype)  # x side (with the folded biases)
    ah = np.zeros((nb, 3 * hd), dtype=hs.dtype)  # h side (zero into the first step)
    pre_rz = np.empty((nb, 2 * hd), dtype=hs.dtype)
    rz = np.empty((nb, 2 * hd), dtype=hs.dtype)
    pre_n = np.empty((nb, hd), dtype=hs.dtype)
    n = np.empty((nb, hd), dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        tp = t + 1 if reverse else t - 1
        _mm(x[r0:r1, t], wt_ih, ax, bias_rows)
        h_prev = zero_state
        if k > 0:
            h_prev = hs[tp, r0:r1]
            _mm(h_prev, wt_hh, ah, none)
        for b in range(nb):
            for j in range(2 * hd):
                pre_rz[b, j] = ax[b, j] + ah[b, j]
        vsigmoid(pre_rz.reshape(-1), rz.reshape(-1))
        hn_t = hns[t, r0:r1]
        for b in range(nb):
            rb, axb, ahb, hnb, pnb = rz[b], ax[b], ah[b], hn_t[b], pre_n[b]
            for j in range(hd):
                hn = ahb[2 * hd + j] + b_hn[j]  # r gates W_hn h + b_hn, after the bias (torch)
                hnb[j] = hn
                pnb[j] = axb[2 * hd + j] + rb[j] * hn
        vtanh(pre_n.reshape(-1), n.reshape(-1))
        h_t, act = hs[t, r0:r1], gates[t, r0:r1]
        for b in range(nb):
            rb, nb_, hb, hpb, ab = rz[b], n[b], h_t[b], h_prev[b], act[b]
            for j in range(hd):
                z = rb[hd + j]
                hb[j] = (one - z) * nb_[j] + z * hpb[j]
                ab[j] = rb[j]
                ab[hd + j] = z
                ab[2 * hd + j] = nb_[j]


@numba.njit(cache=True, parallel=True)
def _gru_dir_fwd(x, w_ih, w_hh, b_ih, b_hh, reverse, hs, gates, hns):
    wt_ih, wt_hh = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    b_n = hs.shape[1]
    n_blocks = row_blocks(b_n, _MIN_ROWS)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, b_n)
        _gru_rows_fwd(x, wt_ih, wt_hh, b_ih, b_hh, reverse, r0, r1, hs, gates, hns)


@numba.njit(**_GATE_LOOP)
def _gru_rows_bwd(
    gh, x, w_ih, w_hh, hs, gates, hns, reverse, r0, r1, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh
):
    """BPTT for batch rows r0:r1 (see `_lstm_rows_bwd`)."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one = hs.dtype.type(1.0)
    none = np.empty((0, 0), dtype=hs.dtype)
    dgi = np.empty((nb, 3 * hd), dtype=hs.dtype)  # grads of the x-side pre-activations
    dgh = np.empty((nb, 3 * hd), dtype=hs.dtype)  # grads of the h-side pre-activations
    direct = np.empty((nb, hd), dtype=hs.dtype)  # dh through h = ... + z h_prev
    dh = np.zeros((nb, hd), dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        tp = t + 1 if reverse else t - 1
        first = k == t_len - 1
        h_prev = zero_state if first else hs[tp, r0:r1]
        act, hn_t, g_h = gates[t, r0:r1], hns[t, r0:r1], gh[t, r0:r1]
        for b in range(nb):
            ab, hnb, hpb, ghb, dhb = act[b], hn_t[b], h_prev[b], g_h[b], dh[b]
            dib, dhhb, drb = dgi[b], dgh[b], direct[b]
            for j in range(hd):
                r, z, n = ab[j], ab[hd + j], ab[2 * hd + j]
                dhv = ghb[j] + dhb[j]
                dnp = dhv * (one - z) * (one - n * n)
                drp = dnp * hnb[j] * r * (one - r)
                dzp = dhv * (hpb[j] - n) * z * (one - z)
                dib[j] = drp
                dib[hd + j] = dzp
                dib[2 * hd + j] = dnp
                dhhb[j] = drp
                dhhb[hd + j] = dzp
                dhhb[2 * hd + j] = dnp * r
                drb[j] = dhv * z
        gxt = gx[r0:r1, t]
        _mm(dgi, w_ih, gxt, gxt if accumulate else none)
        if not first:
            _mm(dgh, w_hh, dh, direct)
        _step_weight_grads(dgi, dgh, x[r0:r1, t], h_prev, first, gw_ih, gw_hh, gb_ih, gb_hh)


@numba.njit(cache=True, parallel=True)
def _gru_dir_bwd(gh, x, w_ih, w_hh, b_ih, b_hh, hs, gates, hns, reverse, gx, accumulate):
    b_n, hd = hs.shape[1], hs.shape[2]
    g3 = 3 * hd
    n_blocks = row_blocks(b_n, _MIN_ROWS)
    gw_ih = np.zeros((n_blocks, g3, x.shape[2]), dtype=hs.dtype)
    gw_hh = np.zeros((n_blocks, g3, hd), dtype=hs.dtype)
    gb_ih = np.zeros((n_blocks, g3), dtype=hs.dtype)
    gb_hh = np.zeros((n_blocks, g3), dtype=hs.dtype)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, b_n)
        _gru_rows_bwd(
            gh,
            x,
            w_ih,
            w_hh,
            hs,
            gates,
            hns,
            reverse,
            r0,
            r1,
            gx,
            accumulate,
            gw_ih[i],
            gw_hh[i],
            gb_ih[i],
            gb_hh[i],
        )
    return _add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh)


# --------------------------------------------------------------------------- python wrappers
def _directions(bidirectional, p0, p1):
    return [(p0, False), (p1, True)] if bidirectional else [(p0, False)]


def _assemble_output(hs: np.ndarray, last: bool, out: np.ndarray | None) -> np.ndarray:
    """Stacked states hs[D,T,B,H] -> out[B,T,D*H], or h_n-style out[B,D*H] when ``last``
    (one strided copy; ``out`` allocated when None)."""
    n_dir, t_len, b_n, hd = hs.shape
    if out is None:
        out = np.empty((b_n, n_dir * hd) if last else (b_n, t_len, n_dir * hd), dtype=hs.dtype)
    if last:
        # forward direction ends at t=T-1, the reverse one at t=0 (torch's h_n)
        out3 = out.reshape(b_n, n_dir, hd)
        for d in range(n_dir):
            out3[:, d] = hs[d, t_len - 1 if d == 0 else 0]
    else:
        out.reshape(b_n, t_len, n_dir, hd).transpose(2, 1, 0, 3)[...] = hs
    return out


def _split_grad(g_out: np.ndarray, n_dir: int, t_len: int, hd: int, last: bool):
    """Output cotangent -> per-direction cotangent of the hidden states, [T,B,H] each."""
    b_n = g_out.shape[0]
    res = []
    for d in range(n_dir):
        gh = np.zeros((t_len, b_n, hd), dtype=g_out.dtype)
        if last:
            gh[t_len - 1 if d == 0 else 0] = g_out[:, d * hd : (d + 1) * hd]
        else:
            gh[:] = g_out[:, :, d * hd : (d + 1) * hd].transpose(1, 0, 2)
        res.append(gh)
    return res


def _run_bwd(core, x, dirs, ghs, saved, into_x, p1, *flags):
    """Runs each direction's backward core (the second adds its input gradient to the
    first's) and returns (gx, the first direction's param grads, the second's or zeros)."""
    gx = np.empty_like(x) if into_x is None else into_x
    grads = [
        core(ghs[d], x, *p, *(s[d] for s in saved), rev, *flags, gx, d > 0) for d, (p, rev) in enumerate(dirs)
    ]
    g1 = grads[1] if len(grads) == 2 else tuple(np.zeros_like(p) for p in p1)
    return (gx, *grads[0], *g1)


def rnn_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, out=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    for d, (p, rev) in enumerate(dirs):
        _rnn_dir_fwd(x, *p, rev, bool(nonlinearity_tanh), hs[d])
    return _assemble_output(hs, last, out), hs


def rnn_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, saved0, out=None, into_x=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    return _run_bwd(_rnn_dir_bwd, x, dirs, ghs, (saved0,), into_x, p1, bool(nonlinearity_tanh))


def lstm_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, out=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    cs = np.empty_like(hs)
    gates = np.empty((len(dirs), t_len, b_n, 4 * hd), dtype=x.dtype)
    for d, (p, rev) in enumerate(dirs):
        _lstm_dir_fwd(x, *p, rev, hs[d], cs[d], gates[d])
    return _assemble_output(hs, last, out), hs, cs, gates


def lstm_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, saved0, saved1, saved2, out=None, into_x=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    return _run_bwd(_lstm_dir_bwd, x, dirs, ghs, (saved0, saved1, saved2), into_x, p1)


def gru_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, out=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    gates = np.empty((len(dirs), t_len, b_n, 3 * hd), dtype=x.dtype)
    hns = np.empty_like(hs)
    for d, (p, rev) in enumerate(dirs):
        _gru_dir_fwd(x, *p, rev, hs[d], gates[d], hns[d])
    return _assemble_output(hs, last, out), hs, gates, hns


def gru_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, saved0, saved1, saved2, out=None, into_x=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    return _run_bwd(_gru_dir_bwd, x, dirs, ghs, (saved0, saved1, saved2), into_x, p1)
