"""The TypeScript SDK (sdk/typescript/, `@openmonetize/sdk`) against the real API.

The SDK's own tests are written for Node's test runner (sdk/typescript/test/*.test.ts). This
module builds the SDK as its users get it (`npm ci` when node_modules is missing or was installed
from another package-lock.json, `npm run build`: types generated from docs/openapi.json, then tsc), compiles
the tests (tsc type-checks the seed README's calls as written), and runs each test file with
`node --test` against the running API, every file with a fresh tenant of its own passed in the
environment (OPENMONETIZE_API_URL, OPENMONETIZE_API_KEY, OPENMONETIZE_CUSTOMER_ID). A failing
run shows the runner's output. The events file's events are then read back from usage.events.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.support import UsageTail, new_tenant

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"
TEST_FILES = sorted(path.name.removesuffix(".test.ts") for path in (SDK / "test").glob("*.test.ts"))
LOCK_MARK = SDK / "node_modules" / ".openmonetize-lock-sha256"


def run(args: list[str], *, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=SDK, env=env, capture_output=True, text=True, timeout=timeout)


def must(args: list[str], what: str, timeout: float = 120) -> None:
    done = run(args, timeout=timeout)
    assert done.returncode == 0, f"{what} failed ({' '.join(args)}, exit {done.returncode}):\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def built():
    """The SDK built into dist/ and its tests compiled into build-test/, once per run. Another
    run on this checkout (a second test stack) waits: both would rebuild dist/ under the other."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"`{tool}` is not on PATH: the TypeScript SDK's tests need Node 20+ and npm"
    name = hashlib.sha256(str(SDK).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"openmonetize-sdk-typescript-{name}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        lock = hashlib.sha256((SDK / "package-lock.json").read_bytes()).hexdigest()
        if not LOCK_MARK.exists() or LOCK_MARK.read_text().strip() != lock:
            must(["npm", "ci", "--no-audit", "--no-fund"], "npm ci", timeout=240)
            LOCK_MARK.write_text(lock)
        must(["npm", "run", "build"], "npm run build (types from docs/openapi.json, then tsc)")
        must(["npm", "run", "build:test"], "compiling the tests (tsc type-checks the seed's calls)")
        yield SDK / "build-test" / "test"


def node_test(settings, built: Path, name: str, tenant) -> subprocess.CompletedProcess:
    """`node --test` on one test file, with `tenant` in the environment."""
    env = {
        **os.environ,
        "OPENMONETIZE_API_URL": settings.api_url,
        "OPENMONETIZE_API_KEY": tenant.api_key,
        "OPENMONETIZE_CUSTOMER_ID": tenant.customer_id,
        "NO_COLOR": "1",
    }
    return run(["node", "--test", "--test-reporter=spec", str(built / f"{name}.test.js")], env=env, timeout=90)


def passed(done: subprocess.CompletedProcess) -> bool:
    """Exit 0, and the runner ran tests (`ℹ pass N`, N > 0): an empty run is not a pass."""
    return done.returncode == 0 and re.search(r"^ℹ pass [1-9]", done.stdout, re.MULTILINE) is not None


@pytest.mark.parametrize("name", [n for n in TEST_FILES if n != "events"])
def test_node_test_file(settings, built, name):
    done = node_test(settings, built, name, new_tenant(settings))
    assert passed(done), f"node --test {name}.test.js failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"


def test_events_file_and_what_landed_on_usage_events(settings, built):
    """The seed's three events, sent by the SDK, are on usage.events as sent: ids, types,
    units, the Date timestamps as instants of the last minutes, quantity 5 exactly."""
    tenant = new_tenant(settings)
    tail = UsageTail(settings, tenant.customer_id)
    try:
        started = datetime.now(timezone.utc)
        done = node_test(settings, built, "events", tenant)
        assert passed(done), f"node --test events.test.js failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        # The file sends 5 accepted events: the seed's three, one without id, one of a batch.
        landed = {record["event_id"]: record for _, record in tail.wait_for(5)}
    finally:
        tail.close()
    assert len(landed) == 5
    tokens, image, custom = landed["evt_123"], landed["evt_img_123"], landed["evt_custom_123"]
    assert (tokens["event_type"], tokens["provider"], tokens["model"]) == ("TOKEN_USAGE", "OPENAI", "gpt-4-turbo")
    assert (tokens["input_tokens"], tokens["output_tokens"], tokens["user_id"]) == (1200, 340, "law-firm-a")
    assert (image["event_type"], image["image_count"], image["image_size"], image["quality"]) == (
        "IMAGE_GENERATION", 1, "1024x1024", "hd")
    assert (custom["event_type"], custom["unit_type"], custom["quantity"]) == ("CUSTOM", "pages", Decimal("5"))
    for record in (tokens, image, custom):
        assert record["customer_id"] == tenant.customer_id
        assert started - timedelta(seconds=5) <= record["timestamp"] <= datetime.now(timezone.utc), record["timestamp"]
