"""firmware.link: which frames are requests. A frame with an `op` is a request whatever else it
carries: `ok` or `ev` in it are fields the op does not take (bad_field), except that estop, stop
and pause act anyway and hello takes any field. A frame without `op` that carries `ok` or `ev`
is the device's own output come back (an echo): dropped, no answer, no lease renewed. A refused
hello changes nothing, the reply cache included. A request whose handler raises still gets its
one reply (`internal`) and the device still fails safe. Portable: runs in the VM too."""

from firmware.protocols import frame
from firmware.protocols import messages as msg
from sim.board import SimSerial
from tests.fw.harness import Harness

RUN = {"amp_ua": [5000, 0], "lease_ms": 0, "ramp_ms": 1000}


def _raw_line(payload):
    return b"@" + payload + ("*%04X" % frame.crc16(payload)).encode() + b"\n"


def _answers(h, message):
    """Send `message` as it is (ok/ev included), tick; the replies and rx_errors that came."""
    start = len(h.inbox)
    h.send_message(message)
    h.tick()
    return [m for m in h.inbox[start:] if "ok" in m or m.get("ev") == "rx_error"]


def _one_reply(h, message):
    found = _answers(h, message)
    assert len(found) == 1 and found[0].get("id") == message.get("id"), (message, found)
    return found[0]


def _running():
    h = Harness()
    h.ok("start", RUN)
    h.tick(200)
    assert h.state == "RUNNING" and h.amps()[0] == 5000
    return h


def test_estop_stop_and_pause_act_when_they_carry_ok_or_ev():
    rid = 100
    for op, state in (("estop", "IDLE"), ("stop", "IDLE"), ("pause", "PAUSED")):
        for extra in ({"ok": 1}, {"ok": True}, {"ev": "state"}, {"ev": None}, {"ok": False}):
            h = _running()
            rid += 1
            message = {"id": rid, "op": op}
            for key in extra:
                message[key] = extra[key]
            reply = _one_reply(h, message)
            assert reply["ok"] is True, (message, reply)
            h.tick(200)
            assert h.state == state and h.amps() == [0, 0], (message, h.state, h.amps())


def test_the_audited_estop_frame_is_answered_and_runs():
    h = _running()
    start = len(h.inbox)
    h.send_raw(_raw_line(b'{"id":17,"op":"estop","ok":1}'))
    h.tick()
    assert h.state == "IDLE" and h.amps() == [0, 0]
    found = [m for m in h.inbox[start:] if "ok" in m]
    assert found == [{"id": 17, "ok": True, "state": "IDLE"}], found


def test_other_ops_carrying_ok_or_ev_are_refused_naming_the_field_and_change_nothing():
    cases = [
        ({"id": 21, "op": "status", "ok": True}, "ok"),
        ({"id": 22, "op": "keepalive", "ev": "x"}, "ev"),
        # the shapes an echoing line could make of a request: each is refused, none runs
        ({"id": 23, "op": "start", "ok": True, "amp_ua": [20000, 20000], "lease_ms": 0}, "ok"),
        ({"ev": "x", "id": 24, "op": "set_amp", "ch": 0, "amp_ua": 30000}, "ev"),
        ({"id": 25, "op": "resume", "ok": None}, "ok"),
        ({"ev": None, "id": 26, "op": "heat", "level": "high"}, "ev"),
        ({"id": 27, "op": "clear_fault", "ok": False}, "ok"),
    ]
    for message, field in cases:
        h = Harness()
        reply = _one_reply(h, message)
        assert reply["ok"] is False and reply["err"] == msg.E_BAD_FIELD, (message, reply)
        assert ("unknown field '%s' in %s" % (field, message["op"])) in reply["msg"], (message, reply)
        h.tick(50)
        assert h.state == "IDLE" and h.amps() == [0, 0], (message, h.state)
        assert h.device.heat.state == "off", (message, h.device.heat.state)
    h = _running()  # during a session too: the target stays, the session runs on
    assert _one_reply(h, {"ev": "x", "id": 30, "op": "set_amp", "ch": 0, "amp_ua": 9000})["err"] == msg.E_BAD_FIELD
    h.tick(100)
    assert h.state == "RUNNING" and h.ch(0).target_ua == 5000 and h.amps()[0] == 5000


