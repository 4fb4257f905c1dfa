"""A bounded fuzz run over mutated reference specs and examples: only diagnostics, never GC900,
never a traceback, every error about the file at a file:line (issue #11).

Seeded and deterministic; `python benchmarks/fuzz_specs.py --n 5000` runs the same checks longer
(and with other seeds). A failure prints the mutant's description; `Mutator(source).mutant(seed,
index)` rebuilds it.
"""

import random

from tests.frontend.fuzz import SOURCES, check_mutant, check_text, mutants, op_cases, run_cli

SEED = 2026
N_SPECS = 1200  # front end + lint engine, ~10 ms each
N_CLI = 60  # mutants run through check, summary and lint with their --set values
N_OPS = 1000  # of the ~3,600 one-op specs with odd attribute values


def _report(problems) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(str(p) for p in problems[:10])


def test_sources_are_every_reference_spec_and_example():
    names = {p.name for p in SOURCES}
    assert {"transformer.yaml", "mlp.yaml", "gan.yaml", "unet.yaml"} <= names and len(names) >= 19


def test_mutated_specs_get_only_diagnostics(tmp_path):
    problems = []
    for m in mutants(SEED, N_SPECS):
        problems += check_mutant(m, tmp_path / "spec.yaml")
    assert not problems, _report(problems)


def test_mutated_specs_and_set_values_through_the_cli(tmp_path):
    problems = []
    picked = [m for m in mutants(SEED + 1, 4 * N_CLI) if m.sets][:N_CLI // 2]
    picked += list(mutants(SEED + 2, N_CLI // 2, sets=False))
    for m in picked:
        for command in ("check", "summary", "lint"):
            problems += run_cli(m, tmp_path / "spec.yaml", command)
    assert not problems, _report(problems)


def test_every_op_with_odd_attribute_values(tmp_path):
    cases = list(op_cases())
    problems = []
    for name, text in random.Random(SEED).sample(cases, min(N_OPS, len(cases))):
        problems += check_text(name, text, tmp_path / "spec.yaml")
    assert not problems, _report(problems)


def test_the_mutator_is_deterministic_and_makes_broken_specs(tmp_path):
    a = [m.text for m in mutants(SEED, 40)]
    assert a == [m.text for m in mutants(SEED, 40)]
    from graphc.pipeline import analyze

    broken = 0
    for i, text in enumerate(a):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(text)
        broken += not analyze(path).ok
    assert broken >= 20  # most mutants are wrong specs: the fuzzer exercises the error paths
