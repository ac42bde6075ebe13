"""A hypothesis.stateful machine over a two-channel Device on a SimBoard: protocol
requests (valid and invalid), garbage bytes, injected hardware faults and clock
steps, in any order.

Every tick runs the harness's invariant checker (tests/fw/invariants.py, the
same one the MicroPython replays use): no pulse outside the channel's approved
envelope (amplitude, phase, gap, ratio, phase charge), zero net charge per
pulse, amplitude change per tick within the ramp step, zero output outside
RUNNING, FAULT latched until a successful clear_fault, amplitude back to zero
after every interruption (so pulses start from the bottom of the ramp), r.m.s.
over any 1 s under the hard limit. The machine adds what needs history: every
latched fault has an injected cause, and the device never sends a damaged line.

And what needs a model of the session (DeviceChecks, shared with the machine aimed at
stops in tests/test_device_stateful_stop.py), checked after every tick:

- a stop, once begun (a `stop` request while RUNNING, or the session timer), ends in IDLE:
  never PAUSED (a pause or the lease running out during its ramp-down completes it), its
  output only falls, and nothing but an accepted `start` brings RUNNING back (not resume,
  set_amp, amp_step, heat, keepalive, ...); only a start or a resume enters RUNNING at all;
- the session timer begins that stop once the session has run its session_ms;
- a refused request changes nothing a host can observe (status, settings, stim, heat,
  session timers, the log), checked around the request's own handler;
- every status reply is accepted and fits one frame whatever the state, its faults the
  first of those latched (`faults_more` counts the rest); no reply is an `internal` error;
- hello reports the lease a start without lease_ms gets; heat without a level or target
  starts at the program's heat, or `medium`, never at an earlier session's.

Each run is also written down as a scenario (sim.scenario format): the
MicroPython replay (tests/test_replay_micropython.py) runs the very sequences
this machine generates inside the `micropython` process.
"""

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware import envelope
from firmware import limits as L
from firmware import supervisor as sup
from firmware.heat import faults as heat_faults
from firmware.protocols import frame
from firmware.protocols import messages as msg
from sim import faults
from sim.thermal import THERMAL_FAULTS
from tests.fw.harness import Harness
from tests.strategies import garbage, heat_request, requests, settings as stim_settings

# 200 examples of 50 steps (issue 3's acceptance), derandomized: the same sequences on every run.
EXAMPLES = 200
STEPS = 50
SEED = 3
START_MS = (1 << 30) - 3000  # crosses the tick wrap after 300 ticks
CHANNELS = 2


def causes_of(fault):
    """The injected hardware faults that can explain a latched firmware fault."""
    kind, _, ch = fault.partition(":")
    if kind == sup.F_NO_LOAD:
        return {"electrode_off:" + ch, "electrode_partial:" + ch}
    if kind == sup.F_OVERCURRENT:
        return {"overcurrent:" + ch}
    if kind == sup.F_INTERNAL:
        return {"sense_adc_error"}
    if kind in HEAT_CAUSES:
        return HEAT_CAUSES[kind]
    return set()  # envelope_breach, lease_expired: nothing the simulator injects may cause them


_ANY_THERMAL = set(THERMAL_FAULTS)
HEAT_CAUSES = {
    heat_faults.F_SENSOR_OPEN: {"thermistor_open"},
    heat_faults.F_SENSOR_SHORT: {"thermistor_short"},
    heat_faults.F_SENSOR_JUMP: {"thermistor_open", "thermistor_short"},
    # the plant-level checks: a detached bead, a dead or weak heater, a stuck switch, a draught
    heat_faults.F_HEAT_SLOW: _ANY_THERMAL,
    heat_faults.F_RUNAWAY: _ANY_THERMAL,
    heat_faults.F_STUCK_ON: _ANY_THERMAL,
    heat_faults.F_OVER_TEMP: _ANY_THERMAL,
    heat_faults.F_SENSOR_FROZEN: _ANY_THERMAL,
}


def observable(device):
    """What a host can see of the device (status, stim, heat, settings, log) and the session
    timers behind it: a refused request must leave all of it as it was."""
    s = device.supervisor
    heat = device.heat
    run = device.run
    return {
        "status": device.status(),
        "channels": [(channel.setting.to_dict(), channel.ramp_ms, channel.ramp_step_ua) for channel in device.channels],
        "supervisor": (s.fault_msg, s.latest_msg, s.changes),
        "session": (device.session_ms, device.session_run_ms, device.lease_ms, device._lease_from,
                    list(device.max_amp_ua), run.phase_index if run is not None else None),
        "heat": (heat.status(), heat.duration_ms, heat.session_ms) if heat is not None else None,
        "settings": device.settings.to_dict(),
        "patient_mode": device.lock.has_pin,
        "programs": device.clinic.store.names(),
        "log": (device.recorder.open, device.recorder.log.last_seq),
        "outputs": list(device.pulse_out.last_commanded_ua),
    }


