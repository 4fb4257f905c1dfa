"""Losses: each returns a scalar and marks its node as a training objective.

Every loss has a `reduction` attribute with PyTorch's meaning ("mean", the default, or "sum";
kl_div also "batchmean", its default). PyTorch's "none" has no counterpart: a loss node is a
scalar (reduce an elementwise expression with `sum`/`mean` yourself)."""

from __future__ import annotations

from graphc.ops.registry import Attr, Choice, Kernel, Port, defop
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


def _reduction(*choices: str, doc: str = ""):
    return {"reduction": Attr("str", choices[0], doc or f"{' or '.join(choices)} over the elements "
                              "(PyTorch's meaning)", choices=choices)}


def _lower_reduction(*kernel_attrs: str):
    """The kernel's attributes, with `reduction` as its index in the kernels' REDUCTIONS."""

    def lower(attrs: dict, rank: int) -> dict:
        from graphc.kernels.loss import REDUCTIONS  # (the back end's: numba is loaded by then)

        return {name: Choice.of(REDUCTIONS, attrs[name]) if name == "reduction" else attrs[name]
                for name in kernel_attrs}

    return lower


def _numel(c):
    return 4 * c.inputs[next(iter(c.inputs))].numel()


@defop("cross_entropy", family="loss", loss=True, flops=_numel,
       inputs=(Port("logits", logits=True), Port("target", dtype="int"),
               Port("mask", optional=True, grad=False)),
       kernel=Kernel("loss", attrs=("ignore_index", "label_smoothing", "reduction"), saved=1),
       lower=_lower_reduction("ignore_index", "label_smoothing", "reduction"),
       attrs={"ignore_index": Attr("int", -100, "target value that does not count"),
              "label_smoothing": Attr("float", 0.0, "mix the one-hot target with uniform"),
              **_reduction("mean", "sum", doc="mean over the counted positions (weighted by `mask`) "
                           "or their sum")})
def cross_entropy(c):
    """Softmax cross-entropy from logits (classes on the last axis), mean (or sum) over counted
    positions (target ≠ ignore_index); an optional float `mask` of the target's shape weights
    positions (e.g. only answer tokens): mean = Σ mask·nll / Σ mask. Nothing counted gives 0
    (PyTorch gives NaN)."""
    s, t = _labels_match(c, "logits", "target")
    if c.has("mask"):
        m = c.input("mask")
        if m.rank != t.rank or not all(dims_equal(p, q) for p, q in zip(m.shape, t.shape, strict=True)):
            c.fail(f"`mask` must have the target's shape [{fmt_shape(t.shape)}], found {m}", port="mask")
    if not 0.0 <= c.attrs["label_smoothing"] < 1.0:
        c.fail("label_smoothing must be in [0, 1)", attr="label_smoothing")
    return tensor(SCALAR, s.dtype)


@defop("bce_with_logits", family="loss", loss=True, flops=_numel,
       kernel=Kernel("loss", attrs=("reduction",)), attrs=_reduction("mean", "sum"),
       lower=_lower_reduction("reduction"), inputs=(Port("logits", logits=True), Port("target", grad=False)))
def bce_with_logits(c):
    """Binary cross-entropy on logits: mean (or sum) of softplus(z) - y·z, stable for large |z|."""
    return tensor(SCALAR, _same(c, "logits", "target").dtype)


@defop("mse", family="loss", loss=True, flops=_numel, inputs=(Port("pred"), Port("target")),
       kernel=Kernel("loss", attrs=("reduction",)), attrs=_reduction("mean", "sum"),
       lower=_lower_reduction("reduction"))
def mse(c):
    """Squared error (pred - target)², its mean (default) or sum over the elements."""
    return tensor(SCALAR, _same(c, "pred", "target").dtype)


@defop("hinge", family="loss", loss=True, flops=_numel,
       kernel=Kernel("loss", attrs=("margin", "reduction")), lower=_lower_reduction("margin", "reduction"),
       inputs=(Port("scores", logits=True), Port("target", dtype="int")),
       attrs={"margin": Attr("float", 1.0, "required gap between the right class and the others"),
              **_reduction("mean", "sum", doc="mean or sum over the rows")})
def hinge(c):
    """Multi-class SVM loss as PyTorch's multi_margin_loss: per row
    L_i = Σ_{j≠y_i} max(0, s_j - s_{y_i} + margin) / C (C classes), then the mean (or sum) over
    the rows. The notes' SVM loss Σ_{j≠y_i} … without the 1/C is C × this: multiply by a
    literal (`{op: mul, in: [hinge, C]}`) if that scale matters."""
    s, _ = _labels_match(c, "scores", "target")
    return tensor(SCALAR, s.dtype)


@defop("kl_div", family="loss", loss=True, flops=_numel,
       kernel=Kernel("loss", attrs=("temperature", "reduction")),
       lower=_lower_reduction("temperature", "reduction"),
       inputs=(Port("student", logits=True), Port("teacher", logits=True)),
       attrs={"temperature": Attr("float", 1.0, "softmax(z / T) on both sides; the loss is × T²"),
              **_reduction("batchmean", "mean", "sum",
                           doc="batchmean: the sum divided by the first axis B (PyTorch's advice); "
                               "mean: divided by every element, classes included; sum")})
def kl_div(c):
    """Distillation loss T² · KL(softmax(teacher/T) ‖ softmax(student/T)) over the last (class)
    axis, as T² · F.kl_div(log_softmax(student/T), softmax(teacher/T), reduction): batchmean
    (default) divides the sum by B, the first axis, also for [B, T, C]."""
    if c.attrs["temperature"] <= 0:
        c.fail("temperature must be positive", attr="temperature")
    return tensor(SCALAR, _same(c, "student", "teacher").dtype)
