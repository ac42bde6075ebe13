"""Relay autotune (Astrom & Hagglund 1984): find the ultimate gain and period, derive PID gains.

The heater is driven as a relay around the tune target: tune_high_permille
while the pad reads below target - tune_hyst_mc, tune_low_permille once it
reads above target + tune_hyst_mc. The loop settles into a limit cycle of
period Tu and peak-to-peak swing 2a. The describing function of a relay of
half-swing d = (high - low) / 2 with hysteresis eps gives the ultimate gain

    Ku = 4 d / (pi * sqrt(a^2 - eps^2))        (pi taken as 355/113)

Safety: the tune target is at most max_target_mc - tune_margin_mc (40 C by
default, cap 43 C), the relay's "on" is amplitude-limited (800 permille), and
the run aborts (heater off, no fault latched, `message` says why) if the pad
ever reads above max_target_mc, or after tune_timeout_ms. The over_temp
cutoff and every other protection stay active during the run.

The first full cycle is discarded (it still carries the heat-up); the next
tune_cycles - 1 are averaged. Gains in the scales of firmware/heat/pid.py:
    Tyreus-Luyben (default, little overshoot): Kp = Ku/2.2, Ti = 2.2 Tu, Td = Tu/6.3
    Ziegler-Nichols classic PID:               Kp = 0.6 Ku, Ti = Tu/2,   Td = Tu/8
Integer arithmetic throughout; the few products above 2^30 happen once, at
the end of the run (exact, only a little slower on the board).
"""

from firmware.compat import const
from firmware.clock import ticks_diff
from firmware.heat.config import RULE_ZIEGLER_NICHOLS
from firmware.intmath import isqrt  # noqa: F401  (also used as module.isqrt)

RUNNING = const(0)
DONE = const(1)
FAILED = const(2)



def gains_from_ultimate(ku_x10, tu_ms, rule):
    """(kp, ki, kd) in pid.py scales from the ultimate gain (0.1 permille/C) and period (ms)."""
    if rule == RULE_ZIEGLER_NICHOLS:
        kp = ku_x10 * 6 // 10
        ki = kp * 200000 // tu_ms
        kd = kp * tu_ms // 80000
    else:
        kp = ku_x10 * 10 // 22
        ki = kp * 1000000 // (22 * tu_ms)
        kd = kp * tu_ms // 63000
    return kp, ki, kd


def ultimate_gain_x10(d_permille, a_mc, eps_mc):
    """Ku in 0.1 permille per C from the relay half-swing d, the oscillation amplitude a and
    hysteresis eps (all integers; sqrt(a^2 - eps^2) taken in 1/100 mC)."""
    if a_mc > eps_mc:
        a_eff_x100 = isqrt((a_mc * a_mc - eps_mc * eps_mc) * 10000)
    else:
        a_eff_x100 = a_mc * 100
    if a_eff_x100 <= 0:
        a_eff_x100 = 1
    return 4000000 * d_permille * 113 // (355 * a_eff_x100)


class AutoTune:
    def __init__(self, config):
        self._c = config
        self.target_mc = config.tune_target_mc
        self.state = DONE
        self.message = ""
        self.result = None  # (kp, ki, kd, ku_x10, tu_ms, amplitude_mc) when DONE
        self._on = True
        self._started = 0
        self._ons = 0
        self._last_on = 0
        self._max = 0
        self._min = 0
        self._sum_tu = 0
        self._sum_pp = 0
        self._cycles = 0

    def start(self, now, target_mc=None):
        c = self._c
        if target_mc is None:
            target_mc = c.tune_target_mc
        if target_mc > c.max_target_mc - c.tune_margin_mc:
            raise ValueError(
                "tune target %d mC above max_target_mc %d - tune_margin_mc %d"
                % (target_mc, c.max_target_mc, c.tune_margin_mc)
            )
        self.target_mc = target_mc
        self.state = RUNNING
        self.message = ""
        self.result = None
        self._on = True
        self._started = now
        self._ons = 0
        self._cycles = 0
        self._sum_tu = 0
        self._sum_pp = 0
        self._max = -1000000
        self._min = 1000000

    def step(self, now, measured_mc):
        """One tick while RUNNING: the relay's duty in permille (0 once DONE or FAILED)."""
        c = self._c
        if self.state != RUNNING:
            return 0
        if measured_mc > c.max_target_mc:
            return self._fail(
                "autotune aborted: pad reads %d mC, above the cap %d mC (max_target_mc); "
                "lower tune_high_permille or tune_target_mc" % (measured_mc, c.max_target_mc)
            )
        if ticks_diff(now, self._started) > c.tune_timeout_ms:
            return self._fail(
                "autotune aborted: no stable oscillation within %d ms (tune_timeout_ms); %d cycles measured"
                % (c.tune_timeout_ms, self._cycles)
            )
        if measured_mc > self._max:
            self._max = measured_mc
        if measured_mc < self._min:
            self._min = measured_mc
        if self._on:
            if measured_mc > self.target_mc + c.tune_hyst_mc:
                self._on = False
        elif measured_mc < self.target_mc - c.tune_hyst_mc:
            self._on = True
            self._switched_on(now, measured_mc)
        if self.state != RUNNING:
            return 0
        return c.tune_high_permille if self._on else c.tune_low_permille

    def _switched_on(self, now, measured_mc):
        self._ons += 1
        if self._ons >= 3:  # ons 1..2 close the heat-up and the discarded first cycle
            self._sum_tu += ticks_diff(now, self._last_on)
            self._sum_pp += self._max - self._min
            self._cycles += 1
        self._last_on = now
        self._max = measured_mc
        self._min = measured_mc
        if self._cycles >= self._c.tune_cycles - 1:
            self._finish()

    def _finish(self):
        c = self._c
        n = self._cycles
        tu_ms = self._sum_tu // n
        a_mc = self._sum_pp // (2 * n)
        d = (c.tune_high_permille - c.tune_low_permille) // 2
        ku_x10 = ultimate_gain_x10(d, a_mc, c.tune_hyst_mc)
        kp, ki, kd = gains_from_ultimate(ku_x10, tu_ms, c.tune_rule)
        if kp > 10000:
            kp = 10000
        ki_max = 900000000 // (c.tick_ms * c.i_band_mc)
        if ki > ki_max:
            ki = ki_max
        if kd > 20000:
            kd = 20000
        self.result = (kp, ki, kd, ku_x10, tu_ms, a_mc)
        self.state = DONE
        self.message = "autotune done: Ku %d (0.1 permille/C), Tu %d ms, amplitude %d mC -> kp %d ki %d kd %d" % (
            ku_x10, tu_ms, a_mc, kp, ki, kd)

    def _fail(self, message):
        self.state = FAILED
        self.message = message
        return 0
