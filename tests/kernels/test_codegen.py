"""graphc.kernels._codegen: a helper compiled for its caller gets Numba's cheap pass only and
its machine code from the -O0 engine, the function compiled from the top the full pass and
Numba's engine, and the caller's machine code is still optimised (its helper's loop inlined and
vectorised)."""

import platform
import re

import numba
import numpy as np
import pytest

import graphc.kernels  # noqa: F401 - installs the pass choice
from graphc.kernels import _codegen


def _fresh_pair():
    """A caller and its helper nobody compiled yet (cache=False: compiled in this process)."""

    @numba.njit
    def scaled_sum(a, k):
        s = 0.0
        for j in range(a.size):
            s += a[j] * k
        return s

    @numba.njit
    def caller(a):
        return scaled_sum(a, 2.0) + 1.0

    return caller, scaled_sum


def test_installed_on_this_numba():
    assert _codegen.install()  # already installed at import: idempotent, and True here


def test_a_callee_gets_the_cheap_pass_and_its_caller_the_full_one():
    caller, scaled_sum = _fresh_pair()
    names = (caller.__qualname__, scaled_sum.__qualname__)
    before = {kind: [counts[n] for n in names] for kind, counts in _codegen.optimised.items()}
    a = np.arange(1000, dtype=np.float64)
    assert caller(a) == 2.0 * a.sum() + 1.0
    after = {kind: [counts[n] for n in names] for kind, counts in _codegen.optimised.items()}
    grew = {kind: [n1 - n0 for n0, n1 in zip(before[kind], after[kind], strict=True)] for kind in before}
    assert grew == {"full": [1, 0], "cheap": [0, 1]}  # caller full, its helper cheap


def test_a_callees_machine_code_comes_from_the_o0_engine_and_still_runs_from_python():
    caller, scaled_sum = _fresh_pair()
    before = _codegen.emitted["o0"].copy()
    a = np.arange(100, dtype=np.float64)
    assert caller(a) == 2.0 * a.sum() + 1.0
    grew = {n for n, k in _codegen.emitted["o0"].items() if k > before[n]}
    assert any(scaled_sum.__qualname__ in n for n in grew)  # the helper's library
    assert not any(caller.__qualname__ in n and scaled_sum.__qualname__ not in n for n in grew)
    # the helper's own (callee) code, called from Python with the same types: correct
    assert scaled_sum(a, 2.0) == 2.0 * a.sum()
    assert len(scaled_sum.signatures) == 1


def test_a_callee_gets_no_c_abi_wrapper_and_its_caller_keeps_its_own():
    caller, scaled_sum = _fresh_pair()
    a = np.arange(10, dtype=np.float64)
    assert caller(a) == 2.0 * a.sum() + 1.0

    def has_cfunc_wrapper(disp) -> bool:
        (cres,) = disp.overloads.values()
        return any(f.name == cres.fndesc.llvm_cfunc_wrapper_name for f in cres.library.get_defined_functions())

    # a function of this test module (not graphc's) keeps it when compiled from Python
    assert has_cfunc_wrapper(caller) and not has_cfunc_wrapper(scaled_sum)


def test_a_graphc_function_gets_no_c_abi_wrapper_even_from_python():
    def square_sum(a):
        s = 0.0
        for j in range(a.size):
            s += a[j] * a[j]
        return s

    square_sum.__module__ = "graphc.kernels.probe"  # as if defined there (not cached: fresh)
    kernel = numba.njit(square_sum)
    x = np.arange(5, dtype=np.float64)
    assert kernel(x) == 30.0
    (cres,) = kernel.overloads.values()
    names = {f.name for f in cres.library.get_defined_functions()}
    assert cres.fndesc.llvm_cpython_wrapper_name in names
    assert cres.fndesc.llvm_cfunc_wrapper_name not in names


def test_a_function_called_from_python_gets_the_full_pass():
    _, scaled_sum = _fresh_pair()
    full_before = _codegen.optimised["full"][scaled_sum.__qualname__]
    assert scaled_sum(np.ones(8), 3.0) == 24.0
    assert _codegen.optimised["full"][scaled_sum.__qualname__] == full_before + 1


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
def test_the_callers_machine_code_vectorises_the_inlined_helper_loop():
    @numba.njit
    def axpy(x, y, k):
        for j in range(x.size):
            y[j] += k * x[j]

    @numba.njit
    def kernel(x, y):
        axpy(x, y, np.float32(2.0))
        return y

    x = np.arange(64, dtype=np.float32)
    y = np.ones(64, dtype=np.float32)
    np.testing.assert_array_equal(kernel(x, y.copy()), 1.0 + 2.0 * x)
    asm = kernel.inspect_asm(kernel.signatures[0])
    packed = [ln for ln in asm.splitlines() if re.search(r"\tv?(add|mul|fmadd\w*)ps\s.*%[xyz]mm", ln)]
    assert packed, "the inlined axpy loop should use packed float32 instructions"


def test_no_kernel_the_driver_calls_is_another_kernels_callee():
    """A kernel compiled first as another's callee keeps Numba's quick code for that signature,
    and the driver would later call it (conv1d called conv2d_fwd with conv2d's own argument
    types): the kernels the ops name (graphc.ops, `<kernel>_fwd`/`_bwd`) are never called from
    njit code; shared bodies are helpers of their own."""
    from pathlib import Path

    from graphc.ops import OPS

    names = {f"{op.kernel.name}_{kind}" for op in OPS.values() if op.kernel for kind in ("fwd", "bwd")}
    calls = []
    for path in sorted((Path(_codegen.__file__).parent).glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for name in names:
                if re.search(rf"(?<![\w.]){name}\(", line) and not line.lstrip().startswith("def "):
                    calls.append(f"{path.name}:{n}: {line.strip()}")
    assert len(names) > 50 and not calls, calls


_CACHED_PAIR = '''
import numba
import numpy as np
import graphc.kernels  # installs the engine choice
from graphc.kernels import _codegen

@numba.njit(cache=True)
def helper(a, k):
    s = 0.0
    for j in range(a.size):
        s += a[j] * k
    return s

@numba.njit(cache=True)
def first(a):
    return helper(a, 2.0) + 1.0

@numba.njit(cache=True)
def second(a):
    return helper(a, 2.0) - 1.0

if __name__ == "__main__":
    import sys
    a = np.arange(100, dtype=np.float64)
    fn, expect = (first, 9901.0) if sys.argv[1] == "first" else (second, 9899.0)
    assert fn(a) == expect
    print(",".join(n for n in _codegen.emitted["o0"] if "helper" in n))
'''


def test_a_callee_loaded_from_the_disk_cache_for_a_caller_goes_to_the_o0_engine(tmp_path):
    """A process compiles `first` and caches its callee `helper` (its -O0 code); the next
    compiles `second`, which loads `helper` from the cache. Loaded into Numba's own engine, the
    cached -O0 code would define helper's symbol there, and `second` (which holds its own -O3
    copy of helper's IR) would call it: the register-tiled GEMM ran at 30 instead of 180
    GFLOP/s that way. Loaded for a caller, it belongs to the callee engine like a compiled one."""
    import os
    import subprocess
    import sys

    (tmp_path / "pair.py").write_text(_CACHED_PAIR)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run(which: str) -> str:
        done = subprocess.run(
            [sys.executable, "pair.py", which], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run("first")  # compiled for its caller: the callee engine
    assert run("second")  # loaded from the cache for its caller: the callee engine too
    assert list((tmp_path / "cache").rglob("*helper*.nbc"))  # it was loaded, not compiled again
