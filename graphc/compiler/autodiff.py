"""Forward plan and reverse-mode autodiff over the IR.

Both passes produce `Call`s (graphc.compiler.calls: one kernel call each, as data); `codegen`
only prints them. Each op's record (graphc.ops) names its kernels and lowers its attributes;
the backward plan is one generic reverse walk with no per-op cases: each op's VJP rule is its
backward kernel, so the walk only has to
  - visit the nodes that lie between something trainable and a loss, in reverse order,
  - hand each backward kernel the cotangents of the node's outputs,
  - accumulate the gradients it returns into the node's inputs (fan-out adds up),
  - skip the inputs the op's ports mark as not differentiable (token ids, targets, masks),
  - add up the gradients of a parameter several nodes share (`tie:`; `graph.ties` says which
    node's parameter is which), like fan-out.
Unbroadcasting is the backward kernels' business: the kernels generated from the pointwise
rules sum a broadcast input's gradient inside their loop (graphc.compiler.kernelgen), matmul's
uses `graphc.kernels.elementwise.unbroadcast`. Chains of pointwise calls are fused after this
pass (graphc.compiler.fuse).
"""

from __future__ import annotations

import inspect
import itertools
import keyword
import re
from collections.abc import Callable

import networkx as nx
import sympy

from graphc.compiler.calls import (
    Absent,
    Accumulate,
    Call,
    Const,
    Dest,
    Drop,
    Many,
    Mode,
    Noise,
    Operand,
    Out,
    Param,
    ParamGrad,
    Program,
    Shape,
    Value,
    Vector,
    ZerosLike,
)
from graphc.ir import Graph, Node
from graphc.ops import OPS
from graphc.ops.registry import RuntimeShape
from graphc.shapes import fmt_shape

RESERVED = {"np", "P", "X", "S", "G", "GX", "W", "buf", "training", "rng", "dtype", "_E", "math"}


def takes(fn: Callable, keyword: str) -> bool:
    """Whether a kernel accepts `keyword` (its signature is the one source of truth for which
    destinations, `out=`/`into_<port>=`, it can write into, and which forward outputs its
    backward reads)."""
    return keyword in inspect.signature(getattr(fn, "py_func", fn)).parameters


def _mangle(name: str, taken: set[str]) -> str:
    var = re.sub(r"\W", "_", name)
    if var[0].isdigit():
        var = "_" + var
    while var in taken or keyword.iskeyword(var) or var in RESERVED or var.endswith(("_fwd", "_bwd")):
        var += "_"
    taken.add(var)
    return var


def build(graph: Graph, wrt_inputs: bool = False) -> Program:
    taken: set[str] = set()
    dims = _bind_dims(graph)
    dim_vars = {d: _mangle(d, taken) for d in dims}  # first, so dims keep their names if they can
    tensors: dict[tuple[str, str], str] = {}
    for name in graph.order:
        node = graph.nodes[name]
        for i, port in enumerate(node.outputs):
            base = name if i == 0 and len(node.outputs) == 1 else f"{name}_{port}"
            tensors[(name, port)] = _mangle(base, taken)
    prog = Program(graph, [], [], tensors, {}, dims, {}, {}, wrt_inputs=wrt_inputs, dim_vars=dim_vars)
    for name in graph.order:  # uniform noise the driver draws for the op (dropout's mask)
        if not graph.nodes[name].is_input and OPS[graph.nodes[name].op].kernel.noise:
            prog.noise[name] = _mangle(tensors[(name, graph.nodes[name].outputs[0])] + "_noise", taken)
    attrs = {n: _lowered(graph, graph.nodes[n]) for n in graph.order if not graph.nodes[n].is_input}
    for name in graph.order:
        node = graph.nodes[name]
        if not node.is_input:
            prog.forward.append(_forward_call(prog, node, attrs[name], taken))
    _reverse_walk(prog, attrs, taken)
    return prog


def _lowered(graph: Graph, node: Node) -> dict[str, Operand]:
    """The kernel's attribute arguments of `node`, from its op's lowering."""
    op = OPS[node.op]
    first = graph.types.get(node.inputs[0].tensor) if node.inputs else None
    values = op.lower(dict(node.attrs), first.rank if first else 0)
    missing = [a for a in op.kernel.attrs if a not in values]
    if missing:
        raise KeyError(f"op `{node.op}`'s lowering gives no {', '.join(missing)} for its kernel")
    out: dict[str, Operand] = {
        a: Shape(values[a].dims) if isinstance(values[a], RuntimeShape) else Const(values[a])
        for a in op.kernel.attrs}
    if op.kernel.mode:
        out["training"] = Mode()
    return out


