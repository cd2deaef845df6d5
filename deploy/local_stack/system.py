"""Installing what the local stack needs from the machine's package manager."""

from __future__ import annotations

import os
import shutil
import subprocess

from deploy.local_stack.processes import StackError
from openmonetize.logs import get_logger

log = get_logger(__name__)
_apt_updated = False


def ensure_command(command: str, apt_package: str) -> str:
    """Path of `command`, installing `apt_package` with apt-get when it is missing."""
    found = shutil.which(command)
    if found:
        return found
    apt_install(apt_package)
    found = shutil.which(command)
    if not found:
        raise StackError(f"`{command}` is still missing after installing {apt_package}.")
    return found


def apt_install(*packages: str) -> None:
    global _apt_updated
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if not sudo:
            raise StackError(
                f"{', '.join(packages)} missing and not running as root: install it with "
                f"`sudo apt-get install -y {' '.join(packages)}` and run again."
            )
        prefix = [sudo, "-n"]
    else:
        prefix = []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("apt_install", packages=list(packages))
    if not _apt_updated:
        subprocess.run([*prefix, "apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        _apt_updated = True
    result = subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")
