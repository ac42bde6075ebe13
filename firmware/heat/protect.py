"""Thermal protection: the checks on the measured pad temperature, each a named fault.

Call `check()` once per tick with what the controller is doing. It returns
None or a fault name (`fault_msg` says why: sensor, value, limit, parameter).
Phases while heating: APPROACH (below target - watch_hyst_mc, heating toward
it) and HOLD (reached it once). Only a target raised beyond the band goes back
to APPROACH (`retarget()`), so target changes cannot postpone a trip. The
checks, with the HeatConfig defaults (tuned on the reference pad family of
sim/thermal.py, +-30 % on every parameter: its slowest member needs 102 s to
gain the last degree below 41 C at full power, the nominal pad 28 s; "high
duty" is >= watch_duty_permille, 900; "heat" below counts full-power-equivalent
time, the sum of duty x time):

over_temp   measured >= over_temp_mc (45 C), any state; latency one tick.
heat_slow   APPROACH only, three watches.
  rise      The fast heat-up watch, which catches a sensor that was off the pad
            before heat started. Over any rise_check_ms (18 s) of heat (a window
            sliding in RISE_SLOTS = 16 steps), a reading whose lowest value in the
            window is below rise_ref_mc (29 C) must have climbed from that low by
            rise_permille (36 mC per C) of the low's distance below rise_ref_mc:
            0.25 C from 22 C, 0.11 C from 26 C, nothing from 29 C up. Why it is
            safe: a bead on the pad reads the pad, and a pad that cool under full
            power warms fast (the skin under it is warmer, the losses are small);
            the tightest case of the family (the slowest heater at rest in a 12 C
            room, sensor lag 6 s, its reading turning only after ~10 s) still rises
            1.5 x what is asked. Why it catches: a detached bead reads the room plus
            15 % of the way to the pad through a 10 s still-air lag, so it rises
            about 1/7 as fast. Measured on the reference pad (22 C room): detached
            before the start, 18.0 s whatever the target (the real pad gained < 1 C);
            detached while the pad is still within ~4 C of the room, <= 17 s.
            Limits: a bead that was off before the start is caught within one
            window only in rooms up to ~25 C (the reading must start below 29 C)
            and on pads that do not heat much faster than the reference (3 % of
            the family, pads just laid on, take longer: see config.py). Heat in
            bursts (pause and resume, `alternate` with TENS bursts, heat off and
            on) does not postpone it: see "Restarts" below.
  gain      After each gain of heating_gain_mc (0.5 C) a new goal is set;
            heat_slow when check_gain_ms (60 s) of high duty pass without
            reaching it, counted only while the reading is more than gain_near_mc
            (6 C) below the band (target - watch_hyst_mc): nearer, a slow pad of
            the family can take up to 282 s to gain 0.5 C after a 10 C ambient
            drop (44 s at the 6 C limit). Catches an open or weak heater (60 s).
  integral  (target - watch_hyst - measured) * dt summed since the last gain;
            heat_slow beyond max_error_mc_s (600 C.s; the family's worst with a
            10 C ambient drop: 482 C.s). The slow backstop near the band.
fall        Both phases (heat_slow while approaching, runaway while holding):
            at high duty the reading may not fall fall_mc (0.5 C) below a peak that
            leaks away at fall_rate_mc_s (0.15 C/s). A pad on the skin under high
            duty never falls that way: over the family (pads cooled by a hold-off and
            resumed in a 12 C room, 10 C ambient drops, 240 randomized sessions) the
            largest excess was 0.013 C. A bead leaving the pad falls at
            0.085 x (pad - room) per second: caught in 0.4 s from 42 C and 0.9 s from
            30 C in a 22 C room, whenever the pad is more than ~4 C above the room
            (nearer, the rise watch catches it). This is what catches a sensor that
            comes off during the heat-up or while holding.
runaway     HOLD only: below target - runaway_hyst_mc (3 C) with high duty for
            runaway_ms (15 s) in total, or an error integral below that band
            beyond runaway_error_mc_s (120 C.s); both reset when back in band.
            Catches a heater that failed open (slowly, in the safe direction) and,
            behind the fall watch, a sensor off the pad (about 17 s).
stuck_on    rising while the heater is off: once the duty is 0 and a bound of
            the element's stored heat (the duty, decaying with stuck_tau_ms,
            >= the slowest element) is at most stuck_heat_permille, a reading
            above stuck_floor_mc (38 C) may not rise stuck_rise_mc (0.15 C)
            above its lowest since. Runs in every state: a stuck switch is most
            dangerous when heat is meant to be off (docs/safety.md: figures).
Restarts. Heating restarts on a start, a resume after set_allowed(False) and a
target raised beyond the band. A heat-up the band has confirmed (the reading
reached it once) starts every watch afresh. One it has not keeps its rise window
and its gain watch through the hold-off or the stop (`_evidence`): otherwise heat
given in bursts shorter than rise_check_ms would never be judged, and a detached
bead would let the pad heat without end (about 56 C with 15 s bursts). The
cooling during the hold-off is taken out of the kept lows and goal, so a pad that
cooled meanwhile is judged on what the heating did; the error integral and the
fall watch start afresh (a long pause would otherwise count against a healthy pad).
No allocation unless a fault is raised (the rise window is a list made once).
"""

