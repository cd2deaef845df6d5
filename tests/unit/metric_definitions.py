"""Every Prometheus metric the project's processes define, read from the source: for the
naming-scheme test and the Grafana dashboard test. The reader lives with the docs generator
(deploy/docs_gen/metric_source.py), which lists the same metrics in docs/reference/metrics.md."""

from __future__ import annotations

from functools import lru_cache

from deploy.docs_gen.metric_source import MetricDefinition, definitions

__all__ = ["MetricDefinition", "definitions", "exported_series"]


@lru_cache(maxsize=1)
def exported_series() -> frozenset[str]:
    return frozenset(series for d in definitions() for series in d.series())