def test_hello_and_unknown_ops_carrying_ok_are_answered():
    h = Harness()
    reply = _one_reply(h, {"id": 40, "op": "hello", "ok": True, "proto": "0.4"})
    assert reply["ok"] is True and reply["proto"] == msg.PROTO_VERSION
    reply = _one_reply(h, {"id": 41, "op": "reboot", "ok": True})
    assert reply["ok"] is False and reply["err"] == msg.E_UNKNOWN_OP
    reply = _one_reply(h, {"id": 42, "op": None, "ev": "state"})  # an `op` key makes a request
    assert reply["ok"] is False and reply["err"] == msg.E_UNKNOWN_OP
    reply = _one_reply(h, {"op": "status", "ok": True})  # no id: as for any request without one
    assert reply == {"id": None, "ok": False, "err": msg.E_BAD_REQUEST, "msg": reply["msg"]}


def test_estop_stop_and_pause_act_without_a_valid_id():
    """A stop is never refused, not for its id either: it acts and replies to id null."""
    for bad_id in (None, 0, "5", msg.MAX_REQUEST_ID + 1, True):
        for op, state in (("estop", "IDLE"), ("stop", "IDLE"), ("pause", "PAUSED")):
            h = _running()
            message = {"op": op}
            if bad_id is not None:
                message["id"] = bad_id
            found = _answers(h, message)
            assert len(found) == 1 and found[0]["id"] is None and found[0]["ok"] is True, (message, found)
            h.tick(300 if op == "stop" else 1)
            assert h.state == state and h.amps() == [0, 0], (message, h.state, h.amps())
    h = _running()  # any other op with a bad id is refused and changes nothing
    found = _answers(h, {"id": 0, "op": "set_amp", "ch": 0, "amp_ua": 0})
    assert len(found) == 1 and found[0]["id"] is None and found[0]["err"] == msg.E_BAD_REQUEST
    h.tick(10)
    assert h.state == "RUNNING" and h.amps()[0] == 5000


def test_a_request_carrying_ok_renews_the_lease_like_any_refused_request():
    h = Harness()
    h.ok("start", {"amp_ua": [5000, 0], "lease_ms": 1000, "ramp_ms": 1000})
    start = len(h.inbox)
    for n in range(15):  # every 100 ms for 1.5 s: each refused, each renewing the lease
        h.tick(10)
        h.send_message({"id": 200 + n, "op": "keepalive", "ok": True})
    h.tick(2)
    assert h.state == "RUNNING", h.device.supervisor.reason
    refused = [m for m in h.inbox[start:] if "ok" in m]
    assert [m["id"] for m in refused] == list(range(200, 215))
    assert [m["err"] for m in refused] == [msg.E_BAD_FIELD] * 15


def test_echoes_without_op_are_dropped_unanswered_and_do_not_renew_the_lease():
    h = Harness()
    h.ok("start", {"amp_ua": [5000, 0], "lease_ms": 1000, "ramp_ms": 1000})
    frames_before = h.device.link.rx_frames
    echoes = [
        {"id": 1, "ok": True, "state": "RUNNING"},
        {"id": 2, "ok": False, "err": "bad_field", "msg": "x"},
        {"ev": "state", "state": "RUNNING", "reason": "start", "faults": [], "fault_msg": ""},
        {"ev": "rx_error", "err": "bad_checksum", "msg": "CRC-16 mismatch"},
        {"ok": None},
        {"ev": None, "id": 3},
    ]
    start = len(h.inbox)
    for n in range(15):  # every 100 ms for 1.5 s, past the 1000 ms lease
        h.tick(10)
        h.send_message(echoes[n % len(echoes)])
    h.tick(2)
    assert [m for m in h.inbox[start:] if "ok" in m or m.get("ev") == "rx_error"] == []
    assert h.device.link.rx_frames == frames_before
    assert h.device.link.rx_errors == 0
    assert h.state == "PAUSED" and h.device.supervisor.reason == "lease_expired"


