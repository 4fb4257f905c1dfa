"""GL4xx: the `train:` section — optimizer settings judged against the graph they train."""

from __future__ import annotations

from fnmatch import fnmatchcase

from graphc.lint.context import NORM_OPS, LintContext
from graphc.lint.table import Finding, rule
from graphc.spec.train_schema import OPTIMIZER, OPTIMIZERS, named, optimizer_defaults


def optimizer(ctx: LintContext) -> dict | None:
    """`train.optimizer` as a mapping with a known name (the runtime's default is adamw);
    None without a train section or with a name GC401 already reports."""
    if not ctx.train:
        return None
    opt = named(ctx.train.get("optimizer"), OPTIMIZER)
    if opt is None or not isinstance(opt.get("name"), str) or opt["name"] not in OPTIMIZERS:
        return None
    return opt


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def lr_range(name: str) -> tuple[float, float]:
    """The learning rates that usually train with optimizer `name` (the schema's `typical`)."""
    return OPTIMIZER.keys_for(OPTIMIZER.variant(name))["lr"].typical


def weight_decay(opt: dict) -> float:
    wd = _number(opt.get("weight_decay", optimizer_defaults(opt["name"])["weight_decay"]))
    return wd or 0.0


def _depthwise_pointwise(node) -> bool:
    """A conv with one 1×1 filter per channel: a learned per-channel scale."""
    a = node.attrs
    if not node.op.startswith("conv") or a.get("groups", 1) <= 1 or a["groups"] != a.get("out"):
        return False
    k = a.get("kernel")
    return all(v == 1 for v in (k if isinstance(k, tuple | list) else (k,)))


@rule("GL401", "decay-on-bias-or-gain", "warning",
      summary="Weight decay reaches a bias, a normalization gain or another per-channel scale.",
      rationale="""
        Weight decay pulls weights toward zero to keep the function smooth. Biases and
        normalization gains/offsets do not make the function less smooth (they shift or scale
        it), and pulling a gain or a scale toward zero shrinks the signal the layers after it
        see. graphc already exempts the biases and gains its ops declare (their parameters
        have `decay: false`); this rule catches the parameters that still get decayed: a
        per-channel scale built by hand (for instance a depthwise 1×1 convolution, LayerScale)
        or an op that forgot to exempt its bias.""",
      fix="""
        Use a normalization layer's own gain (exempt from decay) instead of a hand-built
        per-channel scale, freeze the parameter with `train.freeze`, or train without weight
        decay (`weight_decay: 0`).""",
      bad="""
        inputs:
          x: {shape: [B, 1, 8, 8]}
          y: {shape: [B], dtype: int64}
        nodes:
          conv: {op: conv2d, in: x, out: 16, kernel: 3, padding: 1}
          scale: {op: conv2d, in: conv, out: 16, kernel: 1, groups: 16, bias: false}
          pool: {op: global_avgpool, in: scale}
          logits: {op: linear, in: pool, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {dataset: digits}
          optimizer: {name: adamw, lr: 1e-3, weight_decay: 0.05}
        """,
      good="""
        inputs:
          x: {shape: [B, 1, 8, 8]}
          y: {shape: [B], dtype: int64}
        nodes:
          conv: {op: conv2d, in: x, out: 16, kernel: 3, padding: 1, bias: false}
          scale: {op: batchnorm, in: conv}
          pool: {op: global_avgpool, in: scale}
          logits: {op: linear, in: pool, out: 10}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {dataset: digits}
          optimizer: {name: adamw, lr: 1e-3, weight_decay: 0.05}
        """)
def decay_on_bias_or_gain(ctx: LintContext):
    opt = optimizer(ctx)
    if opt is None or weight_decay(opt) <= 0:
        return
    freeze = ctx.train.get("freeze") or []
    freeze = [freeze] if isinstance(freeze, str) else [p for p in freeze if isinstance(p, str)]
    for name in ctx.graph.order:
        node = ctx.graph.nodes[name]
        for pname, p in ctx.graph.params.get(name, {}).items():
            full = f"{name}.{pname}"
            if not (p.trainable and p.decay) or any(fnmatchcase(full, pat) for pat in freeze):
                continue
            per_channel = _depthwise_pointwise(node) and pname == "weight"
            if not (len(p.shape) == 1 or per_channel or node.op in NORM_OPS):
                continue
            kind = ("a bias" if "bias" in pname else "a per-channel scale" if per_channel
                    else "a norm parameter" if node.op in NORM_OPS else "a per-feature vector")
            span = ctx.train_where("optimizer", "weight_decay") or ctx.train_where("optimizer")
            yield Finding(f"weight decay {weight_decay(opt):g} reaches `{full}` {list(p.shape)}, "
                          f"{kind}: it will be pulled toward zero", node.span, (name,),
                          related=(("weight decay is set here", span),) if span else (),
                          hint="use a norm layer's gain instead, freeze it, or set weight_decay: 0")


