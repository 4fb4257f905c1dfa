"""A gradient nobody needs is not computed: when an input of an op needs no gradient (the image
batch a CNN's first conv reads), a kernel that declares the port in `Kernel.skips` is handed a
zero-size destination of the input's rank and skips that work; any other kernel writes it to a
scratch buffer. Skipping changes no other gradient."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from graphc.compiler import compile_spec
from graphc.compiler.checks import synthetic_batch
from graphc.ops import OPS

CNN = Path(__file__).resolve().parents[2] / "specs/cnn.yaml"


def _grads(model):
    params = model.init_params(0)
    batch = synthetic_batch(model, {"B": 4}, seed=1)
    return model.backward(model.forward(params, batch, training=True, seed=3))


def test_the_first_conv_is_handed_a_zero_size_input_gradient():
    model = compile_spec(CNN)
    first_conv_bwd = model.source.split("conv1 · conv2d backward")[1].split("\n    )")[0]
    assert 'into_x=buf["_unneeded0"]' in first_conv_bwd
    (t,) = [t for t in model.buffer_plan.tensors if t.var == "_unneeded0"]
    assert len(t.shape) == 4 and all(d == 0 for d in t.shape)  # the rank of the image batch
    assert "_scratch" not in model.source


def test_skipping_changes_no_gradient(monkeypatch):
    skipping = _grads(compile_spec(CNN))
    kernel = OPS["conv2d"].kernel
    monkeypatch.setattr(OPS["conv2d"], "kernel", dataclasses.replace(kernel, skips=()))
    model = compile_spec(CNN)
    assert 'into_x=buf["_scratch0"]' in model.source
    computing = _grads(model)
    assert skipping.keys() == computing.keys()
    for k in skipping:
        np.testing.assert_array_equal(skipping[k], computing[k], err_msg=k)
