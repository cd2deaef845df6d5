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

# Every producer of keyed records: Java's murmur2 on the key, as Kafka's own clients and aiokafka
# (Faust) place them. wallet.commands and wallet.debits are co-partitioned by wallet id, and the
# wallet agent keeps a wallet's state in that partition: a command placed by librdkafka's default
# partitioner (consistent_random, CRC32) lands on another partition, where it is applied to
# another copy of the wallet (seen: rebilling adjustments and plan grants, whose producers lacked
# this, charged beside the wallet's own state once two workers split the partitions).
KEYED = {"partitioner": "murmur2_random"}
