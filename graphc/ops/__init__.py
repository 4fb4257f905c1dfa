"""Every op graphc knows, one module per family; importing this package registers them all."""

from graphc.ops import (  # noqa: F401  (imported for their registrations)
    attention,
    conv,
    dense,
    elementwise,
    loss,
    norm,
    recurrent,
    sampling,
    shape,
)
from graphc.ops.registry import OPS, Attr, Kernel, OpDef, ParamDef, Port, ShapeError, register, tagged

__all__ = ["OPS", "Attr", "Kernel", "OpDef", "ParamDef", "Port", "ShapeError", "register", "tagged"]
