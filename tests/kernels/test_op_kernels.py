"""Every op's record names kernels whose signatures take exactly what the driver passes: the
op's ports (in order), its noise input, parameters, buffers, lowered attributes, the mode, and
the destinations. A renamed port or a kernel argument nobody passes fails here, not at run time."""

import inspect

import numba
import pytest

from graphc.ops import OPS


def _params(fn) -> list[str]:
    return list(inspect.signature(getattr(fn, "py_func", fn)).parameters)


@pytest.mark.parametrize("op", sorted(OPS))
def test_forward_signature_matches_the_op_record(op):
    k = OPS[op].kernel
    expected = [*k.inputs, *k.params, *k.buffers, *k.attrs, *(["training"] if k.mode else [])]
    got = _params(k.fwd)
    assert got[: len(expected)] == expected, f"{op}: kernel takes {got}, the op record passes {expected}"
    assert got[len(expected):] in ([], ["out"]), f"{op}: unexpected trailing arguments {got[len(expected):]}"


@pytest.mark.parametrize("op", sorted(OPS))
def test_backward_signature_matches_the_op_record(op):
    rec = OPS[op]
    k = rec.kernel
    got = _params(k.bwd)
    cotangents = [a for a in got if a.startswith("g_")]
    assert all(c.removeprefix("g_") in ("out", "cotangents") or c.removeprefix("g_").isdigit()
               for c in cotangents), f"{op}: cotangent arguments {cotangents}"
    shared = [*k.inputs, *k.params, *k.buffers, *k.attrs, *(["training"] if k.mode else [])]
    rest = [a for a in got if not a.startswith("g_")]
    assert rest[: len(shared)] == shared, f"{op}: backward takes {rest}, the op record passes {shared}"
    tail = rest[len(shared):]
    saved = [f"saved{i}" for i in range(k.saved)]
    assert tail[: len(saved)] == saved, f"{op}: expected {saved} after the attributes, found {tail}"
    tail = tail[len(saved):]
    into = [a for a in tail if a.startswith("into_")]
    assert into == [f"into_{p}" for p in k.inputs if f"into_{p}" in into], f"{op}: {into} out of port order"
    assert set(into) <= {f"into_{p}" for p in k.inputs if p not in k.nondiff}, \
        f"{op}: a destination for a non-differentiable input: {into}"


# Plain Python over NumPy where that is as fast (broadcasting, BLAS, views) or the output's rank
# depends on an attribute (the recurrent wrappers over njit cores); the ops with a pointwise rule
# call Python wrappers over njit loops generated from the rule; every other kernel is njit.
NUMPY_SIDE = {"matmul", "rnn", "lstm", "gru"}


@pytest.mark.parametrize("op", sorted(OPS))
def test_kernels_are_jitted_unless_numpy_does_it_as_well(op):
    k = OPS[op].kernel
    jitted = not (op in NUMPY_SIDE or k.module in ("views", "pointwise"))
    assert (k.module == "pointwise") == (OPS[op].pointwise is not None), op
    for fn in (k.fwd, k.bwd):
        assert isinstance(fn, numba.core.registry.CPUDispatcher) == jitted, op


@pytest.mark.parametrize("op", sorted(OPS))
def test_lowering_gives_every_kernel_attribute(op):
    """The default attribute values lower to a complete argument set (attributes without a
    default are filled with a plausible value of their type)."""
    rec = OPS[op]
    samples = {"int": 2, "float": 0.5, "bool": True, "str": "", "ints": (1, 1), "int2": (2, 2),
               "axis": -1, "axes": None, "shape": (1, -1)}
    attrs = {}
    for name, a in rec.attrs.items():
        attrs[name] = samples[a.type] if a.required else a.default
        if a.choices:
            attrs[name] = a.default if not a.required else a.choices[0]
        if a.type == "int2" and not a.required and isinstance(a.default, int):
            attrs[name] = (a.default, a.default)
    if op == "split":
        attrs["sizes"] = (1, 1)
    lowered = rec.lower(attrs, 3 if op != "permute" else 2)
    assert set(lowered) == set(rec.kernel.attrs), op
