"""The KERNELS table matches the kernels' real signatures, so a generated driver that follows
the documented calling convention (all keyword arguments) can call every kernel."""

import inspect

import numba
import pytest

from graphc.kernels import KERNELS, KernelPair


def _params(fn):
    fn = getattr(fn, "py_func", fn)
    return [
        n for n, p in inspect.signature(fn).parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]


@pytest.mark.parametrize("op", sorted(KERNELS))
def test_signatures_follow_the_calling_convention(op):
    kp: KernelPair = KERNELS[op]
    fwd_args = _params(kp.fwd)
    head = list(kp.inputs + kp.params + kp.buffers)
    assert fwd_args[: len(head)] == head
    assert fwd_args[len(head) :] == [*kp.attrs, "out"]  # `out`: the destination (buffer plan)
    into = [f"into_{p}" for p in kp.inputs if p not in kp.nondiff_inputs]
    expected_bwd = (
        [f"g_{o}" for o in kp.outputs]
        + fwd_args[:-1]
        + [f"saved{i}" for i in range(kp.n_saved)]
        + list(kp.outputs)
        + into
    )
    assert _params(kp.bwd) == expected_bwd
    assert set(kp.nondiff_inputs) <= set(kp.inputs)


@pytest.mark.parametrize("op", sorted(KERNELS))
def test_jit_flag_is_truthful(op):
    kp = KERNELS[op]
    for fn in (kp.fwd, kp.bwd):
        assert isinstance(fn, numba.core.registry.CPUDispatcher) == kp.jit
