"""Losses: each returns a scalar (mean over examples) and marks its node as a training objective."""

from __future__ import annotations

from graphc.ops.registry import Attr, Kernel, Port, defop
from graphc.shapes import dims_equal, fmt_shape, tensor

SCALAR = ()


def _same(c, a: str, b: str):
    x, y = c.input(a), c.input(b)
    if x.rank != y.rank or not all(dims_equal(p, q) for p, q in zip(x.shape, y.shape, strict=True)):
        c.fail(f"`{b}` must have the shape of `{a}` [{fmt_shape(x.shape)}], found "
               f"[{fmt_shape(y.shape)}]", port=b)
    return x


def _labels_match(c, scores: str, target: str):
    s, t = c.input(scores, min_rank=1), c.input(target)
    expected = s.shape[:-1]
    if t.rank != len(expected) or not all(dims_equal(p, q) for p, q in zip(t.shape, expected, strict=True)):
        c.fail(f"`{target}` must hold one class index per row of `{scores}` [{fmt_shape(s.shape)}], "
               f"i.e. shape [{fmt_shape(expected)}]; found [{fmt_shape(t.shape)}]", port=target,
               hint="classes are on the last axis of the scores")
    return s, t


def _numel(c):
    return 4 * c.inputs[next(iter(c.inputs))].numel()


@defop("cross_entropy", family="loss", loss=True, flops=_numel,
       inputs=(Port("logits", logits=True), Port("target", dtype="int"),
               Port("mask", optional=True, grad=False)),
       kernel=Kernel("loss", attrs=("ignore_index", "label_smoothing"), saved=1),
       attrs={"ignore_index": Attr("int", -100, "target value that does not count"),
              "label_smoothing": Attr("float", 0.0, "mix the one-hot target with uniform")})
def cross_entropy(c):
    """Softmax cross-entropy from logits (classes on the last axis), mean over counted positions;
    an optional float `mask` of the target's shape weights positions (e.g. only answer tokens)."""
    s, t = _labels_match(c, "logits", "target")
    if c.has("mask"):
        m = c.input("mask")
        if m.rank != t.rank or not all(dims_equal(p, q) for p, q in zip(m.shape, t.shape, strict=True)):
            c.fail(f"`mask` must have the target's shape [{fmt_shape(t.shape)}], found {m}", port="mask")
    if not 0.0 <= c.attrs["label_smoothing"] < 1.0:
        c.fail("label_smoothing must be in [0, 1)", attr="label_smoothing")
    return tensor(SCALAR, s.dtype)


@defop("bce_with_logits", family="loss", loss=True, flops=_numel, kernel=Kernel("loss"),
       inputs=(Port("logits", logits=True), Port("target", grad=False)))
def bce_with_logits(c):
    """Binary cross-entropy on logits: mean(softplus(z) - y·z), stable for large |z|."""
    return tensor(SCALAR, _same(c, "logits", "target").dtype)


@defop("mse", family="loss", loss=True, flops=_numel, inputs=(Port("pred"), Port("target")),
       kernel=Kernel("loss"))
def mse(c):
    """Mean squared error mean((pred - target)²)."""
    return tensor(SCALAR, _same(c, "pred", "target").dtype)


@defop("hinge", family="loss", loss=True, flops=_numel, kernel=Kernel("loss", attrs=("margin",)),
       inputs=(Port("scores", logits=True), Port("target", dtype="int")),
       attrs={"margin": Attr("float", 1.0, "required gap between the right class and the others")})
def hinge(c):
    """Multi-class SVM loss L_i = Σ_{j≠y_i} max(0, s_j - s_{y_i} + margin), mean over i.
    (PyTorch's multi_margin_loss also divides each L_i by the number of classes.)"""
    s, _ = _labels_match(c, "scores", "target")
    return tensor(SCALAR, s.dtype)


@defop("kl_div", family="loss", loss=True, flops=_numel, kernel=Kernel("loss", attrs=("temperature",)),
       inputs=(Port("student", logits=True), Port("teacher", logits=True)),
       attrs={"temperature": Attr("float", 1.0, "softmax(z / T) on both sides; the loss is × T²")})
def kl_div(c):
    """Distillation loss T² · KL(softmax(teacher/T) ‖ softmax(student/T)), mean over rows."""
    if c.attrs["temperature"] <= 0:
        c.fail("temperature must be positive", attr="temperature")
    return tensor(SCALAR, _same(c, "student", "teacher").dtype)
