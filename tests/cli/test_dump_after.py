"""`graphc compile --dump-after PASS` shows the pipeline's state after a pass, or why it stopped."""

from click.testing import CliRunner

from graphc.cli import main
from tests.conftest import ROOT


def test_dump_after_a_back_end_pass_prints_its_calls():
    r = CliRunner().invoke(main, ["compile", str(ROOT / "specs/mlp.yaml"), "--dump-after", "autodiff"])
    assert r.exit_code == 0, r.output
    assert "[b] logits: " in r.output and "linear_bwd(" in r.output


def test_dump_after_on_a_broken_spec_reports_and_exits_1():
    r = CliRunner().invoke(main, ["compile", str(ROOT / "specs/bad/cycle.yaml"), "--dump-after", "plan"])
    assert r.exit_code == 1
    assert "GC203" in r.output and "stopped before `plan`" in r.output


def test_dump_after_an_unknown_pass_is_a_usage_error():
    r = CliRunner().invoke(main, ["compile", str(ROOT / "specs/mlp.yaml"), "--dump-after", "optimize"])
    assert r.exit_code == 2 and "codegen" in r.output


def test_plan_larger_than_the_memory_limit_is_refused():
    args = ["compile", str(ROOT / "specs/transformer.yaml"), "--plan", "--dim", "B=64", "--dim", "T=16"]
    r = CliRunner().invoke(main, [*args, "--max-memory", "1MB"])
    assert r.exit_code == 1
    assert "needs about 8.75 MiB, but the --max-memory limit is 1 MiB" in r.output
    r = CliRunner().invoke(main, [*args[:-4], "--dim", "B=1000000", "--dim", "T=512"])
    assert r.exit_code == 1 and "TiB" in r.output and "available" in r.output
