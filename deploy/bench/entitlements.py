"""Entitlement checks over HTTP: latency under load, and how stale the balance they read is.

    python -m deploy.bench.entitlements --duration 10 --runs 3

Against the running stack (API_URL), a fresh bench tenant gets a burn table and --users funded
users. Latency: --concurrency client processes, each with one keep-alive connection (and an
API key of its own, so the per-key rate limit is not what is measured), send
`POST /v1/entitlements/check` with a usage estimate (rated by the burn table in force) back to
back for --duration seconds; per request, the time from sending to the whole answer read.
Staleness: for each of --staleness-samples funded users, one usage event is ingested and the
same user is checked every 5 ms until `available` shows the debit: the time from sending the
event to that check's answer (the event crosses the whole pipeline: usage.events, the usage
and wallet agents, wallet.balances, the API's view).

Each figure is the median of --runs runs, with the spread. Keys merged into
bench-results.json: entitlement_p50_ms, entitlement_p99_ms, entitlement_checks_per_s,
balance_staleness_p50_ms, balance_staleness_p99_ms (every run's values under
entitlement_detail).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import orjson

from deploy.bench.ingest_http import cpu_seconds, stack_pids

RULES = {"gpt-4o": {"input_tokens": "2.5", "output_tokens": "10", "per_unit": "1000"}}
ESTIMATE = {"event_type": "TOKEN_USAGE", "provider": "openai", "model": "gpt-4o", "input_tokens": 1200,
            "max_output_tokens": 500}  # 8 credits
POLL_S = 0.005
SET_UP_CONNECTIONS = 8


def quantiles_ms(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


def check_body(customer_id: str, user_id: str) -> bytes:
    return orjson.dumps({"customer_id": customer_id, "user_id": user_id, "feature_id": "chat", "estimate": ESTIMATE})


def client(api_url: str, api_key: str, bodies: list[bytes], start_at: float, duration: float) -> dict:
    """One client process: one keep-alive connection, requests back to back until the deadline."""
    parts = urlsplit(api_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
    headers = {"X-OM-Api-Key": api_key, "Content-Type": "application/json"}
    for body in bodies[:20]:  # warm up: the key cache, the connection
        conn.request("POST", "/v1/entitlements/check", body, headers)
        conn.getresponse().read()
    while time.time() < start_at:
        time.sleep(0.001)
    latencies, statuses, allowed = [], {}, 0
    deadline = time.perf_counter() + duration
    i = 0
    while time.perf_counter() < deadline:
        body = bodies[i % len(bodies)]
        start = time.perf_counter()
        conn.request("POST", "/v1/entitlements/check", body, headers)
        response = conn.getresponse()
        data = response.read()
        latencies.append(time.perf_counter() - start)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        allowed += response.status == 200 and b'"allowed":true' in data
        i += 1
    conn.close()
    return {"latencies": latencies, "statuses": statuses, "allowed": allowed}


def latency_run(args, customer_id: str, keys: list[str], watch: dict[str, int]) -> dict:
    bodies = [check_body(customer_id, f"user-{n}") for n in range(args.users)]
    cpu_before = {label: cpu_seconds(pid) for label, pid in watch.items()}
    start_at = time.time() + 2.0  # every client connected and warmed up
    with ProcessPoolExecutor(args.concurrency) as pool:
        futures = [pool.submit(client, args.api_url, key, bodies[i::args.concurrency] or bodies, start_at, args.duration)
                   for i, key in enumerate(keys)]
        outs = [f.result() for f in futures]
    cpu = {label: (cpu_seconds(pid) - cpu_before[label]) for label, pid in watch.items()}
    latencies = [x for out in outs for x in out["latencies"]]
    statuses: dict[int, int] = {}
    for out in outs:
        for status, count in out["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    p50, p99 = quantiles_ms(latencies)
    rate = len(latencies) / args.duration
    allowed = sum(out["allowed"] for out in outs)
    print(f"checks: {rate:,.0f}/s over {args.concurrency} connections, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"max {max(latencies) * 1000:.1f} ms; statuses {statuses}, allowed {allowed}")
    print("  CPU seconds during the run (incl. warm-up): " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    if set(statuses) != {200}:
        raise SystemExit(f"some checks were not answered 200: {statuses}")
    return {"p50_ms": p50, "p99_ms": p99, "checks_per_s": rate}


def staleness_run(api: httpx.Client, customer_id: str, users: list[str]) -> dict:
    stale = []
    for user in users:
        body = check_body(customer_id, user)
        before = Decimal(api.post("/v1/entitlements/check", content=body).json()["available"])
        event = {"event_id": f"bench-{uuid.uuid4().hex}", "user_id": user, "event_type": "TOKEN_USAGE",
                 "feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000,
                 "output_tokens": 100, "timestamp": datetime.now(timezone.utc).isoformat()}
        start = time.perf_counter()
        sent = api.post("/v1/events/ingest", json={"events": [event]})
        if sent.status_code != 202:
            raise SystemExit(f"ingest answered {sent.status_code}: {sent.text}")
        deadline = start + 30
        while Decimal(api.post("/v1/entitlements/check", content=body).json()["available"]) == before:
            if time.perf_counter() > deadline:
                raise SystemExit(f"the debit of {user} was not seen within 30 s")
            time.sleep(POLL_S)
        stale.append(time.perf_counter() - start)
    p50, p99 = quantiles_ms(stale)
    print(f"balance staleness over {len(stale)} debits: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(stale) * 1000:.0f} ms")
    return {"p50_ms": p50, "p99_ms": p99}


def set_up(args, database_url: str) -> tuple[str, list[str], httpx.Client]:
    """A fresh tenant with a burn table, funded users and one API key per client."""
    import psycopg

    from openmonetize.stores.tenants import create_customer

    with psycopg.connect(database_url) as conn:
        tenant = create_customer(conn, f"bench-ent-{uuid.uuid4().hex[:8]}")
    api = httpx.Client(base_url=args.api_url, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30)
    effective = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    answer = api.post("/v1/burn-tables", json={"name": "bench", "rules": RULES, "effective_from": effective})
    answer.raise_for_status()
    stale_users = [f"stale-{n}" for n in range(args.staleness_samples * args.runs)]
    users = [f"user-{n}" for n in range(args.users)] + stale_users

    def buy(user: str) -> None:
        bought = api.post("/v1/credits/purchase",
                          json={"customer_id": tenant.customer_id, "user_id": user, "amount": "1000000"})
        if bought.status_code not in (200, 202):
            raise SystemExit(f"funding {user} answered {bought.status_code}: {bought.text}")

    deadline = time.monotonic() + 300

    def applied(user: str) -> None:  # at the wallet agent's pace, which a busy stack may slow down
        while Decimal(api.get(f"/v1/customers/{tenant.customer_id}/credits", params={"user_id": user})
                      .json().get("balance", "0")) < Decimal("1000000"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the purchase for {user} was not applied within 300 s")
            time.sleep(0.05)  # poll interval

    with ThreadPoolExecutor(SET_UP_CONNECTIONS) as pool:  # 120 purchases and balance polls, not one by one
        list(pool.map(buy, users))
        list(pool.map(applied, users))
    keys = [api.post("/v1/api-keys", json={"name": f"bench-client-{i}"}).json()["api_key"] for i in range(args.concurrency)]
    return tenant.customer_id, keys, api


def summarise(name: str, values: list[float], unit: str, digits: int) -> float:
    median = statistics.median(values)
    print(f"{name}: median {median:,.{digits}f} {unit}, spread {min(values):,.{digits}f}-{max(values):,.{digits}f} "
          f"over {len(values)} runs")
    return round(median, digits)


def main(argv: list[str] | None = None) -> None:
    from deploy.bench.results import RESULTS, merge_results
    from openmonetize.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", default=settings.api_url)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="client processes, one keep-alive connection each")
    parser.add_argument("--users", type=int, default=100, help="funded users the checks spread over")
    parser.add_argument("--staleness-samples", type=int, default=20, help="debits timed per run")
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    args = parser.parse_args(argv)
    customer_id, keys, api = set_up(args, settings.database_url)
    watch = {k: v for k, v in stack_pids(settings.stack_dir).items() if k == "api"}
    latency, stale = [], []
    try:
        for run in range(args.runs):
            print(f"run {run + 1} of {args.runs}")
            latency.append(latency_run(args, customer_id, keys, watch))
            users = [f"stale-{n}" for n in range(run * args.staleness_samples, (run + 1) * args.staleness_samples)]
            stale.append(staleness_run(api, customer_id, users))
    finally:
        api.close()
    results = {
        "entitlement_p50_ms": summarise("check p50", [r["p50_ms"] for r in latency], "ms", 2),
        "entitlement_p99_ms": summarise("check p99", [r["p99_ms"] for r in latency], "ms", 2),
        "entitlement_checks_per_s": summarise("checks", [r["checks_per_s"] for r in latency], "/s", 0),
        "balance_staleness_p50_ms": summarise("staleness p50", [r["p50_ms"] for r in stale], "ms", 0),
        "balance_staleness_p99_ms": summarise("staleness p99", [r["p99_ms"] for r in stale], "ms", 0),
        "entitlement_detail": {"concurrency": args.concurrency, "duration_s": args.duration, "latency": latency,
                               "staleness": stale, "staleness_samples": args.staleness_samples},
    }
    if not args.no_save:
        merge_results(results)
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
