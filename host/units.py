"""Milliamps at the surface, integer microamps inside.

People type and read mA; the device speaks integer µA. Converting through a
float would turn "0.1" into 99 or 100 µA depending on rounding, so the text is
parsed digit by digit and printed back the same way: exact both ways.

A figure that is not an integer (a device that sent "x", null or a list) is shown as
UNREADABLE ("?"): a view of device data must go on drawing, not raise.
"""

import re

from firmware.protocols.messages import is_int

_MA_TEXT = re.compile(r"^\s*(\d{1,6})(?:\.(\d+))?\s*(?:mA)?\s*$")
_C_TEXT = re.compile(r"^\s*(\d{1,3})(?:\.(\d+))?\s*(?:°?C)?\s*$")


UNREADABLE = "?"
FIGURE_MAX = 10**18  # no figure of this device comes near; past it a value is noise, not a reading


def readable(value):
    """Whether value is a figure the formatters can show: an integer (not a bool) of sane size."""
    return is_int(value) and -FIGURE_MAX <= value <= FIGURE_MAX


class AmpParseError(ValueError):
    """The text is not a plain decimal amount of mA with at most 3 decimals."""


class CelsiusParseError(ValueError):
    """The text is not a plain decimal temperature in °C with at most 3 decimals."""


def parse_ma(text):
    """'12.5' -> 12500 (µA). Accepts an optional 'mA' suffix; rejects signs, exponents, >3 decimals."""
    match = _MA_TEXT.match(str(text))
    if not match:
        raise AmpParseError("%r is not an amount in mA (expected a number like 12 or 12.5)" % (text,))
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > 3:
        raise AmpParseError("%r has more than 3 decimals: the device resolves 0.001 mA (1 µA)" % (text,))
    return int(whole) * 1000 + int((fraction + "000")[:3])


def format_milli(value, unit):
    """An integer count of thousandths of `unit`, exactly: (12500, "mA") -> '12.5 mA'."""
    if not readable(value):
        return UNREADABLE
    sign = "-" if value < 0 else ""
    value = abs(int(value))
    fraction = ("%03d" % (value % 1000)).rstrip("0") or "0"
    return "%s%d.%s %s" % (sign, value // 1000, fraction, unit)


def format_ma(amp_ua):
    """12500 -> '12.5 mA', 40 -> '0.04 mA', 15000 -> '15.0 mA' (exact, no float)."""
    return format_milli(amp_ua, "mA")


def format_duration_ms(ms):
    """125000 -> '2:05' (minutes:seconds, rounded down); 3600000 -> '60:00'."""
    if not readable(ms):
        return UNREADABLE
    seconds = max(0, int(ms)) // 1000
    return "%d:%02d" % (seconds // 60, seconds % 60)


def parse_celsius(text):
    """'41.5' -> 41500 (milli-°C). Accepts an optional 'C' or '°C'; rejects signs, exponents, >3 decimals."""
    match = _C_TEXT.match(str(text))
    if not match:
        raise CelsiusParseError("%r is not a temperature in °C (expected a number like 40 or 41.5)" % (text,))
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > 3:
        raise CelsiusParseError("%r has more than 3 decimals: the device resolves 0.001 °C" % (text,))
    return int(whole) * 1000 + int((fraction + "000")[:3])


def format_celsius(temp_mc):
    """41500 -> '41.5 °C' (exact, no float)."""
    return format_milli(temp_mc, "°C")


def _hundredths(value, per_unit):
    """value / per_unit to exactly two decimals, rounded half away from zero (no float)."""
    if not readable(value):
        return UNREADABLE
    sign = "-" if value < 0 else ""
    hundredths = (abs(int(value)) * 100 + per_unit // 2) // per_unit
    return "%s%d.%02d" % (sign, hundredths // 100, hundredths % 100)


def format_temperature(temp_mc):
    """A measured temperature, always to 0.01 °C: 30013 -> '30.01 °C', 29970 -> '29.97 °C'."""
    text = _hundredths(temp_mc, 1000)
    return text if text == UNREADABLE else text + " °C"


def format_dose(cem43_ms):
    """A thermal dose in CEM43 minutes, always to 0.01 min: 480 -> '0.01 CEM43 min'."""
    text = _hundredths(cem43_ms, 60000)
    return text if text == UNREADABLE else text + " CEM43 min"
