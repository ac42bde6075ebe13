"""Compare the current that flowed with the current that was commanded.

Two failures matter at the electrodes. Nothing flows while the stage sits at
its compliance voltage: an electrode came off, and when it is pressed back
the full amplitude would arrive at once; that latches on the first such pulse
(a current source at compliance delivering under a quarter of its command is
unambiguous). More flows than was asked: an output-stage fault; that needs
two pulses in a row (ticks without a pulse in between do not break the row,
so it holds at every rate), so one noisy ADC sample never trips it. Below
SENSE_MIN_CHECK_UA the sense is too coarse to judge a missing load (dead band).

On the board a pulse may complete one tick after the tick that fed it (see
Channel.sensed_ua), so some reads come between pulses: a read showing no pulse
(under SENSE_MIN_CHECK_UA, not at compliance) says nothing about the last one
and leaves the row of over-limit pulses as it was.
"""

from firmware import limits as L
from firmware import supervisor


def overcurrent_allowed_ua(commanded_ua):
    margin = commanded_ua // L.OVERCURRENT_RATIO_DIV
    if margin < L.OVERCURRENT_MARGIN_UA:
        margin = L.OVERCURRENT_MARGIN_UA
    return commanded_ua + margin


class OutputMonitor:
    def __init__(self, index):
        self.index = index
        self._over_count = 0
        self.fault = ""  # "" or the latched fault name with channel
        self.message = ""

    def reset(self):
        self._over_count = 0

    def check(self, commanded_ua, delivered_ua, at_compliance):
        """True when a fault was found; then `fault` and `message` name it."""
        if delivered_ua > L.AMP_LIMIT_UA + L.OVERCURRENT_MARGIN_UA:
            return self._found(
                supervisor.F_OVERCURRENT,
                "channel %d: %d uA delivered, above the hard limit %d uA" % (self.index, delivered_ua, L.AMP_LIMIT_UA),
            )
        if commanded_ua <= 0:
            # no pulse in this tick: below 100 Hz most ticks have none, so the count of
            # over-limit pulses in a row carries over (the device resets it when output stops)
            return False
        allowed_ua = overcurrent_allowed_ua(commanded_ua)
        if delivered_ua > allowed_ua:
            self._over_count += 1
            if self._over_count >= L.OVERCURRENT_PULSES:
                return self._found(
                    supervisor.F_OVERCURRENT,
                    "channel %d: %d uA delivered for %d uA commanded, limit %d uA"
                    % (self.index, delivered_ua, commanded_ua, allowed_ua),
                )
        elif at_compliance or delivered_ua >= L.SENSE_MIN_CHECK_UA:
            self._over_count = 0  # a pulse within the limit breaks the row
        if (
            at_compliance
            and commanded_ua >= L.SENSE_MIN_CHECK_UA
            and delivered_ua * L.NO_LOAD_RATIO_DIV < commanded_ua
        ):
            return self._found(
                supervisor.F_NO_LOAD,
                "channel %d: %d uA delivered for %d uA commanded at the compliance voltage: electrode off?"
                % (self.index, delivered_ua, commanded_ua),
            )
        return False

    def _found(self, name, message):
        self.fault = "%s:%d" % (name, self.index)
        self.message = message
        return True
