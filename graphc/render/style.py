"""Colours, font and the legend: how each op family (and input, output, loss, gradient, error)
looks in a diagram. The one place to change the palette; `diagram` and `backward` only refer
to these names, and the legend lists exactly the families a diagram used."""

from __future__ import annotations

from graphc.render.labels import _h

FONT = "Helvetica,Arial,sans-serif"  # resolved by fontconfig; DejaVu/Liberation stand in on Linux

# (fill, border) per op family: pastel fills keep black text readable, the border carries the hue.
FAMILY_COLOURS: dict[str, tuple[str, str]] = {
    "dense": ("#DCEBFB", "#1E6FC8"),
    "conv": ("#DDF2DE", "#2E8B3A"),
    "pool": ("#EEF5DB", "#7A9A1E"),
    "sampling": ("#E4E6F6", "#3949AB"),
    "recurrent": ("#D9F3F6", "#00838F"),
    "attention": ("#FBDDE8", "#C2185B"),
    "norm": ("#ECDDF3", "#7B1FA2"),
    "activation": ("#FFE9D0", "#E07000"),
    "arith": ("#FFF6C7", "#B08C00"),
    "shape": ("#EDF0F2", "#78909C"),
    "regularization": ("#EFE5E1", "#795548"),
    "loss": ("#FCDADA", "#C62828"),
    "position": ("#F8E1F4", "#AD1457"),
    "source": ("#E0F2F1", "#00695C"),  # param (a learned tensor of its own)
}
TIE_COLOUR = "#00695C"  # the dashed line from a shared parameter's owner to its other user
UNKNOWN_COLOURS = ("#FFFFFF", "#9E9E9E")  # an op graphc does not know (the spec has an error)
INPUT_FILL, INPUT_TEXT = "#37474F", "#FFFFFF"  # inputs: dark, so the eye finds where data enters
OUTPUT_COLOUR, LOSS_COLOUR, ERROR_COLOUR = "#2E7D32", "#C62828", "#D50000"
MUTED = "#607D8B"
GRADIENT_COLOUR = "#EF6C00"
REPEAT_COLOUR = "#D84315"  # the ×N of a folded block: the one number a reader must not miss
REPEAT_EDGE = "#90A4AE"  # the dashed loop-back of a folded block


def legend(families: set[str]) -> str:
    """A key for the colours and edge styles actually used, so the picture explains itself (an
    HTML table). Boxes are swatches; the dashed edges (a folded block's loop-back, gradient
    flow) are drawn as a dashed arrow in their colour."""
    items = []  # (fill, border, text) for a swatch, (None, colour, text) for a dashed edge
    if "input" in families:
        items.append((INPUT_FILL, INPUT_FILL, "input"))
    items += [(*FAMILY_COLOURS[f], f) for f in FAMILY_COLOURS if f in families]
    if "output" in families:
        items.append(("#FFFFFF", OUTPUT_COLOUR, "output"))
    if "loss_terminal" in families:
        items.append(("#FFFFFF", LOSS_COLOUR, "loss (minimized)"))
    if "repeat" in families:
        items.append((None, REPEAT_EDGE, "repeated ×N (loop-back)"))
    if "gradient" in families:
        items.append((None, GRADIENT_COLOUR, "gradient flow"))
    if "error" in families:
        items.append(("#FFFFFF", ERROR_COLOUR, "error"))
    per_row = 5  # a narrow spec (mlp) should not get a legend wider than its drawing
    rows = []
    for start in range(0, len(items), per_row):
        cells = "".join(_legend_cell(*item) for item in items[start:start + per_row])
        rows.append(f"<tr>{cells}</tr>")
    return ('<table border="0" cellborder="0" cellspacing="1" cellpadding="1">'
            + "".join(rows) + "</table>")


def _legend_cell(fill: str | None, border: str, text: str) -> str:
    label = f'<td align="left"><font point-size="9" color="#37474F"> {_h(text)}   </font></td>'
    if fill is None:  # an edge style: a dashed arrow
        return f'<td align="right"><font point-size="9" color="{border}"><b>- - ▷</b></font></td>{label}'
    return (f'<td width="14" height="9" fixedsize="true" bgcolor="{fill}" color="{border}" border="1"></td>'
            + label)
