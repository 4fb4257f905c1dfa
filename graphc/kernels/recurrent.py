"""Recurrent kernels: rnn (tanh or relu), lstm, gru — batch-first, one layer, optional
reverse direction, zero initial state, torch gate orders (LSTM i,f,g,o; GRU r,z,n).

Each direction is an njit core working in time-major layout: the input projection for all
steps is one GEMM (``xt @ w_ih.T``), then each step does one [B,H] x [H,G*H] GEMM. The
backward (BPTT) collects the pre-activation gate gradients of every step into a [T*B, G*H]
matrix so the weight gradients are again single GEMMs after the time loop. Gate
nonlinearities go through ``vmath`` over whole [B, G*H] blocks (LSTM's tanh gate as
2*sigmoid(2x) - 1, so one sigmoid call covers all four gates), and the hidden bias is folded
into the input projection once (except GRU's b_hn, which r multiplies).

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
def _tile(typingctx, dtype, mr, nv, c_in, ldi, c_out, ldc, a, a_rs, a_ks, b, ldb, k_len):
    """c_out[:mr, :nv*W] = c_in[:mr, :nv*W] (0 when c_in is 0) + a[:mr, :k_len] @ b[:k_len,
    :nv*W] for W = vector width; all arguments are addresses or strides in elements."""
    if not (isinstance(mr, types.IntegerLiteral) and isinstance(nv, types.IntegerLiteral)):
        return None
    m, n = mr.literal_value, nv.literal_value
    sig = types.void(dtype, mr, nv, *([types.intp] * 10))

    def codegen(context, builder, signature, args):
        c_in, ldi, c_out, ldc, a, a_rs, a_ks, b, ldb, k_len = args[3:]
        elem = context.get_value_type(dtype.dtype)
        lanes = _VEC_BYTES * 8 // dtype.dtype.bitwidth
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
def _mm(a, b, c, init):
    """c = init + a @ b (c = a @ b when init is empty; init may be c itself). a may have any
    strides; b, c and init need contiguous rows (unit stride along their last axis)."""
    m, k_len = a.shape
    n = b.shape[1]
    es = a.itemsize
    lanes = _VEC_BYTES // es
    a_rs, a_ks = a.strides[0] // es, a.strides[1] // es
    ldb, ldc = b.strides[0] // es, c.strides[0] // es
    has_init = init.size > 0
    ldi = init.strides[0] // es if has_init else 0
    pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
    n_vec = n - n % lanes  # columns the tiles cover; the rest below
    for k0 in range(0, k_len, _KC):
        kc = min(_KC, k_len - k0)
        if k0 == 0:
            pi, li = (init.ctypes.data, ldi) if has_init else (0, 0)
        else:
            pi, li = pc, ldc  # later passes add to what the first wrote
        for j0 in range(0, n_vec, _NV * lanes):
            nv = min(_NV, (n_vec - j0) // lanes)
            bo = pb + (k0 * ldb + j0) * es
            i0 = 0
            while i0 < m:
                ao = pa + (i0 * a_rs + k0 * a_ks) * es
                co = pc + (i0 * ldc + j0) * es
                io = pi + (i0 * li + j0) * es if pi != 0 else 0
                if m - i0 >= _MR:
                    if nv == 4:
                        _tile(a.dtype, 4, 4, io, li, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    elif nv == 3:
                        _tile(a.dtype, 4, 3, io, li, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    elif nv == 2:
                        _tile(a.dtype, 4, 2, io, li, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    else:
                        _tile(a.dtype, 4, 1, io, li, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    i0 += _MR
                else:
                    for v in range(nv):
                        off = v * lanes * es
                        _tile(
                            a.dtype,
                            1,
                            1,
                            io + off if io != 0 else 0,
                            li,
                            co + off,
                            ldc,
                            ao,
                            a_rs,
                            a_ks,
                            bo + off,
                            ldb,
                            kc,
                        )
                    i0 += 1
    for i in range(m):  # columns past the last full vector
        for j in range(n_vec, n):
            s = init[i, j] if has_init else 0.0
            for k in range(k_len):
                s += a[i, k] * b[k, j]
            c[i, j] = s
    return c


@numba.njit(cache=True)
def _input_proj(xt, w_ih, b_ih, b_hh, n_fold):
    """xt @ w_ih.T + b_ih, plus the first ``n_fold`` entries of b_hh: the hidden bias is
    folded in once here instead of once per step (GRU's b_hn cannot be: r multiplies it)."""
    y = np.dot(xt, w_ih.T)
    n = y.shape[1]
    bias = np.zeros(n, dtype=np.float64)
    if b_ih.size > 0:
        for j in range(n):
            bias[j] += b_ih[j]
    if b_hh.size > 0:
        for j in range(n_fold):
            bias[j] += b_hh[j]
    for r in range(y.shape[0]):
        for j in range(n):
            y[r, j] += bias[j]
    return y


@numba.njit(cache=True)
def _col_sums(g2, like):
    gb = np.zeros_like(like)
    if like.size > 0:
        for r in range(g2.shape[0]):
            gb += g2[r]
    return gb


@numba.njit(cache=True)
def _shift_prev(seq, reverse):
    """State fed *into* each time step: the neighbour in processing order, zero first."""
    prev = np.zeros_like(seq)
    t_len = seq.shape[0]
    if reverse:
        prev[: t_len - 1] = seq[1:]
    else:
        prev[1:] = seq[: t_len - 1]
    return prev


# --------------------------------------------------------------------------- rnn
@numba.njit(cache=True)
def _rnn_dir_fwd(xt, b_n, w_ih, w_hh, b_ih, b_hh, reverse, use_tanh, hs):
    """Fills hs[T, B, H] (the hidden state at each time)."""
    t_len, _, hd = hs.shape
    xw = _input_proj(xt, w_ih, b_ih, b_hh, hd).reshape(t_len, b_n, hd)
    pre = np.empty((b_n, hd), dtype=xt.dtype)
    h = np.zeros((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        np.dot(h, w_hh.T, pre)
        pre += xw[t]
        if use_tanh:
            vtanh(pre.reshape(-1), hs[t].reshape(-1))
        else:
            hs[t] = np.maximum(pre, 0.0)
        h = hs[t]


@numba.njit(cache=True)
def _rnn_dir_bwd(gh, xt, w_ih, w_hh, b_ih, b_hh, hs, reverse, use_tanh):
    t_len, b_n, hd = hs.shape
    dg = np.empty((t_len, b_n, hd), dtype=xt.dtype)
    dh = np.zeros((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        for b in range(b_n):
            for j in range(hd):
                d = gh[t, b, j] + dh[b, j]
                y = hs[t, b, j]
                dg[t, b, j] = d * (1.0 - y * y) if use_tanh else (d if y > 0 else 0.0)
        dh = np.dot(dg[t], w_hh)
    dg2 = dg.reshape(t_len * b_n, hd)
    hp2 = _shift_prev(hs, reverse).reshape(t_len * b_n, hd)
    gxt = np.dot(dg2, w_ih)
    return gxt, np.dot(dg2.T, xt), np.dot(dg2.T, hp2), _col_sums(dg2, b_ih), _col_sums(dg2, b_hh)


# --------------------------------------------------------------------------- lstm
# Batch rows never interact in a recurrence, so each thread runs the whole time loop for its
# own block of rows: one parallel region per direction instead of one per step (a region
# costs a few microseconds to start; a step of the h128 workload takes about 30).
_MIN_ROWS = 4  # batch rows per thread's block (one tile of `_mm`)


@numba.njit(cache=True)
def _lstm_weights(w_ih, w_hh, b_ih, b_hh):
    """w_ih.T [I, 4H], w_hh.T [H, 4H] (so each step's product reads contiguous rows) and
    b_ih + b_hh [4H], with the g gate's columns doubled: then tanh(g) = 2 sigmoid(2g) - 1 and
    one sigmoid covers all four gates (doubling is exact)."""
    hd = w_hh.shape[1]
    wt_ih = np.ascontiguousarray(w_ih.T)
    wt_hh = np.ascontiguousarray(w_hh.T)
    bias = np.zeros(4 * hd, dtype=w_hh.dtype)
    if b_ih.size > 0:
        bias += b_ih
    if b_hh.size > 0:
        bias += b_hh
    wt_ih[:, 2 * hd : 3 * hd] *= 2.0
    wt_hh[:, 2 * hd : 3 * hd] *= 2.0
    bias[2 * hd : 3 * hd] *= 2.0
    return wt_ih, wt_hh, bias


# The gate loops: constants typed like the data (a float64 literal would turn float32 math
# into float64 at half the SIMD width), no branches inside, a*b + c contracted to one FMA.
_GATE_LOOP = dict(cache=True, error_model="numpy", fastmath={"contract"})


@numba.njit(**_GATE_LOOP)
def _lstm_rows_fwd(x, wt_ih, wt_hh, bias, reverse, r0, r1, hs, cs, gates):
    """The recurrence of batch rows r0:r1: fills their hs, cs [T, B, H] and gates [T, B, 4H]."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one, two = hs.dtype.type(1.0), hs.dtype.type(2.0)
    pre = np.empty((nb, 4 * hd), dtype=hs.dtype)
    tc = np.empty((nb, hd), dtype=hs.dtype)
    bias_rows = np.empty((nb, 4 * hd), dtype=hs.dtype)
    bias_rows[:] = bias
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
    wt_ih, wt_hh, bias = _lstm_weights(w_ih, w_hh, b_ih, b_hh)
    b_n = hs.shape[1]
    n_blocks = row_blocks(b_n, _MIN_ROWS)
    if n_blocks == 1:
        _lstm_rows_fwd(x, wt_ih, wt_hh, bias, reverse, 0, b_n, hs, cs, gates)
        return
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, b_n)
        _lstm_rows_fwd(x, wt_ih, wt_hh, bias, reverse, r0, r1, hs, cs, gates)


@numba.njit(**_GATE_LOOP)
def _lstm_rows_bwd(gh, x, w_ih, w_hh, hs, cs, gates, reverse, r0, r1, gx, accumulate, gw_ih, gw_hh, gb):
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
        xs = x[r0:r1, t]
        gxt = gx[r0:r1, t]
        _mm(d, w_ih, gxt, gxt if accumulate else none)
        _mm(d.T, xs, gw_ih, gw_ih)
        if not first:
            _mm(d, w_hh, dh, none)
            _mm(d.T, hs[tp, r0:r1], gw_hh, gw_hh)
        for b in range(nb):
            gb += d[b]


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
    gb = np.zeros((n_blocks, g4), dtype=hs.dtype)
    if n_blocks == 1:
        _lstm_rows_bwd(
            gh, x, w_ih, w_hh, hs, cs, gates, reverse, 0, b_n, gx, accumulate, gw_ih[0], gw_hh[0], gb[0]
        )
    else:
        for i in numba.prange(n_blocks):
            r0, r1 = block_bounds(i, n_blocks, b_n)
            _lstm_rows_bwd(
                gh, x, w_ih, w_hh, hs, cs, gates, reverse, r0, r1, gx, accumulate, gw_ih[i], gw_hh[i], gb[i]
            )
        for i in range(1, n_blocks):
            gw_ih[0] += gw_ih[i]
            gw_hh[0] += gw_hh[i]
            gb[0] += gb[i]
    gb_ih = gb[0].copy() if b_ih.size > 0 else np.zeros_like(b_ih)
    gb_hh = gb[0].copy() if b_hh.size > 0 else np.zeros_like(b_hh)
    return gw_ih[0].copy(), gw_hh[0].copy(), gb_ih, gb_hh


# --------------------------------------------------------------------------- gru
@numba.njit(cache=True)
def _gru_dir_fwd(xt, b_n, w_ih, w_hh, b_ih, b_hh, reverse, hs, gates, hns):
    """Fills hs [T, B, H], the activated gates [T, B, 3H] and hns = W_hn h + b_hn [T, B, H]."""
    t_len, _, hd = hs.shape
    xw = _input_proj(xt, w_ih, b_ih, b_hh, 2 * hd).reshape(t_len, b_n, 3 * hd)
    b_hn = np.zeros(hd, dtype=xt.dtype)
    if b_hh.size > 0:
        b_hn[:] = b_hh[2 * hd :]
    a = np.empty((b_n, 3 * hd), dtype=xt.dtype)
    pre_rz = np.empty((b_n, 2 * hd), dtype=xt.dtype)
    rz = np.empty((b_n, 2 * hd), dtype=xt.dtype)
    pre_n = np.empty((b_n, hd), dtype=xt.dtype)
    n = np.empty((b_n, hd), dtype=xt.dtype)
    h = np.zeros((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        np.dot(h, w_hh.T, a)
        for b in range(b_n):
            for j in range(2 * hd):
                pre_rz[b, j] = xw[t, b, j] + a[b, j]
        vsigmoid(pre_rz.reshape(-1), rz.reshape(-1))
        for b in range(b_n):
            for j in range(hd):
                # r gates W_hn h + b_hn, i.e. *after* the hidden bias (torch)
                hn = a[b, 2 * hd + j] + b_hn[j]
                hns[t, b, j] = hn
                pre_n[b, j] = xw[t, b, 2 * hd + j] + rz[b, j] * hn
        vtanh(pre_n.reshape(-1), n.reshape(-1))
        for b in range(b_n):
            for j in range(hd):
                z = rz[b, hd + j]
                hs[t, b, j] = (1.0 - z) * n[b, j] + z * h[b, j]
                gates[t, b, j] = rz[b, j]
                gates[t, b, hd + j] = z
                gates[t, b, 2 * hd + j] = n[b, j]
        h = hs[t]


@numba.njit(cache=True)
def _gru_dir_bwd(gh, xt, w_ih, w_hh, b_ih, b_hh, hs, gates, hns, reverse):
    t_len, b_n, hd = hs.shape
    hp = _shift_prev(hs, reverse)
    dgi = np.empty((t_len, b_n, 3 * hd), dtype=xt.dtype)  # grads of the x-side pre-activations
    dgh = np.empty((t_len, b_n, 3 * hd), dtype=xt.dtype)  # grads of the h-side pre-activations
    dh = np.zeros((b_n, hd), dtype=xt.dtype)
    direct = np.empty((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        for b in range(b_n):
            for j in range(hd):
                r = gates[t, b, j]
                z = gates[t, b, hd + j]
                n = gates[t, b, 2 * hd + j]
                dhv = gh[t, b, j] + dh[b, j]
                dnp = dhv * (1.0 - z) * (1.0 - n * n)
                drp = dnp * hns[t, b, j] * r * (1.0 - r)
                dzp = dhv * (hp[t, b, j] - n) * z * (1.0 - z)
                dgi[t, b, j] = drp
                dgi[t, b, hd + j] = dzp
                dgi[t, b, 2 * hd + j] = dnp
                dgh[t, b, j] = drp
                dgh[t, b, hd + j] = dzp
                dgh[t, b, 2 * hd + j] = dnp * r
                direct[b, j] = dhv * z
        dh = np.dot(dgh[t], w_hh) + direct
    dgi2 = dgi.reshape(t_len * b_n, 3 * hd)
    dgh2 = dgh.reshape(t_len * b_n, 3 * hd)
    hp2 = hp.reshape(t_len * b_n, hd)
    gxt = np.dot(dgi2, w_ih)
    return gxt, np.dot(dgi2.T, xt), np.dot(dgh2.T, hp2), _col_sums(dgi2, b_ih), _col_sums(dgh2, b_hh)


# --------------------------------------------------------------------------- python wrappers
def _time_major(x: np.ndarray) -> np.ndarray:
    b_n, t_len, n_in = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(t_len * b_n, n_in)


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


def _finish_bwd(x, gxts, grads_dirs, p1, into_x):
    """Sums the directions' time-major input gradients into gx[B,T,I] (``into_x`` or a new
    array) in one strided pass."""
    b_n, t_len, n_in = x.shape
    if into_x is None:
        into_x = np.empty_like(x)
    gx_tm = into_x.transpose(1, 0, 2)  # [T,B,I] view
    g0 = gxts[0].reshape(t_len, b_n, n_in)
    if len(gxts) == 1:
        gx_tm[...] = g0
    else:
        np.add(g0, gxts[1].reshape(t_len, b_n, n_in), out=gx_tm)
    g1 = grads_dirs[1] if len(grads_dirs) == 2 else tuple(np.zeros_like(p) for p in p1)
    return (into_x, *grads_dirs[0], *g1)


def rnn_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, out=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    for d, (p, rev) in enumerate(dirs):
        _rnn_dir_fwd(xt, b_n, *p, rev, bool(nonlinearity_tanh), hs[d])
    return _assemble_output(hs, last, out), hs


def rnn_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, saved0, out=None, into_x=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    res = [
        _rnn_dir_bwd(ghs[d], xt, *p, saved0[d], rev, bool(nonlinearity_tanh))
        for d, (p, rev) in enumerate(dirs)
    ]
    return _finish_bwd(x, [r[0] for r in res], [r[1:] for r in res], p1, into_x)


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
    gx = np.empty_like(x) if into_x is None else into_x
    grads = [
        _lstm_dir_bwd(ghs[d], x, *p, saved0[d], saved1[d], saved2[d], rev, gx, d > 0)
        for d, (p, rev) in enumerate(dirs)
    ]
    g1 = grads[1] if len(grads) == 2 else tuple(np.zeros_like(p) for p in p1)
    return (gx, *grads[0], *g1)


def gru_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, out=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    gates = np.empty((len(dirs), t_len, b_n, 3 * hd), dtype=x.dtype)
    hns = np.empty_like(hs)
    for d, (p, rev) in enumerate(dirs):
        _gru_dir_fwd(xt, b_n, *p, rev, hs[d], gates[d], hns[d])
    return _assemble_output(hs, last, out), hs, gates, hns


def gru_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, saved0, saved1, saved2, out=None, into_x=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    res = [
        _gru_dir_bwd(ghs[d], xt, *p, saved0[d], saved1[d], saved2[d], rev) for d, (p, rev) in enumerate(dirs)
    ]
    return _finish_bwd(x, [r[0] for r in res], [r[1:] for r in res], p1, into_x)
