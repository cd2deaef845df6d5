import pytest

from api import cursors
from api.errors import ApiError


def test_a_cursor_round_trips_its_key():
    cursor = cursors.encode("2026-11-26T12:00:00.123456+00:00", "le_1")
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # safe in a query string as is
    assert cursors.decode(cursor, 2) == ["2026-11-26T12:00:00.123456+00:00", "le_1"]


@pytest.mark.parametrize("cursor", ["", "!!!", cursors.encode("a"), cursors.encode("a", "b", "c"), "WzEsMl0"])
def test_anything_else_is_invalid_naming_the_cursor(cursor):
    with pytest.raises(ApiError) as refused:
        cursors.decode(cursor, 2)
    assert (refused.value.status, refused.value.code, refused.value.field) == (422, "invalid_cursor", "cursor")
