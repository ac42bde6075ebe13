"""HeatConfig: every heat threshold and tuning value, in one object, with its default.

Make one, change attributes for the plant at hand, call `validate()` (the
HeatController does) before use. Units are in the names: _mc milli-C,
_ms milliseconds, _permille parts per thousand of full heater power. Gains use
the integer scales documented in firmware/heat/pid.py.

The defaults suit a skin-contact heat pad of the reference family (sim/thermal.py,
every parameter +-30 %): heater element and pad time constants of a few
seconds and one to a few minutes, 11..21 W, full-power steady state 49..60 C
(well above 43 C), full-power heating from 7..9 s per degree near ambient down
to 28 s (nominal) .. 102 s (slowest corner) per degree just below 41 C. The
PID gains are the relay autotune (Tyreus-Luyben) of the nominal pad; on it
the loop overshoots 0.06..0.07 C, reaches the target within 1.09..1.17 x the
full-power time and holds it within a few mC r.m.s. Each threshold is
per-plant tunable; fault messages name the parameter to change.

No false trips: 240 randomized 40-minute sessions over the family (random_spread
+-30 %, rooms 20..24 C, a 10 C ambient drop at a random time in most of them, sensor
lag 1..6 s, pads at rest, just laid on or warm, levels and explicit targets 30..43 C,
target changes, stop/restart, set_allowed hold-offs) tripped nothing; the 256 corners
of the family, driven through their worst heat-ups (12 C room, sensor lag 6 s, cooled
pads restarted, hold-offs, ambient drops near the band), tripped nothing either.
Sensor off the pad (tests/fw/test_heat_detection.py), reference pad in a 22 C room:
before the start 18.0 s, during the heat-up <= 17 s, while holding < 1 s. Over 200
random family members: during the heat-up <= 17.5 s and while holding < 1 s for all;
before the start all within 18 s from rest, 97 % within 20 s when the pad was just
laid on (the fastest-heating pads look like the slowest ones through a detached bead,
which reads 15 % of the pad's rise: those are caught later, by the gain watch or the
error integral, up to ~190 s with the real pad near 46 C; a fast pad design should
raise rise_permille, or fit the heater-side sensor, which the cross-check covers).
"""

from firmware.compat import const
from firmware.heat import thermistor

HARD_MAX_TARGET_MC = const(43000)  # IEC 60601-1 Table 24: skin contact >= 10 min stays <= 43 C
AUTO_OFF_LIMIT_MS = const(120 * 60 * 1000)  # no configuration may allow a longer heat session

# Level names and targets: the user-facing heat steps.
LEVELS = (("low", 38000), ("medium", 40000), ("high", 42000))

RULE_TYREUS_LUYBEN = "tyreus_luyben"
RULE_ZIEGLER_NICHOLS = "ziegler_nichols"


