"""A gradient nobody needs is not computed: when an input of an op needs no gradient (the image
batch a CNN's first conv reads), a kernel that declares the port in `Kernel.skips` is handed a
zero-size destination of the input's rank and skips that work; any other kernel writes it to a
scratch buffer. Skipping changes no other gradient."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from graphc.compiler import compile_spec
from graphc.compiler.checks import synthetic_batch
from graphc.ops import OPS

SPECS = Path(__file__).resolve().parents[2] / "specs"
# (spec, the op reading a graph input, its backward's comment in the driver, that input's rank)
CASES = [("cnn", "conv2d", "conv1 · conv2d backward", 4), ("lstm", "lstm", "rnn · lstm backward", 3)]


def _grads(model):
    params = model.init_params(0)
    batch = synthetic_batch(model, {"B": 4, "T": 6}, seed=1)
    return model.backward(model.forward(params, batch, training=True, seed=3))


@pytest.mark.parametrize(("spec", "op", "comment", "rank"), CASES)
def test_the_op_reading_the_batch_is_handed_a_zero_size_input_gradient(spec, op, comment, rank):
    model = compile_spec(SPECS / f"{spec}.yaml")
    backward = model.source.split(comment)[1].split("\n    )")[0]
    assert 'into_x=buf["_unneeded0"]' in backward
    (t,) = [t for t in model.buffer_plan.tensors if t.var == "_unneeded0"]
    assert t.shape == ("0",) * rank  # the rank of the batch input (shapes are kept as text)
    assert "_scratch" not in model.source


@pytest.mark.parametrize(("spec", "op", "comment", "rank"), CASES)
def test_skipping_changes_no_gradient(monkeypatch, spec, op, comment, rank):
    skipping = _grads(compile_spec(SPECS / f"{spec}.yaml"))
    kernel = OPS[op].kernel
    monkeypatch.setattr(OPS[op], "kernel", dataclasses.replace(kernel, skips=()))
    model = compile_spec(SPECS / f"{spec}.yaml")
    assert 'into_x=buf["_scratch0"]' in model.source
    computing = _grads(model)
    assert skipping.keys() == computing.keys()
    for k in skipping:
        np.testing.assert_array_equal(skipping[k], computing[k], err_msg=k)
