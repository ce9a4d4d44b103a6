"""Exponential moving average of a model's weights, used for validation and the saved model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    r"""θ̄ ← d θ̄ + (1 − d) θ after every step, with d = min(decay, (1 + k) / (10 + k)).

    The warm-up (k = number of updates so far) keeps the average from being dominated by the
    random initial weights in the first steps. ``decay=0`` makes θ̄ = θ (no averaging).

    >>> model = nn.Linear(1, 1, bias=False)
    >>> _ = nn.init.constant_(model.weight, 1.0)
    >>> ema = EMA(model, decay=0.5)
    >>> _ = nn.init.constant_(model.weight, 2.0)
    >>> ema.update(model)  # k = 0: d = min(0.5, 1/10) = 0.1 → 0.1·1 + 0.9·2
    >>> with ema.applied(model):
    ...     round(model.weight.item(), 6)
    1.9
    >>> model.weight.item()
    2.0
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, p in model.named_parameters():
            self.shadow[name].mul_(d).add_(p.detach(), alpha=1 - d)
        self.num_updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside the block, ``model`` holds the averaged weights; its own come back after."""
        saved = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(saved[name])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model``."""
        for name, p in model.named_parameters():
            p.copy_(self.shadow[name])

    def state_tensors(self) -> dict[str, Tensor]:
        """The averaged weights by parameter name (for the checkpoint)."""
        return dict(self.shadow)

    def load(self, tensors: dict[str, Tensor], num_updates: int) -> None:
        """Restore from :meth:`state_tensors` and the update count."""
        missing = sorted(set(self.shadow) - set(tensors))
        if missing:
            raise ValueError(f"EMA: checkpoint lacks averaged weights {missing[:5]}")
        for name in self.shadow:
            self.shadow[name] = tensors[name].to(self.shadow[name])
        self.num_updates = int(num_updates)
