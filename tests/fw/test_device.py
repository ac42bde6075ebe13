"""firmware.device.Device over simulated drivers (sim.board.SimBoard): requests and protocol.

The harness checks the safety invariants after every tick (see harness.py and
invariants.py). The TENS engine and supervisor behaviour of issue 3 (modes,
timers, lease, output monitoring) is in test_safety.py.
"""

import firmware
from firmware import envelope
from firmware import limits
from firmware import link as link_mod
from firmware.clock import TICKS_MAX
from firmware.protocols import frame
from firmware.protocols import messages as msg
from sim.board import SimSerial
from tests.fw.harness import Harness, ramp_ticks
from tests.fw.portable import Lcg

FAST_RAMP_MS = limits.RAMP_MIN_MS  # 1 s: any target in 100 ticks


def running(h=None, amps=(2000,), lease_ms=0):
    """A harness RUNNING at `amps` (reached), with no host lease unless asked."""
    if h is None:
        h = Harness()
    reply = h.request("start", {"amp_ua": list(amps), "lease_ms": lease_ms, "ramp_ms": FAST_RAMP_MS})
    assert reply["ok"] is True, reply
    h.tick(ramp_ticks(max(amps), FAST_RAMP_MS) + 2)
    assert h.amps()[: len(amps)] == list(amps), h.amps()
    return h


def settle(h, predicate, limit=2000):
    return h.tick_until(predicate, limit)


# ---- boot and hello ---------------------------------------------------------------


def test_boots_idle_with_outputs_off():
    h = Harness()
    h.tick(20)
    assert h.state == "IDLE" and h.faults == []
    assert h.pulses == []
    assert h.inbox == []  # nothing said unprompted
    assert h.board.pulse_out.last_commanded_ua == [0, 0]


def test_hello():
    h = Harness()
    reply = h.request("hello", {"proto": msg.PROTO_VERSION})
    assert reply["ok"] is True
    assert reply["proto"] == msg.PROTO_VERSION == "0.4"
    assert reply["fw"] == firmware.FIRMWARE_VERSION
    assert reply["channels"] == 2
    assert reply["amp_limit_ua"] == limits.AMP_LIMIT_UA
    assert reply["amp_step_ua"] == limits.AMP_STEP_UA
    assert reply["tick_ms"] == limits.TICK_MS
    assert reply["lease_ms"] == limits.LEASE_DEFAULT_MS
    assert reply["session_max_ms"] == limits.SESSION_MAX_MS
    assert reply["device_id"] == "pulsewarm-sim-0"
    assert h.request("hello")["ok"] is True  # proto is optional
    assert h.request("hello", {"proto": "%d.99" % msg.PROTO_MAJOR})["ok"] is True  # newer minor is fine


def test_hello_other_major_is_a_version_error():
    h = Harness()
    reply = h.request("hello", {"proto": "%d.0" % (msg.PROTO_MAJOR + 1)})
    assert reply["ok"] is False and reply["err"] == msg.E_VERSION
    assert msg.PROTO_VERSION in reply["msg"]


def test_hello_bad_proto_field():
    h = Harness()
    for bad in ("one", 1, "\u00b2.1", "0.1.2"):
        reply = h.request("hello", {"proto": bad})
        assert reply["ok"] is False and reply["err"] == msg.E_BAD_FIELD, reply
    assert h.faults == []


def test_status_fields():
    h = Harness()
    h.tick(10)
    reply = h.request("status")
    assert reply["ok"] is True
    assert reply["state"] == "IDLE" and reply["faults"] == [] and reply["fault_msg"] == ""
    assert reply["stopping"] is False and reply["session_left_ms"] == 0 and reply["lease_ms"] == 0
    assert len(reply["ch"]) == 2
    for ch in reply["ch"]:
        assert ch["amp_ua"] == 0 and ch["target_ua"] == 0 and 0 <= ch["delivered_ua"] < 100  # ADC noise only
        assert ch["max_amp_ua"] == envelope.max_amp_ua(envelope.Setting())
        assert ch["mode"] == "continuous" and ch["phase_us"] == 0 and ch["rate_hz"] == 0
    assert reply["uptime_ms"] == 10 * limits.TICK_MS
    assert reply["rx_errors"] == 0 and reply["tx_dropped"] == 0


