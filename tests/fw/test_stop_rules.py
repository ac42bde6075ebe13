"""A stop, once begun, always ends in IDLE; and the defaults a session starts from.

A stop (the `stop` request, or the session timer) ramps the output down and then
ends the session. Nothing may turn it into a pause that a `resume` could undo:
not the host's lease running out while it ramps, not a `pause` request. Those
cut the output at once (as they always do) and the stop completes in that tick,
keeping its own reason. A fault or an estop still wins, as before.

Also here: what `heat` without a level starts at, and the lease `hello` reports
(both are what a host sees of a session's defaults). Portable: runs in the VM too.
"""

from firmware import limits
from firmware.protocols import messages as msg
from tests.fw.harness import Harness

RAMP_MS = limits.RAMP_MIN_MS  # 1 s from zero to the target, and back down: longer than the shortest lease
LEASE_MS = limits.LEASE_MIN_MS
SECOND = 1000 // limits.TICK_MS  # ticks


def running(amp_ua=30000, lease_ms=0, ramp_ms=RAMP_MS, h=None, **fields):
    """RUNNING at amp_ua on channel 0 (reached), heat on, with the lease asked for."""
    h = h or Harness()
    request = {"amp_ua": [amp_ua], "lease_ms": lease_ms, "ramp_ms": ramp_ms}
    for key in fields:
        request[key] = fields[key]
    h.ok("start", request)
    h.ok("heat", {"level": "medium"})
    while h.amps()[0] < amp_ua:
        h.tick(SECOND // 5)
        h.ok("keepalive")  # a lease, if any, held while the output ramps up
    return h


def assert_stop_ended(h, reason, since):
    """IDLE with the stop's reason, output zero, heat ended with the session (not held off)."""
    assert h.state == "IDLE", "a stop must end in IDLE, got %s (%s)" % (h.state, h.device.supervisor.reason)
    assert h.device.supervisor.reason == reason, (reason, h.device.supervisor.reason)
    assert h.device.stopping is False
    assert h.amps() == [0, 0] and h.board.pulse_out.last_commanded_ua == [0, 0]
    assert h.device.heat.state == "off" and not h.device.heat.heater.on(), h.device.heat.status()
    assert h.device.heat.reason == reason, h.device.heat.status()
    events = h.events("state", since)
    assert events and events[-1]["state"] == "IDLE" and events[-1]["reason"] == reason, events
    assert "PAUSED" not in [e["state"] for e in events], events


def assert_cannot_resume(h):
    reply = h.request("resume")
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE, reply
    count = len(h.pulses)
    h.tick(SECOND)
    assert h.state == "IDLE" and len(h.pulses) == count, "no output after a stop ended"


# ---- the lease runs out while a stop ramps down --------------------------------------------------


def test_a_stop_whose_host_goes_quiet_ends_in_idle_when_the_lease_runs_out():
    """A host that sends stop and goes away must not leave the session PAUSED (lease_expired):
    it would never end, and its heat would stay in it, held off."""
    h = running(lease_ms=LEASE_MS)
    since = len(h.inbox)
    reply = h.ok("stop")
    assert reply["stopping"] is True
    ticks = h.tick_until(lambda: h.state != "RUNNING", 5 * SECOND)
    assert ticks <= LEASE_MS // limits.TICK_MS + 2, "the lease still cuts the output on time (%d ticks)" % ticks
    assert_stop_ended(h, "stop", since)
    assert_cannot_resume(h)


def test_a_session_end_whose_host_goes_quiet_ends_in_idle_with_its_reason():
    h = running(lease_ms=LEASE_MS, session_ms=2000)
    while not h.device.stopping:
        h.tick(SECOND // 5)
        assert h.state == "RUNNING", h.device.supervisor.reason
        h.ok("keepalive")
    since = len(h.inbox)
    assert h.amps()[0] > 0 and h.device.supervisor.reason == "session_end"
    ticks = h.tick_until(lambda: h.state != "RUNNING", 5 * SECOND)  # the host is gone
    assert ticks <= LEASE_MS // limits.TICK_MS + 2, ticks
    assert_stop_ended(h, "session_end", since)
    assert_cannot_resume(h)


# ---- pause while a stop ramps down ------------------------------------------------------------


def test_pause_during_a_stop_completes_the_stop_and_resume_cannot_undo_it():
    """stop, pause, resume, set_amp 20000 used to run the session on at 20 mA with heat on."""
    h = running()
    since = len(h.inbox)
    h.ok("stop")
    h.tick(5)
    assert h.state == "RUNNING" and h.amps()[0] > 0  # ramping down
    reply = h.ok("pause")
    assert reply["state"] == "IDLE", "the pause reply shows the stop completed: %r" % reply
    assert_stop_ended(h, "stop", since)
    assert_cannot_resume(h)
    h.ok("set_amp", {"ch": 0, "amp_ua": 20000})  # in IDLE: a target for the next start, no output
    h.tick(SECOND)
    assert h.state == "IDLE" and h.amps() == [0, 0]


def test_pause_during_a_session_end_completes_it_as_a_session_end():
    h = running(session_ms=2000)
    h.tick_until(lambda: h.device.stopping, 3 * SECOND)
    since = len(h.inbox)
    assert h.amps()[0] > 0
    reply = h.ok("pause")
    assert reply["state"] == "IDLE", "the pause reply shows the session end completed: %r" % reply
    assert_stop_ended(h, "session_end", since)
    assert_cannot_resume(h)


def test_a_pause_without_a_stop_still_pauses():
    h = running(amp_ua=10000)
    assert h.ok("pause")["state"] == "PAUSED"
    assert h.amps() == [0, 0] and h.device.supervisor.reason == "request"
    assert h.ok("resume")["state"] == "RUNNING"


# ---- nothing else undoes a stop; a fault or an estop still wins ---------------------------------


def test_buttons_and_a_stall_cannot_undo_a_stop():
    h = running()
    since = len(h.inbox)
    h.ok("stop")
    assert h.device.button_step(1) == 0 and h.device.channels[0].target_ua == 0
    h.device.interrupt_outputs()  # the loop stood still: output zero, and the stop is done
    h.tick(1)
    assert_stop_ended(h, "stop", since)


def test_a_fault_during_a_stop_still_latches_and_an_estop_still_stops_at_once():
    h = running(amp_ua=10000)
    h.ok("stop")
    h.fault("sense_adc_error")
    h.tick(2)
    assert h.state == "FAULT" and h.device.stopping is False and h.amps() == [0, 0]
    h.fault("sense_adc_error", False)
    h.tick(2)
    assert h.ok("clear_fault")["state"] == "IDLE"
    assert_cannot_resume(h)
    h = running()
    h.ok("stop")
    h.tick(3)
    assert h.ok("estop")["state"] == "IDLE" and h.device.supervisor.reason == "estop" and h.amps() == [0, 0]


# ---- heat without a level ------------------------------------------------------------------------


def test_heat_without_a_level_starts_at_medium_not_at_the_last_sessions_target():
    h = Harness()
    h.ok("start", {"amp_ua": [0], "lease_ms": 0})
    h.ok("heat", {"target_mc": 41500})
    h.ok("stop")
    h.tick(2)
    assert h.state == "IDLE"
    h.ok("start", {"program": "conventional", "lease_ms": 0})  # a program without heat
    reply = h.ok("heat")
    assert reply["level"] == "medium" and reply["target_mc"] == 40000, reply
    h.ok("heat", {"target_mc": 39000})
    h.ok("heat", {"off": True})
    reply = h.ok("heat")
    assert reply["level"] == "medium" and reply["target_mc"] == 40000, reply
    h.ok("estop")
    h.ok("start", {"amp_ua": [0], "lease_ms": 0})  # no program
    h.ok("heat", {"level": "high"})
    h.ok("heat", {"off": True})
    reply = h.ok("heat")
    assert reply["level"] == "medium" and reply["target_mc"] == 40000, reply


def test_heat_without_a_level_in_a_program_with_heat_starts_at_the_programs_target():
    h = Harness()
    h.ok("start", {"program": "heat-low", "lease_ms": 0})
    assert h.device.heat.level == "low"
    h.ok("heat", {"off": True})
    reply = h.ok("heat")
    assert reply["level"] == "low" and reply["target_mc"] == 38000, reply


# ---- the lease hello reports ----------------------------------------------------------------------


def test_hello_reports_the_lease_a_start_would_get():
    h = Harness()
    assert h.ok("hello")["lease_ms"] == limits.LEASE_DEFAULT_MS
    for lease_ms in (0, 10000):
        h.ok("settings", {"set": {"lease_default_ms": lease_ms}})
        reply = h.ok("hello")
        assert reply["lease_ms"] == lease_ms, "hello says lease %d, a start gets %d" % (reply["lease_ms"], lease_ms)
        h.ok("start", {"amp_ua": [0]})
        assert h.device.lease_ms == lease_ms and h.ok("status")["lease_ms"] == lease_ms
        h.ok("estop")

