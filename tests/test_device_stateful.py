"""A hypothesis.stateful machine over a Device on a SimBoard: host requests, garbage,
injected hardware faults and clock steps in any order.

The harness (tests/fw/harness.py) checks after every tick that outputs are zero
outside RUNNING, no pulse fires in a tick that began outside RUNNING or with a
fault latched, nothing exceeds AMP_LIMIT_UA and amplitude moves by at most
RAMP_UA_PER_TICK (or drops to zero). This machine adds what needs history:
faults stay latched until a clear_fault is accepted, every latched fault has a
cause that was injected, and the device never sends a damaged line.
"""

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware import limits
from firmware import supervisor as sup
from sim import faults
from tests.fw.harness import Harness

# which injected hardware fault may explain each latched firmware fault
CAUSES = {
    sup.F_NO_LOAD: {"lead_off", "high_impedance"},
    sup.F_OVERCURRENT: {"output_overshoot"},
    sup.F_INTERNAL: {"sense_adc_error"},
}

amplitudes = st.one_of(
    st.integers(min_value=0, max_value=limits.AMP_LIMIT_UA),
    st.sampled_from([0, 1, limits.RAMP_UA_PER_TICK, limits.AMP_LIMIT_UA, limits.AMP_LIMIT_UA + 1, -1]),
    st.integers(),
)


class DeviceMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.h = Harness(seed=3, start_ms=(1 << 30) - 3000)  # crosses the tick wrap after 300 ticks
        self.h.next_id = 1000  # ids 1..5 are left to the retry rule
        self.causes_since_clear = set()  # injected faults active at any time since the last accepted clear

    # ---- host requests --------------------------------------------------------------

    @rule(amp=st.one_of(st.none(), amplitudes))
    def start(self, amp):
        self.h.send("start", None if amp is None else {"amp_ua": [amp]})

    @rule()
    def stop(self):
        self.h.send("stop")

    @rule(ch=st.integers(min_value=-1, max_value=2), amp=amplitudes)
    def set_amp(self, ch, amp):
        self.h.send("set_amp", {"ch": ch, "amp_ua": amp})

    @rule()
    def clear_fault(self):
        self.h.send("clear_fault")

    @rule()
    def status(self):
        self.h.send("status")

    @rule(data=st.binary(max_size=200))
    def garbage(self, data):
        self.h.send_raw(data)

    @rule(request_id=st.integers(min_value=1, max_value=5), op=st.sampled_from(["start", "stop", "clear_fault"]))
    def retry(self, request_id, op):
        self.h.send(op, None, request_id=request_id)

    # ---- hardware ---------------------------------------------------------------------

    @rule(name=st.sampled_from(faults.names()))
    def inject(self, name):
        self.h.fault(name, True)
        self.causes_since_clear.add(name)

    @precondition(lambda self: self.h.board.active_faults)
    @rule(data=st.data())
    def repair(self, data):
        name = data.draw(st.sampled_from(sorted(self.h.board.active_faults)))
        self.h.fault(name, False)

    # ---- time ----------------------------------------------------------------------------

    @rule(ticks=st.integers(min_value=1, max_value=50))
    def advance(self, ticks):
        for _ in range(ticks):
            before = list(self.h.faults)
            since = len(self.h.inbox)
            self.h.tick()
            new = self.h.inbox[since:]
            # only an accepted clear_fault answers "IDLE" while a fault was latched
            # (stop in FAULT answers "FAULT", start is refused)
            cleared = any(m.get("ok") is True and m.get("state") == "IDLE" for m in new)
            after = self.h.faults
            if not cleared:
                assert all(f in after for f in before), "fault unlatched without clear_fault: %s -> %s" % (before, after)
            else:
                self.causes_since_clear = set(self.h.board.active_faults)
            for fault in after:
                assert CAUSES[fault] & self.causes_since_clear, "%s latched without a cause (injected: %s)" % (
                    fault,
                    sorted(self.causes_since_clear),
                )
            self.causes_since_clear |= set(self.h.board.active_faults)

    # ---- invariants (hold between rules; the harness checks inside every tick) ----------------

    @invariant()
    def outputs_zero_unless_running(self):
        device = self.h.device
        if device.supervisor.state != sup.RUNNING:
            assert self.h.amps() == [0] * len(device.channels)
            assert self.h.board.pulse_out.last_commanded_ua == [0] * len(device.channels)

    @invariant()
    def amplitude_within_limit(self):
        for amp in self.h.amps():
            assert 0 <= amp <= limits.AMP_LIMIT_UA
        for ch in self.h.device.channels:
            assert 0 <= ch.target_ua <= limits.AMP_LIMIT_UA

    @invariant()
    def fault_state_consistent(self):
        s = self.h.device.supervisor
        assert (s.state == sup.FAULT) == bool(s.faults)

    @invariant()
    def device_output_is_clean(self):
        assert self.h.host_errors == 0, "the device sent a damaged or over-long line"


TestDeviceMachine = DeviceMachine.TestCase
TestDeviceMachine.settings = settings(
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
