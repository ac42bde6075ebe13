"""host.client against a real simulated device (ServedDevice) through an in-memory line.

The fake transport runs device ticks only while the client reads, and moves a
fake clock 10 ms per tick, so timeouts are exact and nothing sleeps.
"""

import pytest

from firmware.protocols import frame
from firmware.protocols import messages as msg
from host.client import Client, DeviceError, NoResponse, VersionMismatch
from sim.serve_loop import ServedDevice

TICK_S = 0.010


class FakeClock:
    def __init__(self):
        self.ticks = 0

    def __call__(self):
        return self.ticks * TICK_S


class ServedLine:
    """Host side of a serial line to a ServedDevice, with hooks to lose or alter lines.

    drop_request(message) -> True drops a host line before the device sees it;
    device_line(line) -> bytes | None rewrites (or drops) each line the device sends.
    """

    url = "fake://served"
    name = "fake://served"

    def __init__(self, served=None, clock=None, drop_request=None, device_line=None, corrupt_request=None):
        self.served = served or ServedDevice(seed=3)
        self.clock = clock or FakeClock()
        self.drop_request = drop_request
        self.device_line = device_line
        self.corrupt_request = corrupt_request
        self.sent = []  # every request the host wrote, decoded
        self.received = []  # every line the device sent, before hooks
        self._to_device = bytearray()
        self._partial = b""

    def write(self, data):
        message = frame.decode_line(data.rstrip(b"\n"))
        self.sent.append(message)
        if self.drop_request and self.drop_request(message):
            return
        if self.corrupt_request and self.corrupt_request(message):
            data = data.replace(b'"op"', b'"oq"', 1)  # the CRC no longer matches
        self._to_device.extend(data)

    def read(self, timeout_s):
        waited = 0
        while True:
            out = self.served.step(bytes(self._to_device))
            self._to_device.clear()
            self.clock.ticks += 1
            waited += 1
            out = self._filter(out)
            if out or waited * TICK_S >= timeout_s:
                return out

    def _filter(self, data):
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        kept = bytearray()
        for line in lines:
            self.received.append(line)
            if self.device_line is not None:
                line = self.device_line(line)
                if line is None:
                    continue
            kept.extend(line + b"\n")
        return bytes(kept)

    def close(self):
        pass


def once(predicate):
    """A hook that fires for the first message matching predicate, then never again."""
    fired = []

    def hook(message):
        if not fired and predicate(message):
            fired.append(message)
            return True
        return False

    return hook


def make_client(line, **kwargs):
    kwargs.setdefault("first_id", 1)
    return Client(line, clock=line.clock, **kwargs)


# ---- replies longer than they once could be ------------------------------------------------------
# Two replies of protocol 0.2 were longer than a frame (512 bytes): the device's Link raised, sent
# nothing and latched internal_error. Both must arrive, with the device still healthy.


def test_get_stim_with_its_envelope_figures_gets_its_reply():
    client = make_client(ServedLine())
    reply = client.get_stim(0)
    assert reply["ch"] == 0 and "envelope_at_max" in reply, reply
    assert client.status()["faults"] == []


def test_status_in_fault_with_two_channels_and_a_fault_message_gets_its_reply():
    line = ServedLine()
    client = make_client(line)
    client.start([12000], ramp_ms=1000)
    client.poll(1.5)
    line.served.set_fault("electrode_off:0", True)
    client.poll(0.1)
    status = client.status()
    assert status["state"] == "FAULT" and status["faults"] == ["no_load:0"], status
    assert status["fault_msg"] and len(status["ch"]) == 2


def decoded(line):
    try:
        return frame.decode_line(line)
    except frame.FrameError:
        return None


# ---- ids and replies ---------------------------------------------------------------


def test_requests_get_increasing_ids_and_matching_replies():
    line = ServedLine()
    client = make_client(line, first_id=41)
    info = client.hello()
    status = client.status()
    client.start([1000])
    assert [m["id"] for m in line.sent] == [41, 42, 43]
    assert [m["op"] for m in line.sent] == ["hello", "status", "start"]
    assert info["device_id"] == "pulsewarm-sim-0" and info["proto"] == msg.PROTO_VERSION
    assert status["state"] == "IDLE"
    assert client.status()["ch"][0]["target_ua"] == 1000


