"""DLQ record ids (`partition:offset`) and the times `--since` accepts (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


@dataclass(frozen=True, order=True)
class DlqId:
    """A DLQ record's place in the DLQ topic: `partition:offset`."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


_ID = re.compile(r"(\d{1,9}):(\d{1,19})")


def parse_id(text: str) -> DlqId:
    """`"3:1042"` → DlqId(3, 1042); ValueError naming the expected form otherwise."""
    match = _ID.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a DLQ record id: expected PARTITION:OFFSET, e.g. 0:42 (see `dlq list`)")
    return DlqId(int(match[1]), int(match[2]))


def parse_ids(texts: Iterable[str]) -> list[DlqId]:
    """Every id, in the order given, each once."""
    return list(dict.fromkeys(parse_id(text) for text in texts))


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from RFC 3339 / ISO 8601 (`2026-11-26T12:00:00Z`, a date alone is
    its midnight, no timezone means UTC) or a duration before now (`90s`, `15m`, `2h`, `7d`, `1w`)."""
    raw = text.strip()
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        now = now or datetime.now(timezone.utc)
        return now - timedelta(**{_UNITS[relative[2]]: float(relative[1])})
    try:
        parsed = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "zZ" and raw else raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give RFC 3339 (2026-11-26T12:00:00Z, 2026-11-26) or an age (30m, 2h, 7d)"
        ) from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
