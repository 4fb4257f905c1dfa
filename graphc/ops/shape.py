"""Ops that only move data around: flatten, reshape, transpose, permute, concat, split, slice."""

from __future__ import annotations

from graphc.ops.registry import Attr, Kernel, Port, RuntimeShape, axis, defop, register
from graphc.shapes import MAX_TERMS, dims_equal, expanded_terms, fmt_dim, fmt_shape


def _axis(c, x, attr: str, value=None) -> int:
    a = c.attrs[attr] if value is None else value
    if not -x.rank <= a < x.rank:
        c.fail(f"{attr} {a} is out of range for a rank-{x.rank} input {x}", attr=attr)
    return a % x.rank


# Data movement runs over NumPy (graphc.kernels.views): a view or one copy, no Numba needed.
@defop("flatten", family="shape", inputs=(Port("x", dtype="any"),), tags=("shape_only",),
       kernel=Kernel("views", attrs=("start",)), lower=lambda a, rank: {"start": axis(a["start"], rank)},
       attrs={"start": Attr("axis", 1, "first axis to merge (the batch axis 0 is kept by default)")})
def flatten(c):
    """Merge the axes from `start` to the end into one: [B, C, H, W] → [B, C·H·W]."""
    import sympy

    x = c.input("x", min_rank=1)
    s = _axis(c, x, "start")
    return x.with_shape(x.shape[:s] + (sympy.Mul(*x.shape[s:]),))


@defop("reshape", family="shape", inputs=(Port("x", dtype="any"),), tags=("shape_only",),
       kernel=Kernel("views", attrs=("shape",)),
       lower=lambda a, rank: {"shape": RuntimeShape(tuple(a["shape"]))},
       attrs={"shape": Attr("shape", doc="new shape; dims may be symbolic, one may be -1")})
def reshape(c):
    """View the data with a new shape of the same size; one axis may be -1 (inferred)."""
    import sympy

    x = c.input("x")
    target = list(c.attrs["shape"])
    for d in target:
        if d != -1 and (d.is_number and d < 1 or d.is_positive is False):
            c.fail(f"axis sizes must be positive (one may be -1), found {fmt_dim(d)}", attr="shape")
    holes = [i for i, d in enumerate(target) if d == -1]
    if len(holes) > 1:
        c.fail("at most one axis of `shape` may be -1", attr="shape")
    known = sympy.Mul(*[d for d in target if d != -1])
    if holes:
        rest = x.numel() / known
        if expanded_terms(rest) <= MAX_TERMS:  # (simplify of a huge symbolic size takes minutes)
            rest = sympy.simplify(rest)
        rest = c.whole(rest, f"the -1 axis ({fmt_shape(x.shape)} / {fmt_dim(known)})", attr="shape")
        target[holes[0]] = rest
    elif not dims_equal(known, x.numel()):
        c.fail(f"cannot reshape {x} ({fmt_dim(x.numel())} elements) into "
               f"[{fmt_shape(tuple(target))}] ({fmt_dim(known)} elements)", attr="shape")
    return x.with_shape(target)


@defop("transpose", family="shape", inputs=(Port("x", dtype="any"),), tags=("shape_only",),
       kernel=Kernel("views", attrs=("dim0", "dim1")),
       lower=lambda a, rank: {"dim0": axis(a["dim0"], rank), "dim1": axis(a["dim1"], rank)},
       attrs={"dim0": Attr("axis", -2, "first axis"), "dim1": Attr("axis", -1, "second axis")})
def transpose(c):
    """Swap two axes."""
    x = c.input("x", min_rank=2)
    a, b = _axis(c, x, "dim0"), _axis(c, x, "dim1")
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return x.with_shape(shape)


@defop("permute", family="shape", inputs=(Port("x", dtype="any"),), tags=("shape_only",),
       kernel=Kernel("views", attrs=("dims",)),  # the backward inverts the order with argsort
       lower=lambda a, rank: {"dims": tuple(axis(d, rank) for d in a["dims"])},
       attrs={"dims": Attr("ints", doc="new order of the axes, e.g. [0, 2, 1]")})
def permute(c):
    """Reorder all axes."""
    x = c.input("x")
    dims = [_axis(c, x, "dims", d) for d in c.attrs["dims"]]
    if sorted(dims) != list(range(x.rank)):
        c.fail(f"dims {c.attrs['dims']} is not a permutation of the {x.rank} axes of {x}", attr="dims")
    return x.with_shape([x.shape[d] for d in dims])


