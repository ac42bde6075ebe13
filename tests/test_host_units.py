"""mA text <-> integer µA, exact both ways (no float on the path)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.units import (
    AmpParseError,
    CelsiusParseError,
    format_celsius,
    format_duration_ms,
    format_ma,
    format_milli,
    parse_celsius,
    parse_ma,
)


@pytest.mark.parametrize(
    "text, amp_ua",
    [("12", 12000), ("12.5", 12500), ("0.1", 100), ("0.001", 1), ("60", 60000), ("15 mA", 15000), ("7.25mA", 7250)],
)
def test_parse_is_exact(text, amp_ua):
    assert parse_ma(text) == amp_ua


@pytest.mark.parametrize("text", ["abc", "", "-1", "+1", "1e3", "12.", ".5", "1,5", "nan", "inf", "0x10", "1.0001", "1 A"])
def test_parse_rejects_anything_but_plain_decimals(text):
    with pytest.raises(AmpParseError) as caught:
        parse_ma(text)
    assert repr(text) in str(caught.value)


def test_too_many_decimals_names_the_resolution():
    with pytest.raises(AmpParseError, match="1 µA"):
        parse_ma("1.0005")


@pytest.mark.parametrize("amp_ua, text", [(12500, "12.5 mA"), (40, "0.04 mA"), (15000, "15.0 mA"), (0, "0.0 mA"), (1, "0.001 mA")])
def test_format(amp_ua, text):
    assert format_ma(amp_ua) == text


@given(st.integers(min_value=0, max_value=999_999_999))
def test_round_trip(amp_ua):
    assert parse_ma(format_ma(amp_ua)) == amp_ua
    assert parse_ma("%d.%03d" % (amp_ua // 1000, amp_ua % 1000)) == amp_ua


@pytest.mark.parametrize(
    "value, unit, text",
    [(28000, "µC", "28.0 µC"), (25, "mJ", "0.025 mJ"), (2000, "mA/cm²", "2.0 mA/cm²"), (-1500, "µC", "-1.5 µC")],
)
def test_format_milli_is_exact_in_any_unit(value, unit, text):
    assert format_milli(value, unit) == text


@pytest.mark.parametrize("ms, text", [(0, "0:00"), (59999, "0:59"), (125000, "2:05"), (3600000, "60:00"), (-5, "0:00")])
def test_format_duration_ms(ms, text):
    assert format_duration_ms(ms) == text


@pytest.mark.parametrize("text, temp_mc", [("40", 40000), ("41.5", 41500), ("42.125 °C", 42125), ("38C", 38000),
                                           (" 0.001 ", 1)])
def test_parse_celsius_is_exact(text, temp_mc):
    assert parse_celsius(text) == temp_mc
    assert parse_celsius(format_celsius(temp_mc)) == temp_mc


@pytest.mark.parametrize("text", ["", "-1", "4e1", "41.0001", "hot", "1000", "40 F"])
def test_parse_celsius_rejects_anything_but_plain_decimals(text):
    with pytest.raises(CelsiusParseError):
        parse_celsius(text)
