"""Every op graphc knows, one module per family; importing this package registers them all."""

from graphc.ops import (  # noqa: F401  (imported for their registrations)
    activations,
    attention,
    conv,
    dense,
    elementwise,
    loss,
    norm,
    position,
    recurrent,
    sampling,
    shape,
    source,
)
from graphc.ops.registry import OPS, Attr, Kernel, OpDef, ParamDef, Port, ShapeError, register, tagged

__all__ = ["OPS", "Attr", "Kernel", "OpDef", "ParamDef", "Port", "ShapeError", "register", "tagged"]
