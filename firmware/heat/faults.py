"""Heat fault names (stable strings: protocol, trace and docs use them) and message helpers.

Every message names the sensor, the value and the limit; for a tunable
threshold it also names the HeatConfig parameter to change, in parentheses.
Messages are built only when a fault is raised (the only allocation on the
control path). Temperatures are shown in degrees C with two decimals, ASCII only.
"""

F_HEAT_SLOW = "heat_slow"  # heating too slowly toward the target: sensor detached or heater weak/open
F_RUNAWAY = "runaway"  # fell away below the target while holding, heater driven hard
F_STUCK_ON = "stuck_on"  # temperature rises while the heater is off: switch stuck on
F_OVER_TEMP = "over_temp"  # measured above the hard cutoff
F_SENSOR_OPEN = "sensor_open"  # reads colder than any real pad, N readings in a row
F_SENSOR_SHORT = "sensor_short"  # reads hotter than any real pad, N readings in a row
F_SENSOR_FROZEN = "sensor_frozen"  # not a single code of change for a window while the heater drives
F_SENSOR_JUMP = "sensor_jump"  # a step between readings no pad can make, N readings in a row
F_SENSOR_MISMATCH = "sensor_mismatch"  # pad-side and heater-side sensors disagree
F_LEASE_EXPIRED = "lease_expired"  # the control tick came later than the heater lease lasts

ALL = (
    F_HEAT_SLOW,
    F_RUNAWAY,
    F_STUCK_ON,
    F_OVER_TEMP,
    F_SENSOR_OPEN,
    F_SENSOR_SHORT,
    F_SENSOR_FROZEN,
    F_SENSOR_JUMP,
    F_SENSOR_MISMATCH,
    F_LEASE_EXPIRED,
)

SENSOR_PAD = "pad sensor"
SENSOR_HEATER = "heater-side sensor"


def fmt_c(mc):
    """milli-C -> '42.35 C' (two decimals, truncated toward zero)."""
    sign = ""
    if mc < 0:
        sign = "-"
        mc = -mc
    return "%s%d.%02d C" % (sign, mc // 1000, (mc % 1000) // 10)


def fmt_s(ms):
    """ms -> '12.3 s'."""
    return "%d.%d s" % (ms // 1000, (ms % 1000) // 100)
