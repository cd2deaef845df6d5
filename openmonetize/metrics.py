"""Prometheus metrics shared by every process.

Each long-running process exposes the default registry on its own HTTP endpoint: the API at
`/metrics`, the ClickHouse front at `/metrics`, the stream worker on its web port, each sink on
its metrics port. Metrics are defined next to the code that updates them; this module holds what
every process reports and what more than one stage observes.

Naming: `openmonetize_<component>_<what>`; counters end in `_total`, durations are histograms
in `_seconds`; Kafka positions are labelled `topic` and `partition`, refusals `reason` (or
`field` at the HTTP edge, where the reason is free text).
"""

from __future__ import annotations

import os

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, Info, generate_latest, multiprocess

BUILD_INFO = Info("openmonetize_build", "Version and role of this process")
STAGE_LATENCY = Histogram(
    "openmonetize_stage_latency_seconds",
    "Per batch, from the Kafka timestamp of its oldest input record until the stage's outputs were "
    "acknowledged (sinks: stored and committed): usage (usage.events to wallet.debits), wallet (to "
    "ledger.entries), sink-ledger, sink-clickhouse",
    ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)


def describe_process(service: str) -> None:
    from importlib.metadata import version

    BUILD_INFO.info({"version": version("openmonetize"), "service": service})


def observe_stage_latency(stage: str, oldest_timestamp_s: float | None) -> None:
    """Record how long the oldest record of a batch took to get through `stage`; None (no
    timestamp, or an empty batch) records nothing."""
    if oldest_timestamp_s is not None:
        STAGE_LATENCY.labels(stage).observe(max(time.time() - oldest_timestamp_s, 0.0))


def render() -> tuple[bytes, str]:
    """The exposition text and its content type.

    A process whose workers share PROMETHEUS_MULTIPROC_DIR (the API with API_WORKERS > 1) sums
    the workers' files, plus this process's build info (Info metrics are not multiprocess)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(BUILD_INFO)
    return generate_latest(registry), CONTENT_TYPE_LATEST
