"""Just enough SQL lexing to split an HTTP request the way ClickHouse's HTTP handler does.

ClickHouse reads `query` URL parameter + newline + body as one stream. For
`INSERT ... FORMAT <fmt>` (or `... VALUES`) the data starts right after the format name, so the
body can be streamed into the engine instead of being parsed as SQL. We only look at top-level
words (outside strings, quoted identifiers, comments and parentheses).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTES = {"'": "'", '"': '"', "`": "`"}


def _top_level_words(text: str, any_depth: bool = False) -> Iterator[tuple[str, int, int]]:
    """(word, start, end) for every identifier-like word and `;` at parenthesis depth 0 (or at any
    depth), outside strings, quoted identifiers and comments."""
    i, depth, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in _QUOTES:
            i += 1
            while i < n and text[i] != _QUOTES[c]:
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif text.startswith("--", i) or c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == "(":
            depth, i = depth + 1, i + 1
        elif c == ")":
            depth, i = max(depth - 1, 0), i + 1
        elif c == ";" and depth == 0:
            yield ";", i, i + 1
            i += 1
        elif c.isalpha() or c == "_":
            m = _WORD.match(text, i)
            assert m is not None
            if depth == 0 or any_depth:
                yield m.group(0), m.start(), m.end()
            i = m.end()
        else:
            i += 1


@dataclass(frozen=True)
class InsertSplit:
    """`INSERT INTO t (a, b) FORMAT CSV\\n<data>` as statement, format and data offset."""

    statement: str  # without the FORMAT clause, as chdb's send_insert wants it
    fmt: str
    data_start: int


def split_insert(text: str) -> InsertSplit | None:
    """Split an INSERT that carries its data inline; None for any other query (INSERT SELECT too)."""
    words = _top_level_words(text)
    first = next(words, None)
    if first is None or first[0].upper() != "INSERT":
        return None
    for word, start, end in words:
        upper = word.upper()
        if upper in ("SELECT", "WITH"):
            return None
        if upper == "VALUES":
            return InsertSplit(text[:start], "Values", end)
        if upper == "FORMAT":
            name = next(words, None)
            if name is None:
                return None
            return InsertSplit(text[:start], name[0], _skip_to_data(text, name[2]))
    return None


def _skip_to_data(text: str, pos: int) -> int:
    """Data begins after blanks and at most one line break following the format name."""
    while pos < len(text) and text[pos] in " \t\f":
        pos += 1
    if text.startswith("\r\n", pos):
        return pos + 2
    if pos < len(text) and text[pos] == "\n":
        return pos + 1
    return pos


def words(text: str) -> Iterator[str]:
    """Every unquoted word of the text, inside parentheses too."""
    return (word for word, _start, _end in _top_level_words(text, any_depth=True))


def strip_format(query: str, known: frozenset[str]) -> str:
    """The query without its top-level `FORMAT <name>` clause (to wrap it in EXPLAIN)."""
    found = None
    words_ = _top_level_words(query)
    for word, start, _end in words_:
        if word.upper() == "FORMAT":
            name = next(words_, None)
            if name is not None and name[0].lower() in known:
                found = (start, name[2])
    return query if found is None else query[: found[0]] + query[found[1] :]


def output_format(query: str, known: frozenset[str]) -> str | None:
    """The format named by the query's own top-level FORMAT clause, if any."""
    found = None
    words = _top_level_words(query)
    for word, _start, _end in words:
        if word.upper() == "FORMAT":
            name = next(words, None)
            if name is not None and name[0].lower() in known:
                found = name[0]
    return found


_READ_ONLY = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})


@dataclass(frozen=True)
class Statement:
    keyword: str  # first word, upper case ("" for an empty query)
    count: int  # statements in the text; the HTTP interface accepts one

    @property
    def read_only(self) -> bool:
        """Produces a result and changes nothing (what a GET request may run)."""
        return self.keyword in _READ_ONLY

    @property
    def keeps_session_state(self) -> bool:
        return self.read_only or self.keyword == "INSERT"


def describe(query: str) -> Statement:
    keyword, count, pending = "", 0, False
    for word, _start, _end in _top_level_words(query):
        if word == ";":
            pending = False
            continue
        if not keyword:
            keyword = word.upper()
        if not pending:
            count, pending = count + 1, True
    return Statement(keyword, count)
