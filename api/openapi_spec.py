"""The committed OpenAPI spec, `docs/openapi.json`: what `api.app.create_app().openapi()` builds,
as stable JSON text. The TypeScript SDK (sdk/typescript/) generates its types from this file, and
tests/unit/api/test_openapi_committed.py fails when it differs from what the app builds.

    python -m api.openapi_spec --write    # regenerate docs/openapi.json (also: make openapi)
    python -m api.openapi_spec --check    # exit 1 if the committed file is stale
    python -m api.openapi_spec            # print the spec

Building the app opens nothing (no Postgres, no Kafka), and the spec does not depend on the
settings, so any machine writes the same file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
REGENERATE = "python -m api.openapi_spec --write (or: make openapi)"


def spec_text() -> str:
    """The spec as the committed file spells it: 2-space indent, key order as FastAPI builds it
    (paths in the order the routers are mounted), non-ASCII kept, a final newline."""
    from api.app import create_app

    return json.dumps(create_app().openapi(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.openapi_spec", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {SPEC_PATH.name} into docs/")
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/openapi.json differs from the app's spec")
    args = parser.parse_args(argv)
    text = spec_text()
    if args.write:
        SPEC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SPEC_PATH}")
        return 0
    if args.check:
        committed = SPEC_PATH.read_text(encoding="utf-8") if SPEC_PATH.exists() else None
        if committed != text:
            print(f"{SPEC_PATH} is stale: regenerate it with `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{SPEC_PATH} is up to date")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
