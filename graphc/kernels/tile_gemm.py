"""A register-tiled GEMM for the narrow products of the recurrent kernels.

The recurrence is a chain of small products ([B, H] x [H, 4H] per step, B a block of batch
rows), where OpenBLAS pays a per-call packing cost that a product this small does not
amortise: on [32, 128] x [128, 512] it runs at 135 GFLOP/s here with its AVX-512 kernels and
85 with the AVX2 ones that OPENBLAS_CORETYPE=Haswell forces. `mm` instead tiles the product into blocks of 8 rows x 3 vector
registers of columns whose partial sums stay in 24 registers for a whole pass over K; LLVM
compiles it for the host's widest vectors (AVX-512 here: 230-255 GFLOP/s on the LSTM's
products, also on the large ones made after the recurrence, where OpenBLAS reaches 190-240). It reads any row strides, so it multiplies time slices of [B, T, I]
arrays and transposed gate gradients in place, and it can start from a given matrix (a bias
row repeated, the x-side part of a step) instead of zero.

    mm(a, b, c, init)          c = init + a @ b   (init zero-size: c = a @ b)
    mm_bias(a, b, c, bias)     c = a @ b + bias   (bias [N] added to every row)

a may have any strides; b, c and init need unit stride along their last axis. Single-threaded:
callers split the rows over graphc's thread pool.
"""

import numba
import numpy as np
from llvmlite import ir
from llvmlite.binding import get_host_cpu_features
from numba.core import cgutils, types
from numba.extending import intrinsic

_AVX512 = "+avx512f" in get_host_cpu_features().flatten()
_VEC_BYTES = 64 if _AVX512 else 32
# A tile is 8 rows x 3 vector registers of columns: 24 partial sums and 3 vectors of b in 27
# of the 32 AVX-512 registers, 24 FMAs per 8 broadcasts and 3 loads (4 x 4 tiles, 16 FMAs per
# 8 loads, ran at 185 GFLOP/s here). AVX2 has 16 registers: there tiles are 4 x 3. Single-row
# tiles take the rows left over, 2- and 1-vector tiles the columns. (No 4-row tiles for the
# rows left over on AVX-512: every tile variant is machine code each caller compiles, and
# with them the attention kernels' cold compile took ~0.5 s of CPU more.)
_MR = 8 if _AVX512 else 4  # rows per tile (a global: Numba reads it as a literal)
_KC = 128  # K per pass: the tile's [_KC, 3 vectors] slice of b (24 KB) stays in L1


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
    """`mm` on addresses and strides: one compiled body per dtype, whatever the callers'
    array layouts (each tile variant is a sizeable piece of machine code)."""
    lanes = _VEC_BYTES // es
    for k0 in range(0, max(k_len, 1), _KC):  # one pass even for k_len 0: c = init or 0
        kc = min(_KC, k_len - k0)
        if k0 > 0:
            pi, ldi = pc, ldc  # later passes add to what the first wrote
        j0 = 0
        while j0 < n:
            cols = n - j0  # 3, 2 or 1 vectors of columns; past the last vector, single columns
            nv = 3 if cols >= 3 * lanes else (2 if cols >= 2 * lanes else 1)
            wide = cols >= lanes
            bo = pb + (k0 * ldb + j0) * es
            i0 = 0
            while i0 < m:
                ao = pa + (i0 * a_rs + k0 * a_ks) * es
                co = pc + (i0 * ldc + j0) * es
                io = pi + (i0 * ldi + j0) * es if pi != 0 else 0
                rows = m - i0
                if rows >= _MR:
                    if not wide:
                        _tile(dtype, _MR, 1, False, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    elif nv == 3:
                        _tile(dtype, _MR, 3, True, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    elif nv == 2:
                        _tile(dtype, _MR, 2, True, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
                    else:
                        _tile(dtype, _MR, 1, True, io, ldi, co, ldc, ao, a_rs, a_ks, bo, ldb, kc)
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
def mm(a, b, c, init):
    """c = init + a @ b (c = a @ b when init is empty; init may be c itself). a may have any
    strides; b, c and init need contiguous rows (unit stride along their last axis)."""
    es = a.itemsize
    has_init = init.size > 0
    _mm_core(
        a.dtype, es, a.shape[0], b.shape[1], a.shape[1],
        np.intp(a.ctypes.data), a.strides[0] // es, a.strides[1] // es,
        np.intp(b.ctypes.data), b.strides[0] // es,
        np.intp(c.ctypes.data), c.strides[0] // es,
        np.intp(init.ctypes.data) if has_init else 0, init.strides[0] // es if has_init else 0,
    )  # fmt: skip
    return c


@numba.njit(cache=True)
def mm_bias(a, b, c, bias):
    """c = a @ b + bias, the bias row [N] added to every row of c (read as a start matrix
    whose rows all lie at the same address: row stride 0)."""
    es = a.itemsize
    _mm_core(
        a.dtype, es, a.shape[0], b.shape[1], a.shape[1],
        np.intp(a.ctypes.data), a.strides[0] // es, a.strides[1] // es,
        np.intp(b.ctypes.data), b.strides[0] // es,
        np.intp(c.ctypes.data), c.strides[0] // es,
        np.intp(bias.ctypes.data), 0,
    )  # fmt: skip
    return c
