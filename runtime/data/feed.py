"""Match data fields to the model's graph inputs, by name.

A data batch is a dict of arrays; the model's inputs (``CompiledModel.inputs``) are fed from
the fields of the same name, or from the field named in ``train.data.map`` (``{input: field}``).
Each array is checked against the input's TensorSpec: rank, fixed dimensions, symbolic
dimensions bound consistently across inputs (every ``B`` is the same number), and dtype
(``int64`` inputs accept integer data; ``float32`` inputs accept any numbers). A field of shape
[..] for an input declared [.., 1] gets the trailing 1 added. Anything else is a DataError.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .base import Batch


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def describe(batch: Batch) -> str:
    return ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in batch.items())


class Feeder:
    """Turns data batches into the exact inputs ``model.forward`` takes."""

    def __init__(self, inputs: dict, mapping: dict | None = None, *, source: str = "data"):
        self.inputs = inputs
        self.mapping = dict(mapping or {})
        self.source = source
        unknown = [k for k in self.mapping if k not in inputs]
        if unknown:
            raise DataError(
                f"train.data.map names {', '.join(unknown)}, which the model does "
                f"not take as input (inputs: {', '.join(inputs)})"
            )

    def view(self, batch: Batch) -> Batch:
        """``batch`` with each mapped field also under its input's name (for metrics: a field
        mapped to input ``y`` or ``targets`` serves as the labels)."""
        extra = {name: batch[field] for name, field in self.mapping.items() if field in batch}
        return {**batch, **extra}

    def __call__(self, batch: Batch) -> Batch:
        out: Batch = {}
        bound: dict[str, tuple[int, str]] = {}
        for name, spec in self.inputs.items():
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
            out[name] = self._convert(name, field, spec, batch[field], bound)
        return out

    def _convert(self, name, field, spec, a: np.ndarray, bound) -> np.ndarray:
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
            if isinstance(want, str):
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
