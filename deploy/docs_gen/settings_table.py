"""docs/reference/settings.md from the `Settings` class: every variable, its default and what it
means, grouped under the section comments of openmonetize/settings.py."""

from __future__ import annotations

import ast
import inspect
import re
from decimal import Decimal
from pathlib import Path

from deploy.docs_gen.markdown import banner, code, table

_SECTION = re.compile(r"^\s*# --- (.+?) -+\s*$")

INTRO = """\
Every process reads these from environment variables and an optional `.env` file in the working
directory (`OM_ENV_FILE` names another file). Names have no prefix, so that the output of
`openmonetize stack env` can be sourced by a shell and read back by every process. A URL left
empty is derived from the local stack's ports; set it to use an external service, and drop that
service from `STACK_SERVICES` ([running against your own Kafka, Postgres or ClickHouse](../operations/deploy.md)).
Invalid values stop a command with one `error: invalid settings: NAME: ...` line.

"""


def render() -> str:
    from openmonetize.settings import Settings

    out = [banner("Settings", "`openmonetize.settings.Settings`"), INTRO]
    for section, names in _sections(Settings).items():
        rows = []
        for name in names:
            field = Settings.model_fields[name]
            rows.append((code(name.upper()), _default(field), field.description or ""))
        out.append(f"## {section}\n\n" + table(("variable", "default", "meaning"), rows) + "\n")
    return "".join(out).rstrip("\n") + "\n"


def _sections(settings_class: type) -> dict[str, list[str]]:
    """The fields in source order, under the `# --- name ---` comment above each."""
    source = Path(inspect.getsourcefile(settings_class)).read_text(encoding="utf-8")
    headers = {number: match.group(1).strip() for number, line in enumerate(source.splitlines(), start=1)
               if (match := _SECTION.match(line))}
    class_node = next(node for node in ast.walk(ast.parse(source))
                      if isinstance(node, ast.ClassDef) and node.name == settings_class.__name__)
    sections: dict[str, list[str]] = {}
    for node in class_node.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if node.target.id not in settings_class.model_fields:
            continue
        above = [line for line in headers if line < node.lineno]
        title = headers[max(above)] if above else "General"
        sections.setdefault(title[:1].upper() + title[1:], []).append(node.target.id)
    return sections


def _default(field) -> str:
    value = field.get_default(call_default_factory=True)
    if value == "" or value is None:
        return "(empty)"
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, (Path, Decimal)):
        value = str(value)
    return code(str(value))
