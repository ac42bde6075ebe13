"""CEM43 thermal dose (Sapareto & Dewey 1984), integer fixed point.

    CEM43 = sum over time of dt * R^(43 - T),  R = 0.5 for T >= 43 C, 0.25 below
          = sum of dt * 2^x,  x = (T - 43) at or above 43 C, x = 2 * (T - 43) below

T is the measured (filtered) pad temperature: the skin under the pad is no
hotter than the pad, so the dose is an upper bound for the skin.

Fixed point: x is taken in 1/64 steps, ROUNDED UP (so the dose is never
under-counted; it is over-counted by less than 2^(1/64) - 1 = 1.09 %, and is
exact at whole degrees above 43 and at half degrees below). 2^x = 2^n * 2^(f/64) with
POW2_64[f] = round(65536 * 2^(f/64)) (f = 0..63, generated offline:
    [round(65536 * 2 ** (f / 64)) for f in range(64)] ).
Each tick adds dt_ms * POW2_64[f] shifted by n into a 1/65536-ms fraction
that carries into whole milliseconds `cem43_ms`. Right shifts drop below
2^-16 ms per tick: at most 11 ms of CEM43 over a 2 h session, and only at
temperatures where the dose rate is already below 2^-16 (T < 35 C).
T is clamped to 50 C for the arithmetic (over_temp latches at 45 C long
before), so every product stays below 2^30. Units: cem43_ms = CEM43
milliseconds (60000 = 1 equivalent minute at 43 C).

The count saturates at CEM43_MAX_MS = 2^29 (149 equivalent hours, 149 times the default
cap): the dose keeps accumulating while heat is off or latched in FAULT (a stuck-on heater
the firmware cannot open keeps the pad hot), up to 128 per ms at 50 C, and an unbounded
count would pass the board's small ints (2^30) after ~2.3 h and then allocate a long int
every tick. At the ceiling the count stays there (the fraction is dropped); reached() is
True there whatever the cap, so a saturated dose can never read as "below the cap".
"""

from firmware.compat import const

POW2_64 = (
    65536, 66250, 66971, 67700, 68438, 69183, 69936, 70698, 71468, 72246, 73032, 73828, 74632,
    75444, 76266, 77096, 77936, 78785, 79642, 80510, 81386, 82273, 83169, 84074, 84990, 85915,
    86851, 87796, 88752, 89719, 90696, 91684, 92682, 93691, 94711, 95743, 96785, 97839, 98905,
    99982, 101070, 102171, 103283, 104408, 105545, 106694, 107856, 109031, 110218, 111418,
    112631, 113858, 115098, 116351, 117618, 118899, 120194, 121502, 122825, 124163, 125515,
    126882, 128263, 129660,
)

_T_CLAMP_MC = const(50000)
_STEP_MAX_MS = const(50)  # a late tick is added in steps of at most 50 ms
_FRAC_ONE = const(65536)
_FRAC_MASK = const(65535)
_N_FLOOR = const(-40)  # 2^-40 per ms: nothing
CEM43_MAX_MS = const(1 << 29)  # the ceiling of cem43_ms (see module text); + one tick's add < 2^30


def rate_exponent_64(t_mc):
    """x * 64 for temperature t_mc, rounded up (see module text)."""
    if t_mc > _T_CLAMP_MC:
        t_mc = _T_CLAMP_MC
    d = t_mc - 43000
    if d < 0:
        d = d * 2
    return -((-d * 64) // 1000)


class Dose:
    def __init__(self, cap_ms):
        self.cap_ms = cap_ms  # CEM43 ms at which heat must stop
        self.cem43_ms = 0
        self._frac = 0  # 1/65536 ms

    def reset(self):
        self.cem43_ms = 0
        self._frac = 0

    def reached(self):
        return self.cem43_ms >= self.cap_ms or self.cem43_ms >= CEM43_MAX_MS

    def add(self, t_mc, dt_ms):
        """Accumulate dt_ms at temperature t_mc."""
        x64 = rate_exponent_64(t_mc)
        n = x64 >> 6
        if n < _N_FLOOR:
            return
        mult = POW2_64[x64 & 63]
        while dt_ms > 0:
            step = dt_ms
            if step > _STEP_MAX_MS:
                step = _STEP_MAX_MS
            dt_ms -= step
            inc = step * mult
            if n >= 0:
                inc = inc << n
            else:
                inc = inc >> -n
            frac = self._frac + inc
            if frac >= _FRAC_ONE:
                total = self.cem43_ms + (frac >> 16)  # < 2^29 + 2^29: a small int
                frac = frac & _FRAC_MASK
                if total >= CEM43_MAX_MS:
                    self.cem43_ms = CEM43_MAX_MS  # saturated: it stays here
                    self._frac = 0
                    return
                self.cem43_ms = total
            self._frac = frac
