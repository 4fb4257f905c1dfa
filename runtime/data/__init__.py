"""Data sources for training: generated tasks, the shipped digits set, and user files.

``build_data(train.data, batch=..., seed=...)`` returns a :class:`DataBundle` (a restorable
training stream, a fixed validation set, and info). Which source is chosen by one key:
``task:`` (see :mod:`.tasks`), ``dataset: digits`` (see :mod:`.digits`) or ``file:`` (see
:mod:`.files`). Every source also accepts ``map: {model_input: data_field}`` and
``generate: {model_input: normal | uniform | zeros | ones}`` (inputs drawn per batch; see
:mod:`.feed`).
"""

from __future__ import annotations

from pathlib import Path

from ..budget import UNLIMITED, Budget
from ..config import did_you_mean
from ..errors import ConfigError
from .base import ArrayLoader, Batch, DataBundle, Dataset, StreamLoader, split_dataset
from .digits import build_digits, load_digits_arrays
from .feed import GENERATORS, Feeder
from .files import Paths, build_file
from .tasks import TASKS, build_task

DATASETS = {"digits": build_digits}

__all__ = [
    "ArrayLoader",
    "Batch",
    "DataBundle",
    "Dataset",
    "Feeder",
    "Paths",
    "GENERATORS",
    "StreamLoader",
    "TASKS",
    "DATASETS",
    "build_data",
    "load_digits_arrays",
    "split_dataset",
]


def build_data(
    spec: dict,
    *,
    batch: int,
    seed: int,
    base_dir: str | Path | None = None,
    cli_keys: frozenset[str] = frozenset(),
    budget: Budget = UNLIMITED,
) -> DataBundle:
    """The data source described by ``train.data``; ``map:`` ends up in ``bundle.info``.

    File paths resolve inside ``base_dir`` (the spec's directory) unless their key
    (``file``, ``val_file``) is in ``cli_keys`` (given on the command line); see
    :class:`.files.Paths`. Generated tasks and files larger than ``budget`` are refused
    before they are generated or read."""
    if not isinstance(spec, dict):
        raise ConfigError(f"train.data must be a mapping, got {spec!r}")
    spec = dict(spec)
    mapping = spec.pop("map", None) or {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"train.data.map must be a mapping of input: field, got {mapping!r}")
    generate = spec.pop("generate", None) or {}
    if not isinstance(generate, dict):
        raise ConfigError(
            "train.data.generate must be a mapping of input: kind "
            f"({' | '.join(GENERATORS)}), got {generate!r}"
        )
    for name, kind in generate.items():
        if kind not in GENERATORS:
            raise ConfigError(
                f"train.data.generate.{name}: unknown kind {kind!r}{did_you_mean(kind, GENERATORS)}; "
                f"available: {', '.join(GENERATORS)}"
            )
    kinds = [k for k in ("task", "dataset", "file") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(
            "train.data needs exactly one of `task:`, `dataset:` or `file:` "
            f"(got {', '.join(kinds) or 'none'}); tasks: {', '.join(TASKS)}; "
            f"datasets: {', '.join(DATASETS)}"
        )
    if kinds[0] == "task":
        bundle = build_task(spec, batch=batch, seed=seed, budget=budget)
    elif kinds[0] == "dataset":
        name = spec["dataset"]
        if name not in DATASETS:
            raise ConfigError(
                f"unknown dataset `{name}`{did_you_mean(name, DATASETS)}; "
                f"available: {', '.join(DATASETS)}"
            )
        bundle = DATASETS[name](spec, batch=batch, seed=seed)
    else:
        paths = Paths(Path(base_dir) if base_dir else None, frozenset(cli_keys))
        bundle = build_file(spec, batch=batch, seed=seed, paths=paths, budget=budget)
    bundle.info["map"] = mapping
    bundle.info["generate"] = generate
    return bundle
