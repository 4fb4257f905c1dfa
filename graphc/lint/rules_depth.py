"""GL3xx: depth, convolution and normalization — the shape of the network as a whole."""

from __future__ import annotations

from collections import defaultdict

from graphc.ir import Node
from graphc.lint.context import NORM_OPS, SATURATING, SKIP_OPS, LintContext, has_params
from graphc.lint.table import Finding, rule

DEEP = 6  # weight layers in one repeated stack
SATURATED = 4  # sigmoid/tanh layers in a row


def _decl(ctx: LintContext, node: Node):
    """The node's declaration mapping in the spec (for spans such as `repeat:`)."""
    body = ctx.body_of(node.scope)
    if not isinstance(body, dict):
        return None
    local = node.name[len(node.scope[-1].path) + 1:] if node.scope else node.name
    decl = body.get(local) or body.get(local.rsplit(".", 1)[0])
    return decl if isinstance(decl, dict) else None


def _repeat_groups(ctx: LintContext):
    """(description, span thunk, member nodes) for each `repeat:` in the spec (block or op)."""
    g = ctx.graph
    blocks: dict[tuple, list[Node]] = defaultdict(list)
    ops: dict[tuple, list[Node]] = defaultdict(list)
    for node in g.nodes.values():
        for depth, f in enumerate(node.scope):
            if f.repeat > 1:
                key = (depth, f.path.rsplit(".", 1)[0] if f.index is not None else f.path)
                blocks[key].append(node)
        if node.span and not node.is_input:
            ops[(node.span, tuple(f.path for f in node.scope))].append(node)
    def block_span(node: Node, depth: int):
        decl = ctx.instance_decl(node, depth)  # parses the document: only when reporting
        return decl.where("repeat") if decl is not None else node.scope[depth].span

    def op_span(node: Node):
        decl = _decl(ctx, node)
        return decl.where("repeat") if decl is not None else node.span

    for (depth, path), members in blocks.items():
        frame = members[0].scope[depth]
        yield (f"`{path}` repeats block `{frame.block}` {frame.repeat} times",
               lambda m=members[0], d=depth: block_span(m, d), members)
    for members in ops.values():
        if len(members) > 1:
            base = members[0].name.rsplit(".", 1)[0]
            yield (f"`{base}` repeats `{members[0].op}` {len(members)} times",
                   lambda m=members[0]: op_span(m), members)


