"""firmware.heat.thermistor: the NTC table, conversion, orientation, inverse."""

import math

from firmware.heat import thermistor as th


def _beta_mc(code):
    """The generating formula of the module docstring (floats: test side only)."""
    if code <= 0:
        return 150000
    if code >= 65535:
        return -55000
    r = 10000.0 * code / (65535.0 - code)
    k = 1.0 / (1.0 / 298.15 + math.log(r / 10000.0) / 3950.0)
    mc = int(round((k - 273.15) * 1000))
    return max(-55000, min(150000, mc))


def test_table_matches_its_generating_formula():
    assert len(th.TABLE) == 129
    for i in range(129):
        expected = _beta_mc(512 * i)
        assert abs(th.TABLE[i] - expected) <= 1, (i, th.TABLE[i], expected)  # <= 1: libm rounding


def test_known_points_of_the_default_divider():
    # fixed 10 k to 3.3 V, NTC to ground: 25 C is mid-scale, hotter reads lower
    assert abs(th.code_to_mc(32768) - 25000) <= 2
    assert abs(th.code_to_mc(22706) - 40000) <= 3
    assert abs(th.code_to_mc(20964) - 43000) <= 3
    assert abs(th.code_to_mc(19860) - 45000) <= 3
    assert th.code_to_mc(20000) > th.code_to_mc(21000)


def test_interpolation_error_is_small_in_the_working_range():
    worst = 0
    for code in range(6500, 56000, 97):
        exact = _beta_mc(code)
        if 15000 <= exact <= 50000:
            err = abs(th.code_to_mc(code) - exact)
            worst = max(worst, err)
    assert worst <= 5, worst


def test_monotone_over_the_whole_range():
    last = th.code_to_mc(0)
    for code in range(37, 65536, 37):
        value = th.code_to_mc(code)
        assert value <= last, code
        last = value


def test_rails_read_as_open_and_short():
    assert th.code_to_mc(65535) == -55000  # open NTC: full scale, "very cold"
    assert th.code_to_mc(0) == 150000  # shorted NTC: zero, "very hot"
    assert th.code_to_mc(70000) == -55000  # clamped
    assert th.code_to_mc(-5) == 150000


def test_mirror_divider_reads_the_same_temperature():
    for code in (1000, 19860, 22706, 32768, 50000, 65535):
        assert th.code_to_mc(65535 - code, th.DIVIDER_NTC_HIGH) == th.code_to_mc(code, th.DIVIDER_NTC_LOW)
    # open NTC on the high side reads 0 -> still "very cold"
    assert th.code_to_mc(0, th.DIVIDER_NTC_HIGH) == -55000


def test_inverse_round_trips():
    for mc in range(-10000, 85001, 250):
        code = th.mc_to_code(mc)
        assert abs(th.code_to_mc(code) - mc) <= 3, (mc, code)
        high = th.mc_to_code(mc, th.DIVIDER_NTC_HIGH)
        assert high == 65535 - code
    assert th.mc_to_code(200000) == 0
    assert th.mc_to_code(-60000) == 65535
