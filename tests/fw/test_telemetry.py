"""Periodic telemetry events: the rate the host asks for, the fields a live view needs, and
a host that stops reading losing events (counted) without ever stalling the tick."""

from firmware.protocols import frame
from firmware.protocols import messages as msg
from firmware.telemetry import Telemetry
from sim.board import SimSerial
from tests.fw.harness import Harness

FIELDS = ["amp_ua", "delivered_ua", "dropped", "ev", "faults", "heat", "n", "session_left_ms", "state", "target_ua",
          "uptime_ms"]


def test_events_arrive_at_the_rate_asked_for_with_the_fields_a_view_needs():
    h = Harness()
    assert h.ok("telemetry", {"every_ms": 100})["every_ms"] == 100
    mark = len(h.inbox)
    h.tick(200)  # 2 s
    events = h.events("telemetry", mark)
    assert 19 <= len(events) <= 21, len(events)
    assert [e["n"] for e in events] == list(range(events[0]["n"], events[0]["n"] + len(events)))
    for event in events:
        assert sorted(event) == FIELDS, sorted(event)
        assert event["state"] == "IDLE" and event["dropped"] == 0 and len(event["amp_ua"]) == 2
        assert sorted(event["heat"]) == ["cem43_ms", "heater_duty_pct", "measured_mc", "state", "target_mc"]
    gaps = [b["uptime_ms"] - a["uptime_ms"] for a, b in zip(events, events[1:])]
    assert set(gaps) == {100}, gaps


def test_telemetry_follows_a_session():
    h = Harness()
    h.ok("telemetry", {"every_ms": 50})
    h.ok("start", {"amp_ua": [3000], "lease_ms": 0, "ramp_ms": 1000})
    h.ok("heat", {"level": "low"})
    mark = len(h.inbox)
    h.tick(150)
    last = h.events("telemetry", mark)[-1]
    assert last["state"] == "RUNNING" and last["amp_ua"][0] == 3000 and last["target_ua"] == [3000, 0]
    assert last["heat"]["state"] == "heating" and last["heat"]["target_mc"] == 38000
    assert 29 * 60000 < last["session_left_ms"] <= 30 * 60000


def test_bad_rates_are_refused_naming_the_limits_and_zero_turns_it_off():
    h = Harness()
    for every_ms, code, words in ((49, msg.E_OUT_OF_RANGE, ("49", "50")), (60001, msg.E_OUT_OF_RANGE, ("60000",)),
                                  ("fast", msg.E_BAD_FIELD, ("every_ms", "integer")), (None, msg.E_BAD_FIELD, ("every_ms",))):
        fields = {} if every_ms is None else {"every_ms": every_ms}
        reply = h.request("telemetry", fields)
        assert reply["ok"] is False and reply["err"] == code, reply
        for word in words:
            assert word in reply["msg"], (word, reply)
    assert h.ok("status")["telemetry_ms"] == 0
    h.ok("telemetry", {"every_ms": 50})
    h.ok("telemetry", {"every_ms": 0})
    mark = len(h.inbox)
    h.tick(100)
    assert h.events("telemetry", mark) == []


def test_a_hello_turns_telemetry_off():
    h = Harness()
    h.ok("telemetry", {"every_ms": 50})
    h.ok("hello")
    mark = len(h.inbox)
    h.tick(100)
    assert h.events("telemetry", mark) == [] and h.ok("status")["telemetry_ms"] == 0


def test_a_host_that_does_not_read_loses_events_counted_and_the_device_keeps_working():
    h = Harness(serial=SimSerial(tx_capacity=64))
    h.send("telemetry", {"every_ms": 50})
    for _ in range(1000):  # 10 s; the host reads nothing
        h.device.tick()
        h.board.advance(10)
    telemetry = h.device.telemetry
    assert telemetry.seq >= 190 and telemetry.dropped > 100, (telemetry.seq, telemetry.dropped)
    assert h.device.ticks == 1000 and h.state == "IDLE" and h.faults == []
    # the host reads again: what arrives is intact and says how much it missed
    h.board.serial.tx_capacity = 1 << 20
    h.tick(20)
    events = h.events("telemetry")
    assert events and events[-1]["dropped"] > 100 and h.host_errors == 0


def test_every_telemetry_event_fits_a_frame():
    h = Harness()
    h.device.supervisor.trip("overcurrent:0", "x" * 120)
    h.device.supervisor.trip("no_load:1", "y" * 120)
    data = frame.encode_frame(msg.event(msg.EV_TELEMETRY, h.device._telemetry_fields()))
    assert len(data) < frame.MAX_LINE_BYTES // 2, len(data)


def test_a_late_tick_does_not_bunch_events():
    telemetry = Telemetry()
    telemetry.set_rate(100, 0)
    assert telemetry.due(0) and not telemetry.due(50) and telemetry.due(100)
    assert telemetry.due(1000)  # 900 ms late: one event, not nine
    assert not telemetry.due(1050) and telemetry.due(1100)
