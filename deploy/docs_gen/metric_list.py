"""docs/reference/metrics.md from the metric definitions in the source (metric_source.py)."""

from __future__ import annotations

from deploy.docs_gen.markdown import banner, code, table
from deploy.docs_gen.metric_source import definitions

INTRO = """\
Every long-running process serves `/metrics` (Prometheus text format): the API on its port
(`API_WORKERS` processes summed), each worker on `WORKER_WEB_PORT`, the sinks on
`LEDGER_SINK_METRICS_PORT` and `CLICKHOUSE_SINK_METRICS_PORT`, the proxy on `PROXY_PORT`. Names
follow one scheme, checked by tests/unit/openmonetize/test_metric_names.py: the `openmonetize_`
prefix, `_total` counters, `_seconds` durations. `deploy/grafana/openmonetize.json` charts them.
A metric defined in more than one module lists each.

"""


def render() -> str:
    by_name: dict[str, list] = {}
    for definition in definitions():
        by_name.setdefault(definition.name, []).append(definition)
    rows = []
    for name in sorted(by_name):
        found = by_name[name]
        first = found[0]
        series = sorted(first.series())
        where = ", ".join(sorted({code(d.where.split(":")[0]) for d in found}))
        labels = ", ".join(code(label) for label in first.labels) or "–"
        rows.append((code(series[0] if len(series) == 1 else name), first.kind.lower(), labels,
                     next((d.help for d in found if d.help), ""), where))
    return (banner("Metrics", "the `Counter`/`Gauge`/`Histogram`/`Info` definitions in the source") + INTRO
            + table(("metric", "type", "labels", "help", "defined in"), rows))
