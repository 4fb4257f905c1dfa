"""graphc's parallel loops, and the row-blocked linear-layer products built on them (see
`graphc.kernels.threads` for the one thread pool).

`run_blocks(block, n_blocks, args)` calls `block(i, *args)` for i in range(n_blocks) on Numba's
threading layer, one call per thread's share. It replaces `prange`: a `parallel=True` function
runs Numba's parfor passes and compiles its loop body a second time as a gufunc, which cost
~0.4 s per specialisation (measured: a column sum 0.25 s with run_blocks, 0.70 s with prange;
~12 s of the transformer's 37 s cold compile was parallel wrappers). Here the block is an
ordinary njit function, compiled once, and the loop is a few lines of LLVM IR: a trampoline
with the gufunc calling convention that Numba's `numba_parallel_for` (the entry point its own
parfors call) runs on each thread. One block runs in the calling thread with no parallel
region at all: a region of one iteration still wakes every thread and waits for all of them
(measured with the other core busy: 2.4 µs median but 1.4 ms mean for an empty one-iteration
region, against 0.2 µs serial). A block must not call run_blocks itself.

Products: each is split into one block of rows per thread; each block is a single-threaded
BLAS call on contiguous rows (BLAS itself stays on one thread), so the only threads are
Numba's. A block smaller than `_MIN_ROWS` rows costs more in hand-off than it saves: small
products stay one call.

    linear_rows(x, w, bias, y)       y[:] = x @ w.T + bias     (linear, attention projections)
    linear_rows_bwd(g, x, w, gx)     gx[:] = g @ w; returns g.T @ x
    col_sums(g, out)                 out[:] = g.sum(0), in float64 (a bias gradient)
"""

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.ufunc import parallel as _numba_parallel

_MIN_ROWS = 32

# `numba.get_num_threads()` inside njit code calls the threading layer through a ctypes
# pointer, which makes every caller uncacheable; this intrinsic calls the same C function by
# its symbol name, which a cached kernel resolves when it loads. The symbol exists once the
# threading layer is launched (as do `numba_parallel_for` and `get_num_threads`, which
# run_blocks calls by name), so launch it before any cached kernel can load.
_numba_parallel._launch_threads()
_thread_count = _numba_parallel._iget_num_threads


@intrinsic
def run_blocks(typingctx, block, n_blocks, args):
    """block(i, *args) for i in range(n_blocks): on the thread pool, or here if n_blocks is 1.
    `block` is an njit function (its result is ignored), `args` a tuple."""
    if not (
        isinstance(block, types.Dispatcher)
        and isinstance(n_blocks, types.Integer)
        and isinstance(args, types.BaseTuple)
    ):
        return None
    # literal arguments are passed as their plain types (same data), so a block compiles once
    block_sig = typingctx.resolve_function_type(block, (types.intp, *map(types.unliteral, args.types)), {})
    if block_sig is None:
        return None

    def codegen(context, builder, sig, llargs):
        compiled = block.dispatcher.overloads[tuple(block_sig.args)]
        fndesc = compiled.fndesc
        context.add_linking_libs([compiled.library])
        module = builder.module
        intp = context.get_value_type(types.intp)
        bytes_ = ir.IntType(8).as_pointer()
        error = ir.IntType(32)
        # what the threads share: the argument tuple and a flag a failed block sets
        shared_ty = ir.LiteralStructType([context.get_value_type(args), error])
        n = context.cast(builder, llargs[1], sig.args[1], types.intp)
        values = llargs[2]
        count = len(args.types)

        def call_block(b, i, tuple_value, borrowed=False):
            elements = [b.extract_value(tuple_value, k) for k in range(count)]
            if borrowed:
                # the workers get the arrays without their reference counts (the caller keeps
                # them alive), as Numba's own parallel loops do: otherwise every call in a block
                # counts references on the same arrays as the other threads, and the atomic
                # updates bounce one cache line between the cores (an attention forward's
                # region measured 0.78 ms instead of 0.50)
                for k, ty in enumerate(args.types):
                    if isinstance(ty, types.Array):
                        array = context.make_array(ty)(context, b, value=elements[k])
                        array.meminfo = cgutils.get_null_value(array.meminfo.type)
                        array.parent = cgutils.get_null_value(array.parent.type)
                        elements[k] = array._getvalue()
            callee = context.declare_function(b.module, fndesc)
            return context.call_conv.call_function(b, callee, fndesc.restype, fndesc.argtypes, [i, *elements])

        # the trampoline: void (char **args, intp *dims, intp *steps, void *data), the gufunc
        # convention; args[0] is the first block's index disguised as a pointer (its step is
        # 1), dims[0] how many consecutive blocks this call runs
        tramp_ty = ir.FunctionType(
            ir.VoidType(), [bytes_.as_pointer(), intp.as_pointer(), intp.as_pointer(), bytes_]
        )
        tramp = cgutils.get_or_insert_function(module, tramp_ty, f"graphc_blocks.{fndesc.mangled_name}")
        if tramp.is_declaration:
            tramp.linkage = "internal"
            tb = ir.IRBuilder(tramp.append_basic_block("entry"))
            argv, dims, _, data = tramp.args
            first = tb.ptrtoint(tb.load(argv), intp)
            shared = tb.bitcast(data, shared_ty.as_pointer())
            tuple_value = tb.load(tb.gep(shared, [error(0), error(0)]))
            with cgutils.for_range(tb, tb.load(dims)) as loop:
                status, _ = call_block(tb, tb.add(first, loop.index), tuple_value, borrowed=True)
                with tb.if_then(status.is_error, likely=False):
                    tb.store(error(1), tb.gep(shared, [error(0), error(1)]))
            tb.ret_void()

        one = builder.icmp_signed("==", n, intp(1))
        with builder.if_else(one) as (serial, threaded):
            with serial:  # in this thread, exceptions propagate as from any call
                status, _ = call_block(builder, intp(0), values)
                with builder.if_then(status.is_error, likely=False):
                    context.call_conv.return_status_propagate(builder, status)
            with threaded:
                shared = cgutils.alloca_once(builder, shared_ty)
                builder.store(values, builder.gep(shared, [error(0), error(0)]))
                flag = builder.gep(shared, [error(0), error(1)])
                builder.store(error(0), flag)
                argv = cgutils.alloca_once_value(builder, bytes_(None))
                dims = cgutils.alloca_once_value(builder, n)
                steps = cgutils.alloca_once_value(builder, intp(1))
                parallel_for = cgutils.get_or_insert_function(
                    module, ir.FunctionType(ir.VoidType(), [bytes_] * 5 + [intp] * 3), "numba_parallel_for"
                )
                threads = cgutils.get_or_insert_function(
                    module, ir.FunctionType(ir.IntType(types.intp.bitwidth), []), "get_num_threads"
                )
                as_bytes = [builder.bitcast(v, bytes_) for v in (tramp, argv, dims, steps, shared)]
                with builder.if_then(builder.icmp_signed(">", n, intp(1))):
                    # without the GIL: a block's first BLAS call makes Numba look the BLAS
                    # function up under the GIL, which a worker would wait for forever
                    python = context.get_python_api(builder)
                    gil = python.gil_ensure()
                    saved = python.save_thread()
                    builder.call(parallel_for, [*as_bytes, intp(0), intp(1), builder.call(threads, [])])
                    python.restore_thread(saved)
                    python.gil_release(gil)
                with builder.if_then(builder.icmp_signed("!=", builder.load(flag), error(0)), likely=False):
                    message = f"a block of {block.dispatcher.py_func.__qualname__} raised on a worker thread"
                    context.call_conv.return_user_exc(builder, RuntimeError, (message,))
        return context.get_dummy_value()

    return types.none(block, n_blocks, args), codegen


