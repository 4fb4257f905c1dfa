"""GL2xx: sequences — causal masking, position information, recurrent layers."""

from __future__ import annotations

import re

from graphc.lint.context import POSITION_OPS, LintContext
from graphc.lint.table import Finding, rule

RNN_LONG = 32  # steps: beyond this a vanilla RNN's gradient has all but vanished


@rule("GL201", "causal-leak", "error",
      summary="A decoder-only language model with non-causal self-attention predicts the next token.",
      rationale="""
        When the target at position t is the token at position t+1, a self-attention layer
        without `causal: true` lets position t look at position t+1: the answer is in the
        input. Training loss drops to almost zero, and the model is useless for generation,
        where the future is not there to look at. The evidence graphc uses for "predicts the
        next token": the targets are sliced in the graph from the same input the embedding
        reads (a shift), the data source yields shifted targets (`reverse_digits`,
        `sort_digits`, a `.txt` file), or the target input's name or doc says "next".""",
      fix="""
        Set `causal: true` on every self-attention of a decoder. (A masked language model such
        as BERT predicts tokens hidden in its input, not the next one; it needs no mask.)""",
      bad="""
        constants: {vocab: 11, d: 32}
        inputs:
          tokens: {shape: [B, T], dtype: int64}
          targets: {shape: [B, T], dtype: int64, doc: the next token at every position}
        nodes:
          embed: {op: embedding, in: tokens, num: vocab, dim: d}
          pos: {op: positional_encoding, in: embed}
          attn: {op: attention, in: pos, heads: 4}
          norm: {op: add_norm, in: [pos, attn]}
          logits: {op: linear, in: norm, out: vocab}
          loss: {op: cross_entropy, in: [logits, targets]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        constants: {vocab: 11, d: 32}
        inputs:
          tokens: {shape: [B, T], dtype: int64}
          targets: {shape: [B, T], dtype: int64, doc: the next token at every position}
        nodes:
          embed: {op: embedding, in: tokens, num: vocab, dim: d}
          pos: {op: positional_encoding, in: embed}
          attn: {op: attention, in: pos, heads: 4, causal: true}
          norm: {op: add_norm, in: [pos, attn]}
          logits: {op: linear, in: norm, out: vocab}
          loss: {op: cross_entropy, in: [logits, targets]}
        outputs: [logits]
        losses: [loss]
        """)
def causal_leak(ctx: LintContext):
    attns = list(ctx.ops("attention"))
    if not attns or any(a.port_inputs("kv") for a in attns):
        return  # no attention, or an encoder-decoder: its encoder is meant to see everything
    open_attns = [a for a in attns if not a.attrs["causal"]]
    downstream: set[str] = set()
    for attn in open_attns:  # one walk for all of them, not one `ancestors` per loss
        _mark_downstream(ctx, attn.name, downstream)
    for loss in ctx.ops("cross_entropy"):
        if loss.name not in downstream:
            continue
        logits = ctx.type(*loss.port_inputs("logits")[0].tensor) if loss.port_inputs("logits") else None
        if logits is None or logits.rank < 3 or not ctx.predicts_next_token(loss):
            continue
        upstream = ctx.ancestors(loss.name)
        for attn in open_attns:
            if attn.name not in upstream:
                continue
            target = ctx.source(loss, "target")
            yield Finding(
                f"`{attn.name}` is not causal, but `{loss.name}` predicts the next token "
                f"(`{target.name}`): position t can read its own target at t+1",
                attn.where(attr="causal"), (attn.name, loss.name),
                hint=f"set `causal: true` on `{attn.name}`")


def _mark_downstream(ctx: LintContext, start: str, marked: set[str]) -> None:
    """Add `start` and everything downstream of it to `marked`, stopping at what is already
    there (so marking from several attentions visits each node once)."""
    frontier = [start]
    while frontier:
        name = frontier.pop()
        if name in marked:
            continue
        marked.add(name)
        frontier += [c.name for c, _ in ctx.consumers(name) if c.name not in marked]


def _position_input(node) -> bool:
    """An input of position ids (for a learned position embedding written with `embedding`)."""
    return node.is_input and bool(_POSITION.search(node.name) or _POSITION.search(node.doc))


_POSITION = re.compile(r"(^|_)pos(ition)?s?(_|$)|position", re.IGNORECASE)