@rule("GL402", "learning-rate-out-of-range", "warning",
      summary="The optimizer's learning rate is far outside the range that usually trains.",
      rationale="""
        Each optimizer has a range of learning rates that works for almost every model: Adam
        and AdamW normalize the step per parameter, so their useful range is about 1e-4 to
        1e-2; plain SGD and momentum need larger rates, about 1e-3 to 0.5. A rate ten times
        outside (an SGD rate given to Adam, a typo in the exponent) diverges in the first
        steps or makes no visible progress, and both look like a bug in the model.
        graphc warns below 1e-5 or above 0.03 for adam/adamw, below 1e-4 or above 1 for
        sgd/momentum, and at 0.""",
      fix="""
        Start from 3e-4 to 3e-3 for adam/adamw, 0.01 to 0.1 for sgd with momentum, and tune
        from there with `--set optimizer.lr=...`.""",
      bad="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        nodes:
          fc: {op: linear, in: x, out: 16}
          act: {op: relu, in: fc}
          logits: {op: linear, in: act, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {task: spirals}
          optimizer: {name: adam, lr: 0.5}
        """,
      good="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        nodes:
          fc: {op: linear, in: x, out: 16}
          act: {op: relu, in: fc}
          logits: {op: linear, in: act, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {task: spirals}
          optimizer: {name: adam, lr: 3e-3}
        """)
def learning_rate_out_of_range(ctx: LintContext):
    opt = optimizer(ctx)
    if opt is None or "lr" not in opt:
        return
    lr = _number(opt["lr"])
    if lr is None:
        return
    lo, hi = lr_range(opt["name"])
    if lo <= lr <= hi:
        return
    why = "nothing will train" if lr <= 0 else "training will diverge" if lr > hi else \
        "training will barely move"
    yield Finding(f"learning rate {lr:g} is far outside the usual range for {opt['name']} "
                  f"({lo:g} to {hi:g}): {why}", ctx.train_where("optimizer", "lr"),
                  hint=f"try {optimizer_defaults(opt['name'])['lr']:g} and tune with "
                  "`--set optimizer.lr=...`")


@rule("GL403", "adam-with-l2", "note",
      summary="`adam` with `weight_decay`: coupled L2, which Adam's scaling weakens; use `adamw`.",
      rationale="""
        With `adam`, graphc (like PyTorch) adds `weight_decay·w` to the gradient: L2
        regularization. Adam then divides each gradient by its running RMS, so weights with
        large gradients are barely regularized and the effective decay depends on the
        gradient scale. AdamW applies the decay directly to the weights (decoupled), which is
        what "weight decay" is meant to do and usually generalizes better.""",
      fix="""
        Use `name: adamw` with the same `weight_decay` (values of 0.01 to 0.1 are typical).""",
      bad="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        nodes:
          fc: {op: linear, in: x, out: 16}
          act: {op: relu, in: fc}
          logits: {op: linear, in: act, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {task: spirals}
          optimizer: {name: adam, lr: 1e-3, weight_decay: 0.01}
        """,
      good="""
        inputs:
          x: {shape: [B, 2]}
          y: {shape: [B], dtype: int64}
        nodes:
          fc: {op: linear, in: x, out: 16}
          act: {op: relu, in: fc}
          logits: {op: linear, in: act, out: 2}
          loss: {op: cross_entropy, in: [logits, y]}
        outputs: [logits]
        losses: [loss]
        train:
          data: {task: spirals}
          optimizer: {name: adamw, lr: 1e-3, weight_decay: 0.01}
        """)
def adam_with_l2(ctx: LintContext):
    opt = optimizer(ctx)
    if opt is None or opt["name"] != "adam" or weight_decay(opt) <= 0:
        return
    yield Finding(f"`adam` with weight_decay {weight_decay(opt):g} is L2 regularization scaled away "
                  f"by Adam's per-parameter step; `adamw` decays the weights directly",
                  ctx.train_where("optimizer", "name") or ctx.train_where("optimizer"),
                  hint="use `name: adamw`")