def test_delivered_is_the_last_pulse_held_between_pulses_and_zero_on_an_idle_channel():
    """The sense reads a code or two of noise with no current: an idle channel showed 0.024 mA."""
    h = Harness()
    h.ok("set_stim", {"ch": 1, "stim": {"mode": "acupuncture", "rate_hz": 2}})
    h.ok("start", {"amp_ua": [0, 10000], "lease_ms": 0, "ramp_ms": 1000})
    h.tick(300)
    shown = []
    for _ in range(120):  # 1.2 s at 2 Hz: two or three pulses, and ticks between them
        status = h.ok("status")  # one tick each
        shown.append(status["ch"][1]["delivered_ua"])
        assert status["ch"][0]["delivered_ua"] == 0, status["ch"][0]
    assert min(shown) > 9000, shown  # between pulses: the last pulse's current, not the noise floor
    h.ok("stop")
    h.tick(300)
    assert h.ok("status")["ch"][1]["delivered_ua"] == 0


def test_status_while_running():
    h = running(amps=(6000, 3000), lease_ms=2000)
    status = h.request("status")
    assert status["state"] == "RUNNING" and status["lease_ms"] == 2000
    assert status["session_left_ms"] <= limits.SESSION_DEFAULT_MS
    ch0 = status["ch"][0]
    assert ch0["amp_ua"] == 6000 and ch0["target_ua"] == 6000 and ch0["phase_us"] == 200 and ch0["rate_hz"] == 100
    assert abs(ch0["delivered_ua"] - 6000) < 200  # the sense path measured it
    assert abs(status["ch"][1]["delivered_ua"] - 3000) < 200


# ---- start / set_amp / stop ----------------------------------------------------------


def test_start_ramps_to_target_and_fires():
    h = Harness()
    reply = h.request("start", {"amp_ua": [3000], "lease_ms": 0})
    assert reply == {"id": reply["id"], "ok": True, "state": "RUNNING"}
    assert h.events("state")[-1]["state"] == "RUNNING"
    step = h.ch(0).ramp_step_ua
    assert step == 10  # 3 mA over the default 5 s soft start
    h.tick(ramp_ticks(3000) + 10)
    assert h.amps() == [3000, 0]
    on0 = h.pulses_on(0)
    assert on0, "no pulses while running"
    assert on0[-1][3] == 3000
    assert on0[0][3] <= step  # from the bottom of the ramp
    assert h.pulses_on(1) == []  # the other channel has no target
    status = h.request("status")
    assert status["ch"][0]["target_ua"] == 3000


def test_start_while_running_or_paused_is_refused():
    h = running()
    reply = h.request("start", {"amp_ua": [5000]})
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE and "RUNNING" in reply["msg"]
    assert h.ch(0).target_ua == 2000
    h.request("pause")
    reply = h.request("start")
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE and "PAUSED" in reply["msg"]


def test_start_without_amplitude_fires_nothing():
    h = Harness()
    assert h.request("start", {"lease_ms": 0})["state"] == "RUNNING"
    h.tick(20)
    assert h.pulses == [] and h.amps() == [0, 0]


def test_start_field_errors_do_not_start():
    h = Harness()
    for fields, code, words in (
        ({"amp_ua": [limits.AMP_LIMIT_UA + 1]}, msg.E_OUT_OF_RANGE, ("amp_ua", str(limits.AMP_LIMIT_UA))),
        ({"amp_ua": [100, -1]}, msg.E_OUT_OF_RANGE, ("amp_ua",)),
        ({"amp_ua": [1, 2, 3]}, msg.E_BAD_FIELD, ("amp_ua", "2")),
        ({"amp_ua": 1000}, msg.E_BAD_FIELD, ("amp_ua",)),
        ({"amp_ua": ["1000"]}, msg.E_BAD_FIELD, ("amp_ua",)),
        ({"amp_ua": [True]}, msg.E_BAD_FIELD, ("amp_ua",)),
        ({"session_ms": limits.SESSION_MAX_MS + 1}, msg.E_OUT_OF_RANGE, ("session_ms", str(limits.SESSION_MAX_MS))),
        ({"session_ms": 999}, msg.E_OUT_OF_RANGE, ("session_ms", "1000")),
        ({"lease_ms": limits.LEASE_MIN_MS - 1}, msg.E_OUT_OF_RANGE, ("lease_ms", str(limits.LEASE_MIN_MS))),
        ({"lease_ms": limits.LEASE_MAX_MS + 1}, msg.E_OUT_OF_RANGE, ("lease_ms", str(limits.LEASE_MAX_MS))),
        ({"lease_ms": -1}, msg.E_OUT_OF_RANGE, ("lease_ms",)),
        ({"lease_ms": False}, msg.E_BAD_FIELD, ("lease_ms",)),
        ({"ramp_ms": limits.RAMP_MIN_MS - 1}, msg.E_OUT_OF_RANGE, ("ramp_ms", str(limits.RAMP_MIN_MS))),
        ({"ramp_ms": limits.RAMP_MAX_MS + 1}, msg.E_OUT_OF_RANGE, ("ramp_ms", str(limits.RAMP_MAX_MS))),
    ):
        reply = h.request("start", fields)
        assert reply["ok"] is False and reply["err"] == code, (fields, reply)
        for word in words:
            assert word in reply["msg"], (fields, reply["msg"])
        assert h.state == "IDLE"
    assert h.pulses == []


