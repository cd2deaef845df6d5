"""What the AI proxy adds to an LLM call: the same chat completion sent straight to a fake
OpenAI upstream with a fixed latency and through `openmonetize proxy` (entitlement check,
forwarding, usage event to Kafka), in the same run.

    python -m deploy.bench.proxy --duration 10 --runs 3

Needs the running stack (`make up`): the proxy is started on a free port with the stack's
settings and every provider pointed at the fake (`python -m tests.fake_upstreams`, a process of
its own), for a fresh bench tenant whose user has a burn table and credits, so every proxied
call is checked and billed. Each run has two phases:

- latency: --concurrency connections (default 1) for --duration seconds, direct then proxied;
  overhead = proxied percentile - direct percentile (p50, p99);
- throughput: --rps-concurrency connections (default 64) through the proxy: calls per second.

Figures are the median of --runs runs, with the spread; `proxy_overhead_p50_ms`,
`proxy_overhead_p99_ms` and `proxy_rps` are merged into bench-results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import httpx
import orjson

BODY = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 64,
                     "messages": [{"role": "system", "content": "You are terse."},
                                  {"role": "user", "content": "Say hello to the benchmark in five words."}]})


async def calls(session: aiohttp.ClientSession, url: str, headers: dict, deadline: float, out: dict) -> None:
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        async with session.post(url, data=BODY, headers=headers) as response:
            await response.read()
            out["latencies"].append(time.perf_counter() - start)
            out["statuses"][response.status] = out["statuses"].get(response.status, 0) + 1
            added = response.headers.get("x-openmonetize-overhead-ms")
            if added is not None:
                out["header_ms"].append(float(added))


async def phase(base: str, headers: dict, concurrency: int, duration: float) -> dict:
    out: dict = {"latencies": [], "statuses": {}, "header_ms": []}
    url = f"{base}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm_up = {"latencies": [], "statuses": {}, "header_ms": []}
        await calls(session, url, headers, time.perf_counter() + min(1.0, duration / 5), warm_up)
        start = time.perf_counter()
        await asyncio.gather(*(calls(session, url, headers, start + duration, out) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    failed = {status: n for status, n in out["statuses"].items() if status != 200}
    if failed:
        raise SystemExit(f"error: calls to {url} failed: {failed}")
    q = statistics.quantiles(out["latencies"], n=100)
    result = {"p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "rps": len(out["latencies"]) / elapsed}
    if out["header_ms"]:
        h = statistics.quantiles(out["header_ms"], n=100)
        result["header_p50_ms"], result["header_p99_ms"] = h[49], h[98]
    return result


def one_run(args, direct: str, proxied: str, headers: dict) -> dict:
    straight = asyncio.run(phase(direct, {"Authorization": "Bearer sk-bench"}, args.concurrency, args.duration))
    through = asyncio.run(phase(proxied, headers, args.concurrency, args.duration))
    loaded = asyncio.run(phase(proxied, headers, args.rps_concurrency, args.duration))
    run = {"overhead_p50_ms": through["p50_ms"] - straight["p50_ms"], "overhead_p99_ms": through["p99_ms"] - straight["p99_ms"],
           "rps": loaded["rps"], "direct": straight, "proxied": through, "loaded": loaded}
    print(f"direct   p50 {straight['p50_ms']:.2f} ms  p99 {straight['p99_ms']:.2f} ms  ({straight['rps']:.0f} calls/s)")
    print(f"proxied  p50 {through['p50_ms']:.2f} ms  p99 {through['p99_ms']:.2f} ms  ({through['rps']:.0f} calls/s); "
          f"x-openmonetize-overhead-ms p50 {through['header_p50_ms']:.2f} p99 {through['header_p99_ms']:.2f}")
    print(f"added    p50 {run['overhead_p50_ms']:.2f} ms  p99 {run['overhead_p99_ms']:.2f} ms; "
          f"{loaded['rps']:.0f} calls/s through the proxy at {args.rps_concurrency} connections")
    return run


def bench_user(settings) -> dict:
    """A fresh tenant with a burn table and a user holding a billion credits: its X-OM headers."""
    import psycopg

    from openmonetize.stores.tenants import create_customer

    with psycopg.connect(settings.database_url) as conn:
        tenant = create_customer(conn, f"bench-proxy-{uuid.uuid4().hex[:8]}")
    key = {"X-OM-Api-Key": tenant.api_key}
    rules = {"default": {"input_tokens": "1", "output_tokens": "4", "per_unit": 1000}}
    since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    made = httpx.post(f"{settings.api_url}/v1/burn-tables", headers=key, timeout=30,
                      json={"name": "bench", "rules": rules, "effective_from": since})
    made.raise_for_status()
    bought = httpx.post(f"{settings.api_url}/v1/credits/purchase", params={"wait": "true"}, headers=key, timeout=30,
                        json={"customer_id": tenant.customer_id, "user_id": "bench-user", "amount": "1000000000"})
    bought.raise_for_status()
    return {**key, "X-OM-User-Id": "bench-user", "X-OM-Feature-Id": "bench", "Authorization": "Bearer sk-bench",
            "Content-Type": "application/json"}


def wait_for(url: str, what: str, ok=lambda r: r.status_code == 200, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: {what} did not answer at {url} within {timeout_s:.0f}s")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def summarise(name: str, values: list[float], unit: str) -> float:
    median = statistics.median(values)
    print(f"{name}: median {median:.2f} {unit}, spread {min(values):.2f}-{max(values):.2f} over {len(values)} runs")
    return median


def main(argv: list[str] | None = None) -> None:
    from deploy.bench.results import RESULTS, merge_results
    from openmonetize.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the fake upstream's fixed latency")
    parser.add_argument("--concurrency", type=int, default=1, help="connections of the latency phase (1: calls one after another)")
    parser.add_argument("--rps-concurrency", type=int, default=64, help="connections of the throughput phase")
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    args = parser.parse_args(argv)

    headers = bench_user(settings)
    upstream_port, proxy_port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "tests.fake_upstreams", "--port", str(upstream_port),
                                 "--latency-ms", str(args.latency_ms)], stdout=subprocess.DEVNULL)
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "openmonetize", "proxy", "--port", str(proxy_port), "--openai-base-url", upstream_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "LOG_LEVEL": "WARNING"})
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    try:
        wait_for(f"{proxy_url}/ready", "the proxy")
        wait_for(f"{upstream_url}/v1/models", "the fake upstream", ok=lambda r: r.status_code in (404, 405))
        runs = [one_run(args, upstream_url, proxy_url, headers) for _ in range(args.runs)]
    finally:
        proxy.terminate()
        upstream.terminate()
        proxy.wait(30)
        upstream.wait(30)
    results = {
        "proxy_overhead_p50_ms": round(summarise("added p50", [r["overhead_p50_ms"] for r in runs], "ms"), 2),
        "proxy_overhead_p99_ms": round(summarise("added p99", [r["overhead_p99_ms"] for r in runs], "ms"), 2),
        "proxy_rps": round(summarise("calls/s through the proxy", [r["rps"] for r in runs], "calls/s")),
        "proxy_detail": {
            "upstream_latency_ms": args.latency_ms, "concurrency": args.concurrency, "rps_concurrency": args.rps_concurrency,
            "duration_s": args.duration, "runs": [{k: r[k] for k in ("overhead_p50_ms", "overhead_p99_ms", "rps")} for r in runs],
            "direct_p50_ms": [r["direct"]["p50_ms"] for r in runs], "proxied_p50_ms": [r["proxied"]["p50_ms"] for r in runs],
            "header_p50_ms": [r["proxied"]["header_p50_ms"] for r in runs],
        },
    }
    if not args.no_save:
        merge_results(results)
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
