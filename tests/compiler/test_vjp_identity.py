"""The VJP identity <J·t, c> = <t, Jᵀ·c> on every reference spec, in float64.

J is the Jacobian of the map (trainable parameters, float inputs) → `logits`. graphc only
differentiates losses, so each spec gets a variant whose loss is `sum(logits * c)` for a
random input `c` of the logits' shape (a `sum` node with `axis: null` is a shape-() scalar and
may be named under `losses:`): its gradients are exactly Jᵀ·c. graphc has no forward mode,
so J·t is the central difference of the *forward output* `logits` along a random tangent t
over all parameters and float inputs at once — independent of every backward kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tests.conftest import REFERENCE_SPECS

from .helpers import compile64, output_types, params64, write

EPS = 1e-6
DIMS = {"B": 3, "T": 6}


def _vjp_variant(spec_path, tmp_path):
    """The spec with `loss: sum(logits * c)` in place of its losses (the old loss stays unused)."""
    doc = yaml.safe_load(spec_path.read_text())
    assert doc.get("outputs") == ["logits"], f"{spec_path.name}: expected `outputs: [logits]`"
    logits = output_types(spec_path)[("logits", "out")]
    doc["inputs"]["c"] = {"shape": [int(d) if d.is_Integer else str(d) for d in logits.shape],
                          "doc": "cotangent of the logits"}
    doc["nodes"]["weighted"] = {"op": "mul", "in": ["logits", "c"]}
    doc["nodes"]["vjp"] = {"op": "sum", "in": "weighted"}
    doc["losses"] = ["vjp"]
    doc.pop("train", None)
    return write(tmp_path, yaml.safe_dump(doc, sort_keys=False), spec_path.name)


def _batch(model, rng):
    vocab = int(model.graph.constants.get("vocab", 2))  # ids/targets of the transformer; labels ≥ 2
    batch = {}
    for name, spec in model.inputs.items():
        shape = [DIMS[d] if isinstance(d, str) else d for d in spec.shape]
        if spec.dtype == "int64":
            batch[name] = rng.integers(0, vocab if name in ("tokens", "targets") else 2, size=shape)
        else:
            batch[name] = rng.standard_normal(shape)
    return batch


@pytest.mark.parametrize("spec", REFERENCE_SPECS, ids=lambda p: p.stem)
def test_vjp_identity(spec, tmp_path):
    rng = np.random.default_rng(7)
    model = compile64(_vjp_variant(spec, tmp_path))
    params = params64(model, 0)
    batch = model.feed(_batch(model, rng))
    c = batch["c"]

    result = model.forward(params, batch)
    jt_c = {**model.backward(result), **model.input_gradients(result)}  # Jᵀ·c, by name
    jt_c.pop("c")  # d loss / d c is the logits themselves, not part of the map under test
    floats = [n for n, s in model.inputs.items() if s.dtype != "int64" and n != "c"]
    wrt = [k for k, s in model.params.items() if s.trainable] + [n for n in floats if n in jt_c]
    assert set(jt_c) == set(wrt), f"{spec.stem}: gradients for {sorted(jt_c)}, expected {sorted(wrt)}"
    assert any(n in jt_c for n in floats) or spec.stem == "transformer", "no float input reached"

    tangent = {k: rng.standard_normal(jt_c[k].shape) for k in wrt}

    def logits_at(sign):
        p = {k: v + sign * EPS * tangent[k] if k in tangent else v for k, v in params.items()}
        b = {k: v + sign * EPS * tangent[k] if k in tangent else v for k, v in batch.items()}
        return model.forward(p, b).outputs["logits"]

    j_t = (logits_at(+1) - logits_at(-1)) / (2 * EPS)
    lhs = float(np.sum(j_t * c))  # <J·t, c>
    rhs = sum(float(np.sum(tangent[k] * jt_c[k])) for k in wrt)  # <t, Jᵀ·c>
    # central differences at EPS=1e-6 are good to ~1e-12 relative here; 1e-9 leaves headroom
    scale = sum(float(np.linalg.norm(tangent[k]) * np.linalg.norm(jt_c[k])) for k in wrt)
    assert abs(lhs - rhs) <= 1e-9 * scale, (
        f"{spec.stem}: <J t, c> = {lhs!r} but <t, J^T c> = {rhs!r} (scale {scale:.3g})")
    # and the scalar loss itself is <logits, c>
    assert result.losses["vjp"] == pytest.approx(float(np.sum(result.outputs["logits"] * c)), rel=1e-12)
