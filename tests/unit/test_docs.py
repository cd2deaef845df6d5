"""The README and docs/ hold together: every relative link lands on a file (and a heading) of the
repository, nothing links outside it, the README stays one screenful, and every docs/ path the
code mentions exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")])
README_MAX_BYTES = 12_000
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
AUTOLINK = re.compile(r"<(https?://[^>]+)>")
CODE_SOURCES = ("*.py", "*.yaml", "*.yml", "*.toml", "*.ts", "Makefile", "*.sh")
CODE_DIRS = ("openmonetize", "api", "schemas", "stream_processors", "sinks", "producers", "deploy", "tests", "sdk")


def prose(page: Path) -> str:
    """The page without its fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    found = set()
    for heading in re.findall(r"^#+ (.+?)\s*$", text, re.MULTILINE):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


def links() -> list[tuple[Path, str]]:
    return [(page, target) for page in PAGES for target in LINK.findall(prose(page))]


def test_there_are_pages_and_links():
    assert (ROOT / "docs" / "getting-started.md") in PAGES and len(links()) > 50


def test_every_relative_link_lands_on_a_file_of_the_repository():
    broken = []
    for page, target in links():
        if re.match(r"[a-z]+:", target):
            continue  # external: the next test refuses those
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if ROOT not in resolved.parents and resolved != ROOT or not resolved.exists():
            broken.append(f"{page.relative_to(ROOT)}: {target}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "links to nothing:\n" + "\n".join(broken)


def test_nothing_links_outside_the_repository():
    outside = [f"{page.relative_to(ROOT)}: {target}" for page, target in links() if re.match(r"[a-z]+:", target)]
    outside += [f"{page.relative_to(ROOT)}: {url}" for page in PAGES for url in AUTOLINK.findall(prose(page))]
    assert not outside, "links outside the repository:\n" + "\n".join(outside)


def test_the_readme_is_one_screenful():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move detail into docs/ (at most {README_MAX_BYTES})"


def test_every_docs_path_the_code_mentions_exists():
    mentioned = re.compile(r"\bdocs/[\w./-]+?\.(?:md|json)\b")
    missing = []
    for directory in CODE_DIRS:
        for pattern in CODE_SOURCES:
            for path in (ROOT / directory).rglob(pattern):
                if "node_modules" in path.parts:
                    continue
                for name in set(mentioned.findall(path.read_text(encoding="utf-8", errors="replace"))):
                    if not (ROOT / name).exists():
                        missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, "docs paths that do not exist:\n" + "\n".join(sorted(missing))
