"""A request field the device does not take is refused (bad_field) and changes nothing: a
misspelt `sesion_ms` must not start a session of the default 30 minutes. Every request may
carry `pin`; hello takes anything (version talk); estop, stop and pause act whatever they carry.
Portable: runs in the VM too."""

from firmware.protocols import messages as msg
from tests.fw.harness import Harness

# One request per op that checks its fields, with fields it takes (valid or not: the unknown
# field must be found first) and one misspelt field.
MISSPELT = [
    ("start", {"amp_ua": [5000, 0], "lease": 0}, "lease"),
    ("start", {"amp_ua": [5000, 0], "sesion_ms": 60000}, "sesion_ms"),
    ("status", {"verbose": True}, "verbose"),
    ("resume", {"ch": 0}, "ch"),
    ("set_amp", {"ch": 0, "amp_ua": 6000, "chanel": 1}, "chanel"),
    ("amp_step", {"ch": 0, "step": 1}, "step"),
    ("set_stim", {"ch": 0, "stim": {"mode": "burst"}, "force": True}, "force"),
    ("get_stim", {"channel": 0}, "channel"),
    ("keepalive", {"lease_ms": 9000}, "lease_ms"),
    ("clear_fault", {"fault": "no_load:0"}, "fault"),
    ("heat", {"level": "low", "minute": 1}, "minute"),
    ("telemetry", {"every": 100}, "every"),
    ("settings", {"set": {"ramp_default_ms": 3000}, "save": True}, "save"),
    ("maintenance", {"on": True, "now": 1}, "now"),
    ("programs", {"all": True}, "all"),
    ("program_get", {"nam": "gentle"}, "nam"),
    ("program_put", {"program": {}, "overwrite": True}, "overwrite"),
    ("program_delete", {"name": "mine", "force": 1}, "force"),
    ("log_info", {"x": 1}, "x"),
    ("log_fetch", {"from": 1}, "from"),
    ("log_erase", {"confirm": True}, "confirm"),
    ("pain", {"score": 3, "when": "before", "extra": 1}, "extra"),
    ("pin", {"new_pin": "1234"}, "new_pin"),
]


def test_every_op_the_device_answers_has_its_field_list():
    h = Harness()
    assert sorted(h.device.link.ops) == sorted(msg.OPS) == sorted(msg.FIELDS)
    assert sorted(set(op for op, _, _ in MISSPELT)) == sorted(op for op in msg.FIELDS if msg.FIELDS[op] is not None)


def test_a_field_the_op_does_not_take_is_refused_naming_it_and_changes_nothing():
    for op, fields, misspelt in MISSPELT:
        h = Harness()
        before = h.ok("status")
        reply = h.request(op, fields)
        assert reply["ok"] is False and reply["err"] == msg.E_BAD_FIELD, (op, reply)
        assert ("unknown field '%s' in %s" % (misspelt, op)) in reply["msg"], (op, reply["msg"])
        for taken in msg.FIELDS[op]:
            assert taken in reply["msg"], (op, taken, reply["msg"])  # and says what it takes
        h.tick(50)
        after = h.ok("status")
        assert after["state"] == before["state"] == "IDLE", (op, after)
        assert after["heat"]["state"] == before["heat"]["state"] == "off", (op, after["heat"])
        assert h.amps() == [0, 0] and h.device.settings.to_dict() == Harness().device.settings.to_dict(), op


def test_a_running_session_is_not_changed_by_a_misspelt_request():
    h = Harness()
    h.ok("start", {"amp_ua": [5000, 0], "lease_ms": 0, "ramp_ms": 1000})
    h.tick(200)
    assert h.request("set_amp", {"ch": 0, "amp_ua": 9000, "chanel": 1})["err"] == msg.E_BAD_FIELD
    assert h.request("heat", {"level": "high", "minute": 1})["err"] == msg.E_BAD_FIELD
    h.tick(200)
    status = h.ok("status")
    assert status["state"] == "RUNNING" and status["ch"][0]["target_ua"] == 5000 and h.amps()[0] == 5000
    assert status["heat"]["state"] == "off"


