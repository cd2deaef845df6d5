"""Server-sent events cut out of a byte stream whose chunks end anywhere."""

from __future__ import annotations

import re

_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class EventSplitter:
    """`feed` returns the complete events (each with its blank-line terminator) of what has
    arrived so far; a partial event waits for the next chunk."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        events = []
        start = 0
        for end in _END.finditer(data):
            events.append(data[start:end.end()])
            start = end.end()
        self._buffer = data[start:]
        return events

    def rest(self) -> bytes:
        """What arrived after the last complete event (a stream cut short)."""
        return self._buffer


def data_of(event: bytes) -> bytes:
    """The event's data: its `data:` lines joined by newlines, one leading space dropped."""
    lines = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines)
