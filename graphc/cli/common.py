"""What every command shares: the `--set`/`--format`/`--dim` options and their parsing, printing
diagnostics, running the front end or exiting, and turning user mistakes into exit status 1.

Imported when `graphc --help` lists the commands, so it imports nothing heavy at module level:
the front end (sympy, networkx) and the back end (Numba) load inside the functions that use them.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from rich.console import Console

    from graphc.pipeline import Analysis


def console(stderr: bool = False) -> Console:
    """A rich console that does not wrap at 80 columns when the output goes to a pipe or file."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 160)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (1 bad input, 2 usage)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """`--set d_model=256 --set optimizer.lr=1e-3` → {"d_model": 256, "optimizer.lr": 0.001}."""
    import yaml

    from graphc.spec.loader import _Loader

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got `{pair}`", param_hint="--set")
        try:
            out[key.strip()] = yaml.load(value, Loader=_Loader) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


MAX_DIM = 2**63 - 1  # the largest number a spec may hold (graphc.spec.values)
# The most timed steps or generated tokens an option asks for: each keeps a number (a step
# time, a token id) in memory, and a million forwards already take hours.
MAX_REPEATS = 1_000_000


def parse_dims(values: tuple[str, ...], defaults: dict[str, int], known=None) -> dict[str, int]:
    """`--dim B=64 --dim T=16` on top of `defaults` → {"B": 64, "T": 16, …}. With `known` (the
    spec's symbolic dimensions), a name that is not one of them is an error, not ignored, and a
    default the spec does not have is left out (an MLP's sizes are not reported with a T)."""
    dims = {k: v for k, v in defaults.items() if known is None or k in known}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"\s*[0-9]+\s*", value):
            raise click.BadParameter(f"expected NAME=INT, got `{item}`", param_hint="--dim")
        if not 1 <= int(value) <= MAX_DIM:
            raise click.BadParameter(f"`{item}`: a dimension must be a positive integer, at most 2**63 - 1",
                                     param_hint="--dim")
        if known is not None and key not in known:
            names = sorted(known)
            close = [n for n in names if n.lower() == key.lower()] or difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            listed = ", ".join(names) if names else "none: every size is fixed"
            raise click.BadParameter(f"`{key}` is not a dimension of this spec ({hint}its dimensions: {listed})",
                                     param_hint="--dim")
        dims[key] = int(value)
    return dims


def fits_or_exit(model, sizes: dict[str, int], dtype=None, max_memory=None) -> None:
    """Exit 1 when a step on a synthetic batch of these sizes (`--dim`) would not fit in memory
    (graphc.compiler.checks.step_bytes), before anything is allocated: `--dim B=1000000000`
    is a message, not a MemoryError traceback or the OOM killer. Exit 2 for a missing dim."""
    from graphc.compiler.checks import step_bytes
    from graphc.runtime.budget import Budget
    from graphc.runtime.errors import ResourceError

    try:
        need = step_bytes(model, sizes, dtype)
    except ValueError as exc:
        fail(str(exc), 2)
    declared = " ".join(d for i in model.inputs.values() for d in i.shape if isinstance(d, str))
    shown = ", ".join(f"{k}={v}" for k, v in sizes.items() if re.search(rf"\b{re.escape(k)}\b", declared))
    try:
        Budget.detect(max_memory).check(need, f"a step at {shown}", "lower the dims (--dim)")
    except ResourceError as exc:
        fail(str(exc))


set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                          help="Override a constant, bind a dimension (B=32), or a train setting "
                               "(optimizer.lr=1e-3). Repeatable.")
format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Output format.")
dim_option = click.option("--dim", "dims", multiple=True, metavar="NAME=INT",
                          help="Size of a symbolic dimension for the synthetic batch (B=64, T=16).")


def op_names() -> list[str]:
    """Every registered op name, for shell completion (`graphc ops con<TAB>`).

    Importing the op registry loads sympy (~0.3 s, ~1 s on a busy machine) on every keystroke's
    completion, so the names are cached in GRAPHC_CACHE_DIR under a key made of the op modules'
    sizes and modification times: a stat of a few files instead of an import."""
    import hashlib
    import os
    from pathlib import Path

    ops_dir = Path(__file__).resolve().parents[1] / "ops"
    stamp = "".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns};" for f in sorted(ops_dir.glob("*.py")))
    root = Path(os.environ.get("GRAPHC_CACHE_DIR") or Path.home() / ".cache" / "graphc")
    cached = root / f"op-names-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.txt"
    try:
        return cached.read_text(encoding="utf-8").split()
    except OSError:
        pass
    from graphc.ops import OPS

    names = sorted(OPS)
    try:  # written whole, then renamed: a concurrent completion never reads half a list
        root.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("\n".join(names), encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home: complete from the registry every time
    return names


def report(analysis: Analysis, fmt: str = "text") -> None:
    """Print an analysis' diagnostics (stderr) in the chosen format."""
    if fmt == "text":
        from graphc.diagnostics import DiagnosticPrinter

        DiagnosticPrinter().print_all(analysis.diagnostics)


def analyze_or_exit(spec: str, overrides: dict, fmt: str = "text") -> Analysis:
    """Run the front end; on errors print them and exit 1 (for commands that need a valid graph)."""
    from graphc.diagnostics import summary_line, to_json
    from graphc.pipeline import analyze

    analysis = analyze(spec, overrides)
    if not analysis.ok:
        if fmt == "json":
            click.echo(to_json(analysis.diagnostics, file=spec, ok=False))
        else:
            report(analysis)
            console(stderr=True).print(f"[bold red]{spec}[/]: {summary_line(analysis.diagnostics)}")
        sys.exit(1)
    if fmt == "text":
        report(analysis)
    return analysis


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into a message and exit 1 (no traceback).

    The error classes are looked up only when something is raised, so entering this costs nothing.
    """
    try:
        yield
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        from graphc.compiler import CompileError, InputError
        from graphc.diagnostics import DiagnosticPrinter
        from graphc.runtime import NonFiniteError, TrainingError

        if isinstance(exc, CompileError):
            DiagnosticPrinter().print_all(exc.diagnostics)
        elif isinstance(exc, NonFiniteError):
            click.echo(f"error: {exc}", err=True)
            click.echo("hint: lower the learning rate or set clip_grad_norm, then --resume", err=True)
        elif isinstance(exc, TrainingError | InputError):
            click.echo(f"error: {exc}", err=True)
        else:
            raise
        sys.exit(1)
