"""The local stack's generated secrets (deploy/local_stack/stack_secrets.py) and how settings read them back."""

from __future__ import annotations

import stat

from deploy.local_stack import stack_secrets
from openmonetize.settings import SCHEMA_REGISTRY_OPERATOR_KEY_FILE, Settings, stack_secret_path


def test_up_generates_the_registry_key_once_private_and_every_process_reads_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SCHEMA_REGISTRY_OPERATOR_KEY", raising=False)
    settings = Settings(stack_dir=tmp_path / "stack", _env_file=None)
    assert settings.schema_registry_operator_key == "" and settings.schema_registry_basic_auth == ""
    assert stack_secrets.ensure(settings) == [SCHEMA_REGISTRY_OPERATOR_KEY_FILE]
    key = settings.schema_registry_operator_key
    path = stack_secret_path(settings.stack_dir, SCHEMA_REGISTRY_OPERATOR_KEY_FILE)
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    again = Settings(stack_dir=tmp_path / "stack", _env_file=None)  # another process of the same stack
    assert again.schema_registry_operator_key == key and again.schema_registry_basic_auth == f"operator:{key}"
    assert stack_secrets.ensure(again) == []  # kept, not drawn again


def test_a_key_set_explicitly_wins_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEMA_REGISTRY_OPERATOR_KEY", "set-by-operator")
    settings = Settings(stack_dir=tmp_path / "stack", _env_file=None)
    assert stack_secrets.ensure(settings) == [] and settings.schema_registry_operator_key == "set-by-operator"
    assert not (tmp_path / "stack" / "secrets").exists()
