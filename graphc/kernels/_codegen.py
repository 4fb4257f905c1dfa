"""Optimise and emit each kernel once at -O3, not each helper again on its own.

Numba compiles every njit function into its own LLVM module, optimises it at -O3 and emits
machine code for it. A helper called from another njit function is compiled during the
caller's type inference, and its optimised IR is then linked into the caller's module, where
the caller's -O3 pass optimises it again, inlined: the helper's own -O3 pass is work nobody
runs (its standalone machine code is only called if Python calls the helper itself). With the
kernels' many small helpers (block functions, row sums, SIMD math) that pass was ~13% of a cold
compile: the transformer's 18 kernels took 18.8 s of CPU in one process, 16.4 s without it,
with the same kernel speeds (``python -m graphc.kernels.bench``, alternating runs).

So a function compiled while another one is compiling (a callee) gets only Numba's cheap
module pass — the -O0 inlining that prepares reference-count pruning — and the functions
compiled from the top (the kernels the driver calls, what ``graphc.kernels.precompile``
compiles) get Numba's full pipeline as before. A helper later called from Python with the same
types runs its lightly optimised code: correct, slower (the kernel tests do; training does not).

This replaces one method of Numba's code library (``CPUCodeLibrary._optimize_final_module``)
and listens to Numba's "numba:compile" events; if either is not there (another Numba), or the
cheap pass cannot be built, Numba's own method runs.

The same holds for a callee's machine code: Numba emits every library's code as soon as it is
compiled (its Python entry point needs an address), and a callee's module holds the code of
everything below it, so a kernel five calls deep had its innermost helpers emitted five times
over, all at LLVM's -O3 instruction selection and register allocation: ~2 s of the
transformer's ~16 s of compile CPU. Only a Python call of the helper itself (a test) or a
later process loading it from the disk cache to call it runs that code; a caller links the
helper's IR, never its machine code. So callees' libraries belong to a second JIT engine whose
target machine emits at -O0 (fast instruction selection, no machine-level optimisation):
correct code, slower when called from Python, ~0.6 s instead of ~2 s (the serial compile of
the transformer's kernel list: 16.0 -> 15.0 s of CPU, mean of 8 alternating runs at load 1.4-2.9).
A kernel the driver calls is compiled from the top and keeps Numba's own engine. As with the
pass choice, a function compiled first as a callee and later called from Python with the same
types keeps its callee code, in this process and, through the disk cache, in later ones: so no
kernel the driver calls is called by another kernel (conv1d calls conv2d's bodies, not
conv2d_fwd; tests/kernels/test_codegen.py checks the library).

And a callee, or any function of graphc's, gets no C-ABI wrapper: Numba lowers, optimises and
emits one for every function (``Lower.create_cfunc_wrapper``), for its use as a first-class
function value (a ``types.FunctionType`` argument), which no graphc kernel is; its Python entry
point (the CPython wrapper) stays. That wrapper's IR text, parsing, function passes and machine
code were ~1 s of the transformer's compile in the callees (their add_ir_module 2.4-2.7 ->
1.7-1.8 s, finalize 1.2-1.3 -> 0.8 s; whole list 16.3/17.7 -> 14.9/16.0 s, alternating, load
1.1-1.7) and ~0.5 s in the kernels themselves (add_ir_module 1.32-1.38 -> 0.93-1.10 s,
finalize 3.68-3.88 -> 3.40-3.75 s).
"""

import threading
from collections import Counter

_local = threading.local()  # Numba compiles under a global lock; per thread all the same
# Libraries optimised each way in this process, by name (one entry per function compiled).
optimised = {"full": Counter(), "cheap": Counter()}
# Libraries whose machine code the -O0 engine emitted (callees), by name.
emitted = {"o0": Counter()}


def _depth() -> int:
    return getattr(_local, "depth", 0)


