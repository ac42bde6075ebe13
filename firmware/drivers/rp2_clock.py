"""The millisecond clock (interfaces.py: Clock) from MicroPython's `time`. Board only.

    clock = Rp2Clock()
    now = clock.ticks_ms()              # 2^30 ms ring on the rp2 port, like firmware/clock.py
    clock.ticks_diff(end, start)        # signed, valid within 2^29 ms
    clock.ticks_add(now, 50)

The three are time's own functions, bound to the instance: a call costs nothing over calling
time.ticks_ms() directly, and the semantics are MicroPython's (firmware/clock.py implements
the same arithmetic for the simulator and CPython).
"""

import time


class Rp2Clock:
    def __init__(self):
        self.ticks_ms = time.ticks_ms
        self.ticks_diff = time.ticks_diff
        self.ticks_add = time.ticks_add