def test_the_devices_own_output_looped_back_gets_no_answer():
    h = Harness()
    h.ok("hello", {"proto": "0.4"})
    h.ok("status")
    h.ok("get_stim", {"ch": 0})
    h.request("set_amp", {"ch": 9, "amp_ua": 1})  # an error reply
    h.ok("start", {"amp_ua": [5000, 0], "lease_ms": 0, "ramp_ms": 1000})
    h.ok("heat", {"level": "low", "minutes": 1})
    h.ok("telemetry", {"every_ms": 50})
    h.send_raw(b"@{\"id\":1}*0000\n")  # an rx_error event
    h.tick(20)
    h.ok("telemetry", {"every_ms": 0})
    h.ok("stop")
    h.tick(300)
    for m in h.inbox:
        assert "op" not in m, m  # no device message has an `op`: looped back, none is a request
    output = h.raw
    assert output.count(b"\n") >= 12
    start = len(h.inbox)
    frames_before = h.device.link.rx_frames
    h.send_raw(output)
    h.tick(len(output) // 512 + 5)
    assert [m for m in h.inbox[start:] if "ok" in m or m.get("ev") == "rx_error"] == []
    assert h.device.link.rx_frames == frames_before and h.device.link.waiting_lines == 0


def test_neither_op_nor_ok_nor_ev_is_still_a_bad_request():
    h = Harness()
    reply = _one_reply(h, {"id": 50})
    assert reply["ok"] is False and reply["err"] == msg.E_UNKNOWN_OP
    found = _answers(h, {"state": "IDLE"})
    assert len(found) == 1 and found[0]["id"] is None and found[0]["err"] == msg.E_BAD_REQUEST


def _step(h, request_id):
    return h.request("amp_step", {"ch": 0, "steps": 1}, request_id=request_id)


def test_a_refused_hello_keeps_the_reply_cache():
    for refused in ({"proto": "1.0"}, {"unix_s": 12345}, {"proto": 4}, {"proto": "0.4", "unix_s": 12345}):
        h = Harness()
        first = _step(h, 9)
        assert first["ok"] is True and first["target_ua"] == 500
        reply = h.request("hello", refused)
        assert reply["ok"] is False, (refused, reply)
        assert _step(h, 9) == first, refused  # still a retry: answered again, not run again
        assert h.ch(0).target_ua == 500, refused
        assert h.ok("hello", {"proto": "0.4", "unix_s": 1790000000})["proto"] == msg.PROTO_VERSION
        again = _step(h, 9)  # an accepted hello starts a session: the old id runs again
        assert again["ok"] is True and again["target_ua"] == 1000, refused
        assert h.ch(0).target_ua == 1000


def test_an_id_reused_with_other_bytes_runs_and_each_retry_gets_its_own_reply():
    h = Harness()
    first = h.request("amp_step", {"ch": 0, "steps": 1}, request_id=60)
    second = h.request("amp_step", {"ch": 0, "steps": 2}, request_id=60)  # other bytes: runs
    assert (first["target_ua"], second["target_ua"]) == (500, 1500)
    assert h.request("amp_step", {"ch": 0, "steps": 1}, request_id=60) == first
    assert h.request("amp_step", {"ch": 0, "steps": 2}, request_id=60) == second
    assert h.ch(0).target_ua == 1500
    for n in range(8):  # eight newer requests push both out of the cache
        h.ok("status")
    third = h.request("amp_step", {"ch": 0, "steps": 1}, request_id=60)
    assert third["ok"] is True and third["target_ua"] == 2000


def test_a_burst_of_requests_in_one_write_is_answered_once_each_in_order_and_an_estop_runs():
    h = _running()
    ids = []
    data = []
    for n in range(60):
        rid = 1000 + n
        ids.append(rid)
        op = "status" if n % 3 == 0 else "keepalive"
        data.append(frame.encode_frame({"id": rid, "op": op}))
    ids.append(2000)
    data.append(frame.encode_frame({"id": 2000, "op": "estop", "ok": 1}))
    start = len(h.inbox)
    h.send_raw(b"".join(data))
    h.tick(40)
    answered = [m["id"] for m in h.inbox[start:] if "ok" in m]
    assert answered == ids
    assert h.state == "IDLE" and h.amps() == [0, 0]
    assert h.device.link.tx_dropped == 0 and h.device.link.waiting_lines == 0


def test_a_tick_of_damaged_lines_reports_a_few_counts_them_all_and_an_estop_among_them_runs():
    """A noisy line may hold hundreds of damaged frames in one tick: each rx_error event costs an
    encode and a CRC, so only the first few are sent; every one is counted (status rx_errors)."""
    from firmware.link import RX_ERROR_EVENTS_PER_TICK

    h = _running()
    before = h.device.link.rx_errors
    estop = frame.encode_frame({"id": 77, "op": "estop"})
    start = len(h.inbox)
    h.send_raw(b"@\n" * 100 + estop + b"@\n" * 100)  # 200 bare '@' lines: bad_frame each
    h.tick()
    errors = [m for m in h.inbox[start:] if m.get("ev") == "rx_error"]
    assert len(errors) == RX_ERROR_EVENTS_PER_TICK and RX_ERROR_EVENTS_PER_TICK <= 8, errors
    assert all(m["err"] == "bad_frame" for m in errors), errors
    assert [m["id"] for m in h.inbox[start:] if "ok" in m] == [77] and h.state == "IDLE"
    assert h.device.link.rx_errors - before == 200
    assert h.ok("status")["rx_errors"] == h.device.link.rx_errors
    start = len(h.inbox)
    h.send_raw(b"@\n")  # a new tick reports again
    h.tick()
    assert [m["err"] for m in h.inbox[start:] if m.get("ev") == "rx_error"] == ["bad_frame"]


def _slow_status(h, cost_ms):
    """Each status reply takes cost_ms of the device's clock, as a status reply on the board takes
    milliseconds (its JSON and CRC in Python); the simulated clock otherwise stands still in a tick."""
    handler = h.device.link.ops["status"]

    def slow(message):
        h.board.clock.advance(cost_ms)
        return handler(message)

    h.device.link.ops["status"] = slow


def test_a_burst_of_slow_requests_is_spread_over_ticks_within_the_time_budget_and_all_are_answered():
    from firmware.link import HANDLE_BUDGET_MS

    h = _running()
    _slow_status(h, 8)
    ids = list(range(3000, 3012))
    data = b"".join(frame.encode_frame({"id": rid, "op": "status"}) for rid in ids)
    data += frame.encode_frame({"id": 3999, "op": "estop"})
    start = len(h.inbox)
    per_tick = []
    for _ in range(8):
        before = len([m for m in h.inbox[start:] if "ok" in m])
        if not per_tick:
            h.send_raw(data)
        h.tick()
        per_tick.append(len([m for m in h.inbox[start:] if "ok" in m]) - before)
    # 8 ms each: the third reply passes the budget, the rest wait (at least one line every tick)
    assert per_tick[0] == (HANDLE_BUDGET_MS + 7) // 8, per_tick
    assert max(per_tick) <= (HANDLE_BUDGET_MS + 7) // 8 + 1, per_tick
    answered = [m["id"] for m in h.inbox[start:] if "ok" in m]
    assert answered == ids + [3999], answered  # every one, in order: the estop too
    assert h.state == "IDLE" and h.amps() == [0, 0]
    assert h.device.link.budget_ticks >= 3 and h.device.link.tx_dropped == 0


def test_a_single_request_longer_than_the_budget_is_still_answered_every_tick():
    h = _running()
    _slow_status(h, 50)
    start = len(h.inbox)
    h.send_raw(b"".join(frame.encode_frame({"id": rid, "op": "status"}) for rid in (1, 2, 3)))
    counts = []
    for _ in range(3):
        h.tick()
        counts.append(len([m for m in h.inbox[start:] if "ok" in m]))
    assert counts == [1, 2, 3], counts


def test_requests_in_the_tick_a_fault_latches_see_the_fault():
    probe = _running()
    probe.fault("electrode_off:0")
    assert probe.tick_until(lambda: probe.state == "FAULT") == 2  # latches in the second tick
    cases = (
        ("estop", {}, True),
        ("stop", {}, True),
        ("pause", {}, False),  # pause is for RUNNING: in FAULT the output is off already
        ("keepalive", {}, True),
        ("status", {}, True),
        ("set_amp", {"ch": 1, "amp_ua": 5000}, False),
        ("amp_step", {"ch": 0, "steps": 1}, False),
        ("resume", {}, False),
        ("start", {"amp_ua": [5000, 0], "lease_ms": 0}, False),
        ("clear_fault", {}, False),
        ("heat", {"level": "low", "minutes": 1}, False),
    )
    for op, fields, accepted in cases:
        h = _running()
        h.fault("electrode_off:0")
        h.tick()
        assert h.state == "RUNNING"
        start = len(h.inbox)
        message = {"id": 80, "op": op}
        for key in fields:
            message[key] = fields[key]
        h.send_message(message)
        h.tick()  # the fault latches in this tick, before the request is handled
        replies = [m for m in h.inbox[start:] if "ok" in m]
        assert len(replies) == 1 and replies[0]["ok"] is accepted, (op, replies)
        if "state" in replies[0]:
            assert replies[0]["state"] == "FAULT", (op, replies)
        assert [m["state"] for m in h.events("state", start)] == ["FAULT"], op
        h.fault("electrode_off:0", False)
        h.tick(50)
        assert h.state == "FAULT" and h.amps() == [0, 0] and h.faults == ["no_load:0"], (op, h.state)
        assert h.device.heat.state == "off" or h.device.heat.state == "fault", (op, h.device.heat.state)


def test_a_handler_that_raises_still_answers_once_and_the_device_fails_safe():
    h = _running()

    def broken(message):
        raise ValueError("a firmware bug")

    h.device.link.ops["get_stim"] = broken
    start = len(h.inbox)
    h.send("get_stim", {"ch": 0}, request_id=70)
    h.send("status", request_id=71)  # the line after it is handled too
    h.tick(2)
    replies = [m for m in h.inbox[start:] if "ok" in m]
    assert [m["id"] for m in replies] == [70, 71], replies
    assert replies[0]["ok"] is False and replies[0]["err"] == msg.E_INTERNAL
    assert "ValueError" in replies[0]["msg"]
    assert h.state == "FAULT" and h.amps() == [0, 0]
    assert h.faults[0].startswith("internal")
    again = h.request("get_stim", {"ch": 0}, request_id=70)  # not cached: a retry runs (and fails) again
    assert again["err"] == msg.E_INTERNAL


def test_a_non_ascii_payload_is_bad_frame_only_when_its_crc_matches():
    """The CRC is checked first: a line damaged on the way (a high bit set) is bad_checksum;
    bad_frame is a sender's frame whose CRC matches but whose bytes are not printable ASCII."""
    h = Harness()
    payload = b'{"id":90,"op":"st\xe1tus"}'
    good = b"@" + payload + ("*%04X\n" % frame.crc16(payload)).encode()
    bad = b"@" + payload + ("*%04X\n" % (frame.crc16(payload) ^ 1)).encode()
    for line, code in ((good, msg.E_BAD_FRAME), (bad, msg.E_BAD_CHECKSUM)):
        start = len(h.inbox)
        h.send_raw(line)
        h.tick()
        found = [m for m in h.inbox[start:] if "ok" in m or m.get("ev") == "rx_error"]
        assert len(found) == 1 and found[0]["ev"] == "rx_error" and found[0]["err"] == code, (line, found)


class _TrickleSerial(SimSerial):
    """A host that reads, but slowly: the port takes at most 40 bytes a tick (4 KB/s)."""

    def write(self, data):
        return SimSerial.write(self, data[:40])


def test_telemetry_faster_than_a_slow_host_reads_never_holds_back_an_estop_or_a_keepalive():
    """At 40 bytes a tick the host took less than 20 Hz telemetry brings: the queue stayed full,
    every request waited for room (a trickle is not a stall) and an estop sent 4 s into the
    session never ran. Telemetry now never takes the room kept for answers."""
    h = Harness(serial=_TrickleSerial())
    h.check_invariants = False  # answers come ticks late here, by design of the test
    h.send("start", {"amp_ua": [20000, 0], "lease_ms": 3000, "ramp_ms": 1000})
    h.tick(5)
    h.send("telemetry", {"every_ms": 50})
    for _ in range(10):  # 4 s with a keepalive every 400 ms: each renews the 3 s lease
        h.tick(40)
        h.send("keepalive")
        h.forget()
    h.tick(2)
    assert h.state == "RUNNING", h.device.supervisor.reason  # not lease_expired: the keepalives ran
    estop_id = h.send("estop")
    h.tick(2)
    assert h.state == "IDLE" and h.device.supervisor.reason == "estop"
    assert h.device.link.tx_dropped > 0  # telemetry the host could not take was left out
    h.tick(200)  # the host drains the queue: the estop's answer arrives
    assert [m for m in h.inbox if m.get("id") == estop_id and m.get("ok") is True]
