"""What a soak will do, decided before it starts: its length and its faults, the same for the
same seed (so a failing run can be repeated)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds in `90`, `90s`, `4m`, `1.5h`."""
    match = _DURATION.match(text.lower())
    if not match or float(match[1]) <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 90s, 1h)")
    return float(match[1]) * _UNIT_S[match[2]]


def fault_schedule(seed: int, duration_s: float, every_s: float, names: Sequence[str]) -> list[tuple[float, str]]:
    """(at_s, fault) every `every_s` from `every_s` on, before the end: the names dealt from a
    deck shuffled by `seed` and shuffled again when used up, so every kind comes round as
    often as the others, in a random order."""
    if every_s <= 0 or not names:
        return []
    rng, deck, plan = random.Random(seed), [], []
    at = every_s
    while at < duration_s:
        if not deck:
            deck = list(names)
            rng.shuffle(deck)
        plan.append((at, deck.pop()))
        at += every_s
    return plan
