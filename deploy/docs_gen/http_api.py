"""docs/reference/http-api.md from the committed OpenAPI spec (docs/openapi.json): every route,
grouped by tag, with its summary, parameters, request body and answers in brief. The spec itself
is checked against the app by tests/unit/api/test_openapi_committed.py, so this page follows
the routes through it."""

from __future__ import annotations

import json

from deploy.docs_gen import ROOT
from deploy.docs_gen.markdown import banner, cell, code, table

SPEC = ROOT / "docs" / "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")

INTRO = """\
The full contract is `docs/openapi.json` (also served by the API at `GET /openapi.json`, and
browsable at `/docs`); this page is that spec in brief. Every route but `/health`, `/ready`,
`/metrics` and the schema registry's takes a tenant's API key (`X-OM-Api-Key: om_...` or
`Authorization: Bearer om_...`) and acts for its tenant only; the schema registry's writes take
the operator credential instead. Errors are `{"error": {"code", "message", "field"?}}`.
Conventions (idempotency keys, tenancy, paging): [the HTTP API guide](../guides/http-api.md).

"""


def render(spec: dict | None = None) -> str:
    spec = spec if spec is not None else json.loads(SPEC.read_text(encoding="utf-8"))
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, operations in spec["paths"].items():
        for method in METHODS:
            if method in operations:
                operation = operations[method]
                by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append((method, path, operation))
    out = [banner("HTTP API", "`docs/openapi.json`"), INTRO]
    out.append(table(("tag", "routes"), [(f"[{tag}](#{_anchor(tag)})", len(ops)) for tag, ops in by_tag.items()]) + "\n")
    for tag, operations in by_tag.items():
        out.append(f"## {tag}\n\n")
        for method, path, operation in operations:
            out.append(_operation(spec, method, path, operation))
    return "".join(out).rstrip("\n") + "\n"


def _operation(spec: dict, method: str, path: str, operation: dict) -> str:
    lines = [f"### `{method.upper()} {path}`\n", f"{operation.get('summary', '')}\n"]
    if operation.get("security"):
        lines.append("Takes the operator credential.\n")
    parameters = operation.get("parameters", [])
    if parameters:
        rows = [(code(p["name"]), p["in"], "yes" if p.get("required") else "", _type(spec, p.get("schema", {})),
                 p.get("description", "")) for p in parameters]
        lines.append(table(("parameter", "in", "required", "type", "meaning"), rows))
    body = operation.get("requestBody")
    if body:
        for content_type, media in body.get("content", {}).items():
            lines.append(f"Body ({code(content_type)}): {_fields(spec, media.get('schema', {}))}\n")
    rows = []
    for status, answer in sorted(operation.get("responses", {}).items()):
        schema = next(iter(answer.get("content", {}).values()), {}).get("schema")
        rows.append((status, answer.get("description", ""), _brief(spec, schema) if schema else ""))
    lines.append(table(("status", "when", "body"), rows))
    return "\n".join(lines) + "\n"


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _type(spec: dict, schema: dict) -> str:
    """A schema's type in a few characters: `string`, `integer | null`, `array of CommandOut`..."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(_type(spec, option) for option in schema[union])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(spec, schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    return kind


def _fields(spec: dict, schema: dict) -> str:
    """An object's fields, the required ones in bold; anything else by its type."""
    resolved = _resolve(spec, schema)
    properties = resolved.get("properties")
    if not properties:
        return code(_type(spec, schema)) + (" (any fields)" if resolved.get("additionalProperties") else "")
    required = set(resolved.get("required", ()))
    return ", ".join(f"**{code(name)}**" if name in required else code(name) for name in properties)


def _brief(spec: dict, schema: dict) -> str:
    name = schema["$ref"].rsplit("/", 1)[1] + ": " if "$ref" in schema else ""
    resolved = _resolve(spec, schema)
    if resolved.get("properties"):
        return cell(name + "{" + ", ".join(resolved["properties"]) + "}")
    return cell(name or _type(spec, schema))


def _anchor(heading: str) -> str:
    return "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c in "-_")
