"""Tier 6: every row with a torch equivalent, forward and gradients vs PyTorch (float64):
the output, the gradient of every differentiable input and trainable parameter for a random
cotangent, and buffers updated in place (batchnorm's running statistics). Then the cases a
table row cannot say: the documented difference on fully masked attention rows, extreme
logits, and the float32 paths on realistically sized inputs."""

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from graphc.ops import OPS  # noqa: E402
from tests.op_cases import ROWS, Bag, by_key, case  # noqa: E402

from .harness import Run, backward, forward, get  # noqa: E402

pytestmark = pytest.mark.torch
TOL = dict(rtol=1e-9, atol=1e-10)


def _to_torch(c, args, differentiable):
    """The row's tensors as torch tensors: the values our kernels got, leaves with gradients
    where we compute one; buffers as they were before our forward updated them."""
    def conv(name, v):
        if v is None:
            return None
        if isinstance(v, list):
            return [conv(f"{name}[{i}]", x) for i, x in enumerate(v)]
        return torch.tensor(v, requires_grad=name in differentiable)

    return Bag({n: conv(n, v) for n, v in c.tensors().items()})


@pytest.mark.parametrize("r", [r for r in ROWS if r.torch is not None], ids=lambda r: r.key)
def test_forward_and_gradients_match_torch(r):
    c = case(r)
    run = Run(c, np.float64)
    args = run.args()
    outs, saved, _ = run.forward(args)
    cot = run.cotangents(np.random.default_rng(zlib.crc32(f"torch/{r.key}".encode())), outs)
    grads, _ = run.backward(run.args(), outs, saved, cot)

    names = run.differentiable(args)
    t = _to_torch(c, args, names)
    theirs = r.torch(t, c.attrs)
    theirs = tuple(theirs) if isinstance(theirs, tuple | list) else (theirs,)
    for (port, ours), y in zip(outs.items(), theirs, strict=True):
        np.testing.assert_allclose(ours, y.detach().numpy().reshape(ours.shape), err_msg=port, **TOL)
    if any(y.requires_grad for y in theirs):
        torch.autograd.backward([y for y in theirs if y.requires_grad],
                                [torch.tensor(cot[p]).reshape(y.shape) for p, y in zip(outs, theirs, strict=True)
                                 if y.requires_grad])
    for name in names:
        leaf = get(t, name)
        want = leaf.grad.numpy() if leaf.grad is not None else np.zeros(leaf.shape)
        np.testing.assert_allclose(grads[name], want, err_msg=name, **TOL)
    for name in run.op.kernel.buffers:  # updated in place by both
        np.testing.assert_allclose(args[name], t[name].numpy(), err_msg=name, **TOL)


# ----------------------------------------------------------------------------- special cases
def test_fully_masked_attention_rows_differ_from_torch_as_documented():
    """Where every key is masked, torch gives NaN (older releases) or zeros (2.13's fast path);
    graphc attends uniformly (masked scores are a large finite negative). The other rows match."""
    r = by_key("attention-self-fully-masked-row")
    c = case(r)
    run = Run(c, np.float64)
    outs, _, _ = run.forward(run.args())
    y = by_key("attention-self-mask-nobias").torch(_to_torch(c, {}, ()), c.attrs)  # torch's semantics
    full = (c.ports["key_padding_mask"] > 0.5).all(axis=1)
    assert full[0] and not full[1:].any()
    rows = y[torch.tensor(full)]
    assert torch.isnan(rows).all() or (rows == 0).all()
    np.testing.assert_allclose(outs["out"][~full], y[torch.tensor(~full)].detach().numpy(), **TOL)
    np.testing.assert_allclose(outs["out"], c.reference()["out"], **TOL)  # uniform where fully masked


def test_cross_entropy_extreme_logits_are_finite():
    op = OPS["cross_entropy"]
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
    target = np.array([1, 2], np.int64)
    args = _row_args("cross_entropy-2d", logits=logits, target=target)
    (out,), saved, _ = forward(op, args, 1, (1,))
    grads, _ = backward(op, args, {"out": out}, saved, {"out": np.ones(1, np.float32)})
    want = F.cross_entropy(torch.tensor(logits, dtype=torch.float64), torch.tensor(target))
    np.testing.assert_allclose(out, [want.item()], rtol=1e-6)
    assert np.all(np.isfinite(grads["logits"]))


def _row_args(key, **tensors):
    """A table row's float32 arguments (its lowered attributes) with other tensors."""
    return Run(case(by_key(key)), np.float32).args(**tensors)


