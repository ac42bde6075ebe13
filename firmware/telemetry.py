"""Periodic telemetry: status events at a rate the host picks.

The host asks for one event every `every_ms` (0: none). A host that does not
read loses events, never the tick: the link drops what does not fit and this
counts it, so a monitor can say how much it missed.
"""

from firmware.clock import ticks_add, ticks_diff
from firmware.compat import const

EVERY_MIN_MS = const(50)  # 20 Hz: the fastest a monitor needs
EVERY_MAX_MS = const(60000)


class Telemetry:
    def __init__(self):
        self.every_ms = 0  # 0: off
        self.seq = 0  # events offered to the link since the rate was set
        self.dropped = 0  # of those, dropped because the host was not reading
        self._next = 0

    def set_rate(self, every_ms, now):
        self.every_ms = every_ms
        self.seq = 0
        self.dropped = 0
        self._next = now

    def due(self, now):
        """True once per period; a late tick does not bunch events up (the schedule slips)."""
        if not self.every_ms or ticks_diff(now, self._next) < 0:
            return False
        self._next = ticks_add(self._next, self.every_ms)
        if ticks_diff(now, self._next) >= 0:
            self._next = ticks_add(now, self.every_ms)
        return True

    def count(self, sent):
        self.seq += 1
        if not sent:
            self.dropped += 1
