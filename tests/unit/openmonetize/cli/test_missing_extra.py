"""A core install (`pip install openmonetize`: producer client and SDK) lacks the [server] parts; a
command that needs one must say which extra to install, not end in a traceback."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from openmonetize.cli import main


def test_a_command_needing_the_server_extra_names_it(monkeypatch):
    # None in sys.modules makes `import psycopg` raise ModuleNotFoundError, as in a core install.
    for module in ("psycopg", "psycopg_pool", "genai_prices"):
        monkeypatch.setitem(sys.modules, module, None)
    # The command imports openmonetize.catalog_admin (which imports psycopg first) when it runs:
    # forget it if another test imported it already, else the command would really run.
    monkeypatch.delitem(sys.modules, "openmonetize.catalog_admin", raising=False)
    result = CliRunner().invoke(main, ["admin", "import-prices"])
    assert result.exit_code == 2, result.output
    assert "a core install does not have: pip install 'openmonetize[server]'" in result.output


def test_other_missing_modules_are_not_blamed_on_the_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "openmonetize.catalog_admin", None)
    result = CliRunner().invoke(main, ["admin", "import-prices"])
    assert isinstance(result.exception, ModuleNotFoundError)
    assert "openmonetize[server]" not in result.output
