import pytest

from graphc.kernels import threads


@pytest.fixture
def two_threads():
    """Two kernel threads for the test (the parallel paths), the default pool after it."""
    if threads.set_threads(2) < 2:
        pytest.fail("NUMBA_NUM_THREADS < 2: the parallel paths cannot be tested")
    yield
    threads.configure()