# row_blocks and block_bounds are inlined into their callers: Numba would otherwise compile a
# function of its own per literal `min_rows` (six in the transformer) and per caller's types.
@numba.njit(cache=True, inline="always")
def row_blocks(rows, min_rows=_MIN_ROWS):
    """How many blocks to split `rows` rows into: one per thread, none under `min_rows`."""
    return max(1, min(_thread_count(), rows // min_rows))


@numba.njit(cache=True, inline="always")
def block_bounds(i, n_blocks, rows):
    return i * rows // n_blocks, (i + 1) * rows // n_blocks


@numba.njit(cache=True)
def add_into(acc, x):
    """acc[:len(x)] += x for 2-D arrays (numba's `acc[:n] += x` takes its generic ufunc path,
    ~8x slower; in a parallel function an array expression also becomes a region of its own)."""
    w = x.shape[1]
    for r in range(x.shape[0]):
        src, dst = x[r], acc[r]
        for c in range(w):
            dst[c] += src[c]


@numba.njit(cache=True)
def _linear_block(i, n_blocks, x, w, bias, y):
    r0, r1 = block_bounds(i, n_blocks, x.shape[0])
    np.dot(x[r0:r1], w.T, y[r0:r1])
    if bias.size > 0:
        for r in range(r0, r1):
            row = y[r]
            for j in range(y.shape[1]):
                row[j] += bias[j]


@numba.njit(cache=True)
def linear_rows(x, w, bias, y):
    """y[:] = x @ w.T (+ bias, unless zero-size); returns y. One parallel region: each block
    of rows is one BLAS call with its bias added."""
    n_blocks = row_blocks(x.shape[0])
    run_blocks(_linear_block, n_blocks, (n_blocks, x, w, bias, y))
    return y


@numba.njit(cache=True)
def _linear_bwd_block(i, n_blocks, g, x, w, gx, gw, part):
    r0, r1 = block_bounds(i, n_blocks, g.shape[0])
    np.dot(g[r0:r1], w, gx[r0:r1])
    np.dot(g[r0:r1].T, x[r0:r1], gw if i == 0 else part[i - 1])


@numba.njit(cache=True)
def linear_rows_bwd(g, x, w, gx):
    """gx[:] = g @ w and returns g.T @ x (the weight's gradient), both in one parallel region
    of row blocks; the blocks' parts of the weight gradient are added after it."""
    n_blocks = row_blocks(g.shape[0])
    gw = np.empty((w.shape[0], x.shape[1]), dtype=x.dtype)
    part = np.empty((n_blocks - 1, w.shape[0], x.shape[1]), dtype=x.dtype)
    run_blocks(_linear_bwd_block, n_blocks, (n_blocks, g, x, w, gx, gw, part))
    for p in range(n_blocks - 1):
        add_into(gw, part[p])
    return gw


@numba.njit(cache=True)
def col_sums(g, out):
    """out[o] = sum of g[:, o] (a bias gradient), in float64: a block of rows per thread, then
    the blocks' partial sums in order."""
    n_blocks = row_blocks(g.shape[0], 256)
    partial = np.zeros((n_blocks, g.shape[1]))
    run_blocks(_col_sums_block, n_blocks, (n_blocks, g, partial))
    for o in range(g.shape[1]):
        tot = 0.0
        for i in range(n_blocks):
            tot += partial[i, o]
        out[o] = tot
    return out


@numba.njit(cache=True)
def _col_sums_block(i, n_blocks, g, partial):
    r0, r1 = block_bounds(i, n_blocks, g.shape[0])
    acc = partial[i]
    for r in range(r0, r1):
        row = g[r]  # a row view: g[r, o] would not vectorise (its negative-index checks)
        for o in range(row.size):
            acc[o] += row[o]
