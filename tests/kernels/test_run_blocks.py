"""`graphc.kernels.parallel.run_blocks`: graphc's parallel loop over Numba's threading layer.

Every parallel kernel goes through it, so what it promises is checked here directly: each
block runs exactly once, on several threads when there are several, in this thread when there
is one; a block's exception is not lost; a kernel using it is cached like any other.
"""

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numba.np.ufunc import parallel as numba_parallel

from graphc.kernels.parallel import block_bounds, run_blocks

_thread_id = numba_parallel._iget_thread_id


@numba.njit
def _mark(i, n_blocks, hits, owner):
    r0, r1 = block_bounds(i, n_blocks, hits.size)
    for r in range(r0, r1):
        hits[r] += 1
    owner[i] = _thread_id()


@numba.njit
def _mark_all(hits, n_blocks):
    owner = np.full(max(n_blocks, 0), -1)
    run_blocks(_mark, n_blocks, (n_blocks, hits, owner))
    return owner


@pytest.mark.parametrize("n_blocks", [0, 1, 2, 3, 7])
def test_every_block_runs_exactly_once(n_blocks, two_threads):
    hits = np.zeros(21, dtype=np.int64)
    owner = _mark_all(hits, n_blocks)
    expected = np.ones(21, dtype=np.int64) if n_blocks > 0 else np.zeros(21, dtype=np.int64)
    np.testing.assert_array_equal(hits, expected)
    assert (owner >= 0).all()


def test_one_block_runs_in_the_calling_thread_and_several_use_the_pool(two_threads):
    # (two_threads, tests/kernels/conftest.py, fails where Numba has fewer than 2 threads)
    assert list(_mark_all(np.zeros(8, dtype=np.int64), 1)) == [0]  # the caller is thread 0
    owners = {tuple(_mark_all(np.zeros(8, dtype=np.int64), 2)) for _ in range(20)}
    assert any(len(set(o)) == 2 for o in owners), owners


@numba.njit
def _fail_at(i, bad):
    if i == bad:
        raise ValueError("block failed")


@numba.njit
def _run_failing(n_blocks, bad):
    run_blocks(_fail_at, n_blocks, (bad,))


def test_a_failing_block_raises(two_threads):
    with pytest.raises(ValueError, match="block failed"):  # in this thread: the exception itself
        _run_failing(1, 0)
    with pytest.raises(RuntimeError, match="_fail_at raised on a worker thread"):
        _run_failing(2, 1)
    _run_failing(2, 5)  # no block fails: no error


@numba.njit
def _scale(i, x, factor, flag):
    if flag:
        x[i] *= factor


@numba.njit
def _scale_all(x):
    run_blocks(_scale, x.size, (x, 2.0, True))
    run_blocks(_scale, x.size, (x, 3.0, True))


def test_literal_arguments_compile_the_block_once():
    x = np.ones(2)
    _scale_all(x)
    np.testing.assert_array_equal(x, [6.0, 6.0])
    assert len(_scale.signatures) == 1, _scale.signatures


_CACHED_MODULE = """
import numba, numpy as np
from graphc.kernels.parallel import run_blocks

@numba.njit(cache=True)
def add_index(i, a):
    a[i] += i + 1

@numba.njit(cache=True)
def kernel(a):
    run_blocks(add_index, a.size, (a,))
    return a
"""


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_a_kernel_using_it_is_cached_and_runs_on_each_threading_layer(tmp_path, layer):
    if layer == "omp":
        pytest.importorskip("numba.np.ufunc.omppool", reason="no OpenMP threading layer here")
    (tmp_path / "blocks_cached.py").write_text(_CACHED_MODULE)
    script = textwrap.dedent("""
        import numba, numpy as np, blocks_cached as m
        a = m.kernel(np.zeros(5))
        print(a.tolist(), dict(m.kernel.stats.cache_hits), numba.threading_layer())
    """)
    env = dict(
        os.environ,
        NUMBA_CACHE_DIR=str(tmp_path / "cache"),
        NUMBA_THREADING_LAYER=layer,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("[1.0, 2.0, 3.0, 4.0, 5.0]"), run.stdout
        assert run.stdout.rstrip().endswith(layer), run.stdout
    assert "{}" in runs[0].stdout  # first run compiled...
    assert "{}" not in runs[1].stdout  # ...the second loaded it from the cache


_FIRST_BLAS_CALL_ON_A_WORKER = """
import numba, numpy as np
from graphc.kernels.parallel import run_blocks

@numba.njit
def product_in_block_one(i, a, b, c):
    if i == 1:
        np.dot(a, b, c)  # Numba looks sgemm up (under the GIL) at its first call in the process

@numba.njit
def kernel(a, b, c):
    run_blocks(product_in_block_one, 2, (a, b, c))

numba.set_num_threads(2)
a = np.ones((4, 4), np.float32)
c = np.zeros((4, 4), np.float32)
kernel(a, a, c)
print(c.sum())
"""


def test_a_blocks_first_blas_call_on_a_worker_thread_does_not_deadlock(tmp_path, two_threads):
    # (two_threads: the subprocess needs the same 2 threads this process can have)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    for _ in range(3):  # the race: a worker must reach the product before the caller's block ends
        run = subprocess.run(
            [sys.executable, "-c", _FIRST_BLAS_CALL_ON_A_WORKER],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "64.0"
