"""Kernel calls exactly as the generated driver makes them (graphc.compiler.autodiff):
keyword arguments from the op's record (ports in order, the noise input, params, buffers,
lowered attributes, `training`), an absent optional input or param as a zero-size array,
`out=` a destination for a single float output, and `into_<port>=` a destination for every
input port the backward can write (a zero-size array for an absent one).

Calling kernels only this way keeps one Numba specialisation per (kernel, dtype, ranks) for
all the tiers and the compiled models: an allocating call (`out=None`) or a non-contiguous
argument would compile another one on a cold cache.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from tests.op_cases import Case


def takes(fn, name: str) -> bool:
    return name in inspect.signature(getattr(fn, "py_func", fn)).parameters


def empty(dtype) -> np.ndarray:
    """The driver's stand-in for an absent optional input or parameter."""
    return np.zeros(0, dtype)


def forward(op, args: dict, n_out: int, out_shape=None, fill=np.nan, dtype=None):
    """(outputs, saved, destination): `out=` is passed, filled with `fill`, when `out_shape`
    is given (a single float output) and the kernel takes it; its dtype is `dtype`, by default
    that of the float arguments."""
    k = op.kernel
    kw = dict(args)
    dest = None
    if out_shape is not None and takes(k.fwd, "out"):
        if dtype is None:
            arrays = [x for v in args.values() for x in (v if isinstance(v, list) else [v])]
            dtype = next(x.dtype for x in arrays if isinstance(x, np.ndarray) and x.dtype.kind == "f")
        dest = kw["out"] = np.full(out_shape, fill, dtype)
    res = k.fwd(**kw)
    assert isinstance(res, tuple), f"{op.name}: the forward must return a tuple"
    return res[:n_out], res[n_out:], dest


def grad_names(op, args: dict) -> list[str]:
    """The slots of the backward's result: one per input (per tensor of a variadic port),
    then one per parameter."""
    k = op.kernel
    names = []
    for port in k.inputs:
        names += [f"{port}[{i}]" for i in range(len(args[port]))] if k.variadic else [port]
    return names + list(k.params)


def backward(op, args: dict, outputs: dict, saved: tuple, cotangents: dict, fill=np.nan):
    """({slot: gradient}, {port: destination}): every `into_<port>` the kernel takes gets an
    array filled with `fill` (a zero-size one for an absent input)."""
    k = op.kernel
    kw = dict(args)
    kw |= {f"g_{p}": g for p, g in cotangents.items()}
    kw |= {f"saved{i}": s for i, s in enumerate(saved)}
    # the driver hands a loss's output back as the scalar the spec types it as (shape ())
    kw |= {p: v.reshape(()) if op.loss else v for p, v in outputs.items() if takes(k.bwd, p)}
    into = {}
    for port in k.inputs:
        if takes(k.bwd, f"into_{port}"):
            v = args[port]
            into[port] = empty(v.dtype) if v.size == 0 else np.full(v.shape, fill, v.dtype)
    grads = k.bwd(**kw, **{f"into_{p}": d for p, d in into.items()})
    names = grad_names(op, args)
    assert isinstance(grads, tuple) and len(grads) == len(names), (
        f"{op.name}: the backward returned {len(grads)} gradients for {names}")
    return dict(zip(names, grads, strict=True)), into


def get(args: dict, name: str) -> np.ndarray:
    if name.endswith("]"):
        port, i = name[:-1].split("[")
        return args[port][int(i)]
    return args[name]


def put(args: dict, name: str, value: np.ndarray) -> dict:
    """A copy of `args` with `name` (a port, `xs[1]`, or a param) replaced."""
    out = dict(args)
    if name.endswith("]"):
        port, i = name[:-1].split("[")
        out[port] = list(out[port])
        out[port][int(i)] = value
    else:
        out[name] = value
    return out


@dataclass
class Run:
    """One table case run at one dtype, the driver's way."""

    case: Case
    dtype: type

    @property
    def op(self):
        return self.case.op

    def args(self, round_to=None, **tensors) -> dict:
        """Fresh arguments (buffers are updated in place by a training forward): float arrays
        in `dtype`, first rounded to `round_to` if given (to compare two dtypes on equal values).
        `tensors` replace the row's values (special cases reuse a row's lowering this way)."""
        def conv(v):
            if v is None:
                return empty(self.dtype)
            if isinstance(v, list):
                return [conv(x) for x in v]
            if v.dtype.kind != "f":
                return v.copy()
            if round_to is not None:
                v = v.astype(round_to)
            return np.ascontiguousarray(v, dtype=self.dtype).copy()

        c, k = self.case, self.op.kernel
        values = c.ports | c.params | tensors
        args = {p: conv(values[p]) for p in k.inputs}
        args |= {p: conv(values[p]) for p in (*k.params, *k.buffers)}
        args |= c.lowered
        if k.mode:
            args["training"] = c.row.training
        return args

    @property
    def out_shape(self):
        """The `out=` destination's shape, when the driver passes one."""
        c = self.case
        if len(c.outputs) != 1 or not c.graph.types[("y", c.node.outputs[0])].is_float:
            return None
        return next(iter(c.outputs.values()))

    def forward(self, args, fill=np.nan):
        outs, saved, dest = forward(self.op, args, len(self.case.outputs), self.out_shape, fill, self.dtype)
        assert len(saved) == self.op.kernel.saved, (
            f"{self.op.name}: {len(saved)} saved tensors, the op's record says {self.op.kernel.saved}")
        return dict(zip(self.case.outputs, outs, strict=True)), saved, dest

    def backward(self, args, outputs, saved, cotangents, fill=np.nan):
        return backward(self.op, args, outputs, saved, cotangents, fill)

    def differentiable(self, args) -> list[str]:
        """Gradient slots a finite difference can check: present float inputs of
        differentiable ports, and trainable parameters."""
        k = self.op.kernel
        names = []
        for name in grad_names(self.op, args):
            port = name.split("[")[0]
            if port in k.params:
                ok = port in self.case.trainable
            else:
                ok = port not in k.nondiff and self.op.port(port).differentiable
            x = get(args, name)
            if ok and x.size and x.dtype.kind == "f":
                names.append(name)
        return names

    def cotangents(self, rng, outputs: dict, round_to=None) -> dict:
        """Random cotangents; 0 where an output is not finite (a masked score's -inf: the
        softmax after it sends no gradient there)."""
        cot = {}
        for p, o in outputs.items():
            g = np.where(np.isfinite(o), rng.standard_normal(o.shape), 0.0)
            cot[p] = (g.astype(round_to) if round_to is not None else g).astype(self.dtype)
        return cot
