"""The end of `make bench`: every figure of bench-results.json against its target, as Markdown,
and the peak RSS of each process of the running stack.

    python -m deploy.bench.summary
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy.bench.pipeline import peak_rss_mb
from deploy.bench.results import RESULTS, merge_results
from deploy.local_stack.processes import ManagedProcess
from deploy.local_stack.supervisor import SUPERVISED
from openmonetize.settings import get_settings

# key, unit, target (None: no target; a figure to read against the others), higher is better
FIGURES = [
    ("kafka_ceiling_events_per_s", "events/s", None, True),
    ("producer_events_per_s", "events/s", 200_000, True),
    ("ingest_http_events_per_s", "events/s", 50_000, True),
    ("ingest_http_single_rps", "requests/s", None, True),
    ("pipeline_events_per_s", "events/s", 20_000, True),
    ("worker_cpu_us_per_event", "µs", 60, False),
    ("ingest_to_ledger_p50_ms", "ms", None, False),
    ("ingest_to_ledger_p99_ms", "ms", 500, False),
    ("backlog_to_ledger_s", "s", 2, False),
    ("backlog_worker_cpu_us_per_event", "µs", None, False),
    ("entitlement_p50_ms", "ms", None, False),
    ("entitlement_p99_ms", "ms", 5, False),
    ("balance_staleness_p99_ms", "ms", None, False),
    ("clickhouse_sink_rows_per_s", "rows/s", 30_000, True),
    ("postgres_sink_entries_per_s", "entries/s", 30_000, True),
    ("replay_events_per_s", "events/s", 100_000, True),
    ("report_query_ms", "ms", None, False),
    ("proxy_overhead_p50_ms", "ms", 2, False),
    ("proxy_overhead_p99_ms", "ms", 10, False),
]


def stack_peak_rss() -> dict[str, float]:
    """VmHWM of each running process of the stack, in MB (the peak since it started)."""
    settings = get_settings()
    found = {}
    for name in ("kafka", "postgres", "supervisor", *SUPERVISED):
        pid = ManagedProcess(name, settings.stack_dir / "run", settings.stack_dir / "logs").pid()
        if pid is not None and (rss := peak_rss_mb(pid)) is not None:
            found[name] = round(rss)
    return found


def verdict(value, target, higher: bool) -> str:
    if target is None or not isinstance(value, (int, float)):
        return ""
    met = value >= target if higher else value <= target
    return f"{'meets' if met else 'short of'} {'≥' if higher else '≤'} {target:,}"


def main() -> None:
    rss = stack_peak_rss()
    if rss:
        merge_results({"stack_peak_rss_mb": rss})
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    print(f"\n## bench-results.json (commit {str(data.get('git_commit'))[:12]}, {data.get('machine')})\n")
    print("| figure | value | target |")
    print("| --- | --- | --- |")
    for key, unit, target, higher in FIGURES:
        value = data.get(key)
        shown = "not measured" if value is None else f"{value:,} {unit}"
        print(f"| `{key}` | {shown} | {verdict(value, target, higher)} |")
    print("\n| process | peak RSS MB |\n| --- | --- |")
    for name, mb in sorted(rss.items()):
        print(f"| {name} | {mb:,} |")
    missing = [key for key, *_ in FIGURES if key not in data]
    if missing:
        print(f"\nnot in {Path(RESULTS).name}: {', '.join(missing)}")


if __name__ == "__main__":
    main()
