"""Virtual clock with the board's tick semantics; time moves only when told."""

from firmware.clock import TICKS_MAX, ticks_add, ticks_diff
from firmware.compat import const

# Start 5 s before the 2^30 ms wrap: every run crosses it early.
NEAR_WRAP_MS = TICKS_MAX + 1 - 5000
_TICKS_MASK = const((1 << 30) - 1)  # TICKS_MAX as a compile-time constant, for advance()
assert _TICKS_MASK == TICKS_MAX


class VirtualClock:
    def __init__(self, start_ms=0):
        self._ticks = start_ms & TICKS_MAX
        self.elapsed_ms = 0  # simulated time since start, never wraps

    def ticks_ms(self):
        return self._ticks

    def ticks_diff(self, end, start):
        return ticks_diff(end, start)

    def ticks_add(self, ticks, delta_ms):
        return ticks_add(ticks, delta_ms)

    def advance(self, delta_ms):
        self._ticks = (self._ticks + delta_ms) & _TICKS_MASK  # ticks_add, inlined (every tick)
        self.elapsed_ms += delta_ms
