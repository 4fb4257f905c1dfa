"""Tasks generated on the fly from a seed.

=================  ==========================================================================
task               fields yielded (N = samples)
=================  ==========================================================================
reverse_digits     tokens [N,T] int64, targets [N,T] int64, loss_mask [N,T] float32
sort_digits        (same) with T = 2*length; the sequence is ``digits, SEP, answer``
majority           x [N,length,1] float32 (or [N,length] int64 with ``format: tokens``),
                   y [N] int64 = 1 when more than half of the 0/1 inputs are 1
brackets           x [N,length,1] float32 (1 = "(", 0 = ")"; or int64 [N,length] with
                   ``format: tokens``), y [N] int64 = 1 when the brackets are balanced. Half
                   the samples are balanced; the others have equal counts of "(" and ")", so
                   counting alone cannot tell them apart
two_spirals        x [N,2] float32, y [N] int64 (two interleaved spirals; alias `spirals`)
xor                x [N,2] float32, y [N] int64 (four noisy corners, label = XOR of signs)
gaussian_ring      real [N,2] float32: a mixture of ``modes`` Gaussians (std ``std``) evenly
                   spaced on a circle of radius ``radius`` (a GAN's target distribution; see
                   :func:`ring_quality` to score generated samples)
=================  ==========================================================================

Digit tokens are 0..9 and the separator is 10 (vocabulary 11). ``targets`` is ``tokens``
shifted by one (next-token prediction); ``loss_mask`` is 1 exactly on the positions whose
target is an answer digit, so only the answer counts in the loss and the metrics.

The validation set is fixed by ``seed`` (the data seed, default 0, independent of the training
seed) and no training sample ever equals a validation sample (checked on the sample's defining
field). Without ``train_size`` the training data is an endless stream; with it, a finite set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..budget import UNLIMITED, Budget
from ..config import as_number, check_keys, did_you_mean
from ..errors import ConfigError, DataError
from .base import ArrayLoader, Batch, DataBundle, Dataset, StreamLoader

SEP = 10


@dataclass(frozen=True)
class Task:
    generate: Callable[..., Batch]  # (rng, n, **options) -> Batch
    options: dict  # option name -> default
    key: str | None  # field whose rows identify a sample (for the disjoint split)
    space: Callable[..., float] | None  # number of distinct samples, given options
    train_size: int | None  # default: None = endless stream
    val_size: int
    info: Callable[..., dict]
    decode: Callable[[np.ndarray], str] | None = None


def _digits(rng: np.random.Generator, n: int, *, length: int, answer: str) -> Batch:
    digits = rng.integers(0, 10, size=(n, length))
    solved = digits[:, ::-1] if answer == "reverse" else np.sort(digits, axis=1)
    seq = np.concatenate([digits, np.full((n, 1), SEP), solved], axis=1).astype(np.int64)
    mask = np.zeros((n, 2 * length), np.float32)
    mask[:, length:] = 1.0  # targets[:, length:] are the answer digits
    return {"tokens": seq[:, :-1].copy(), "targets": seq[:, 1:].copy(), "loss_mask": mask}


def decode_digits(row: np.ndarray) -> str:
    return "".join("|" if t == SEP else str(int(t)) for t in row)


def _majority(rng: np.random.Generator, n: int, *, length: int, format: str) -> Batch:
    bits = rng.integers(0, 2, size=(n, length))
    y = (2 * bits.sum(axis=1) > length).astype(np.int64)
    x = bits.astype(np.int64) if format == "tokens" else bits[..., None].astype(np.float32)
    return {"x": x, "y": y}


def _balanced(opens: np.ndarray) -> np.ndarray:
    """Rows of 0/1 (1 = "(") that are balanced bracket sequences."""
    depth = np.cumsum(np.where(opens == 1, 1, -1), axis=1)
    return (depth.min(axis=1) >= 0) & (depth[:, -1] == 0)


def _brackets(rng: np.random.Generator, n: int, *, length: int, format: str) -> Batch:
    """Half balanced sequences (random Dyck words), half shuffles with the same counts."""
    pos = rng.random(n) < 0.5
    opens = np.zeros((n, length), np.int64)
    depth = np.zeros(n, np.int64)
    coins = rng.random((n, length)) < 0.5
    for i in range(length):  # a random walk that stays >= 0 and ends at 0
        left = length - i
        step = np.where(depth == 0, True, np.where(depth >= left, False, coins[:, i]))
        opens[:, i] = step
        depth += np.where(step, 1, -1)
    half = np.tile(np.repeat([1, 0], length // 2), (n, 1))
    shuffled = rng.permuted(half, axis=1)  # equal counts: only matching tells them apart
    opens = np.where(pos[:, None], opens, shuffled)
    y = _balanced(opens).astype(np.int64)
    x = opens if format == "tokens" else opens[..., None].astype(np.float32)
    return {"x": x, "y": y}


def _spirals(rng: np.random.Generator, n: int, *, turns: float, noise: float) -> Batch:
    y = rng.integers(0, 2, size=n)
    t = np.sqrt(rng.uniform(0.0, 1.0, size=n))  # uniform density along the arm
    angle = t * turns * 2 * np.pi + np.pi * y
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    x += noise * rng.standard_normal(x.shape)
    return {"x": x.astype(np.float32), "y": y.astype(np.int64)}


def _xor(rng: np.random.Generator, n: int, *, noise: float) -> Batch:
    corner = rng.integers(0, 2, size=(n, 2))
    x = (2 * corner - 1) + noise * rng.standard_normal((n, 2))
    return {"x": x.astype(np.float32), "y": (corner[:, 0] ^ corner[:, 1]).astype(np.int64)}


def ring_centers(modes: int = 8, radius: float = 2.0) -> np.ndarray:
    """The ``modes`` centres of the gaussian_ring task, [modes, 2] (the first on the +x axis)."""
    angle = 2 * np.pi * np.arange(modes) / modes
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _ring(rng: np.random.Generator, n: int, *, modes: int, radius: float, std: float) -> Batch:
    mode = rng.integers(0, modes, size=n)
    x = ring_centers(modes, radius)[mode] + std * rng.standard_normal((n, 2))
    return {"real": x.astype(np.float32)}


def ring_quality(
    samples: np.ndarray, *, modes: int = 8, radius: float = 2.0, std: float = 0.05,
    sigmas: float = 4.0, min_share: float = 0.01,
) -> dict:
    """How well 2-D ``samples`` [N, 2] match the gaussian_ring distribution.

    ``high_quality``: the share of samples within ``sigmas`` standard deviations of their
    nearest mode; ``modes_covered``: how many modes hold at least ``min_share`` of the
    high-quality samples (as in the unrolled-GAN paper's mixture experiments); ``counts``: the
    high-quality samples per mode.
    """
    samples = np.asarray(samples, np.float64).reshape(len(samples), -1)
    d = np.linalg.norm(samples[:, None, :2] - ring_centers(modes, radius)[None], axis=-1)
    near, dist = d.argmin(axis=1), d.min(axis=1)
    good = dist <= sigmas * std
    counts = np.bincount(near[good], minlength=modes)
    return {
        "high_quality": float(good.mean()) if len(samples) else 0.0,
        "modes_covered": int((counts >= max(1, min_share * len(samples))).sum()),
        "counts": counts.tolist(),
    }


def _seq_info(name: str) -> Callable[..., dict]:
    return lambda length, **_: {
        "kind": "sequence",
        "task": name,
        "vocab": 11,
        "sep": SEP,
        "length": length,
        "seq_len": 2 * length,
    }


def _classes(name: str) -> Callable[..., dict]:
    return lambda length=None, **_: {
        "kind": "classification",
        "task": name,
        "classes": 2,
        **({"length": length} if length else {}),
    }


TASKS: dict[str, Task] = {
    "reverse_digits": Task(
        generate=lambda rng, n, length: _digits(rng, n, length=length, answer="reverse"),
        options={"length": 8},
        key="tokens",
        space=lambda length: 10.0**length,
        train_size=None,
        val_size=512,
        info=_seq_info("reverse_digits"),
        decode=decode_digits,
    ),
    "sort_digits": Task(
        generate=lambda rng, n, length: _digits(rng, n, length=length, answer="sort"),
        options={"length": 8},
        key="tokens",
        space=lambda length: 10.0**length,
        train_size=None,
        val_size=512,
        info=_seq_info("sort_digits"),
        decode=decode_digits,
    ),
    "majority": Task(
        generate=_majority,
        options={"length": 15, "format": "features"},
        key="x",
        space=lambda length, **_: 2.0**length,
        train_size=None,
        val_size=512,
        info=_classes("majority"),
    ),
    "brackets": Task(
        generate=_brackets,
        options={"length": 20, "format": "features"},
        key="x",
        # half the samples are balanced, and only Catalan(length / 2) balanced ones exist
        space=lambda length, **_: 2.0 * math.comb(length, length // 2) / (length // 2 + 1),
        train_size=None,
        val_size=512,
        info=_classes("brackets"),
    ),
    "two_spirals": Task(
        generate=_spirals,
        options={"turns": 1.5, "noise": 0.05},
        key=None,
        space=None,
        train_size=1000,
        val_size=400,
        info=_classes("two_spirals"),
    ),
    "xor": Task(
        generate=_xor,
        options={"noise": 0.2},
        key=None,
        space=None,
        train_size=1000,
        val_size=400,
        info=_classes("xor"),
    ),
    "gaussian_ring": Task(
        generate=_ring,
        options={"modes": 8, "radius": 2.0, "std": 0.05},
        key=None,
        space=None,
        train_size=None,
        val_size=512,
        info=lambda modes, radius, std: {
            "kind": "generative",
            "task": "gaussian_ring",
            "modes": modes,
            "radius": radius,
            "std": std,
        },
    ),
}
ALIASES = {"spirals": "two_spirals", "ring": "gaussian_ring"}


def _check_options(name: str, options: dict) -> dict:
    if "length" in options:
        options["length"] = as_number(
            options["length"], f"train.data.length ({name})", kind=int, minimum=1
        )
    for key in ("turns", "noise", "radius", "std"):
        if key in options:
            options[key] = as_number(options[key], f"train.data.{key} ({name})", minimum=0)
    if "modes" in options:
        options["modes"] = as_number(
            options["modes"], f"train.data.modes ({name})", kind=int, minimum=1
        )
    if "length" in options and name == "brackets" and options["length"] % 2:
        raise ConfigError(f"train.data.length for brackets must be even, got {options['length']}")
    if options.get("format", "features") not in ("features", "tokens"):
        raise ConfigError(
            f"train.data.format for {name} must be `features` or `tokens`, "
            f"got {options['format']!r}"
        )
    return options


class _Disjoint:
    """Regenerates any sample that equals a validation sample."""

    def __init__(self, task: Task, options: dict, val: Batch) -> None:
        self.task, self.options = task, options
        self.banned = {row.tobytes() for row in val[task.key]} if task.key else set()

    def __call__(self, rng: np.random.Generator, n: int) -> Batch:
        out = self.task.generate(rng, n, **self.options)
        if not self.banned:
            return out
        for _ in range(1000):
            clash = [i for i, row in enumerate(out[self.task.key]) if row.tobytes() in self.banned]
            if not clash:
                return out
            fresh = self.task.generate(rng, len(clash), **self.options)
            for name in out:
                out[name][clash] = fresh[name]
        raise DataError(
            "could not draw training samples outside the validation set; "
            "make the task larger or val_size smaller"
        )


def _unique_rows(task: Task, options: dict, rng: np.random.Generator, n: int) -> Batch:
    """``n`` distinct samples (by the task's key field)."""
    out = task.generate(rng, n, **options)
    if task.key is None:
        return out
    for _ in range(1000):
        _, first = np.unique(
            out[task.key].reshape(len(out[task.key]), -1), axis=0, return_index=True
        )
        keep = np.sort(first)
        if len(keep) == n:
            return out
        more = task.generate(rng, n - len(keep), **options)
        out = {k: np.concatenate([out[k][keep], more[k]]) for k in out}
    raise DataError("could not draw enough distinct validation samples")


def build_task(spec: dict, *, batch: int, seed: int, budget: Budget = UNLIMITED) -> DataBundle:
    name = ALIASES.get(spec["task"], spec["task"])
    if name not in TASKS:
        raise ConfigError(
            f"unknown task `{name}`{did_you_mean(name, TASKS)}; available: {', '.join(TASKS)}"
        )
    task = TASKS[name]
    common = ["task", "train_size", "val_size", "seed"]
    check_keys(spec, [*common, *task.options], f"train.data ({name})")
    options = _check_options(
        name, {**task.options, **{k: v for k, v in spec.items() if k not in common}}
    )
    val_size = as_number(
        spec.get("val_size", task.val_size), "train.data.val_size", kind=int, minimum=1
    )
    train_size = spec.get("train_size", task.train_size)
    if train_size is not None:
        train_size = as_number(train_size, "train.data.train_size", kind=int, minimum=1)
    data_seed = as_number(spec.get("seed", 0), "train.data.seed", kind=int, minimum=0)
    if task.space is not None:
        space = task.space(**options)
        if val_size + (train_size or 0) > 0.5 * space:
            raise ConfigError(
                f"task {name} has only {space:.0f} distinct samples: too few for "
                f"val_size {val_size}"
                + (f" + train_size {train_size}" if train_size else "")
                + " (keep them under half of it)"
            )
    # the sets are generated whole: size them from two samples before drawing them
    per_sample = sum(a.nbytes for a in task.generate(np.random.default_rng(0), 2, **options).values())
    per_sample /= 2
    budget.check(
        per_sample * (4 * val_size + 3 * (train_size or 0)),  # np.unique / disjointness copies
        f"task {name} with val_size {val_size}"
        + (f" and train_size {train_size}" if train_size else ""),
        "make train_size/val_size smaller (no train_size: an endless stream)",
    )
    val = _unique_rows(task, options, np.random.default_rng([data_seed, 1]), val_size)
    draw = _Disjoint(task, options, val)
    if train_size is None:
        train = StreamLoader(draw, batch, seed)
    else:
        fixed = draw(np.random.default_rng([data_seed, 2]), train_size)
        train = ArrayLoader(Dataset(fixed, source=f"task {name}"), batch, seed)
    info = {**task.info(**options), "train_size": train_size, "val_size": val_size}
    return DataBundle(train, Dataset(val, source=f"task {name}"), info, task.decode)
