"""Seeded xorshift32: the same numbers on MicroPython and CPython.

`random` differs between the two runtimes, so the simulator's noise comes from
here and a seed reproduces a run bit for bit on either.
"""


class Rng:
    def __init__(self, seed):
        self._state = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next_u32(self):
        x = self._state
        # x ^= x << 13 and x ^= x << 5 within 32 bits; masking before the shift gives the same
        # bits without a 45-bit intermediate (a slower big int on CPython)
        x ^= (x & 0x7FFFF) << 13
        x ^= x >> 17
        x ^= (x & 0x7FFFFFF) << 5
        self._state = x
        return x

    def below(self, n):
        return self.next_u32() % n

    def symmetric(self, half_range):
        """Integer uniformly in [-half_range, +half_range]."""
        # below(2 * half_range + 1) - half_range, with next_u32 inlined: the sense ADC draws
        # one per channel per tick
        x = self._state
        x ^= (x & 0x7FFFF) << 13
        x ^= x >> 17
        x ^= (x & 0x7FFFFFF) << 5
        self._state = x
        return x % (2 * half_range + 1) - half_range
