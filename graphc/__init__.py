"""graphc: declarative YAML specs of neural networks — validated, shape-checked, compiled, trained."""

from graphc.pipeline import Analysis, analyze

__all__ = ["Analysis", "analyze", "compile"]
__version__ = "0.1.0"


def compile(spec, **kwargs):  # noqa: A001 - the public name the docs promise
    """Compile a spec into a CompiledModel (forward, backward, parameters) for the runtime."""
    from graphc.compiler import compile_spec

    return compile_spec(spec, **kwargs)
