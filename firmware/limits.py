"""Hard limits of the stimulation envelope (placeholder envelope of the spine).

One fixed waveform for now: symmetric biphasic, 200 µs phases, 50 µs gap, 100 Hz.
At the 60 mA amplitude limit that is 12 µC per phase and 12 mA r.m.s.
(60 mA × sqrt(2 × 200 µs × 100 Hz)), well inside IEC 60601-2-10's 50 mA r.m.s.
The full envelope (r.m.s., charge, energy and density limits) replaces this
with the stimulation engine; these constants stay the outermost bound.
"""

from firmware.compat import const

TICK_MS = const(10)

AMP_LIMIT_UA = const(60000)  # peak per phase, any channel, any setting
PHASE_US = const(200)
GAP_US = const(50)
PULSE_PERIOD_US = const(10000)  # 100 Hz

# Amplitude slew: no step between ticks is larger than this (4 mA/s).
RAMP_UA_PER_TICK = const(40)

# Output-sense checks (compare measured peak current with the commanded one).
SENSE_MIN_CHECK_UA = const(2000)  # below this the no-load check is not meaningful
NO_LOAD_RATIO_DIV = const(4)  # measured < commanded/4 means the electrode is off
NO_LOAD_PULSES = const(5)  # consecutive pulses before the fault latches
OVERCURRENT_MARGIN_UA = const(2000)
OVERCURRENT_PULSES = const(2)
