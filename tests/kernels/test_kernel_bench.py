"""`python -m graphc.kernels.bench` calls the kernels by hand: each of its cases must still match
the kernels' signatures (it had silently fallen behind two of them)."""

import numpy as np
import pytest

from graphc.kernels import bench


@pytest.mark.parametrize("name", list(bench._cases(np.random.default_rng(0))))
def test_every_bench_case_runs_a_forward_and_backward(name):
    op, kw = bench._cases(np.random.default_rng(0))[name]
    bench._ours(op, kw)()  # raises on a signature that no longer matches
