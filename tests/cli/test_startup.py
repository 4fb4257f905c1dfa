"""Start-up is part of the interface: `graphc --version` and `--help` load none of the heavy
libraries, and `graphc check` (the front end only) loads no Numba. Each case runs in a fresh
interpreter, since this test process has long imported everything."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SPECS

HEAVY = ("numba", "numpy", "sympy", "networkx")

# Runs `graphc ARGS` in process and prints the exit status and every module it loaded.
PROBE = """
import json, sys
from click.testing import CliRunner
from graphc.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
print(json.dumps({"exit": result.exit_code, "modules": sorted(sys.modules)}))
"""


def _loaded(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["exit"] == 0, (args, r.stdout)
    return [m for m in HEAVY if m in report["modules"]]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"]])
def test_version_and_help_load_no_heavy_library(args):
    assert _loaded(*args) == []


def test_check_loads_no_numba():
    loaded = _loaded("check", str(SPECS / "mlp.yaml"))
    assert "numba" not in loaded and "sympy" in loaded  # it did run the front end


def test_import_graphc_is_light_and_its_names_still_resolve():
    code = ("import sys, graphc; light = not any(m in sys.modules for m in sys.argv[1:]); "
            "print(light, graphc.analyze.__module__, graphc.Analysis.__name__, graphc.__version__)")
    r = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.stdout.split() == ["True", "graphc.pipeline", "Analysis", "0.1.0"], r.stderr


def test_lint_choices_agree_with_the_library():
    # graphc.cli.lint spells out its --format/--fail-on choices to stay light at start-up.
    from graphc.cli import lint as command
    from graphc.lint.engine import FAIL_LEVELS
    from graphc.lint.formats import FORMATS

    assert command.FORMATS == FORMATS and command.FAIL_LEVELS == FAIL_LEVELS
