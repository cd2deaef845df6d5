"""The local Postgres server's configuration file (deploy/local_stack/postgres.py), written at each start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deploy.local_stack.postgres import PostgresService
from openmonetize.settings import Settings


def _written_config(tmp_path, **settings) -> str:
    service = PostgresService(Settings(stack_dir=tmp_path / "stack", _env_file=None, **settings), process=None)
    service._server_user = lambda: None  # as root it would chown the file to (or create) the server's user
    service.data.mkdir(parents=True)
    (service.data / "postgresql.conf").write_text("# initdb's own\n")
    service._write_config()
    return (service.data / "openmonetize.conf").read_text()


def test_shared_buffers_default_and_setting(tmp_path):
    assert "shared_buffers = 1GB" in _written_config(tmp_path / "a").splitlines()
    conf = _written_config(tmp_path / "b", postgres_shared_buffers="256MB", postgres_port=24999)
    assert "shared_buffers = 256MB" in conf.splitlines() and "port = 24999" in conf.splitlines()


@pytest.mark.parametrize("value", ["1 GB", "1G", "-1MB", "lots", ""])
def test_a_shared_buffers_postgres_would_not_read_is_refused_by_name(value):
    with pytest.raises(ValidationError, match="postgres_shared_buffers"):
        Settings(_env_file=None, postgres_shared_buffers=value)
