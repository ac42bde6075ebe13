"""Hard limits: the outermost bounds no setting, request or bug can pass.

Sources (see docs/safety.md): IEC 60601-2-10 for r.m.s. current, energy per
pulse, open-circuit voltage and the output indicator; FDA TENS submissions for
phase charge, net charge, current and power density; clinical TENS ranges for
widths and rates. Values are integers in the unit their name carries.
"""

from firmware.compat import const

TICK_MS = const(10)
CHANNELS = const(2)

# -- amplitude -------------------------------------------------------------------
AMP_LIMIT_UA = const(80000)  # peak per phase, any channel (typical TENS 0-80 mA)
AMP_STEP_UA = const(500)  # one user step (0.5 mA); 0.6 % of the maximum
AMP_STEPS_MAX = const(10)  # most steps one request may move

# -- waveform --------------------------------------------------------------------
PHASE_MIN_US = const(20)
PHASE_MAX_US = const(400)
ASYM_RATIO_MAX = const(4)  # asymmetric: second phase up to 4x longer at 1/4 the current
PHASE2_MAX_US = const(1600)  # PHASE_MAX_US * ASYM_RATIO_MAX
GAP_MAX_US = const(200)
RATE_MIN_HZ = const(1)
RATE_MAX_HZ = const(250)  # well under the 400 Hz the r.m.s. limit of IEC 60601-2-10 is stated for

# -- envelope (reference load and electrode area) ---------------------------------
REFERENCE_LOAD_OHM = const(500)  # IEC 60601-2-10 states its output limits into 500 ohm
INDICATOR_LOAD_OHM = const(1000)
RMS_LIMIT_UA = const(50000)  # 50 mA r.m.s. into 500 ohm
ENERGY_LIMIT_UJ = const(300000)  # 300 mJ per pulse into 500 ohm
PHASE_CHARGE_LIMIT_NC = const(25000)  # 25 uC per phase
CURRENT_DENSITY_LIMIT_UA_CM2 = const(2000)  # 2 mA/cm2 r.m.s.: above it needs the operator's attention
POWER_DENSITY_LIMIT_UW_CM2 = const(250000)  # 0.25 W/cm2 averaged over 1 s
INDICATOR_RMS_UA = const(10000)  # output indicator above 10 mA r.m.s. ...
INDICATOR_ENERGY_UJ = const(10000)  # ... or 10 mJ per pulse, into 1 kohm
AREA_MIN_CM2 = const(1)
AREA_MAX_CM2 = const(200)
AREA_DEFAULT_CM2 = const(25)  # a 5 x 5 cm electrode

# -- ramps and timers --------------------------------------------------------------
RAMP_DEFAULT_MS = const(5000)  # soft start: zero to target in 5 s
RAMP_MIN_MS = const(1000)
RAMP_MAX_MS = const(30000)
RAMP_MAX_UA_PER_TICK = const(800)  # no ramp is steeper than 80 mA/s, whatever is configured
MOD_AMP_SLOPE_LIMIT_UA_S = const(80000)  # nor an amplitude modulation: RAMP_MAX_UA_PER_TICK per TICK_MS
SESSION_DEFAULT_MS = const(30 * 60 * 1000)
SESSION_MAX_MS = const(60 * 60 * 1000)
LEASE_DEFAULT_MS = const(3000)  # host-controlled session: a valid request at least every 3 s
LEASE_MIN_MS = const(500)
LEASE_MAX_MS = const(30000)

# -- output monitoring ---------------------------------------------------------------
SENSE_MIN_CHECK_UA = const(2000)  # dead band: below this the no-load check is not meaningful
NO_LOAD_RATIO_DIV = const(4)  # delivered < commanded/4 at compliance: the electrode is off
OVERCURRENT_MARGIN_UA = const(2000)  # delivered may exceed commanded by max(2 mA, 1/8)
OVERCURRENT_RATIO_DIV = const(8)
OVERCURRENT_PULSES = const(2)  # consecutive pulses before an overload latches
