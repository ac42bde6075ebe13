"""TENS channel of the spine: a target amplitude reached by a bounded ramp.

Amplitude only ever moves toward its target by at most RAMP_UA_PER_TICK per
tick, and any interruption (stop, fault) puts it back to zero, so output
always restarts from nothing. Integers only; nothing here allocates per tick.
"""

from firmware import limits


class Channel:
    def __init__(self, index, amp_limit_ua=limits.AMP_LIMIT_UA):
        self.index = index
        self.amp_limit_ua = amp_limit_ua
        self.target_ua = 0
        self.amp_ua = 0
        self._next_pulse_us = 0
        self.fired_ua = 0  # amplitude of the last window's pulses, for the sense check

    def set_target(self, amp_ua):
        """Caller has validated the range; the clamp is a second layer."""
        if amp_ua < 0:
            amp_ua = 0
        if amp_ua > self.amp_limit_ua:
            amp_ua = self.amp_limit_ua
        self.target_ua = amp_ua

    def off(self):
        """Output to zero, target kept: the next start ramps up to it from zero."""
        self.amp_ua = 0
        self._next_pulse_us = 0
        self.fired_ua = 0

    def interrupt(self):
        """Output to zero now; the target is forgotten too: the user dials up again."""
        self.amp_ua = 0
        self.target_ua = 0
        self._next_pulse_us = 0
        self.fired_ua = 0

    def ramp(self):
        step = limits.RAMP_UA_PER_TICK
        if self.amp_ua < self.target_ua:
            self.amp_ua = min(self.amp_ua + step, self.target_ua)
        elif self.amp_ua > self.target_ua:
            self.amp_ua = max(self.amp_ua - step, self.target_ua)

    def fire_window(self, pulse_out, window_us):
        """Hand this window's pulses to the driver; returns the number fired."""
        fired = 0
        self.fired_ua = 0
        if self.amp_ua <= 0:
            self._next_pulse_us = 0
            return 0
        start_us = self._next_pulse_us
        while start_us < window_us:
            if not pulse_out.fire(self.index, start_us, self.amp_ua, limits.PHASE_US, limits.GAP_US):
                # A refused pulse is an interruption: the output restarts from zero
                # and ramps, so the first pulse after the queue recovers is small.
                self.off()
                return fired
            fired += 1
            self.fired_ua = self.amp_ua
            start_us += limits.PULSE_PERIOD_US
        self._next_pulse_us = start_us - window_us
        return fired
