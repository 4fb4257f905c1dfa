"""onnx is an optional extra: registering the exporters imports no onnx, and `graphc check`
never loads the exporters at all."""

import json
import subprocess
import sys

from tests.conftest import ROOT, SPECS

PROBE = """
import json, sys
from click.testing import CliRunner
from graphc.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
print(json.dumps({"exit": result.exit_code, "modules": sorted(sys.modules)}))
"""


def test_check_loads_neither_onnx_nor_the_exporters():
    r = subprocess.run([sys.executable, "-c", PROBE, "check", str(SPECS / "cnn.yaml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["exit"] == 0
    loaded = set(report["modules"])
    assert not {"onnx", "onnxruntime", "graphc.export"} & loaded


def test_registering_the_exporters_imports_no_onnx():
    code = "import sys, graphc.export; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.stdout.split() == ["False", "False"], r.stderr
