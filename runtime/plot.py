"""loss.png: the loss curve of a run (matplotlib's Agg canvas, no pyplot, no display)."""

from __future__ import annotations

import math
from pathlib import Path


def plot_losses(history: list[dict], path: Path, *, title: str = "") -> None:
    """Training loss per logged step and validation loss at each evaluation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = []
    for key, style in (("loss", "-"), ("val_loss", "o-")):
        pts = [
            (r["step"], r[key])
            for r in history
            if isinstance(r.get(key), int | float) and math.isfinite(r[key])
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=key, markersize=3)
            values += [v for _, v in pts]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=title)
    if values:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