@rule("GL202", "no-position", "warning",
      summary="Attention over a sequence with no position information anywhere before it.",
      rationale="""
        Attention is permutation-invariant: shuffle the tokens and each output is shuffled the
        same way. Without a positional encoding (or a recurrent or convolutional layer, which
        know order) before it, the model sees a bag of tokens and cannot tell "dog bites man"
        from "man bites dog".""",
      fix="""
        Add a `positional_encoding` node (sinusoidal or learned) after the embedding, or add an
        `embedding` of position ids from an input whose name or doc says so (`positions`,
        `pos_ids`). If the input really is a set, suppress the rule on the node and say so.""",
      bad="""
        inputs:
          tokens: {shape: [B, T], dtype: int64}
          y: {shape: [B, T], dtype: int64}
        nodes:
          embed: {op: embedding, in: tokens, num: 100, dim: 32}
          attn: {op: attention, in: embed, heads: 4, causal: true}
          norm: {op: add_norm, in: [embed, attn]}
          logits: {op: linear, in: norm, out: 5}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        inputs:
          tokens: {shape: [B, T], dtype: int64}
          y: {shape: [B, T], dtype: int64}
        nodes:
          embed: {op: embedding, in: tokens, num: 100, dim: 32}
          pos: {op: positional_encoding, in: embed}
          attn: {op: attention, in: pos, heads: 4, causal: true}
          norm: {op: add_norm, in: [pos, attn]}
          logits: {op: linear, in: norm, out: 5}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def no_position(ctx: LintContext):
    g = ctx.graph
    attns = list(ctx.ops("attention"))
    if not attns:
        return
    # whether a position op or a position-ids input is at or before each node: one pass in
    # topological order (asking `ancestors` per attention was quadratic in a deep stack)
    positioned: dict[str, bool] = {}
    for name in g.order:
        node = g.nodes[name]
        positioned[name] = node.op in POSITION_OPS or _position_input(node) or \
            any(positioned.get(i.src, False) for i in node.inputs)
    after_flagged: set[str] = set()  # reported attentions and everything downstream of them
    for attn in attns:
        for port in ("q", "kv"):
            bound = attn.port_inputs(port)
            if not bound:
                continue
            t = ctx.type(*bound[0].tensor)
            if t is None or t.rank != 3 or (t.shape[1].is_Integer and int(t.shape[1]) <= 1):
                continue
            src = bound[0].src
            if positioned.get(src, False):
                continue
            if src in after_flagged:
                break  # an earlier attention on the same sequence is already reported
            _mark_downstream(ctx, attn.name, after_flagged)
            yield Finding(
                f"`{attn.name}` attends over `{bound[0].ref or src}` {t}, but no positional "
                f"encoding, recurrent or convolutional layer comes before it: the model sees "
                f"the sequence as an unordered set", attn.where(port=port), (attn.name,),
                hint=f"add `{{op: positional_encoding, in: {bound[0].ref or src}}}` and attend "
                     f"over it")
            break


@rule("GL203", "long-vanilla-rnn", "warning",
      summary=f"A plain `rnn` over sequences of {RNN_LONG} steps or more.",
      rationale="""
        Backpropagation through time multiplies the gradient by the recurrent Jacobian once per
        step; for a vanilla RNN its norm is almost always below or above 1, so after a few
        dozen steps the gradient from early inputs vanishes (or explodes). LSTM and GRU carry a
        gated cell state that keeps the gradient path open over long spans.""",
      fix="""
        Use `op: lstm` or `op: gru` (same attributes). The sequence length is read from the
        input's shape or, when it is symbolic, from `train.data` (`length`, `block`).""",
      bad="""
        inputs:
          x: {shape: [B, 100, 8]}
          y: {shape: [B], dtype: int64}
        nodes:
          rec: {op: rnn, in: x, hidden: 32, output: last}
          logits: {op: linear, in: rec, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """,
      good="""
        inputs:
          x: {shape: [B, 100, 8]}
          y: {shape: [B], dtype: int64}
        nodes:
          rec: {op: lstm, in: x, hidden: 32, output: last}
          logits: {op: linear, in: rec, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        """)
def long_vanilla_rnn(ctx: LintContext):
    for node in ctx.ops("rnn"):
        steps = ctx.sequence_length(node)
        if steps is None or steps < RNN_LONG:
            continue
        yield Finding(f"`{node.name}` is a vanilla RNN over {steps} steps: gradients from the early "
                      f"steps vanish long before they reach the loss", node.where(attr="op") or node.span,
                      (node.name,), hint=f"use `op: lstm` or `op: gru` for `{node.name}`")
