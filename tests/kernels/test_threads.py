"""graphc's one thread pool: the row-blocked GEMMs equal NumPy's at every split, a whole
training step gives the same numbers at 1 and 2 threads, and GRAPHC_THREADS is obeyed."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.compiler.checks import synthetic_batch
from graphc.kernels import threads
from graphc.kernels.parallel import col_sums, linear_rows, linear_rows_bwd, row_blocks
from graphc.kernels.threads import ThreadGovernor

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rows", [1, 31, 64, 257, 1000])
@pytest.mark.parametrize("n", [1, 2])
def test_row_blocked_linear_products_equal_numpy(rows, n, two_threads):
    threads.set_threads(n)
    rng = np.random.default_rng(rows)
    x, w, bias = rng.standard_normal((rows, 24)), rng.standard_normal((40, 24)), rng.standard_normal(40)
    g = rng.standard_normal((rows, 40))
    np.testing.assert_allclose(linear_rows(x, w, bias, np.empty((rows, 40))), x @ w.T + bias, rtol=1e-12)
    np.testing.assert_allclose(linear_rows(x, w, bias[:0], np.empty((rows, 40))), x @ w.T, rtol=1e-12)
    gx = np.empty((rows, 24))
    gw = linear_rows_bwd(g, x, w, gx)
    np.testing.assert_allclose(gx, g @ w, rtol=1e-12)
    np.testing.assert_allclose(gw, g.T @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(col_sums(g, np.empty(40)), g.sum(0), rtol=1e-12, atol=1e-12)


def test_large_products_are_split_over_the_threads(two_threads):
    assert row_blocks(1000) == 2
    assert row_blocks(1000, 600) == 1  # under the minimum block size: one call
    threads.set_threads(1)
    assert row_blocks(1000) == 1


def test_a_training_step_is_the_same_at_one_and_two_threads(two_threads):
    """The transformer at a size where every parallel kernel splits its work."""
    model = graphc.compile(ROOT / "benchmarks" / "specs" / "workloads" / "transformer_d128.yaml")
    params = model.init_params(0)
    batch = synthetic_batch(model, {"B": 8, "T": 64})
    runs = []
    for n in (1, 2):
        threads.set_threads(n)
        result = model.forward(params, batch, training=True)
        runs.append((float(result.losses["loss"]), model.backward(result)))
    (loss1, grads1), (loss2, grads2) = runs
    assert loss1 == pytest.approx(loss2, rel=1e-6)
    assert grads1.keys() == grads2.keys()
    for k in grads1:
        np.testing.assert_allclose(grads2[k], grads1[k], rtol=2e-4, atol=1e-6, err_msg=k)


def _threads_in_subprocess(env: dict) -> str:
    code = "import graphc.compiler; from graphc.kernels.threads import get_threads; print(get_threads())"
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_THREADS"} | env
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_graphc_threads_sets_the_pool_and_defaults_to_the_usable_cores():
    assert _threads_in_subprocess({"GRAPHC_THREADS": "1"}) == "1"
    assert _threads_in_subprocess({}) == str(
        min(threads.usable_cores(), int(os.environ.get("NUMBA_NUM_THREADS", threads.usable_cores())))
    )
    assert _threads_in_subprocess({"GRAPHC_THREADS": "lots"}) == _threads_in_subprocess({})
    code = "import graphc.compiler"
    env = {**os.environ, "GRAPHC_THREADS": "lots"}
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stderr
    assert "GRAPHC_THREADS='lots' is not a positive integer" in err


def test_ranks_on_one_host_share_its_cores(monkeypatch):
    monkeypatch.delenv("GRAPHC_THREADS", raising=False)
    cores = threads.usable_cores()
    assert threads.default_threads(local_ranks=cores) == 1
    assert threads.default_threads(local_ranks=cores * 4) == 1
    monkeypatch.setenv("GRAPHC_THREADS", "3")
    assert threads.default_threads(local_ranks=2) == 3  # an explicit count wins


# ----------------------------------------------------------------------------- the governor
def _simulate(cost, steps: int) -> tuple[ThreadGovernor, list[float], list[int]]:
    """Drive a governor over `steps` steps whose time is cost(step, threads)."""
    governor = ThreadGovernor(2)
    times, counts = [], []
    for i in range(steps):
        governor._before()
        counts.append(governor.current)
        seconds = cost(i, governor.current)
        governor._after(seconds)
        times.append(seconds)
    return governor, times, counts


def test_the_governor_keeps_all_threads_on_a_quiet_machine(two_threads):
    governor, times, counts = _simulate(lambda i, n: 1.0 if n == 2 else 1.8, 1000)
    assert governor.choice == 2
    assert counts[-100:] == [2] * 100
    assert sum(times) <= 1.05 * 1000  # the probes at one thread cost < 5%


def test_the_governor_drops_to_one_thread_beside_busy_neighbours(two_threads):
    """Two threads 40x slower (measured: a 0.3 ms region took 16 ms with four neighbours)."""
    governor, times, counts = _simulate(lambda i, n: 40.0 if n == 2 else 1.0, 1000)
    assert governor.choice == 1
    assert sum(times[2:]) <= 1.3 * 998  # (the first two steps compile: not counted)


def test_the_governor_follows_a_neighbour_that_comes_and_goes(two_threads):
    busy = range(300, 600)

    def cost(i, n):
        return (40.0 if n == 2 else 1.0) if i in busy else (1.0 if n == 2 else 1.8)

    governor, times, counts = _simulate(cost, 1200)
    assert counts[310:600].count(2) <= 2  # a probe step or two while the neighbour runs
    assert sum(times[300:600]) <= 1.3 * 300
    # back to all threads once it left (within max_interval steps), but for a probe now and then
    assert governor.choice == 2 and counts[1000:].count(2) >= 194


def test_importing_the_compiler_keeps_the_ranks_share_of_the_cores():
    """`graphc train` under MPI configures the pool for the ranks on the host before it
    compiles; importing graphc.compiler afterwards must not reset it to every core (it did:
    two ranks then ran 2 threads each on 2 cores, 5x slower than one rank)."""
    code = ("from graphc.kernels import threads; threads.configure(local_ranks=threads.usable_cores()); "
            "import graphc.compiler; print(threads.get_threads())")
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
