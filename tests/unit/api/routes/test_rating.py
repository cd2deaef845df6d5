"""`POST /v1/rating/calculate` without `event_type`: the event type inferred from the units."""

from __future__ import annotations

import msgspec
import pytest

from api.errors import ApiError
from api.routes.rating import RatingIn, event_type_of


def body(**fields) -> RatingIn:
    return msgspec.convert(fields, RatingIn)


@pytest.mark.parametrize("fields, event_type", [
    # the seed's rating.calculate example
    ({"provider": "openai", "model": "gpt-4-turbo", "input_tokens": 1000, "output_tokens": 500}, "TOKEN_USAGE"),
    ({"model": "gpt-4o", "output_tokens": 5}, "TOKEN_USAGE"),
    ({"model": "dall-e-3", "image_count": 1, "image_size": "1024x1024", "quality": "hd"}, "IMAGE_GENERATION"),
    ({"unit_type": "pages", "quantity": 5}, "CUSTOM"),
    ({"quantity": 5}, "CUSTOM"),
    # given: kept, even where the units would say otherwise
    ({"event_type": "EMBEDDING", "model": "text-embedding-3-small", "input_tokens": 9}, "EMBEDDING"),
    ({"event_type": "AUDIO", "model": "whisper-1", "unit_type": "seconds", "quantity": 30}, "AUDIO"),
])
def test_the_event_type_is_the_given_one_else_inferred_from_the_units(fields, event_type):
    assert event_type_of(body(**fields)) == event_type


@pytest.mark.parametrize("fields, field, says", [
    ({"provider": "openai", "model": "gpt-4-turbo"}, "input_tokens", "no units to rate"),
    ({"event_type": "TOKEN_USAGE", "model": "gpt-4o"}, "input_tokens", "no units to rate"),
    ({"model": "gpt-image-1", "input_tokens": 10, "image_count": 1}, "event_type", "more than one kind"),
    ({"input_tokens": 10, "unit_type": "seconds", "quantity": 3}, "event_type", "give event_type"),
    ({"event_type": "token_usage", "input_tokens": 1}, "event_type", "unknown event type"),
])
def test_no_units_or_units_of_several_kinds_are_refused_naming_the_field(fields, field, says):
    with pytest.raises(ApiError) as refused:
        event_type_of(body(**fields))
    assert (refused.value.status, refused.value.field) == (422, field)
    assert says in refused.value.message


def test_no_units_lists_every_field_that_would_do():
    with pytest.raises(ApiError) as refused:
        event_type_of(body(model="gpt-4o"))
    assert refused.value.details["missing"] == [
        "input_tokens", "output_tokens", "cached_input_tokens", "image_count", "unit_type", "quantity"]
