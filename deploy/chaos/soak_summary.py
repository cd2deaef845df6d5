"""The figures of a soak, from what it recorded: memory per process (did it stop growing?) and
the verdict."""

from __future__ import annotations

from collections.abc import Sequence


def slope_per_min(points: Sequence[Sequence[float]]) -> float | None:
    """Least-squares slope of [t_s, mb] points in MB per minute (None: fewer than 3 points)."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return round(60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread, 2)


def rss_summary(samples: Sequence[Sequence[float]], starts: Sequence[Sequence[float]]) -> dict:
    """first/max/last MB of one process's [t_s, mb] samples, how often it was started again
    (`starts`: [t_s, pid] each time its PID changed, the first included), and the slope over
    the second half of the run since its last start: near 0, its memory has levelled off;
    a kill -9 starts it afresh, so only the samples of one process count."""
    if not samples:
        return {"first": None, "max": None, "last": None, "restarts": 0, "slope_last_half_mb_per_min": None}
    half = (samples[0][0] + samples[-1][0]) / 2
    since = max([half, *(t for t, _ in starts)])
    return {"first": samples[0][1], "max": max(mb for _, mb in samples), "last": samples[-1][1],
            "restarts": max(len(starts) - 1, 0),
            "slope_last_half_mb_per_min": slope_per_min([p for p in samples if p[0] >= since])}


def passed(results: dict) -> bool:
    """Nothing lost or charged twice, and the reconciler clean every time it ran."""
    return (results["lost"] == 0 and results["double_charged"] == 0 and results["reconcile_clean"]
            and not results["client_errors"])
