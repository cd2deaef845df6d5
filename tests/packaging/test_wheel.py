"""The wheel a user installs: `pip install openmonetize` pulls what a producer client and the SDK need
and no more (no chdb, ~0.5 GB; no testcontainers), the extras carry the rest, and the SDK is typed.

Built for real from the repository's files, in a copy, so the checkout gets no build/ or egg-info."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The project's wheel, built by pip from the files git knows (tracked, or new and not ignored)."""
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
                           capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout[-2000:]}\n{built.stderr[-2000:]}"
    (path,) = out.glob("openmonetize-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile):
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


def _requirements(wheel: zipfile.ZipFile) -> dict[str, set[str]]:
    """Requirement names by extra ("" for the core install)."""
    by_extra: dict[str, set[str]] = {}
    for line in _metadata(wheel).get_all("Requires-Dist"):
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", line)
        by_extra.setdefault(extra.group(1) if extra else "", set()).add(_requirement_name(line))
    return by_extra


def test_the_core_install_has_no_chdb_nor_testcontainers_nor_server_parts(wheel):
    core = _requirements(wheel)[""]
    assert {"chdb-core", "testcontainers"}.isdisjoint(core), core
    # what a producer client and the SDK import
    assert {"confluent-kafka", "fastavro", "httpx", "msgspec", "pydantic-settings"} <= core, core
    assert {"faust-streaming", "fastapi", "psycopg", "clickhouse-connect", "uvicorn"}.isdisjoint(core), core


def test_the_extras_carry_the_rest(wheel):
    extras = _requirements(wheel)
    assert set(_metadata(wheel).get_all("Provides-Extra")) == {"server", "local", "dev"}
    assert {"faust-streaming", "fastapi", "psycopg", "clickhouse-connect", "uvicorn"} <= extras["server"]
    assert "chdb-core" not in extras["server"], "the container image installs [server]: it talks to a real ClickHouse"
    assert extras["local"] == {"openmonetize", "chdb-core", "clickhouse-cityhash"}  # [server] + the embedded engine and its front
    assert {"testcontainers", "pytest"} <= extras["dev"]


def test_the_sdk_ships_its_py_typed_marker(wheel):
    assert "openmonetize/sdk/py.typed" in wheel.namelist()


def test_a_wheel_built_where_there_is_a_compiler_carries_the_native_avro_codec(wheel):
    # (schemas/_avro_native.c; a wheel built without one still installs, on the pure-Python codec)
    assert [n for n in wheel.namelist() if n.startswith("schemas/_avro_native") and n.endswith(".so")], \
        [n for n in wheel.namelist() if n.startswith("schemas/")]


def test_the_dockerfile_installs_core_and_server_without_chdb():
    """Runs the very command deploy/Dockerfile runs to list what the image installs."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    command = re.search(r'RUN python -c "(.+?)" \\\n\s*> requirements\.txt', dockerfile)
    assert command, "deploy/Dockerfile no longer lists its requirements with `python -c ... > requirements.txt`"
    listed = subprocess.run([sys.executable, "-c", command.group(1)], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.split("\n")
    names = {_requirement_name(line) for line in listed if line}
    assert {"confluent-kafka", "faust-streaming", "fastapi", "clickhouse-connect"} <= names, names
    assert {"chdb-core", "testcontainers", "pytest"}.isdisjoint(names), names
