"""ClickHouse's compressed-block framing: HTTP `compress=1` (response) and `decompress=1` (request).

What the Java client and JDBC driver (DBeaver, most BI tools) and clickhouse-go send and expect
by default. A stream is a sequence of blocks, each

    16 bytes  CityHash128 of the rest of the block (ClickHouse's CityHash v1.0.2, not today's CityHash)
     1 byte   method: 0x82 LZ4 (a raw lz4 block, not an lz4 frame), 0x90 ZSTD (a zstd frame), 0x02 none
     4 bytes  compressed size, uint32 LE, counting this 9-byte header
     4 bytes  decompressed size, uint32 LE
     ...      payload

The checksum's two 64-bit halves are written high half first, each little-endian: the order the
JDBC driver's `ClickHouseCityHash.cityHash128` returns them and ClickHouse's CompressedReadBuffer
reads them (tests/unit/deploy/clickhouse_http/test_blocks.py pins vectors taken from the driver).
"""

from __future__ import annotations

import struct

import lz4.block
import zstandard
from clickhouse_cityhash.cityhash import CityHash128

from deploy.clickhouse_http.engine import ClickHouseError

LZ4, ZSTD, NONE = 0x82, 0x90, 0x02
METHOD_NAMES = {LZ4: "LZ4", ZSTD: "ZSTD", NONE: "NONE"}
CHECKSUM_SIZE = 16
HEADER_SIZE = 9  # method + compressed size + decompressed size
# ClickHouse's own limits (DBMS_MAX_COMPRESSED_SIZE) and the uncompressed size of the blocks it
# writes (DBMS_DEFAULT_BUFFER_SIZE).
MAX_BLOCK_SIZE = 0x40000000
BLOCK_DATA_SIZE = 1 << 20

_HEADER = struct.Struct("<BII")
_MASK64 = (1 << 64) - 1


def checksum(block: bytes | memoryview) -> bytes:
    """The 16 checksum bytes of `block` (method byte, sizes and payload)."""
    value = CityHash128(bytes(block))
    return struct.pack("<QQ", value >> 64, value & _MASK64)


def encode(data: bytes, method: int = LZ4) -> bytes:
    """`data` as one framed block (the caller keeps blocks to at most BLOCK_DATA_SIZE bytes)."""
    if method == LZ4:
        payload = lz4.block.compress(data, store_size=False)
    elif method == ZSTD:
        payload = zstandard.ZstdCompressor(level=1).compress(data)
    elif method == NONE:
        payload = bytes(data)
    else:
        raise ValueError(f"unknown compression method 0x{method:02x}")
    block = _HEADER.pack(method, HEADER_SIZE + len(payload), len(data)) + payload
    return checksum(block) + block


class Encoder:
    """Frames a response as ClickHouse does for `compress=1`: LZ4 blocks of at most 1 MiB of data.

    Same interface as codecs.compressor's objects (compress, flush), so Content-Encoding can wrap it.
    """

    def __init__(self, method: int = LZ4) -> None:
        self.method = method
        self.blocks = 0  # blocks written, for the request log

    def compress(self, data: bytes) -> bytes:
        view = memoryview(data)
        out = [encode(view[i : i + BLOCK_DATA_SIZE], self.method) for i in range(0, len(view), BLOCK_DATA_SIZE)]
        self.blocks += len(out)
        return b"".join(out)

    def flush(self) -> bytes:
        return b""


def _error(code: int, name: str, text: str) -> ClickHouseError:
    return ClickHouseError(code, f"Cannot read the request body's compressed blocks (decompress=1): {text}", name)


class Decoder:
    """Incremental reader of a `decompress=1` request body: feed() the bytes as they arrive, get the
    data of every complete block back; finish() fails on a body cut inside a block.

    `verify=False` is ClickHouse's `http_native_compression_disable_checksumming_on_decompress=1`.
    """

    def __init__(self, verify: bool = True) -> None:
        self.verify = verify
        self.blocks = 0
        self._buffer = bytearray()
        self._offset = 0  # bytes of the stream before _buffer, for error messages

    def feed(self, data: bytes) -> bytes:
        buf = self._buffer
        buf += data
        out = []
        pos = 0
        try:
            while len(buf) - pos >= CHECKSUM_SIZE + HEADER_SIZE:
                method, size, data_size = _HEADER.unpack_from(buf, pos + CHECKSUM_SIZE)
                at = self._offset + pos
                if size < HEADER_SIZE or size > MAX_BLOCK_SIZE or data_size > MAX_BLOCK_SIZE:
                    raise _error(39, "TOO_LARGE_SIZE_COMPRESSED",
                                 f"the block at byte {at} declares {size} compressed and {data_size} decompressed "
                                 f"bytes (at most {MAX_BLOCK_SIZE}; compressed at least {HEADER_SIZE}). The body is "
                                 "most likely not in ClickHouse's compressed-block format.")
                end = pos + CHECKSUM_SIZE + size
                if len(buf) < end:
                    break
                block = bytes(buf[pos + CHECKSUM_SIZE : end])
                expected = bytes(buf[pos : pos + CHECKSUM_SIZE])
                if self.verify and (actual := checksum(block)) != expected:
                    raise _error(40, "CHECKSUM_DOESNT_MATCH",
                                 f"checksum doesn't match in the block at byte {at}: the block says {expected.hex()}, "
                                 f"its content hashes to {actual.hex()} (CityHash128 v1.0.2 of the method byte, sizes "
                                 "and payload). Corrupted data, or another hash.")
                out.append(_decompress(method, memoryview(block)[HEADER_SIZE:], data_size, at))
                self.blocks += 1
                pos = end
        finally:
            del buf[:pos]
            self._offset += pos
        return b"".join(out)

    def finish(self) -> None:
        if self._buffer:
            raise _error(32, "ATTEMPT_TO_READ_AFTER_EOF",
                         f"the body ends inside a block: {len(self._buffer)} bytes after byte {self._offset} do not "
                         "make a whole block.")


def _decompress(method: int, payload: memoryview, size: int, at: int) -> bytes:
    try:
        if method == LZ4:
            data = lz4.block.decompress(payload, uncompressed_size=size)
        elif method == ZSTD:
            data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)
        elif method == NONE:
            data = bytes(payload)
        else:
            raise _error(89, "UNKNOWN_COMPRESSION_METHOD",
                         f"unknown compression method 0x{method:02x} in the block at byte {at} "
                         "(supported: 0x82 LZ4, 0x90 ZSTD, 0x02 none).")
    except ClickHouseError:
        raise
    except Exception as exc:  # lz4.block.LZ4BlockError, zstandard.ZstdError
        raise _error(271, "CANNOT_DECOMPRESS",
                     f"{METHOD_NAMES[method]} block at byte {at} does not decompress: {exc}") from exc
    if len(data) != size:
        raise _error(271, "CANNOT_DECOMPRESS",
                     f"{METHOD_NAMES[method]} block at byte {at} holds {len(data)} bytes, its header says {size}.")
    return data
