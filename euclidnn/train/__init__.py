"""Training and evaluation: one readable loop (``fit``), its config, loss, metrics, checkpoints.

>>> from euclidnn.train import TrainConfig
>>> TrainConfig().optimizer.name
'adam'
"""

from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import EMA
from .loop import FitResult, TrainingDiverged, TrainingInterrupted, epoch_order, fit
from .metrics import Comparison, compare, metrics
from .stats import DataStatistics, data_statistics, fit_shifts

__all__ = [
    "EMA",
    "Comparison",
    "DataStatistics",
    "FitResult",
    "TrainConfig",
    "TrainState",
    "TrainingDiverged",
    "TrainingInterrupted",
    "compare",
    "data_statistics",
    "epoch_order",
    "fit",
    "fit_shifts",
    "load_checkpoint",
    "metrics",
    "save_checkpoint",
]
