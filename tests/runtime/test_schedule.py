import math

import pytest

from graphc.runtime.errors import ConfigError
from graphc.runtime.schedule import make_schedule


def test_constant_with_warmup():
    s = make_schedule({"name": "constant", "warmup": 4}, lr=1.0, total=10)
    assert [s(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_step():
    s = make_schedule({"name": "step", "step_size": 10, "gamma": 0.5}, lr=0.8, total=100)
    assert s(0) == 0.8 and s(9) == 0.8
    assert s(10) == pytest.approx(0.4) and s(25) == pytest.approx(0.2)


def test_cosine_after_warmup():
    s = make_schedule({"name": "cosine", "warmup": 10, "min_lr": 0.1}, lr=1.0, total=110)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)  # main schedule starts at its own t = 0
    assert s(60) == pytest.approx(0.55)  # halfway: min + (lr - min) / 2
    assert s(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)


def test_linear_decay():
    s = make_schedule({"name": "linear"}, lr=2.0, total=100)
    assert s(0) == 2.0 and s(50) == pytest.approx(1.0) and s(100) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "section,match",
    [
        ({"name": "exponential"}, "unknown schedule"),
        ({"name": "step"}, "needs `step_size`"),
        ({"name": "cosine", "warmpu": 5}, "did you mean `warmup`"),
        ({"name": "constant", "warmup": -1}, "warmup"),
    ],
)
def test_bad_schedules(section, match):
    with pytest.raises(ConfigError, match=match):
        make_schedule(section, lr=1.0, total=10)
