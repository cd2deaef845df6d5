"""librdkafka settings shared by every long-lived Kafka client of ours (producers and consumers).

librdkafka backs off between reconnection attempts exponentially, up to
`reconnect.backoff.max.ms` (10 s by default). After a broker restart a client could then wait up
to 10 s more before it even tried again: in `make chaos` the API accepted almost nothing for
10 s after the broker was back. Capped at 1 s, reconnecting costs at most one attempt a second
per broker while it is away.
"""

from __future__ import annotations

RECONNECT = {
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 1000,
}
