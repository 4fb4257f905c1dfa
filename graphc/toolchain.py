"""The one system tool graphc uses besides pip packages: Graphviz's `dot` (for `graphc render`).
Finding it, installing it where that is possible from here, and saying how where it is not.
`graphc doctor` (graphc.cli.doctor) reports on it."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable

INSTALL_HINT = {
    "Linux": "sudo apt-get install graphviz   (Debian/Ubuntu)   or   sudo dnf install graphviz",
    "Darwin": "brew install graphviz",
    "Windows": "winget install graphviz   (or choco install graphviz)",
}


def graphviz_hint() -> str:
    """How to install Graphviz on this platform, as one line."""
    return INSTALL_HINT.get(platform.system(), "install Graphviz from https://graphviz.org/download/")


def dot_version() -> str | None:
    """`dot -V`'s answer, or None when `dot` is not on PATH."""
    dot = shutil.which("dot")
    if not dot:
        return None
    r = subprocess.run([dot, "-V"], capture_output=True, text=True, timeout=30)
    return (r.stderr or r.stdout).strip() or "dot"


def install_graphviz(say: Callable[[str], None] = print) -> bool:
    """Install Graphviz with apt-get (as root) or brew; False where neither can. `say` hears
    each command before it runs."""
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "graphviz"]):
            say(f"  running: {' '.join(cmd)}")
            if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                return False
        return dot_version() is not None
    if shutil.which("brew"):
        return subprocess.run(["brew", "install", "graphviz"]).returncode == 0
    return False
