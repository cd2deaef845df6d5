"""Secrets the local stack generates on its first `up`, kept under STACK_DIR/secrets/ (mode 0600)
and read back by every process's settings (openmonetize/settings.py), so a fresh machine needs
nothing set. An explicitly set value (environment or env file) wins and no file is written.

- `schema-registry-operator-key`: SCHEMA_REGISTRY_OPERATOR_KEY, the credential of the schema
  registry's writes (api/routes/schema_registry.py).
"""

from __future__ import annotations

import os
import secrets

from openmonetize.settings import SCHEMA_REGISTRY_OPERATOR_KEY_FILE, Settings, read_stack_secret, stack_secret_path


def ensure(settings: Settings) -> list[str]:
    """Generate the secrets not set and not yet on disk; the names of those generated."""
    generated = []
    if not settings.schema_registry_operator_key:
        settings.schema_registry_operator_key, created = _ensure_file(settings, SCHEMA_REGISTRY_OPERATOR_KEY_FILE)
        if created:
            generated.append(SCHEMA_REGISTRY_OPERATOR_KEY_FILE)
    return generated


def _ensure_file(settings: Settings, name: str) -> tuple[str, bool]:
    existing = read_stack_secret(settings.stack_dir, name)
    if existing:
        return existing, False
    path = stack_secret_path(settings.stack_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `up` wrote it first
        return read_stack_secret(settings.stack_dir, name), False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")
    return value, True