def install() -> bool:
    """Patch Numba once per process; False if this Numba does not have what it needs."""
    try:
        from numba.core import codegen, event
    except ImportError:
        return False
    library = getattr(codegen, "CPUCodeLibrary", None)
    numba_optimize = getattr(library, "_optimize_final_module", None)
    if numba_optimize is None or not hasattr(event, "Listener"):
        return False
    if getattr(numba_optimize, "graphc", False):
        return True

    class Depth(event.Listener):
        def on_start(self, ev):
            _local.depth = _depth() + 1

        def on_end(self, ev):
            _local.depth = _depth() - 1

    def cheap_only(lib) -> None:
        passes, builder = lib._codegen._module_pass_manager(
            loop_vectorize=False, slp_vectorize=False, opt=0, cost="cheap"
        )
        passes.run(lib._final_module, builder)
        if not codegen.config.LLVM_REFPRUNE_PASS:
            lib._final_module = codegen.remove_redundant_nrt_refct(lib._final_module)

    def optimize_final_module(self):
        if _depth() > 1:  # a callee: its caller's -O3 pass optimises this code, inlined
            try:
                cheap_only(self)
            except Exception:  # noqa: BLE001 - another Numba's internals: its own pass
                pass
            else:
                optimised["cheap"][self.name] += 1
                return
        optimised["full"][self.name] += 1
        numba_optimize(self)

    optimize_final_module.graphc = True
    event.register("numba:compile", Depth())
    library._optimize_final_module = optimize_final_module
    _emit_callees_at_o0(codegen)
    _no_cfunc_wrapper_for_callees()
    return True


def _no_cfunc_wrapper_for_callees() -> bool:
    """Skip Numba's C-ABI wrapper of a function compiled for a caller (see the module doc)."""
    try:
        from numba.core import lowering
    except ImportError:
        return False
    numba_wrapper = getattr(lowering.Lower, "create_cfunc_wrapper", None)
    if numba_wrapper is None:
        return False

    def create_cfunc_wrapper(self):
        # graphc's own functions (its kernel modules and generated ones, graphc_fused_*) at any
        # depth; any other function only when compiled for a caller (a user's function called
        # from Python may be a first-class value)
        if _depth() > 1 or str(getattr(self.fndesc, "modname", "")).startswith("graphc"):
            return None
        return numba_wrapper(self)

    lowering.Lower.create_cfunc_wrapper = create_cfunc_wrapper
    return True


def _emit_callees_at_o0(codegen) -> bool:
    """Create the libraries of functions compiled for a caller in a second JIT engine that
    emits machine code at -O0; False (Numba's engine for all) if this Numba lacks the parts."""
    jit = getattr(codegen, "JITCPUCodegen", None)
    numba_create = getattr(jit, "create_library", None)
    if numba_create is None or not hasattr(jit, "_customize_tm_options"):
        return False

    class CalleeCodegen(jit):
        def _customize_tm_options(self, options):
            super()._customize_tm_options(options)
            options["opt"] = 0  # the target machine's: instruction selection and after

    try:
        callees = CalleeCodegen("graphc.callees")
    except Exception:  # noqa: BLE001 - another Numba's internals: one engine as before
        return False

    def create_library(self, name, **kwargs):
        # Numba's own CPU engine only (not another target's subclass); the second engine has
        # the same CPU, features and cache key (magic_tuple), only another codegen level
        if _for_caller() and type(self) is jit:
            emitted["o0"][name] += 1
            self = callees
        return numba_create(self, name, **kwargs)

    numba_unserialize = jit.unserialize_library

    def unserialize_library(self, serialized):
        _local.loading = True
        try:
            return numba_unserialize(self, serialized)
        finally:
            _local.loading = False

    jit.create_library = create_library
    jit.unserialize_library = unserialize_library
    return True


def _for_caller() -> bool:
    """Whether the library being created is a callee's: one compiled while another function
    compiles (depth 2 and more: the callee's own compile event counts), or one loaded from the
    disk cache while a function compiles (depth 1: Numba loads a cached overload before, not
    inside, its compile event). A cached callee loaded into Numba's engine would define its
    symbols there, and a kernel compiled in that process, whose module holds its own -O3 copy
    of the callee (linked IR it did not inline), then ran the cached copy instead: the -O0 code
    of whichever process compiled the callee first (the register-tiled GEMM at 30 instead of
    180 GFLOP/s)."""
    depth = _depth()
    return depth > 1 or (depth == 1 and getattr(_local, "loading", False))
