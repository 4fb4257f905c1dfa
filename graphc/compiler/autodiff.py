"""Forward plan and reverse-mode autodiff over the IR.

Both passes produce `Call`s (one kernel call each, as data); `codegen` only prints them.
The backward plan comes from one generic reverse walk: each op's VJP rule is its backward
kernel (graphc.kernels), so the walk only has to
  - visit the nodes that lie between something trainable and a loss, in reverse order,
  - hand each backward kernel the cotangents of the node's outputs,
  - accumulate the gradients it returns into the node's inputs (fan-out adds up),
  - skip non-differentiable inputs (token ids, targets, masks).
Unbroadcasting is the backward kernels' business (`graphc.kernels.elementwise.unbroadcast`),
done in that one place for add/sub/mul.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

import networkx as nx
import sympy

from graphc.compiler.lowering import NOISE_INPUTS, Lowered, lower, takes
from graphc.ir import Graph, Node
from graphc.ops import OPS
from graphc.shapes import fmt_shape

RESERVED = {"np", "P", "X", "S", "G", "GX", "buf", "training", "rng", "dtype", "_E", "math"}


@dataclass
class Call:
    node: str
    op: str
    fn: str  # name of the kernel function in the generated module
    args: list[tuple[str, str]]  # (keyword, Python expression)
    targets: list[str]  # assignment targets, "_" for ignored results
    comment: str = ""
    before: list[str] = field(default_factory=list)  # lines emitted before the call
    after: list[str] = field(default_factory=list)  # lines emitted after (accumulation)
    # Destinations the kernel can write into: (keyword, target variable or None when the
    # result is discarded, symbolic shape or None for an absent optional input). The buffer
    # plan (graphc.compiler.plan) decides what each keyword is given.
    dests: list[tuple[str, str | None, tuple | None]] = field(default_factory=list)


@dataclass
class Program:
    graph: Graph
    forward: list[Call]
    backward: list[Call]
    tensors: dict[tuple[str, str], str]  # (node, port) → variable name
    saved: dict[str, list[str]]  # node → its saved-tensor variable names
    dims: dict[str, tuple[str, int]]  # symbolic dim → (input, axis) it is read from
    kernels: dict[str, object]  # generated-module name → kernel function
    input_grads: dict[str, str]  # graph input → gradient variable (when differentiated)
    wrt_inputs: bool = False
    dim_vars: dict[str, str] = field(default_factory=dict)  # symbolic dim → its driver variable


def _mangle(name: str, taken: set[str]) -> str:
    var = re.sub(r"\W", "_", name)
    if var[0].isdigit():
        var = "_" + var
    while var in taken or keyword.iskeyword(var) or var in RESERVED or var.endswith(("_fwd", "_bwd")):
        var += "_"
    taken.add(var)
    return var


def pyexpr(d, dim_vars: dict[str, str] | None = None) -> str:
    """A dimension (sympy) as Python source over the bound dimension variables."""
    d = sympy.sympify(d)
    if d.is_Integer:
        return str(int(d))
    if dim_vars:  # a dim named like a driver local (`P`, `S`, a node) has a renamed variable
        d = d.subs({s: sympy.Symbol(dim_vars[str(s)]) for s in d.free_symbols
                    if dim_vars.get(str(s), str(s)) != str(s)})
    return sympy.pycode(d)  # floor/ceil print as math.floor/math.ceil


def _where(node: Node) -> str:
    return f"{node.span.file}:{node.span.line}" if node.span else ""


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
    lowered = {n: lower(graph.nodes[n], _first_rank(graph, graph.nodes[n]))
               for n in graph.order if not graph.nodes[n].is_input}
    prog = Program(graph, [], [], tensors, {}, dims, {}, {}, wrt_inputs, dim_vars)
    for name in graph.order:
        node = graph.nodes[name]
        if not node.is_input:
            prog.forward.append(_forward_call(prog, node, lowered[name], taken))
    _reverse_walk(prog, lowered, taken)
    return prog


def _first_rank(graph: Graph, node: Node) -> int:
    if not node.inputs:
        return 0
    t = graph.types.get(node.inputs[0].tensor)
    return t.rank if t else 0


def _bind_dims(graph: Graph) -> dict[str, tuple[str, int]]:
    dims = {}
    for node in graph.inputs:
        for axis, d in enumerate(node.shape_spec):
            d = sympy.sympify(d)
            if d.is_Symbol and str(d) not in dims:
                dims[str(d)] = (node.name, axis)
    return dims


def _register(prog: Program, kernel_name: str, fn) -> str:
    prog.kernels[kernel_name] = fn
    return kernel_name


def _arg_exprs(prog: Program, node: Node, low: Lowered, source: str) -> list[tuple[str, str]]:
    """Keyword arguments shared by forward and backward: inputs, params, buffers, attrs."""
    k = low.kernel
    args = []
    graph = prog.graph
    ref = (lambda v: v) if source == "fwd" else (lambda v: f'S["{v}"]')
    for name in k.inputs:
        bound = node.port_inputs(name)
        if k.variadic:
            args.append((name, "[" + ", ".join(ref(prog.tensors[i.tensor]) for i in bound) + "]"))
        elif node.op in NOISE_INPUTS and name == NOISE_INPUTS[node.op]:
            args.append((name, ref(prog.tensors[(node.name, node.outputs[0])] + "_noise")))
        elif bound:
            args.append((name, ref(prog.tensors[bound[0].tensor])))
        else:
            args.append((name, "_E"))
    params = graph.params.get(node.name, {})
    for name in (*k.params, *k.buffers):
        args.append((name, f'P["{node.name}.{name}"]' if name in params else "_E"))
    for name, value in low.attrs.items():
        args.append((name, repr(value)))
    for name, value in low.dynamic.items():
        if isinstance(value, tuple):  # a shape with symbolic dims, evaluated per batch
            args.append((name, "(" + ", ".join(pyexpr(d, prog.dim_vars) for d in value) + ",)"))
        else:
            args.append((name, value))
    return args


def _forward_call(prog: Program, node: Node, low: Lowered, taken: set[str]) -> Call:
    outs = [prog.tensors[(node.name, p)] for p in node.outputs]
    base = outs[0]
    saved = [_mangle(f"{base}_saved{i}", taken) for i in range(low.kernel.n_saved)]
    prog.saved[node.name] = saved
    before = []
    if node.op in NOISE_INPUTS:
        x = prog.tensors[node.inputs[0].tensor]
        noise = _mangle(f"{base}_noise", taken)
        before.append(f"{noise} = rng.random({x}.shape, dtype=dtype) if training else _E")
    fn = _register(prog, f"{low.kernel.name}_fwd", low.kernel.fwd)
    shape = ", ".join(fmt_shape(t.shape) for p in node.outputs
                      if (t := prog.graph.types.get((node.name, p))))
    comment = f"{node.name} · {node.op} → {shape}" + (f"   ({_where(node)})" if node.span else "")
    call = Call(node.name, node.op, fn, _arg_exprs(prog, node, low, "fwd"), outs + saved, comment, before)
    t = prog.graph.types.get((node.name, node.outputs[0]))
    if len(node.outputs) == 1 and takes(low.kernel.fwd, "out") and t is not None and t.is_float:
        shape = (sympy.Integer(1),) if OPS[node.op].loss else t.shape  # loss kernels return (1,)
        call.dests.append(("out", outs[0], shape))
    if _is_loss(node):  # the spec types a loss as a scalar: so is its variable
        call.after.append(f"{outs[0]} = {outs[0]}.reshape(())")
    return call


def _is_loss(node: Node) -> bool:
    return OPS[node.op].loss


def _requires_grad(prog: Program) -> set[str]:
    graph = prog.graph
    req = set()
    for name in graph.order:
        node = graph.nodes[name]
        if node.is_input:
            if prog.wrt_inputs and node.dtype in ("float32", "float64"):
                req.add(name)
            continue
        has_param = any(p.trainable for p in graph.params.get(name, {}).values())
        if has_param or any(i.src in req for i in node.inputs if _differentiable(prog, node, i.port)):
            req.add(name)
    return req


def _differentiable(prog: Program, node: Node, port: str) -> bool:
    p = OPS[node.op].port(port)
    return p is not None and p.differentiable


def _reverse_walk(prog: Program, lowered: dict[str, Lowered], taken: set[str]) -> None:
    graph = prog.graph
    req = _requires_grad(prog)
    # Only nodes with a differentiable path to a loss take part (a label built by `concat`
    # that reaches the loss as a target gets no gradient, not a zero one).
    g = nx.DiGraph()
    for name in graph.order:
        node = graph.nodes[name]
        g.add_node(name)
        if node.is_input:
            continue
        k = lowered[name].kernel
        for i in node.inputs:
            if i.port not in k.nondiff and _differentiable(prog, node, i.port):
                g.add_edge(i.src, name)
    loss_nodes = {n for n, _ in graph.losses.values()}
    relevant = set(loss_nodes)
    for n in loss_nodes:
        relevant |= nx.ancestors(g, n)
    todo = [n for n in graph.order if n in req and n in relevant and not graph.nodes[n].is_input]
    grad_var: dict[tuple[str, str], str] = {}
    seeds = []
    for loss, (node, port) in graph.losses.items():  # objective = sum of W[loss] * loss
        if node in todo:
            var = _mangle("g_" + prog.tensors[(node, port)], taken)
            grad_var[(node, port)] = var
            seeds.append(f'{var} = np.full((), W["{loss}"], dtype)  # d(objective)/d({node}): its weight')
    temp = iter(range(10**9))
    for name in reversed(todo):
        node = graph.nodes[name]
        low = lowered[name]
        k = low.kernel
        args = []
        for port in node.outputs:
            var = grad_var.get((name, port))
            g_arg = var or f'np.zeros_like(S["{prog.tensors[(name, port)]}"])'
            args.append((f"g_{port}", f"{g_arg}.reshape(1)" if _is_loss(node) else g_arg))
        args += _arg_exprs(prog, node, low, "bwd")
        args += [(f"saved{i}", f'S["{v}"]') for i, v in enumerate(prog.saved[name])]
        if node.op != "split":
            args += [(p, f'S["{prog.tensors[(name, p)]}"]') for p in node.outputs]
        targets, after = [], []

        def receive(tensor: tuple[str, str], after=after):
            if tensor[0] not in req:
                return "_"
            if tensor not in grad_var:
                grad_var[tensor] = _mangle("g_" + prog.tensors[tensor], taken)
                return grad_var[tensor]
            tmp = f"_g{next(temp)}"
            after.append(f"{grad_var[tensor]} = {grad_var[tensor]} + {tmp}")
            return tmp

        dests = []
        for port_name in k.inputs:
            bound = node.port_inputs(port_name)
            if k.variadic:
                targets += [receive(i.tensor) for i in bound]
                continue
            if bound and port_name not in k.nondiff and _differentiable(prog, node, port_name):
                targets.append(receive(bound[0].tensor))
            else:
                targets.append("_")
            if takes(k.bwd, f"into_{port_name}"):
                shape = graph.types[bound[0].tensor].shape if bound else None
                dests.append((f"into_{port_name}", None if targets[-1] == "_" else targets[-1], shape))
        params = graph.params.get(name, {})
        for p in k.params:
            targets.append(f'G["{name}.{p}"]' if p in params and params[p].trainable else "_")
        fn = _register(prog, f"{k.name}_bwd", k.bwd)
        prog.backward.append(Call(name, node.op, fn, args, targets, f"{name} · {node.op}", [], after, dests))
    if prog.backward:
        prog.backward[0].before = seeds + prog.backward[0].before
    for node in graph.inputs:
        if (node.name, "out") in grad_var:
            prog.input_grads[node.name] = grad_var[(node.name, "out")]
