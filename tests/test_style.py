"""The tree passes `ruff check` (pyproject.toml's rules), so lint is enforced, not advised."""

import shutil
import subprocess
import sys

from tests.conftest import ROOT


def test_ruff_check_is_clean():
    cmd = [sys.executable, "-m", "ruff"] if shutil.which("ruff") is None else ["ruff"]
    r = subprocess.run([*cmd, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
