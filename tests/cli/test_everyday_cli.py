"""The small things of daily use: `graphc ops` shows its docs as written (brackets included),
op names complete in the shell, `graphc doctor` fails when something is missing."""

from __future__ import annotations

import os
import subprocess
import sys

from click.shell_completion import ShellComplete
from click.testing import CliRunner

from graphc.cli import main
from graphc.ops import OPS
from tests.conftest import SPECS


def run(*args):
    r = CliRunner().invoke(main, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def test_ops_keeps_bracketed_text():
    r = run("ops", "conv2d")
    assert r.exit_code == 0
    assert "[B, C, H, W] → [B, out, H_out, W_out]" in r.output
    assert "kernel size (k or [kh, kw])" in r.output
    assert "bias: bool, default true" in r.output  # written as in a spec, not Python's True
    listing = run("ops").output
    assert "[B, C, H, W]" in listing


def test_ops_unknown_name_suggests():
    r = run("ops", "conv2")
    assert r.exit_code == 1 and "did you mean" in r.output


def _complete(args: list[str], incomplete: str) -> list[str]:
    comp = ShellComplete(main, {}, "graphc", "_GRAPHC_COMPLETE")
    return [c.value for c in comp.get_completions(args, incomplete)]


def test_op_names_complete():
    assert _complete(["ops"], "conv") == sorted(n for n in OPS if n.startswith("conv"))
    assert "layernorm" in _complete(["ops"], "")


def test_commands_complete():
    assert _complete([], "su") == ["summary"]


def test_bash_completion_script_is_what_the_readme_says():
    env = {**os.environ, "_GRAPHC_COMPLETE": "bash_source"}
    code = "from graphc.cli import main; main(prog_name='graphc')"  # what the `graphc` script runs
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "_graphc_completion" in r.stdout, r.stderr


def test_doctor_exits_1_when_graphviz_is_missing(monkeypatch):
    monkeypatch.setattr("graphc.toolchain.dot_version", lambda: None)
    r = run("doctor")
    assert r.exit_code == 1
    assert "graphviz MISSING" in r.output and "missing: graphviz" in r.output


def test_doctor_exits_1_when_a_package_is_missing(monkeypatch):
    import graphc.cli.doctor as doctor

    real = doctor._module_version
    monkeypatch.setattr(doctor, "_module_version", lambda name: None if name == "numba" else real(name))
    monkeypatch.setattr("graphc.toolchain.dot_version", lambda: "dot - graphviz version 2")
    r = run("doctor")
    assert r.exit_code == 1 and "numba    MISSING" in r.output and "missing: numba" in r.output


def test_doctor_passes_without_torch(monkeypatch):
    import graphc.cli.doctor as doctor

    real = doctor._module_version
    monkeypatch.setattr(doctor, "_module_version", lambda name: None if name == "torch" else real(name))
    monkeypatch.setattr("graphc.toolchain.dot_version", lambda: "dot - graphviz version 2")
    r = run("doctor")
    assert r.exit_code == 0 and "torch    not installed (optional" in r.output


MLP = str(SPECS / "mlp.yaml")


def test_set_is_checked_the_same_way_by_every_front_end_command(tmp_path):
    for args in (["check", MLP], ["summary", MLP], ["lint", MLP], ["render", MLP, "-o", str(tmp_path / "m.svg")]):
        for key, suggestion in (("hiden=8", "did you mean `hidden`?"), ("optimizer.lrr=0.1", "did you mean `lr`?"),
                                ("optimiser.lr=0.1", "did you mean `optimizer`?")):
            r = run(*args, "--set", key)
            assert r.exit_code == 1, (args, key, r.output)
            assert "GC401" in r.output and suggestion in r.output, (args, key, r.output)


def test_op_name_completion_is_cached_without_importing_the_registry(tmp_path):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path)}
    code = ("import sys; from graphc.cli.common import op_names; names = op_names(); "
            "print(len(names), 'graphc.ops.registry' in sys.modules)")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert first.stdout.split() == [str(len(OPS)), "True"], first.stderr  # built from the registry
    assert again.stdout.split() == [str(len(OPS)), "False"], again.stderr  # read from the cache
    assert len(list(tmp_path.glob("op-names-*.txt"))) == 1