@rule("GL301", "deep-without-residual", "warning",
      summary=f"A `repeat` stacks {DEEP} or more weight layers with no residual connection "
              "and no normalization.",
      rationale="""
        In a plain stack the gradient reaching the first layer is a product of one Jacobian
        per layer; with many layers it shrinks or grows geometrically, and the early layers
        stop learning (or training diverges). Residual connections give the gradient a path
        that skips the stack, and normalization keeps each layer's activations in a range
        where their Jacobians stay near 1: deep networks need one or both.""",
      fix="""
        Add a residual connection inside the repeated block (`add` of the block input and its
        output, or `add_norm`), or a `layernorm`/`batchnorm` per repetition.""",
      bad="""
        inputs:
          x: {shape: [B, 32]}
          y: {shape: [B], dtype: int64}
        blocks:
          dense:
            inputs: [h]
            nodes:
              fc: {op: linear, in: h, out: 32}
              act: {op: relu, in: fc}
            outputs: [act]
        nodes:
          stack: {block: dense, in: x, repeat: 8}
          logits: {op: linear, in: stack, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 32]}
          y: {shape: [B], dtype: int64}
        blocks:
          residual:
            inputs: [h]
            nodes:
              fc: {op: linear, in: h, out: 32}
              act: {op: relu, in: fc}
              out: {op: add_norm, in: [h, act]}
            outputs: [out]
        nodes:
          stack: {block: residual, in: x, repeat: 8}
          logits: {op: linear, in: stack, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def deep_without_residual(ctx: LintContext):
    g = ctx.graph
    for what, where, members in _repeat_groups(ctx):
        weights = [n for n in members if has_params(g, n.name) and n.op not in NORM_OPS]
        if len(weights) < DEEP or any(n.op in SKIP_OPS or n.op in NORM_OPS for n in members):
            continue
        yield Finding(f"{what}: {len(weights)} weight layers in a row with no residual connection "
                      f"or normalization", where(), tuple(n.name for n in weights[:1]),
                      hint="add a residual `add`/`add_norm` or a norm layer inside the repetition")


@rule("GL302", "saturating-stack", "warning",
      summary=f"{SATURATED} or more sigmoid/tanh layers in a row (vanishing gradients).",
      rationale="""
        The derivative of sigmoid is at most 0.25 and that of tanh at most 1 (and much less
        once a unit saturates). Backpropagation multiplies these factors layer by layer, so
        through a stack of saturating activations the gradient reaching the first layers
        vanishes. Normalization or a residual path between them resets the product.""",
      fix="""
        Use `relu` or `gelu` for hidden layers (keep sigmoid/tanh for gates and outputs), or
        put a normalization layer or a residual connection between the saturating layers.""",
      bad="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        blocks:
          dense:
            inputs: [h]
            nodes:
              fc: {op: linear, in: h, out: 16}
              act: {op: tanh, in: fc}
            outputs: [act]
        nodes:
          stack: {block: dense, in: x, repeat: 4}
          logits: {op: linear, in: stack, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        blocks:
          dense:
            inputs: [h]
            nodes:
              fc: {op: linear, in: h, out: 16}
              act: {op: gelu, in: fc}
            outputs: [act]
        nodes:
          stack: {block: dense, in: x, repeat: 4}
          logits: {op: linear, in: stack, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def saturating_stack(ctx: LintContext):
    g = ctx.graph
    run: dict[str, int] = {}
    for name in g.order:
        node = g.nodes[name]
        before = max((run.get(i.src, 0) for i in node.inputs), default=0)
        if node.op in NORM_OPS or node.op in SKIP_OPS:
            run[name] = 0
        else:
            run[name] = before + (node.op in SATURATING)
        if node.op in SATURATING and run[name] == SATURATED:
            yield Finding(f"`{name}` is the {SATURATED}th sigmoid/tanh layer in a row with no "
                          f"normalization or residual between them: gradients vanish through "
                          f"the stack", node.span, (name,),
                          hint="use relu/gelu for hidden layers, or add a norm layer between them")


@rule("GL303", "large-conv-kernel", "warning",
      summary="A large convolution kernel that stacked 3×3 convolutions would cover with fewer "
              "parameters.",
      rationale="""
        Two stacked 3×3 convolutions see a 5×5 window, three see 7×7 (VGG's observation), with
        a nonlinearity between each, and when the channel count stays the same they need
        fewer parameters and FLOPs than one large kernel (2·9 = 18 vs 25 weights per channel
        pair for 5×5, 27 vs 49 for 7×7). The rule fires only when the stack would really be
        smaller for this layer's channel counts, so a 7×7 stem on 3 input channels is fine.""",
      fix="""
        Replace the k×k convolution by (k-1)/2 stacked 3×3 convolutions with `padding: 1` and a
        `relu` between them.""",
      bad="""
        inputs:
          x: {shape: [B, 64, 16, 16]}
          y: {shape: [B], dtype: int64}
        nodes:
          conv: {op: conv2d, in: x, out: 64, kernel: 5, padding: 2}
          act: {op: relu, in: conv}
          pool: {op: global_avgpool, in: act}
          logits: {op: linear, in: pool, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 64, 16, 16]}
          y: {shape: [B], dtype: int64}
        nodes:
          conv_a: {op: conv2d, in: x, out: 64, kernel: 3, padding: 1}
          act_a: {op: relu, in: conv_a}
          conv_b: {op: conv2d, in: act_a, out: 64, kernel: 3, padding: 1}
          act: {op: relu, in: conv_b}
          pool: {op: global_avgpool, in: act}
          logits: {op: linear, in: pool, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def large_conv_kernel(ctx: LintContext):
    for node in ctx.ops("conv1d", "conv2d"):
        a = node.attrs
        ks, strides, dils = (tuple(v) if isinstance(v, tuple | list) else (v,)
                             for v in (a["kernel"], a["stride"], a["dilation"]))
        if len(set(ks)) != 1 or ks[0] < 5 or set(strides) != {1} or set(dils) != {1} or a["groups"] != 1:
            continue
        x = ctx.type(*node.port_inputs("x")[0].tensor) if node.port_inputs("x") else None
        if x is None or not x.shape[1].is_Integer:
            continue
        k, d, cin, cout = ks[0], len(ks), int(x.shape[1]), a["out"]
        n = k // 2  # 3×3 layers whose receptive field (2n + 1) covers k
        big = k**d * cin * cout
        stacked = 3**d * cout * (cin + (n - 1) * cout)
        if stacked >= big:
            continue
        size = "×".join([str(k)] * d)
        small = "×".join(["3"] * d)
        yield Finding(f"`{node.name}` uses a {size} kernel ({big:,} weights); {n} stacked {small} "
                      f"convolutions see the same window with {stacked:,}", node.where(attr="kernel"),
                      (node.name,), hint=f"replace `{node.name}` with {n} {small} convolutions "
                                         f"(padding 1) with a relu between them")


@rule("GL304", "batchnorm-batch-of-one", "warning",
      summary="`batchnorm` where the batch can be a single example.",
      rationale="""
        BatchNorm normalizes each channel with the mean and variance over the batch (and the
        spatial axes). With one example per batch the statistics are those of that example
        alone: on [B, C] inputs every output is exactly 0 (x minus its own mean), and on images
        the layer becomes instance normalization in training but uses running averages at
        inference, so the two disagree. The running statistics are noisy too.""",
      fix="""
        Train with a larger `batch:` (16 or more is comfortable), or use `layernorm`, whose
        statistics are per example and do not depend on the batch.""",
      bad="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        nodes:
          fc: {op: linear, in: x, out: 32, bias: false}
          bn: {op: batchnorm, in: fc}
          act: {op: relu, in: bn}
          logits: {op: linear, in: act, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {task: spirals}
          batch: 1
          steps: 1000
        """,
      good="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        nodes:
          fc: {op: linear, in: x, out: 32, bias: false}
          bn: {op: batchnorm, in: fc}
          act: {op: relu, in: bn}
          logits: {op: linear, in: act, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {task: spirals}
          batch: 32
          steps: 1000
        """)
def batchnorm_batch_of_one(ctx: LintContext):
    batch = ctx.train.get("batch")
    for node in ctx.ops("batchnorm"):
        x = ctx.type(*node.port_inputs("x")[0].tensor) if node.port_inputs("x") else None
        if x is None:
            continue
        b = x.shape[0]
        if b.is_Integer and int(b) == 1:
            why = "its input's batch axis is 1"
        elif not b.is_Integer and batch == 1:
            why = "`train.batch` is 1"
        else:
            continue
        flat = "every output is 0" if x.rank == 2 else "training and inference normalize differently"
        yield Finding(f"`{node.name}` (batchnorm) normalizes over the batch, but {why}: {flat}",
                      node.span, (node.name,),
                      related=(("`train.batch` is here", ctx.train_where("batch")),)
                      if batch == 1 and ctx.train_where("batch") else (),
                      hint="use a larger batch, or `layernorm`")


@rule("GL305", "bias-before-batchnorm", "note",
      summary="A bias right before `batchnorm`, which subtracts it again.",
      rationale="""
        BatchNorm subtracts the per-channel mean, so a per-channel bias added just before it
        cancels out exactly: its gradient is zero and the parameters are dead weight (BatchNorm
        has its own learned offset β).""",
      fix="""
        Set `bias: false` on the convolution or linear layer that feeds the batchnorm.""",
      bad="""
        inputs:
          x: {shape: [B, 3, 8, 8]}
          y: {shape: [B], dtype: int64}
        nodes:
          conv: {op: conv2d, in: x, out: 16, kernel: 3, padding: 1}
          bn: {op: batchnorm, in: conv}
          act: {op: relu, in: bn}
          pool: {op: global_avgpool, in: act}
          logits: {op: linear, in: pool, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 3, 8, 8]}
          y: {shape: [B], dtype: int64}
        nodes:
          conv: {op: conv2d, in: x, out: 16, kernel: 3, padding: 1, bias: false}
          bn: {op: batchnorm, in: conv}
          act: {op: relu, in: bn}
          pool: {op: global_avgpool, in: act}
          logits: {op: linear, in: pool, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def bias_before_batchnorm(ctx: LintContext):
    for node in ctx.ops("linear", "conv1d", "conv2d", "conv_transpose2d"):
        if not node.attrs.get("bias"):
            continue
        users = ctx.consumers(node.name)
        if not users or any(u.op != "batchnorm" for u, _ in users) or ctx.named_outputs(node.name):
            continue
        t = ctx.type(node.name)
        if node.op == "linear" and (t is None or t.rank != 2):
            continue  # batchnorm's channel axis 1 is not the linear's feature axis
        bn = users[0][0]
        yield Finding(f"the bias of `{node.name}` ({node.op}) is cancelled by `{bn.name}` (batchnorm), "
                      f"which subtracts the per-channel mean", node.where(attr="bias"),
                      (node.name, bn.name), hint=f"set `bias: false` on `{node.name}`")


# ---- duplicated subgraphs -------------------------------------------------------------------
MAX_SCAN = 400  # nodes per body; the search is quadratic


def _signature(node: Node) -> tuple:
    return (node.op, tuple(sorted((k, repr(v)) for k, v in node.attrs.items())))


def _wiring(seq: list[Node], pos: dict[str, int], start: int, length: int) -> list[list[tuple]]:
    out = []
    for node in seq[start:start + length]:
        ins = []
        for i in node.inputs:
            p = pos.get(i.src)
            if p is not None and start <= p < start + length:
                ins.append((i.port, "in", p - start, i.src_port))
            else:
                ins.append((i.port, "ext", i.src, i.src_port))
        out.append(ins)
    return out


def _copy_matches(seq, sigs, pos, s: int, length: int, j: int) -> bool:
    """Is segment j (starting at s + j·length) a copy of segment 0, chained after segment j-1?"""
    a, b = s, s + j * length
    if b + length > len(seq) or sigs[a:a + length] != sigs[b:b + length]:
        return False
    first, other = _wiring(seq, pos, a, length), _wiring(seq, pos, b, length)
    prev_last = seq[b - 1].name
    chain_in, chained = None, False
    for ins0, insj in zip(first, other, strict=True):
        if len(ins0) != len(insj):
            return False
        for x, y in zip(ins0, insj, strict=True):
            if x == y:
                continue
            if x[0] != y[0] or x[1] != "ext" or y[1] != "ext" or y[2] != prev_last:
                return False
            if chain_in not in (None, x[2:]):
                return False
            chain_in, chained = x[2:], True
    return chained


@rule("GL306", "duplicated-subgraph", "warning",
      summary="The same layers written out several times in a row (three or more copies, or two "
              "of three or more nodes), where a block with `repeat` would do.",
      rationale="""
        Copies drift: a change made to one of them (a width, an activation, a dropout rate) is
        easily missed in the others, and a reader has to compare them line by line to see
        that they are the same. A block says "this unit, N times" once, and `repeat: N` makes
        the depth a single number you can change from the command line (`--set`).""",
      fix="""
        Move one copy into `blocks:` and instantiate it with `repeat:` (the first input of each
        repetition is chained to the previous repetition's output).""",
      bad="""
        inputs:
          x: {shape: [B, 16]}
          y: {shape: [B], dtype: int64}
        nodes:
          fc1: {op: linear, in: x, out: 16}
          act1: {op: relu, in: fc1}
          fc2: {op: linear, in: act1, out: 16}
          act2: {op: relu, in: fc2}
          fc3: {op: linear, in: act2, out: 16}
          act3: {op: relu, in: fc3}
          logits: {op: linear, in: act3, out: 4}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 16]}
          y: {shape: [B], dtype: int64}
        blocks:
          dense:
            inputs: [h]
            nodes:
              fc: {op: linear, in: h, out: 16}
              act: {op: relu, in: fc}
            outputs: [act]
        nodes:
          hidden: {block: dense, in: x, repeat: 3}
          logits: {op: linear, in: hidden, out: 4}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def duplicated_subgraph(ctx: LintContext):
    g = ctx.graph
    bodies: dict[tuple, list[Node]] = defaultdict(list)
    spans: dict[tuple, int] = defaultdict(int)
    for node in g.nodes.values():
        if not node.is_input:
            key = tuple(f.path for f in node.scope)
            bodies[key].append(node)
            spans[(key, node.span)] += 1
    for key, members in bodies.items():
        seq = [n for n in members if spans[(key, n.span)] == 1][:MAX_SCAN]  # not `repeat` copies
        pos = {n.name: i for i, n in enumerate(seq)}
        sigs = [_signature(n) for n in seq]
        s = 0
        while s < len(seq):
            best = None
            for length in range(1, (len(seq) - s) // 2 + 1):
                copies = 1
                while _copy_matches(seq, sigs, pos, s, length, copies):
                    copies += 1
                worth = copies >= 3 or (copies == 2 and length >= 3)
                if worth and any(has_params(g, n.name) for n in seq[s:s + length]) and \
                        (best is None or length * copies > best[0] * best[1]):
                    best = (length, copies)
            if best is None:
                s += 1
                continue
            length, copies = best
            starts = [seq[s + j * length] for j in range(copies)]
            unit = " → ".join(n.op for n in seq[s:s + length])
            yield Finding(
                f"`{seq[s].name}`…`{seq[s + length - 1].name}` ({unit}) is written out {copies} "
                f"times in a row (copies start at {', '.join(f'`{n.name}`' for n in starts)})",
                seq[s].span, tuple(n.name for n in starts),
                related=tuple((f"copy {j + 1} starts here", n.span) for j, n in enumerate(starts)
                              if j and n.span),
                hint=f"define the unit once under `blocks:` and use it with `repeat: {copies}`")
            s += length * copies
