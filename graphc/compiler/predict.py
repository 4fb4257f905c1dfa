"""Predict the Numba specialisations a model's training step calls, before it runs.

The kernel calls of the driver (`graphc.compiler.calls`, typed operands) are turned into the
exact Numba signatures the first step will ask for: argument dtypes and ranks from the graph's
types, the buffer plan's destinations, the saved tensors typed by what the forward kernel
returns. graphc.compiler.warm compiles or loads them; tests/compiler/test_warm.py checks that
the prediction is exactly what the reference specs' first step compiles.

    jobs = predict(model.program, np.float32)

CompiledModel.kernel_jobs runs it once per model and dtype, and a saved model
(graphc.compiler.saved) keeps the result, so a cached start does not import this module.
"""

from __future__ import annotations

import inspect
import sys

import numba
import numpy as np
import sympy
from numba.core import types
from numba.core.registry import CPUDispatcher
from numba.core.typing.typeof import Purpose, typeof

from graphc.compiler.calls import (
    Absent,
    Call,
    Const,
    Dest,
    Mode,
    Out,
    Param,
    Program,
    Shape,
    Value,
    Vector,
    ZerosLike,
)
from graphc.kernels.precompile import Job, Ret
from graphc.ops import OPS

_STAND_IN = 7  # a symbolic dim's size when a broadcast pattern is worked out (any size > 1)


