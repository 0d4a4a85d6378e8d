"""The learning-rate schedule every trainer here uses: linear warmup, then cosine decay."""

from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(total: int, warmup: int, floor: float = 0.0) -> Callable[[int], float]:
    """``step -> factor`` for ``torch.optim.lr_scheduler.LambdaLR``: linear warmup to 1 over
    ``warmup`` steps, then cosine down to ``floor`` at ``total`` (and ``floor`` after it)."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f
