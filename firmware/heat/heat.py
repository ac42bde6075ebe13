"""HeatController: the heat pad's thermostat, its protections and its dose, behind one small interface.

    heat = HeatController(heater, thermistor, config=None, heater_thermistor=None)
    heat.set_level("high")          # or heat.set_target_mc(41500); both capped at config.max_target_mc
    heat.start(now)                 # or start(now, duration_ms); auto-off after 30 min by default
    ...
    fault = heat.tick(now)          # once per 10 ms tick, ALWAYS (also when stopped or faulted)
    if fault is not None:           # a new fault latched this tick: its text is heat.found_msg
        supervisor.trip(fault, heat.found_msg)
    heat.set_allowed(False)         # interlock: hold heat off without a fault (policy `alternate`)
    heat.stop()

heater: a driver with lease(duty_permille, lease_ms) and off() (firmware/drivers/interfaces.py).
    The controller does the time-proportioning itself: on-ticks call
    heater.lease(1000, lease_ms), off-ticks call heater.off(); every tick calls one of them.
thermistor, heater_thermistor: drivers with read_raw() -> 0..65535 (see thermistor.py for the
    divider). heater_thermistor (the heater-side sensor) is optional.

Requests raise firmware.protocols.messages.RequestError (code and a message naming the limit):
    set_target_mc(mc)       E_OUT_OF_RANGE beyond min_target_mc..max_target_mc (30..43 C),
                            E_BAD_FIELD when not an integer
    set_level(name)         low / medium / high = 38 / 40 / 42 C, capped like a target;
                            E_BAD_FIELD for an unknown name
    start(now, duration_ms=None)   E_BAD_STATE when heating, faulted or at the dose cap;
                            E_OUT_OF_RANGE when duration_ms is outside 1..auto_off_max_ms (120 min)
    stop()                  never raises; heater off now; a latched fault stays latched
    set_allowed(flag)       False: heater off now and held off, no fault, timers run on;
                            True: resumes (phase and protection counters start afresh)
    start_autotune(now, target_mc=None)   relay autotune at <= max_target_mc - tune_margin_mc;
                            when done the gains are applied (config.kp/ki/kd updated too)
    clear_fault()           unlatch -> "off" (False when nothing was latched); E_BAD_STATE while
                            the pad still reads at or above the over_temp cutoff
    reset_dose()            new dose account (only when off; the device decides session bounds)

Attributes: state, reason, fault (None or name), fault_msg, allowed, target_mc, level,
duty_permille, changes (bumps on every state change), tune_msg, config.

status() -> dict (integers, strings, booleans, None; no floats):
    state            "off" | "heating" (approaching) | "holding" | "autotune" | "fault"
    reason           why heat last stopped: "" | "stop" | "timer" | "dose_cap" | "fault" |
                     "autotune_done" | "autotune_failed"
    level            "low" | "medium" | "high" | None (explicit target)
    target_mc        milli-C
    measured_mc      filtered pad temperature, milli-C (None before the first valid reading)
    heater_side_mc   only with a heater-side sensor, milli-C
    duty_permille    the controller's output (time-averaged duty), 0..1000
    heater_duty_pct  duty_permille // 10
    heater_on        whether the heater is leased during this tick (the on/off of the window)
    allowed          the interlock flag
    phase            "idle" | "approach" | "hold" (which protections run)
    cem43_ms         CEM43 dose in CEM43 milliseconds (60000 = one equivalent minute at 43 C)
    cem43_cap_ms     the cap, same unit
    time_left_ms     until auto-off (0 unless heating/holding)
    fault            None or the latched fault name
    tune_target_mc   only while autotuning

Each tick: read and check the sensor(s) -> accumulate the dose -> protections ->
session timer and dose cap -> PID (or the autotune relay) -> time-proportioned
output, renewing the short heater lease on every on-tick. Any fault: heater off
at once, state "fault", latched until clear_fault(). stop(), the timer and the
dose cap turn heat off without a fault (`reason` says which).

The sensors, the dose and the stuck-on and over-temperature checks keep running
while heat is stopped or held off: a stuck heater is most dangerous when the
device thinks heat is off. tick() does not allocate (integers only) except when
a fault is raised.
"""

