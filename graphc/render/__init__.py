"""`graphc render`: architecture diagrams drawn by Graphviz from the analysed graph.

The picture is built from the same front end as `check` (load → expand → validate → infer), so
what is drawn is what graphc understood: every edge carries its inferred symbolic shape, every
node its op, key attributes and parameter count. Blocks become clusters; a repeated block is
folded into the cluster of its first repetition, marked ×N, so deep stacks stay readable
(`--expand` opens them). A spec with errors still renders: the offending nodes are marked and
the diagnostics printed. Without Graphviz's `dot` binary the `.dot` source is still written.

The package, in the order data flows through it:

- `layout`   — what is drawn where: clusters of block instances and the ×N folding
- `marks`    — which drawn node each diagnostic blames
- `labels`   — HTML labels: key attributes, values, folded variants
- `style`    — colours per op family, font, the legend
- `backward` — the gradient flow of the compiler's autodiff (`--backward`)
- `diagram`  — the Graphviz graph: nodes, edges, clusters, title
- `output`   — output format, writing, the fallback without `dot`

The `graphc render` command itself is `graphc.cli.render` (the library imports no click).
This module is the public API.
"""

from graphc.render.backward import GradientFlow, gradient_flow
from graphc.render.diagram import DiagramBuilder, build_diagram
from graphc.render.labels import MAX_ATTRS, key_attributes
from graphc.render.layout import Cluster, Layout, RenderOptions, plan_layout
from graphc.render.marks import blamed_nodes
from graphc.render.output import FORMATS, INSTALL_GRAPHVIZ, RenderError, format_of, write_diagram
from graphc.render.style import (
    ERROR_COLOUR,
    FAMILY_COLOURS,
    FONT,
    GRADIENT_COLOUR,
    INPUT_FILL,
    INPUT_TEXT,
    LOSS_COLOUR,
    MUTED,
    OUTPUT_COLOUR,
    REPEAT_COLOUR,
    UNKNOWN_COLOURS,
)

__all__ = [
    "ERROR_COLOUR",
    "FAMILY_COLOURS",
    "FONT",
    "FORMATS",
    "GRADIENT_COLOUR",
    "INPUT_FILL",
    "INPUT_TEXT",
    "INSTALL_GRAPHVIZ",
    "LOSS_COLOUR",
    "MAX_ATTRS",
    "MUTED",
    "OUTPUT_COLOUR",
    "REPEAT_COLOUR",
    "UNKNOWN_COLOURS",
    "Cluster",
    "DiagramBuilder",
    "GradientFlow",
    "Layout",
    "RenderError",
    "RenderOptions",
    "blamed_nodes",
    "build_diagram",
    "format_of",
    "gradient_flow",
    "key_attributes",
    "plan_layout",
    "write_diagram",
]
