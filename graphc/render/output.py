"""Writing a diagram: the output format from the file's extension, drawing with Graphviz's `dot`,
and the fallback without `dot` (the `.dot` source is still written, with how to install it).
Every failure is a `RenderError` carrying the one-line message and exit status the command
shows (`graphc.cli.render`), never a traceback."""

from __future__ import annotations

from pathlib import Path

import graphviz

FORMATS = ("svg", "png", "pdf", "dot")
PNG_DPI = 144

INSTALL_GRAPHVIZ = """\
To draw it, install Graphviz (the `dot` program; the Python package alone is not enough):
  Debian/Ubuntu:  sudo apt-get install -y graphviz
  Fedora:         sudo dnf install graphviz
  macOS:          brew install graphviz
  conda:          conda install -c conda-forge graphviz
  Windows, other: https://graphviz.org/download/
then re-run this command, or draw the saved source directly:  dot -T{fmt} {dot} -o {out}"""


class RenderError(Exception):
    """What went wrong, as one line for the user; `exit_code` is 1 (a failure) or 2 (usage)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def format_of(output: Path) -> str:
    """The output format named by `output`'s extension (`.gv` is dot); RenderError (usage) if none."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt == "gv":
        return "dot"
    if fmt not in FORMATS:
        what = f"`.{fmt}`" if fmt else "no extension"
        raise RenderError(f"cannot tell the format of `{output}` ({what}); use one of "
                          f"{', '.join('.' + f for f in FORMATS)}", 2)
    return fmt


def _write(path: Path, data: bytes | str) -> None:
    try:
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    except OSError as exc:
        raise RenderError(f"cannot write `{path}`: {exc.strerror or exc}") from None


def write_diagram(diagram: graphviz.Digraph, out: Path, fmt: str) -> None:
    """Write `diagram` to `out` as `fmt`; without `dot`, write the source beside it and raise."""
    if fmt == "dot":
        _write(out, diagram.source)
    else:
        if fmt == "png":
            # 9-point labels need ~18 px: at 96–110 dpi "kernel" reads "kemel" (measured on
            # specs/cnn.yaml); 144 dpi keeps them legible and the picture under ~2,500 px
            diagram.attr(dpi=str(PNG_DPI))
        try:
            data = diagram.pipe(format=fmt, quiet=True)
        except graphviz.ExecutableNotFound:
            dot_path = out.with_suffix(".dot")
            _write(dot_path, diagram.source)
            raise RenderError(f"Graphviz's `dot` program is not on PATH, so `{out}` was not drawn; "
                              f"wrote the diagram source to `{dot_path}` instead.\n"
                              + INSTALL_GRAPHVIZ.format(fmt=fmt, dot=dot_path, out=out)) from None
        except graphviz.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            raise RenderError(f"Graphviz `dot` failed: {detail[0] if detail else exc}") from None
        _write(out, data)
