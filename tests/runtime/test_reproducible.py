"""A fixed thread count makes a run repeatable bit for bit: the same spec, seed and threads give
the same parameters. (The default lets the thread governor pick 1 or all threads from timings;
the kernels split their sums one block per thread, so the last bits can then differ: README,
"Threads".) Both counts are checked, on the transformer (attention, norms, GELU, embedding: the
kernels with parallel blocks) and the CNN (conv, pooling)."""

import numpy as np
import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.runtime import load_checkpoint
from tests.conftest import SPECS


def _train(spec, out, threads, *more):
    r = CliRunner().invoke(main, ["train", str(spec), "--steps", "12", "--threads", str(threads),
                                  "--out", str(out), "--progress", "none", *more])
    assert r.exit_code == 0, r.output
    return load_checkpoint(out / "checkpoint").params


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("spec", ["transformer", "cnn"])
def test_the_same_seed_and_threads_give_the_same_parameters(tmp_path, spec, threads):
    first = _train(SPECS / f"{spec}.yaml", tmp_path / "a", threads)
    second = _train(SPECS / f"{spec}.yaml", tmp_path / "b", threads)
    assert first.keys() == second.keys() and len(first) > 4
    differ = [k for k in first if not np.array_equal(first[k], second[k])]
    assert not differ, differ
    other = _train(SPECS / f"{spec}.yaml", tmp_path / "c", threads, "--seed", "1")
    assert any(not np.array_equal(first[k], other[k]) for k in first)  # the comparison can fail
