"""Data-parallel training over MPI: `mpiexec -n N graphc train spec.yaml`.

MPI (mpi4py, with an implementation such as the `mpich` wheel: `pip install graphc[mpi]`) is
the engine; graphc only decides what each rank does:

- every rank builds the same global batch (same seed, same data order as one process) and
  computes the forward/backward of its contiguous shard of it (rows `rank·n/N … (rank+1)·n/N`):
  the shards never overlap and their union is the one-process batch;
- the shards' parameter gradients are averaged with one in-place allreduce per bucket of
  float32 buffers (`BUCKET_BYTES`), so every rank takes the same optimizer step and the
  parameters stay identical (checked with a hash at the start and at every checkpoint);
- metrics are sums (`MetricTracker`), added up across ranks before they are reported, and
  validation batches are dealt out to the ranks round-robin;
- only rank 0 writes the run directory and prints progress.

Averaging equal shards' gradients equals the one-process gradient of a loss that is a mean over
the batch's rows (cross-entropy, MSE, …), which is why `train.batch` must divide by N. A loss
averaged over a data-dependent count (cross-entropy with a `mask`) is exact when every shard
counts the same number of positions (true for the transformer's answer mask), otherwise it
weighs the shards equally. Batch normalisation uses each rank's own batch statistics (like
PyTorch's DistributedDataParallel without SyncBatchNorm), and dropout draws each rank's noise
from the rank's own seed: both are statistically, not bitwise, the one-process run.

Faults: an error on one rank is printed with the rank's number and aborts the whole job
(`MPI_Abort`), so no rank waits forever in an allreduce; a rank killed outright is detected by
the MPI launcher, which ends the others.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

BUCKET_BYTES = 4 << 20  # gradients are allreduced in float32 buckets of about this size
# What launchers put in the environment of the processes they start (MPICH's hydra, Open MPI,
# Slurm's PMI): the world size, read without importing MPI in a plain run.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def launched_size() -> int:
    """How many processes the launcher started (1 outside mpiexec)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


