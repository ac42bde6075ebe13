"""firmware.device.Device over simulated drivers (sim.board.SimBoard).

The harness checks the safety invariants after every tick (see harness.py).
"""

import firmware
from firmware import limits
from firmware import device as device_mod
from firmware.clock import TICKS_MAX
from firmware.protocols import frame
from firmware.protocols import messages as msg
from sim.board import SimSerial
from tests.fw.harness import Harness
from tests.fw.portable import Lcg

RAMP = limits.RAMP_UA_PER_TICK


def _ramp_ticks(amp_ua):
    return (amp_ua + RAMP - 1) // RAMP


def _running(h, amp_ua=2000):
    reply = h.request("start", {"amp_ua": [amp_ua]})
    assert reply["ok"] is True, reply
    h.tick(_ramp_ticks(amp_ua) + 2)
    assert h.amps() == [amp_ua]
    return h


# ---- boot and hello ---------------------------------------------------------------


def test_boots_idle_with_outputs_off():
    h = Harness()
    h.tick(20)
    assert h.state == "IDLE" and h.faults == []
    assert h.pulses == []
    assert h.inbox == []  # nothing said unprompted


def test_hello():
    h = Harness(channels=2)
    reply = h.request("hello", {"proto": msg.PROTO_VERSION})
    assert reply["ok"] is True
    assert reply["proto"] == msg.PROTO_VERSION
    assert reply["fw"] == firmware.FIRMWARE_VERSION
    assert reply["channels"] == 2
    assert reply["amp_limit_ua"] == limits.AMP_LIMIT_UA
    assert reply["tick_ms"] == limits.TICK_MS
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
    h = Harness(channels=2)
    h.tick(10)
    reply = h.request("status")
    assert reply["ok"] is True
    assert reply["state"] == "IDLE" and reply["faults"] == [] and reply["fault_msg"] == ""
    assert len(reply["ch"]) == 2
    for ch in reply["ch"]:
        assert ch["amp_ua"] == 0 and ch["target_ua"] == 0
        assert 0 <= ch["sense_ua"] < 100  # ADC noise only
    assert reply["uptime_ms"] == 10 * limits.TICK_MS
    assert reply["rx_errors"] == 0 and reply["tx_dropped"] == 0


# ---- start / set_amp / stop ----------------------------------------------------------


def test_start_ramps_to_target_and_fires():
    h = Harness()
    reply = h.request("start", {"amp_ua": [3000]})
    assert reply == {"id": reply["id"], "ok": True, "state": "RUNNING"}
    assert h.events("state")[-1]["state"] == "RUNNING"
    h.tick(_ramp_ticks(3000) + 10)
    assert h.amps() == [3000]
    assert h.pulses, "no pulses while running"
    assert h.pulses[-1][3] == 3000
    amps = [p[3] for p in h.pulses]
    assert amps[0] <= RAMP
    status = h.request("status")
    assert status["ch"][0]["target_ua"] == 3000
    assert abs(status["ch"][0]["sense_ua"] - 3000) < 200  # the sense path measured it


def test_start_without_amplitude_fires_nothing():
    h = Harness()
    assert h.request("start")["state"] == "RUNNING"
    h.tick(20)
    assert h.pulses == [] and h.amps() == [0]


def test_set_amp_while_running_ramps_both_ways():
    h = _running(Harness(), 1000)
    reply = h.request("set_amp", {"ch": 0, "amp_ua": 2000})
    assert reply["ok"] is True and reply["ch"] == 0 and reply["target_ua"] == 2000
    h.tick(_ramp_ticks(1000) + 1)
    assert h.amps() == [2000]
    h.request("set_amp", {"ch": 0, "amp_ua": 0})
    h.tick(_ramp_ticks(2000) + 1)
    assert h.amps() == [0]
    assert h.state == "RUNNING"


def test_set_amp_in_idle_takes_effect_on_start():
    h = Harness()
    assert h.request("set_amp", {"ch": 0, "amp_ua": 800})["ok"] is True
    h.tick(10)
    assert h.amps() == [0] and h.pulses == []
    h.request("start")
    h.tick(_ramp_ticks(800) + 1)
    assert h.amps() == [800]


