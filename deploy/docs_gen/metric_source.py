"""Every Prometheus metric the project's processes define, read from the source (no imports, so
no process is started): the metrics reference page, the naming-scheme test and the Grafana
dashboard test all read this one list."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("openmonetize", "api", "stream_processors", "sinks", "producers", "deploy", "schemas")
KINDS = ("Counter", "Gauge", "Histogram", "Summary", "Info")


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    kind: str
    labels: tuple[str, ...]
    where: str  # path:line
    help: str = ""

    def series(self) -> set[str]:
        """The names a scrape shows for it (what PromQL selects)."""
        base = self.name.removesuffix("_total") if self.kind == "Counter" else self.name
        return {
            "Counter": {f"{base}_total"},
            "Gauge": {base},
            "Histogram": {f"{base}_bucket", f"{base}_sum", f"{base}_count"},
            "Summary": {base, f"{base}_sum", f"{base}_count"},
            "Info": {f"{base}_info"},
        }[self.kind]


@lru_cache(maxsize=1)
def definitions() -> tuple[MetricDefinition, ...]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                kind = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if kind not in KINDS or not node.args or not isinstance(node.args[0], ast.Constant):
                    continue
                if not isinstance(node.args[0].value, str) or len(node.args) < 2:
                    continue  # collections.Counter(...) and friends
                found.append(MetricDefinition(node.args[0].value, kind, _labels(node),
                                              f"{path.relative_to(ROOT)}:{node.lineno}", _help(node.args[1])))
    return tuple(found)


def _labels(call: ast.Call) -> tuple[str, ...]:
    given = call.args[2] if len(call.args) > 2 else next(
        (k.value for k in call.keywords if k.arg == "labelnames"), None)
    if isinstance(given, (ast.List, ast.Tuple)):
        return tuple(e.value for e in given.elts if isinstance(e, ast.Constant))
    return ()


def _help(node: ast.expr) -> str:
    """The help text when the source spells it as a literal (implicitly joined strings included)."""
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""