def test_default_first_id_is_random_and_ids_still_increase():
    first = [Client(ServedLine())._next_id for _ in range(5)]
    assert len(set(first)) > 1, "each session must start its ids somewhere new"
    assert all(1 <= value <= msg.MAX_REQUEST_ID for value in first)
    line = ServedLine()
    client = Client(line, clock=line.clock)
    client.status()
    client.status()
    assert line.sent[1]["id"] == line.sent[0]["id"] + 1


def test_ids_wrap_to_one_after_the_maximum():
    line = ServedLine()
    client = make_client(line, first_id=msg.MAX_REQUEST_ID)
    client.status()
    client.status()
    assert [m["id"] for m in line.sent] == [msg.MAX_REQUEST_ID, 1]


def test_a_second_session_on_the_same_device_is_not_answered_from_the_reply_cache():
    """The device caches replies by id; a new session must not collide with an old one's ids."""
    served = ServedDevice(seed=5)
    first = ServedLine(served)
    a = Client(first, clock=first.clock)
    a.hello()
    a.start([2000])
    a.stop()
    second = ServedLine(served)
    b = Client(second, clock=second.clock)
    b.hello()
    b.start([2000])
    assert b.status()["state"] == "RUNNING"


def test_late_replies_with_other_ids_are_ignored():
    stray = frame.encode_frame({"id": 999, "ok": True, "state": "bogus"}).rstrip(b"\n")

    def add_stray(line):
        message = decoded(line)
        if message and message.get("id") == 2:
            return stray + b"\n" + line
        return line

    line = ServedLine(device_line=add_stray)
    client = make_client(line)
    client.hello()
    assert client.status()["state"] == "IDLE"


# ---- retries: same id, run once -------------------------------------------------------


def test_lost_reply_is_retried_with_the_same_id_and_not_run_twice():
    drop = once(lambda m: m is not None and m.get("id") == 2)
    line = ServedLine(device_line=lambda raw: None if drop(decoded(raw)) else raw)
    client = make_client(line)
    client.hello()
    reply = client.start([3000])
    assert reply["state"] == "RUNNING"
    starts = [m for m in line.sent if m["op"] == "start"]
    assert [m["id"] for m in starts] == [2, 2]
    assert client.resends == 1
    # the device answered twice (the second from its cache) but started once
    replies = [decoded(raw) for raw in line.received]
    assert len([m for m in replies if m and m.get("id") == 2]) == 2
    assert line.served.device.supervisor.changes == 1
    running_events = [m for m in replies if m and m.get("ev") == "state" and m.get("state") == "RUNNING"]
    assert len(running_events) == 1


def test_lost_request_is_resent_after_one_timeout():
    line = ServedLine(drop_request=once(lambda m: m["op"] == "status"))
    client = make_client(line, timeout_s=0.5)
    before = line.clock()
    assert client.status()["state"] == "IDLE"
    waited = line.clock() - before
    assert 0.5 <= waited < 0.6
    assert [m["op"] for m in line.sent] == ["status", "status"]


def test_a_damaged_request_is_resent_at_once_when_the_device_reports_rx_error():
    line = ServedLine(corrupt_request=once(lambda m: m["op"] == "stop"))
    client = make_client(line, timeout_s=1.0)
    client.hello()
    before = line.clock()
    assert client.stop()["state"] == "IDLE"
    assert line.clock() - before < 0.1, "should resend on the rx_error event, not wait for the timeout"
    assert any(e["ev"] == "rx_error" and e["err"] == "bad_checksum" for e in client.events)


def test_no_reply_at_all_raises_no_response_naming_port_and_wait():
    line = ServedLine(device_line=lambda raw: None)
    client = make_client(line, timeout_s=0.25)
    with pytest.raises(NoResponse) as caught:
        client.status()
    text = str(caught.value)
    assert "fake://served" in text and "status" in text and "0.5 s" in text
    assert caught.value.waited_s == pytest.approx(0.5)
    assert [m["id"] for m in line.sent] == [1, 1]
    assert line.clock() == pytest.approx(0.5, abs=TICK_S)


