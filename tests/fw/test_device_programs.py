"""Programs on the device: presets and uploads, the phase timeline, prescribed maxima,
patient mode behind the clinician PIN, and the session log a therapist fetches."""

from firmware.protocols import frame
from firmware.protocols import messages as msg
from tests.fw.harness import Harness

STIM = {"mode": "continuous", "rate_hz": 20, "phase_us": 100}  # few pulses: the harness keeps every one


def _short_program(name="rx-short", max_amp_ua=20000):
    """20 s warm-up heat, 30 s TENS with heat, 10 s TENS alone: one minute in all."""
    return {
        "name": name,
        "description": "short heat then TENS for tests",
        "channels": [{"stim": STIM, "max_amp_ua": max_amp_ua}, {"stim": STIM, "max_amp_ua": max_amp_ua}],
        "heat": {"level": "low"},
        "phases": [
            {"name": "warm-up", "duration_s": 20, "tens": False},
            {"name": "both", "duration_s": 30},
            {"name": "cool", "duration_s": 10, "heat": False},
        ],
    }


def _refused(h, op, fields, code, words=()):
    reply = h.request(op, fields)
    assert reply["ok"] is False and reply["err"] == code, (op, reply)
    for word in words:
        assert word in reply["msg"], (word, reply)
    return reply


def _fetch_all(h, page_bytes=200):
    records = []
    next_seq = 1
    while True:
        reply = h.ok("log_fetch", {"from_seq": next_seq, "max_bytes": page_bytes})
        records.extend(reply["records"])
        if not reply["records"]:
            return records
        next_seq = reply["next_seq"]


def test_presets_are_listed_and_fetched():
    h = Harness()
    listing = h.ok("programs")
    assert "heat-then-tens" in listing["presets"] and listing["stored"] == [] and listing["patient_mode"] is False
    got = h.ok("program_get", {"name": "conventional"})
    assert got["preset"] is True and got["program"]["channels"][0]["stim"]["rate_hz"] == 100
    _refused(h, "program_get", {"name": "nope"}, msg.E_NOT_FOUND, ("nope",))


def test_a_program_runs_its_timeline():
    h = Harness()
    h.ok("program_put", {"program": _short_program()})
    h.ok("start", {"program": "rx-short", "lease_ms": 0})
    status = h.ok("status")
    assert status["program"] == "rx-short" and status["phase"] == "warm-up"
    assert status["heat"]["state"] in ("heating", "holding") and status["heat"]["target_mc"] == 38000
    _refused(h, "set_amp", {"ch": 0, "amp_ua": 5000}, msg.E_BAD_STATE, ("warm-up", "no stimulation"))
    h.tick(2000)
    assert h.amps() == [0, 0] and h.ok("status")["phase"] == "both"
    h.ok("set_amp", {"ch": 0, "amp_ua": 8000})
    _refused(h, "set_amp", {"ch": 1, "amp_ua": 20500}, msg.E_OUT_OF_RANGE, ("20500", "prescribed maximum 20000"))
    h.tick(2999)
    assert h.amps()[0] == 8000
    status = h.ok("status")
    assert status["phase"] == "cool" and status["heat"]["state"] == "off"
    assert h.amps()[0] == 8000  # TENS goes on while the pad cools
    h.tick_until(lambda: h.state == "IDLE", limit=1600)
    assert h.device.supervisor.reason == "session_end" and h.ok("status")["program"] is None
    kinds = [r["ev"] for r in _fetch_all(h)]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert kinds.count("phase") == 3 and "amp" in kinds and "heat" in kinds and "sample" in kinds


def test_tens_comes_back_at_the_patients_amplitude_after_a_heat_only_phase():
    h = Harness()
    program = _short_program()
    program["phases"] = [
        {"name": "a", "duration_s": 10},
        {"name": "b", "duration_s": 10, "tens": False},
        {"name": "c", "duration_s": 10},
    ]
    h.ok("program_put", {"program": program})
    h.ok("start", {"program": "rx-short", "lease_ms": 0, "amp_ua": [6000, 0]})
    h.tick(999)
    assert h.amps()[0] == 6000
    h.tick(200)
    assert h.ch(0).target_ua == 0 and 0 < h.amps()[0] < 6000  # ramps down gently, like a stop
    h.tick(500)
    assert h.amps()[0] == 0
    h.tick(500)
    assert h.ch(0).target_ua == 6000  # restored, ramping from zero
    assert 0 < h.amps()[0] < 6000


