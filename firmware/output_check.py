"""Compare the current that flowed with the current that was commanded.

Two failures matter at the electrodes: nothing flows (an electrode came off:
when it is pressed back, the full amplitude would arrive at once) and more
flows than was asked (an output-stage fault). Each needs a few consecutive
pulses before it latches, so one noisy ADC sample never trips it.
"""

from firmware import limits
from firmware import supervisor


class OutputMonitor:
    def __init__(self, index):
        self.index = index
        self._no_load_count = 0
        self._over_count = 0

    def reset(self):
        self._no_load_count = 0
        self._over_count = 0

    def check(self, commanded_ua, sensed_ua):
        """Return None, or (fault name, message naming value and limit)."""
        if sensed_ua > limits.AMP_LIMIT_UA + limits.OVERCURRENT_MARGIN_UA:
            return (
                supervisor.F_OVERCURRENT,
                "channel %d: %d uA measured, above the hard limit %d uA" % (self.index, sensed_ua, limits.AMP_LIMIT_UA),
            )
        if commanded_ua <= 0:
            self.reset()
            return None
        allowed_ua = commanded_ua + limits.OVERCURRENT_MARGIN_UA
        if sensed_ua > allowed_ua:
            self._over_count += 1
            if self._over_count >= limits.OVERCURRENT_PULSES:
                return (
                    supervisor.F_OVERCURRENT,
                    "channel %d: %d uA measured for %d uA commanded, limit %d uA"
                    % (self.index, sensed_ua, commanded_ua, allowed_ua),
                )
        else:
            self._over_count = 0
        if commanded_ua >= limits.SENSE_MIN_CHECK_UA and sensed_ua * limits.NO_LOAD_RATIO_DIV < commanded_ua:
            self._no_load_count += 1
            if self._no_load_count >= limits.NO_LOAD_PULSES:
                return (
                    supervisor.F_NO_LOAD,
                    "channel %d: %d uA measured for %d uA commanded (below 1/%d for %d pulses): electrode off?"
                    % (self.index, sensed_ua, commanded_ua, limits.NO_LOAD_RATIO_DIV, limits.NO_LOAD_PULSES),
                )
        else:
            self._no_load_count = 0
        return None
