"""What a fault run checks against the client's record: which events the Postgres ledger charged,
which were charged twice (ledger.entries), and how many rows ClickHouse holds (shared by
`make chaos` and `make soak`)."""

from __future__ import annotations

import psycopg

from openmonetize import clickhouse_client
from openmonetize.settings import Settings


class Ledger:
    """What the sinks and the ledger topic say about the scenario's tenants."""

    def __init__(self, settings: Settings, customers: list[str]):
        self.settings, self.customers = settings, customers
        self.clickhouse = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database)

    def charged(self) -> set[tuple[str, str]]:
        with psycopg.connect(self.settings.database_url, connect_timeout=5) as conn:
            rows = conn.execute("SELECT DISTINCT customer_id, event_id FROM ledger_entries "
                                "WHERE customer_id = ANY(%s) AND kind = 'usage_debit'", (self.customers,)).fetchall()
        return set(rows)

    def charged_count(self) -> int:
        try:
            with psycopg.connect(self.settings.database_url, connect_timeout=3) as conn:
                return conn.execute("SELECT count(DISTINCT (customer_id, event_id)) FROM ledger_entries "
                                    "WHERE customer_id = ANY(%s) AND kind = 'usage_debit'",
                                    (self.customers,)).fetchone()[0]
        except psycopg.Error:
            return -1  # Postgres is away: unknown

    def caught_up(self, owed: int) -> bool:
        """Both the Postgres ledger and ClickHouse hold at least `owed` of the events (False while
        either is away)."""
        try:
            return self.charged_count() >= owed and self.clickhouse_rows(final=True) >= owed
        except Exception:  # noqa: BLE001 - ClickHouse away
            return False

    def clickhouse_rows(self, final: bool = False) -> int:
        return self.clickhouse.command(
            f"SELECT count() FROM usage_events {'FINAL' if final else ''} WHERE customer_id IN {{c:Array(String)}}",
            parameters={"c": self.customers})

    def double_charged(self) -> int:
        """Events with more than one usage_debit entry id, or an entry id with two balances."""
        from schemas.topic_codecs import reader_codec
        from openmonetize.topic_reader import read_to_end
        from schemas.registry_client import registry_session
        from schemas.topics import topics

        spec = topics(self.settings).ledger_entries
        customers = set(self.customers)
        seen: dict[tuple[str, str], set[tuple[str, object]]] = {}
        with registry_session(self.settings) as registry:
            codec = reader_codec(registry, spec)
            for message in read_to_end(self.settings.kafka_bootstrap, spec.name):
                entry = codec.decode(message.value())
                if entry["customer_id"] in customers and entry["kind"] == "usage_debit":
                    seen.setdefault((entry["customer_id"], entry["event_id"]), set()).add(
                        (entry["entry_id"], entry["balance_after"]))
        return sum(1 for versions in seen.values() if len(versions) > 1)

    def close(self) -> None:
        self.clickhouse.close()
