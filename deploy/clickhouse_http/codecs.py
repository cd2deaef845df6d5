"""HTTP body compression, as ClickHouse's HTTP interface speaks it.

Request bodies (Content-Encoding) are decoded incrementally. Clients send a *sequence* of
compressed members: clickhouse-connect writes one lz4 frame or zstd frame per Native block, so a
decoder that stops at the end of the first frame silently drops every block after it. The
decoder below restarts on the unused tail until the input is exhausted.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Any

import lz4.frame
import zstandard

from deploy.clickhouse_http.engine import ClickHouseError


def _zlib(wbits: int) -> Callable[[], Any]:
    return lambda: zlib.decompressobj(wbits=wbits)


_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "gzip": _zlib(16 + zlib.MAX_WBITS),
    "deflate": _zlib(zlib.MAX_WBITS),
    "lz4": lz4.frame.LZ4FrameDecompressor,
    "zstd": lambda: zstandard.ZstdDecompressor().decompressobj(),
    "xz": lzma.LZMADecompressor,
    "bz2": bz2.BZ2Decompressor,
}


class _Lz4Compressor:
    """One lz4 frame over the whole response (python-lz4's compressor needs begin())."""

    def __init__(self) -> None:
        self._frame = lz4.frame.LZ4FrameCompressor()
        self._started = False

    def compress(self, data: bytes) -> bytes:
        head = b"" if self._started else self._frame.begin()
        self._started = True
        return head + self._frame.compress(data)

    def flush(self) -> bytes:
        return (b"" if self._started else self._frame.begin()) + self._frame.flush()


_COMPRESSORS: dict[str, Callable[[int], Any]] = {
    "gzip": lambda level: zlib.compressobj(level, wbits=16 + zlib.MAX_WBITS),
    "deflate": lambda level: zlib.compressobj(level),
    "lz4": lambda _level: _Lz4Compressor(),
    "zstd": lambda _level: zstandard.ZstdCompressor().compressobj(),
    "xz": lambda _level: lzma.LZMACompressor(),
    "bz2": lambda _level: bz2.BZ2Compressor(),
}


def _unsupported(encoding: str) -> ClickHouseError:
    return ClickHouseError(
        48,
        f"Unknown HTTP content encoding '{encoding}'. Supported: {', '.join(sorted(_DECOMPRESSORS))}",
        "NOT_IMPLEMENTED",
    )


class Decoder:
    """Incremental decoder of a (possibly multi-member) compressed request body."""

    def __init__(self, encoding: str | None) -> None:
        encoding = (encoding or "").strip().lower()
        if encoding in ("", "identity"):
            self._factory = None
        elif encoding in _DECOMPRESSORS:
            self._factory = _DECOMPRESSORS[encoding]
        else:
            raise _unsupported(encoding)
        self._current = None

    def feed(self, data: bytes) -> bytes:
        if self._factory is None or not data:
            return data
        out = []
        try:
            while data:
                if self._current is None:
                    self._current = self._factory()
                out.append(self._current.decompress(data))
                if not self._current.eof:
                    break
                data = self._current.unused_data
                self._current = None
        except Exception as exc:
            raise ClickHouseError(271, f"Cannot decompress request body: {exc}", "CANNOT_DECOMPRESS") from exc
        return b"".join(out)

    def finish(self) -> None:
        """Fail on a body cut in the middle of a compressed member."""
        if self._current is not None:
            raise ClickHouseError(271, "Cannot decompress request body: truncated input", "CANNOT_DECOMPRESS")


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The first encoding of the client's Accept-Encoding list that we can produce."""
    for item in (accept_encoding or "").split(","):
        name = item.split(";")[0].strip().lower()
        if name in _COMPRESSORS:
            return name
    return None


def compressor(encoding: str, level: int = 3) -> Any:
    """An object with compress(bytes) -> bytes and flush() -> bytes."""
    return _COMPRESSORS[encoding](level)
