"""How `check` and `lint` scale with the size of a graph: both must be linear.

    python benchmarks/large_graphs.py [--sizes 2000 5000 20000] [--profile N [--kind K]]

Times the front end (`analyze`: load, expand, validate, infer, train check) and the lint engine
(`lint_file`, which runs the front end again and then every rule) on generated specs of about
N op nodes — a residual chain written out node by node (`chain_spec`), a plain chain, and a
transformer of nested repeated blocks with a head and loss per 100 layers
(`transformer_spec`) — and prints µs per node, so a quadratic pass shows as a growing column.
`--profile N` prints the top of cProfile for N nodes.
tests/frontend/test_large_graphs.py checks a 20,000-node spec's result (not its time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def chain_spec(n: int, width: int = 16, residual: bool = True) -> str:
    """A spec of `n` op nodes: residual units (linear → relu → add), or with `residual=False` a
    plain chain (linear → tanh → linear …, what lint's depth rules walk furthest), plus a
    block-based tail so blocks, `repeat` and lint's block walks are exercised too, ending in a
    loss."""
    if not residual:
        return _plain_chain(n, width)
    units = n // 3
    lines = [f"# a generated chain of {n} op nodes (benchmarks/large_graphs.py)", "graphc: 1",
             f"name: chain{n}", f"constants: {{d: {width}, classes: 4}}",
             "inputs:", "  x: [B, d]", "  y: {shape: [B], dtype: int64}",
             "blocks:", "  unit:", "    args: {w: null}", "    inputs: [h]", "    nodes:",
             "      fc: {op: linear, in: h, out: w}", "      act: {op: relu, in: fc}",
             "      res: {op: add, in: [h, act]}", "    outputs: [res]", "nodes:"]
    prev = "x"
    for i in range(units):
        lines += [f"  fc{i}: {{op: linear, in: {prev}, out: d}}", f"  act{i}: {{op: relu, in: fc{i}}}",
                  f"  res{i}: {{op: add, in: [{prev}, act{i}]}}"]
        prev = f"res{i}"
    lines += [f"  tail: {{block: unit, in: {prev}, repeat: 2, w: d}}",
              "  logits: {op: linear, in: tail, out: classes}",
              "  loss: {op: cross_entropy, in: [logits, y]}",
              "outputs: [logits]", "losses: [loss]",
              "train:", "  data: {task: two_spirals}", "  batch: 32", "  steps: 10",
              "  optimizer: {name: adam, lr: 1e-3}"]
    return "\n".join(lines) + "\n"


def _plain_chain(n: int, width: int) -> str:
    lines = [f"# a generated plain chain of {n} op nodes (benchmarks/large_graphs.py)",
             f"constants: {{d: {width}, classes: 4}}", "inputs:", "  x: [B, d]",
             "  y: {shape: [B], dtype: int64}", "nodes:"]
    prev = "x"
    for i in range(n - 2):
        op = "{op: linear, in: %s, out: d}" if i % 2 == 0 else "{op: tanh, in: %s}"
        lines.append(f"  n{i}: " + op % prev)
        prev = f"n{i}"
    lines += [f"  logits: {{op: linear, in: {prev}, out: classes}}",
              "  loss: {op: cross_entropy, in: [logits, y]}", "outputs: [logits]", "losses: [loss]",
              "train:", "  data: {task: two_spirals}", "  batch: 32", "  steps: 10",
              "  optimizer: {name: adam, lr: 1e-3}"]
    return "\n".join(lines) + "\n"


def transformer_spec(n: int) -> str:
    """A decoder-only transformer of ~n op nodes: layers of 6 nodes (attention, add_norm, two
    linears, gelu, add_norm) repeated through two nested blocks, a logits head and a loss per
    hundred layers (what lint's sequence and loss rules walk)."""
    layers = max(1, n // 6)
    inner = min(layers, 100)
    outer = max(1, layers // inner)
    lines = [f"# a generated transformer of {6 * inner * outer} layer nodes (benchmarks/large_graphs.py)",
             "constants: {vocab: 13, d: 32}", "inputs:", "  tokens: {shape: [B, T], dtype: int64}",
             "  targets: {shape: [B, T], dtype: int64, doc: the next token}",
             "blocks:", "  layer:", "    inputs: [x]", "    nodes:",
             "      attn: {op: attention, in: x, heads: 4, causal: true}",
             "      n1: {op: add_norm, in: [x, attn]}", "      f1: {op: linear, in: n1, out: 64}",
             "      act: {op: gelu, in: f1}", "      f2: {op: linear, in: act, out: d}",
             "      n2: {op: add_norm, in: [n1, f2]}", "    outputs: [n2]",
             "  stage:", "    inputs: [x]", "    nodes:",
             f"      layers: {{block: layer, in: x, repeat: {inner}}}", "    outputs: [layers]", "nodes:",
             "  embed: {op: embedding, in: tokens, num: vocab, dim: d}",
             "  pos: {op: positional_encoding, in: embed, kind: learned, max_len: 64}"]
    prev = "pos"
    heads = []
    for s in range(outer):
        lines += [f"  stage{s}: {{block: stage, in: {prev}}}",
                  f"  logits{s}: {{op: linear, in: stage{s}, out: vocab}}",
                  f"  loss{s}: {{op: cross_entropy, in: [logits{s}, targets]}}"]
        prev = f"stage{s}"
        heads.append(s)
    lines += ["outputs: [" + ", ".join(f"logits{s}" for s in heads) + "]",
              "losses: [" + ", ".join(f"loss{s}" for s in heads) + "]",
              "train:", "  data: {task: reverse_digits, length: 8}", "  batch: 32",
              "  optimizer: {name: adamw, lr: 1e-3}"]
    return "\n".join(lines) + "\n"


SPECS = {"residual": lambda n: chain_spec(n), "plain": lambda n: chain_spec(n, residual=False),
         "transformer": transformer_spec}


def write(n: int, directory: Path, kind: str = "residual") -> Path:
    path = directory / f"{kind}{n}.yaml"
    path.write_text(SPECS[kind](n))
    return path


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 20000])
    ap.add_argument("--profile", type=int, default=0, help="profile check + lint at this size")
    ap.add_argument("--kind", choices=sorted(SPECS), default="residual", help="the spec to profile")
    args = ap.parse_args()
    from graphc.lint.engine import Config, lint_file
    from graphc.pipeline import analyze

    tmp = Path(tempfile.mkdtemp())
    analyze(write(30, tmp, "transformer"))  # imports and caches warm
    if args.profile:
        path = write(args.profile, tmp, args.kind)
        prof = cProfile.Profile()
        prof.runcall(lambda: lint_file(str(path), config=Config()))
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        return 0
    print(f"{'spec':>14} {'nodes':>7} {'check s':>9} {'µs/node':>8} {'lint s':>8} {'µs/node':>8}")
    for n, kind in [(n, k) for n in args.sizes for k in SPECS]:
        path = write(n, tmp, kind)
        t0 = time.perf_counter()
        a = analyze(path)
        t_check = time.perf_counter() - t0
        assert a.ok, [d.message for d in a.diagnostics[:5]]
        t_lint = timed(lambda p=path: lint_file(str(p), config=Config()))
        nodes = len(a.graph.nodes)
        print(f"{kind:>14} {nodes:>7} {t_check:>9.2f} {1e6 * t_check / nodes:>8.0f} {t_lint:>8.2f} "
              f"{1e6 * t_lint / nodes:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