def test_start_with_a_program_refuses_its_overrides_and_bad_amplitudes():
    h = Harness()
    h.ok("program_put", {"program": _short_program()})
    _refused(h, "start", {"program": "rx-short", "session_ms": 60000}, msg.E_BAD_FIELD, ("session_ms", "from the program"))
    _refused(h, "start", {"program": "rx-short", "amp_ua": [30000]}, msg.E_OUT_OF_RANGE, ("30000", "20000"))
    _refused(h, "start", {"program": "missing"}, msg.E_NOT_FOUND, ("missing",))
    _refused(h, "start", {"program": 7}, msg.E_BAD_FIELD, ("program name",))
    assert h.state == "IDLE"


def test_uploads_are_checked_on_the_device_too():
    h = Harness()
    bad = _short_program()
    bad["heat"] = {"target_mc": 44000}
    _refused(h, "program_put", {"program": bad}, msg.E_OUT_OF_RANGE, ("heat.target_mc", "44000", "43000"))
    _refused(h, "program_put", {"program": dict(_short_program(), name="conventional")}, msg.E_BAD_FIELD,
             ("built-in preset",))
    h.ok("settings", {"set": {"heat_max_target_mc": 37000}})
    low_cap = _short_program()
    _refused(h, "program_put", {"program": low_cap}, msg.E_OUT_OF_RANGE, ("38000", "37000"))
    assert h.ok("programs")["stored"] == []


def test_programs_survive_a_reboot_and_can_be_deleted():
    h = Harness()
    h.ok("program_put", {"program": _short_program("rx-a")})
    h.ok("program_put", {"program": _short_program("rx-b")})
    h.ok("program_delete", {"name": "rx-a"})
    rebooted = h.board.build_device()
    assert rebooted.clinic.store.names() == ["rx-b"]
    _refused(h, "program_delete", {"name": "rx-a"}, msg.E_NOT_FOUND, ("rx-a",))


def test_patient_mode_runs_prescriptions_only():
    h = Harness()
    h.ok("program_put", {"program": _short_program()})
    h.ok("pin", {"new": "2468"})
    assert h.ok("programs")["patient_mode"] is True
    # what a patient may not do without the PIN
    _refused(h, "program_put", {"program": _short_program("rx-2")}, msg.E_LOCKED, ("upload",))
    _refused(h, "program_delete", {"name": "rx-short"}, msg.E_LOCKED)
    _refused(h, "settings", {"set": {"ramp_default_ms": 2000}}, msg.E_LOCKED)
    _refused(h, "start", {"amp_ua": [1000]}, msg.E_LOCKED, ("without a program",))
    _refused(h, "start", {"program": "conventional"}, msg.E_LOCKED, ("preset",))
    _refused(h, "set_stim", {"ch": 0, "stim": {"rate_hz": 50}}, msg.E_LOCKED)
    # a target set with no session carries into the next one a clinician starts by hand
    _refused(h, "set_amp", {"ch": 1, "amp_ua": 80000}, msg.E_LOCKED, ("no session running",))
    _refused(h, "amp_step", {"ch": 1, "steps": 4}, msg.E_LOCKED, ("no session running",))
    assert h.ch(1).target_ua == 0
    assert h.ok("set_amp", {"ch": 1, "amp_ua": 0})["target_ua"] == 0  # lowering is free
    assert h.ok("set_amp", {"ch": 1, "amp_ua": 2000, "pin": "2468"})["target_ua"] == 2000  # the clinician
    h.ok("set_amp", {"ch": 1, "amp_ua": 0})
    _refused(h, "maintenance", {"on": True}, msg.E_LOCKED)
    _refused(h, "log_erase", {}, msg.E_LOCKED)
    _refused(h, "pin", {"remove": True}, msg.E_LOCKED)
    # a wrong PIN is refused without echoing anything of it
    reply = _refused(h, "settings", {"set": {"ramp_default_ms": 2000}, "pin": "1357"}, msg.E_BAD_PIN)
    assert "1357" not in reply["msg"]
    # the prescribed program runs, up to its maximum, with heat no higher than prescribed
    h.ok("start", {"program": "rx-short", "lease_ms": 0})
    _refused(h, "heat", {"level": "high"}, msg.E_OUT_OF_RANGE, ("42000", "prescribed 38000"))
    h.tick(2000)
    h.ok("set_amp", {"ch": 0, "amp_ua": 20000})
    _refused(h, "amp_step", {"ch": 0, "steps": 1}, msg.E_OUT_OF_RANGE, ("prescribed maximum",))
    h.ok("heat", {"off": True})  # less heat is always allowed
    h.ok("stop")
    # the clinician, with the PIN
    h.ok("settings", {"set": {"ramp_default_ms": 2000}, "pin": "2468"})
    # set and remove at once is ambiguous: refused, the PIN stays as it was
    _refused(h, "pin", {"new": "1357", "remove": True, "pin": "2468"}, msg.E_BAD_FIELD, ("new", "remove", "not both"))
    assert h.ok("programs")["patient_mode"] is True
    h.ok("pin", {"remove": True, "pin": "2468"})
    assert h.ok("programs")["patient_mode"] is False


