"""ClickHouse's compressed-block framing (deploy/clickhouse_http/blocks.py).

The checksum vectors were printed by ClickHouse's JDBC driver 0.10.0 (its own
`ClickHouseCityHash.cityHash128`, through tests/integration/jdbc/ClickHouseJdbc.java `cityhash`);
tests/integration/test_clickhouse_clients.py compares against the driver live as well. The lengths
cross every branch of CityHash128 v1.0.2 (0-16, 17-32, 33-64, over 64, over 128 bytes).
"""

from __future__ import annotations

import os
import struct

import pytest

from deploy.clickhouse_http import blocks
from deploy.clickhouse_http.engine import ClickHouseError

DATA = bytes((i * 7 + 3) % 256 for i in range(1000))
DRIVER_CHECKSUMS = [
    (0, "2b9ac064fc9df03d291ee592c340b53c"),
    (3, "8669a11d6bfa08312d6150c2f01b3032"),
    (16, "792b9c7fab9ce7217a3f3135c21556a3"),
    (17, "4c6eeafa13bbd50cfebbf6789171bf32"),
    (32, "e9c7ee0484abcf67ee61bdf5273ccd80"),
    (33, "61db6d5b1dbf4b09af7afa8ed52b5710"),
    (64, "ef2a43c18ed512d41432d8bb0c635457"),
    (65, "3899372af9d48ab36d2188be0b3b6fc8"),
    (128, "314d69d6100bd011f4df3fb8e5b98f10"),
    (300, "11ae28450c6a30d6ef1725ab1ce5c237"),
    (1000, "7323377b8c534b982087686bc5cbe6f6"),
]


@pytest.mark.parametrize(("length", "expected"), DRIVER_CHECKSUMS)
def test_checksum_is_the_jdbc_drivers(length, expected):
    assert blocks.checksum(DATA[:length]).hex() == expected


def _decode(stream: bytes, piece: int, verify: bool = True) -> bytes:
    decoder = blocks.Decoder(verify)
    out = b"".join(decoder.feed(stream[i : i + piece]) for i in range(0, len(stream), piece))
    decoder.finish()
    return out


@pytest.mark.parametrize("method", [blocks.LZ4, blocks.ZSTD, blocks.NONE])
def test_round_trip_in_blocks_of_at_most_one_mib_whatever_the_pieces(method):
    data = os.urandom(5000) + b"usage " * 400_000  # 2.4 MB: three blocks
    stream = blocks.Encoder(method).compress(data)
    method_bytes = []
    pos = 0
    while pos < len(stream):
        m, size, data_size = struct.unpack_from("<BII", stream, pos + 16)
        method_bytes.append(m)
        assert data_size <= blocks.BLOCK_DATA_SIZE
        pos += 16 + size
    assert method_bytes == [method] * 3
    for piece in (1, 999, len(stream)):  # split inside checksums, headers and payloads
        assert _decode(stream, piece) == data


def test_an_empty_body_is_no_block():
    assert blocks.Encoder().compress(b"") == b""
    assert _decode(b"", 10) == b""


def _corrupt(stream: bytes, at: int) -> bytes:
    wrong = bytearray(stream)
    wrong[at] ^= 0x01
    return bytes(wrong)


def test_a_wrong_checksum_is_refused_naming_both_hashes_unless_checking_is_off():
    stream = blocks.encode(b"INSERT data " * 100, blocks.LZ4)
    for at in (0, 16 + 9 + 3):  # the checksum itself, the payload
        wrong = _corrupt(stream, at)
        with pytest.raises(ClickHouseError) as raised:
            _decode(wrong, 7)
        assert raised.value.code == 40 and raised.value.name == "CHECKSUM_DOESNT_MATCH"
        said, hashed = wrong[:16].hex(), blocks.checksum(wrong[16:]).hex()
        assert f"block at byte 0: the block says {said}, its content hashes to {hashed}" in raised.value.text
    assert _decode(_corrupt(stream, 0), 7, verify=False) == b"INSERT data " * 100


def test_the_second_block_is_named_by_its_offset():
    first, second = blocks.encode(b"a" * 50), blocks.encode(b"b" * 50)
    with pytest.raises(ClickHouseError, match=f"block at byte {len(first)}"):
        _decode(first + _corrupt(second, 5), 1000)


def test_unknown_method_truncated_body_and_absurd_sizes_are_refused():
    block = bytearray(blocks.encode(b"x" * 100, blocks.NONE))
    block[16] = 0x91  # ClickHouse's "multiple codecs": not something a client sends
    block[:16] = blocks.checksum(bytes(block[16:]))
    with pytest.raises(ClickHouseError) as raised:
        _decode(bytes(block), 50)
    assert raised.value.code == 89 and "0x91" in raised.value.text

    whole = blocks.encode(b"y" * 100)
    with pytest.raises(ClickHouseError) as raised:
        _decode(whole[:-1], 50)
    assert raised.value.code == 32 and "ends inside a block" in raised.value.text

    with pytest.raises(ClickHouseError) as raised:
        _decode(b"SELECT 1 FORMAT TabSeparated -- not framed at all\n", 100)
    assert raised.value.code == 39 and "not in ClickHouse's compressed-block format" in raised.value.text


def test_a_payload_that_does_not_decompress_to_its_declared_size_is_refused():
    payload = b"\x00" * 20
    for method in (blocks.LZ4, blocks.ZSTD):
        header = struct.pack("<BII", method, blocks.HEADER_SIZE + len(payload), 100)
        with pytest.raises(ClickHouseError) as raised:
            _decode(blocks.checksum(header + payload) + header + payload, 64)
        assert raised.value.code == 271 and blocks.METHOD_NAMES[method] in raised.value.text
