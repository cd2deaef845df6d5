"""The ClickHouse sink (sinks/usage_clickhouse.py) on the test stack: each rated event is one row
of `usage_events` and counts once in the rollups, however often usage.rated carries it."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from openmonetize import wallet_ids
from tests.conftest import eventually
from tests.integration.support import clickhouse_query, read_topic, token_event
from tests.integration.test_ledger_sink import buy
from tests.integration.test_pipeline import stack  # noqa: F401 - the fixture

TOTALS = ("SELECT count(), sum(credits), sum(input_tokens) FROM usage_events WHERE customer_id = {c:String}")
ROLLED = ("SELECT sum(events), sum(credits), sum(input_tokens) FROM usage_{grain} WHERE customer_id = {c:String}")


def test_a_re_delivered_rated_event_is_stored_and_rolled_up_once(stack, tenant, settings):  # noqa: F811
    stack.burn_table(tenant)
    buy(stack, tenant, "100")
    events = [token_event(input_tokens=1000, output_tokens=100, feature_id=f"f{i % 2}") for i in range(3)]
    stack.ingest(tenant, events)
    customer = tenant.customer_id
    expected = (3, Decimal("10.5"), 3000)
    eventually(lambda: clickhouse_query(settings, TOTALS, c=customer) == [expected], timeout_s=60,
               what="3 rows in usage_events")

    copies = [m for m in read_topic(settings.kafka_bootstrap, stack.topics.usage_rated.name)
              if stack.codecs.rated.decode(m.value())["customer_id"] == customer]
    assert len(copies) == 3
    for message in copies[:2]:  # as the wallet agent would re-emit them after a crash
        stack.producer.produce(message.topic(), key=message.key(), value=message.value(), partition=message.partition())
    assert stack.producer.flush(30) == 0
    buy(stack, tenant, "5")  # then one more event behind the copies, on the same partition (same user)
    stack.ingest(tenant, [token_event(input_tokens=1000, output_tokens=100)])
    expected = (4, Decimal("14"), 4000)
    eventually(lambda: clickhouse_query(settings, TOTALS, c=customer) == [expected], timeout_s=60,
               what="the fourth event, and no copy, in usage_events (without FINAL)")
    for grain in ("hourly", "daily"):
        assert clickhouse_query(settings, ROLLED.replace("{grain}", grain), c=customer) == [expected]
    [(wallet, users, features)] = clickhouse_query(
        settings, "SELECT any(wallet_id), uniqExact(user_id), groupUniqArray(feature_id) FROM usage_events FINAL "
                  "WHERE customer_id = {c:String}", c=customer)
    assert wallet == wallet_ids.user_wallet(customer, "user-1") and users == 1
    assert sorted(features) == ["chat", "f0", "f1"]


def test_every_column_holds_the_rated_record_s_value(stack, tenant, settings):  # noqa: F811
    """The sink inserts the records' own Avro bodies (ClickHouse maps fields to columns by name):
    each column holds the rated record's value, '' and 0 where the record has none, and the
    record's Kafka position."""
    from sinks.usage_clickhouse import COLUMNS

    stack.burn_table(tenant)
    buy(stack, tenant, "100")
    events = [token_event(team_id="team-1", metadata={"k": "v", "é": "ü"}, cached_input_tokens=200),
              token_event(user_id="user-2")]
    stack.ingest(tenant, events)
    customer = tenant.customer_id
    eventually(lambda: clickhouse_query(settings, TOTALS, c=customer)[0][0] == 2, timeout_s=60, what="2 rows")
    rated = {}
    for message in read_topic(settings.kafka_bootstrap, stack.topics.usage_rated.name):
        record = stack.codecs.rated.decode(message.value())
        if record["customer_id"] == customer:
            rated[record["event_id"]] = {**record, "kafka_topic": message.topic(),
                                         "kafka_partition": message.partition(), "kafka_offset": message.offset()}
    stored = clickhouse_query(settings, f"SELECT {', '.join(COLUMNS)} FROM usage_events FINAL "
                                        "WHERE customer_id = {c:String}", c=customer)
    assert len(stored) == 2
    for values in stored:
        row = dict(zip(COLUMNS, values))
        record = rated[row["event_id"]]
        for column in COLUMNS:
            expected = record[column]
            if expected is None and column != "received_at":
                expected = {"metadata": {}, "quantity": Decimal(0)}.get(column, 0 if isinstance(row[column], int) else "")
            if isinstance(expected, datetime):  # the client reads DateTime64(6, 'UTC') as naive UTC
                expected = expected.astimezone(timezone.utc).replace(tzinfo=None)
            assert row[column] == expected, column
