"""Tick arithmetic with MicroPython semantics on a 2^30 ms ring.

The board's `time.ticks_ms()` wraps every 2^30 ms (about 12.4 days). Every time
comparison in the firmware goes through `ticks_diff`, so code that works just
before the wrap works just after it. Plain integer arithmetic, no `time` import:
the clock itself is injected (a driver on the board, a virtual clock in `sim/`).

Small ints only: on the board an int is a heap object from 2^30 up (|x| < 2^30 is
a small int), and the tick must not allocate. For ticks on the ring (0..TICKS_MAX)
and deltas with |delta| <= TICKS_MAX, no intermediate below reaches 2^30 in
magnitude (ticks_diff: `end - start`, then the masked value; ticks_add: the sum is
taken relative to the ring's end when it could pass it). Other arguments get the
plain formula, with the same result.
"""

from firmware.compat import const

TICKS_PERIOD = const(1 << 30)
TICKS_MAX = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)
_MS_PER_S = const(1000)


def ticks_add(ticks, delta_ms):
    """Add a signed delta, staying on the ring: (ticks + delta_ms) mod 2^30."""
    if ticks < 0 or ticks > TICKS_MAX or delta_ms > TICKS_MAX or delta_ms < -TICKS_MAX:
        return (ticks + delta_ms) & TICKS_MAX  # off the ring: not a board tick (tests only)
    if delta_ms >= 0:
        over = ticks - TICKS_MAX + delta_ms  # -TICKS_MAX..TICKS_MAX: ticks + delta_ms - TICKS_MAX
        if over > 0:
            return over - 1  # passed the wrap
        return over + TICKS_MAX
    total = ticks + delta_ms  # -TICKS_MAX..TICKS_MAX - 1
    if total < 0:
        return total + TICKS_MAX + 1  # went back past 0
    return total


def ticks_diff(end, start):
    """Signed difference end - start, valid while |difference| < 2^29 ms.

    The result lies in [-2^29, 2^29 - 1], as MicroPython's time.ticks_diff.
    """
    diff = (end - start) & TICKS_MAX  # (end - start) mod 2^30: |end - start| < 2^30 on the ring
    if diff >= _TICKS_HALF:
        return diff - TICKS_MAX - 1
    return diff


class Elapsed:
    """Counts milliseconds since a start tick, robust to the wrap.

    Long durations (a whole session, the uptime) are accumulated tick by tick, so they
    are not limited to the 2^29 ms window of `ticks_diff`. The count is kept as whole
    seconds plus the milliseconds under one (`seconds`, `ms`): both stay small ints for
    2^30 s (34 years), where a plain millisecond count would pass 2^30 after 12.4 days
    and then allocate a long int on every update. `total_ms` (seconds * 1000 + ms) is
    computed when read: a long int on the board after 12.4 days, so it is for status
    and records, not for the tick. update() returns nothing for the same reason.
    """

    def __init__(self, now):
        self._last = now
        self.seconds = 0
        self.ms = 0  # 0..999

    @property
    def total_ms(self):
        return self.seconds * _MS_PER_S + self.ms

    @total_ms.setter
    def total_ms(self, value):
        """(Tests and tools: put the count anywhere.)"""
        self.seconds = value // _MS_PER_S
        self.ms = value % _MS_PER_S

    def update(self, now):
        step = ticks_diff(now, self._last)
        if step > 0:
            ms = self.ms + step  # < 2^29 + 1000
            if ms >= _MS_PER_S:
                whole = ms // _MS_PER_S
                self.seconds += whole
                ms -= whole * _MS_PER_S
            self.ms = ms
        self._last = now