@defop("concat", family="shape", inputs=(Port("xs", variadic=True, dtype="any"),), tags=("skip",),
       kernel=Kernel("views", attrs=("axis",)), lower=lambda a, rank: {"axis": axis(a["axis"], rank)},
       attrs={"axis": Attr("axis", -1, "axis to join along")})
def concat(c):
    """Join tensors along `axis`; every other axis must match (U-Net skips, bidirectional)."""
    xs = c.inputs["xs"]
    if len(xs) < 2:
        c.fail(f"concat needs at least two inputs, found {len(xs)}", port="xs")
    first = xs[0]
    axis = _axis(c, first, "axis")
    total = first.shape[axis]
    for k, t in enumerate(xs[1:], start=1):
        if t.rank != first.rank:
            c.fail(f"input {k} has rank {t.rank} ({t}) but input 0 has rank {first.rank} ({first})",
                   port="xs")
        for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)):
            if i != axis and not dims_equal(a, b):
                c.fail(f"input {k} {t} does not match input 0 {first} on axis {i}: "
                       f"{fmt_dim(a)} vs {fmt_dim(b)} (only axis {axis} may differ)", port="xs")
        total = total + t.shape[axis]
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


def _split_outputs(attrs) -> tuple[str, ...]:
    return tuple(str(i) for i in range(len(attrs.get("sizes") or ())))


@defop("split", family="shape", inputs=(Port("x", dtype="any"),), outputs=_split_outputs,
       kernel=Kernel("views", attrs=("axis", "sizes")),
       lower=lambda a, rank: {"axis": axis(a["axis"], rank), "sizes": a["sizes"]},
       attrs={"axis": Attr("axis", -1, "axis to cut"),
              "sizes": Attr("ints", doc="sizes of the pieces; refer to them as `name.0`, `name.1`, …")})
def split(c):
    """Cut a tensor into pieces along `axis`; the sizes must add up to that axis."""
    import sympy

    x = c.input("x")
    axis = _axis(c, x, "axis")
    sizes = c.attrs["sizes"]
    if not sizes:
        c.fail("sizes must list at least one piece", attr="sizes")
    if any(s < 1 for s in sizes):
        c.fail(f"every piece needs a positive size, found sizes {list(sizes)}", attr="sizes")
    if not dims_equal(sympy.Integer(sum(sizes)), x.shape[axis]):
        c.fail(f"sizes {sizes} add up to {sum(sizes)}, but axis {axis} of {x} is "
               f"{fmt_dim(x.shape[axis])}", attr="sizes")
    return {str(i): x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1:])
            for i, s in enumerate(sizes)}


@defop("slice", family="shape", inputs=(Port("x", dtype="any"),), tags=("shape_only",),
       kernel=Kernel("views", attrs=("axis", "start", "stop")),
       lower=lambda a, rank: {"axis": axis(a["axis"], rank), "start": a["start"], "stop": a["stop"]},
       attrs={"axis": Attr("axis", doc="axis to slice"),
              "start": Attr("int", 0, "first index"),
              "stop": Attr("int", None, "one past the last index (null: the end)")})
def slice_(c):
    """x[..., start:stop, ...] along one axis (non-negative indices)."""
    import sympy

    x = c.input("x")
    axis = _axis(c, x, "axis")
    n = x.shape[axis]
    start, stop = c.attrs["start"], c.attrs["stop"]
    stop_d = n if stop is None else sympy.Integer(stop)
    if start < 0 or (stop is not None and stop <= start):
        c.fail(f"empty or negative slice {start}:{stop}", attr="stop")
    if n.is_Integer and stop is not None and stop > n:
        c.fail(f"stop {stop} is past the end of axis {axis} (size {n})", attr="stop")
    if n.is_Integer and start >= n:
        c.fail(f"start {start} is past the end of axis {axis} (size {n})", attr="start")
    return x.with_shape(x.shape[:axis] + (stop_d - start,) + x.shape[axis + 1:])


@register("slice", "guards")
def _slice_guards(attrs: dict, inputs: dict) -> list:
    """What a batch must satisfy beyond the output's size (graphc.compiler.guards): with a
    `stop`, the output is `stop - start` whatever the axis, so a symbolic axis shorter than `stop`
    would give NumPy's clipped slice, smaller than every buffer sized from the type."""
    x = inputs["x"]
    axis = attrs["axis"] % x.rank
    n, start, stop = x.shape[axis], attrs["start"], attrs["stop"]
    if stop is None:  # the output, n - start, is guarded ≥ 1 like every size
        return []
    return [(n - stop, f"slice {start}:{stop} needs axis {axis} of its input, {fmt_dim(n)}, to be at "
             f"least {stop}")]

