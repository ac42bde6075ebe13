"""A hypothesis.stateful machine aimed at how sessions end: stops, pauses, leases, the session timer.

The same simulated device and the same checks as tests/test_device_stateful.py (DeviceChecks:
the harness's per-tick invariants, and the model of the session after every tick: a stop,
once begun, ends in IDLE and only a `start` brings RUNNING back; the session timer begins
it on time; a refused request changes nothing; status always fits its frame; hello's lease
and heat's default level are the settings'), with rules that reach the ends of sessions far
more often than DeviceMachine's: short sessions and leases, ramps longer than the lease,
several requests in one tick (stop, pause and resume together), a host that goes quiet,
the defaults changed by `settings`, programs (presets and uploaded ones, with heat or not).
"""

from hypothesis import strategies as st
from hypothesis.stateful import rule

from firmware import limits as L
from firmware import presets
from tests.strategies import heat_request, programs, requests
from tests.test_device_stateful import DeviceChecks, machine_settings

EXAMPLES = 100
STEPS = 30

PRESETS = presets.names()
STOPPING_OPS = ["stop", "stop", "pause", "pause", "resume", "resume", "keepalive", "status", "estop", "hello",
                "clear_fault"]
FAULTS = ["electrode_off:0", "overcurrent:1", "sense_adc_error", "thermistor_open"]


@st.composite
def start_fields(draw):
    """A start request's fields: a session set by hand, or a program (a preset or an uploaded one)."""
    fields = {}
    if draw(st.integers(0, 3)) == 0:
        fields["program"] = draw(st.sampled_from(PRESETS + ["rx", "n" * 24, "a_very-long_program_name"]))
        if draw(st.booleans()):
            fields["amp_ua"] = draw(st.lists(st.sampled_from([2000, 8000, 20000]), min_size=1, max_size=2))
    else:
        fields["amp_ua"] = draw(st.lists(st.integers(2000, 30000), min_size=1, max_size=2))
        ramp_ms = draw(st.sampled_from([None, L.RAMP_MIN_MS, 2000, L.RAMP_DEFAULT_MS]))
        if ramp_ms is not None:
            fields["ramp_ms"] = ramp_ms
        session_ms = draw(st.sampled_from([None, None, 1000, 1500, 3000]))
        if session_ms is not None:
            fields["session_ms"] = session_ms
    lease_ms = draw(st.sampled_from([None, 0, L.LEASE_MIN_MS, 1000, L.LEASE_DEFAULT_MS]))
    if lease_ms is not None:
        fields["lease_ms"] = lease_ms
    return fields


# one tick's requests: what a host sends while a stop ramps down (amplitude up included)
_TICK_REQUESTS = st.lists(
    st.one_of(
        st.sampled_from([{"op": op} for op in STOPPING_OPS]),
        st.builds(lambda ch, amp: {"op": "set_amp", "ch": ch, "amp_ua": amp}, st.integers(0, 1),
                  st.sampled_from([0, 4000, 20000])),
        st.builds(lambda ch, steps: {"op": "amp_step", "ch": ch, "steps": steps}, st.integers(0, 1),
                  st.sampled_from([-2, 4])),
        st.sampled_from([{"op": "heat"}, {"op": "heat", "level": "high"}]),
    ),
    min_size=1, max_size=3,
)


class StopMachine(DeviceChecks):
    @rule(fields=start_fields())
    def start(self, fields):
        """A new session, from whatever state (refused unless IDLE: a fault is cleared first)."""
        if self.h.state == "FAULT":
            self._send("clear_fault")
            self._tick(1)
        self._send("start", fields)
        self._tick(1)

    @rule(ticks=st.sampled_from([10, 40, 100, 200]))
    def hold(self, ticks):
        """A host in control: keepalives every 0.4 s, inside the shortest lease (ramps reach their targets)."""
        while ticks > 0:
            self._tick(min(ticks, 40))
            ticks -= 40
            self._send("keepalive")

    def _fresh_start(self, fields):
        """End whatever runs (estop, or clear a fault), then start a new session with fields."""
        state = self.h.state
        if state != "IDLE":
            self._send("clear_fault" if state == "FAULT" else "estop")
            self._tick(1)
        self._send("start", fields)
        self._tick(1)

    @rule(fields=start_fields(), up=st.sampled_from([0, 10, 40, 200]), down=st.sampled_from([0, 1, 10, 60, 150, 300]),
          batch=st.one_of(st.just([]), _TICK_REQUESTS), after=st.sampled_from([1, 2, 50, 300]))
    def stop_under_way(self, fields, up, down, batch, after):
        """A session that stops, and what comes while its stop ramps down: `down` ticks of a
        quiet host (its lease may run out), then one tick's requests (pause, resume, set_amp...)."""
        self._fresh_start(fields)
        self.hold(up)
        self._send("stop")
        self._tick(down)  # 0: the requests below come in the stop's own tick
        for request in batch:
            request = dict(request)
            self._send(request.pop("op"), request)
        self._tick(after)

    @rule(ticks=st.one_of(st.integers(1, 400), st.sampled_from([1, 5, 50, 100, 300])))
    def quiet(self, ticks):
        """A host that says nothing: leases run out, stops ramp down, session timers run."""
        self._tick(ticks)

    @rule(batch=_TICK_REQUESTS, ticks=st.sampled_from([1, 1, 2, 20]))
    def tick_requests(self, batch, ticks):
        """Requests handled in the same tick (stop then pause then resume, set_amp while stopping...)."""
        for request in batch:
            fields = dict(request)
            self._send(fields.pop("op"), fields)
        self._tick(ticks)

    @rule(fields=start_fields(), heat=st.sampled_from([{}, {}, {"minutes": 1}, {"level": "high"}, {"level": "low"},
                                                      {"target_mc": 41000}]))
    def session_with_heat(self, fields, heat):
        """A new session (the last one ended by estop) that asks for heat at once: at the request's
        level, or without one at the program's or `medium`, never at what an earlier session used."""
        self._fresh_start(fields)
        self._send("heat", heat)
        self._tick(1)

    @rule(request=st.one_of(st.just({"op": "heat"}), heat_request()))
    def heat(self, request):
        fields = dict(request)
        fields.pop("op")
        self._send("heat", fields)
        self._tick(1)

    @rule(changes=st.dictionaries(
        st.sampled_from(["lease_default_ms", "session_default_ms", "ramp_default_ms"]),
        st.sampled_from([0, 1000, L.LEASE_MIN_MS, L.LEASE_DEFAULT_MS, 15000, L.SESSION_DEFAULT_MS, -1]),
        min_size=1, max_size=2))
    def change_settings(self, changes):
        self._send("settings", {"set": changes})
        self._tick(1)

    @rule(program=programs())
    def upload(self, program):
        self._send("program_put", {"program": program})
        self._tick(1)

    @rule(request=requests())
    def request(self, request):
        fields = dict(request)
        self._send(fields.pop("op"), fields)
        self._tick(1)

    @rule(name=st.sampled_from(FAULTS), ticks=st.sampled_from([1, 20]))
    def inject(self, name, ticks):
        self._fault(name, True)
        self._tick(ticks)

    @rule()
    def recover(self):
        self._recover()


SETTINGS = machine_settings(EXAMPLES, STEPS)
TestStopMachine = StopMachine.TestCase
TestStopMachine.settings = SETTINGS
