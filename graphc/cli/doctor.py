"""`graphc doctor`: what graphc needs on this machine, and (with --install) getting it.

Graphviz's `dot` is the one system package graphc uses (for `graphc render`); everything else
comes from pip. Where it cannot be installed from here, doctor says exactly how.
"""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--install", is_flag=True, help="Install missing system packages where possible.")
def doctor(install):
    """Check the toolchain: Python, Numba, Graphviz's `dot`, optional PyTorch."""
    import numba
    import numpy

    from graphc.toolchain import dot_version, graphviz_hint, install_graphviz

    click.echo(f"python   {sys.version.split()[0]}")
    click.echo(f"numpy    {numpy.__version__}")
    click.echo(f"numba    {numba.__version__}")
    version = dot_version()
    if version is None and install:
        click.echo("graphviz `dot` not found; installing…")
        if not install_graphviz(say=click.echo):
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
