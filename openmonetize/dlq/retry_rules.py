"""Whether a DLQ record may be re-driven, and the headers that count its retries (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openmonetize.dlq.entries import DlqEntry
from openmonetize.dlq.ids import DlqId
from schemas.topics import Topics

RETRY_OF_HEADER = "openmonetize-dlq-retry-of"
RETRY_COUNT_HEADER = "openmonetize-dlq-retry-count"
OUR_HEADERS = (RETRY_OF_HEADER, RETRY_COUNT_HEADER)


RETRY, SKIP_LIMIT, REFUSE = "retry", "skip_limit", "refuse"


@dataclass(frozen=True)
class RetryDecision:
    action: str  # RETRY, SKIP_LIMIT or REFUSE
    why: str = ""
    count: int = 0  # for RETRY: the retry count the re-produced record carries


def input_topics(registry_topics: Topics) -> tuple[str, ...]:
    """The pipeline's input topics: the only ones a DLQ record may be re-driven to."""
    return (registry_topics.usage_events.name, registry_topics.wallet_commands.name, registry_topics.wallet_debits.name)


def decide(entry: DlqEntry, inputs: Iterable[str], previous_count: int, max_retries: int) -> RetryDecision:
    """What to do with one DLQ record whose source record has been re-driven `previous_count` times."""
    inputs = tuple(inputs)
    topic = entry.get("source_topic")
    if topic not in inputs:
        return RetryDecision(
            REFUSE,
            f"source topic {topic!r} is not a pipeline input topic ({', '.join(inputs)}); "
            "re-producing there would not re-run the pipeline",
        )
    if previous_count >= max_retries:
        return RetryDecision(
            SKIP_LIMIT, f"already retried {previous_count} time(s), the limit is {max_retries} (--max-retries)"
        )
    return RetryDecision(RETRY, count=previous_count + 1)


def offset_runs(offsets: list[int], max_gap: int) -> list[tuple[int, int]]:
    """Sorted offsets as (first, last) runs in which neighbours are at most `max_gap` apart."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and offset - runs[-1][1] <= max_gap:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    return runs


def retry_count(headers: dict[str, bytes] | None) -> int:
    """The retry count a record's headers carry (0 when none or unreadable)."""
    raw = (headers or {}).get(RETRY_COUNT_HEADER)
    try:
        return max(int(raw.decode()), 0) if raw else 0
    except ValueError:
        return 0


def retry_headers(source_headers: list[tuple[str, bytes]] | None, dlq_id: DlqId, count: int) -> list[tuple[str, bytes]]:
    """The original record's headers (when it could be read), ours replaced."""
    kept = [(k, v) for k, v in (source_headers or []) if k not in OUR_HEADERS]
    return [*kept, (RETRY_OF_HEADER, str(dlq_id).encode()), (RETRY_COUNT_HEADER, str(count).encode())]