def changes(before, after):
    return ["%s: %r -> %r" % (key, before[key], after[key]) for key in before if before[key] != after[key]]


class DeviceChecks(RuleBasedStateMachine):
    """The harness, the scenario of the run and the checks that need history, without rules."""

    def __init__(self):
        super().__init__()
        self.h = Harness(seed=SEED, start_ms=START_MS, channels=CHANNELS)
        self.h.next_id = 1000  # ids 1..5 are left to the retry rule
        self.causes_since_clear = set()  # injected faults active at any time since the last accepted clear
        self.steps = []  # this run as (elapsed ms, scenario step)
        # the model of the session, from the requests the device ran (handled: this tick's)
        self.handled = []  # (op, message, reply fields or None if refused, (state, heat state, program))
        self.state = "IDLE"  # at the end of the last tick
        self.stop_begun = False  # a stop is under way (since the last accepted start): it must end in IDLE
        self.session_ms = L.SESSION_DEFAULT_MS
        self.run_ms = 0  # time RUNNING in this session, as the device's session timer counts it
        self.stop_amps = [0] * CHANNELS  # amplitudes at the end of the last tick a stop was under way
        # the settings a session starts from, as accepted settings requests left them
        self.defaults = {"lease_default_ms": L.LEASE_DEFAULT_MS, "session_default_ms": L.SESSION_DEFAULT_MS,
                         "ramp_default_ms": L.RAMP_DEFAULT_MS}
        link = self.h.device.link
        for op in list(link.ops):
            link.ops[op] = self._watched(op, link.ops[op])

    def scenario(self):
        """This run as a scenario file (sim.scenario format) that replays it tick for tick."""
        duration_ms = max(self.h.board.clock.elapsed_ms - L.TICK_MS, 0)  # the last tick ran at this time
        steps = []
        for at_ms, step in self.steps:
            if at_ms <= duration_ms:  # steps after the last tick never reached the device
                step = dict(step)
                step["at_s"] = at_ms / 1000
                steps.append(step)
        return {
            "description": "a run of tests/test_device_stateful.py",
            "duration_s": duration_ms / 1000,
            "seed": SEED,
            "start_ms": START_MS,
            "channels": CHANNELS,
            "steps": steps,
        }

    def _now(self):
        return self.h.board.clock.elapsed_ms

    def _send(self, op, fields=None, request_id=None):
        request_id = self.h.send(op, fields, request_id)
        message = {"id": request_id, "op": op}
        message.update(fields or {})
        self.steps.append((self._now(), {"send": message}))

    def _watched(self, op, handler):
        """The device's handler for `op`, run as it is; the machine notes what it did, and checks
        that a refusal changed nothing (after the lease renewal every valid request makes)."""
        device = self.h.device

        def run(message):
            before = observable(device)
            heat = device.heat
            pre = (device.supervisor.state_name, heat.state if heat is not None else None, device.program)
            try:
                result = handler(message)
            except msg.RequestError as err:
                after = observable(device)
                assert after == before, "refused %s %r (%s: %s) changed: %s" % (
                    op, message, err.code, err.message, "; ".join(changes(before, after)))
                self.handled.append((op, message, None, pre))
                raise
            self.handled.append((op, message, result, pre))
            if op == msg.OP_STATUS:
                self._check_status(message, result)
            return result

        return run

    def _check_status(self, message, fields):
        faults = list(self.h.device.supervisor.faults)
        shown = fields["faults"]
        assert shown == faults[:len(shown)] and (shown or not faults), "status faults %r, latched %r" % (shown, faults)
        assert len(shown) + fields.get("faults_more", 0) == len(faults), "status: %r + faults_more %r, latched %r" % (
            shown, fields.get("faults_more"), faults)
        assert fields["state"] == self.h.state and fields["stopping"] == self.h.device.stopping
        try:
            data = frame.encode_frame(msg.reply_ok(message["id"], fields))
        except ValueError as err:
            raise AssertionError("the status reply does not fit one frame in %s %s: %s" % (self.h.state, faults, err))
        assert len(data) <= frame.MAX_LINE_BYTES

    def _tick(self, count):
        h = self.h
        for _ in range(count):
            latched = bool(h.faults)
            self.handled = []
            inbox = len(h.inbox)
            h.tick()
            for message in h.inbox[inbox:]:
                assert message.get("err") != msg.E_INTERNAL, "the device could not answer: %r" % message
            self._check_session()
            if latched and not h.faults:  # cleared (the checker has made sure it was by clear_fault)
                self.causes_since_clear = set(h.board.active_faults)
            self.causes_since_clear |= set(h.board.active_faults)
            for fault in h.faults:
                assert causes_of(fault) & self.causes_since_clear, "%s latched without a cause (injected: %s)" % (
                    fault, sorted(self.causes_since_clear))

    def _check_session(self):
        """After a tick: the requests it ran against the model of the session."""
        h = self.h
        device = h.device
        state = h.state
        began = self.state  # the state the tick's timers ran in (unless a fault came first: then it ended)
        self.state = state
        if began == "RUNNING":
            self.run_ms += L.TICK_MS
        if not (self.handled or self.stop_begun or device.stopping or state != began) and (
                state != "RUNNING" or self.run_ms < self.session_ms):
            return  # nothing ran, nothing changed: the common tick

        def where():
            return "%s -> %s (reason %s), requests run: %s" % (
                began, state, device.supervisor.reason,
                ", ".join("%s %s" % (op, "ok" if ok is not None else "refused") for op, _, ok, _ in self.handled))

        was_stopping = self.stop_begun
        entered = False  # an accepted start or resume in this tick
        for op, message, result, pre in self.handled:
            if result is None:
                continue
            if op == msg.OP_START:
                entered = True
                was_stopping = self.stop_begun = False
                self.run_ms = 0
                if "program" in message:
                    self.session_ms = result["session_ms"]
                    ramp_ms = device.program.ramp_ms or self.defaults["ramp_default_ms"]
                else:
                    self.session_ms = message.get("session_ms", self.defaults["session_default_ms"])
                    ramp_ms = message.get("ramp_ms", self.defaults["ramp_default_ms"])
                assert device.lease_ms == message.get("lease_ms", self.defaults["lease_default_ms"]), (
                    "start %r: lease %d" % (message, device.lease_ms))
                assert [channel.ramp_ms for channel in device.channels] == [ramp_ms] * len(device.channels), (
                    "start %r: ramp %r" % (message, [channel.ramp_ms for channel in device.channels]))
            elif op == msg.OP_RESUME:
                entered = True
                assert pre[0] == "PAUSED", "resume accepted in %s" % pre[0]
            elif op == msg.OP_STOP and result["state"] == "RUNNING":
                assert result["stopping"] is True, "stop in RUNNING began no stop: %r" % result
                self.stop_begun = True
            elif op == msg.OP_SETTINGS and "set" in message:
                for name in message["set"]:
                    if name in self.defaults:
                        self.defaults[name] = message["set"][name]
            elif op == msg.OP_HELLO:
                assert result["lease_ms"] == self.defaults["lease_default_ms"], "hello lease_ms %d, setting %d" % (
                    result["lease_ms"], self.defaults["lease_default_ms"])
            elif op == msg.OP_PROGRAM_PUT:
                self._check_ramp_down(message["program"])
            elif op == msg.OP_HEAT and pre[1] == "off" and not ("level" in message or "target_mc" in message
                                                             or "off" in message):
                program = pre[2]
                if program is not None and program.has_heat:
                    expected = (program.heat_level, program.heat_target_mc)
                else:
                    expected = ("medium", device.heat.config.level_mc("medium"))
                assert (result["level"], result["target_mc"]) == expected, (
                    "heat without level (program %s): %s %d mC, not %r" % (
                        program.name if program else None, result["level"], result["target_mc"], expected))
        if state == "RUNNING" and began != "RUNNING":
            assert entered, "RUNNING again without an accepted start or resume: " + where()
        if state == "RUNNING" and began == "RUNNING" and not self.handled and self.run_ms >= self.session_ms:
            assert device.stopping, "the session ran %d ms of %d and no stop began: %s" % (
                self.run_ms, self.session_ms, where())
        if state == "RUNNING" and device.stopping:
            self.stop_begun = True  # the device says so (the session timer's stop, too)
        if self.stop_begun:
            assert state != "PAUSED", "a stop began, then PAUSED: a resume would undo it: " + where()
            if state == "RUNNING":
                assert device.stopping, "RUNNING on after a stop, no start since: " + where()
                for i in range(len(device.channels)):
                    channel = device.channels[i]
                    assert channel.target_ua == 0, "ch %d target %d while a stop ramps down: %s" % (
                        i, channel.target_ua, where())
                    assert channel.amp_ua <= self.stop_amps[i] or not was_stopping, "ch %d rose %d -> %d while a " \
                        "stop ramps down: %s" % (i, self.stop_amps[i], channel.amp_ua, where())
                self.stop_amps = h.amps()
            else:  # ended: by itself (its own reason), by an estop or by a fault
                assert state == "FAULT" or device.supervisor.reason in ("stop", "session_end", "estop"), (
                    "a stop ended in IDLE with reason %s: %s" % (device.supervisor.reason, where()))
                self.stop_begun = False  # from here on only a start or a resume enters RUNNING, as ever

    def _check_ramp_down(self, program):
        """An accepted program leaves a stop's ramp time to every phase without TENS after a TENS one."""
        ramp_ms = program.get("ramp_ms", self.defaults["ramp_default_ms"])
        phases = program["phases"]
        for i in range(1, len(phases)):
            if phases[i - 1].get("tens", True) and not phases[i].get("tens", True):
                assert phases[i]["duration_s"] * 1000 >= ramp_ms, "program %s accepted: phase %d without TENS " \
                    "lasts %d s, the ramp down %d ms" % (program["name"], i, phases[i]["duration_s"], ramp_ms)

    def _fault(self, name, active):
        self.h.fault(name, active)
        self.steps.append((self._now(), {("fault" if active else "clear"): name}))
        if active:
            self.causes_since_clear.add(name)

    def _recover(self):
        """Every injected fault repaired, then clear_fault."""
        for name in sorted(self.h.board.active_faults):
            self._fault(name, False)
        self._send("clear_fault")
        self._tick(1)

    # ---- invariants between rules (the checker runs inside every tick) ------------------------

    @invariant()
    def outputs_zero_unless_running(self):
        device = self.h.device
        if device.supervisor.state != sup.RUNNING:
            assert self.h.amps() == [0] * len(device.channels)
            assert self.h.board.pulse_out.last_commanded_ua == [0] * len(device.channels)

    @invariant()
    def amplitudes_within_the_envelope(self):
        for ch in self.h.device.channels:
            assert ch.max_amp_ua == envelope.max_amp_ua(ch.setting)
            assert 0 <= ch.amp_ua <= ch.max_amp_ua and 0 <= ch.target_ua <= ch.max_amp_ua
            envelope.check(ch.setting, ch.target_ua)

    @invariant()
    def heater_follows_the_session(self):
        device = self.h.device
        heat = device.heat
        if heat.heater.on():
            assert device.supervisor.state == sup.RUNNING and heat.state in ("heating", "holding")
        if device.supervisor.state in (sup.IDLE, sup.FAULT):
            assert heat.state in ("off", "fault") and not heat.heater.on()

    @invariant()
    def fault_state_consistent(self):
        s = self.h.device.supervisor
        assert (s.state == sup.FAULT) == bool(s.faults)

    @invariant()
    def device_output_is_clean(self):
        assert self.h.host_errors == 0, "the device sent a damaged or over-long line"
        assert self.h.device.link.tx_dropped == 0, "replies dropped although the host reads every tick"