def test_start_amplitude_outside_the_envelope():
    h = Harness()
    assert h.request("set_stim", {"ch": 1, "stim": {"phase_us": 400}})["ok"] is True
    reply = h.request("start", {"amp_ua": [70000, 70000]})
    assert reply["ok"] is False and reply["err"] == msg.E_ENVELOPE
    assert "phase_charge 28000 nC exceeds the limit 25000 nC at 70000 uA" in reply["msg"], reply["msg"]
    assert h.state == "IDLE" and h.ch(0).target_ua == 0


def test_set_amp_while_running_ramps_both_ways():
    h = running(amps=(1000,))
    reply = h.request("set_amp", {"ch": 0, "amp_ua": 2000})
    assert reply["ok"] is True and reply["ch"] == 0 and reply["target_ua"] == 2000
    h.tick(ramp_ticks(2000) + 1)
    assert h.amps() == [2000, 0]
    h.request("set_amp", {"ch": 0, "amp_ua": 0})
    h.tick(ramp_ticks(2000) + 1)
    assert h.amps() == [0, 0]
    assert h.state == "RUNNING"


def test_set_amp_in_idle_takes_effect_on_start():
    h = Harness()
    assert h.request("set_amp", {"ch": 1, "amp_ua": 800})["ok"] is True
    h.tick(10)
    assert h.amps() == [0, 0] and h.pulses == []
    h.request("start", {"lease_ms": 0})
    h.tick(ramp_ticks(800) + 1)
    assert h.amps() == [0, 800]


def test_set_amp_errors():
    h = Harness()
    reply = h.request("set_amp", {"ch": 0, "amp_ua": limits.AMP_LIMIT_UA + 1})
    assert reply["ok"] is False and reply["err"] == msg.E_OUT_OF_RANGE
    assert str(limits.AMP_LIMIT_UA + 1) in reply["msg"] and str(limits.AMP_LIMIT_UA) in reply["msg"]
    reply = h.request("set_amp", {"ch": 2, "amp_ua": 100})
    assert reply["err"] == msg.E_OUT_OF_RANGE and "ch" in reply["msg"]
    reply = h.request("set_amp", {"ch": 0, "amp_ua": -1})
    assert reply["err"] == msg.E_OUT_OF_RANGE
    reply = h.request("set_amp", {"ch": 0})
    assert reply["err"] == msg.E_BAD_FIELD and "amp_ua" in reply["msg"]
    reply = h.request("set_amp", {"amp_ua": 5})
    assert reply["err"] == msg.E_BAD_FIELD and "ch" in reply["msg"]
    reply = h.request("set_amp", {"ch": 0, "amp_ua": "5"})
    assert reply["err"] == msg.E_BAD_FIELD
    assert [c.target_ua for c in h.device.channels] == [0, 0]


def test_set_amp_outside_the_envelope_names_the_limit():
    h = Harness()
    h.request("set_stim", {"ch": 0, "stim": {"phase_us": 400, "rate_hz": 250, "area_cm2": 10}})
    top = h.ch(0).max_amp_ua
    assert h.request("set_amp", {"ch": 0, "amp_ua": top})["ok"] is True
    reply = h.request("set_amp", {"ch": 0, "amp_ua": top + 1})
    assert reply["ok"] is False and reply["err"] == msg.E_ENVELOPE
    assert reply["msg"].startswith("current_density 2001 uA/cm2 exceeds the limit 2000 uA/cm2 at %d uA" % (top + 1))
    assert h.ch(0).target_ua == top  # unchanged