def _rng(*key):
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def _t64(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("align_corners", [False, True])
def test_spatial_transformer_float32_close_to_torch_float64(align_corners):
    """affine_grid then grid_sample on an image-sized batch: our float32 path vs torch in float64
    on the same float32 inputs, op by op (torch's own float32 grid gradient is ~1e-3 off: it
    subtracts float32 neighbour values)."""
    rng = _rng("f32", "stn", align_corners)
    f32 = np.float32
    theta = (np.array([[1, 0, 0], [0, 1, 0]]) + 0.3 * rng.standard_normal((8, 2, 3))).astype(f32)
    x = rng.standard_normal((8, 3, 28, 28)).astype(f32)
    ag, gs = OPS["affine_grid"], OPS["grid_sample"]
    ac = {"align_corners": align_corners}
    ag_args = _row_args("affine_grid-3x4", theta=theta) | ac | {"size": (24, 20)}
    (grid,), _, _ = forward(ag, ag_args, 1, (8, 24, 20, 2))
    gs_args = _row_args("grid_sample-outside", x=x, grid=grid) | ac
    (out,), saved, _ = forward(gs, gs_args, 1, (8, 3, 24, 20))
    g = rng.standard_normal(out.shape).astype(f32)
    ours, _ = backward(gs, gs_args, {"out": out}, saved, {"out": g})
    theta_grad, _ = backward(ag, ag_args, {"out": grid}, (), {"out": ours["grid"]})
    assert grid.dtype == out.dtype == theta_grad["theta"].dtype == ours["x"].dtype == ours["grid"].dtype == f32

    th = _t64(theta)
    tg = F.affine_grid(th, [8, 3, 24, 20], align_corners=align_corners)
    tg.backward(torch.tensor(ours["grid"], dtype=torch.float64))
    np.testing.assert_allclose(grid, tg.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(theta_grad["theta"], th.grad.numpy(), rtol=1e-5, atol=1e-4)
    xt, gt = _t64(x), _t64(grid)
    y = F.grid_sample(xt, gt, align_corners=align_corners)
    y.backward(torch.tensor(g, dtype=torch.float64))
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["x"], xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["grid"], gt.grad.numpy(), rtol=1e-5, atol=1e-5)


# The float32 paths use the vmath approximations; they must stay within float32 noise of
# torch on realistically sized inputs (ranks as in the table: no new specialisations).
@pytest.mark.parametrize("op", ["lstm", "gru"])
def test_recurrent_float32_close_to_torch_float32(op):
    rng = _rng("f32", op)
    f32, g_n, hd, n_in = np.float32, 4 if op == "lstm" else 3, 32, 16
    params = {f"{w}_{d}": (rng.standard_normal(shape) * 0.3).astype(f32) for d in (0, 1)
              for w, shape in (("w_ih", (g_n * hd, n_in)), ("w_hh", (g_n * hd, hd)), ("b_ih", (g_n * hd,)),
                               ("b_hh", (g_n * hd,)))}
    args = _row_args(f"{op}-bidirectional", x=rng.standard_normal((8, 20, n_in)).astype(f32), **params)
    (out,), saved, _ = forward(OPS[op], args, 1, (8, 20, 2 * hd))
    g = rng.standard_normal(out.shape).astype(f32)
    ours, _ = backward(OPS[op], args, {"out": out}, saved, {"out": g})

    t = Bag({k: torch.tensor(v, requires_grad=True) for k, v in args.items() if isinstance(v, np.ndarray)})
    y = by_key(f"{op}-bidirectional").torch(t, Bag(hidden=hd, bidirectional=True, output="sequence")).float()
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-4, atol=2e-5)
    for name, leaf in t.items():
        np.testing.assert_allclose(ours[name], leaf.grad.numpy(), rtol=1e-4, atol=2e-4 if name != "x" else 5e-5,
                                   err_msg=name)


def test_elementwise_float32_close_to_torch_float64():
    # Against torch in float64 (the truth), not float32: torch's own float32 GELU is 0.1% off
    # in the far negative tail, where ours (relative-accurate Phi) is not.
    rng = _rng("f32", "gelu")
    x = (rng.standard_normal((64, 300)) * 3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    for op, fn in (("gelu", F.gelu), ("softmax", lambda t: F.softmax(t, -1)),
                   ("log_softmax", lambda t: F.log_softmax(t, -1)), ("sigmoid", torch.sigmoid),
                   ("tanh", torch.tanh)):
        args = _row_args(f"{op}-2d", x=x)
        (out,), saved, _ = forward(OPS[op], args, 1, x.shape)
        grads, _ = backward(OPS[op], args, {"out": out}, saved, {"out": g})
        xt = _t64(x)
        y = fn(xt)
        y.backward(torch.tensor(g, dtype=torch.float64))
        np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-6, atol=1e-7, err_msg=op)
        np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=op)


def test_attention_float32_close_to_torch_float32():
    rng = _rng("f32", "attention")
    f32, b, t_len, e, h = np.float32, 16, 24, 32, 4
    args = _row_args("attention-causal", q=rng.standard_normal((b, t_len, e)),
                     **{n: rng.standard_normal((e, e)) / np.sqrt(e) for n in ("wq", "wk", "wv", "wo")},
                     **{n: rng.standard_normal(e) * 0.1 for n in ("bq", "bk", "bv", "bo")}) | {"heads": h}
    (out,), saved, _ = forward(OPS["attention"], args, 1, (b, t_len, e))
    g = rng.standard_normal(out.shape).astype(f32)
    ours, _ = backward(OPS["attention"], args, {"out": out}, saved, {"out": g})
    t = Bag({k: torch.tensor(v, requires_grad=True) for k, v in args.items()
             if isinstance(v, np.ndarray) and v.size})
    y = by_key("attention-causal").torch(t, Bag(heads=h, causal=True, bias=True))
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours["q"], t.q.grad.numpy(), rtol=1e-4, atol=5e-5)