def test_the_session_log_holds_pain_scores_faults_and_wall_time():
    h = Harness()
    h.ok("hello", {"unix_s": 1790000000})
    h.ok("pain", {"when": "before", "score": 7})
    h.ok("start", {"program": "conventional", "lease_ms": 0, "amp_ua": [4000, 4000]})
    h.tick(100)
    h.fault("electrode_off:0")
    h.tick_until(lambda: h.state == "FAULT", limit=500)
    h.tick()
    h.fault("electrode_off:0", active=False)
    h.ok("clear_fault")
    h.ok("pain", {"when": "after", "score": 4})
    _refused(h, "pain", {"when": "after", "score": 11}, msg.E_OUT_OF_RANGE, ("score", "11", "10"))
    _refused(h, "pain", {"when": "during", "score": 3}, msg.E_BAD_FIELD, ("before or after",))
    records = _fetch_all(h, page_bytes=150)
    kinds = [r["ev"] for r in records]
    assert kinds[0] == "pain" and kinds[1] == "start" and kinds[-1] == "pain"
    assert records[0]["sid"] is None and records[-1]["sid"] == records[1]["seq"]
    stop = [r for r in records if r["ev"] == "stop"][0]
    assert stop["reason"] == "fault" and stop["max_amp_ua"][0] > 0
    fault = [r for r in records if r["ev"] == "fault"][0]
    assert fault["faults"] == ["no_load:0"] and fault["msg"]
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every record fetched once, in order
    for record in records:
        assert 1790000000 <= record["unix_s"] < 1790000100 and record["up_ms"] >= 0
    info = h.ok("log_info")
    assert info["clock_set"] is True and info["last_seq"] == seqs[-1]


def test_a_restart_in_the_tick_a_session_ended_keeps_sessions_apart():
    h = Harness()
    h.ok("start", {"program": "conventional", "lease_ms": 0})
    h.send("estop")
    h.send("start", {"program": "burst", "lease_ms": 0})
    h.tick()
    h.ok("stop")
    h.tick_until(lambda: h.state == "IDLE", limit=1000)
    h.tick()
    records = _fetch_all(h)
    kinds = [r["ev"] for r in records if r["ev"] in ("start", "stop")]
    assert kinds == ["start", "stop", "start", "stop"], kinds
    starts = [r for r in records if r["ev"] == "start"]
    assert [r["program"] for r in starts] == ["conventional", "burst"]
    stops = [r for r in records if r["ev"] == "stop"]
    assert [r["reason"] for r in stops] == ["estop", "stop"], stops  # each session ends with its own reason


def test_a_clear_sent_before_the_fault_was_heard_of_is_refused_and_the_log_keeps_the_fault():
    # the control part of a tick latches the fault; a clear_fault the host sent before it knew
    # is handled later in the same tick: it is refused, so the fault is announced (state event)
    # and logged before anything can clear it
    h = Harness()
    h.ok("start", {"program": "conventional", "lease_ms": 0, "amp_ua": [4000, 4000]})
    h.tick(100)
    h.fault("electrode_off:0")
    for _ in range(500):
        since = len(h.inbox)
        request_id = h.send("clear_fault")
        h.tick()
        if h.state != "RUNNING":
            break
    assert h.state == "FAULT", h.state
    reply = [m for m in h.inbox[since:] if m.get("id") == request_id][0]
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE, reply
    assert "no_load:0" in reply["msg"] and "this tick" in reply["msg"], reply
    assert h.events("state", since)[-1]["state"] == "FAULT"
    h.fault("electrode_off:0", active=False)
    h.ok("clear_fault")
    records = _fetch_all(h)
    kinds = [r["ev"] for r in records if r["ev"] in ("start", "fault", "stop")]
    assert kinds == ["start", "fault", "stop"], kinds
    assert [r for r in records if r["ev"] == "stop"][0]["reason"] == "fault"
    assert [r for r in records if r["ev"] == "fault"][0]["faults"] == ["no_load:0"]