class DeviceMachine(DeviceChecks):

    # ---- host requests (each is followed by the tick that handles it) -----------------------

    @rule(request=requests())
    def request(self, request):
        fields = dict(request)
        op = fields.pop("op")
        self._send(op, fields)
        self._tick(1)

    @rule(amps=st.lists(st.integers(L.SENSE_MIN_CHECK_UA, 30000), min_size=1, max_size=2),
          lease_ms=st.sampled_from([0, 0, 1000, L.LEASE_DEFAULT_MS]),
          ramp_ms=st.sampled_from([L.RAMP_MIN_MS, 2000, L.RAMP_DEFAULT_MS]),
          session_ms=st.one_of(st.none(), st.integers(2000, 20000)))
    def start_stimulating(self, amps, lease_ms, ramp_ms, session_ms):
        """A host that wants stimulation: whatever the state, the requests that lead to it."""
        self._want_stimulation(amps, lease_ms, ramp_ms, session_ms)

    def _want_stimulation(self, amps, lease_ms, ramp_ms, session_ms):
        state = self.h.state
        if state == "RUNNING":
            for ch in range(len(amps)):
                self._send("set_amp", {"ch": ch, "amp_ua": amps[ch]})
            self._tick(1)
            return
        if state == "PAUSED":
            self._send("resume")
            self._tick(1)
            return
        if state == "FAULT":
            self._send("clear_fault")
            self._tick(1)
        fields = {"amp_ua": amps, "lease_ms": lease_ms, "ramp_ms": ramp_ms}
        if session_ms is not None:
            fields["session_ms"] = session_ms
        self._send("start", fields)
        self._tick(1)

    # ---- heat -------------------------------------------------------------------------------

    @rule(request=heat_request())
    def heat(self, request):
        fields = dict(request)
        fields.pop("op")
        self._send("heat", fields)
        self._tick(2)

    @rule(level=st.sampled_from(["low", "medium", "high"]), interlock=st.sampled_from(["concurrent", "alternate"]),
          amps=st.lists(st.sampled_from([0, 0, 6000]), min_size=2, max_size=2),
          ticks=st.integers(min_value=100, max_value=1500))
    def heat_for_a_while(self, level, interlock, amps, ticks):
        """A host that wants heat (with or without stimulation) for up to 15 s, keepalives every second."""
        if self.h.state == "FAULT":
            self._send("clear_fault")
            self._tick(1)
        if self.h.state != "IDLE":
            self._send("estop")
            self._tick(1)
        self._send("start", {"amp_ua": amps, "lease_ms": L.LEASE_DEFAULT_MS, "interlock": interlock})
        self._tick(1)
        self._send("heat", {"level": level})
        while ticks > 0:
            self._tick(min(ticks, 100))
            ticks -= 100
            self._send("keepalive")

    @rule(ch=st.integers(0, 1), permille=st.integers(0, 1000))
    def set_amp_inside(self, ch, permille):
        self._send("set_amp", {"ch": ch, "amp_ua": self.h.ch(ch).max_amp_ua * permille // 1000})
        self._tick(1)

    @rule(ch=st.integers(0, 1), delta=st.integers(-2, 2))
    def set_amp_at_the_edge(self, ch, delta):
        self._send("set_amp", {"ch": ch, "amp_ua": self.h.ch(ch).max_amp_ua + delta})
        self._tick(1)

    @rule(ch=st.integers(0, 1), stim=stim_settings())
    def set_stim(self, ch, stim):
        self._send("set_stim", {"ch": ch, "stim": stim})
        self._tick(1)

    @rule(op=st.sampled_from(["keepalive"] * 4 + ["resume", "resume", "pause", "stop", "estop", "hello"]))
    def simple(self, op):
        self._send(op)
        self._tick(1)

    @rule(data=garbage)
    def garbage(self, data):
        self.h.send_raw(data.encode())
        self.steps.append((self._now(), {"raw": data}))
        self._tick(1)

    @rule(request_id=st.integers(min_value=1, max_value=5),
          op=st.sampled_from(["start", "stop", "clear_fault", "pause", "resume", "estop"]))
    def retry(self, request_id, op):
        self._send(op, {"lease_ms": 0} if op == "start" else None, request_id=request_id)
        self._tick(1)

    # ---- hardware ---------------------------------------------------------------------------

    @rule(name=st.sampled_from(faults.names(CHANNELS)))
    def inject(self, name):
        self._fault(name, True)

    @precondition(lambda self: self.h.board.active_faults)
    @rule(data=st.data())
    def repair(self, data):
        self._fault(data.draw(st.sampled_from(sorted(self.h.board.active_faults))), False)

    @rule()
    def recover(self):
        self._recover()

    # ---- time ----------------------------------------------------------------------------------

    @rule(ticks=st.one_of(st.integers(min_value=1, max_value=300), st.sampled_from([1, 2, 100, 300])))
    def advance(self, ticks):
        self._tick(ticks)

    @rule(ch=st.integers(0, 1), ticks=st.integers(min_value=20, max_value=150))
    def stimulate_for_a_while(self, ch, ticks):
        """Stimulation with keepalives every second, as a host in control would."""
        amps = [0, 0]
        amps[ch] = 6000
        self._want_stimulation(amps, L.LEASE_DEFAULT_MS, L.RAMP_MIN_MS, None)
        while ticks > 0:
            self._tick(min(ticks, 100))
            ticks -= 100
            self._send("keepalive")


def machine_settings(examples, steps):
    """The same examples on every run (derandomized, no database): CI and a reader replay one run."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        database=None,
        # no explain phase: its tracing makes shrinking a failure take minutes instead of seconds
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


SETTINGS = machine_settings(EXAMPLES, STEPS)
TestDeviceMachine = DeviceMachine.TestCase
TestDeviceMachine.settings = SETTINGS
