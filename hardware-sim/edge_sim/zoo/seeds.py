"""The one rule that keeps held-out buildings held out: seeds below HELD_OUT_FROM are for tuning (training,
calibrating, choosing parameters), seeds from HELD_OUT_FROM up are only ever evaluated.

Tuning code asks for its seeds through `tuning_seeds`/`check_tuning`, which refuse a held-out seed; the
evaluation asks through `held_out_seeds`. A building's weather seed is derived from its building seed away
from every weather seed training uses (models/train.py: 1-8, and +1000 for the demand targets).
"""

from __future__ import annotations

from typing import Literal

HELD_OUT_FROM = 1000
WEATHER_SEED_BASE = 100_000  # zoo weather never coincides with training weather (seeds < 10_000)

Purpose = Literal["tuning", "held-out"]


def is_held_out(seed: int) -> bool:
    return seed >= HELD_OUT_FROM


def check_tuning(seed: int) -> int:
    """The seed, if tuning may use it; ValueError for a held-out (or negative) one."""
    if seed < 0 or is_held_out(seed):
        raise ValueError(
            f"zoo seed {seed} is held out (tuning uses 0..{HELD_OUT_FROM - 1}); never tune on it"
        )
    return seed


def check_purpose(seed: int, purpose: Purpose) -> int:
    if purpose == "tuning":
        return check_tuning(seed)
    if not is_held_out(seed):
        raise ValueError(f"zoo seed {seed} is a tuning seed; held-out seeds start at {HELD_OUT_FROM}")
    return seed


def tuning_seeds(count: int, first: int = 0) -> tuple[int, ...]:
    """`count` tuning seeds from `first`; ValueError if that would reach a held-out seed."""
    seeds = tuple(range(first, first + count))
    for seed in seeds:
        check_tuning(seed)
    return seeds


def held_out_seeds(count: int, first: int = HELD_OUT_FROM) -> tuple[int, ...]:
    seeds = tuple(range(first, first + count))
    for seed in seeds:
        check_purpose(seed, "held-out")
    return seeds


def weather_seed(seed: int) -> int:
    return WEATHER_SEED_BASE + seed