def test_amp_step():
    h = Harness()
    reply = h.request("amp_step", {"ch": 0, "steps": 3})
    assert reply["ok"] is True and reply["target_ua"] == 3 * limits.AMP_STEP_UA
    assert h.request("amp_step", {"ch": 0, "steps": -1})["target_ua"] == 2 * limits.AMP_STEP_UA
    assert h.request("amp_step", {"ch": 0, "steps": -limits.AMP_STEPS_MAX})["target_ua"] == 0  # not below zero
    reply = h.request("amp_step", {"ch": 0, "steps": limits.AMP_STEPS_MAX + 1})
    assert reply["err"] == msg.E_OUT_OF_RANGE and "steps" in reply["msg"] and str(limits.AMP_STEPS_MAX) in reply["msg"]
    reply = h.request("amp_step", {"ch": 0})
    assert reply["err"] == msg.E_BAD_FIELD and "steps" in reply["msg"]
    h.request("set_stim", {"ch": 1, "stim": {"phase_us": 400}})  # maximum 62502 uA
    h.request("set_amp", {"ch": 1, "amp_ua": 62000})
    reply = h.request("amp_step", {"ch": 1, "steps": 2})
    assert reply["ok"] is False and reply["err"] == msg.E_ENVELOPE and reply["msg"].startswith("phase_charge ")
    assert h.request("amp_step", {"ch": 1, "steps": 1})["target_ua"] == 62500
    h.request("set_stim", {"ch": 0, "stim": {"phase_us": 100}})
    h.request("set_amp", {"ch": 0, "amp_ua": limits.AMP_LIMIT_UA})
    reply = h.request("amp_step", {"ch": 0, "steps": 1})
    assert reply["ok"] is False and reply["err"] == msg.E_OUT_OF_RANGE and str(limits.AMP_LIMIT_UA) in reply["msg"]


def test_stop_ramps_down_then_idle():
    h = running(amps=(4000, 2000))
    since = len(h.inbox)
    reply = h.request("stop")
    assert reply["ok"] is True and reply["state"] == "RUNNING" and reply["stopping"] is True
    assert h.request("status")["stopping"] is True
    assert [c.target_ua for c in h.device.channels] == [0, 0]
    ticks = settle(h, lambda: h.state == "IDLE")
    assert ticks > 5  # a ramp, not a cut (the harness checks each step)
    assert h.amps() == [0, 0]
    event = h.events("state", since)[-1]
    assert event["state"] == "IDLE" and event["reason"] == "stop"
    count = len(h.pulses)
    h.tick(50)
    assert len(h.pulses) == count
    h.request("start", {"lease_ms": 0})
    h.tick(10)
    assert h.amps() == [0, 0]  # a new start does not bring the old amplitude back


def test_amplitude_cannot_be_raised_while_stopping():
    h = running(amps=(5000,))
    h.request("stop")
    reply = h.request("set_amp", {"ch": 0, "amp_ua": 5000})
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE and "stopping" in reply["msg"]
    reply = h.request("amp_step", {"ch": 0, "steps": 1})
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE
    settle(h, lambda: h.state == "IDLE")


def test_stop_when_idle_or_paused():
    h = Harness()
    reply = h.request("stop")
    assert reply["ok"] is True and reply["state"] == "IDLE" and reply["stopping"] is False
    running(h, amps=(3000,))
    h.request("pause")
    reply = h.request("stop")
    assert reply["state"] == "IDLE" and reply["stopping"] is False  # nothing to ramp


def test_two_channels_independent():
    h = Harness()
    h.request("start", {"amp_ua": [400, 1200], "lease_ms": 0})
    h.tick(ramp_ticks(1200) + 1)
    assert h.amps() == [400, 1200]
    h.request("set_amp", {"ch": 1, "amp_ua": 0})
    h.tick(ramp_ticks(1200) + 1)
    assert h.amps() == [400, 0]


# ---- faults and exceptions --------------------------------------------------------------


def test_latched_fault_refuses_stimulation_requests():
    h = running(amps=(5000,))
    h.fault("electrode_off:0")
    h.tick(3)
    h.fault("electrode_off:0", False)
    assert h.faults == ["no_load:0"]
    for op, fields in (
        ("start", {"amp_ua": [1000]}),
        ("set_amp", {"ch": 0, "amp_ua": 1000}),
        ("amp_step", {"ch": 0, "steps": 1}),
        ("set_stim", {"ch": 0, "stim": {"rate_hz": 80}}),
        ("resume", None),
        ("pause", None),
    ):
        reply = h.request(op, fields)
        assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE, (op, reply)
    assert "no_load:0" in h.request("start")["msg"]
    assert h.request("stop")["ok"] is True
    assert h.request("estop")["ok"] is True
    assert h.request("get_stim", {"ch": 0})["ok"] is True
    assert h.request("keepalive")["state"] == "FAULT"
    assert h.state == "FAULT"


