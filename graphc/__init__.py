"""graphc: declarative YAML specs of neural networks — validated, shape-checked, compiled, trained.

The public names load their modules on first use (PEP 562), so `import graphc` — and with it the
`graphc` command's start-up — costs nothing until the front end (sympy, networkx) or the back
end (Numba) is actually needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphc.pipeline import Analysis, analyze

__all__ = ["Analysis", "analyze", "compile"]
__version__ = "0.1.0"

_FROM_PIPELINE = ("Analysis", "analyze")


def compile(spec, **kwargs):  # noqa: A001 - the public name the docs promise
    """Compile a spec into a CompiledModel (forward, backward, parameters) for the runtime."""
    from graphc.compiler import compile_spec

    return compile_spec(spec, **kwargs)


def __getattr__(name: str):
    if name in _FROM_PIPELINE:
        from graphc import pipeline

        value = getattr(pipeline, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_PIPELINE})