def test_retries_zero_gives_up_after_one_timeout():
    line = ServedLine(device_line=lambda raw: None)
    client = make_client(line, timeout_s=0.2, retries=0)
    with pytest.raises(NoResponse):
        client.hello()
    assert len(line.sent) == 1


# ---- events and noise ---------------------------------------------------------------


def poll_until(client, predicate, seconds=10.0):
    """Poll status (the device ticks while the client reads) until predicate(status) holds."""
    for _ in range(int(seconds / 0.05)):
        status = client.status()
        if predicate(status):
            return status
        client.poll(0.05)
    raise AssertionError("never reached; last status %r" % (status,))


def test_events_go_to_the_callback_and_the_last_ones_are_kept():
    seen = []
    line = ServedLine()
    client = make_client(line, on_event=seen.append, keep_events=3)
    client.hello()
    client.start([1000])
    client.status()
    client.stop()
    poll_until(client, lambda s: s["state"] == "IDLE")
    states = [e["state"] for e in seen if e["ev"] == "state"]
    assert states == ["RUNNING", "IDLE"]
    assert client.last_state["state"] == "IDLE"
    assert list(client.events)[-1]["state"] == "IDLE"


def test_fault_event_is_seen_and_start_then_fails_with_a_device_error():
    line = ServedLine()
    client = make_client(line)
    client.hello()
    client.start([5000])
    line.served.set_fault("electrode_off:1", True)  # channel 1 is not stimulating: no fault
    line.served.set_fault("electrode_off:0", True)
    for _ in range(300):
        client.poll(0.05)
        if client.last_state and client.last_state["state"] == "FAULT":
            break
    assert client.last_state["state"] == "FAULT"
    assert client.last_state["faults"] == ["no_load:0"]
    assert "channel 0" in client.last_state["fault_msg"]
    with pytest.raises(DeviceError) as caught:
        client.start()
    assert caught.value.code == msg.E_BAD_STATE and "no_load:0" in caught.value.message
    line.served.set_fault("electrode_off:0", False)
    assert client.clear_fault()["state"] == "IDLE"


def test_non_frames_and_damaged_lines_from_the_device_are_ignored():
    def noisy(line):
        message = decoded(line)
        if message and message.get("id") == 2:
            damaged = bytearray(line)
            damaged[5] ^= 0x01
            return b"MicroPython v1.24 on 2024-01-01; Raspberry Pi Pico\r\n>>> \n" + bytes(damaged) + b"\n" + line
        return line

    line = ServedLine(device_line=noisy)
    client = make_client(line)
    client.hello()
    assert client.status()["state"] == "IDLE"
    assert client.rx_errors == 1


# ---- versions and error replies -------------------------------------------------------


def test_device_speaking_another_major_is_refused_with_both_versions():
    def newer_device(line):
        message = decoded(line)
        if message and message.get("proto"):
            message["proto"] = "1.2"
            message["proto_majors"] = [1]
            return frame.encode_frame(message).rstrip(b"\n")
        return line

    client = make_client(ServedLine(device_line=newer_device))
    with pytest.raises(VersionMismatch) as caught:
        client.hello()
    text = str(caught.value)
    assert "1.2" in text and msg.PROTO_VERSION in text
    assert caught.value.device_version == "1.2"
    assert client.device is None


class NewerHostClient(Client):
    proto_version = "1.0"
    supported_majors = (1,)


def test_device_refusing_our_version_is_a_version_mismatch_with_both_versions():
    line = ServedLine()
    client = NewerHostClient(line, clock=line.clock, first_id=1)
    with pytest.raises(VersionMismatch) as caught:
        client.hello()
    text = str(caught.value)
    assert "1.0" in text and msg.PROTO_VERSION in text
    assert "refused" in text


