"""The front-end fuzzer, run long: mutated specs, `--set` values, odd op attributes.

    python benchmarks/fuzz_specs.py [--n 5000] [--seed 1] [--cli 300] [--ops] [--show 3]

Runs `n` mutants of specs/*.yaml and examples/*.yaml (tests/frontend/fuzz.py) through the front
end and lint's engine, `--cli` of them through `graphc check/summary/lint`, and with `--ops`
every op × attribute × odd value × input rank. Prints the problems grouped by cause (the last
line of the error), with the mutants that show them; exit status 1 if there are any.
The suite runs the same checks, bounded (tests/frontend/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import collections
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.frontend.fuzz import check_mutant, check_text, mutants, op_cases, run_cli  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="mutated specs (front end + lint engine)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cli", type=int, default=300, help="of them, also through the CLI commands")
    ap.add_argument("--ops", action="store_true", help="every op with odd attribute values")
    ap.add_argument("--show", type=int, default=3, help="mutants shown per cause")
    ap.add_argument("--max-memory", type=float, default=4.0, metavar="GiB",
                    help="address-space limit, so that a memory bomb is a MemoryError (a problem "
                         "reported like any other) and not the OOM killer on a shared machine")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (int(args.max_memory * 2**30),) * 2)
    path = Path(tempfile.mkdtemp()) / "spec.yaml"
    problems = []
    t0 = time.perf_counter()
    cli_every = max(1, args.n // max(1, args.cli)) if args.cli else 0
    n_cli = 0
    for i, m in enumerate(mutants(args.seed, args.n)):
        problems += check_mutant(m, path)
        if cli_every and i % cli_every == 0 and n_cli < args.cli:
            n_cli += 1
            for command in ("check", "summary", "lint"):
                problems += run_cli(m, path, command)
    t1 = time.perf_counter()
    n_ops = 0
    if args.ops:
        for name, text in op_cases():
            n_ops += 1
            problems += check_text(name, text, path)
    t2 = time.perf_counter()
    print(f"{args.n} mutated specs (seed {args.seed}), {n_cli} of them through check/summary/lint: "
          f"{t1 - t0:.1f} s ({1000 * (t1 - t0) / max(1, args.n):.1f} ms each)")
    if args.ops:
        print(f"{n_ops} one-op specs with odd attribute values: {t2 - t1:.1f} s")
    causes = collections.defaultdict(list)
    for p in problems:
        causes[f"{p.what}: {p.detail.strip().splitlines()[-1][:160]}"].append(p)
    gc900 = sum(p.what == "GC900" for p in problems)
    print(f"{len(problems)} problems ({gc900} GC900) in {len(causes)} causes")
    for cause, ps in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        print(f"\n{len(ps):5d}  {cause}")
        for p in ps[:args.show]:
            print(f"       {p.mutant[:300]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
