"""Tick arithmetic with MicroPython semantics on a 2^30 ms ring.

The board's `time.ticks_ms()` wraps every 2^30 ms (about 12.4 days). Every time
comparison in the firmware goes through `ticks_diff`, so code that works just
before the wrap works just after it. Plain integer arithmetic, no `time` import:
the clock itself is injected (a driver on the board, a virtual clock in `sim/`).
"""

from firmware.compat import const

TICKS_PERIOD = const(1 << 30)
TICKS_MAX = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)


def ticks_add(ticks, delta_ms):
    """Add a signed delta, staying on the ring."""
    return (ticks + delta_ms) & TICKS_MAX


def ticks_diff(end, start):
    """Signed difference end - start, valid while |difference| < 2^29 ms."""
    return ((end - start + _TICKS_HALF) & TICKS_MAX) - _TICKS_HALF


class Elapsed:
    """Counts milliseconds since a start tick, robust to the wrap.

    Long durations (a whole session) are accumulated tick by tick into a plain
    integer, so they are not limited to the 2^29 ms window of `ticks_diff`.
    """

    def __init__(self, now):
        self._last = now
        self.total_ms = 0

    def update(self, now):
        step = ticks_diff(now, self._last)
        if step > 0:
            self.total_ms += step
        self._last = now
        return self.total_ms