def test_set_amp_errors():
    h = Harness(channels=2)
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


def test_start_amplitude_errors_do_not_start():
    h = Harness(channels=2)
    for bad, code in (
        ([limits.AMP_LIMIT_UA + 1], msg.E_OUT_OF_RANGE),
        ([100, -1], msg.E_OUT_OF_RANGE),
        ([1, 2, 3], msg.E_BAD_FIELD),
        (1000, msg.E_BAD_FIELD),
        (["1000"], msg.E_BAD_FIELD),
        ([True], msg.E_BAD_FIELD),
    ):
        reply = h.request("start", {"amp_ua": bad})
        assert reply["ok"] is False and reply["err"] == code, (bad, reply)
        assert h.state == "IDLE"
    assert h.pulses == []


def test_stop_zeroes_outputs_at_once_and_forgets_target():
    h = _running(Harness(), 2000)
    reply = h.request("stop")
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.amps() == [0]
    assert h.device.channels[0].target_ua == 0
    count = len(h.pulses)
    h.tick(50)
    assert len(h.pulses) == count
    h.request("start")
    h.tick(10)
    assert h.amps() == [0]  # a new start does not bring the old amplitude back


def test_two_channels_independent():
    h = Harness(channels=2)
    h.request("start", {"amp_ua": [400, 1200]})
    h.tick(_ramp_ticks(1200) + 1)
    assert h.amps() == [400, 1200]
    h.request("set_amp", {"ch": 1, "amp_ua": 0})
    h.tick(_ramp_ticks(1200) + 1)
    assert h.amps() == [400, 0]


# ---- faults ----------------------------------------------------------------------------


def test_lead_off_latches_no_load_and_outputs_stop():
    h = _running(Harness(), 5000)
    h.fault("lead_off")
    h.tick_until(lambda: h.state == "FAULT", limit=20)
    assert h.faults == ["no_load"]
    assert h.amps() == [0]
    event = h.events("state")[-1]
    assert event["state"] == "FAULT" and event["faults"] == ["no_load"]
    assert "electrode" in event["fault_msg"]
    count = len(h.pulses)
    h.fault("lead_off", False)  # electrode back on: the fault stays latched
    h.tick(100)
    assert h.state == "FAULT" and len(h.pulses) == count


def test_latched_fault_refuses_start_and_set_amp():
    h = _running(Harness(), 5000)
    h.fault("lead_off")
    h.tick(20)
    h.fault("lead_off", False)
    reply = h.request("start", {"amp_ua": [1000]})
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE and "no_load" in reply["msg"]
    reply = h.request("set_amp", {"ch": 0, "amp_ua": 1000})
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE
    assert h.request("stop")["ok"] is True
    assert h.state == "FAULT"


def test_clear_fault_then_restart_ramps_from_zero():
    h = _running(Harness(), 5000)
    h.fault("lead_off")
    h.tick(20)
    h.fault("lead_off", False)
    reply = h.request("clear_fault")
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.faults == []
    assert h.events("state")[-1]["state"] == "IDLE"
    reply = h.request("clear_fault")
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE
    count = len(h.pulses)
    h.request("start", {"amp_ua": [3000]})
    h.tick(5)
    restarted = h.pulses[count:]
    assert restarted and restarted[0][3] <= RAMP
    h.tick(_ramp_ticks(3000))
    assert h.amps() == [3000] and h.state == "RUNNING"


def test_fault_while_lead_still_off_comes_back():
    h = _running(Harness(), 5000)
    h.fault("lead_off")
    h.tick(20)
    h.request("clear_fault")
    h.request("start", {"amp_ua": [5000]})
    h.tick_until(lambda: h.state == "FAULT", limit=400)
    assert h.faults == ["no_load"]


def test_output_overshoot_latches_overcurrent():
    h = _running(Harness(), 4000)
    h.fault("output_overshoot")
    h.tick_until(lambda: h.state == "FAULT", limit=10)
    assert h.faults == ["overcurrent"]
    assert h.amps() == [0]


