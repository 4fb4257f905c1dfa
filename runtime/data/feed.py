"""Match data fields to the model's graph inputs, by name.

A data batch is a dict of arrays; the model's inputs (``CompiledModel.inputs``) are fed from
the fields of the same name, or from the field named in ``train.data.map`` (``{input: field}``).
Each array is checked against the input's TensorSpec: rank, fixed dimensions, symbolic
dimensions bound consistently across inputs (every ``B`` is the same number), axes declared as
an expression of dims (``[B, T - 1]``, ``[2*B, 16]``) equal to its value at the dims the batch
binds (exact arithmetic, graphc.dimexpr: ``H/2 + 1/2`` at an even H fits no axis), and
dtype (``int64`` inputs accept integer data; ``float32`` inputs accept any numbers). A field of
shape [..] for an input declared [.., 1] gets the trailing 1 added. Anything else is a DataError.

Inputs named in ``train.data.generate`` (``{input: normal | uniform | zeros | ones}``) are not
read from the data: they are drawn for each batch with the shape the model declares, its
symbolic dimensions bound by the data-fed inputs (an unbound leading dimension is the batch's
sample count), an axis declared as an expression its exact value there (a whole number ≥ 0, or
a DataError). ``normal`` is N(0, 1), ``uniform`` is U[-1, 1). The draw comes from
``default_rng([seed, *key])``; the trainer passes ``key = (0, step, micro)``, evaluation
``(1, batch_index)``, so generated inputs are reproducible and a resumed run sees the same ones.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from graphc import dimexpr

from ..config import did_you_mean
from ..errors import ConfigError, DataError
from .base import Batch

GENERATORS = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "uniform": lambda rng, shape: rng.uniform(-1.0, 1.0, shape),
    "zeros": lambda rng, shape: np.zeros(shape),
    "ones": lambda rng, shape: np.ones(shape),
}


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def describe(batch: Batch) -> str:
    return ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in batch.items())


class Feeder:
    """Turns data batches into the exact inputs ``model.forward`` takes."""

    def __init__(
        self,
        inputs: dict,
        mapping: dict | None = None,
        *,
        source: str = "data",
        generate: dict | None = None,
        seed: int = 0,
    ):
        self.inputs = inputs
        self.mapping = dict(mapping or {})
        self.generate = dict(generate or {})
        self.seed = seed
        self.source = source
        unknown = [k for k in self.mapping if k not in inputs]
        if unknown:
            raise DataError(
                f"train.data.map names {', '.join(unknown)}, which the model does "
                f"not take as input (inputs: {', '.join(inputs)})"
            )
        for name, kind in self.generate.items():
            if name not in inputs:
                raise ConfigError(
                    f"train.data.generate names `{name}`, which the model does not take as "
                    f"input{did_you_mean(name, inputs)} (inputs: {', '.join(inputs)})"
                )
            if kind not in GENERATORS:
                raise ConfigError(
                    f"train.data.generate.{name}: unknown kind {kind!r}"
                    f"{did_you_mean(kind, GENERATORS)}; available: {', '.join(GENERATORS)}"
                )
            if name in self.mapping:
                raise ConfigError(
                    f"input `{name}` is both generated (train.data.generate) and mapped to a "
                    "data field (train.data.map); keep one"
                )
            if inputs[name].dtype == "int64" and kind in ("normal", "uniform"):
                raise ConfigError(
                    f"train.data.generate.{name}: `{kind}` draws real numbers, but input "
                    f"`{name}` is int64 (use zeros or ones, or make the input float32)"
                )

    def view(self, batch: Batch) -> Batch:
        """``batch`` with each mapped field also under its input's name (for metrics: a field
        mapped to input ``y`` or ``targets`` serves as the labels)."""
        extra = {name: batch[field] for name, field in self.mapping.items() if field in batch}
        return {**batch, **extra}

    def __call__(self, batch: Batch, key: tuple[int, ...] = (2,)) -> Batch:
        """The model's inputs from a data ``batch``; ``key`` picks the generated inputs' draw."""
        out: Batch = {}
        bound: dict[str, tuple[int, str]] = {}  # dim → (its size, the input that binds it)
        declared: list[tuple] = []  # the axes declared as expressions, checked once all are bound
        for name, spec in self.inputs.items():
            if name in self.generate:
                continue
            field = self.mapping.get(name, name)
            if field not in batch:
                raise DataError(
                    f"model input `{name}` {_fmt(spec.shape)} {spec.dtype} has no data field "
                    f"`{field}`; {self.source} yields {describe(batch)}"
                    + (
                        ""
                        if name in self.mapping
                        else f" (map one with `train.data.map: {{{name}: <field>}}`)"
                    )
                )
            out[name] = self._convert(name, field, spec, batch[field], bound, declared)
        values = {k: v for k, (v, _) in bound.items()}
        # over the dims the data binds first; one over a dim only a generated input binds (with
        # the sample count) once the generated inputs are sized
        later = [axis for axis in declared if not self._check_declared(*axis, values, bound)]
        if self.generate:
            rng = np.random.default_rng([self.seed, *key])
            n = len(next(iter(batch.values()))) if batch else None
            for name, spec in self.inputs.items():  # in declaration order: reproducible
                if name in self.generate:
                    shape = self._generated_shape(name, spec, values, bound, n)
                    a = GENERATORS[self.generate[name]](rng, shape)
                    out[name] = np.ascontiguousarray(a, dtype=np.dtype(spec.dtype))
            out = {name: out[name] for name in self.inputs}
            for axis in later:
                self._check_declared(*axis, values, bound)
        return out

    def _generated_shape(self, name, spec, values, bound, n) -> tuple[int, ...]:
        """The shape to draw: dims at their bound sizes (`values`, to which an unbound leading
        dim adds the sample count `n`), expressions at their exact values."""
        shape = []
        for axis, d in enumerate(spec.shape):
            if isinstance(d, int):
                shape.append(d)
                continue
            if axis == 0 and n is not None and d.isidentifier():
                values.setdefault(d, n)
            try:
                needed = dimexpr.names(d)
            except dimexpr.DimExprError as exc:
                raise DataError(
                    f"generated input `{name}` {_fmt(spec.shape)}: cannot size axis {axis}: {exc}"
                ) from None
            if not needed <= values.keys():
                raise DataError(
                    f"generated input `{name}` {_fmt(spec.shape)}: cannot size axis {axis} "
                    f"(`{d}`): no data-fed input binds {', '.join(sorted(needed - values.keys()))} "
                    f"(bound: {', '.join(f'{k}={v}' for k, v in values.items()) or 'nothing'})"
                )
            try:
                shape.append(dimexpr.size(d, values))
            except dimexpr.DimExprError as exc:
                raise DataError(
                    f"generated input `{name}` {_fmt(spec.shape)}: cannot size axis {axis}: {exc} "
                    f"({_where(needed, values, bound)})"
                ) from None
        return tuple(shape)

    def _convert(self, name, field, spec, a: np.ndarray, bound, declared) -> np.ndarray:
        where = f"model input `{name}`" + (f" (data field `{field}`)" if field != name else "")
        shape = tuple(spec.shape)
        if a.ndim + 1 == len(shape) and shape[-1] == 1:
            a = a[..., None]
        if a.ndim != len(shape):
            raise DataError(
                f"{where} expects shape {_fmt(shape)}, but {self.source} gives {list(a.shape)}"
            )
        for axis, (want, got) in enumerate(zip(shape, a.shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise DataError(
                    f"{where} expects shape {_fmt(shape)}, but {self.source} gives "
                    f"{list(a.shape)} (axis {axis}: {got} != {want})"
                )
            if isinstance(want, str) and not want.isidentifier():  # an expression (`2*B`)
                declared.append((where, shape, a.shape, axis, want))
            elif isinstance(want, str):  # a dim: the first input that has it binds it
                seen = bound.setdefault(want, (got, name))
                if seen[0] != got:
                    raise DataError(
                        f"dimension {want} is {seen[0]} for input `{seen[1]}` but "
                        f"{got} for `{name}` ({self.source})"
                    )
        if spec.dtype == "int64":
            if a.dtype.kind == "f":
                if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                    raise DataError(
                        f"{where} is int64, but {self.source} gives non-integer values ({a.dtype})"
                    )
            elif a.dtype.kind not in "biu":
                raise DataError(f"{where} is int64, but {self.source} gives {a.dtype}")
            return np.ascontiguousarray(a, dtype=np.int64)
        if a.dtype.kind not in "biuf":
            raise DataError(f"{where} is {spec.dtype}, but {self.source} gives {a.dtype}")
        return np.ascontiguousarray(a, dtype=np.dtype(spec.dtype))

    def _check_declared(self, where, shape, got_shape, axis, expr, values, bound) -> bool:
        """An axis declared as `expr` must be its exact value at the bound dims (`values`);
        False when a dim of it is not bound (yet: one no input binds is left to the model's own
        check, CompiledModel.feed)."""
        try:
            needed = dimexpr.names(expr)
            if not needed <= values.keys():
                return False
            want = dimexpr.value(expr, values)
        except dimexpr.UndefinedDim:
            want = None
        except dimexpr.DimExprError as exc:  # a TensorSpec not made by the compiler
            raise DataError(f"{where} declares axis {axis} as `{expr}`: {exc}") from None
        got = got_shape[axis]
        if want != got:
            value = (
                "undefined (a division by zero)"
                if want is None
                else f"{want}, not a whole number"
                if isinstance(want, Fraction)
                else want
            )
            raise DataError(
                f"{where} expects shape {_fmt(shape)}, but {self.source} gives {list(got_shape)} "
                f"(axis {axis}: {got} != {expr} = {value} at {_where(needed, values, bound)})"
            )
        return True


def _where(dims, values, bound) -> str:
    """`T=5 from `x`` for each dim: what the sizes were and which input bound them."""
    return ", ".join(
        f"{d}={values[d]}" + (f" from `{bound[d][1]}`" if d in bound else " (the sample count)")
        for d in sorted(dims)
    )
