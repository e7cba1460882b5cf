"""Learning-rate schedules that torch does not ship as one class."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def cosine_with_warmup(
    optimizer: Optimizer, warmup_epochs: int, max_epochs: int, min_lr_ratio: float = 0.01
) -> LambdaLR:
    """Linear warm-up from lr/(warmup+1) over `warmup_epochs`.

    Then cosine decay to `min_lr_ratio` x lr.
    """
    if warmup_epochs < 0 or max_epochs < 1:
        raise ValueError(
            f"scheduler needs warmup_epochs >= 0 and max_epochs >= 1, got "
            f"warmup_epochs={warmup_epochs}, max_epochs={max_epochs}"
        )

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        span = max(1, max_epochs - warmup_epochs)
        progress = min(1.0, (epoch - warmup_epochs) / span)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