@pytest.mark.parametrize(
    "call, code, words",
    [
        (lambda c: c.set_amp(0, 999999), msg.E_OUT_OF_RANGE, "exceeds the limit 80000"),
        (lambda c: c.set_amp(4, 1000), msg.E_OUT_OF_RANGE, "ch 4"),
        (lambda c: c.clear_fault(), msg.E_BAD_STATE, "no fault to clear"),
        (lambda c: c.request("dance"), msg.E_UNKNOWN_OP, "unknown op"),
        (lambda c: c.start([90000]), msg.E_OUT_OF_RANGE, "80000"),
        (lambda c: c.start(lease_ms=100), msg.E_OUT_OF_RANGE, "lease_ms 100 is below the minimum 500 (or 0: no host lease)"),
        (lambda c: c.start(session_ms=3600001), msg.E_OUT_OF_RANGE, "session_ms 3600001 exceeds the limit 3600000"),
        (lambda c: c.pause(), msg.E_BAD_STATE, "cannot pause"),
        (lambda c: c.resume(), msg.E_BAD_STATE, "not PAUSED"),
        (lambda c: c.amp_step(0, 11), msg.E_OUT_OF_RANGE, "steps 11 exceeds the limit 10"),
        (lambda c: c.set_stim(0, {"phase_us": 401}), msg.E_OUT_OF_RANGE, "phase_us 401 exceeds the limit 400"),
        (lambda c: c.set_stim(0, {"mode": "burst", "rate_hz": 80}), msg.E_BAD_FIELD, "does not apply to mode burst"),
        (lambda c: c.get_stim(2), msg.E_OUT_OF_RANGE, "ch 2"),
    ],
)
def test_error_replies_raise_device_error_with_code_and_message(call, code, words):
    client = make_client(ServedLine())
    client.hello()
    with pytest.raises(DeviceError) as caught:
        call(client)
    assert caught.value.code == code
    assert words in caught.value.message


def test_start_refuses_non_integer_amplitudes_before_sending():
    line = ServedLine()
    client = make_client(line)
    with pytest.raises(TypeError):
        client.start([1.5])
    assert line.sent == []


def test_start_sends_lease_session_and_ramp_only_when_given():
    line = ServedLine()
    client = make_client(line)
    client.hello()
    client.start([1000], lease_ms=0, session_ms=60000, ramp_ms=2000)
    client.estop()
    client.start()
    starts = [m for m in line.sent if m["op"] == "start"]
    assert starts[0] == {"id": 2, "op": "start", "amp_ua": [1000], "lease_ms": 0, "session_ms": 60000, "ramp_ms": 2000}
    assert starts[1] == {"id": 4, "op": "start"}


# ---- the session operations of protocol 0.2 ----------------------------------------------


def running_at(target_ua=4000, **start_fields):
    """A client whose device is RUNNING with channel 0 ramped to target_ua."""
    line = ServedLine()
    client = make_client(line)
    client.hello()
    start_fields.setdefault("ramp_ms", 1000)
    client.start([target_ua], **start_fields)
    poll_until(client, lambda s: s["ch"][0]["amp_ua"] == target_ua)
    return line, client


def test_stop_ramps_down_while_running_then_goes_idle():
    line, client = running_at(4000)
    reply = client.stop()
    assert reply == {"state": "RUNNING", "stopping": True}
    status = client.status()
    assert status["state"] == "RUNNING" and status["stopping"] is True
    assert 0 < status["ch"][0]["amp_ua"] < 4000, "a normal stop ramps down, it does not cut"
    status = poll_until(client, lambda s: s["state"] == "IDLE")
    assert status["stopping"] is False and status["reason"] == "stop"
    assert status["ch"][0]["amp_ua"] == 0


def test_estop_zeroes_output_at_once_without_a_ramp():
    line, client = running_at(4000)
    assert client.estop() == {"state": "IDLE"}
    status = client.status()  # the very next answer: no ramp down in between
    assert status["state"] == "IDLE" and status["reason"] == "estop" and status["stopping"] is False
    assert [ch["amp_ua"] for ch in status["ch"]] == [0, 0]
    assert [ch["target_ua"] for ch in status["ch"]] == [0, 0]
    assert line.served.device.pulse_out.last_commanded_ua == [0, 0]