def _bind_dims(graph: Graph) -> dict[str, tuple[str, int]]:
    dims = {}
    for node in graph.inputs:
        for axis, d in enumerate(node.shape_spec):
            d = sympy.sympify(d)
            if d.is_Symbol and str(d) not in dims:
                dims[str(d)] = (node.name, axis)
    return dims


def _where(node: Node) -> str:
    return f"   ({node.span.file}:{node.span.line})" if node.span else ""


def _operands(prog: Program, node: Node, attrs: dict[str, Operand], saved: bool) -> dict[str, Operand]:
    """Keyword arguments shared by forward and backward: inputs, params, buffers, attributes."""
    k = OPS[node.op].kernel
    args: dict[str, Operand] = {}
    for name in k.inputs:
        bound = node.port_inputs(name)
        if k.variadic:
            args[name] = Many(tuple(Value(prog.tensors[i.tensor], saved) for i in bound))
        elif name == k.noise:
            args[name] = Value(prog.noise[node.name], saved)
        elif bound:
            args[name] = Value(prog.tensors[bound[0].tensor], saved)
        else:
            args[name] = Absent()
    params = prog.graph.params.get(node.name, {})
    for name in (*k.params, *k.buffers):
        shared = prog.graph.ties.get(f"{node.name}.{name}")  # another node's parameter (`tie:`)
        args[name] = Param(shared) if shared else Param(f"{node.name}.{name}") if name in params else Absent()
    return args | attrs


def _forward_call(prog: Program, node: Node, attrs: dict[str, Operand], taken: set[str]) -> Call:
    op = OPS[node.op]
    k = op.kernel
    outs = [prog.tensors[(node.name, p)] for p in node.outputs]
    saved = [_mangle(f"{outs[0]}_saved{i}", taken) for i in range(k.saved)]
    prog.saved[node.name] = saved
    noise = Noise(prog.noise[node.name], prog.tensors[node.inputs[0].tensor]) if k.noise else None
    prog.kernels[f"{k.name}_fwd"] = k.fwd
    shapes = ", ".join(fmt_shape(t.shape) for p in node.outputs if (t := prog.graph.types.get((node.name, p))))
    args = _operands(prog, node, attrs, saved=False)
    t = prog.graph.types.get((node.name, node.outputs[0]))
    if len(node.outputs) == 1 and takes(k.fwd, "out") and t is not None and t.is_float:
        args["out"] = Dest(outs[0], (sympy.Integer(1),) if op.loss else t.shape)  # loss kernels return (1,)
    return Call(node.name, node.op, f"{k.name}_fwd", args, [Out(v) for v in outs + saved],
                f"{node.name} · {node.op} → {shapes}{_where(node)}", noise=noise,
                scalar=outs[0] if op.loss else None)  # the spec types a loss as a scalar


def _differentiable_inputs(node: Node):
    """The inputs of `node` a gradient flows into, by the op's ports."""
    op = OPS[node.op]
    return [i for i in node.inputs if (p := op.port(i.port)) is not None and p.differentiable]


def _requires_grad(prog: Program) -> set[str]:
    graph = prog.graph
    req = set()
    for name in graph.order:
        node = graph.nodes[name]
        if node.is_input:
            if prog.wrt_inputs and node.dtype in ("float32", "float64"):
                req.add(name)
            continue
        has_param = any(p.trainable for p in graph.params.get(name, {}).values()) or any(
            t.rsplit(".", 1)[0] == name for t in graph.ties)
        if has_param or any(i.src in req for i in _differentiable_inputs(node)):
            req.add(name)
    return req


def _relevant(graph: Graph) -> set[str]:
    """Nodes with a differentiable path to a loss (a label built by `concat` that reaches the
    loss as a target gets no gradient, not a zero one)."""
    g = nx.DiGraph()
    for name in graph.order:
        node = graph.nodes[name]
        g.add_node(name)
        if not node.is_input:
            g.add_edges_from((i.src, name) for i in _differentiable_inputs(node))
    relevant = {n for n, _ in graph.losses.values()}
    for n in list(relevant):
        relevant |= nx.ancestors(g, n)
    return relevant


