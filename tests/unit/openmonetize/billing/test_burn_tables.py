from datetime import datetime, timezone
from decimal import Decimal

import pytest

from openmonetize.billing.burn_tables import BurnTable, RulesError, in_force, parse_rules


def table(version: int, day: int, rules: dict) -> BurnTable:
    return BurnTable("bt_1", "cus_a", "standard", version, datetime(2026, 11, day, tzinfo=timezone.utc), parse_rules(rules))


def test_seed_shape_parses_to_decimals():
    rules = parse_rules({"gpt-4o": {"input_tokens": "2.5", "output_tokens": 10, "per_unit": 1000}})
    assert rules["gpt-4o"].input_tokens == Decimal("2.5")
    assert rules["gpt-4o"].output_tokens == Decimal(10) and rules["gpt-4o"].per_unit == Decimal(1000)


def test_every_problem_is_reported_with_its_path():
    with pytest.raises(RulesError) as raised:
        parse_rules({
            "gpt-4o": {"input_tokens": "-1", "per_unit": 0, "output_tokenz": 3},
            "dall-e-3": {"images": {"1024x1024": "x"}},
            "empty": {},
            "floaty": {"unit": 0.5},
        })
    problems = dict(raised.value.problems)
    assert "must be >= 0" in problems["rules.gpt-4o.input_tokens"]
    assert "must be > 0" in problems["rules.gpt-4o.per_unit"]
    assert "unknown rate" in problems["rules.gpt-4o.output_tokenz"]
    assert "not a decimal number" in problems["rules.dall-e-3.images.1024x1024"]
    assert "has no rate" in problems["rules.empty"]
    assert "never float" in problems["rules.floaty.unit"]


def test_rules_must_be_a_non_empty_object():
    with pytest.raises(RulesError, match="non-empty object"):
        parse_rules({})


def test_rule_lookup_order_model_then_event_type_with_unit_then_event_type_then_default():
    t = table(1, 1, {
        "gpt-4o": {"input_tokens": 1},
        "CUSTOM:requests": {"unit": 2},
        "CUSTOM": {"unit": 3},
        "default": {"input_tokens": 4},
    })
    assert t.rule_for("TOKEN_USAGE", "gpt-4o", None)[0] == "gpt-4o"
    assert t.rule_for("CUSTOM", None, "requests")[0] == "CUSTOM:requests"
    assert t.rule_for("CUSTOM", None, "seconds")[0] == "CUSTOM"
    assert t.rule_for("TOKEN_USAGE", "unknown-model", None)[0] == "default"
    assert table(1, 1, {"gpt-4o": {"input_tokens": 1}}).rule_for("TOKEN_USAGE", "o3", None) is None


SEED_RULES = {  # the seed README's burnTables.create example
    "gpt-4-turbo": {"input_tokens": Decimal("1.5"), "output_tokens": Decimal("10.0"), "per_unit": 1000},
    "claude-3.5-sonnet": {"input_tokens": Decimal("0.8"), "output_tokens": Decimal("4.0"), "per_unit": 1000},
}


@pytest.mark.parametrize("model, key", [
    ("gpt-4-turbo", "gpt-4-turbo"),
    ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),  # the model OpenAI's answer names
    ("gpt-4-turbo-preview", "gpt-4-turbo"),
    ("claude-3.5-sonnet", "claude-3.5-sonnet"),
    ("claude-3-5-sonnet", "claude-3.5-sonnet"),  # the provider-price dataset's id
    ("claude-3-5-sonnet-20241022", "claude-3.5-sonnet"),  # what Anthropic's API names
    ("Claude-3.5-Sonnet", "claude-3.5-sonnet"),
    ("gpt-4", None),  # another model: never matched by prefix
    ("gpt-4o", None),
    ("claude-3-opus", None),
])
def test_a_rule_keyed_by_one_spelling_of_a_model_rates_every_spelling(model, key):
    found = table(1, 1, SEED_RULES).rule_for("TOKEN_USAGE", model, None)
    assert (found[0] if found else None) == key


def test_an_exact_key_wins_over_another_spelling_and_the_dataset_id_over_others():
    t = table(1, 1, {"claude-3.5-sonnet": {"input_tokens": 1}, "claude-3-5-sonnet-20241022": {"input_tokens": 2},
                     "claude-3-5-sonnet": {"input_tokens": 3}, "default": {"input_tokens": 4}})
    assert t.rule_for("TOKEN_USAGE", "claude-3-5-sonnet-20241022", None)[0] == "claude-3-5-sonnet-20241022"
    assert t.rule_for("TOKEN_USAGE", "claude-3-5-sonnet-latest", None)[0] == "claude-3-5-sonnet"
    assert t.rule_for("TOKEN_USAGE", "unknown", None)[0] == "default"


def test_an_alias_comes_before_the_event_type_rules():
    t = table(1, 1, {"gpt-4-turbo": {"input_tokens": 1}, "TOKEN_USAGE": {"input_tokens": 2}})
    assert t.rule_for("TOKEN_USAGE", "gpt-4-turbo-2024-04-09", None)[0] == "gpt-4-turbo"
    assert t.rule_for("TOKEN_USAGE", "gpt-4o", None)[0] == "TOKEN_USAGE"


def test_image_rate_prefers_size_and_quality_then_size_then_flat():
    rule = parse_rules({"img": {"images": {"1024x1024": 4, "1024x1024:hd": 8}, "image": 2}})["img"]
    assert rule.image_rate("1024x1024", "hd") == 8
    assert rule.image_rate("1024x1024", "standard") == 4
    assert rule.image_rate("512x512", None) == 2


def test_version_in_force_at_a_timestamp():
    v1, v2, v3 = table(1, 1, {"default": {"unit": 1}}), table(2, 10, {"default": {"unit": 2}}), table(3, 20, {"default": {"unit": 3}})
    assert in_force([v3, v1, v2], datetime(2026, 11, 15, tzinfo=timezone.utc)) is v2
    assert in_force([v1, v2, v3], datetime(2026, 11, 10, tzinfo=timezone.utc)) is v2  # effective_from is inclusive
    assert in_force([v2, v3], datetime(2026, 11, 5, tzinfo=timezone.utc)) is None
