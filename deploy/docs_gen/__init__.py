"""The reference pages of docs/reference/, generated from the code so they cannot drift from it.

    python -m deploy.docs_gen --write    # regenerate docs/reference/ (also: make docs)
    python -m deploy.docs_gen --check    # exit 1 if a committed page is stale

Each page comes from one source: the HTTP API from the committed docs/openapi.json, the CLI from
the click group the `openmonetize` console script names, the settings from the `Settings` class,
the metrics from the `Counter(...)`/`Histogram(...)` calls in the source, the topics from the
registry in schemas/topics.py. Nothing reads the environment, so any machine writes the same
pages; tests/unit/deploy/test_docs_gen.py regenerates them in memory and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = ROOT / "docs" / "reference"
REGENERATE = "python -m deploy.docs_gen --write (or: make docs)"


def pages() -> dict[str, Callable[[], str]]:
    """Each page's file name in docs/reference/ and the function that renders it."""
    from deploy.docs_gen import (
        cli_help,
        http_api,
        metric_list,
        settings_table,
        topic_list,
    )

    return {
        "http-api.md": http_api.render,
        "cli.md": cli_help.render,
        "settings.md": settings_table.render,
        "metrics.md": metric_list.render,
        "topics.md": topic_list.render,
    }


def render_all() -> dict[Path, str]:
    return {REFERENCE_DIR / name: render() for name, render in pages().items()}