def test_clear_fault_then_restart_ramps_from_zero():
    h = running(amps=(5000,))
    h.fault("electrode_off:0")
    h.tick(3)
    h.fault("electrode_off:0", False)
    reply = h.request("clear_fault")
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.faults == [] and [c.target_ua for c in h.device.channels] == [0, 0]
    assert h.events("state")[-1]["state"] == "IDLE"
    reply = h.request("clear_fault")
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE
    count = len(h.pulses)
    h.request("start", {"amp_ua": [3000], "lease_ms": 0})
    h.tick(5)
    restarted = h.pulses[count:]
    assert restarted and restarted[0][3] <= h.ch(0).ramp_step_ua
    h.tick(ramp_ticks(3000))
    assert h.amps() == [3000, 0] and h.state == "RUNNING"


def test_fault_while_electrode_still_off_comes_back():
    h = running(amps=(5000,))
    h.fault("electrode_off:0")
    h.tick(3)
    assert h.request("clear_fault")["ok"] is True  # nothing flows with the output off: the sense cannot tell
    h.request("start", {"amp_ua": [5000], "lease_ms": 0})
    settle(h, lambda: h.state == "FAULT", limit=400)
    assert h.faults == ["no_load:0"]
    # it came back as soon as the ramp passed the dead band, not at the old amplitude
    assert h.pulses[-1][3] < limits.SENSE_MIN_CHECK_UA + h.ch(0).ramp_step_ua + 1


def test_driver_exception_turns_outputs_off_and_latches_internal_error():
    h = running(amps=(2000, 3000))
    h.fault("sense_adc_error")
    h.tick()
    assert h.state == "FAULT" and h.faults == ["internal_error"]
    assert h.amps() == [0, 0] and h.board.pulse_out.last_commanded_ua == [0, 0]
    assert "OSError" in h.device.supervisor.fault_msg


def test_driver_exception_keeps_the_host_informed():
    h = running(amps=(2000,))
    since = len(h.inbox)
    h.fault("sense_adc_error")
    h.tick(3)
    events = h.events("state", since)
    assert events and events[-1]["state"] == "FAULT", "no state event while the driver raises"
    status = h.request("status")
    assert status["ok"] is True and status["faults"] == ["internal_error"]
    h.fault("sense_adc_error", False)
    assert h.request("clear_fault")["ok"] is True
    h.tick(5)
    assert h.state == "IDLE"


def test_exception_in_fire_latches_and_stops():
    h = running(amps=(2000,))

    def broken_fire(ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us):
        raise RuntimeError("PIO stalled")

    h.board.pulse_out.fire = broken_fire
    h.tick()
    assert h.faults == ["internal_error"] and "PIO stalled" in h.device.supervisor.fault_msg
    assert h.amps() == [0, 0]


def test_exception_while_handling_a_request_latches_and_is_announced():
    h = running(amps=(2000,))

    def broken(message):
        raise KeyError("bug")

    h.device.link.ops["status"] = broken
    h.send("status")
    h.tick()
    assert h.state == "FAULT" and h.faults == ["internal_error"] and h.amps() == [0, 0]
    assert h.events("state")[-1]["state"] == "FAULT"


def test_pulse_queue_full_fires_nothing_and_stays_safe():
    h = Harness()
    h.fault("pulse_queue_full")
    h.request("start", {"amp_ua": [2000, 2000], "lease_ms": 0})
    h.tick(100)
    assert h.pulses == []
    assert h.board.pulse_out.last_commanded_ua == [0, 0]
    assert h.board.pulse_out.refused[0] > 50


def test_refused_pulses_restart_the_ramp_from_zero():
    """A queue that refuses pulses is an interruption: when it recovers, output starts small."""
    h = Harness()
    h.fault("pulse_queue_full")
    h.request("start", {"amp_ua": [20000], "lease_ms": 0})
    h.tick(600)  # long enough for the ramp to have reached the target had it kept going
    assert h.amps() == [0, 0]
    h.fault("pulse_queue_full", False)
    h.tick(3)
    assert h.pulses, "stimulation resumes once the queue accepts pulses"
    assert h.pulses[0][3] <= 2 * h.ch(0).ramp_step_ua, h.pulses[0]


def test_sense_failure_shows_no_stale_reading():
    h = running(amps=(5000,))
    h.fault("sense_adc_error")
    h.tick(3)
    assert h.request("status")["ch"][0]["delivered_ua"] == 0


