"""Load generator: realistic mixed usage events, a rate loop, and two sinks (Kafka, HTTP).

The pieces are separate so that benchmarks and fault tests can reuse them:

- `EventGenerator(seed, tenants, users, duplicate_share, late_share).next()` is pure: the same
  seed gives the same sequence of events (timestamps are relative to `now()`, which a caller
  may pin). Events are contract-valid dicts, JSON-ready (timestamps as RFC 3339 strings,
  quantities as decimal strings), each naming its tenant in `customer_id`.
- `TokenBucket` holds a rate; `run` drives a generator into a sink for a duration.
- `KafkaSink` (one `UsageProducer` per tenant) and `HttpSink` (batches to
  `POST /v1/events/ingest` with each tenant's API key).

Mix: TOKEN_USAGE (most; OpenAI gpt-4o, gpt-4o-mini, o3-mini, Anthropic Claude Sonnet 4 and
Haiku, Google Gemini 2.5 Flash, with log-normal token counts and prompt caching on some calls),
EMBEDDING (text-embedding-3-small), IMAGE_GENERATION (dall-e-3, gpt-image-1), AUDIO (whisper-1
seconds, tts-1 characters) and CUSTOM units. Users' activity is skewed (a few heavy users);
about a third of users belong to a team. A `duplicate_share` of events re-sends a recent event
unchanged (same event_id and body: a client retry), a `late_share` is timestamped hours to days
in the past (within the 35-day window).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any, Callable, Protocol, Sequence

import orjson

FEATURES = ("chat", "summarize", "search", "code-assist", "agent", "translate", "support-bot")
REGIONS = ("us-east", "eu-west", "ap-south")
LOCALES = ("en-US", "de-DE", "ja-JP", "fr-FR", "pt-BR")

# (provider, model, weight, median input tokens, median output tokens, caches prompts)
CHAT_MODELS = (
    ("openai", "gpt-4o", 24, 900, 300, True),
    ("openai", "gpt-4o-mini", 30, 700, 250, True),
    ("openai", "o3-mini", 8, 1200, 1800, True),  # reasoning tokens count as output
    ("anthropic", "claude-sonnet-4-20250514", 16, 1500, 400, True),
    ("anthropic", "claude-3-5-haiku-20241022", 10, 600, 200, True),
    ("google", "gemini-2.5-flash", 12, 1000, 350, False),
)
EVENT_TYPES = (("TOKEN_USAGE", 80), ("EMBEDDING", 8), ("IMAGE_GENERATION", 4), ("AUDIO", 3), ("CUSTOM", 5))
IMAGE_MODELS = (
    ("dall-e-3", ("1024x1024", "1024x1792", "1792x1024"), ("standard", "hd")),
    ("gpt-image-1", ("1024x1024", "1024x1536", "1536x1024"), ("low", "medium", "high")),
)
CUSTOM_UNITS = (("requests", 1, 20), ("pages", 1, 200), ("minutes", 0.5, 90))
LATE_MIN = timedelta(hours=1)
LATE_MAX = timedelta(days=34)  # inside the 35-day window (EVENT_MAX_AGE_S) with a day to spare
MAX_TOKENS = 1_000_000


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


class EventGenerator:
    """Deterministic (per seed) stream of realistic usage events; see the module docstring."""

    def __init__(
        self,
        seed: int,
        tenants: Sequence[str] | int,
        users: int,
        duplicate_share: float = 0.0,
        late_share: float = 0.0,
        now: Callable[[], datetime] = _utcnow,
        recent: int = 1000,
    ):
        if isinstance(tenants, int):
            tenants = [f"loadgen-{i}" for i in range(1, tenants + 1)]
        if not tenants:
            raise ValueError("tenants: at least one")
        if users < 1:
            raise ValueError("users: at least one")
        for name, share in (("duplicate_share", duplicate_share), ("late_share", late_share)):
            if not 0.0 <= share < 1.0:
                raise ValueError(f"{name}: between 0 and 1, got {share}")
        self.rng = random.Random(seed)
        self.seed = seed
        self.tenants = list(tenants)
        self.users = users
        self.duplicate_share = duplicate_share
        self.late_share = late_share
        self.now = now
        self._recent: list[dict] = []
        self._recent_max = recent
        self._chat_weights = [m[2] for m in CHAT_MODELS]
        self._type_names = [t[0] for t in EVENT_TYPES]
        self._type_weights = [t[1] for t in EVENT_TYPES]
        self.generated = 0
        self.duplicates = 0
        self.late = 0

    def __iter__(self) -> EventGenerator:
        return self

    def __next__(self) -> dict:
        return self.next()

    def next(self) -> dict:
        """The next event: a fresh one, or (duplicate_share of the time) a recent one again."""
        rng = self.rng
        self.generated += 1
        if self._recent and rng.random() < self.duplicate_share:
            self.duplicates += 1
            return dict(self._recent[rng.randrange(len(self._recent))])
        event = self._fresh()
        if len(self._recent) < self._recent_max:
            self._recent.append(event)
        else:
            self._recent[rng.randrange(self._recent_max)] = event
        return dict(event)

    def batch(self, n: int) -> list[dict]:
        return [self.next() for _ in range(n)]

    # --- one fresh event ------------------------------------------------------------------

    def _fresh(self) -> dict:
        rng = self.rng
        tenant_index = min(int(len(self.tenants) * rng.random() ** 1.5), len(self.tenants) - 1)
        user_index = min(int(self.users * rng.random() ** 2), self.users - 1)  # a few heavy users
        now = self.now()
        if rng.random() < self.late_share:
            self.late += 1
            age = rng.uniform(LATE_MIN.total_seconds(), LATE_MAX.total_seconds())
        else:
            age = rng.uniform(0.0, 2.0)
        event: dict[str, Any] = {
            "event_id": f"evt_{rng.getrandbits(80):020x}",
            "customer_id": self.tenants[tenant_index],
            "user_id": f"user-{user_index}",
            "event_type": "",
            "feature_id": rng.choice(FEATURES),
            "timestamp": _iso(now - timedelta(seconds=age)),
        }
        if user_index % 3 == 0:
            event["team_id"] = f"team-{user_index % 7}"
        event_type = rng.choices(self._type_names, self._type_weights)[0]
        event["event_type"] = event_type
        getattr(self, f"_{event_type.lower()}")(event)
        if rng.random() < 0.3:
            metadata = {"region": rng.choice(REGIONS)}
            if rng.random() < 0.5:
                metadata["locale"] = rng.choice(LOCALES)
            if rng.random() < 0.2:
                metadata["request_id"] = f"req_{rng.getrandbits(48):012x}"
            event["metadata"] = metadata
        return event

    def _tokens(self, median: float, sigma: float) -> int:
        return max(1, min(MAX_TOKENS, int(self.rng.lognormvariate(math.log(median), sigma))))

    def _token_usage(self, event: dict) -> None:
        provider, model, _, median_in, median_out, caches = self.rng.choices(CHAT_MODELS, self._chat_weights)[0]
        event["provider"], event["model"] = provider, model
        event["input_tokens"] = self._tokens(median_in, 1.1)
        event["output_tokens"] = self._tokens(median_out, 0.9)
        if caches and self.rng.random() < 0.3:
            event["cached_input_tokens"] = int(event["input_tokens"] * self.rng.uniform(0.2, 0.9))

    def _embedding(self, event: dict) -> None:
        event["provider"], event["model"] = "openai", "text-embedding-3-small"
        event["input_tokens"] = self._tokens(300, 1.2)

    def _image_generation(self, event: dict) -> None:
        model, sizes, qualities = self.rng.choice(IMAGE_MODELS)
        event["provider"], event["model"] = "openai", model
        event["image_count"] = self.rng.choices((1, 2, 3, 4), (70, 15, 5, 10))[0]
        event["image_size"] = self.rng.choice(sizes)
        event["quality"] = self.rng.choice(qualities)

    def _audio(self, event: dict) -> None:
        event["provider"] = "openai"
        if self.rng.random() < 0.6:
            event["model"], event["unit_type"] = "whisper-1", "seconds"
            event["quantity"] = f"{self.rng.lognormvariate(math.log(45), 1.0):.1f}"
        else:
            event["model"], event["unit_type"] = "tts-1", "characters"
            event["quantity"] = str(self._tokens(800, 1.0))

    def _custom(self, event: dict) -> None:
        unit, low, high = self.rng.choice(CUSTOM_UNITS)
        event["unit_type"] = unit
        value = self.rng.uniform(low, high)
        event["quantity"] = str(max(1, round(value))) if unit != "minutes" else f"{value:.3f}"


# --- the rate loop --------------------------------------------------------------------------


TICK_S = 0.002  # the rate loop sends what the bucket holds at most this often


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate: must be > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate * 0.1)
        self.clock = clock
        self.tokens = 0.0
        self.last = clock()

    def take_available(self, most: int) -> int:
        """Take as many whole tokens as are available (up to `most`); 0 if none."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        n = min(most, int(self.tokens))
        self.tokens -= n
        return n

    def wait_time(self) -> float:
        """Seconds until the next whole token."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


class Events(Protocol):
    """Where the rate loop takes its events: an EventGenerator, or events made ahead of time
    (deploy/bench/pipeline_load.py), with the retries and late events among those taken."""

    @property
    def duplicates(self) -> int: ...

    @property
    def late(self) -> int: ...

    def batch(self, n: int) -> list[dict]: ...


class Sink(Protocol):
    def send(self, events: list[dict]) -> None: ...
    def poll(self) -> None: ...
    def close(self, timeout: float) -> None: ...
    def counts(self) -> dict[str, int]: ...


@dataclass
class Summary:
    sent: int = 0
    duplicates: int = 0
    late: int = 0
    elapsed_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        extra = ", ".join(f"{k} {v:,}" for k, v in self.counts.items())
        return (
            f"loadgen: sent {self.sent:,} events ({self.duplicates:,} duplicates, {self.late:,} late) "
            f"in {self.elapsed_s:.1f}s = {self.rate:,.0f} events/s; {extra}"
        )


def run(
    generator: Events,
    sink: Sink,
    rate: float,
    duration_s: float,
    *,
    events_out: IO[bytes] | None = None,
    progress: Callable[[Summary], None] | None = None,
    progress_every_s: float = 0.5,
    close_timeout_s: float = 30.0,
    max_batch: int = 1000,
) -> Summary:
    """Send `rate` events per second for `duration_s` seconds; close the sink; the summary."""
    bucket = TokenBucket(rate)
    summary = Summary()
    start = time.monotonic()
    deadline = start + duration_s
    target_total = int(rate * duration_s)
    next_progress = start + progress_every_s
    while summary.sent < target_total:
        now = time.monotonic()
        if now >= deadline + 1.0:  # the sink cannot keep the rate: stop at the deadline
            break
        n = bucket.take_available(min(max_batch, target_total - summary.sent))
        if n == 0:
            sink.poll()
            # at least TICK_S: at 10,000 events/s a send per token was ~25 µs of CPU per event
            time.sleep(min(max(bucket.wait_time(), TICK_S), 0.05))
        else:
            events = generator.batch(n)
            if events_out is not None:
                events_out.write(b"".join(orjson.dumps(e) + b"\n" for e in events))
            sink.send(events)
            summary.sent += n
        if progress is not None and now >= next_progress:
            _fill(summary, generator, sink, start)
            progress(summary)
            next_progress = now + progress_every_s
    sink.close(close_timeout_s)
    _fill(summary, generator, sink, start)
    return summary


def _fill(summary: Summary, generator: Events, sink: Sink, start: float) -> None:
    summary.duplicates = generator.duplicates
    summary.late = generator.late
    summary.elapsed_s = time.monotonic() - start
    summary.counts = sink.counts()


# --- sinks ----------------------------------------------------------------------------------


class LoadgenError(RuntimeError):
    """The load cannot be sent (the route is missing, a key is refused); the message says why."""


def _by_tenant(events: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        groups[event["customer_id"]].append(event)
    return groups


class KafkaSink:
    """One UsageProducer per tenant, straight to usage.events."""

    def __init__(self, customer_ids: Sequence[str], **producer_kwargs: Any):
        from producers.usage_producer import UsageProducer

        self.producers = {cid: UsageProducer(cid, **producer_kwargs) for cid in customer_ids}
        self.rejected = 0
        self.first_rejections: list[str] = []

    def _invalid(self, index: int, error: Exception) -> None:
        self.rejected += 1
        if len(self.first_rejections) < 5:
            self.first_rejections.append(str(error))

    def send(self, events: list[dict]) -> None:
        for customer_id, group in _by_tenant(events).items():
            self.producers[customer_id].produce_many(group, on_invalid=self._invalid)

    def poll(self) -> None:
        for producer in self.producers.values():
            producer.poll(0)

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for producer in self.producers.values():
            producer.close(max(0.1, deadline - time.monotonic()))

    def counts(self) -> dict[str, int]:
        ps = self.producers.values()
        return {
            "delivered": sum(p.delivered for p in ps),
            "failed": sum(p.failed for p in ps),
            "rejected": self.rejected,
            "in_flight": sum(p.in_flight for p in ps),
        }


class HttpSink:
    """Batches to `POST {api_url}/v1/events/ingest`, with each tenant's API key."""

    ROUTE = "/v1/events/ingest"

    def __init__(self, api_url: str, api_keys: dict[str, str], batch_size: int = 500, timeout_s: float = 30.0):
        import httpx

        self.url = api_url.rstrip("/") + self.ROUTE
        self.api_keys = api_keys
        self.batch_size = batch_size
        self.client = httpx.Client(timeout=timeout_s)
        self.accepted = 0
        self.rejected = 0
        self.failed = 0
        self.first_rejections: list[str] = []

    def send(self, events: list[dict]) -> None:
        for customer_id, group in _by_tenant(events).items():
            for i in range(0, len(group), self.batch_size):
                self._post(customer_id, group[i : i + self.batch_size])

    def _post(self, customer_id: str, events: list[dict]) -> None:
        import httpx

        try:
            response = self.client.post(
                self.url,
                content=orjson.dumps({"events": events}),
                headers={"X-OM-Api-Key": self.api_keys[customer_id], "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise LoadgenError(f"cannot reach the ingest API at {self.url}: {exc}") from exc
        if response.status_code == 404:
            raise LoadgenError(
                f"{self.url} answered 404: this API has no ingest route yet (restart the API on a "
                "version that serves POST /v1/events/ingest, or use --via kafka)"
            )
        if response.status_code == 401:
            raise LoadgenError(f"{self.url} refused the API key of {customer_id} (401)")
        try:
            body = response.json()
        except ValueError:
            body = {}
        accepted = int(body.get("accepted", 0)) if isinstance(body, dict) else 0
        rejected = body.get("rejected", []) if isinstance(body, dict) else []
        self.accepted += accepted
        self.rejected += len(rejected)
        if response.status_code >= 500 or (response.status_code >= 400 and not rejected):
            self.failed += len(events) - accepted - len(rejected)
            if len(self.first_rejections) < 5:
                self.first_rejections.append(f"HTTP {response.status_code}: {response.text[:200]}")
        for item in rejected[: max(0, 5 - len(self.first_rejections))]:
            self.first_rejections.append(f"{item.get('field')}: {item.get('reason')}")

    def poll(self) -> None:
        pass

    def close(self, timeout: float) -> None:
        self.client.close()

    def counts(self) -> dict[str, int]:
        return {"delivered": self.accepted, "failed": self.failed, "rejected": self.rejected}


# --- tenants --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    name: str
    customer_id: str
    api_key: str | None  # minted only when the HTTP sink needs one


def ensure_tenants(settings, count: int, with_keys: bool) -> list[Tenant]:
    """Tenants `loadgen-1..count`: reused when they exist, created otherwise, and published to
    the workers (a tenant they do not know has its events parked). With `with_keys` each gets a
    usable API key (a new one is minted for an existing tenant: only hashes are stored, so an
    old key cannot be read back)."""
    import psycopg

    from openmonetize.catalog_admin import publish_tenant
    from openmonetize.stores import tenants as store

    out = []
    with psycopg.connect(settings.database_url) as conn:
        for i in range(1, count + 1):
            name = f"loadgen-{i}"
            customer_id = store.find_customer_by_name(conn, name)
            if customer_id is None:
                created = store.create_customer(conn, name)
                out.append(Tenant(name, created.customer_id, created.api_key))
            else:
                key = store.create_api_key(conn, customer_id, "loadgen").api_key if with_keys else None
                out.append(Tenant(name, customer_id, key))
    publish_tenant(settings, *(t.customer_id for t in out))
    return out


def print_progress(summary: Summary, stream: IO[str] = sys.stderr) -> None:
    counts = summary.counts
    stream.write(
        f"\rsent {summary.sent:,}  rate {summary.rate:,.0f}/s  delivered {counts.get('delivered', 0):,}  "
        f"failed {counts.get('failed', 0):,}  rejected {counts.get('rejected', 0):,}   "
    )
    stream.flush()
