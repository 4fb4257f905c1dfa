"""loss.png: the curves of a run (matplotlib's Agg canvas, no pyplot, no display).

The training loss is drawn raw (faint) and smoothed (an exponential moving average, debiased
at the start like TensorBoard's slider; of the logs on a log axis), the validation loss at each evaluation, and the
validation metric (accuracy, or the metric the best checkpoint is chosen by) on a second axis.
"""

from __future__ import annotations

import math
from pathlib import Path

SECOND_AXIS = ("val_accuracy", "val_sequence_accuracy", "val_perplexity")


def _points(history: list[dict], key: str) -> list[tuple[float, float]]:
    return [
        (r["step"], float(r[key]))
        for r in history
        if isinstance(r.get(key), int | float)
        and not isinstance(r.get(key), bool)
        and math.isfinite(r[key])
        and isinstance(r.get("step"), int | float)
    ]


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average, debiased (the first values are not pulled toward 0)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def _smoothing(n: int) -> float:
    """About n/20 points of memory: light on a short run, steady on a long one."""
    return 0.0 if n < 10 else min(0.98, 1 - 1 / max(2.0, n / 20))


def second_metric(history: list[dict], preferred: str | None = None) -> str | None:
    """The validation metric for the right-hand axis: ``preferred`` (the best checkpoint's,
    when it is not the loss), else the first of accuracy, sequence accuracy, perplexity."""
    keys = {k for r in history for k in r}
    if preferred and preferred != "val_loss" and preferred in keys:
        return preferred
    return next((k for k in SECOND_AXIS if k in keys), None)


def plot_losses(
    history: list[dict],
    path: Path,
    *,
    title: str = "",
    metric: str | None = None,
    best_step: int | None = None,
) -> None:
    """Smoothed training loss, validation loss, and ``metric`` (default: see
    :func:`second_metric`) on a second axis; a dotted line at ``best_step``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    handles = []
    train, val = _points(history, "loss"), _points(history, "val_loss")
    values = [v for _, v in train + val]
    log = bool(values) and min(values) > 0 and max(values) / min(values) > 20
    if log:  # on a log axis, average the logs: spikes would lift a plain mean off the curve
        ax.set_yscale("log")
    if train:
        steps, raw = zip(*train, strict=True)
        weight = _smoothing(len(raw))
        if weight > 0:
            ax.plot(steps, raw, "-", color="C0", alpha=0.25, linewidth=0.8)
            line = smooth([math.log(v) for v in raw] if log else list(raw), weight)
            line = [math.exp(v) for v in line] if log else line
            handles += ax.plot(steps, line, "-", color="C0", label="loss (smoothed)")
        else:
            handles += ax.plot(steps, raw, "-", color="C0", label="loss")
    if val:
        handles += ax.plot(*zip(*val, strict=True), "o-", color="C1", markersize=3,
                           label="val_loss")  # fmt: skip
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    metric = second_metric(history, metric)
    points = _points(history, metric) if metric else []
    if points:
        right = ax.twinx()
        handles += right.plot(*zip(*points, strict=True), "s--", color="C2", markersize=3,
                              label=f"{metric} (right)")  # fmt: skip
        right.set_ylabel(metric)
        if "accuracy" in metric:  # a span of at least 0.1, so noise does not look like a trend
            low, high = min(v for _, v in points), max(v for _, v in points)
            pad = max(0.0, 0.1 - (high - low)) / 2
            low, high = max(0.0, low - pad), min(1.0, high + pad)
            right.set_ylim(low - 0.005, high + 0.005)
    if best_step is not None:
        handles.append(ax.axvline(best_step, color="0.4", linestyle=":", linewidth=1,
                                  label=f"best (step {best_step})"))  # fmt: skip
    if handles:
        ax.legend(handles=handles, loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
