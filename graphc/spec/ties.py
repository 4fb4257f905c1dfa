"""Parameter sharing: `tie:` on an op node makes one of its parameters the same tensor as
another node's (GPT-2's LM head uses the token embedding: `tie: {weight: embed.weight}`, or
`tie: embed.weight` for the parameter of the same name).

Three steps, each where its facts are known:
- `parse` (expansion): the form of the `tie:` value, one `param: node.param` per entry;
- `resolve` (end of expansion, when every node exists): the owner node's full name;
- `apply` (after shape inference, when parameter shapes are known): the parameter exists on
  both sides with the same shape; it is then dropped from the tying node's `params` and
  recorded in `graph.ties`, so every count (check, summary, the model's parameters) has it
  once, the driver passes the owner's tensor to both kernels and sums both gradients into it.

All problems are GC207 diagnostics at the `tie:` entry.
"""

from __future__ import annotations

from graphc.diagnostics import Diagnostics, Span, did_you_mean
from graphc.ir import Graph, Node
from graphc.spec.loader import MDict
from graphc.spec.refs import Alias, Scope
from graphc.spec.values import kind

CODE = "GC207"
_FORM = "write `tie: {weight: embed.weight}` (this node's parameter: the node.parameter it shares)"

# (node, its parameter, the reference as written, its span, the scope it was written in)
Pending = tuple[Node, str, str, Span | None, Scope]


def parse(diags: Diagnostics, decl: MDict, name: str) -> list[tuple[str, str, Span | None]]:
    """`tie:` of node `name` → [(its parameter, `node.param` as written, span)]."""
    raw, span = decl.get("tie"), decl.where("tie")
    if isinstance(raw, str):
        ref = raw.strip()
        if "." not in ref:
            diags.error(CODE, f"`{name}`: `tie: {ref}` does not name a parameter", span,
                        hint=f"name the node and its parameter, e.g. `tie: {ref}.weight`")
            return []
        return [(ref.rsplit(".", 1)[1], ref, span)]
    if not isinstance(raw, MDict) or not raw:
        diags.error(CODE, f"`{name}`: `tie` must be a mapping of parameter: node.parameter, found "
                    f"{kind(raw)}", span, hint=_FORM)
        return []
    out = []
    for param, ref in raw.items():
        where = raw.where(param)
        if not isinstance(ref, str) or "." not in ref.strip():
            shown = f"`{ref}`" if isinstance(ref, str) else kind(ref)
            diags.error(CODE, f"`{name}`: `tie.{param}` must name a node's parameter such as "
                        f"`embed.weight`, found {shown}", where, hint=_FORM)
            continue
        out.append((str(param), ref.strip(), where))
    return out


def resolve(diags: Diagnostics, pending: list[Pending], nodes: dict[str, Node]) -> None:
    """Fill `node.tie` with full `owner.param` names: `owner` is a node of the scope the `tie:`
    is written in, or a path into one of its block instances (`encoder.0.attn.wq`)."""
    for node, param, ref, span, scope in pending:
        path, owner_param = ref.rsplit(".", 1)
        owner = nodes.get(scope.prefix + path)
        if owner is not None and not owner.is_input:
            node.tie[param] = f"{owner.name}.{owner_param}"
            node.attr_spans[f"tie.{param}"] = span
            continue
        if owner is not None:
            why = f"`{path}` is an input, which has no parameters"
        elif isinstance(scope.names.get(path), Alias):
            why = f"`{path}` is a block input, a tensor without parameters"
        else:
            why = f"no op node `{path}`" + (f" in block instance `{scope.prefix.rstrip('.')}`"
                                            if scope.prefix else "")
        local = [n.removeprefix(scope.prefix) for n in nodes if n.startswith(scope.prefix)]
        diags.error(CODE, f"`{node.name}`: cannot tie `{param}` to `{ref}`: {why}", span,
                    nodes=(node.name,), hint=did_you_mean(path, local) or (
                        "a node inside a block can share only a parameter of its own block "
                        "instance; tie at the top level otherwise" if scope.prefix else
                        "name a node of this spec and one of its parameters"))


def apply(graph: Graph) -> list:
    """Check every tie against the inferred parameters and move the shared ones out of the tying
    nodes' `params` into `graph.ties`."""
    diags = Diagnostics()
    own = {f"{n}.{p}": d for n, ps in graph.params.items() for p, d in ps.items()}
    edges: dict[str, str] = {}
    for node in graph.nodes.values():
        for param, target in node.tie.items():
            span = node.attr_spans.get(f"tie.{param}")
            owner, owner_param = target.rsplit(".", 1)
            if node.name in graph.failed or owner in graph.failed or node.name not in graph.params:
                continue  # its own diagnostic says why
            mine = f"{node.name}.{param}"
            if mine not in own:
                have = list(graph.params.get(node.name, {}))
                diags.error(CODE, f"`{node.name}` ({node.op}) has no parameter `{param}` to tie",
                            span, nodes=(node.name,), hint=did_you_mean(param, have) or
                            (f"its parameters: {', '.join(have)}" if have else "it has no parameters"))
                continue
            if target not in own:
                have = list(graph.params.get(owner, {}))
                diags.error(CODE, f"`{node.name}`: `{owner}` ({graph.nodes[owner].op}) has no parameter "
                            f"`{owner_param}`", span, nodes=(node.name, owner),
                            hint=did_you_mean(owner_param, have) or
                            (f"its parameters: {', '.join(have)}" if have else "it has no parameters"))
                continue
            if target == mine:
                diags.error(CODE, f"`{node.name}`: `{param}` is tied to itself", span, nodes=(node.name,))
                continue
            a, b = own[mine], own[target]
            if tuple(a.shape) != tuple(b.shape):
                diags.error(CODE, f"`{node.name}`: cannot tie `{param}` {list(a.shape)} to `{target}` "
                            f"{list(b.shape)}: the shapes differ", span, nodes=(node.name, owner),
                            hint="a tied parameter is one tensor used twice, so the shapes must be equal "
                                 "(linear's weight is [out, in], embedding's [num, dim])")
                continue
            if not (a.trainable and b.trainable):
                diags.error(CODE, f"`{node.name}`: `{mine if not a.trainable else target}` is a buffer "
                            "(running statistics), which cannot be shared", span, nodes=(node.name,))
                continue
            edges[mine] = target
    for mine, target in edges.items():  # a chain a → b → c shares c; a loop has no owner
        seen, root = {mine}, target
        while root in edges:
            if root in seen:
                break
            seen.add(root)
            root = edges[root]
        node, param = mine.rsplit(".", 1)
        if root in seen:
            diags.error(CODE, f"`{node}`: the ties of {', '.join(f'`{s}`' for s in sorted(seen))} form a "
                        "loop; one of them must keep its own parameter",
                        graph.nodes[node].attr_spans.get(f"tie.{param}"), nodes=(node,))
            continue
        graph.ties[mine] = root
    for mine in graph.ties:
        node, param = mine.rsplit(".", 1)
        del graph.params[node][param]
    return diags.items
