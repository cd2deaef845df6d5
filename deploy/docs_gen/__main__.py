"""`python -m deploy.docs_gen [--write | --check]`: see the package docstring."""

from __future__ import annotations

import argparse
import sys

from deploy.docs_gen import REFERENCE_DIR, REGENERATE, render_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.docs_gen",
                                     description="Generate the reference pages of docs/reference/ from the code.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the pages into docs/reference/")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed page differs from the code")
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.write:
        REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
        for path, text in rendered.items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote docs/reference/{path.name}")
        return 0
    if args.check:
        stale = [path for path, text in rendered.items()
                 if not path.exists() or path.read_text(encoding="utf-8") != text]
        for path in stale:
            print(f"docs/reference/{path.name} is stale: regenerate it with `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered.items():
        sys.stdout.write(f"<!-- docs/reference/{path.name} -->\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