def test_the_status_reply_fits_one_frame_at_its_longest():
    from firmware.protocols import frame

    h = Harness()
    program = _short_program("p" * 24)
    program["phases"][0]["name"] = "w" * 24
    h.ok("program_put", {"program": program})
    h.ok("start", {"program": "p" * 24, "lease_ms": 0})
    h.tick(100)
    h.device._fail_safe("stuck_on", "x" * 300)  # the longest fault text there can be
    # straight to the handler: over the link the session's records close first and the program
    # leaves the status, so this is a bound on any real reply (the longest names and fault text)
    reply = msg.reply_ok(99999, h.device.link.ops["status"]({"id": 99999, "op": "status"}))
    assert len(frame.encode_frame(reply)) <= frame.MAX_LINE_BYTES - 40, len(frame.encode_frame(reply))
    assert reply["fault_msg"].startswith("xxx") and reply["phase"] == "w" * 24  # the longest names too


class FailingStorage:
    """Flash that fails every write to the session log once `fail` is set (a worn or full flash)."""

    def __init__(self, inner):
        self.inner = inner
        self.fail = False

    def append(self, name, data):
        if self.fail and name.startswith("sessions"):
            raise OSError(28, "no space left")
        return self.inner.append(name, data)

    def read(self, name, offset, size):
        return self.inner.read(name, offset, size)

    def size(self, name):
        return self.inner.size(name)

    def remove(self, name):
        return self.inner.remove(name)


def test_a_failing_flash_never_stops_a_session_or_its_safety_checks():
    h = Harness()
    storage = FailingStorage(h.board.storage)
    h.board.storage = storage
    h.device = h.board.build_device()
    h.ok("program_put", {"program": _short_program()})
    storage.fail = True
    h.ok("start", {"program": "rx-short", "lease_ms": 0})
    h.tick(2100)
    h.ok("set_amp", {"ch": 0, "amp_ua": 5000})
    h.tick(600)
    assert h.state == "RUNNING" and h.amps()[0] == 5000
    h.fault("electrode_off:0")  # safety checks still run: the fault latches and outputs go off
    h.tick_until(lambda: h.state == "FAULT", limit=300)
    assert h.amps() == [0, 0] and not h.board.heater.on()
    info = h.ok("log_info")
    assert info["write_errors"] >= 5 and info["records"] == 0
    reply = h.request("pain", {"when": "after", "score": 2})  # a direct request is told its record was lost
    assert reply["ok"] is False and reply["err"] == msg.E_STORAGE and "no space" in reply["msg"], reply


def test_in_patient_mode_heat_follows_the_phases():
    h = Harness()
    h.ok("program_put", {"program": _short_program()})
    h.ok("pin", {"new": "2468"})
    h.ok("start", {"program": "rx-short", "lease_ms": 0})
    h.tick(5000)  # the cool-down phase: no heat
    assert h.ok("status")["phase"] == "cool"
    _refused(h, "heat", {"level": "low"}, msg.E_LOCKED, ("cool", "no heat"))
    assert h.device.heat.state == "off"


def test_pin_salts_come_from_the_boards_random_source():
    a = Harness(seed=1)
    b = Harness(seed=2)
    for h in (a, b):
        h.ok("pin", {"new": "2468"})
    salt_a = a.board.storage.files["lock.log"]
    salt_b = b.board.storage.files["lock.log"]
    assert salt_a != salt_b and Harness(seed=1).board.random_bytes(16) == Harness(seed=1).board.random_bytes(16)


def test_an_output_stage_without_asymmetric_pulses_refuses_them_everywhere():
    h = Harness()
    h.board.pulse_out.asymmetric = False
    asym = {"mode": "continuous", "rate_hz": 80, "phase_us": 200, "waveform": "asymmetric", "asym_ratio": 2}
    _refused(h, "set_stim", {"ch": 0, "stim": asym}, msg.E_BAD_FIELD, ("symmetric pulses only",))
    program = _short_program()
    program["channels"][1]["stim"] = asym
    _refused(h, "program_put", {"program": program}, msg.E_BAD_FIELD, ("channels[1].stim", "symmetric pulses only"))
    h.board.pulse_out.asymmetric = True
    h.ok("program_put", {"program": program})
    h.board.pulse_out.asymmetric = False
    _refused(h, "start", {"program": "rx-short"}, msg.E_BAD_FIELD, ("channels[1].stim",))
    assert h.state == "IDLE" and h.ok("get_stim", {"ch": 0})["stim"]["waveform"] == "symmetric"