@dataclass
class World:
    """This process's place in the job: `rank` of `size` (size 1: a plain run, no MPI)."""

    rank: int = 0
    size: int = 1
    comm: Any = None
    _flat: list = field(default_factory=list, repr=False)  # the allreduce buffers, per bucket
    allreduce_seconds: float = 0.0  # time spent averaging gradients (communication + copies)

    @property
    def root(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def ranks_on_this_host(self) -> int:
        """How many ranks of the job share this machine (their kernels share its cores)."""
        if not self.parallel:
            return 1
        from mpi4py import MPI

        host = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            return host.Get_size()
        finally:
            host.Free()

    # -- the batch -------------------------------------------------------------------------

    def check_batch(self, batch: int) -> None:
        if batch % self.size:
            raise ConfigError(
                f"train.batch {batch} does not divide among {self.size} processes: each rank "
                f"computes an equal shard of the global batch; use a batch that is a multiple "
                f"of {self.size} (e.g. --set batch={batch - batch % self.size or self.size})"
            )

    def shard(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This rank's rows of every input (all inputs share the batch axis 0)."""
        if not self.parallel:
            return inputs
        out = {}
        for name, a in inputs.items():
            n = len(a)
            lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
            out[name] = np.ascontiguousarray(a[lo:hi])
        return out

    # -- gradients -------------------------------------------------------------------------

    def average(self, grads: dict[str, np.ndarray]) -> None:
        """Replace every gradient by its mean over the ranks, bucket by bucket: each bucket is
        copied once into a float32 buffer kept for the next step, allreduced in place there,
        and the gradients become views of it."""
        if not self.parallel:
            return
        from mpi4py import MPI

        t0 = time.perf_counter()
        names = sorted(grads)  # the same order on every rank
        for i, bucket in enumerate(_buckets(names, grads)):
            n = sum(grads[g].size for g in bucket)
            if i >= len(self._flat) or self._flat[i].size != n:
                self._flat[i:i + 1] = [np.empty(n, np.float32)]
            flat, start = self._flat[i], 0
            for g in bucket:
                flat[start: start + grads[g].size] = grads[g].ravel()
                start += grads[g].size
            self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            flat /= np.float32(self.size)
            start = 0
            for g in bucket:
                grads[g] = flat[start: start + grads[g].size].reshape(grads[g].shape)
                start += grads[g].size
        self.allreduce_seconds += time.perf_counter() - t0

    def check_identical(self, params: dict[str, np.ndarray], when: str) -> None:
        """Every rank must hold the same parameters (a cheap hash, gathered)."""
        if not self.parallel:
            return
        h = 0
        for name in sorted(params):
            h = zlib.crc32(np.ascontiguousarray(params[name]).view(np.uint8), h)
        hashes = self.comm.allgather(h)
        if len(set(hashes)) > 1:
            differ = [r for r, v in enumerate(hashes) if v != hashes[0]]
            raise RuntimeError(f"the parameters differ between ranks {when} (rank 0 vs "
                               f"{', '.join(map(str, differ))}): the ranks are out of step")

    # -- metrics ---------------------------------------------------------------------------

    def add_up(self, tracker) -> None:
        """Sum a MetricTracker's sums over the ranks (in place): its result is then global."""
        if not self.parallel:
            return
        fields = ["samples", "loss_sum", "correct", "counted", "seq_correct", "nll_sum", "nll_count"]
        parts = sorted(tracker.part_sums)
        local = np.array([float(getattr(tracker, f)) for f in fields]
                         + [tracker.part_sums[p] for p in parts], np.float64)
        total = np.empty_like(local)
        from mpi4py import MPI

        self.comm.Allreduce(local, total, op=MPI.SUM)
        for f, v in zip(fields, total, strict=False):
            setattr(tracker, f, int(v) if f == "samples" else float(v))
        tracker.part_sums = {p: float(v) for p, v in zip(parts, total[len(fields):], strict=True)}

    def mine(self, index: int) -> bool:
        """Whether item `index` of a round-robin deal (validation batches) is this rank's."""
        return index % self.size == self.rank

    def agree(self, flag: bool) -> bool:
        """True when the flag is set on any rank (a stop request, an early stop)."""
        if not self.parallel:
            return flag
        return bool(self.comm.allreduce(int(flag)))

    def abort(self, message: str, code: int = 1, details: str = "") -> None:
        """Say which rank failed (then `details`, a traceback) and end every rank of the job."""
        # one write, the rank's line first: the launcher forwards a rank's output in chunks and
        # stops forwarding when the job aborts (seen: only a traceback's first line arrived)
        sys.stderr.write(f"graphc: rank {self.rank} of {self.size}: {message}\n{details}")
        sys.stderr.flush()
        if self.parallel:
            time.sleep(0.2)  # let the launcher pass it on before MPI_Abort tears the job down
            self.comm.Abort(code)
        raise SystemExit(code)


def _buckets(names: list[str], grads: dict[str, np.ndarray]):
    bucket, size = [], 0
    for n in names:
        bucket.append(n)
        size += grads[n].size * 4
        if size >= BUCKET_BYTES:
            yield bucket
            bucket, size = [], 0
    if bucket:
        yield bucket


_WORLD: World | None = None


def world() -> World:
    """The job this process belongs to; MPI is imported only when a launcher started several."""
    global _WORLD
    if _WORLD is None:
        size = launched_size()
        if size <= 1:
            _WORLD = World()
        else:
            try:
                from mpi4py import MPI
            except ImportError:
                raise ConfigError(
                    f"started by an MPI launcher with {size} processes, but mpi4py is not "
                    "installed: pip install 'graphc[mpi]'") from None
            comm = MPI.COMM_WORLD
            _WORLD = World(comm.Get_rank(), comm.Get_size(), comm)
    return _WORLD
