"""`openmonetize produce` and `openmonetize loadgen` against the running stack."""

from __future__ import annotations

import subprocess
import sys

import orjson
import psycopg
import pytest

from openmonetize.stores import tenants
from producers import loadgen
from tests.conftest import unique
from tests.integration.support import UsageTail
from tests.integration.test_producer import make_event


def om(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "openmonetize", *args], input=stdin, capture_output=True, timeout=180
    )


@pytest.mark.parametrize("command", ["produce", "loadgen"])
def test_help(command):
    result = om(command, "--help")
    assert result.returncode == 0 and result.stdout.startswith(b"Usage: ")


def test_produce_rejects_bad_lines_by_number_and_sends_the_rest(settings, tmp_path):
    customer_id = unique("cus_cli")
    good = [make_event(i) for i in range(20)]
    lines = [orjson.dumps(e) for e in good[:5]]
    lines.append(b'{"event_id": "broken", ')  # line 6: malformed JSON
    lines += [orjson.dumps(e) for e in good[5:10]]
    lines.append(orjson.dumps(make_event(99, input_tokens=None)))  # line 12: invalid (input_tokens required)
    lines.append(b"")  # a blank line is skipped, not counted
    lines += [orjson.dumps(e) for e in good[10:]]
    lines.append(orjson.dumps(make_event(98, customer_id="cus_other")))  # line 24: another tenant
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    tail = UsageTail(settings, customer_id)
    try:
        result = om("produce", "--file", str(path), "--customer-id", customer_id, "--json")
        assert result.returncode == 1, result.stderr
        summary = orjson.loads(result.stdout)
        assert {k: summary[k] for k in ("read", "accepted", "rejected", "delivered", "failed", "undelivered")} == {
            "read": 23, "accepted": 20, "rejected": 3, "delivered": 20, "failed": 0, "undelivered": 0,
        }
        assert [(r["line"], r["field"]) for r in summary["rejections"]] == [
            (6, None), (12, "input_tokens"), (24, "customer_id"),
        ]
        assert "malformed JSON" in summary["rejections"][0]["reason"]
        records = tail.wait_for(20)
        assert sorted(r["event_id"] for _, r in records) == sorted(e["event_id"] for e in good)
        assert all(key == f"{customer_id}:{r['user_id']}" for key, r in records)
    finally:
        tail.close()


def test_produce_from_stdin_prints_a_readable_summary(settings):
    customer_id = unique("cus_cli")
    events = b"".join(orjson.dumps(make_event(i)) + b"\n" for i in range(3)) + b"not json\n"
    result = om("produce", "--file", "-", "--customer-id", customer_id, stdin=events)
    assert result.returncode == 1
    out = result.stdout.decode()
    assert out.startswith("read 4, accepted 3, rejected 1, delivered 3, failed 0")
    assert "  line 4: event: malformed JSON" in out


def test_produce_all_good_exits_zero(settings):
    events = b"".join(orjson.dumps(make_event(i)) + b"\n" for i in range(5))
    result = om("produce", "-f", "-", "--customer-id", unique("cus_cli"), "--json", stdin=events)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["delivered"] == 5


def test_loadgen_command_via_kafka(settings, tmp_path):
    out = tmp_path / "events.ndjson"
    existing = loadgen.ensure_tenants(settings, 2, with_keys=False)  # what the command reuses
    tail = UsageTail(settings, [t.customer_id for t in existing])
    result = om("loadgen", "--rate", "100", "--duration", "1", "--tenants", "2", "--users", "10", "--seed", "7",
                "--duplicates", "0.05", "--events-file-out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"loadgen: sent 100 events")
    assert b"delivered 100, failed 0, rejected 0" in result.stdout
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(events) == 100
    with psycopg.connect(settings.database_url) as conn:
        ids = {tenants.find_customer_by_name(conn, f"loadgen-{i}") for i in (1, 2)}
    assert {e["customer_id"] for e in events} <= ids and None not in ids
    assert ids == {t.customer_id for t in existing}
    try:
        received = tail.wait_for(100)
    finally:
        tail.close()
    sent_ids = {e["event_id"] for e in events}
    assert {r["event_id"] for _, r in received if r["event_id"] in sent_ids} == sent_ids
