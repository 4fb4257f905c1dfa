"""set_blas_threads reaches the OpenBLAS builds numpy and numba's np.dot use."""

import sys

import pytest

from graphc.kernels import get_blas_threads, set_blas_threads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_set_and_restore_blas_threads():
    before = get_blas_threads()
    if not before:
        pytest.skip("no OpenBLAS loaded")
    try:
        assert set_blas_threads(1) == len(before)
        assert get_blas_threads() == [1] * len(before)
    finally:
        set_blas_threads(max(before))  # one count for all: the API sets every library alike
