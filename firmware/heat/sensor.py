"""One thermistor channel: read, convert, check plausibility, filter.

Per reading (once per tick), in this order:
1. convert the raw code with firmware.heat.thermistor (`sample_mc`);
2. range: colder than `min_valid_mc` counts toward sensor_open, hotter than
   `max_valid_mc` toward sensor_short; `bad_readings` latch (default 4, as
   Klipper's ADC range check), in a row or with good readings between (each takes
   one off the count: an intermittent open adds up too). An out-of-range reading is never used:
   `value_mc` holds the last good value meanwhile;
3. jump: a reading more than `jump_limit_mc` away from the last good one is
   held back (not used); `jump_readings` such readings in a row latch
   sensor_jump (a single spike is ignored, a persistent step is a fault: a
   pad's temperature cannot move 2 C in 10 ms);
4. frozen: the raw code has not changed at all while the heater delivered
   `frozen_ms` of full-power-equivalent heating (sum of duty * dt / 1000:
   20 s at full power, 67 s at 30 %). Heat going in must move the reading
   (about 560 codes per C), and ADC noise alone moves an oversampled 16-bit
   code every reading. Weighting by duty catches a reading frozen below the
   target while the integrator slowly raises the duty. (A noise-free ADC, such
   as the simulator's thermistor with noise_lsb=0, can hold one code through
   a perfect steady hold for longer: keep the simulated noise on.)
5. filter: integer EMA over 2^filter_shift readings (state kept scaled, so no
   truncation bias): `value_mc`.

`current` says whether the latest reading was used: while it is False, `value_mc` is the
last good value, not what the pad is now (status and logs show no reading then).

`update()` returns None or a fault name; then `fault_msg` says why. A count
fault (open, short, jump) is returned once, on the reading that completes the
count: the controller latches on it, and a sensor that stays broken through
the latched fault must not compose its message again every tick (on the board
that is 480 bytes of heap a tick). `reset()` re-arms the counts. No allocation
unless a fault is raised.
"""

from firmware.heat import faults as F
from firmware.heat import thermistor


class Sensor:
    def __init__(self, driver, config, name=F.SENSOR_PAD):
        self.driver = driver
        self.name = name
        self._divider = config.divider
        self._shift = config.filter_shift
        self._min = config.min_valid_mc
        self._max = config.max_valid_mc
        self._bad_n = config.bad_readings
        self._jump = config.jump_limit_mc
        self._jump_n = config.jump_readings
        self._frozen_ms = config.frozen_ms
        self._frozen_e = config.frozen_ms * 1000  # permille * ms
        self.raw = -1  # last raw code
        self.sample_mc = 0  # last converted reading (before checks and filter)
        self.value_mc = 0  # filtered, validated temperature: what the controller uses
        self.valid = False  # True once a good reading has been taken
        self.current = False  # the latest reading was used (not out of range, not a jump)
        self.fault_msg = ""
        self._acc = 0
        self._last_good = 0
        self._open_n = 0
        self._short_n = 0
        self._jump_count = 0
        self._still_e = 0
        self._frozen_raw = -1

    def reset(self):
        """Forget history (after a fault is cleared): the next reading restarts the filter."""
        self.valid = False
        self.current = False
        self._open_n = 0
        self._short_n = 0
        self._jump_count = 0
        self._still_e = 0
        self._frozen_raw = -1

    def update(self, duty_permille, dt_ms):
        """One reading; duty_permille is the heater's commanded duty (0 when not heating)."""
        raw = self.driver.read_raw()
        self.raw = raw
        mc = thermistor.code_to_mc(raw, self._divider)
        self.sample_mc = mc

        # frozen: the raw code itself, counted only while the heater drives
        if raw == self._frozen_raw:
            if duty_permille > 0:
                if dt_ms > 100:
                    dt_ms = 100
                self._still_e += duty_permille * dt_ms
                if self._still_e >= self._frozen_e:
                    return self._found(
                        F.F_SENSOR_FROZEN,
                        "%s: raw code %d unchanged while the heater delivered %s at full power, limit %s "
                        "(frozen_ms)" % (self.name, raw, F.fmt_s(self._still_e // 1000), F.fmt_s(self._frozen_ms)),
                    )
        else:
            self._frozen_raw = raw
            self._still_e = 0

        if mc < self._min:
            self.current = False
            self._short_n = 0
            self._open_n += 1
            if self._open_n == self._bad_n:
                return self._found(
                    F.F_SENSOR_OPEN,
                    "%s: reads %s (raw %d), below the minimum %s (min_valid_mc) %d times, net of good readings: open circuit"
                    % (self.name, F.fmt_c(mc), raw, F.fmt_c(self._min), self._open_n),
                )
            return None
        if mc > self._max:
            self.current = False
            self._open_n = 0
            self._short_n += 1
            if self._short_n == self._bad_n:
                return self._found(
                    F.F_SENSOR_SHORT,
                    "%s: reads %s (raw %d), above the maximum %s (max_valid_mc) %d times, net of good readings: short circuit"
                    % (self.name, F.fmt_c(mc), raw, F.fmt_c(self._max), self._short_n),
                )
            return None
        # a good reading takes one off each count, not all: a loose connector that reads open
        # three times in four still adds up to the latch
        if self._open_n:
            self._open_n -= 1
        if self._short_n:
            self._short_n -= 1

        if not self.valid:
            self.current = True
            self.valid = True
            self._last_good = mc
            self._acc = mc << self._shift
            self.value_mc = mc
            return None

        step = mc - self._last_good
        if step > self._jump or -step > self._jump:
            self.current = False
            self._jump_count += 1
            if self._jump_count == self._jump_n:
                return self._found(
                    F.F_SENSOR_JUMP,
                    "%s: jumped from %s to %s, more than the limit %s per reading for %d readings (jump_limit_mc)"
                    % (self.name, F.fmt_c(self._last_good), F.fmt_c(mc), F.fmt_c(self._jump), self._jump_count),
                )
            return None
        self._jump_count = 0
        self.current = True
        self._last_good = mc
        self._acc += mc - (self._acc >> self._shift)
        self.value_mc = self._acc >> self._shift
        return None

    def jump_standing(self):
        """The reading is still a jump away from the last good one: the step that latched
        sensor_jump has not gone (a clear now would take the stepped reading as the truth)."""
        step = self.sample_mc - self._last_good
        return self.valid and (step > self._jump or -step > self._jump)

    def _found(self, name, message):
        self.fault_msg = message
        return name
