"""Memory budget: estimate what a training step needs before allocating it, and refuse early.

A run that would not fit must end with one clear line and exit 1 — never an OOM kill, a swap
storm or a ``MemoryError`` traceback. So before the first full-size batch is drawn,
:func:`step_estimate` adds up, from a probe of a few samples:

- parameters (every ParamSpec), gradients (the backward's arrays and the step's sum: 2x the
  trainable parameters), optimizer slots (Adam 2, momentum 1, SGD 0 per trainable value);
- the buffer plan's arena for the batch's dimensions (``graphc.compiler.plan.assign``, the
  same greedy assignment the model's Arena makes, but without allocating it), plus
  :data:`UNPLANNED` times that for what the plan does not hold (kernels' own results and
  saved tensors, fresh arrays for outputs, scratch);
- the model's outputs for a full batch (measured on the probe forward, scaled);
- the data: ``accumulate`` raw micro-batches (the trainer keeps them for the step's metrics)
  and one batch of model inputs;
- a fixed :data:`MARGIN` and :data:`SLACK` for the interpreter, validation and temporaries.

The limit is the smallest of ``MemAvailable`` in ``/proc/meminfo``, the cgroup's remaining
allowance (containers), and ``--max-memory`` (:func:`parse_size`: ``2GB``, ``512M``, ``1.5GiB``;
units are powers of 1024).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, ResourceError

MARGIN = 64 * 2**20  # interpreter, metrics, checkpoint serialization of small models
SLACK = 0.10  # on top of everything
UNPLANNED = 1.0  # per byte of arena: kernels' own results and saved tensors (measured: <0.7)

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.I)


def parse_size(text: str | int | float) -> int:
    """``"2GB"`` / ``"512M"`` / ``"1.5GiB"`` / ``"1000000"`` (bytes) -> bytes; ConfigError if not."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise ConfigError(
                f"memory size {text!r} is not a size like 2GB, 512MB or 1.5GiB"
            )
        value, unit = float(m.group(1)), m.group(2).lower()
    size = value * _UNITS[unit]
    if not np.isfinite(size):
        raise ConfigError(f"memory size {text!r} is too large to be a size (it overflows)")
    if size < 2**20:
        raise ConfigError(f"memory size {text!r} must be at least 1MB")
    return int(size)


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.3e} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" = unlimited


def _cgroup_available() -> int | None:
    """What the process's cgroup still allows (v2, else v1), when it sets a limit."""
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is None:
        limit = _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        used = _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    if limit is None or limit >= 2**60:
        return None
    return max(0, limit - (used or 0))


@dataclass(frozen=True)
class Budget:
    """The memory a run may use and where that number comes from (for the message)."""

    limit: int
    source: str

    @classmethod
    def detect(cls, max_memory: int | str | None = None) -> Budget:
        candidates = []
        if max_memory is not None:
            candidates.append((parse_size(max_memory), "the --max-memory limit is {}"))
        available = _meminfo_available()
        if available is not None:
            candidates.append((available, "only {} is available (MemAvailable)"))
        cgroup = _cgroup_available()
        if cgroup is not None:
            candidates.append((cgroup, "this container may use only {} more"))
        if not candidates:
            return UNLIMITED
        limit, source = min(candidates)
        return cls(limit, source)

    def check(self, need: float, what: str, hint: str) -> None:
        """ResourceError when ``need`` bytes exceed the budget; ``what`` says for what."""
        if need > self.limit:
            raise ResourceError(
                f"{what} needs about {fmt_bytes(need)}, but "
                f"{self.source.format(fmt_bytes(self.limit))}; {hint}"
            )


UNLIMITED = Budget(2**62, "there is no limit ({})")


@dataclass
class Estimate:
    """Bytes by part; ``total`` with margin and slack."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return (sum(self.parts.values()) + MARGIN) * (1 + SLACK)

    def describe(self) -> str:
        big = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {fmt_bytes(v)}" for k, v in big if v >= 2**20) or "small parts"


def nbytes(arrays: dict) -> int:
    return sum(int(np.asarray(a).nbytes) for a in arrays.values())


def optimizer_slots(section: dict) -> int:
    """Arrays per parameter the optimizer keeps (adam/adamw: m, v; momentum: velocity)."""
    name = section.get("name")
    if name in ("adam", "adamw"):
        return 2
    if name == "momentum":
        return 1
    try:
        return 1 if float(section.get("momentum", 0) or 0) > 0 else 0
    except (TypeError, ValueError):
        return 1


def arena_bytes(model, sizes: dict[str, int]) -> int:
    """The buffer plan's arena for these dimensions, without allocating it (0 without a plan)."""
    plan = getattr(model, "buffer_plan", None)
    if plan is None:
        return 0
    from graphc.compiler.plan import assign

    try:
        shapes = plan.shapes(sizes)
    except KeyError:  # a dimension the probe did not bind: count nothing rather than guess
        return 0
    _, capacity = assign(plan, shapes)
    itemsize = np.dtype(getattr(model, "dtype", np.float32)).itemsize
    return int(sum(capacity)) * itemsize


def batch_sizes(model, fed: dict[str, np.ndarray], batch: int, n_probe: int) -> dict[str, int]:
    """The buffer plan's dimensions for a full batch, from a probe of ``n_probe`` samples:
    dimensions bound by axis 0 of an input are the batch; the others keep the probe's size."""
    plan = getattr(model, "buffer_plan", None)
    if plan is None:
        return {}
    sizes = {}
    for dim, (inp, axis) in plan.dims.items():
        n = int(fed[inp].shape[axis]) if inp in fed else 1
        sizes[dim] = batch if axis == 0 and n == n_probe else n
    return sizes


def step_estimate(
    model,
    *,
    trainable: int,
    slots: int,
    raw: dict,
    fed: dict,
    outputs: dict,
    n_probe: int,
    batch: int,
    accumulate: int,
) -> Estimate:
    """Bytes one training step needs (see the module docstring); the probe (``raw`` data,
    ``fed`` inputs, the forward's ``outputs``) holds ``n_probe`` samples."""
    itemsize = np.dtype(getattr(model, "dtype", np.float32)).itemsize
    params = sum(int(np.prod(p.shape, dtype=np.float64)) for p in model.params.values())
    scale = batch / max(1, n_probe)
    arena = arena_bytes(model, batch_sizes(model, fed, batch, n_probe))
    return Estimate(
        {
            "parameters": params * itemsize,
            "gradients": 2 * trainable * itemsize,
            "optimizer state": slots * trainable * 4,
            "activations (buffer plan)": arena,
            "kernel results and saved tensors": UNPLANNED * arena,
            "outputs": nbytes(outputs) * scale,
            "data batches": nbytes(raw) * scale * accumulate + nbytes(fed) * scale,
        }
    )
