"""Errors the training runtime raises on bad input.

Every one of them carries a message meant for the user; the CLI prints ``str(err)`` and exits
non-zero without a traceback. Catch :class:`TrainingError` to handle them all.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: a user-facing failure of the training runtime."""


class ConfigError(TrainingError):
    """The spec's ``train:`` section (or an override) is invalid."""


class DataError(TrainingError):
    """A data source is missing, corrupt, or does not fit the model's inputs."""


class CheckpointError(TrainingError):
    """A checkpoint directory is missing, corrupt, or belongs to a different model."""


class ResourceError(TrainingError):
    """The run would need more memory (or data) than the machine or ``--max-memory`` allows."""


class RunDirError(TrainingError):
    """The run directory is in use by another run, or cannot be claimed."""


class NonFiniteError(TrainingError):
    """Training produced a NaN/Inf loss or gradient, or a loss that diverged (``.step`` is the
    step, ``.node`` the first non-finite node when known); the last good checkpoint was kept."""

    def __init__(self, message: str, *, step: int, node: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.node = node