def test_envelope_breach_guard_latches():
    h = running(amps=(6000,))
    h.ch(0).max_amp_ua = 5000  # as if the approved maximum were corrupted under a running channel
    h.check_invariants = False  # the invariant checker would (rightly) object to the corruption itself
    h.tick()
    h.check_invariants = True
    assert h.state == "FAULT" and h.faults == ["envelope_breach:0"]
    assert "envelope" in h.device.supervisor.fault_msg and h.amps() == [0, 0]


# ---- protocol robustness --------------------------------------------------------------


def test_retried_request_is_not_run_twice():
    h = Harness()
    first = h.request("start", {"amp_ua": [1000], "lease_ms": 0}, request_id=42)
    h.tick(5)
    h.request("stop")
    settle(h, lambda: h.state == "IDLE")
    start = len(h.raw)
    again = h.request("start", {"amp_ua": [1000], "lease_ms": 0}, request_id=42)
    assert again == first
    assert h.state == "IDLE"  # answered from the cache, not executed
    assert frame.encode_frame(first) in h.raw[start:]


def test_hello_starts_a_new_session_so_old_ids_do_not_replay():
    h = Harness()
    h.request("hello", request_id=1)
    h.request("estop", request_id=2)
    h.request("hello", request_id=1)  # a new host session, numbering from 1 again
    h.request("start", {"amp_ua": [5000], "lease_ms": 0}, request_id=2)
    h.tick(20)
    h.request("hello", request_id=1)
    reply = h.request("estop", request_id=2)
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.state == "IDLE"  # the estop really ran, it was not answered from an old session
    h.tick(2)
    assert h.amps() == [0, 0]


def test_same_id_other_fields_is_a_new_request():
    h = Harness()
    h.request("set_amp", {"ch": 0, "amp_ua": 1000}, request_id=9)
    reply = h.request("set_amp", {"ch": 0, "amp_ua": 3000}, request_id=9)
    assert reply["target_ua"] == 3000


def test_same_id_other_op_is_a_new_request():
    h = Harness()
    h.request("start", {"lease_ms": 0}, request_id=7)
    reply = h.request("estop", request_id=7)
    assert reply["state"] == "IDLE" and h.state == "IDLE"


def test_reply_cache_is_bounded():
    h = Harness()
    h.request("start", {"lease_ms": 0}, request_id=1)
    h.request("estop", request_id=2)
    for i in range(link_mod.REPLY_CACHE):
        h.request("status", request_id=100 + i)
    h.request("start", {"lease_ms": 0}, request_id=1)  # evicted from the cache: runs again
    assert h.state == "RUNNING"


def test_bad_requests_get_error_replies_with_codes():
    h = Harness()
    cases = (
        ({"op": "status"}, msg.E_BAD_REQUEST, None),
        ({"id": 0, "op": "status"}, msg.E_BAD_REQUEST, None),
        ({"id": "1", "op": "status"}, msg.E_BAD_REQUEST, None),
        ({"id": msg.MAX_REQUEST_ID + 1, "op": "status"}, msg.E_BAD_REQUEST, None),
        ({"id": 5, "op": "explode"}, msg.E_UNKNOWN_OP, 5),
        ({"id": 6}, msg.E_UNKNOWN_OP, 6),
        ({"id": 7, "op": 3}, msg.E_UNKNOWN_OP, 7),
        ({"id": 8, "op": ["start"]}, msg.E_UNKNOWN_OP, 8),
    )
    for message, code, reply_id in cases:
        since = len(h.inbox)
        h.send_message(message)
        h.tick()
        replies = h.replies(since)
        assert len(replies) == 1, (message, replies)
        reply = replies[0]
        assert reply["ok"] is False and reply["err"] == code and reply["id"] == reply_id, (message, reply)
        assert isinstance(reply["msg"], str) and reply["msg"]
    assert "explode" in [r for r in h.replies() if r["id"] == 5][0]["msg"]
    assert "set_stim" in [r for r in h.replies() if r["id"] == 5][0]["msg"]  # lists the known ops
    assert h.state == "IDLE" and h.faults == []


def test_hostile_values_get_bounded_replies_not_faults():
    h = running(amps=(1000,))
    since = len(h.inbox)
    h.send_message({"id": 11, "op": "\U0001F600" * 37})
    h.send_message({"id": 12, "op": "set_amp", "ch": 0, "amp_ua": 10 ** 300})
    h.send_message({"id": "\U0001F600" * 37, "op": "status"})
    h.send_message({"id": 13, "op": "hello", "proto": "\u00e9" * 60})
    h.send_message({"id": 14, "op": "set_stim", "ch": 0, "stim": {"mode": "\U0001F600" * 30}})
    h.tick(6)  # about 2 kB: reading is bounded per tick
    replies = h.replies(since)
    assert len(replies) == 5, replies
    assert [r["err"] for r in replies] == [
        msg.E_UNKNOWN_OP, msg.E_OUT_OF_RANGE, msg.E_BAD_REQUEST, msg.E_BAD_FIELD, msg.E_BAD_FIELD]
    assert h.state == "RUNNING" and h.faults == []
    assert h.host_errors == 0


