import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from openmonetize.billing.wallet import WalletState
from stream_processors import wallet_state_codec
from stream_processors.wallet_step import apply_records, balance_record

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
W, C = "w:cus_a:user:u1", "cus_a"


def command(command_id: str, kind: str, amount: str, **extra) -> tuple[str, dict]:
    record = {"command_id": command_id, "customer_id": C, "wallet_id": W, "kind": kind, "amount": Decimal(amount),
              "expires_at": None, "priority": None, "event_id": None, "reason": None, "requested_at": NOW}
    return "command", {**record, **extra}


def debit(event_id: str, credits: str, **extra) -> tuple[str, dict]:
    return "debit", {"event_id": event_id, "customer_id": C, "user_id": "u1", "wallet_id": W,
                     "credits": Decimal(credits), "timestamp": NOW, "reservation_id": None, **extra}


def test_records_apply_in_order_and_repeats_are_skipped():
    result = apply_records(None, W, [command("p1", "purchase", "10"), debit("e1", "4"), debit("e1", "4"),
                                      command("p1", "purchase", "10")], policy="allow_overdraft", now=NOW)
    assert result.state.balance == Decimal(6) and result.duplicates == 2
    assert [e.kind for e in result.ledger] == ["purchase", "usage_debit"]
    assert [r["event_id"] for r in result.rated] == ["e1"] and result.changed


def test_reject_policy_sends_an_unfunded_debit_to_the_dlq_uncharged():
    result = apply_records(None, W, [command("p1", "purchase", "3"), debit("e1", "4")], policy="reject", now=NOW)
    assert result.state.balance == Decimal(3) and result.rated == []
    [(record, rejected)] = result.rejected
    assert record["event_id"] == "e1" and rejected.reason == "insufficient_credits"


def test_a_manual_consume_never_overdraws_and_a_bad_command_is_refused():
    result = apply_records(None, W, [command("p1", "purchase", "3"), command("c1", "consume", "5"),
                                      command("x1", "purchase", "0"), command("y1", "teleport", "1")],
                           policy="allow_overdraft", now=NOW)
    assert result.state.balance == Decimal(3)
    assert [r.reason for _, r in result.rejected] == ["insufficient_credits", "invalid_command", "invalid_command"]


def test_lapsed_lots_expire_when_the_wallet_is_next_touched():
    first = apply_records(None, W, [command("g1", "grant", "5", expires_at=NOW + timedelta(hours=1))],
                          policy="allow_overdraft", now=NOW)
    later = apply_records(first.state, W, [debit("e1", "1")], policy="allow_overdraft", now=NOW + timedelta(hours=2))
    assert [e.kind for e in later.ledger] == ["expiry", "usage_debit"]
    assert later.state.balance == Decimal(-1)


def test_state_codec_round_trips_exactly():
    result = apply_records(None, W, [command("g1", "grant", "5.000000000001", expires_at=NOW + timedelta(days=1),
                                             priority=2), command("r1", "reserve", "1", expires_at=NOW + timedelta(minutes=5)),
                                     debit("e1", "7.5")], policy="allow_overdraft", now=NOW)
    restored = wallet_state_codec.loads(wallet_state_codec.dumps(result.state))
    assert restored == result.state
    assert isinstance(restored, WalletState) and restored.seen("e1")
    record = balance_record(restored, NOW)
    assert (record["balance"], record["reserved"], record["available"]) == (
        Decimal("-2.499999999999"), Decimal(1), Decimal("-3.499999999999"))


def test_a_hold_is_placed_and_released_by_its_reservation_id():
    held = apply_records(None, W, [command("p1", "purchase", "10"),
                                   command("r1", "reserve", "4", expires_at=NOW + timedelta(minutes=5))],
                         policy="allow_overdraft", now=NOW)
    assert held.state.reserved == Decimal(4)
    released = apply_records(held.state, W, [command("x1", "release", "1", reservation_id="r1")],
                             policy="allow_overdraft", now=NOW)
    assert released.state.reserved == 0 and released.state.balance == Decimal(10)
    missing = apply_records(held.state, W, [command("x2", "release", "1")], policy="allow_overdraft", now=NOW)
    assert [r.reason for _, r in missing.rejected] == ["invalid_command"]


def test_applied_ids_name_what_applied_and_leave_out_repeats_and_refusals():
    result = apply_records(None, W, [command("p1", "purchase", "3"), debit("e1", "1"), command("p1", "purchase", "3"),
                                     command("c1", "consume", "50")], policy="allow_overdraft", now=NOW)
    assert result.applied_ids == ["p1", "e1"]
    assert balance_record(result.state, NOW, result.applied_ids)["applied_ids"] == ["p1", "e1"]


def test_the_balance_record_lists_the_lots_in_burn_order_with_what_they_started_with():
    later = NOW + timedelta(days=30)
    result = apply_records(None, W, [debit("e0", "2"), command("p1", "purchase", "10"),
                                     command("g1", "grant", "5", expires_at=later, priority=3), debit("e1", "1")],
                           policy="allow_overdraft", now=NOW)
    grants = balance_record(result.state, NOW, result.applied_ids)["grants"]
    assert grants == [
        {"id": "g1", "kind": "grant", "granted": Decimal(5), "remaining": Decimal(4), "expires_at": later,
         "priority": 3, "granted_at": NOW},
        {"id": "p1", "kind": "purchase", "granted": Decimal(8), "remaining": Decimal(8), "expires_at": None,
         "priority": 0, "granted_at": NOW},  # 2 of the 10 repaid the overdraft
    ]


