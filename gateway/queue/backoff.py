"""How long a failed job waits before its next attempt.

Exponential backoff with full jitter (AWS architecture blog): many jobs that failed together (GitHub
or the relay was down) come back spread out instead of as a thundering herd. A delay the other side
asked for (``Retry-After``) wins over this; the worker decides which applies.
"""
from __future__ import annotations

import random
from typing import Callable


def backoff_seconds(attempt: int, *, base: float = 2.0, cap: float = 3600.0,
                    rng: Callable[[], float] = random.random) -> float:
    """Up to ``base * 2**(attempt-1)`` seconds, at most ``cap``, at least half a second."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.5, ceiling * rng())