class _Predictor:
    """Walks the driver's calls in order, keeping each variable's Numba type (or the `Ret` of
    the job whose result it is), and makes a `Job` per njit specialisation a call reaches."""

    def __init__(self, prog: Program, dtype: np.dtype):
        self.prog, self.dtype = prog, dtype
        self.float = numba.from_dtype(dtype)
        self.bits = 32 if dtype == np.float32 else 64
        graph = prog.graph
        self.var_of = {var: key for key, var in prog.tensors.items()}
        self.param_rank = {
            f"{node}.{p}": len(d.shape) for node in graph.order for p, d in graph.params.get(node, {}).items()
        }
        self.fused = {f"{f.name}_{kind}": f for f in prog.fused for kind in ("fwd", "bwd")}
        self.env: dict[str, object] = {}
        self.jobs: list[Job] = []
        for node in graph.inputs:
            self.env[prog.tensors[(node.name, "out")]] = self.graph_type(prog.tensors[(node.name, "out")])

    # -- types
    def array(self, ndim: int, dt=None):
        return types.Array(dt or self.float, ndim, "C")

    def graph_type(self, var: str):
        t = self.prog.graph.types.get(self.var_of.get(var))
        if t is None:
            return None
        return self.array(t.rank, None if t.is_float else numba.from_dtype(np.dtype(t.dtype)))

    def shape_of(self, var: str) -> tuple | None:
        """A variable's shape with every symbolic dim a stand-in size (broadcast patterns)."""
        t = self.prog.graph.types.get(self.var_of.get(var))
        if t is None:
            return None
        dims = []
        for d in t.shape:
            d = sympy.sympify(d)
            d = d.subs({s: _STAND_IN for s in d.free_symbols})
            if not d.is_Integer:
                return None
            dims.append(int(d))
        return tuple(dims)

    @staticmethod
    def reshaped(t, ndim: int):
        if isinstance(t, Ret):
            return Ret(t.job, t.slot, ndim)
        if isinstance(t, types.Array):
            return t.copy(ndim=ndim, layout="C")
        return None

    def operand(self, op):
        """The Numba type the driver passes for `op` (None: unknown)."""
        match op:
            case Value(var):
                return self.env.get(var) or self.graph_type(var)
            case Param(name):
                return self.array(self.param_rank[name]) if name in self.param_rank else None
            case Const(value):
                try:
                    return typeof(value, Purpose.argument)
                except Exception:  # noqa: BLE001 - a constant numba cannot type
                    return None
            case Absent():
                return self.array(1)
            case Shape(dims):
                return typeof((1,) * len(dims), Purpose.argument)
            case Mode():
                return types.boolean
            case ZerosLike(of):
                return self.operand(of)
            case Vector(of):
                t = self.operand(of)
                return self.reshaped(t, 1) if t is not None else None
            case Dest(_, shape):
                return self.array(len(shape))
        return None  # Many (a list: only plain-NumPy kernels take one)

    # -- calls
    def call(self, c: Call) -> None:
        fn = self.prog.kernels.get(c.kernel)
        job = None
        if isinstance(fn, CPUDispatcher):
            job = self.library_job(c, fn)
        elif c.kernel in self.fused:
            group = self.fused[c.kernel]
            self.generated_jobs(c, group.module, group.group, lambda name: c.args.get(name))
        elif getattr(fn, "__module__", "") == "graphc.kernels.pointwise":
            self.single_op_jobs(c)
        elif hasattr(fn, "njit_calls"):  # a Python wrapper that says what it calls (recurrent)
            for disp, args in fn.njit_calls(self.float):
                self.add(Job(disp.py_func.__module__, disp.py_func.__name__, args, c.kernel))
        dests = {op.var: self.operand(op) for op in c.args.values() if isinstance(op, Dest)}
        # what a forward kernel saves, when its op says (else typed by its compiled result)
        kernel = getattr(OPS.get(c.op), "kernel", None)
        saved_ranks = kernel.saved_ranks if kernel is not None and c.kernel.endswith("_fwd") else ()
        first_saved = len(c.results) - len(saved_ranks)  # results: the outputs, then the saved
        first = None
        for slot, r in enumerate(c.results):
            if not isinstance(r, Out):
                continue
            if job is not None and r.var in dests and r.var != c.scalar:
                # a kernel returns the destination it wrote, and saves arrays its op declares:
                # both known now, so the calls that read them need not wait for this job to
                # compile (another process may take them)
                t = dests[r.var]
            elif job is not None and slot >= first_saved:
                t = self.array(saved_ranks[slot - first_saved])
            elif job is not None:
                t = Ret(job, slot, 0 if r.var == c.scalar else None)
            else:  # a Python kernel: what it returns is its destination, or the graph's type
                t = dests.get(r.var) or self.graph_type(r.var) or first
                if t is not None and r.var == c.scalar:
                    t = self.reshaped(t, 0)
            first = first or t
            if t is not None:
                self.env[r.var] = t

    def add(self, job: Job) -> int:
        self.jobs.append(job)
        return len(self.jobs) - 1

    def library_job(self, c: Call, fn) -> int | None:
        """A library kernel: its parameters in order, each the call's operand or, when the
        call leaves it out, `omitted(default)` as Numba types a missing keyword."""
        args = []
        for name, p in inspect.signature(fn.py_func).parameters.items():
            if name in c.args:
                t = self.operand(c.args[name])
            elif p.default is not inspect.Parameter.empty:
                t = types.Omitted(p.default)
            else:
                t = None
            if t is None:
                return None
            args.append(t)
        module = fn.py_func.__module__
        if getattr(sys.modules.get(module), fn.py_func.__name__, None) is not fn:
            return None  # not reachable by name from a helper process
        return self.add(Job(module, fn.py_func.__name__, tuple(args), c.kernel))

    def generated_jobs(self, c: Call, module, group, operand_of) -> None:
        """The njit loop a generated module's `fwd`/`bwd` calls: every array viewed with the
        group's collapsed rank, the float copy of the model's dtype."""
        from graphc.compiler import kernelgen as kg

        path = getattr(module, "__file__", None)
        if path is None:
            return  # generated in memory (unwritable cache): nothing a helper could load
        sig = kg._signature(group)
        kind = "bwd" if c.kernel.endswith("_bwd") else "fwd"
        names = sig.bwd if kind == "bwd" else sig.fwd
        args = []
        for name in names:
            op = operand_of(name)
            if name[0] == "a" and name[1:].isdigit():  # a scalar attribute
                t = self.operand(op) if op is not None else None
            elif name.startswith("in"):  # an input keeps its dtype
                t = self.operand(op) if op is not None else None
                t = self.reshaped(t, group.rank) if t is not None else None
            else:  # outputs, Jacobian entries, cotangents and gradients: the float dtype
                t = self.array(group.rank)
            if t is None:
                return
            args.append(t)
        self.add(Job(module.__name__, f"_{kind}{self.bits}", tuple(args), c.kernel, path))

    def single_op_jobs(self, c: Call) -> None:
        """An op with a pointwise rule runs its group of one for the ports' broadcast pattern
        (graphc.compiler.kernelgen._single_plan)."""
        from graphc.compiler import kernelgen as kg

        rec = OPS.get(c.op)
        if rec is None or rec.pointwise is None:
            return
        ports = [p.name for p in rec.inputs]
        attrs = list(rec.kernel.attrs)
        shapes = []
        for p in ports:
            op = c.args.get(p)
            shape = self.shape_of(op.var) if isinstance(op, Value) else None
            if shape is None:
                return
            shapes.append(shape)
        if len(ports) == 1 and not attrs and rec.kernel.saved <= 1:
            shapes = [(1,)]  # pointwise._unary: one flat loop whatever the shape
        mod = kg._single_plan(c.op, tuple(shapes), len(attrs)).mod

        def operand_of(name: str):
            if name.startswith("in"):
                return c.args.get(ports[int(name[2:])])
            if name[0] == "a" and name[1:].isdigit():
                return c.args.get(attrs[int(name[1:])])
            return None

        self.generated_jobs(c, mod, mod.group, operand_of)


def predict(prog: Program, dtype=np.float32) -> list[Job]:
    """The njit specialisations one training step of `prog` calls, in call order."""
    p = _Predictor(prog, np.dtype(dtype))
    for c in prog.forward:
        p.call(c)
    for var in prog.seeds:  # the loss weights: 0-d arrays
        p.env[var] = p.array(0)
    for c in prog.backward:
        p.call(c)
    return p.jobs


def uncovered(prog: Program, jobs: list[Job]) -> list[str]:
    """The driver's kernels with njit code this module does not predict (a Python wrapper over
    njit loops without `njit_calls`); plain-NumPy kernels compile nothing."""
    predicted = {j.label for j in jobs}
    out = []
    for name, fn in sorted(prog.kernels.items()):
        module = getattr(fn, "__module__", "") or ""
        if name in predicted or module == "graphc.kernels.views" or name.startswith("matmul_"):
            continue
        out.append(name)
    return out