def test_driver_exception_turns_outputs_off_and_latches_internal_error():
    h = _running(Harness(), 2000)
    h.fault("sense_adc_error")
    h.tick()
    assert h.state == "FAULT" and h.faults == ["internal_error"]
    assert h.amps() == [0] and h.board.pulse_out.last_commanded_ua == [0]
    assert "OSError" in h.device.supervisor.fault_msg


def test_driver_exception_keeps_the_host_informed():
    h = _running(Harness(), 2000)
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
    h = _running(Harness(), 2000)

    def broken_fire(ch, start_us, amp_ua, phase_us, gap_us):
        raise RuntimeError("PIO stalled")

    h.board.pulse_out.fire = broken_fire
    h.tick()
    assert h.faults == ["internal_error"] and "PIO stalled" in h.device.supervisor.fault_msg
    assert h.amps() == [0]


def test_exception_while_handling_a_request_latches_and_is_announced():
    h = _running(Harness(), 2000)

    def broken(message):
        raise KeyError("bug")

    h.device._ops["status"] = broken
    h.send("status")
    h.tick()
    assert h.state == "FAULT" and h.faults == ["internal_error"] and h.amps() == [0]
    assert h.events("state")[-1]["state"] == "FAULT"


def test_pulse_queue_full_fires_nothing_and_stays_safe():
    h = Harness()
    h.fault("pulse_queue_full")
    h.request("start", {"amp_ua": [2000]})
    h.tick(100)
    assert h.pulses == []
    assert h.board.pulse_out.last_commanded_ua == [0]


def test_refused_pulses_restart_the_ramp_from_zero():
    """A queue that refuses pulses is an interruption: when it recovers, output starts small."""
    h = Harness()
    h.fault("pulse_queue_full")
    h.request("start", {"amp_ua": [20000]})
    h.tick(600)  # long enough for the ramp to have reached the target had it kept going
    assert h.amps() == [0]
    h.fault("pulse_queue_full", False)
    h.tick(3)
    assert h.pulses, "stimulation resumes once the queue accepts pulses"
    assert h.pulses[0][3] <= 2 * RAMP, h.pulses[0]


def test_sense_failure_shows_no_stale_reading():
    h = _running(Harness(), 5000)
    h.fault("sense_adc_error")
    h.tick(3)
    assert h.request("status")["ch"][0]["sense_ua"] == 0


# ---- protocol robustness --------------------------------------------------------------


def test_retried_request_is_not_run_twice():
    h = Harness()
    first = h.request("start", {"amp_ua": [1000]}, request_id=42)
    h.tick(5)
    assert h.request("stop")["ok"] is True
    start = len(h.raw)
    again = h.request("start", {"amp_ua": [1000]}, request_id=42)
    assert again == first
    assert h.state == "IDLE"  # answered from the cache, not executed
    assert frame.encode_frame(first) in h.raw[start:]


def test_hello_starts_a_new_session_so_old_ids_do_not_replay():
    h = Harness()
    h.request("hello", request_id=1)
    h.request("stop", request_id=2)
    h.request("hello", request_id=1)  # a new host session, numbering from 1 again
    h.request("start", {"amp_ua": [5000]}, request_id=2)
    h.request("hello", request_id=1)
    reply = h.request("stop", request_id=2)
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.state == "IDLE"  # the stop really ran, it was not answered from an old session
    h.tick(2)
    assert h.amps() == [0]


def test_same_id_other_fields_is_a_new_request():
    h = Harness()
    h.request("set_amp", {"ch": 0, "amp_ua": 1000}, request_id=9)
    reply = h.request("set_amp", {"ch": 0, "amp_ua": 3000}, request_id=9)
    assert reply["target_ua"] == 3000


def test_same_id_other_op_is_a_new_request():
    h = Harness()
    h.request("start", request_id=7)
    reply = h.request("stop", request_id=7)
    assert reply["state"] == "IDLE" and h.state == "IDLE"


