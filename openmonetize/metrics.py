"""Prometheus metrics shared by every process.

Each long-running process exposes the default registry on its own HTTP endpoint: the API at
`/metrics`, the ClickHouse front at `/metrics`, the stream worker on its web port. Metrics are
defined next to the code that updates them; this module holds what every process reports.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Info, generate_latest

BUILD_INFO = Info("openmonetize_build", "Version and role of this process")


def describe_process(service: str) -> None:
    from importlib.metadata import version

    BUILD_INFO.info({"version": version("openmonetize"), "service": service})


def render() -> tuple[bytes, str]:
    """The exposition text of the default registry and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