from firmware.clock import ticks_diff
from firmware.heat import autotune as at
from firmware.heat import faults as F
from firmware.heat.config import LEVELS, HeatConfig
from firmware.heat.crosscheck import CrossCheck
from firmware.heat.dose import Dose
from firmware.heat.duty import TimeProportioner
from firmware.heat.pid import Pid
from firmware.heat.protect import APPROACH, PHASE_NAMES, Protector
from firmware.heat.sensor import Sensor
from firmware.protocols import messages

ST_OFF = "off"
ST_HEATING = "heating"  # approaching the target
ST_HOLDING = "holding"  # reached the target once, regulating
ST_AUTOTUNE = "autotune"
ST_FAULT = "fault"

# why heat last stopped (`reason`)
R_STOP = "stop"
R_SESSION_END = "session_end"  # the session's own timer ended it, and heat with it
R_ESTOP = "estop"
R_TIMER = "timer"
R_DOSE_CAP = "dose_cap"
R_FAULT = "fault"
R_TUNE_DONE = "autotune_done"
R_TUNE_FAILED = "autotune_failed"


class HeatController:
    def __init__(self, heater, thermistor, config=None, heater_thermistor=None):
        if config is None:
            config = HeatConfig()
        config.validate()
        self.config = config
        self.heater = heater
        self.pad = Sensor(thermistor, config, F.SENSOR_PAD)
        self.side = None  # the heater-side sensor, when fitted
        self.cross = None
        if heater_thermistor is not None:
            self.side = Sensor(heater_thermistor, config, F.SENSOR_HEATER)
            self.cross = CrossCheck(config)
        self.pid = Pid(config)
        self.output = TimeProportioner(heater, config)
        self.protect = Protector(config)
        self.dose = Dose(config.dose_cap_ms)
        self.tune = at.AutoTune(config)
        self.level = config.default_level
        self.target_mc = config.level_mc(config.default_level)
        self.state = ST_OFF
        self.allowed = True
        self.fault = None  # latched fault name, or None
        self.fault_msg = ""
        self.found_msg = ""  # the text of the fault tick() returned last (the first, or a further one)
        self._hot_while_latched = False  # over_temp reported while another fault was latched
        # the pad while a fault is latched (the heater off): how long, its lowest and highest
        # filtered reading; a stuck_on clear needs them (a switch still stuck keeps heating)
        self._latched_ms = 0
        self._latched_low_mc = 0
        self._latched_high_mc = 0
        self._off_ms = 0  # how long heat has been off (up to dose_rest_ms): the dose starts at 0 at boot
        self.reason = ""  # why heat last stopped
        self.tune_msg = ""  # the last autotune's outcome
        self.duty_permille = 0  # the controller's output (time-average), permille
        self.changes = 0  # bumps on every state change
        self.session_ms = 0
        self.duration_ms = config.auto_off_ms
        self._last = 0
        self._ticked = False
        self._fresh = False  # heating (re)started: set phase and counters on the next valid reading
        heater.off()

    # ---- requests (raise messages.RequestError; not the hot path) -------------------------

    def set_target_mc(self, target_mc):
        """Set an explicit target in milli-C (min_target_mc..max_target_mc)."""
        self._check_target(target_mc, "heat target")
        self.level = None
        self._retarget(target_mc)

    def set_level(self, name):
        """low / medium / high (38 / 40 / 42 C), capped like any target."""
        target_mc = self.config.level_mc(name)
        if target_mc is None:
            raise messages.RequestError(
                messages.E_BAD_FIELD,
                "heat level %s unknown: one of %s" % (messages._show(name), ", ".join([pair[0] for pair in LEVELS])),
            )
        self._check_target(target_mc, "heat level %s" % name)
        self.level = name
        self._retarget(target_mc)

    def start(self, now, duration_ms=None):
        """Start heating toward the target; auto-off after duration_ms (default config.auto_off_ms)."""
        c = self.config
        self._refuse_in_fault("start heat")
        if self.state != ST_OFF:
            raise messages.RequestError(messages.E_BAD_STATE, "cannot start heat: already %s (stop first)" % self.state)
        if duration_ms is None:
            duration_ms = c.auto_off_ms
        if not isinstance(duration_ms, int) or duration_ms <= 0 or duration_ms > c.auto_off_max_ms:
            raise messages.RequestError(
                messages.E_OUT_OF_RANGE,
                "heat duration %s ms outside 1..%d ms (auto_off_max_ms)" % (duration_ms, c.auto_off_max_ms),
            )
        self._refuse_at_dose_cap()
        self.duration_ms = duration_ms
        self.session_ms = 0
        self.pid.reset(0)
        self.output.restart()
        self._fresh = True
        self.reason = ""
        self._set_state(ST_HEATING)

    def stop(self, reason=None):
        """Heat off now (no fault). Safe to call in any state, any number of times. `reason`: why,
        when the session's end says more than "stop" (R_SESSION_END, R_ESTOP)."""
        if self.state != ST_OFF and self.state != ST_FAULT:
            self._end(reason or R_STOP)
        else:
            self.output.off()
            self.duty_permille = 0

    def set_allowed(self, allowed):
        """Interlock: False holds the heater off (no fault, timers run on); True lets it heat again."""
        allowed = bool(allowed)
        if allowed == self.allowed:
            return
        self.allowed = allowed
        if not allowed:
            self.output.off()
            self.duty_permille = 0
        else:
            self.output.restart()
            self._fresh = True

    def start_autotune(self, now, target_mc=None):
        """Relay autotune around target_mc (default config.tune_target_mc); gains applied when done."""
        c = self.config
        self._refuse_in_fault("autotune")
        if self.state != ST_OFF:
            raise messages.RequestError(messages.E_BAD_STATE, "cannot autotune: heat is %s (stop first)" % self.state)
        self._refuse_at_dose_cap()
        if target_mc is None:
            target_mc = c.tune_target_mc
        limit = c.max_target_mc - c.tune_margin_mc
        if not isinstance(target_mc, int) or target_mc > limit or target_mc < c.min_target_mc:
            raise messages.RequestError(
                messages.E_OUT_OF_RANGE,
                "autotune target %s mC outside %d..%d mC (max_target_mc - tune_margin_mc)"
                % (target_mc, c.min_target_mc, limit),
            )
        self.tune.start(now, target_mc)
        self.protect.high_permille = min(c.watch_duty_permille, c.tune_high_permille)
        self.output.restart()
        self._fresh = True
        self.reason = ""
        self.tune_msg = ""
        self._set_state(ST_AUTOTUNE)

    def clear_fault(self):
        """Unlatch after the supervisor cleared: back to "off". Refused while over the cutoff."""
        if self.state != ST_FAULT:
            return False
        c = self.config
        if self.pad.valid and self.pad.value_mc >= c.over_temp_mc:
            raise messages.RequestError(
                messages.E_BAD_STATE,
                "cannot clear heat fault: %s reads %s, at or above the cutoff %s"
                % (F.SENSOR_PAD, F.fmt_c(self.pad.value_mc), F.fmt_c(c.over_temp_mc)),
            )
        if self.fault == F.F_STUCK_ON:
            self._refuse_stuck_on_clear()
        if self.fault == F.F_SENSOR_JUMP and self.pad.jump_standing():
            raise messages.RequestError(
                messages.E_BAD_STATE,
                "cannot clear heat fault: %s reads %s, still more than %s from its last good reading %s "
                "(jump_limit_mc): check the sensor and its connector"
                % (F.SENSOR_PAD, F.fmt_c(self.pad.sample_mc), F.fmt_c(c.jump_limit_mc), F.fmt_c(self.pad.value_mc)),
            )
        self.pad.reset()
        if self.side is not None:
            self.side.reset()
            self.cross.reset()
        # every check starts afresh (a stuck-on watch must not compare new readings with the
        # lowest reading from before the fault: the pad may still be warm from it), except the
        # evidence of a heat-up the band has not confirmed: clearing cannot put that off
        old = self.protect
        self.protect = Protector(self.config)
        self.protect.keep_evidence(old)
        self.fault = None
        self.fault_msg = ""
        self._hot_while_latched = False
        self._set_state(ST_OFF)
        return True

    def _refuse_stuck_on_clear(self):
        """A stuck switch heats on with the output off, so the pad is watched first: for
        stuck_clear_ms after the latch, and then it must not be heating (risen stuck_rise_mc
        above its lowest since the latch, and not yet fallen as much below its highest)."""
        c = self.config
        if self._latched_ms < c.stuck_clear_ms:
            raise messages.RequestError(
                messages.E_BAD_STATE,
                "cannot clear stuck_on yet: the pad is watched with the heater off for %s after the fault, "
                "%s so far (stuck_clear_ms)" % (F.fmt_s(c.stuck_clear_ms), F.fmt_s(self._latched_ms)),
            )
        now_mc = self.pad.value_mc
        if now_mc - self._latched_low_mc >= c.stuck_rise_mc and self._latched_high_mc - now_mc < c.stuck_rise_mc:
            raise messages.RequestError(
                messages.E_BAD_STATE,
                "cannot clear stuck_on: %s reads %s, %s above its lowest %s since the fault with the heater off "
                "(stuck_rise_mc %s): the switch still heats; remove the pad and repair the heater switch"
                % (F.SENSOR_PAD, F.fmt_c(now_mc), F.fmt_c(now_mc - self._latched_low_mc),
                   F.fmt_c(self._latched_low_mc), F.fmt_c(c.stuck_rise_mc)),
            )

    def reset_dose(self):
        """A new therapy session begins (the device decides): a new dose account if heat has been
        off for dose_rest_ms, else the account goes on. Returns True when it was reset."""
        if self.state != ST_OFF:
            raise messages.RequestError(messages.E_BAD_STATE, "cannot reset the heat dose while heat is %s" % self.state)
        if self._off_ms < self.config.dose_rest_ms:
            return False
        self.dose.reset()
        return True

    # ---- the tick (hot path: integers only, no allocation unless a fault is raised) -------

    def tick(self, now):
        """Once per tick (10 ms). Returns None, or the name of a fault that latched on this tick."""
        c = self.config
        if self._ticked:
            dt = ticks_diff(now, self._last)
            if dt < 0:
                dt = 0
        else:
            dt = c.tick_ms
            self._ticked = True
        self._last = now
        latched = self.state == ST_FAULT
        if self.state == ST_OFF or latched:
            if self._off_ms < c.dose_rest_ms:
                self._off_ms += dt  # stops at the rest time: a small int
        else:
            self._off_ms = 0

        if self.output.on and dt > c.lease_ms and not latched:
            return self._trip(
                F.F_LEASE_EXPIRED,
                "heater lease: tick came %d ms after the last, longer than the lease %d ms (lease_ms): "
                "control loop stalled, heater was off meanwhile" % (dt, c.lease_ms),
            )

        driving = self.duty_permille > 0
        found = self.pad.update(self.duty_permille, dt)
        if found is not None and not latched:
            return self._trip(found, self.pad.fault_msg)
        if self.side is not None:
            found = self.side.update(self.duty_permille, dt)
            if found is not None and not latched:
                return self._trip(found, self.side.fault_msg)
        if not self.pad.valid:
            self.output.off()  # no measurement yet: never heat blind
            self.duty_permille = 0
            return None
        measured = self.pad.value_mc
        self.dose.add(measured, dt)
        if latched:
            self.output.off()
            self.pid.track(measured)
            if self._latched_ms < c.stuck_clear_ms:
                self._latched_ms += dt
            if measured < self._latched_low_mc:
                self._latched_low_mc = measured
            elif measured > self._latched_high_mc:
                self._latched_high_mc = measured
            return self._hot_after_fault(measured)

        if self.side is not None and self.side.valid:
            side_mc = self.side.value_mc
            if side_mc >= c.heater_side_max_mc:
                return self._trip(
                    F.F_OVER_TEMP,
                    "%s reads %s, at or above the limit %s (heater_side_max_mc)"
                    % (F.SENSOR_HEATER, F.fmt_c(side_mc), F.fmt_c(c.heater_side_max_mc)),
                )
            found = self.cross.update(measured, side_mc, driving, dt)
            if found is not None:
                return self._trip(found, self.cross.fault_msg)

        state = self.state
        heating = self.allowed and (state == ST_HEATING or state == ST_HOLDING or state == ST_AUTOTUNE)
        target = self.tune.target_mc if state == ST_AUTOTUNE else self.target_mc
        if heating and self._fresh:
            self._fresh = False
            self.protect.restart(target, measured)
        found = self.protect.check(heating, target, measured, self.duty_permille, dt)
        if found is not None:
            return self._trip(found, self.protect.fault_msg)

        if state == ST_HEATING or state == ST_HOLDING:
            self.session_ms += dt
            if self.session_ms >= self.duration_ms:
                self._end(R_TIMER)
                heating = False
            elif self.dose.reached():
                self._end(R_DOSE_CAP)
                heating = False
        elif state == ST_AUTOTUNE and self.dose.reached():
            self._end(R_DOSE_CAP)
            heating = False

        if not heating or not self.pad.current:
            # not heating, or the latest reading was rejected (out of range, a jump): no heat
            # on a reading that is not the pad's now, not even until the rejection latches
            self.pid.track(measured)
            self.output.off()
            self.duty_permille = 0
            return None
        if state == ST_AUTOTUNE:
            duty = self.tune.step(now, measured)
            self.pid.track(measured)
            if self.tune.state != at.RUNNING:
                self._tune_finished()
                return None
        else:
            duty = self.pid.update(target, measured)
            phase_state = ST_HEATING if self.protect.phase == APPROACH else ST_HOLDING
            if phase_state != state:
                self._set_state(phase_state)
        self.duty_permille = duty
        self.output.drive(duty)
        return None

    # ---- status (allocates: call it when asked, not every tick) ---------------------------

    def ended_by_itself(self):
        """Off by its own timer, dose cap or autotune's end, not by a request, a stop or a fault."""
        return self.state == ST_OFF and self.reason in (R_TIMER, R_DOSE_CAP, R_TUNE_DONE, R_TUNE_FAILED)

    def reading_mc(self):
        """The pad temperature to show and record, or None: before the first reading, while
        the latest reading is rejected (open, short, a jump) and while sensor_frozen is
        latched. The last good value the controller keeps would look like a reading then."""
        pad = self.pad
        if not pad.valid or not pad.current or self.fault == F.F_SENSOR_FROZEN:
            return None
        return pad.value_mc

    def status(self):
        """A dict of integers, strings, booleans and None (see the module text for the units)."""
        heating = self.state == ST_HEATING or self.state == ST_HOLDING
        fields = {
            "state": self.state,
            "reason": self.reason,
            "level": self.level,
            "target_mc": self.target_mc,
            "measured_mc": self.reading_mc(),
            "duty_permille": self.duty_permille,
            "heater_duty_pct": self.duty_permille // 10,
            "heater_on": self.output.on,
            "allowed": self.allowed,
            "phase": PHASE_NAMES[self.protect.phase],
            "cem43_ms": self.dose.cem43_ms,
            "cem43_cap_ms": self.dose.cap_ms,
            "time_left_ms": self.duration_ms - self.session_ms if heating else 0,
            "fault": self.fault,
        }
        if self.side is not None:
            fields["heater_side_mc"] = self.side.value_mc if self.side.valid else None
        if self.state == ST_AUTOTUNE:
            fields["tune_target_mc"] = self.tune.target_mc
        return fields

    # ---- internals ------------------------------------------------------------------------

    def _check_target(self, target_mc, what):
        c = self.config
        if not isinstance(target_mc, int) or isinstance(target_mc, bool):
            raise messages.RequestError(
                messages.E_BAD_FIELD, "%s must be an integer in mC, got %s" % (what, messages._show(target_mc))
            )
        if target_mc > c.max_target_mc:
            raise messages.RequestError(
                messages.E_OUT_OF_RANGE,
                "%s %d mC exceeds the limit %d mC (max_target_mc)" % (what, target_mc, c.max_target_mc),
            )
        if target_mc < c.min_target_mc:
            raise messages.RequestError(
                messages.E_OUT_OF_RANGE,
                "%s %d mC is below the minimum %d mC (min_target_mc)" % (what, target_mc, c.min_target_mc),
            )

    def _retarget(self, target_mc):
        self.target_mc = target_mc
        if (self.state == ST_HEATING or self.state == ST_HOLDING) and self.pad.valid and not self._fresh:
            self.protect.retarget(target_mc, self.pad.value_mc)

    def _refuse_in_fault(self, what):
        if self.state == ST_FAULT:
            raise messages.RequestError(
                messages.E_BAD_STATE, "cannot %s: heat fault %s latched (%s)" % (what, self.fault, self.fault_msg)
            )

    def _refuse_at_dose_cap(self):
        if self.dose.reached():
            raise messages.RequestError(
                messages.E_BAD_STATE,
                "cannot heat: CEM43 dose %d ms reached the cap %d ms (dose_cap_ms)"
                % (self.dose.cem43_ms, self.dose.cap_ms),
            )

    def _set_state(self, state):
        if state != self.state:
            self.state = state
            self.changes += 1

    def _end(self, reason):
        self.output.off()
        self.duty_permille = 0
        self.protect.stop()
        self.protect.high_permille = self.config.watch_duty_permille
        self.reason = reason
        self._set_state(ST_OFF)

    def _tune_finished(self):
        tune = self.tune
        self.tune_msg = tune.message
        if tune.state == at.DONE:
            kp, ki, kd = tune.result[0], tune.result[1], tune.result[2]
            self.pid.set_gains(kp, ki, kd)
            self.config.kp = kp
            self.config.ki = ki
            self.config.kd = kd
            self._end(R_TUNE_DONE)
        else:
            self._end(R_TUNE_FAILED)

    def _hot_after_fault(self, measured_mc):
        """A pad past the cutoff while another fault is latched (a stuck heater switch keeps
        heating with the output off): a further fault, once, so the host and the log hear that
        the pad itself is now too hot, with the dose so far."""
        if measured_mc < self.config.over_temp_mc or self._hot_while_latched or self.fault == F.F_OVER_TEMP:
            return None
        self._hot_while_latched = True
        self.found_msg = "remove the pad: %s over the cutoff %s (over_temp_mc) after %s; CEM43 dose %d ms" % (
            F.fmt_c(measured_mc), F.fmt_c(self.config.over_temp_mc), self.fault, self.dose.cem43_ms)
        return F.F_OVER_TEMP

    def _trip(self, name, message):
        self.output.off()
        self.duty_permille = 0
        self.protect.stop()
        self.protect.high_permille = self.config.watch_duty_permille
        self.fault = name
        self.fault_msg = message
        self.found_msg = message
        self._latched_ms = 0
        self._latched_low_mc = self._latched_high_mc = self.pad.value_mc
        self.reason = R_FAULT
        self._set_state(ST_FAULT)
        return name
