import pytest

from openmonetize import migrations


@pytest.mark.parametrize("kind", ["postgres", "clickhouse"])
def test_migrations_load_in_version_order(kind):
    found = migrations.load(kind)
    assert found, f"no {kind} migrations"
    versions = [m.version for m in found]
    assert versions == sorted(versions) and versions[0] == 1


def test_statements_split_on_semicolons_at_line_ends_and_drop_comments():
    text = "-- a comment; with a semicolon\nCREATE TABLE a (x String DEFAULT ';');\n\nCREATE TABLE b (y UInt8);\n"
    assert migrations._statements(text) == ["CREATE TABLE a (x String DEFAULT ';')", "CREATE TABLE b (y UInt8)"]


def test_clickhouse_database_must_be_an_identifier():
    with pytest.raises(ValueError, match="not a plain identifier"):
        migrations.apply_clickhouse(client=None, database="x; DROP DATABASE y")