def test_the_balance_record_encodes_with_the_topic_schema_and_old_records_still_decode():
    from schemas.codec import AvroCodec, schema_json
    from schemas.compatibility import check

    schema = schema_json("wallet_balance.avsc")
    v1 = {**schema, "fields": [f for f in schema["fields"] if f["name"] not in ("grants", "applied_ids")]}
    assert check("BACKWARD", schema, [v1]) == []
    result = apply_records(None, W, [command("g1", "grant", "5.5", expires_at=NOW + timedelta(days=1))],
                           policy="allow_overdraft", now=NOW)
    record = balance_record(result.state, NOW, result.applied_ids)
    assert AvroCodec(schema, 1).decode(AvroCodec(schema, 1).encode(record)) == record

    class Registry:
        def schema_by_id(self, schema_id):
            return json.dumps(v1)

    old = AvroCodec(v1, 7).encode(balance_record(result.state, NOW))
    decoded = AvroCodec(schema, 1, Registry()).decode(old)
    assert (decoded["grants"], decoded["applied_ids"], decoded["balance"]) == (None, None, Decimal("5.5"))


def test_lots_stored_before_kind_and_granted_were_recorded_still_load():
    legacy = orjson.dumps({"w": W, "c": C, "g": [["p1", "7", NOW.isoformat(), None, 0]], "o": "0", "r": [],
                           "v": 1, "i": ["p1"]})
    [lot] = wallet_state_codec.loads(legacy).grants
    assert (lot.kind, lot.granted, lot.remaining) == ("purchase", None, Decimal(7))
    assert balance_record(wallet_state_codec.loads(legacy), NOW)["grants"][0]["granted"] == Decimal(7)


def at(partition: int, offset: int) -> dict:
    return {"source_partition": partition, "source_offset": offset}


def test_debits_forwarded_again_are_recognised_by_their_usage_position_not_an_id_list():
    first = apply_records(None, W, [debit("e1", "1", **at(0, 5)), debit("e2", "1", **at(1, 9))],
                          policy="allow_overdraft", now=NOW)
    assert first.state.positions == ((0, 5), (1, 9)) and first.state.recent_ids == ()
    again = apply_records(first.state, W, [debit("e1", "1", **at(0, 5)), debit("e2", "1", **at(1, 9)),
                                           debit("e3", "1", **at(0, 6))], policy="allow_overdraft", now=NOW)
    assert again.duplicates == 2 and [r["event_id"] for r in again.rated] == ["e3"]
    assert again.state.balance == Decimal(-3) and again.state.positions == ((0, 6), (1, 9))


def test_a_refused_debit_re_driven_later_is_charged_once():
    refused = apply_records(None, W, [debit("e1", "4", **at(0, 1))], policy="reject", now=NOW)
    assert refused.rejected and refused.state.refused_ids == ("e1",) and refused.changed
    funded = apply_records(refused.state, W, [command("p1", "purchase", "10"), debit("e1", "4", **at(0, 1))],
                           policy="reject", now=NOW)
    assert funded.state.balance == Decimal(6) and funded.state.refused_ids == ()
    twice = apply_records(funded.state, W, [debit("e1", "4", **at(0, 1))], policy="reject", now=NOW)
    assert twice.duplicates == 1 and twice.state.balance == Decimal(6)


def test_positions_and_refusals_survive_the_table_codec_and_old_states_load_without_them():
    state = apply_records(None, W, [debit("e1", "4", **at(2, 7))], policy="reject", now=NOW).state
    assert wallet_state_codec.loads(wallet_state_codec.dumps(state)) == state
    old = orjson.loads(wallet_state_codec.dumps(state))
    del old["p"], old["x"]
    assert wallet_state_codec.loads(orjson.dumps(old)).positions == ()


ids = st.sampled_from(["a", "b", "c", "d"])
amounts = st.decimals(min_value=0, max_value=1000, places=12).map(Decimal)
later = st.integers(1, 48).map(lambda hours: NOW + timedelta(hours=hours))
commands = st.builds(
    lambda command_id, kind, amount, expires_at, reservation_id: command(
        command_id, kind, str(amount), expires_at=expires_at, reservation_id=reservation_id),
    ids, st.sampled_from(["purchase", "grant", "adjustment_credit", "consume", "adjustment_debit", "reserve", "release"]),
    amounts, st.one_of(st.none(), later), st.one_of(st.none(), ids))
debits = st.builds(lambda event_id, credits, reservation_id, position: debit(
    event_id, str(credits), reservation_id=reservation_id, **(at(*position) if position else {})),
    ids, amounts, st.one_of(st.none(), ids), st.one_of(st.none(), st.tuples(st.integers(0, 2), st.integers(0, 5))))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(commands, debits), min_size=1, max_size=30), st.lists(st.integers(1, 29), max_size=4),
       st.sampled_from(["allow_overdraft", "reject"]))
def test_a_batch_applied_at_once_equals_it_applied_in_parts(records, cuts, policy):
    """The wallet is opened once per batch: where the batches end must not matter (the state
    stored between them goes through the table's codec, as in the agent)."""
    whole = apply_records(None, W, records, policy=policy, now=NOW)
    state, parts = None, []
    bounds = sorted({0, len(records), *(c for c in cuts if c < len(records))})
    for start, end in zip(bounds, bounds[1:]):
        part = apply_records(state, W, records[start:end], policy=policy, now=NOW)
        state = wallet_state_codec.loads(wallet_state_codec.dumps(part.state))
        parts.append(part)
    assert wallet_state_codec.dumps(whole.state) == wallet_state_codec.dumps(state)
    assert whole.ledger == [e for p in parts for e in p.ledger]
    assert whole.rated == [r for p in parts for r in p.rated]
    assert whole.rejected == [r for p in parts for r in p.rejected]
    assert whole.applied_ids == [i for p in parts for i in p.applied_ids]
    assert whole.duplicates == sum(p.duplicates for p in parts)