def test_pause_keeps_targets_and_resume_ramps_up_from_zero():
    line, client = running_at(4000)
    assert client.pause() == {"state": "PAUSED"}
    status = client.status()
    assert status["state"] == "PAUSED" and status["reason"] == "request"
    assert status["ch"][0]["amp_ua"] == 0 and status["ch"][0]["target_ua"] == 4000
    assert client.resume() == {"state": "RUNNING"}
    status = client.status()
    assert 0 < status["ch"][0]["amp_ua"] < 4000, "resume ramps from zero"
    poll_until(client, lambda s: s["ch"][0]["amp_ua"] == 4000)


def test_keepalive_holds_the_lease_and_silence_pauses():
    line, client = running_at(2000, lease_ms=500)
    for _ in range(10):  # 2 s of device time, a keepalive every 0.2 s
        assert client.keepalive() == {"state": "RUNNING"}
        client.poll(0.2)
    assert client.status()["state"] == "RUNNING"
    client.poll(0.6)  # silence for longer than the lease
    status = client.status()
    assert status["state"] == "PAUSED" and status["reason"] == "lease_expired"
    assert status["ch"][0]["amp_ua"] == 0 and status["lease_ms"] == 500


def test_session_timer_stops_by_itself():
    line, client = running_at(2000, session_ms=2000)
    status = poll_until(client, lambda s: s["state"] == "IDLE")
    assert status["reason"] == "session_end" and status["session_left_ms"] == 0


def test_amp_step_moves_the_target_in_half_milliamp_steps_never_below_zero():
    client = make_client(ServedLine())
    client.hello()
    assert client.amp_step(1, 3) == {"ch": 1, "target_ua": 1500}
    assert client.amp_step(1, -1) == {"ch": 1, "target_ua": 1000}
    assert client.amp_step(1, -10) == {"ch": 1, "target_ua": 0}
    assert client.status()["ch"][1]["target_ua"] == 0


def test_set_and_get_stim_round_trip_with_the_envelope():
    client = make_client(ServedLine())
    client.hello()
    reply = client.set_stim(1, {"mode": "burst", "phase_us": 150})
    assert reply["ch"] == 1 and reply["stim"]["mode"] == "burst" and reply["stim"]["phase_us"] == 150
    assert reply["max_amp_ua"] > 0 and reply["binding_limit"]
    assert set(reply["envelope"]) >= {"peak_ua", "rms_ua", "phase_charge_nc", "net_charge_nc", "energy_uj"}
    assert client.get_stim(1) == reply
    assert client.get_stim(0)["stim"]["mode"] == "continuous"
    assert client.status()["ch"][1]["mode"] == "burst"


def test_out_of_envelope_requests_name_the_limit_value_and_limit():
    client = make_client(ServedLine())
    client.hello()
    client.set_stim(0, {"phase_us": 400})
    with pytest.raises(DeviceError) as caught:
        client.set_amp(0, 70000)
    assert caught.value.code == msg.E_ENVELOPE
    assert caught.value.message.startswith("phase_charge 28000 nC exceeds the limit 25000 nC at 70000 uA")
    client.set_stim(0, {})  # back to the defaults: 70 mA fits
    assert client.set_amp(0, 70000)["target_ua"] == 70000
    with pytest.raises(DeviceError) as caught:
        client.set_stim(0, {"phase_us": 400})  # checked at the channel's target
    assert caught.value.code == msg.E_ENVELOPE and "phase_charge" in caught.value.message
    assert client.status()["ch"][0]["phase_us"] == 0 and client.get_stim(0)["stim"]["phase_us"] == 200


def test_status_answers_while_a_fault_is_latched():
    line, client = running_at(12000)
    line.served.set_fault("electrode_off:0", True)
    client.poll(0.1)
    status = client.status()
    assert status["state"] == "FAULT" and status["faults"] == ["no_load:0"]
    assert "electrode off" in status["fault_msg"]
