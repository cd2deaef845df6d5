"""HTTP ingest throughput: pre-built batches posted to /v1/events/ingest by a few connections.

Two phases of --duration seconds each: batches of --batch events over --concurrency
connections, then single-event requests over the same connections. Prints events/s,
requests/s, latency percentiles, and the CPU seconds that each watched process (and its
children: the API's uvicorn workers) spent per phase, so the cost can be split between the API,
the broker and this client.

    python -m deploy.bench.ingest_http --api-url http://127.0.0.1:18080 --api-key om_... --duration 10 \\
        --watch api=$(cat .stack/run/api.pid) --watch kafka=$(cat .stack/run/kafka.pid)
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


async def phase(name: str, args, payloads: list[bytes], watch: dict[str, int]) -> None:
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
    print(f"{name}: {out['events'] / elapsed:,.0f} events/s, {len(latencies) / elapsed:,.0f} requests/s "
          f"over {elapsed:.1f}s; statuses {out['statuses']}")
    print(f"  latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
    print("  CPU (cores busy): " + ", ".join(f"{label} {seconds / elapsed:.2f}" for label, seconds in cpu.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch request")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent connections")
    parser.add_argument("--watch", action="append", default=[], metavar="LABEL=PID",
                        help="report the CPU of this process and its children (repeatable)")
    parser.add_argument("--phases", default="batch,single", help="batch, single or both (comma-separated)")
    args = parser.parse_args(argv)
    watch = {label: int(pid) for label, pid in (w.split("=", 1) for w in args.watch)}
    phases = args.phases.split(",")
    if "batch" in phases:
        asyncio.run(phase(f"batches of {args.batch}", args, bodies(args.batch, 64), watch))
    if "single" in phases:
        asyncio.run(phase("single events", args, bodies(1, 10_000), watch))


if __name__ == "__main__":
    main()