class HeatConfig:
    def __init__(self):
        # -- timing ------------------------------------------------------------------------
        self.tick_ms = 10  # the device calls tick() this often
        self.window_ms = 1000  # time-proportioning window (100 ticks)
        self.lease_ms = 50  # each heater lease; a stalled CPU leaves the heater on at most this long
        self.max_duty_permille = 1000  # ceiling of the controller's output

        # -- targets -----------------------------------------------------------------------
        self.max_target_mc = 43000  # targets and levels above this are refused (<= HARD_MAX_TARGET_MC)
        self.min_target_mc = 30000  # targets below this are refused (heat off is stop())
        self.default_level = "medium"

        # -- session -----------------------------------------------------------------------
        self.auto_off_ms = 30 * 60 * 1000  # default heat session length
        self.auto_off_max_ms = 120 * 60 * 1000  # longest a start() may ask for (<= AUTO_OFF_LIMIT_MS)
        self.dose_cap_ms = 60 * 60 * 1000  # CEM43 cap in CEM43 milliseconds (60 equivalent minutes)
        # a session starts a new dose account only after heat was off this long: back-to-back
        # sessions (a restart) share one, so a restart is no way round the cap
        self.dose_rest_ms = 60 * 60 * 1000

        # -- pad thermistor ------------------------------------------------------------------
        self.divider = thermistor.DIVIDER_NTC_LOW  # see firmware/heat/thermistor.py
        self.filter_shift = 2  # EMA of 2^shift readings (4 x 10 ms) on the converted value
        self.min_valid_mc = -10000  # colder than this reads as open (sensor_open)
        self.max_valid_mc = 85000  # hotter than this reads as shorted (sensor_short)
        self.bad_readings = 4  # consecutive out-of-range readings before open/short latch
        self.jump_limit_mc = 2000  # a step larger than this between two readings is impossible ...
        self.jump_readings = 3  # ... when it persists this many readings (sensor_jump)
        self.frozen_ms = 20000  # no code change while the heater delivers this much full-power time (sensor_frozen)

        # -- heater-side thermistor (used only when one is fitted) ----------------------------
        self.heater_side_max_mc = 70000  # element over-temperature (over_temp)
        self.xc_cooler_mc = 3000  # heater side may read at most this much below the pad while heating
        self.xc_diverge_mc = 25000  # the two may never differ by more than this
        self.xc_ms = 10000  # either condition must persist this long (sensor_mismatch)

        # -- controller (PID; scales in firmware/heat/pid.py) ---------------------------------
        self.kp = 9800  # 0.1 permille per C: 9800 = 980 permille of duty per C of error
        self.ki = 9200  # 0.001 permille per C.s: 9200 = 9.2 permille per C per s (Ti = 107 s)
        self.kd = 7600  # permille per C/s: 7600 permille per C/s of rate (Td = 7.8 s)
        self.i_band_mc = 5000  # integrator input clamped to +-5 C (anti-windup and overflow guard)
        # within +-2.1 C the integrator runs even while the output is saturated: it must build most
        # of the holding duty before the approach leaves full power, or the last tenths creep at the
        # integral's pace (reference pad, 40 C: 2 C zone 1.22 x the full-power time, 2.1 C 1.17 x;
        # a wider zone rises faster but holds a larger hump above the target afterwards)
        self.i_zone_mc = 2100
        self.d_shift = 8  # derivative low-pass: EMA of 2^8 ticks (2.56 s)

        # -- protection (firmware/heat/protect.py) --------------------------------------------
        self.over_temp_mc = 45000  # hard cutoff on the measured pad temperature (over_temp)
        self.watch_hyst_mc = 2000  # heat-up checks run while measured < target - this
        self.heating_gain_mc = 500  # heat-up watch: gain at least this ...
        self.check_gain_ms = 60000  # ... within this much time at high duty (heat_slow) ...
        # ... counted only while more than this below target - watch_hyst_mc: nearer the band a slow
        # pad of the family needs up to 282 s for 0.5 C after a 10 C ambient drop (44 s at 6 C)
        self.gain_near_mc = 6000
        self.watch_duty_permille = 900  # "high duty": the heat-up watch and runaway count only above it
        self.max_error_mc_s = 600000  # heat-up error integral (C.s x 1000) below target - watch_hyst (heat_slow)
        # Fast heat-up watch (heat_slow): over any rise_check_ms of full-power-equivalent heating a
        # reading whose low was below rise_ref_mc must climb rise_permille of (rise_ref_mc - low).
        # 18 s: a verdict inside 20 s; the slowest heater's reading turns only after ~10 s (lags).
        self.rise_check_ms = 18000
        # 29 C: a detached bead reads the room + 15 % of the way to the pad, below 29 C in rooms up
        # to ~25 C; a warm pad (cooling since the last session, slow to turn) starts above it.
        self.rise_ref_mc = 29000
        # 36 mC per C below rise_ref_mc (0.25 C from 22 C): the family's slowest attached case rises
        # 1.5 x this (12 C room, 6 s sensor lag); the reference pad's detached bead 0.16 C at most.
        # Raise it for a fast pad design, lower it for a slower one; 0 turns the watch off.
        self.rise_permille = 36
        # Fall watch (heat_slow while approaching, runaway while holding): at high duty the reading
        # may not fall fall_mc below a peak that leaks at fall_rate_mc_s. A pad on the skin under
        # high duty never falls that way: over the family (cooled pads resumed in a 12 C room, 10 C
        # ambient drops) the largest excess over 0.15 C/s was 0.013 C. A bead off the pad falls
        # 0.085 x (pad - room) per s (1.7 C/s from 42 C in a 22 C room): caught from ~4 C above it.
        self.fall_mc = 500
        self.fall_rate_mc_s = 150
        self.runaway_hyst_mc = 3000  # holding: falling more than this below the target ...
        self.runaway_ms = 15000  # ... at high duty for this long (runaway)
        self.runaway_error_mc_s = 120000  # ... or an error integral beyond the band of this (runaway)
        self.stuck_tau_ms = 13000  # element heat bound decays this slowly (>= the slowest element) ...
        self.stuck_heat_permille = 350  # ... the check runs once the duty is 0 and the bound this low ...
        self.stuck_floor_mc = 38000  # ... reading above this (skin cannot warm a pad past it) ...
        self.stuck_rise_mc = 150  # ... rises this much above its lowest value since: stuck_on
        self.stuck_clear_ms = 30000  # a stuck_on clear waits this long, and the pad must not be heating

        # -- relay autotune (firmware/heat/autotune.py) ---------------------------------------
        self.tune_target_mc = 40000  # relay switching point
        self.tune_margin_mc = 2000  # the tune target must sit this far below max_target_mc
        self.tune_high_permille = 800  # relay "on" duty (amplitude-limited)
        self.tune_low_permille = 0  # relay "off" duty
        self.tune_hyst_mc = 100  # relay hysteresis (noise band)
        self.tune_cycles = 4  # full oscillations; the first is discarded
        self.tune_timeout_ms = 40 * 60 * 1000
        self.tune_rule = RULE_TYREUS_LUYBEN

    def level_mc(self, name):
        for pair in LEVELS:
            if pair[0] == name:
                return pair[1]
        return None

    def validate(self):
        """Raise ValueError naming the parameter when the configuration is unsafe or inconsistent."""
        if self.max_target_mc > HARD_MAX_TARGET_MC:
            _bad("max_target_mc", self.max_target_mc, "above the hard limit %d mC" % HARD_MAX_TARGET_MC)
        if self.min_target_mc > self.max_target_mc:
            _bad("min_target_mc", self.min_target_mc, "above max_target_mc %d" % self.max_target_mc)
        if self.over_temp_mc < self.max_target_mc + 1000:
            _bad("over_temp_mc", self.over_temp_mc, "less than 1 C above max_target_mc %d" % self.max_target_mc)
        if self.auto_off_max_ms > AUTO_OFF_LIMIT_MS:
            _bad("auto_off_max_ms", self.auto_off_max_ms, "above the limit %d ms (120 min)" % AUTO_OFF_LIMIT_MS)
        if self.auto_off_ms <= 0 or self.auto_off_ms > self.auto_off_max_ms:
            _bad("auto_off_ms", self.auto_off_ms, "outside 1..auto_off_max_ms %d" % self.auto_off_max_ms)
        if self.tick_ms <= 0 or self.tick_ms > 100:
            _bad("tick_ms", self.tick_ms, "outside 1..100")
        if self.lease_ms <= self.tick_ms or self.lease_ms > 1000:
            _bad("lease_ms", self.lease_ms, "must exceed tick_ms %d and be at most 1000" % self.tick_ms)
        if self.window_ms < self.tick_ms * 10 or self.window_ms > 10000:
            _bad("window_ms", self.window_ms, "outside 10 ticks..10000 ms")
        if self.max_duty_permille <= 0 or self.max_duty_permille > 1000:
            _bad("max_duty_permille", self.max_duty_permille, "outside 1..1000")
        if self.watch_duty_permille > self.max_duty_permille:
            _bad("watch_duty_permille", self.watch_duty_permille, "above max_duty_permille")
        if self.bad_readings < 1 or self.jump_readings < 1:
            _bad("bad_readings/jump_readings", 0, "must be at least 1")
        if self.frozen_ms < 1000 or self.frozen_ms > 1000000:
            _bad("frozen_ms", self.frozen_ms, "outside 1000..1000000")
        if self.filter_shift < 0 or self.filter_shift > 6:
            _bad("filter_shift", self.filter_shift, "outside 0..6")
        if self.d_shift < 0 or self.d_shift > 10:
            _bad("d_shift", self.d_shift, "outside 0..10")
        # Integer headroom: every product on the control path stays below 2^30 (no big ints).
        if self.kp < 0 or self.kp > 10000:
            _bad("kp", self.kp, "outside 0..10000 (1000 permille/C)")
        if self.kd < 0 or self.kd > 20000:
            _bad("kd", self.kd, "outside 0..20000")
        if self.i_band_mc < 100 or self.i_band_mc > 20000:
            _bad("i_band_mc", self.i_band_mc, "outside 100..20000")
        if self.i_zone_mc < 0 or self.i_zone_mc > self.i_band_mc:
            _bad("i_zone_mc", self.i_zone_mc, "outside 0..i_band_mc")
        if self.ki < 0 or self.ki * self.tick_ms * self.i_band_mc > 900000000:
            _bad("ki", self.ki, "too large for i_band_mc %d and tick_ms %d" % (self.i_band_mc, self.tick_ms))
        if self.max_error_mc_s <= 0 or self.max_error_mc_s > 1000000:
            _bad("max_error_mc_s", self.max_error_mc_s, "outside 1..1000000")
        if self.gain_near_mc < 0 or self.gain_near_mc > 50000:
            _bad("gain_near_mc", self.gain_near_mc, "outside 0..50000")
        if self.rise_check_ms < 1000 or self.rise_check_ms > 600000:
            _bad("rise_check_ms", self.rise_check_ms, "outside 1000..600000")
        if self.rise_permille < 0 or self.rise_permille > 1000:
            _bad("rise_permille", self.rise_permille, "outside 0..1000 (0 turns the fast heat-up watch off)")
        if self.rise_ref_mc > self.max_target_mc:
            _bad("rise_ref_mc", self.rise_ref_mc, "above max_target_mc %d" % self.max_target_mc)
        if self.fall_mc < 100 or self.fall_mc > 20000:
            _bad("fall_mc", self.fall_mc, "outside 100..20000")
        if self.fall_rate_mc_s < 0 or self.fall_rate_mc_s > 10000:
            _bad("fall_rate_mc_s", self.fall_rate_mc_s, "outside 0..10000")
        if self.stuck_tau_ms < 1000 or self.stuck_tau_ms > 600000:
            _bad("stuck_tau_ms", self.stuck_tau_ms, "outside 1000..600000")
        if self.stuck_heat_permille < 0 or self.stuck_heat_permille > self.max_duty_permille:
            _bad("stuck_heat_permille", self.stuck_heat_permille, "outside 0..max_duty_permille")
        if self.stuck_rise_mc < 50 or self.stuck_rise_mc > 100000:
            _bad("stuck_rise_mc", self.stuck_rise_mc, "outside 50..100000")
        if self.dose_rest_ms < 0 or self.dose_rest_ms > 24 * 3600 * 1000:
            _bad("dose_rest_ms", self.dose_rest_ms, "outside 0..86400000 (24 h)")
        if self.stuck_clear_ms < 0 or self.stuck_clear_ms > 600000:
            _bad("stuck_clear_ms", self.stuck_clear_ms, "outside 0..600000")
        if self.runaway_error_mc_s <= 0 or self.runaway_error_mc_s > 1000000:
            _bad("runaway_error_mc_s", self.runaway_error_mc_s, "outside 1..1000000")
        if self.tune_high_permille > self.max_duty_permille or self.tune_low_permille >= self.tune_high_permille:
            _bad("tune_high_permille", self.tune_high_permille, "must be above tune_low_permille, <= max_duty")
        for pair in LEVELS:
            if pair[0] == self.default_level and pair[1] > self.max_target_mc:
                _bad("default_level", 0, "%s (%d mC) above max_target_mc" % (pair[0], pair[1]))
        return self


def _bad(name, value, why):
    raise ValueError("heat config %s = %d: %s" % (name, value, why))