def test_reply_cache_is_bounded():
    h = Harness()
    h.request("start", request_id=1)
    h.request("stop", request_id=2)
    for i in range(device_mod.REPLY_CACHE):
        h.request("status", request_id=100 + i)
    h.request("start", request_id=1)  # evicted from the cache: runs again
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
    assert "set_amp" in [r for r in h.replies() if r["id"] == 5][0]["msg"]  # lists the known ops
    assert h.state == "IDLE" and h.faults == []


def test_hostile_values_get_bounded_replies_not_faults():
    h = _running(Harness(), 1000)
    since = len(h.inbox)
    h.send_message({"id": 11, "op": "\U0001F600" * 37})
    h.send_message({"id": 12, "op": "set_amp", "ch": 0, "amp_ua": 10 ** 300})
    h.send_message({"id": "\U0001F600" * 37, "op": "status"})
    h.send_message({"id": 13, "op": "hello", "proto": "\u00e9" * 60})
    h.tick(5)  # about 1.5 kB: reading is bounded per tick
    replies = h.replies(since)
    assert len(replies) == 4, replies
    assert [r["err"] for r in replies] == [msg.E_UNKNOWN_OP, msg.E_OUT_OF_RANGE, msg.E_BAD_REQUEST, msg.E_BAD_FIELD]
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
    assert h.device.rx_errors == 3
    assert h.request("status")["rx_errors"] == 3


def test_overlong_line_gives_one_rx_error_then_resyncs():
    h = Harness()
    h.send_raw(b"@" + b"x" * (frame.MAX_LINE_BYTES * 3) + b"\n")
    h.tick(5)
    events = h.events("rx_error")
    assert len(events) == 1 and events[0]["err"] == msg.E_LINE_TOO_LONG
    assert str(frame.MAX_LINE_BYTES) in events[0]["msg"]
    assert h.request("status")["ok"] is True


def test_non_frame_lines_are_ignored_silently():
    h = Harness()
    h.send_raw(b"MicroPython v1.22.0 on 2024-01-01; Raspberry Pi Pico with RP2040\r\n")
    h.send_raw(b'Type "help()" for more information.\r\n>>> \r\n')
    h.tick(3)
    assert h.inbox == [] and h.device.rx_errors == 0


def test_own_output_looped_back_is_not_a_request():
    h = Harness()
    h.send_message({"id": 1, "ok": True, "state": "RUNNING"})
    h.send_message({"ev": "state", "state": "RUNNING", "op": "start", "id": 3})
    h.tick(2)
    assert h.inbox == [] and h.state == "IDLE"


def test_device_keeps_running_after_garbage():
    h = _running(Harness(), 1500)
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
    assert h.state == "RUNNING" and h.faults == [] and h.amps() == [1500]
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
        h.send("status", request_id=1000 + i)
    h.tick()
    first = len(h.replies())
    assert 0 < first < 60
    h.tick(20)
    assert sorted([r["id"] for r in h.replies()]) == list(range(1000, 1060))


def test_host_not_reading_drops_output_but_never_blocks():
    h = Harness(serial=SimSerial(tx_capacity=64))
    for i in range(40):
        h.send("status", request_id=500 + i)
    for _ in range(10):
        h.device.tick()
        h.board.clock.advance(10)
    assert h.device.tx_dropped > 0
    assert h.state == "IDLE" and h.faults == []


def test_uptime_and_ramp_across_the_clock_wrap():
    h = Harness(start_ms=TICKS_MAX + 1 - 1000)  # one second before the 2^30 ms wrap
    h.request("start", {"amp_ua": [6000]})
    h.tick(300)
    assert h.board.clock.ticks_ms() < 3000  # wrapped
    assert h.amps() == [6000] and h.state == "RUNNING"
    status = h.request("status")
    assert status["uptime_ms"] == (301 * limits.TICK_MS)


def test_same_inputs_same_bytes():
    outputs = []
    for _ in range(2):
        h = Harness(seed=5)
        h.request("hello")
        h.request("start", {"amp_ua": [2500]})
        h.tick(100)
        h.send_raw(b"junk\n@bad\n")
        h.request("status")
        outputs.append(h.raw)
    assert outputs[0] == outputs[1]