def test_damaged_frames_give_rx_error_events():
    h = Harness()
    good = frame.encode_frame({"id": 1, "op": "status"})
    h.send_raw(good.replace(b"status", b"statuz"))
    payload = b"not json"
    h.send_raw(b"@" + payload + ("*%04X\n" % frame.crc16(payload)).encode())
    h.send_raw(b'@{"id":2,"op":"status"}\n')
    h.tick()
    codes = [e["err"] for e in h.events("rx_error")]
    assert codes == [msg.E_BAD_CHECKSUM, msg.E_BAD_JSON, msg.E_BAD_FRAME]
    assert h.replies() == []
    assert h.device.link.rx_errors == 3
    assert h.request("status")["rx_errors"] == 3


def test_overlong_line_gives_one_rx_error_then_resyncs():
    h = Harness()
    h.send_raw(b"@" + b"x" * (frame.MAX_LINE_BYTES * 3) + b"\n")
    h.tick(frame.MAX_LINE_BYTES * 3 // (link_mod.RX_CHUNK * link_mod.RX_CHUNKS_PER_TICK) + 2)  # reading is bounded
    events = h.events("rx_error")
    assert len(events) == 1 and events[0]["err"] == msg.E_LINE_TOO_LONG
    assert str(frame.MAX_LINE_BYTES) in events[0]["msg"]
    assert h.request("status")["ok"] is True


def test_non_frame_lines_are_ignored_silently():
    h = Harness()
    h.send_raw(b"MicroPython v1.22.0 on 2024-01-01; Raspberry Pi Pico with RP2040\r\n")
    h.send_raw(b'Type "help()" for more information.\r\n>>> \r\n')
    h.tick(3)
    assert h.inbox == [] and h.device.link.rx_errors == 0


def test_own_output_looped_back_is_not_a_request():
    h = Harness()
    h.send_message({"id": 1, "ok": True, "state": "RUNNING"})
    h.send_message({"ev": "state", "state": "RUNNING"})
    h.tick(2)
    assert h.inbox == [] and h.state == "IDLE"


def test_a_frame_with_an_op_and_ev_is_a_refused_request_not_an_echo():
    h = Harness()
    h.send_message({"ev": "state", "op": "start", "id": 3})
    h.tick(2)
    replies = h.replies()
    assert len(replies) == 1 and replies[0]["id"] == 3 and replies[0]["err"] == "bad_field", replies
    assert "'ev'" in replies[0]["msg"] and h.state == "IDLE"


def test_device_keeps_running_after_garbage():
    h = running(amps=(1500,))
    rng = Lcg(99)
    for round_ in range(30):
        size = 1 + rng.below(300)
        junk = bytearray(size)
        for i in range(size):
            junk[i] = rng.below(256)
        if round_ % 3 == 0:
            junk[rng.below(size)] = 0x40  # a stray '@'
        h.send_raw(bytes(junk))
        h.tick(2)
    h.send_raw(b"\n")
    h.tick(2)
    assert h.state == "RUNNING" and h.faults == [] and h.amps() == [1500, 0]
    reply = h.request("status")
    assert reply["ok"] is True and reply["state"] == "RUNNING"
    assert h.host_errors == 0


def test_garbage_then_frame_on_the_same_line():
    h = Harness()
    h.send_raw(b"\x1b[0m>>> noise" + frame.encode_frame({"id": 77, "op": "status"}))
    h.tick()
    assert [r["id"] for r in h.replies()] == [77]


def test_receive_is_bounded_per_tick_but_everything_is_answered():
    h = Harness()
    for i in range(60):
        h.send("keepalive", request_id=1000 + i)
    h.tick()
    first = len(h.replies())
    assert 0 < first < 60
    h.tick(30)
    assert sorted([r["id"] for r in h.replies()]) == list(range(1000, 1060))


def test_host_not_reading_drops_output_but_never_blocks():
    h = Harness(serial=SimSerial(tx_capacity=64))
    for i in range(40):
        h.send("status", request_id=500 + i)
    for _ in range(10):
        h.device.tick()
        h.board.advance(10)
    assert h.device.link.tx_dropped > 0
    assert h.state == "IDLE" and h.faults == []


def test_every_reply_fits_in_a_frame():
    # the largest replies (status in FAULT with both channels busy, set_stim of the
    # richest setting) must leave the device as one frame, not as an exception
    h = running(amps=(limits.AMP_LIMIT_UA - 1, limits.AMP_LIMIT_UA - 1))
    big = msg.MAX_REQUEST_ID
    stims = (
        {"mode": "modulated", "waveform": "asymmetric", "asym_ratio": 4, "mod_amp_pct": 100, "mod_width_pct": 90,
         "mod_rate_pct": 90, "mod_amp_ms": 60000, "mod_width_ms": 60000, "mod_rate_ms": 60000, "area_cm2": 200},
        {"mode": "strength_duration", "waveform": "asymmetric", "asym_ratio": 4, "area_cm2": 200},
        {"mode": "burst", "waveform": "asymmetric", "asym_ratio": 4, "train_ms": 2000, "area_cm2": 200},
    )
    for ch in (0, 1):
        for stim in stims:
            reply = h.request("set_stim", {"ch": ch, "stim": stim}, request_id=big)
            assert reply["ok"] is True, reply
            assert h.request("get_stim", {"ch": ch}, request_id=big)["ok"] is True
            assert h.faults == []
    h.request("start", {"amp_ua": [40000, 40000], "ramp_ms": FAST_RAMP_MS}, request_id=big)
    h.fault("sense_adc_error")
    h.tick(2)
    h.fault("sense_adc_error", False)
    h.fault("overcurrent:1")
    reply = h.request("status", request_id=big)
    assert reply["ok"] is True and reply["faults"] == ["internal_error"], reply
    assert h.device.link.tx_dropped == 0


def test_a_stage_delivering_too_much_latches_at_every_rate():
    for rate_hz in (2, 20, 50, 100, 200):
        h = Harness()
        h.ok("set_stim", {"ch": 1, "stim": {"mode": "continuous", "rate_hz": rate_hz, "phase_us": 100}})
        h.ok("start", {"amp_ua": [0, 12000], "lease_ms": 0, "ramp_ms": FAST_RAMP_MS})
        h.tick_until(lambda: h.amps()[1] == 12000, limit=500)
        h.fault("overcurrent:1")
        ticks = h.tick_until(lambda: h.state == "FAULT", limit=300)
        assert h.faults == ["overcurrent:1"], (rate_hz, h.faults)
        assert ticks <= 2 * (100 // rate_hz + 1) + 1, (rate_hz, ticks)  # two pulses, wherever they fall


def test_uptime_and_ramp_across_the_clock_wrap():
    h = Harness(start_ms=TICKS_MAX + 1 - 1000)  # one second before the 2^30 ms wrap
    h.request("start", {"amp_ua": [6000], "lease_ms": 1000, "ramp_ms": 2000})
    for _ in range(6):
        h.tick(50)
        h.send("keepalive")
    assert h.board.clock.ticks_ms() < 3000  # wrapped
    assert h.amps() == [6000, 0] and h.state == "RUNNING"  # the lease held across the wrap
    status = h.request("status")
    assert status["uptime_ms"] == (301 * limits.TICK_MS)
    h.tick(101)  # no request for more than the lease, after the wrap
    assert h.state == "PAUSED"


def test_same_inputs_same_bytes():
    outputs = []
    for _ in range(2):
        h = Harness(seed=5)
        h.request("hello")
        h.request("set_stim", {"ch": 1, "stim": {"mode": "burst"}})
        h.request("start", {"amp_ua": [2500, 3000]})
        h.tick(100)
        h.send_raw(b"junk\n@bad\n")
        h.request("status")
        outputs.append(h.raw)
    assert outputs[0] == outputs[1]


# ---- maintenance mode -----------------------------------------------------------


def test_maintenance_mode_refuses_sessions_until_left():
    h = Harness()
    assert h.ok("maintenance", {"on": True})["maintenance"] is True
    assert h.ok("status")["maintenance"] is True
    for op, fields in (("start", {"amp_ua": [2000]}), ("heat", {"level": "low"})):
        reply = h.request(op, fields)
        assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE and "maintenance" in reply["msg"], reply
    assert h.state == "IDLE" and h.amps() == [0, 0]
    h.ok("maintenance", {"on": False})
    h.ok("start", {"amp_ua": [2000], "lease_ms": 0})
    reply = h.request("maintenance", {"on": True})  # only from IDLE
    assert reply["ok"] is False and "stop first" in reply["msg"], reply
    reply = h.request("maintenance", {"on": "yes"})
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_FIELD, reply
