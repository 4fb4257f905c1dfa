"""`graphc doctor`: what graphc needs on this machine, and (with --install) getting it.

Graphviz's `dot` is the one system package graphc uses (for `graphc render`); everything else
comes from pip. Where it cannot be installed from here, doctor says exactly how. The exit
status says whether everything graphc needs is there (1 when something is missing), so a
setup script or CI can run `graphc doctor` as a check; PyTorch is optional and never fails it.
"""

from __future__ import annotations

import importlib
import sys

import click

MIN_PYTHON = (3, 11)


def _module_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # not installed, or broken (a Numba built for another NumPy): both missing
        return None
    return getattr(module, "__version__", "installed")


def _threads() -> str:
    """The kernels' thread pool and the BLAS kernels inside it: what decides their speed."""
    import os

    import numba

    from graphc.kernels._blas import blas_cores
    from graphc.kernels.threads import configure, default_threads

    configure()
    text = (f"{default_threads()} kernel threads ({numba.threading_layer()} layer; set with "
            "--threads or GRAPHC_THREADS)")
    cores = sorted(set(blas_cores()))
    if cores:
        text += f"; OpenBLAS {'/'.join(cores)} kernels"
        forced = os.environ.get("OPENBLAS_CORETYPE")
        if forced:
            text += f" (OPENBLAS_CORETYPE={forced} is set)"
    return text


@click.command()
@click.option("--install", is_flag=True, help="Install missing system packages where possible.")
def doctor(install):
    """Check the toolchain: Python, NumPy, Numba, Graphviz's `dot`, optional PyTorch.

    Exit status 0 when everything graphc needs is there, 1 when something is missing."""
    from graphc.toolchain import dot_version, graphviz_hint, install_graphviz

    missing = []
    python = sys.version.split()[0]
    if sys.version_info[:2] < MIN_PYTHON:
        missing.append("python")
        python += f" — graphc needs Python ≥ {'.'.join(map(str, MIN_PYTHON))}"
    click.echo(f"python   {python}")
    for name in ("numpy", "numba"):
        version = _module_version(name)
        if version is None:
            missing.append(name)
        click.echo(f"{name:<8} {version or f'MISSING — pip install {name} (or reinstall graphc: pip install -e .)'}")
    version = dot_version()
    if version is None and install:
        click.echo("graphviz `dot` not found; installing…")
        if not install_graphviz(say=click.echo):
            click.echo(f"error: could not install Graphviz here; install it with: {graphviz_hint()}",
                       err=True)
            sys.exit(1)
        version = dot_version()
    if version is None:
        missing.append("graphviz")
    click.echo(f"graphviz {version or 'MISSING — `graphc render` will write .dot files only; ' + graphviz_hint()}")
    if "numba" not in missing:
        click.echo(f"threads  {_threads()}")
    torch = _module_version("torch")
    click.echo(f"torch    {torch} (oracle tests and benchmarks compare against it)" if torch
               else "torch    not installed (optional: pip install torch==2.13.0)")
    if missing:
        click.echo(f"missing: {', '.join(missing)}" + ("" if install or "graphviz" not in missing
                                                        else " (graphc doctor --install gets Graphviz where it can)"),
                   err=True)
        sys.exit(1)
