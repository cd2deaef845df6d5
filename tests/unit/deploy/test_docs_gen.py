"""docs/reference/ is what the code says: each page regenerated in memory equals the committed one,
and each generator sees what it documents (a new command, setting, metric, topic or route
shows up without anyone writing it down)."""

from __future__ import annotations

import difflib

import pytest

from deploy import docs_gen
from deploy.docs_gen import __main__ as docs_gen_main
from deploy.docs_gen import cli_help, http_api, settings_table, topic_list
from deploy.docs_gen.metric_source import definitions


@pytest.mark.parametrize("path, text", sorted(docs_gen.render_all().items()), ids=lambda v: getattr(v, "name", ""))
def test_the_committed_reference_page_is_what_the_code_generates(path, text):
    assert path.exists(), f"{path.name} is missing: create it with `{docs_gen.REGENERATE}`"
    committed = path.read_text(encoding="utf-8")
    if committed != text:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(keepends=True), text.splitlines(keepends=True),
                                                 f"docs/reference/{path.name} (committed)", "generated", n=1))[:60])
        raise AssertionError(f"docs/reference/{path.name} differs from the code; regenerate it with "
                             f"`{docs_gen.REGENERATE}` and commit it. First differences:\n{diff}")


def test_the_cli_page_has_every_command_of_the_click_group():
    page = cli_help.render()
    for name in ("stack up", "admin customers create", "dlq retry", "replay list", "plans run-due", "run worker"):
        assert f"## openmonetize {name}\n" in page


def test_the_settings_page_has_every_setting():
    from openmonetize.settings import Settings

    page = settings_table.render()
    missing = [name for name in Settings.model_fields if f"| `{name.upper()}` |" not in page]
    assert not missing


def test_every_setting_and_topic_says_what_it_is():
    from openmonetize.settings import Settings

    assert not [name for name, field in Settings.model_fields.items() if not field.description]
    assert "|  |\n" not in topic_list.render()


def test_the_metrics_page_has_every_metric_with_its_help():
    assert definitions() and all(d.help for d in definitions())


def test_the_http_page_has_every_operation_of_the_spec():
    spec = {"paths": {"/v1/things/{id}": {"post": {
        "tags": ["things"], "summary": "Make a thing",
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
        "responses": {"201": {"description": "Made", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Thing"}}}}}}}},
        "components": {"schemas": {"Thing": {"type": "object", "required": ["name"],
                                             "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}}}}
    page = http_api.render(spec)
    assert "### `POST /v1/things/{id}`\n" in page and "Make a thing" in page
    assert "**`name`**, `size`" in page and "| 201 | Made | Thing: {name, size} |" in page


def test_write_and_check_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(docs_gen_main, "REFERENCE_DIR", tmp_path)
    monkeypatch.setattr(docs_gen_main, "render_all", lambda: {tmp_path / "page.md": "# Page\n"})
    assert docs_gen_main.main(["--check"]) == 1
    assert docs_gen_main.main(["--write"]) == 0
    assert docs_gen_main.main(["--check"]) == 0
    (tmp_path / "page.md").write_text("# Edited by hand\n")
    assert docs_gen_main.main(["--check"]) == 1