def test_the_amplitude_buttons_obey_the_prescription_and_the_phase():
    h = Harness()
    h.ok("program_put", {"program": _short_program(max_amp_ua=1000)})
    h.ok("start", {"program": "rx-short", "lease_ms": 0})
    assert h.device.button_step(1) == 0  # warm-up: no stimulation in this phase
    h.tick(2000)
    assert h.device.button_step(1) == 2 and [c.target_ua for c in h.device.channels] == [500, 500]
    h.device.button_step(1)
    assert h.device.button_step(1) == 0 and [c.target_ua for c in h.device.channels] == [1000, 1000]
    h.device.button_step(-1)
    assert [c.target_ua for c in h.device.channels] == [500, 500]


def _records_from(h, from_seq, last_seq):
    """Every log record from from_seq to last_seq, a page at a time."""
    records = []
    while from_seq <= last_seq:
        page = h.ok("log_fetch", {"from_seq": from_seq})
        records += page["records"]
        from_seq = page["next_seq"]
    return records


def test_a_flood_of_amplitude_requests_cannot_rotate_earlier_sessions_out_of_the_log():
    """One amp record per channel per CHANGE_RECORD_EVERY_S: the burst's last target is written
    when the time comes (or at the stop), so nothing the patient settled on is lost."""
    from firmware.recorder import CHANGE_RECORD_EVERY_S

    h = Harness()
    h.ok("pain", {"score": 6, "when": "before"})
    h.ok("start", {"amp_ua": [2000, 0], "lease_ms": 0})
    h.tick(200)
    h.ok("stop")
    h.tick(300)
    first = h.ok("log_info")
    h.ok("start", {"amp_ua": [2000, 0], "lease_ms": 0})
    for i in range(2200):  # one request a tick for 22 s, each a change (raw: the harness keeps no note)
        h.send_raw(frame.encode_frame({"id": 5000 + i, "op": "set_amp", "ch": 0, "amp_ua": 1000 + (i % 2) * 500}))
        h.tick(1)
        if i % 100 == 99:
            h.forget()
    h.ok("set_amp", {"ch": 0, "amp_ua": 1200})  # where the patient settled
    h.ok("stop")
    h.tick(300)
    info = h.ok("log_info")
    assert info["first_seq"] == first["first_seq"] == 1, (first, info)
    records = _records_from(h, first["last_seq"] + 1, info["last_seq"])
    amps = [r for r in records if r["ev"] == "amp"]
    assert 0 < len(amps) <= 22 // CHANGE_RECORD_EVERY_S + 3, len(amps)
    assert amps[-1]["target_ua"] == 1200 and amps[-1]["ch"] == 0
    assert records[-1]["ev"] == "stop" and records.index(amps[-1]) < len(records) - 1


def test_a_flood_of_heat_requests_cannot_rotate_earlier_sessions_out_of_the_log():
    from firmware.recorder import CHANGE_RECORD_EVERY_S

    h = Harness()
    h.ok("pain", {"score": 5, "when": "before"})
    h.ok("start", {"amp_ua": [0], "lease_ms": 0})
    before = h.ok("log_info")
    for i in range(2200):  # heat on and off, one request a tick for 22 s
        fields = {"level": "low"} if i % 2 else {"off": True}
        fields.update({"id": 9000 + i, "op": "heat"})
        h.send_raw(frame.encode_frame(fields))
        h.tick(1)
        if i % 100 == 99:
            h.forget()
    h.ok("heat", {"level": "medium"})  # where it ended
    h.ok("stop")
    h.tick(300)
    info = h.ok("log_info")
    assert info["first_seq"] == 1, info
    records = _records_from(h, before["last_seq"] + 1, info["last_seq"])
    heats = [r for r in records if r["ev"] == "heat"]
    assert 0 < len(heats) <= 22 // CHANGE_RECORD_EVERY_S + 3, len(heats)
    assert heats[-1]["target_mc"] == 40000 and records[-1]["ev"] == "stop"
