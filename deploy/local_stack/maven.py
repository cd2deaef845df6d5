"""Jars from Maven Central, the one way the project fetches Java parts (Kafka, the JDBC driver).

`mvn dependency:copy-dependencies` on a small pom that lists what to fetch copies the jars and
their runtime dependencies into a directory of the cache; a marker file records a complete copy,
so later calls cost nothing. No download URL is written anywhere: Maven resolves by coordinates.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from deploy.local_stack.processes import StackError
from deploy.local_stack.system import ensure_command
from openmonetize.logs import get_logger

log = get_logger(__name__)


def copy_dependencies(pom: Path, libs: Path, properties: dict[str, str], expect: str, what: str) -> Path:
    """The jars `pom` lists, copied into `libs` (the pom's outputDirectory, set through `properties`).

    `expect` is a glob that must match once the copy is done (the main jar); `what` names the
    parts in errors and logs.
    """
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = ensure_command("mvn", "maven")
    log.info("maven_fetch_jars", what=what, into=str(libs))
    libs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         *(f"-D{name}={value}" for name, value in properties.items())],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not any(libs.glob(expect)):
        raise StackError(f"could not fetch {what} jars from Maven Central:\n{(result.stdout + result.stderr)[-3000:]}")
    marker.touch()
    return libs
