"""graphc's training runtime: trains a ``CompiledModel`` (see runtime/README.md).

Public API::

    train(model, out_dir=..., overrides=..., resume=..., progress=..., base_dir=..., max_steps=...)
    evaluate(model, params, data=None, split="val") -> metrics
    predict(model, params, data=None, n=8) -> rows;  sample_text(model, params, data=None, ...)
    load_params(run_or_checkpoint_dir, model=None) -> params
    load_checkpoint(path) / save_checkpoint(path, params, optimizer_state, state)
    build_data(train_data, batch=..., seed=...) -> DataBundle
    TrainingError > ConfigError, DataError, CheckpointError, NonFiniteError
"""

from .checkpoint import Checkpoint, load_checkpoint, load_params, save_checkpoint
from .config import TrainConfig, apply_overrides, parse_override
from .data import DataBundle, Dataset, build_data
from .errors import CheckpointError, ConfigError, DataError, NonFiniteError, TrainingError
from .evaluate import evaluate
from .metrics import MetricTracker
from .optim import make_optimizer
from .predict import greedy_answers, predict, sample_text
from .progress import make_progress
from .schedule import make_schedule
from .setup import model_fingerprint
from .trainer import train

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DataBundle",
    "DataError",
    "Dataset",
    "MetricTracker",
    "NonFiniteError",
    "TrainConfig",
    "TrainingError",
    "apply_overrides",
    "build_data",
    "evaluate",
    "greedy_answers",
    "load_checkpoint",
    "load_params",
    "make_optimizer",
    "make_progress",
    "make_schedule",
    "model_fingerprint",
    "parse_override",
    "predict",
    "sample_text",
    "save_checkpoint",
    "train",
]