def test_stops_act_whatever_they_carry_and_pin_goes_with_any_request():
    for op, state in (("pause", "PAUSED"), ("stop", "IDLE"), ("estop", "IDLE")):
        h = Harness()
        h.ok("start", {"amp_ua": [5000, 0], "lease_ms": 0, "ramp_ms": 1000})
        h.tick(200)
        h.ok(op, {"reason": "patient asked", "now": True})
        h.tick(200)
        assert h.state == state and h.amps() == [0, 0], (op, h.state, h.amps())
    h = Harness()
    assert h.ok("hello", {"proto": "0.4", "host": "a newer tensctl"})["proto"]
    assert h.ok("status", {"pin": "1234"})["state"] == "IDLE"
    assert h.ok("start", {"amp_ua": [3000, 0], "lease_ms": 0, "pin": "1234"})["state"] == "RUNNING"


def _refusal(h, op, fields):
    reply = h.request(op, fields)
    assert reply["ok"] is False, (op, fields, reply)
    return reply


def test_a_field_sent_as_null_is_refused_as_a_value_not_taken_for_a_missing_one():
    h = Harness()
    for op, fields, words in (
        ("start", {"amp_ua": [5000, 0], "lease_ms": None}, "lease_ms must be an integer, got null"),
        ("start", {"amp_ua": [5000, 0], "lease_ms": 0, "session_ms": None}, "session_ms must be an integer, got null"),
        ("start", {"amp_ua": None, "lease_ms": 0}, "amp_ua must be a list of up to 2 integers, one per channel, got null"),
        ("telemetry", {"every_ms": None}, "every_ms must be an integer, got null"),
        ("log_fetch", {"from_seq": None}, "from_seq must be an integer, got null"),
    ):
        reply = _refusal(h, op, fields)
        assert reply["err"] == msg.E_BAD_FIELD and words in reply["msg"], (op, fields, reply)
    assert h.state == "IDLE" and h.ok("status")["telemetry_ms"] == 0
    reply = _refusal(h, "telemetry", {})  # absent is still "missing", with the range
    assert "missing field every_ms (integer 50..60000)" in reply["msg"], reply


def test_a_refused_amplitude_of_start_names_its_channel():
    h = Harness()
    h.ok("set_stim", {"ch": 1, "stim": {"phase_us": 400}})
    for amps, code, words in (
        ([1000, 90000], msg.E_OUT_OF_RANGE, "amp_ua[1] 90000 exceeds the limit 80000"),
        ([1000, True], msg.E_BAD_FIELD, "amp_ua[1] must be an integer, got true"),
        ([-1, 0], msg.E_OUT_OF_RANGE, "amp_ua[0] -1 is below the minimum 0"),
        ([1000, 70000], msg.E_ENVELOPE, ", on channel 1"),
    ):
        reply = _refusal(h, "start", {"amp_ua": amps, "lease_ms": 0})
        assert reply["err"] == code and words in reply["msg"], (amps, reply)
    assert reply["msg"].startswith("phase_charge "), reply  # the limit's name first, as for any envelope refusal
    assert h.state == "IDLE"


def test_state_refusals_say_what_to_do_in_that_state():
    h = Harness()
    reply = _refusal(h, "telemetry", {"every_ms": 49})
    assert "below the minimum 50 (or 0: off)" in reply["msg"], reply
    h.ok("start", {"amp_ua": [5000, 0], "lease_ms": 0})
    assert "stop first" in _refusal(h, "maintenance", {"on": True})["msg"]
    h.device._fail_safe("no_load:0", "test")  # any latched fault
    reply = _refusal(h, "maintenance", {"on": True})
    assert "(state FAULT): send clear_fault first" in reply["msg"], reply
