"""Prometheus metrics shared by every process.

Each long-running process exposes the default registry on its own HTTP endpoint: the API at
`/metrics`, the ClickHouse front at `/metrics`, the stream worker on its web port. Metrics are
defined next to the code that updates them; this module holds what every process reports.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Info, generate_latest, multiprocess

BUILD_INFO = Info("openmonetize_build", "Version and role of this process")


def describe_process(service: str) -> None:
    from importlib.metadata import version

    BUILD_INFO.info({"version": version("openmonetize"), "service": service})


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
