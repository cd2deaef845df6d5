from decimal import Decimal

import pytest

from openmonetize.billing.money import amount, quantize, total


def test_floats_are_refused():
    with pytest.raises(TypeError, match="never float"):
        amount(0.1)
    with pytest.raises(TypeError):
        amount(True)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "abc", ""])
def test_non_numbers_are_refused(text):
    with pytest.raises(ValueError):
        amount(text)


def test_quantize_rounds_half_to_even_at_12_places():
    assert quantize(Decimal("0.0000000000005")) == Decimal("0.000000000000")
    assert quantize(Decimal("0.0000000000015")) == Decimal("0.000000000002")
    assert quantize(Decimal("-0.0000000000015")) == Decimal("-0.000000000002")


def test_quantize_refuses_what_does_not_fit_decimal_38_12():
    assert quantize(Decimal("9" * 26 + ".5")) == Decimal("9" * 26 + ".5")
    with pytest.raises(OverflowError):
        quantize(Decimal("1" + "0" * 26))


def test_total_is_exact_beyond_28_digits():
    values = [Decimal("12345678901234567890.123456789012"), Decimal("0.000000000001"), Decimal("-1.5")]
    assert total(values) == Decimal("12345678901234567888.623456789013")
