"""GL1xx: outputs and losses — what feeds a loss, what reaches one, and what never does."""

from __future__ import annotations

from graphc.lint.context import LOGIT_PORTS, SHAPE_ONLY, LintContext, has_params
from graphc.lint.table import Finding, rule
from graphc.ops import OPS


def _walk_up(ctx: LintContext, start: str, into: set[str], stop: set[str]) -> None:
    """Add `start` and what feeds it to `into`, not entering `stop` or what is already there."""
    frontier = [start]
    while frontier:
        name = frontier.pop()
        if name in into or name in stop:
            continue
        into.add(name)
        node = ctx.graph.nodes.get(name)
        if node is not None:
            frontier += [i.src for i in node.inputs if i.src not in into]


def _logit_sources(ctx: LintContext, ops: set[str]):
    """(loss node, port, producing node) for each logits port fed (through reshapes) by `ops`."""
    for loss in ctx.ops(*LOGIT_PORTS):
        for port in LOGIT_PORTS[loss.op]:
            src = ctx.source(loss, port)
            if src is not None and src.op in ops:
                yield loss, port, src


@rule("GL101", "probabilities-into-logits-loss", "error",
      summary="`softmax` or `log_softmax` feeds a loss that expects raw logits.",
      rationale="""
        `cross_entropy`, `hinge`, `kl_div` and `bce_with_logits` normalize their input
        themselves (softmax or sigmoid, computed stably inside the loss). Feeding them
        probabilities applies the normalization twice: the scores are squashed into [0, 1], the
        loss can barely tell a right answer from a wrong one, and gradients all but vanish.
        `log_softmax` before `cross_entropy` gives the same loss (log_softmax is idempotent)
        but does the work twice, so it is reported as a warning; before `kl_div` with a
        temperature it changes the result.""",
      fix="""
        Feed the loss the scores from the last linear layer. If you also want probabilities
        for prediction, keep the `softmax` node and list it under `outputs:` beside the logits.""",
      bad="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B], dtype: int64}
        nodes:
          logits: {op: linear, in: x, out: 3}
          probs: {op: softmax, in: logits}
          loss: {op: cross_entropy, in: [probs, y]}
        outputs: [probs]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B], dtype: int64}
        nodes:
          logits: {op: linear, in: x, out: 3}
          probs: {op: softmax, in: logits}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [probs]
        losses: [loss]
        """)
def probabilities_into_logits_loss(ctx: LintContext):
    for loss, port, src in _logit_sources(ctx, {"softmax", "log_softmax"}):
        if loss.op == "bce_with_logits" and src.op == "sigmoid":
            continue  # GL102
        twice = "applied twice" if src.op == "softmax" else "computed twice"
        severity = "warning" if src.op == "log_softmax" and loss.op == "cross_entropy" else None
        yield Finding(
            f"`{loss.name}` ({loss.op}) expects raw logits on `{port}`, but they come from "
            f"`{src.name}` ({src.op}): the normalization is {twice}",
            loss.where(port=port), (loss.name, src.name),
            hint=f"feed `{loss.name}` the input of `{src.name}` instead",
            related=((f"`{src.name}` ({src.op}) is here", src.span),) if src.span else (),
            severity=severity)


@rule("GL102", "sigmoid-into-bce-with-logits", "error",
      summary="`sigmoid` feeds `bce_with_logits`, which applies the sigmoid itself.",
      rationale="""
        `bce_with_logits` computes `softplus(z) - y·z`, i.e. binary cross-entropy of
        `sigmoid(z)`, in a form that stays finite for large |z|. Given `sigmoid(z)` instead of
        `z`, it computes the loss of `sigmoid(sigmoid(z))`, which lies in (0.5, 0.73): the model
        can never predict a confident 0, and the gradient is tiny.""",
      fix="""
        Feed `bce_with_logits` the pre-sigmoid scores. Keep the `sigmoid` node as an output if
        you want probabilities at prediction time.""",
      bad="""
        inputs:
          x: {shape: [B, 8]}
          y: {shape: [B, 1]}
        nodes:
          score: {op: linear, in: x, out: 1}
          prob: {op: sigmoid, in: score}
          loss: {op: bce_with_logits, in: [prob, y]}
        outputs: [prob]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 8]}
          y: {shape: [B, 1]}
        nodes:
          score: {op: linear, in: x, out: 1}
          prob: {op: sigmoid, in: score}
          loss: {op: bce_with_logits, in: [score, y]}
        outputs: [prob]
        losses: [loss]
        """)
def sigmoid_into_bce(ctx: LintContext):
    for loss, port, src in _logit_sources(ctx, {"sigmoid"}):
        if loss.op != "bce_with_logits":
            continue
        yield Finding(
            f"`{loss.name}` (bce_with_logits) applies the sigmoid itself, but `{port}` comes from "
            f"`{src.name}` (sigmoid): the loss sees sigmoid(sigmoid(z))",
            loss.where(port=port), (loss.name, src.name),
            hint=f"feed `{loss.name}` the input of `{src.name}`",
            related=((f"`{src.name}` (sigmoid) is here", src.span),) if src.span else ())


@rule("GL103", "activation-before-logits", "warning",
      summary="`relu`, `gelu` or `tanh` right before a loss's logits clips or bounds the scores.",
      rationale="""
        Logits must be free to take any real value: a class is made unlikely by a large
        negative score. After `relu` (or `gelu`) no score can go below zero, so the model cannot
        push wrong classes down, only the right one up; after `tanh` every score lies in
        [-1, 1], so no prediction can become confident and the loss plateaus.""",
      fix="""
        End the network with a linear layer and feed its output to the loss directly; put the
        activation before that last layer.""",
      bad="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B], dtype: int64}
        nodes:
          hidden: {op: linear, in: x, out: 16}
          logits: {op: linear, in: hidden, out: 3}
          act: {op: relu, in: logits}
          loss: {op: cross_entropy, in: [act, y]}
        outputs: [act]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 4]}
          y: {shape: [B], dtype: int64}
        nodes:
          hidden: {op: linear, in: x, out: 16}
          act: {op: relu, in: hidden}
          logits: {op: linear, in: act, out: 3}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def activation_before_logits(ctx: LintContext):
    for loss, port, src in _logit_sources(ctx, {"relu", "gelu", "tanh"}):
        what = "bounds every score to [-1, 1]" if src.op == "tanh" else "clips every score at 0"
        yield Finding(
            f"`{src.name}` ({src.op}) feeds the logits of `{loss.name}` ({loss.op}) and {what}",
            loss.where(port=port), (loss.name, src.name),
            hint=f"feed `{loss.name}` a linear layer's output; move `{src.name}` before it",
            related=((f"`{src.name}` ({src.op}) is here", src.span),) if src.span else ())


@rule("GL104", "dropout-before-output", "warning",
      summary="`dropout` directly before an output or a loss.",
      rationale="""
        Dropout zeroes random elements of its input in training. Right before the output it
        zeroes the predictions themselves: in training random logits become 0 (a uniform guess
        for that class) and the loss is noisy for no regularizing benefit, while at inference
        the layer does nothing, so training and prediction see different models.""",
      fix="""
        Put dropout before the last linear layer (on the features it reads), not after it.""",
      bad="""
        inputs:
          x: {shape: [B, 32]}
          y: {shape: [B], dtype: int64}
        nodes:
          hidden: {op: linear, in: x, out: 64}
          act: {op: relu, in: hidden}
          logits: {op: linear, in: act, out: 10}
          drop: {op: dropout, in: logits, p: 0.2}
          loss: {op: cross_entropy, in: [drop, y]}
        outputs: [drop]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 32]}
          y: {shape: [B], dtype: int64}
        nodes:
          hidden: {op: linear, in: x, out: 64}
          act: {op: relu, in: hidden}
          drop: {op: dropout, in: act, p: 0.2}
          logits: {op: linear, in: drop, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def dropout_before_output(ctx: LintContext):
    for node in ctx.ops("dropout"):
        frontier, seen = [node], {node.name}
        outputs, losses = [], []
        while frontier:
            cur = frontier.pop()
            outputs += [f"output `{o}`" for o in ctx.named_outputs(cur.name)]
            for consumer, _ in ctx.consumers(cur.name):
                if consumer.name in seen:
                    continue
                seen.add(consumer.name)
                if consumer.op in SHAPE_ONLY:
                    frontier.append(consumer)
                elif OPS[consumer.op].loss:
                    losses.append(f"loss `{consumer.name}` ({consumer.op})")
        if outputs or losses:
            yield Finding(f"`{node.name}` (dropout) feeds {' and '.join(sorted(set(outputs)) + sorted(set(losses)))} "
                          f"directly: predictions are zeroed at random in training",
                          node.span, (node.name,),
                          hint="move the dropout before the last linear layer")


@rule("GL105", "vocab-mismatch", "error",
      summary="The output projection predicts a different number of tokens than the embedding holds.",
      rationale="""
        In a language model the targets are token ids from the same vocabulary as the inputs,
        so the embedding's `num` and the width of the projection that produces the logits
        must be equal. If the projection is smaller, some target ids have no logit (an
        out-of-range error, or a silently ignored class); if larger, the model spends
        probability on ids that never occur. Usually one of the two forgot a special token.
        The rule applies when the targets are the input tokens themselves (sliced from the
        same input) or the next tokens (see GL201 for the evidence it uses); a tagger whose
        targets are tags from another vocabulary is left alone.""",
      fix="""
        Size both from one constant (`num: vocab` and `out: vocab`).""",
      bad="""
        constants: {vocab: 13}
        inputs:
          tokens: {shape: [B, T], dtype: int64}
          targets: {shape: [B, T], dtype: int64, doc: the next token at every position}
        nodes:
          embed: {op: embedding, in: tokens, num: vocab, dim: 32}
          rnn: {op: gru, in: embed, hidden: 32}
          logits: {op: linear, in: rnn, out: 12}
          loss: {op: cross_entropy, in: [logits, targets]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        constants: {vocab: 13}
        inputs:
          tokens: {shape: [B, T], dtype: int64}
          targets: {shape: [B, T], dtype: int64, doc: the next token at every position}
        nodes:
          embed: {op: embedding, in: tokens, num: vocab, dim: 32}
          rnn: {op: gru, in: embed, hidden: 32}
          logits: {op: linear, in: rnn, out: vocab}
          loss: {op: cross_entropy, in: [logits, targets]}
        outputs: [logits]
        losses: [loss]
        """)
def vocab_mismatch(ctx: LintContext):
    embeds = [(e, ctx.source(e, "ids")) for e in ctx.ops("embedding")]
    for loss in ctx.ops("cross_entropy"):
        proj = ctx.source(loss, "logits")
        target = ctx.source(loss, "target")
        if proj is None or proj.op != "linear" or target is None:
            continue
        out = proj.attrs["out"]
        for embed, ids in embeds:
            num = embed.attrs["num"]
            if ids is None or num == out or embed.name not in ctx.ancestors(proj.name):
                continue
            same_tokens = target.name == ids.name  # e.g. both sliced from one `tokens` input
            tt, it = ctx.type(target.name), ctx.type(ids.name)
            token_like = (tt is not None and it is not None and tt.dtype == it.dtype == "int64"
                          and tt.shape == it.shape and ctx.predicts_next_token(loss))
            if not (same_tokens or token_like):
                continue
            yield Finding(
                f"`{proj.name}` predicts {out} classes but `{embed.name}` embeds a vocabulary of "
                f"{num}; the targets `{target.name}` are token ids like `{ids.name}`",
                proj.where(attr="out"), (proj.name, embed.name),
                hint=f"size both from one constant: `out:` of `{proj.name}` and `num:` of "
                     f"`{embed.name}`",
                related=((f"`{embed.name}` has num: {num}", embed.where(attr="num")),)
                if embed.where(attr="num") else ())


@rule("GL106", "never-trained", "warning",
      summary="A layer with parameters reaches an output but no loss: its weights never train.",
      rationale="""
        Training follows the gradient of the losses only. A branch that feeds a named output
        but none of the losses keeps its random initial weights forever, so that output is
        noise at inference time. It is usually a head that was meant to be added to the loss
        (an auxiliary classifier, an early exit) and was forgotten.""",
      fix="""
        Give the branch a loss (and list it under `losses:`), or remove it; if the weights are
        meant to stay fixed (a teacher), say so with `train.freeze` and suppress this rule on
        the node with a reason.""",
      bad="""
        inputs:
          x: {shape: [B, 16]}
          y: {shape: [B], dtype: int64}
        nodes:
          trunk: {op: linear, in: x, out: 32}
          act: {op: relu, in: trunk}
          head: {op: linear, in: act, out: 4}
          aux_head: {op: linear, in: act, out: 4}
          loss: {op: cross_entropy, in: [head, y]}
        outputs: [head, aux_head]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 16]}
          y: {shape: [B], dtype: int64}
        nodes:
          trunk: {op: linear, in: x, out: 32}
          act: {op: relu, in: trunk}
          head: {op: linear, in: act, out: 4}
          aux_head: {op: linear, in: act, out: 4}
          loss: {op: cross_entropy, in: [head, y]}
          aux_loss: {op: cross_entropy, in: [aux_head, y]}
        outputs: [head, aux_head]
        losses: [loss, aux_loss]
        """)
def never_trained(ctx: LintContext):
    g = ctx.graph
    if not g.losses:
        return
    trained: set[str] = set()
    for node, _ in g.losses.values():  # one walk up from every loss
        _walk_up(ctx, node, trained, stop=set())
    position = {n: i for i, n in enumerate(g.order)}
    for out_name, (node, _) in g.outputs.items():
        branch: set[str] = set()  # what feeds the output and no loss (a trained node's inputs
        _walk_up(ctx, node, branch, stop=trained)  # are trained too: the walk stops there)
        untrained = sorted((n for n in branch if has_params(g, n)), key=position.__getitem__)
        if not untrained:
            continue
        count = sum(g.param_count(n) for n in untrained)
        first = g.nodes[untrained[0]]
        names = ", ".join(f"`{n}`" for n in untrained[:4]) + (" …" if len(untrained) > 4 else "")
        one = len(untrained) == 1
        yield Finding(
            f"{names} ({count:,} parameters) feed{'s' * one} output `{out_name}` but no loss: "
            f"{'its' if one else 'their'} weights never train", first.span, tuple(untrained),
            hint=f"add a loss on `{out_name}` under `losses:`, or remove the branch")


@rule("GL107", "unused-piece", "note",
      summary="An output of a multi-output op (a `split` piece) is never used.",
      rationale="""
        A piece of a `split` that nothing reads is computed and thrown away. Often a reference
        names the wrong piece (`parts.0` twice instead of `parts.0` and `parts.1`).""",
      fix="""
        Use `slice` to take only the part you need, or check the references to the pieces.""",
      bad="""
        inputs:
          x: {shape: [B, 8]}
          y: {shape: [B, 4]}
        nodes:
          parts: {op: split, in: x, sizes: [4, 4]}
          both: {op: add, in: [parts.0, parts.0]}
          loss: {op: mse, in: [both, y]}
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 8]}
          y: {shape: [B, 4]}
        nodes:
          parts: {op: split, in: x, sizes: [4, 4]}
          both: {op: add, in: [parts.0, parts.1]}
          loss: {op: mse, in: [both, y]}
        losses: [loss]
        """)
def unused_piece(ctx: LintContext):
    g = ctx.graph
    named = set(g.outputs.values()) | set(g.losses.values())
    for node in g.nodes.values():
        if len(node.outputs) < 2:
            continue
        used = {inp.src_port for _, inp in ctx.consumers(node.name)}
        unused = [p for p in node.outputs if p not in used and (node.name, p) not in named]
        if unused and len(unused) < len(node.outputs):  # wholly unused nodes are GC301's
            pieces = ", ".join(f"`{node.name}.{p}`" for p in unused)
            yield Finding(f"{pieces} of `{node.name}` ({node.op}) {'is' if len(unused) == 1 else 'are'} "
                          f"never used", node.span, (node.name,),
                          hint="use `slice` for the part you need, or check the references")
