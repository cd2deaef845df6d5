"""HTTP ingest throughput: pre-built batches posted to /v1/events/ingest by a few connections.

Two phases of --duration seconds each: batches of --batch events over --concurrency
connections, then single-event requests over the same connections. Prints events/s,
requests/s, latency percentiles, and the CPU seconds that each watched process (and its
children: the API's uvicorn workers) spent per phase, so the cost can be split between the API,
the broker and this client.

    python -m deploy.bench.ingest_http --duration 10 --runs 3

Defaults: the API at API_URL, a fresh bench tenant (or --api-key), the stack's api and kafka
processes watched (from their PID files). Each figure is the median of --runs runs, with the
spread; `ingest_http_events_per_s` (batches) and `ingest_http_single_rps` are merged into
bench-results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson

TICKS = os.sysconf("SC_CLK_TCK")


def event(run: str, n: int, timestamp: str) -> dict:
    return {
        "event_id": f"{run}-{n}",
        "user_id": f"user-{n % 100}",
        "event_type": "TOKEN_USAGE",
        "feature_id": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1200 + n % 500,
        "output_tokens": 300 + n % 200,
        "cached_input_tokens": 200,
        "timestamp": timestamp,
        "metadata": {"request_id": f"req-{n}"},
    }


def bodies(batch: int, count: int) -> list[bytes]:
    """`count` distinct request bodies of `batch` events each (distinct event ids)."""
    timestamp = datetime.now(timezone.utc).isoformat()
    run = uuid.uuid4().hex[:8]
    return [
        orjson.dumps({"events": [event(run, i * batch + j, timestamp) for j in range(batch)]}) for i in range(count)
    ]


async def post_for(client: httpx.AsyncClient, url: str, payloads: list[bytes], deadline: float, out: dict) -> None:
    i = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        response = await client.post(url, content=payloads[i % len(payloads)])
        out["latencies"].append(time.perf_counter() - start)
        out["statuses"][response.status_code] = out["statuses"].get(response.status_code, 0) + 1
        if response.status_code == 202:
            out["events"] += response.json()["accepted"]
        i += 1


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its direct children (utime + stime)."""
    total = 0.0
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(child) for child in task.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


async def phase(name: str, args, payloads: list[bytes], watch: dict[str, int]) -> dict:
    url = f"{args.api_url.rstrip('/')}/v1/events/ingest"
    headers = {"X-OM-Api-Key": args.api_key, "Content-Type": "application/json"}
    out: dict = {"latencies": [], "statuses": {}, "events": 0}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
        await client.post(url, content=payloads[0])  # warm up: key cache, connections
        cpu_before = {label: cpu_seconds(pid) for label, pid in watch.items()}
        own_before = time.process_time()
        start = time.perf_counter()
        deadline = start + args.duration
        await asyncio.gather(*(post_for(client, url, payloads, deadline, out) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - start
    cpu = {label: cpu_seconds(pid) - cpu_before[label] for label, pid in watch.items()}
    cpu["client"] = time.process_time() - own_before
    latencies = sorted(out["latencies"])
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    result = {"events_per_s": out["events"] / elapsed, "requests_per_s": len(latencies) / elapsed}
    print(f"{name}: {result['events_per_s']:,.0f} events/s, {result['requests_per_s']:,.0f} requests/s "
          f"over {elapsed:.1f}s; statuses {out['statuses']}")
    print(f"  latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
    print("  CPU (cores busy): " + ", ".join(f"{label} {seconds / elapsed:.2f}" for label, seconds in cpu.items()))
    return result


def bench_api_key(database_url: str) -> str:
    """A fresh tenant's key, so that the benchmark's events are its own."""
    import psycopg

    from openmonetize.stores.tenants import create_customer

    with psycopg.connect(database_url) as conn:
        return create_customer(conn, f"bench-{uuid.uuid4().hex[:8]}").api_key


def stack_pids(stack_dir: Path) -> dict[str, int]:
    pids = {}
    for label in ("api", "kafka"):
        try:
            pids[label] = int((stack_dir / "run" / f"{label}.pid").read_text())
        except (FileNotFoundError, ValueError):
            pass
    return pids


def summarise(name: str, values: list[float], unit: str) -> float:
    median = statistics.median(values)
    print(f"{name}: median {median:,.0f} {unit}, spread {min(values):,.0f}-{max(values):,.0f} over {len(values)} runs")
    return median


def main(argv: list[str] | None = None) -> None:
    from deploy.bench.results import RESULTS, merge_results
    from openmonetize.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", default=settings.api_url)
    parser.add_argument("--api-key", help="default: a fresh bench tenant's key")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000, help="events per batch request")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent connections")
    parser.add_argument("--watch", action="append", default=[], metavar="LABEL=PID",
                        help="report the CPU of this process and its children (default: the stack's api and kafka)")
    parser.add_argument("--phases", default="batch,single", help="batch, single or both (comma-separated)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    args = parser.parse_args(argv)
    args.api_key = args.api_key or bench_api_key(settings.database_url)
    watch = {label: int(pid) for label, pid in (w.split("=", 1) for w in args.watch)} or stack_pids(settings.stack_dir)
    phases = args.phases.split(",")
    results = {}
    if "batch" in phases:
        runs = [asyncio.run(phase(f"batches of {args.batch}", args, bodies(args.batch, 64), watch)) for _ in range(args.runs)]
        results["ingest_http_events_per_s"] = round(
            summarise(f"batches of {args.batch}", [r["events_per_s"] for r in runs], "events/s"))
    if "single" in phases:
        runs = [asyncio.run(phase("single events", args, bodies(1, 10_000), watch)) for _ in range(args.runs)]
        results["ingest_http_single_rps"] = round(
            summarise("single events", [r["requests_per_s"] for r in runs], "requests/s"))
    if results and not args.no_save:
        merge_results(results)
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