def _reverse_walk(prog: Program, attrs: dict[str, dict[str, Operand]], taken: set[str]) -> None:
    graph = prog.graph
    req, relevant = _requires_grad(prog), _relevant(graph)
    todo = [n for n in graph.order if n in req and n in relevant and not graph.nodes[n].is_input]
    grad_var: dict[tuple[str, str], str] = {}
    for loss, (node, port) in graph.losses.items():  # objective = sum of W[loss] * loss
        if node in todo:
            grad_var[(node, port)] = _mangle("g_" + prog.tensors[(node, port)], taken)
            prog.seeds[grad_var[(node, port)]] = loss
    temp, scratch = itertools.count(), itertools.count()
    param_grads: set[str] = set()  # parameters with a gradient so far (a shared one gets several)
    for name in reversed(todo):
        prog.backward.append(_backward_call(prog, graph.nodes[name], attrs[name], req, grad_var,
                                            taken, temp, scratch, param_grads))
    for node in graph.inputs:
        if (node.name, "out") in grad_var:
            prog.input_grads[node.name] = grad_var[(node.name, "out")]


def _backward_call(prog, node: Node, attrs, req, grad_var, taken, temp, scratch, param_grads) -> Call:
    graph = prog.graph
    op = OPS[node.op]
    k = op.kernel
    args: dict[str, Operand] = {}
    for port in node.outputs:
        var = grad_var.get((node.name, port))
        g = Value(var) if var else ZerosLike(Value(prog.tensors[(node.name, port)], saved=True))
        args[f"g_{port}"] = Vector(g) if op.loss else g  # loss kernels take a (1,) cotangent
    args |= _operands(prog, node, attrs, saved=True)
    args |= {f"saved{i}": Value(v, saved=True) for i, v in enumerate(prog.saved[node.name])}
    args |= {p: Value(prog.tensors[(node.name, p)], saved=True) for p in node.outputs if takes(k.bwd, p)}
    results, accumulate, dests = [], [], {}

    def receive(tensor: tuple[str, str]):
        if tensor[0] not in req:
            return Drop()
        if tensor not in grad_var:
            grad_var[tensor] = _mangle("g_" + prog.tensors[tensor], taken)
            return Out(grad_var[tensor])
        part = f"_g{next(temp)}"
        accumulate.append(Accumulate(grad_var[tensor], part))
        return Out(part)

    for port in k.inputs:
        bound = node.port_inputs(port)
        if k.variadic:
            results += [receive(i.tensor) for i in bound]
            continue
        diff = bound and port not in k.nondiff
        results.append(receive(bound[0].tensor) if diff else Drop())
        if takes(k.bwd, f"into_{port}"):
            if not bound:
                dests[f"into_{port}"] = Absent()  # an absent optional input: a zero-size gradient
            elif isinstance(results[-1], Out):
                dests[f"into_{port}"] = Dest(results[-1].var, graph.types[bound[0].tensor].shape)
            elif port in k.skips:  # a zero-size destination of the input's rank: not computed
                zeros = (sympy.Integer(0),) * len(graph.types[bound[0].tensor].shape)
                dests[f"into_{port}"] = Dest(f"_unneeded{next(scratch)}", zeros)
            else:  # a discarded gradient still needs somewhere to go
                dests[f"into_{port}"] = Dest(f"_scratch{next(scratch)}", graph.types[bound[0].tensor].shape)
    params = graph.params.get(node.name, {})
    for p in k.params:
        name = graph.ties.get(f"{node.name}.{p}")
        if name is None and not (p in params and params[p].trainable):
            results.append(Drop())
            continue
        name = name or f"{node.name}.{p}"
        results.append(ParamGrad(name, f"_gp{next(temp)}" if name in param_grads else ""))
        param_grads.add(name)
    prog.kernels[f"{k.name}_bwd"] = k.bwd
    t = graph.types.get((node.name, node.outputs[0]))
    comment = f"{node.name} · {node.op} backward ← {fmt_shape(t.shape) if t else '?'}{_where(node)}"
    return Call(node.name, node.op, f"{k.name}_bwd", args | dests, results, comment,
                accumulate=accumulate)
