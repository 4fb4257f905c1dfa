"""`graphc doctor`: what graphc needs on this machine, and (with --install) getting it.

Graphviz's `dot` is the one system package graphc uses (for `graphc render`); everything else
comes from pip. Where it cannot be installed from here, doctor says exactly how.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import click

INSTALL_HINT = {
    "Linux": "sudo apt-get install graphviz   (Debian/Ubuntu)   or   sudo dnf install graphviz",
    "Darwin": "brew install graphviz",
    "Windows": "winget install graphviz   (or choco install graphviz)",
}


def graphviz_hint() -> str:
    return INSTALL_HINT.get(platform.system(), "install Graphviz from https://graphviz.org/download/")


def dot_version() -> str | None:
    dot = shutil.which("dot")
    if not dot:
        return None
    r = subprocess.run([dot, "-V"], capture_output=True, text=True, timeout=30)
    return (r.stderr or r.stdout).strip() or "dot"


def _install_graphviz() -> bool:
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "graphviz"]):
            click.echo(f"  running: {' '.join(cmd)}")
            if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                return False
        return dot_version() is not None
    if shutil.which("brew"):
        return subprocess.run(["brew", "install", "graphviz"]).returncode == 0
    return False


@click.command()
@click.option("--install", is_flag=True, help="Install missing system packages where possible.")
def doctor(install):
    """Check the toolchain: Python, Numba, Graphviz's `dot`, optional PyTorch."""
    import numba
    import numpy

    click.echo(f"python   {sys.version.split()[0]}")
    click.echo(f"numpy    {numpy.__version__}")
    click.echo(f"numba    {numba.__version__}")
    version = dot_version()
    if version is None and install:
        click.echo("graphviz `dot` not found; installing…")
        if not _install_graphviz():
            click.echo(f"error: could not install Graphviz here; install it with: {graphviz_hint()}",
                       err=True)
            sys.exit(1)
        version = dot_version()
    click.echo(f"graphviz {version or 'MISSING — `graphc render` will write .dot files only; ' + graphviz_hint()}")
    try:
        import torch

        click.echo(f"torch    {torch.__version__} (oracle tests and benchmarks compare against it)")
    except ImportError:
        click.echo("torch    not installed (optional: pip install torch==2.13.0)")
