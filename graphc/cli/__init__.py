"""The `graphc` command line. Exit status: 0 ok, 1 problems found in the input, 2 usage error.

Every click command lives in this package, one module per family (`check` for check, summary,
schema and ops; `lint`; `render`; `compile` for compile, gradcheck and bench; `train` for train,
eval and sample; `doctor`), with the shared options and helpers in `common`. The library
(graphc.*, graphc.runtime) never imports click or this package; tests/cli/test_layering.py
keeps it so.

Start-up is part of the interface: this module imports only click, and a command's module is
imported only when that command runs (or `graphc --help` lists it), so `graphc --version` and
`--help` load no sympy, networkx, numpy or Numba, and `graphc check` loads no Numba. The command
modules import the front end and the back end inside their functions (tests/cli/test_startup.py).

User mistakes never produce a traceback: every command turns them into diagnostics or a
one-line message.
"""

from __future__ import annotations

import importlib

import click

# name → "module:attribute" of every command, imported only when used.
COMMANDS: dict[str, str] = {
    "check": "graphc.cli.check:check",
    "summary": "graphc.cli.check:summary",
    "schema": "graphc.cli.check:schema",
    "ops": "graphc.cli.check:ops",
    "lint": "graphc.cli.lint:lint",
    "render": "graphc.cli.render:render",
    "compile": "graphc.cli.compile:compile_command",
    "gradcheck": "graphc.cli.compile:gradcheck",
    "bench": "graphc.cli.compile:bench",
    "train": "graphc.cli.train:train",
    "eval": "graphc.cli.train:evaluate",
    "sample": "graphc.cli.train:sample",
    "doctor": "graphc.cli.doctor:doctor",
    "export": "graphc.cli.export:export",
    "predict": "graphc.cli.predict:predict",
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        """Ctrl-C in any command is `interrupted` and exit status 130, as in `graphc train`
        (click's default, `Aborted!` and 1, would read as a problem in the input)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.version_option(package_name="graphc")
def main():
    """graphc: declarative neural-network specs — check, summarize, lint, render, compile, train."""



# When the CLI was one module these helpers were `graphc.cli.<name>`; they live in
# graphc.cli.common now and stay reachable here without loading it up front.
_MOVED_TO_COMMON = ("parse_overrides", "set_option", "format_option", "report", "analyze_or_exit")


def __getattr__(name: str):
    if name in _MOVED_TO_COMMON:
        from graphc.cli import common

        return getattr(common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
