"""Datasets, loaders and splits shared by every data source.

Two kinds of training stream, both reproducible from ``seed`` and restorable from a small
JSON-able ``state_dict()`` (so a resumed run sees exactly the batches it would have seen):

* :class:`ArrayLoader` walks a finite in-memory :class:`Dataset` epoch by epoch; epoch ``e`` is
  shuffled by ``default_rng([seed, e])``, so the position is just ``(epoch, index)``.
* :class:`StreamLoader` generates batch ``k`` from ``default_rng([seed, k])`` (an endless
  task); the position is just ``k``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError

Batch = dict[str, np.ndarray]


class Dataset:
    """Named arrays sharing their first (sample) dimension."""

    def __init__(
        self,
        fields: Batch,
        *,
        source: str = "data",
        origin: np.ndarray | None = None,
        locate: Callable[[int], str] | None = None,
    ) -> None:
        """``origin[i]``: sample i's index in the source (a file's i-th data row);
        ``locate(index)``: how to name that row in a message (``data.csv:14``)."""
        if not fields:
            raise DataError(f"{source}: no data fields")
        sizes = {name: len(a) if np.ndim(a) else None for name, a in fields.items()}
        if None in sizes.values() or len(set(sizes.values())) != 1:
            shown = ", ".join(f"{k}: {np.shape(v)}" for k, v in fields.items())
            raise DataError(
                f"{source}: fields must share their first (sample) dimension; got {shown}"
            )
        self.fields = {name: np.asarray(a) for name, a in fields.items()}
        self.source = source
        self.n = next(iter(sizes.values()))
        if self.n == 0:
            raise DataError(f"{source}: the data set is empty")
        self.origin = np.arange(self.n) if origin is None else np.asarray(origin)
        self.locate = locate or (lambda index: f"{source}: row {index}")

    def where(self, i: int) -> str:
        """Sample ``i`` as its source names it, for error messages (``data.csv:14``)."""
        return self.locate(int(self.origin[i]))

    def subset(self, index: np.ndarray) -> Dataset:
        """The samples at ``index``, remembering where each came from."""
        return Dataset(
            self.take(index), source=self.source, origin=self.origin[index], locate=self.locate
        )

    def __len__(self) -> int:
        return self.n

    def take(self, index: np.ndarray | slice) -> Batch:
        return {name: a[index] for name, a in self.fields.items()}

    def batches(self, batch: int):
        """All samples in order, in batches of ``batch`` (the last one may be smaller)."""
        for start in range(0, self.n, batch):
            yield self.take(slice(start, start + batch))


class ArrayLoader:
    """Shuffled mini-batches over a finite Dataset, epoch after epoch."""

    def __init__(
        self, data: Dataset, batch: int, seed: int, *, shuffle: bool = True, drop_last: bool = True
    ) -> None:
        self.data = data
        self.batch = min(batch, len(data))  # a set smaller than a batch is one batch
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        n = len(data)
        self.steps_per_epoch = n // self.batch if drop_last else -(-n // self.batch)
        self.epoch = 0
        self.index = 0  # next batch within the epoch
        self._order: np.ndarray | None = None

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            n = len(self.data)
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
            else:
                self._order = np.arange(n)
        return self._order

    def sample(self, n: int) -> Batch:
        """A few samples (``n`` at most) to size things with; the stream does not move."""
        return self.data.take(slice(0, min(n, self.batch)))

    def next_batch(self) -> Batch:
        if self.index >= self.steps_per_epoch:
            self.epoch, self.index, self._order = self.epoch + 1, 0, None
        start = self.index * self.batch
        rows = self._epoch_order()[start : start + self.batch]
        self.index += 1
        return self.data.take(rows)

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.index / self.steps_per_epoch

    def state_dict(self) -> dict:
        return {"kind": "array", "epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("kind") != "array":
            raise DataError(f"data stream position {state!r} does not fit a finite data set")
        epoch, index = state.get("epoch"), state.get("index")
        if not _count(epoch) or not _count(index):
            raise DataError(
                f"data stream position {state!r}: `epoch` and `index` must be counts >= 0"
            )
        self.epoch, self.index, self._order = int(epoch), int(index), None


class StreamLoader:
    """An endless generated task: batch ``k`` comes from ``make(default_rng([seed, k]), batch)``."""

    steps_per_epoch = None

    def __init__(
        self, make: Callable[[np.random.Generator, int], Batch], batch: int, seed: int
    ) -> None:
        self.make = make
        self.batch = batch
        self.seed = seed
        self.k = 0

    def sample(self, n: int) -> Batch:
        """A few samples (``n`` at most) to size things with; the stream does not move."""
        return self.make(np.random.default_rng([self.seed, 0]), min(n, self.batch))

    def next_batch(self) -> Batch:
        out = self.make(np.random.default_rng([self.seed, self.k]), self.batch)
        self.k += 1
        return out

    @property
    def epoch(self) -> int:
        return 0

    @property
    def epochs_done(self) -> float:
        return 0.0

    def state_dict(self) -> dict:
        return {"kind": "stream", "batches": self.k}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("kind") != "stream":
            raise DataError(f"data stream position {state!r} does not fit a generated stream")
        if not _count(state.get("batches")):
            raise DataError(f"data stream position {state!r}: `batches` must be a count >= 0")
        self.k = int(state["batches"])


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass
class DataBundle:
    """What a data source hands the trainer."""

    train: ArrayLoader | StreamLoader
    val: Dataset | None
    info: dict = field(default_factory=dict)  # name, kind, vocab, classes, ...
    decode: Callable[[np.ndarray], str] | None = None  # token row -> text, for `sample`


def split_indices(n: int, val_fraction: float, seed: int, labels: np.ndarray | None = None):
    """Reproducible (train, val) index arrays; stratified by ``labels`` when given."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"the held-out fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng([seed, 7])
    if labels is None:
        order = rng.permutation(n)
        n_val = int(round(n * val_fraction))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    train, val = [], []
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(len(rows) * val_fraction))
        val.append(rows[:n_val])
        train.append(rows[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split_dataset(
    data: Dataset, val_fraction: float, seed: int, *, stratify: str | None = None
) -> tuple[Dataset, Dataset | None]:
    labels = data.fields.get(stratify) if stratify else None
    if labels is not None and labels.ndim != 1:
        labels = None
    train_idx, val_idx = split_indices(len(data), val_fraction, seed, labels)
    if len(train_idx) == 0:
        raise DataError(f"{data.source}: val_fraction {val_fraction} leaves no training data")
    train = data.subset(train_idx)
    val = data.subset(val_idx) if len(val_idx) else None
    return train, val
