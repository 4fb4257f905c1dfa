"""CompiledModel: the only thing the runtime sees of a spec.

It holds the parameter specs with their initializers, the generated forward and backward,
and the names of inputs, outputs and losses. It checks each batch against the spec's input
shapes (binding B, T, …) so a wrong shape is a clear error, not a kernel crash.
"""

from __future__ import annotations

import re
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from graphc.compiler.plan import Arena, BufferPlan

if TYPE_CHECKING:  # a saved model (graphc.compiler.saved) runs without the front end's imports
    from graphc.ir import Graph


class InputError(ValueError):
    """A batch that does not fit the spec's inputs."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # str: a symbolic dimension (or an expression of them)
    dtype: str


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: tuple[int, ...]
    init: str
    decay: bool
    node: str
    trainable: bool = True


@dataclass
class ForwardResult:
    """What a forward returns. `tape` holds the values the backward reads; they live in the
    model's preallocated buffers, which go back to the model once the backward has run (or the
    result is dropped), so a result can be differentiated once."""

    outputs: dict[str, np.ndarray]
    losses: dict[str, float]
    tape: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    params: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    arena: Arena | None = field(repr=False, default=None)
    gradients: tuple | None = field(repr=False, default=None)  # (G, GX) once computed
    loss_weights: dict | None = field(repr=False, default=None)  # the weights they were computed with
    release: object = field(repr=False, default=None)


class ArenaPool:
    """Free arenas by (dims, dtype, reuse). A forward takes one (building it the first time a
    batch shape is seen); its backward, or dropping its result, gives it back. Several results
    alive at once each hold their own arena, so nothing they hold is overwritten."""

    def __init__(self, plan: BufferPlan, keep: int = 8):
        self.plan = plan
        self.keep = keep  # free arenas kept around (a sampler growing T would pile them up)
        self.free: OrderedDict[tuple, list[Arena]] = OrderedDict()

    def acquire(self, X: dict[str, np.ndarray], dtype: np.dtype, reuse: bool) -> tuple[tuple, Arena]:
        sizes = self.plan.sizes_of(X)
        key = (tuple(sorted(sizes.items())), dtype.str, reuse)
        stack = self.free.get(key)
        if stack:
            return key, stack.pop()
        return key, Arena(self.plan, sizes, dtype, reuse)

    def give_back(self, key: tuple, arena: Arena) -> None:
        self.free.setdefault(key, []).append(arena)
        self.free.move_to_end(key)
        while sum(len(v) for v in self.free.values()) > self.keep:
            oldest = next(iter(self.free))
            self.free[oldest].pop(0)
            if not self.free[oldest]:
                del self.free[oldest]


_INIT = re.compile(r"^(uniform|normal)\(([-+0-9.eE]+)\)$")


def initialize(spec: ParamSpec, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    if spec.init == "zeros":
        return np.zeros(spec.shape, dtype)
    if spec.init == "ones":
        return np.ones(spec.shape, dtype)
    m = _INIT.match(spec.init)
    if not m:
        raise ValueError(f"unknown initializer `{spec.init}` for parameter `{spec.name}`")
    scale = float(m.group(2))
    if m.group(1) == "uniform":
        return rng.uniform(-scale, scale, spec.shape).astype(dtype)
    return (rng.standard_normal(spec.shape) * scale).astype(dtype)


def _id_range(graph: Graph, name: str) -> int:
    """How many distinct ids an int input may hold: the vocabulary of an embedding or the class
    count of a loss reading it, else 2 (for synthetic batches, graphc.compiler.checks: kept as
    plain data so that a restored model makes them without its graph)."""
    from graphc.ops import OPS

    for node in graph.nodes.values():
        for inp in node.inputs:
            if inp.src != name:
                continue
            if node.op == "embedding":
                return node.attrs["num"]
            if OPS[node.op].loss:
                t = graph.types.get(node.inputs[0].tensor)
                if t is not None and t.shape[-1].is_Integer:
                    return int(t.shape[-1])
    return 2


class CompiledModel:
    def __init__(self, graph: Graph, tensors: dict[tuple[str, str], str], source: str,
                 source_path: str, namespace: dict, buffers: BufferPlan, dtype=np.float32):
        import sympy

        self.graph = graph
        self.buffer_plan = buffers
        self._arenas = ArenaPool(buffers)
        self._tensors = dict(tensors)  # (node, port) → variable name in the generated driver
        self.name = graph.name
        self.source = source
        self.source_path = source_path  # the generated driver
        self.spec_path = graph.file  # the spec it came from (relative data paths start here)
        self.dtype = np.dtype(dtype)
        self._forward = namespace["forward"]
        self._backward = namespace["backward"]
        self.inputs = {
            n.name: TensorSpec(n.name, tuple(int(d) if sympy.sympify(d).is_Integer else str(d)
                                             for d in n.shape_spec), n.dtype)
            for n in graph.inputs
        }
        self.outputs = list(graph.outputs)
        self.losses = list(graph.losses)
        self.params = {
            f"{node}.{p}": ParamSpec(f"{node}.{p}", d.shape, d.init, d.decay, node, d.trainable)
            for node in graph.order for p, d in graph.params.get(node, {}).items()
        }
        self.train = graph.train
        self.metadata = {"spec": graph.file, "doc": graph.doc, "nodes": len(graph.nodes)}
        self.id_ranges = {n.name: _id_range(graph, n.name) for n in graph.inputs if n.dtype == "int64"}
        # what the bound dims must satisfy for every inferred size to be whole and ≥ 1, and the
        # input axes declared as expressions (graphc.compiler.guards): plain source and data,
        # saved with the model
        from graphc.compiler.guards import guard_source

        bindable = {d for s in self.inputs.values() for d in s.shape if isinstance(d, str) and d.isidentifier()}
        self.guard_source, self.guards = guard_source(graph, bindable)

    # -- saved between runs (graphc.compiler.saved)
    # The front end's objects: a model restored from its saved state compiles its spec again
    # the first time one of them is asked for (a NaN diagnosis, an inference model, `sources`).
    _FRONT_END = ("graph", "program", "fused")
    _NOT_SAVED = (*_FRONT_END, "_arenas", "_forward", "_backward", "_inference", "_rebuild",
                  "_check_guards_fn")

    def saved_state(self) -> dict:
        """Everything but the front end's objects and the loaded driver: plain data."""
        return {k: v for k, v in self.__dict__.items() if k not in self._NOT_SAVED}

    @classmethod
    def restore(cls, state: dict, namespace: dict, rebuild) -> CompiledModel:
        """A model from `saved_state()`, with its driver executed into `namespace`;
        `rebuild()` compiles the same spec again, for the front end's objects."""
        model = object.__new__(cls)
        model.__dict__.update(state)
        model._arenas = ArenaPool(model.buffer_plan)
        model._forward, model._backward = namespace["forward"], namespace["backward"]
        model._rebuild = rebuild
        return model

    def __getattr__(self, name: str):
        rebuild = self.__dict__.get("_rebuild")
        if name not in self._FRONT_END or rebuild is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        fresh = rebuild()
        for key in self._FRONT_END:
            self.__dict__[key] = getattr(fresh, key)
        del self.__dict__["_rebuild"]
        return self.__dict__[name]

    def __repr__(self) -> str:
        n = sum(int(np.prod(p.shape)) for p in self.params.values() if p.trainable)
        return f"<CompiledModel {self.name}: {n:,} parameters, dtype {self.dtype}>"

    def astype(self, dtype) -> CompiledModel:
        """The same model computing in another float dtype (float64 for gradient checks)."""
        other = object.__new__(CompiledModel)
        other.__dict__ = {**self.__dict__, "dtype": np.dtype(dtype)}
        return other

    # -- parameters
    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {name: initialize(spec, rng, self.dtype) for name, spec in self.params.items()}

    # -- running
    def feed(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """Check a batch against the inputs (binding symbolic dims) and convert dtypes."""
        out, bound = {}, {}
        for name, spec in self.inputs.items():
            if name not in batch:
                raise InputError(f"the batch has no `{name}`; the spec's inputs are "
                                 f"{', '.join(self.inputs)} (got {', '.join(batch) or 'nothing'})")
            x = np.asarray(batch[name])
            if spec.dtype == "int64":
                if x.dtype.kind not in "iu":
                    raise InputError(f"input `{name}` must hold integers, found {x.dtype}")
                x = np.ascontiguousarray(x, dtype=np.int64)
            else:
                if x.dtype.kind not in "fiub":
                    raise InputError(f"input `{name}` must be numeric, found {x.dtype}")
                x = np.ascontiguousarray(x, dtype=self.dtype)
            declared = "×".join(str(d) for d in spec.shape)
            if x.ndim != len(spec.shape):
                raise InputError(f"input `{name}` has shape {x.shape}; the spec declares "
                                 f"[{declared}] (rank {len(spec.shape)})")
            for axis, (d, n) in enumerate(zip(spec.shape, x.shape, strict=True)):
                if isinstance(d, int):
                    if d != n:
                        raise InputError(f"input `{name}` has shape {x.shape}; the spec declares "
                                         f"[{declared}]: axis {axis} must be {d}")
                elif d.isidentifier() and bound.setdefault(d, (n, name))[0] != n:
                    raise InputError(f"dimension {d} is {bound[d][0]} in `{bound[d][1]}` but "
                                     f"{n} in `{name}`")
            out[name] = x
        self.check_sizes({d: n for d, (n, _) in bound.items()}, out)
        return out

    def check_sizes(self, sizes: dict[str, int], fed: dict[str, np.ndarray] | None = None) -> None:
        """Every size the front end inferred must be whole and ≥ 1 at these dims: an `exact`
        conv's (H - 3)/2 + 1 at an even H is an error, not the floor the driver's integer
        arithmetic would silently take; and given the `fed` inputs, each axis declared as an
        expression (`2*B`, `H/2 + 1/2`) must hold its value (graphc.compiler.guards: generated
        Python, no sympy). InputError if not."""
        if not self.__dict__.get("guards"):
            return
        fn = self.__dict__.get("_check_guards_fn")
        if fn is None:
            namespace: dict = {}
            exec(compile(self.guard_source, "<dimension guards>", "exec"), namespace)  # noqa: S102 - made by guards
            fn = self.__dict__["_check_guards_fn"] = namespace["check"]
        failed = fn(sizes, fed)
        if failed is not None:
            from graphc.compiler.guards import message

            i, value = failed
            raise InputError(message(self.guards[i], value, sizes))

    def forward(self, params, batch, *, training: bool = False, seed: int = 0,
                reuse: bool = True) -> ForwardResult:
        """Run the forward. `reuse=False` gives every tensor its own buffer, so that every
        value on the tape stays readable (for diagnosis; it costs memory)."""
        X = self.feed(batch)
        rng = np.random.default_rng(seed)
        key, arena = self._arenas.acquire(X, self.dtype, reuse)
        try:
            outputs, losses, tape = self._forward(params, X, arena.views, training, rng, self.dtype)
        except BaseException:
            self._arenas.give_back(key, arena)
            raise
        # loss kernels return shape (1,); a scalar node used as a loss (`sum`, `mean`) has shape ()
        result = ForwardResult(outputs, {k: float(np.ravel(v)[0]) for k, v in losses.items()}, tape,
                               params, arena)
        result.release = weakref.finalize(result, self._arenas.give_back, key, arena)
        return result

    def kernel_jobs(self) -> tuple[list, list[str]]:
        """The njit specialisations a training step calls, and the driver's kernels that are not
        predicted (graphc.compiler.predict); worked out once per dtype."""
        jobs = self.__dict__.setdefault("_jobs", {})  # shared with astype's copies: by dtype
        if self.dtype.str not in jobs:
            from graphc.compiler.predict import predict, uncovered

            found = predict(self.program, self.dtype)
            jobs[self.dtype.str] = (found, uncovered(self.program, found))
        return jobs[self.dtype.str]

    def warm(self, say=None, processes: int | None = None, extra=()):
        """Load or compile the kernels a training step calls before the first one runs, on a
        cold start in parallel processes; `say(text)` announces a compile, `extra` are more
        jobs (the optimizer's) (graphc.compiler.warm)."""
        from graphc.compiler.warm import warm

        return warm(self, say, processes, extra)

    # -- inference
    def inference_model(self, outputs: list[str] | tuple[str, ...] | None = None) -> CompiledModel:
        """This model pruned to `outputs` (default: all outputs) with no losses: its forward
        needs only the inputs those outputs read and its backward is empty. Compiled once per
        set of outputs and kept."""
        from graphc.compiler import compile_graph
        from graphc.compiler.prune import outputs_only

        key = (tuple(self.outputs if outputs is None else outputs), self.dtype.str)
        cache = self.__dict__.setdefault("_inference", {})
        if key not in cache:
            cache[key] = compile_graph(outputs_only(self.graph, key[0]), dtype=self.dtype)
        return cache[key]

    def predict(self, params: dict[str, np.ndarray], inputs: dict[str, Any], *,
                outputs: list[str] | tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """The spec's outputs (or the named ones) in inference mode (dropout off, batchnorm's
        running statistics), from only the inputs they are computed from: no targets, loss
        masks or other inputs of the losses. Raises InputError for a missing or ill-shaped
        input, naming it."""
        model = self.inference_model(outputs)
        missing = [n for n in model.inputs if n not in inputs]
        if missing:
            needs = {o: sorted(model.sources(o) & set(missing)) for o in model.outputs}
            why = "; ".join(f"`{o}` reads {', '.join(f'`{n}`' for n in v)}" for o, v in needs.items() if v)
            raise InputError(f"missing input {', '.join(f'`{n}`' for n in missing)} ({why}); "
                             f"given: {', '.join(inputs) or 'nothing'}")
        result = model.forward(params, {n: inputs[n] for n in model.inputs}, training=False)
        outs = dict(result.outputs)
        result.release()  # nothing to differentiate: the buffers go back at once
        return outs

    def _gradients(self, result: ForwardResult, weights: dict[str, float] | None) -> tuple[dict, dict]:
        unknown = sorted(set(weights or {}) - set(self.losses))
        if unknown:
            raise ValueError(f"no loss named {', '.join(unknown)}; the spec's losses are "
                             f"{', '.join(self.losses) or 'none'}")
        W = {name: 1.0 for name in self.losses} | dict(weights or {})
        if result.gradients is None:
            if result.arena is None:
                raise ValueError("this forward result has no tape to differentiate")
            try:
                result.gradients = self._backward(result.params, result.tape, result.arena.views,
                                                  self.dtype, W)
                result.loss_weights = W
            finally:  # the buffers go back to the pool: the tape is spent
                result.tape, result.arena = {}, None
                result.release()
        elif result.loss_weights != W:
            raise ValueError("this forward result was already differentiated with other loss weights; "
                             "run the forward again")
        return result.gradients

    def backward(self, result: ForwardResult, weights: dict[str, float] | None = None
                 ) -> dict[str, np.ndarray]:
        """Parameter gradients of sum(weights[loss] * loss), each weight 1 unless given; computed
        once per result (its buffers are then reused)."""
        return self._gradients(result, weights)[0]

    def input_gradients(self, result: ForwardResult) -> dict[str, np.ndarray]:
        """Gradients with respect to float inputs (only for models compiled with wrt_inputs)."""
        return self._gradients(result, result.loss_weights)[1]

    def first_nonfinite(self, params, batch, *, seed: int = 0) -> str | None:
        """The spec node whose output first turns NaN/Inf (forward, then gradients)."""
        for name, value in params.items():
            if not np.all(np.isfinite(value)):
                return self.params[name].node
        # a training forward updates buffers (batchnorm running stats) in place: work on copies
        params = {k: v.copy() if k in self.params and not self.params[k].trainable else v
                  for k, v in params.items()}
        result = self.forward(params, batch, training=True, seed=seed, reuse=False)
        tape = result.tape
        for node in self.graph.order:
            for port in self.graph.nodes[node].outputs:
                var = self._var(node, port)
                v = tape.get(var)
                if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                    return node
        for name, g in self.backward(result).items():
            if not np.all(np.isfinite(g)):
                return self.params[name].node
        return None

    def sources(self, output: str) -> set[str]:
        """The graph inputs an output (or loss) is computed from."""
        import networkx as nx

        node = (self.graph.outputs.get(output) or self.graph.losses[output])[0]
        g = self.graph.digraph()
        return {n for n in nx.ancestors(g, node) | {node} if self.graph.nodes[n].is_input}

    def _var(self, node: str, port: str) -> str:
        return self._tensors[(node, port)]

