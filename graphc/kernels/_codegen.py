"""Optimise each kernel once at -O3, not each helper again on its own.

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
"""

import threading
from collections import Counter

_local = threading.local()  # Numba compiles under a global lock; per thread all the same
# Libraries optimised each way in this process, by name (one entry per function compiled).
optimised = {"full": Counter(), "cheap": Counter()}


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
    return True