from firmware.compat import const
from firmware.heat import faults as F

IDLE = const(0)
APPROACH = const(1)
HOLD = const(2)
PHASE_NAMES = ("idle", "approach", "hold")

_OFF_MS_MAX = const(100000000)  # the heater-off timer stops counting here (27 h)
_DT_MAX = const(50)  # a late tick counts at most 50 ms toward an integral (bounds the products)
RISE_SLOTS = const(16)  # the fast heat-up watch's sliding window, in slots of rise_check_ms / 16


class Protector:
    def __init__(self, config):
        self._c = config
        self.phase = IDLE
        self.fault_msg = ""
        self._goal = 0
        self._gained = False
        self._watch_ms = 0
        self._err = 0  # heat-up error integral, mC * ms
        self._run_ms = 0
        self._run_err = 0  # holding error integral, mC * ms
        self._slot_min = [0] * RISE_SLOTS  # fast heat-up watch: lowest reading of each recent slot
        self._slot_i = 0  # next entry of _slot_min to write
        self._slots = 0  # slots completed since the watch started (counts up to RISE_SLOTS)
        self._slot_e = 0  # heat delivered in the current slot, permille * ms
        self._slot_low = 0  # lowest reading in the current slot
        self._peak_uc = 0  # fall watch: leaky peak of the reading, micro-C
        self._evidence = False  # a heat-up under way that the band has not confirmed (see Restarts)
        self._heated_mc = 0  # the reading at the last tick of heating
        self._off_ms = 0
        self._heat = config.max_duty_permille * 1000  # stuck-on: element heat bound, permille * 1000
        self._above = False
        self._low = 0
        self.high_permille = config.watch_duty_permille  # "high duty" (the controller lowers it for autotune)

    def restart(self, target_mc, measured_mc):
        """Heating (re)starts or the target changed: choose the phase and the counters
        (a heat-up the band has not confirmed keeps its evidence: see Restarts)."""
        c = self._c
        phase = HOLD if measured_mc >= target_mc - c.watch_hyst_mc else APPROACH
        if phase == APPROACH and self._evidence:
            self._resume(measured_mc)
        else:
            self._fresh(measured_mc)
            self._evidence = phase == APPROACH
        self.phase = phase

    def _fresh(self, measured_mc):
        c = self._c
        self._goal = measured_mc + c.heating_gain_mc
        self._gained = False
        self._watch_ms = 0
        self._err = 0
        self._run_ms = 0
        self._run_err = 0
        self._slots = 0
        self._slot_e = 0
        self._slot_low = measured_mc
        self._peak_uc = measured_mc * 1000

    def _resume(self, measured_mc):
        """Carry the rise window and the gain watch over a hold-off, less the cooling in it."""
        drop = self._heated_mc - measured_mc
        if drop > 0:
            ring = self._slot_min
            for k in range(RISE_SLOTS):
                ring[k] -= drop
            self._slot_low -= drop
            self._goal -= drop
        if measured_mc < self._slot_low:
            self._slot_low = measured_mc
        self._err = 0
        self._run_ms = 0
        self._run_err = 0
        self._peak_uc = measured_mc * 1000

    def keep_evidence(self, old):
        """After a cleared fault (this Protector replaces `old`): a heat-up the band has not
        confirmed stays on trial, as through a hold-off (see Restarts). Clearing again and again
        gave a bead that cannot see the pad a fresh rise window, 18 s of heat, each time."""
        if not old._evidence:
            return
        self._evidence = True
        for k in range(RISE_SLOTS):
            self._slot_min[k] = old._slot_min[k]
        self._slot_i = old._slot_i
        self._slots = old._slots
        self._slot_e = old._slot_e
        self._slot_low = old._slot_low
        self._goal = old._goal
        self._gained = old._gained
        self._watch_ms = old._watch_ms
        self._heated_mc = old._heated_mc

    def retarget(self, target_mc, measured_mc):
        """The target changed while heating. Only HOLD -> APPROACH (raised beyond the band)
        restarts the heat-up watch; otherwise counters keep running, so changing the target
        cannot postpone a trip."""
        if self.phase == HOLD and measured_mc < target_mc - self._c.watch_hyst_mc:
            self.restart(target_mc, measured_mc)

    def stop(self):
        """Heating ended. The stuck-on watch keeps its history (stop() cannot postpone it)."""
        self.phase = IDLE

    def check(self, heating, target_mc, measured_mc, duty, dt_ms):
        c = self._c
        if dt_ms > _DT_MAX:
            dt_ms = _DT_MAX
        if measured_mc >= c.over_temp_mc:
            return self._found(
                F.F_OVER_TEMP,
                "%s reads %s, at or above the cutoff %s (over_temp_mc)"
                % (F.SENSOR_PAD, F.fmt_c(measured_mc), F.fmt_c(c.over_temp_mc)),
            )
        heat = duty * 1000
        if heat >= self._heat:
            self._heat = heat
        else:
            self._heat -= (self._heat - heat) * dt_ms // c.stuck_tau_ms
        if duty == 0:
            if self._off_ms < _OFF_MS_MAX:
                self._off_ms += dt_ms
            if self._heat > c.stuck_heat_permille * 1000:
                self._above = False
            else:
                found = self._stuck(measured_mc)
                if found is not None:
                    return found
        else:
            self._off_ms = 0
            self._above = False
        if not heating:
            return None
        self._heated_mc = measured_mc
        found = self._fall(measured_mc, duty, dt_ms)
        if found is not None:
            return found
        if self.phase == APPROACH:
            return self._approach(target_mc, measured_mc, duty, dt_ms)
        if self.phase == HOLD:
            return self._hold(target_mc, measured_mc, duty, dt_ms)
        return None

    def _stuck(self, measured_mc):
        c = self._c
        if measured_mc <= c.stuck_floor_mc:
            self._above = False
            return None
        if not self._above:
            self._above = True
            self._low = measured_mc
            return None
        if measured_mc < self._low:
            self._low = measured_mc
            return None
        rise = measured_mc - self._low
        if rise >= c.stuck_rise_mc:
            return self._found(
                F.F_STUCK_ON,
                "%s rose from %s to %s (+%s) with the heater off for %s, limit +%s above %s "
                "(stuck_rise_mc, stuck_floor_mc; the check waits for stuck_heat_permille, stuck_tau_ms): "
                "heater switch stuck on?"
                % (F.SENSOR_PAD, F.fmt_c(self._low), F.fmt_c(measured_mc), F.fmt_c(rise), F.fmt_s(self._off_ms),
                   F.fmt_c(c.stuck_rise_mc), F.fmt_c(c.stuck_floor_mc)),
            )
        return None

    def _approach(self, target_mc, measured_mc, duty, dt_ms):
        c = self._c
        band = target_mc - c.watch_hyst_mc
        if measured_mc >= band:
            self.phase = HOLD
            self._evidence = False  # the reading reached the band: the sensor sees the pad
            self._run_ms = 0
            self._run_err = 0
            return None
        found = self._rise(measured_mc, dt_ms * duty)
        if found is not None:
            return found
        if measured_mc >= self._goal:
            self._gained = True
            self._goal = measured_mc + c.heating_gain_mc
            self._watch_ms = 0
            self._err = 0
            return None
        if not self._gained and measured_mc + c.heating_gain_mc < self._goal:
            self._goal = measured_mc + c.heating_gain_mc  # the first goal counts from the lowest reading
        if duty >= self.high_permille and measured_mc < band - c.gain_near_mc:
            self._watch_ms += dt_ms
            if self._watch_ms >= c.check_gain_ms:
                return self._found(
                    F.F_HEAT_SLOW,
                    "%s reads %s, short of %s: gained less than %s in %s at %d permille duty, more than %s "
                    "below the band (heating_gain_mc, check_gain_ms, gain_near_mc): sensor detached or heater weak?"
                    % (F.SENSOR_PAD, F.fmt_c(measured_mc), F.fmt_c(self._goal), F.fmt_c(c.heating_gain_mc),
                       F.fmt_s(self._watch_ms), duty, F.fmt_c(c.gain_near_mc)),
                )
        self._err += (band - measured_mc) * dt_ms
        if self._err >= c.max_error_mc_s * 1000:
            return self._found(
                F.F_HEAT_SLOW,
                "%s reads %s: heat-up error integral %d C.s below %s exceeds the limit %d C.s (max_error_mc_s): "
                "sensor detached or heater weak?"
                % (F.SENSOR_PAD, F.fmt_c(measured_mc), self._err // 1000000, F.fmt_c(band),
                   c.max_error_mc_s // 1000),
            )
        return None

    def _rise(self, measured_mc, heat):
        """Fast heat-up watch over a sliding window of rise_check_ms of full-power-equivalent
        heating (RISE_SLOTS slots): from the lowest reading in the window, when below rise_ref_mc,
        the reading must have climbed rise_permille of that low's distance below rise_ref_mc."""
        c = self._c
        if measured_mc < self._slot_low:
            self._slot_low = measured_mc
        self._slot_e += heat
        slot = c.rise_check_ms * 1000 // RISE_SLOTS
        if self._slot_e < slot:
            return None
        self._slot_e -= slot
        ring = self._slot_min
        i = self._slot_i
        ring[i] = self._slot_low
        i += 1
        if i >= RISE_SLOTS:
            i = 0
        self._slot_i = i
        self._slot_low = measured_mc
        if self._slots < RISE_SLOTS:
            self._slots += 1
            if self._slots < RISE_SLOTS:
                return None
        low = ring[0]
        for k in range(1, RISE_SLOTS):
            if ring[k] < low:
                low = ring[k]
        if low >= c.rise_ref_mc:
            return None
        need = (c.rise_ref_mc - low) * c.rise_permille // 1000
        if measured_mc - low >= need:
            return None
        return self._found(
            F.F_HEAT_SLOW,
            "%s reads %s: rose %s from its low %s over the last %s of full-power heating, expected at least %s "
            "(rise_permille %d of the distance below rise_ref_mc %s, rise_check_ms): sensor detached from the pad?"
            % (F.SENSOR_PAD, F.fmt_c(measured_mc), F.fmt_c(measured_mc - low), F.fmt_c(low),
               F.fmt_s(c.rise_check_ms), F.fmt_c(need), c.rise_permille, F.fmt_c(c.rise_ref_mc)),
        )

    def _fall(self, measured_mc, duty, dt_ms):
        """Fall watch (both phases): at high duty the reading may not fall fall_mc below its peak,
        a peak that leaks away at fall_rate_mc_s (faster than any pad cools)."""
        c = self._c
        peak = self._peak_uc - c.fall_rate_mc_s * dt_ms
        now_uc = measured_mc * 1000
        if now_uc > peak:
            peak = now_uc
        self._peak_uc = peak
        if duty < self.high_permille or peak - now_uc < c.fall_mc * 1000:
            return None
        return self._found(
            F.F_HEAT_SLOW if self.phase == APPROACH else F.F_RUNAWAY,
            "%s reads %s: fell %s more than a pad cools at %d mC/s (fall_rate_mc_s) while heating at %d "
            "permille, limit %s (fall_mc): sensor detached from the pad?"
            % (F.SENSOR_PAD, F.fmt_c(measured_mc), F.fmt_c((peak - now_uc) // 1000), c.fall_rate_mc_s, duty,
               F.fmt_c(c.fall_mc)),
        )

    def _hold(self, target_mc, measured_mc, duty, dt_ms):
        c = self._c
        band = target_mc - c.runaway_hyst_mc
        if measured_mc >= band:
            self._run_ms = 0
            self._run_err = 0
            return None
        if duty >= self.high_permille:
            self._run_ms += dt_ms
            if self._run_ms >= c.runaway_ms:
                return self._found(
                    F.F_RUNAWAY,
                    "%s reads %s, below %s (target %s - runaway_hyst_mc) for %s at %d permille duty, limit %s "
                    "(runaway_ms): sensor off the pad or heater failed?"
                    % (F.SENSOR_PAD, F.fmt_c(measured_mc), F.fmt_c(band), F.fmt_c(target_mc),
                       F.fmt_s(self._run_ms), duty, F.fmt_s(c.runaway_ms)),
                )
        self._run_err += (band - measured_mc) * dt_ms
        if self._run_err >= c.runaway_error_mc_s * 1000:
            return self._found(
                F.F_RUNAWAY,
                "%s reads %s: error integral %d C.s below %s (target %s - runaway_hyst_mc) exceeds the limit %d C.s "
                "(runaway_error_mc_s): sensor off the pad or heater failed?"
                % (F.SENSOR_PAD, F.fmt_c(measured_mc), self._run_err // 1000000, F.fmt_c(band), F.fmt_c(target_mc),
                   c.runaway_error_mc_s // 1000),
            )
        return None

    def _found(self, name, message):
        self.fault_msg = message
        return name
