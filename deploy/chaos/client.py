"""The chaos runs' client: sends generated events to `POST /v1/events/ingest` at a steady rate,
as a careful client would, and records what the API acknowledged.

A batch that fails (connection error, timeout, 5xx, 429) is sent again, with the same event ids,
until the API acknowledges it: a 202 means every accepted event is in Kafka (acks=all), so the
pipeline owes each acknowledged event exactly one charge. A 4xx other than 429 is a bug in the
run and stops it. (The generator's retries may land in the same batch: the API accepts the first
and refuses the copy with a 207, which is fine.)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import orjson

from api.intake import DUPLICATE

ROUTE = "/v1/events/ingest"


class RunError(RuntimeError):
    """The run cannot go on (the API refused a batch for a reason retrying will not fix)."""


class AckingClient:
    def __init__(self, api_url: str, api_keys: dict[str, str], events: Iterator[dict], rate: float,
                 batch_size: int = 50, threads: int = 2):
        self.url = api_url.rstrip("/") + ROUTE
        self.api_keys = api_keys
        self.events = events
        self.interval_s = batch_size * threads / rate  # each thread sends a batch this often
        self.batch_size, self.threads = batch_size, threads
        self.acknowledged: set[tuple[str, str]] = set()  # (customer, event id)
        self.sent = 0  # events in acknowledged batches, re-sent duplicates included
        self.retries: Counter[str] = Counter()  # why a batch was sent again
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"chaos-client-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self, timeout_s: float = 120.0) -> None:
        """No new batches; a batch being retried is retried until acknowledged or `timeout_s`."""
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout_s)
        if self.error is not None:
            raise self.error

    def acknowledged_count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def _next_batch(self) -> list[dict]:
        with self._lock:
            return [next(self.events) for _ in range(self.batch_size)]

    def _run(self) -> None:
        client = httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0))
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                by_customer: dict[str, list[dict]] = {}
                for event in self._next_batch():
                    by_customer.setdefault(event["customer_id"], []).append(event)
                for batch in by_customer.values():
                    self._deliver(client, batch)
                next_at += self.interval_s
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)  # the client's pace
                else:
                    next_at = time.monotonic()  # behind after an outage: no burst to catch up
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc
        finally:
            client.close()

    def _deliver(self, client: httpx.Client, batch: list[dict]) -> None:
        customer = batch[0]["customer_id"]
        body = orjson.dumps({"events": batch})
        headers = {"X-OM-Api-Key": self.api_keys[customer], "Content-Type": "application/json"}
        backoff, deadline = 0.2, time.monotonic() + 300
        while True:
            try:
                response = client.post(self.url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status, response = type(exc).__name__, None
            if status in (202, 207):
                answer = response.json()
                refused = [r for r in answer.get("rejected", []) if r.get("reason") != DUPLICATE]
                if refused:  # a retry in the same batch is refused as a duplicate; anything else is a bug
                    raise RunError(f"the API rejected generated events: {refused[:3]}")
                with self._lock:
                    self.acknowledged.update((e["customer_id"], e["event_id"]) for e in batch)
                    self.sent += len(batch)
                return
            if isinstance(status, int) and 400 <= status < 500 and status != 429:
                raise RunError(f"POST {ROUTE} answered {status}: {response.text[:300]}")
            self.retries[str(status)] += 1
            if time.monotonic() > deadline:
                raise RunError(f"a batch was not acknowledged within 300 s (last: {status})")
            time.sleep(backoff)  # a client's backoff between attempts
            backoff = min(backoff * 2, 2.0)
