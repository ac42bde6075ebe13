"""Thermal protection: the checks on the measured pad temperature, each a named fault.

Call `check()` once per tick with what the controller is doing. It returns
None or a fault name (`fault_msg` says why: sensor, value, limit, parameter).
Phases while heating: APPROACH (below target - watch_hyst_mc, heating toward
it) and HOLD (reached it once). Only a target raised beyond the band goes back
to APPROACH (`retarget()`), so target changes cannot postpone a trip. The
checks, with the HeatConfig defaults (tuned on the reference pad family of
sim/thermal.py, +-30 % on every parameter: its slowest member needs 102 s to
gain the last degree below 41 C at full power, the nominal pad 28 s):

over_temp   measured >= over_temp_mc (45 C), any state; latency one tick.
heat_slow   APPROACH only. Heat-up watch: after each gain of heating_gain_mc
            (0.5 C) a new goal is set; heat_slow when check_gain_ms (60 s) of
            ticks at high duty (>= watch_duty_permille, 900) pass without
            reaching it. Error integral: (target - watch_hyst - measured) * dt
            summed since the last gain; heat_slow beyond max_error_mc_s
            (600 C.s). Catches a sensor detached before the start (reads the
            room: about 40 s), an open or weak heater (60 s), a pad far too big
            for the heater.
runaway     HOLD only: below target - runaway_hyst_mc (3 C) with high duty for
            runaway_ms (15 s) in total, or an error integral below that band
            beyond runaway_error_mc_s (120 C.s); both reset when back in band.
            Catches a sensor that came off the pad while holding (its reading
            falls, the controller drives hard: about 17 s on the reference
            pad) and a heater that failed open (slowly, in the safe direction).
stuck_on    rising while the heater is off: once the commanded duty has been
            0 for stuck_grace_ms (10 s: the element's stored heat has gone
            into the pad), a reading above stuck_floor_mc (38 C: skin cannot
            warm a pad that far) may not rise stuck_rise_mc (0.5 C) above its
            lowest value since. Runs in every state (heating with the PID at
            0, stopped, held off): a stuck switch is most dangerous when heat
            is meant to be off. On the reference plant family the rise after
            10 s off is at most 0.08 C, even when heat stops mid-approach.
No allocation unless a fault is raised.
"""

from firmware.compat import const
from firmware.heat import faults as F

IDLE = const(0)
APPROACH = const(1)
HOLD = const(2)
PHASE_NAMES = ("idle", "approach", "hold")

_OFF_MS_MAX = const(100000000)  # the heater-off timer stops counting here (27 h)
_DT_MAX = const(50)  # a late tick counts at most 50 ms toward an integral (bounds the products)


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
        self._off_ms = 0
        self._above = False
        self._low = 0
        self.high_permille = config.watch_duty_permille  # "high duty" (the controller lowers it for autotune)

    def restart(self, target_mc, measured_mc):
        """Heating (re)starts or the target changed: choose the phase, zero the counters."""
        c = self._c
        self.phase = HOLD if measured_mc >= target_mc - c.watch_hyst_mc else APPROACH
        self._goal = measured_mc + c.heating_gain_mc
        self._gained = False
        self._watch_ms = 0
        self._err = 0
        self._run_ms = 0
        self._run_err = 0

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
        if duty == 0:
            if self._off_ms < _OFF_MS_MAX:
                self._off_ms += dt_ms
            if self._off_ms < c.stuck_grace_ms:
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
                "(stuck_rise_mc, stuck_floor_mc): heater switch stuck on?"
                % (F.SENSOR_PAD, F.fmt_c(self._low), F.fmt_c(measured_mc), F.fmt_c(rise), F.fmt_s(self._off_ms),
                   F.fmt_c(c.stuck_rise_mc), F.fmt_c(c.stuck_floor_mc)),
            )
        return None

    def _approach(self, target_mc, measured_mc, duty, dt_ms):
        c = self._c
        band = target_mc - c.watch_hyst_mc
        if measured_mc >= band:
            self.phase = HOLD
            self._run_ms = 0
            self._run_err = 0
            return None
        if measured_mc >= self._goal:
            self._gained = True
            self._goal = measured_mc + c.heating_gain_mc
            self._watch_ms = 0
            self._err = 0
            return None
        if not self._gained and measured_mc + c.heating_gain_mc < self._goal:
            self._goal = measured_mc + c.heating_gain_mc  # the first goal counts from the lowest reading
        if duty >= self.high_permille:
            self._watch_ms += dt_ms
            if self._watch_ms >= c.check_gain_ms:
                return self._found(
                    F.F_HEAT_SLOW,
                    "%s reads %s, short of %s: gained less than %s in %s at %d permille duty "
                    "(heating_gain_mc, check_gain_ms): sensor detached or heater weak?"
                    % (F.SENSOR_PAD, F.fmt_c(measured_mc), F.fmt_c(self._goal), F.fmt_c(c.heating_gain_mc),
                       F.fmt_s(self._watch_ms), duty),
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
