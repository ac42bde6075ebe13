"""Settings: defaults for new sessions and a lower heat cap, checked against their hard limits,
all or nothing, kept across a reboot, and a power cut during a write loses at most that write."""

from firmware.protocols import frame
from firmware.protocols import messages as msg
from firmware.settings import STORE_NAME, Settings
from sim.board import SimStorage
from tests.fw.harness import Harness
from tests.fw.portable import raises


def settings_reply(h, changes=None):
    fields = {} if changes is None else {"set": changes}
    return h.request("settings", fields)


def test_defaults_and_limits_are_reported():
    reply = Harness().ok("settings")
    assert reply["settings"] == {
        "heat_max_target_mc": 43000, "heat_minutes_default": 30, "interlock_default": "concurrent",
        "lease_default_ms": 3000, "ramp_default_ms": 5000, "session_default_ms": 1800000,
    }
    assert reply["limits"]["heat_max_target_mc"] == [30000, 43000]
    assert reply["limits"]["interlock_default"] == ["concurrent", "alternate"]


def test_new_defaults_apply_to_the_next_session():
    h = Harness()
    h.ok("settings", {"set": {"session_default_ms": 600000, "lease_default_ms": 0, "interlock_default": "alternate",
                              "heat_minutes_default": 12}})
    h.ok("start", {"amp_ua": [0]})
    status = h.ok("status")
    assert status["lease_ms"] == 0 and status["interlock"] == "alternate"
    assert 590000 < status["session_left_ms"] <= 600000
    assert h.ok("heat", {"level": "low"})["time_left_ms"] == 12 * 60000


def test_refusals_name_the_setting_and_the_limit_and_change_nothing():
    h = Harness()
    before = h.ok("settings")["settings"]
    cases = (
        ({"heat_max_target_mc": 43001}, msg.E_OUT_OF_RANGE, ("heat_max_target_mc", "43001", "43000")),
        ({"ramp_default_ms": 999}, msg.E_OUT_OF_RANGE, ("ramp_default_ms", "999", "1000")),
        ({"lease_default_ms": 100}, msg.E_OUT_OF_RANGE, ("lease_default_ms", "500")),
        ({"interlock_default": "sometimes"}, msg.E_BAD_FIELD, ("sometimes", "concurrent", "alternate")),
        ({"session_default_ms": 600000, "colour": 3}, msg.E_BAD_FIELD, ("colour", "session_default_ms")),
        ({}, msg.E_BAD_FIELD, ("set must be an object",)),
        ([1], msg.E_BAD_FIELD, ("set must be an object",)),
    )
    for changes, code, words in cases:
        reply = settings_reply(h, changes)
        assert reply["ok"] is False and reply["err"] == code, (changes, reply)
        for word in words:
            assert word in reply["msg"], (word, reply)
    assert h.ok("settings")["settings"] == before  # the valid part of a refused change did not apply


def test_a_lease_below_its_minimum_says_that_0_turns_it_off():
    h = Harness()
    reply = settings_reply(h, {"lease_default_ms": 200})
    assert reply["err"] == msg.E_OUT_OF_RANGE and reply["msg"].endswith("below the minimum 500 (or 0: no lease)"), reply
    assert settings_reply(h, {"lease_default_ms": 0})["settings"]["lease_default_ms"] == 0


def test_a_lower_heat_cap_refuses_higher_targets_and_lowers_a_running_one():
    h = Harness()
    h.ok("start", {"amp_ua": [0], "lease_ms": 0})
    h.ok("heat", {"level": "high"})
    h.ok("settings", {"set": {"heat_max_target_mc": 41000}})
    assert h.ok("status")["heat"]["target_mc"] == 41000
    reply = h.request("heat", {"target_mc": 41500})
    assert reply["ok"] is False and "41000" in reply["msg"], reply
    reply = h.request("heat", {"level": "high"})
    assert reply["ok"] is False and "41000" in reply["msg"], reply


def test_settings_survive_a_reboot():
    h = Harness()
    h.ok("settings", {"set": {"ramp_default_ms": 2000}})
    h.ok("settings", {"set": {"ramp_default_ms": 3000, "heat_max_target_mc": 40000}})
    again = Settings(h.board.storage)
    assert again.get("ramp_default_ms") == 3000 and again.get("heat_max_target_mc") == 40000
    assert again.skipped_records == 0
    rebooted = h.board.build_device()
    assert rebooted.heat.config.max_target_mc == 40000


def test_a_power_cut_at_any_byte_of_a_write_loses_at_most_that_write():
    storage = SimStorage()
    settings = Settings(storage)
    settings.change({"ramp_default_ms": 2000})
    settings.change({"session_default_ms": 900000})
    whole = bytes(storage.files[STORE_NAME])
    settings.change({"ramp_default_ms": 7000})
    full = len(storage.files[STORE_NAME])
    for size in range(len(whole), full):  # the third record cut after every byte
        cut = SimStorage()
        cut.append(STORE_NAME, bytes(storage.files[STORE_NAME][:size]))
        loaded = Settings(cut)
        assert loaded.get("ramp_default_ms") == 2000 and loaded.get("session_default_ms") == 900000, size
    assert Settings(storage).get("ramp_default_ms") == 7000


def test_a_damaged_record_is_skipped_not_half_applied():
    storage = SimStorage()
    Settings(storage).change({"ramp_default_ms": 2000})
    storage.append(STORE_NAME, b'@{"name":"ramp_default_ms","value":9000}*0000\n')  # bad CRC
    storage.append(STORE_NAME, b"garbage\n")
    loaded = Settings(storage)
    assert loaded.get("ramp_default_ms") == 2000 and loaded.skipped_records >= 1


def test_an_out_of_limit_record_on_flash_is_ignored():
    from firmware.protocols import frame

    storage = SimStorage()
    storage.append(STORE_NAME, frame.encode_frame({"name": "heat_max_target_mc", "value": 50000}))
    loaded = Settings(storage)
    assert loaded.get("heat_max_target_mc") == 43000 and loaded.skipped_records == 1
    assert raises(msg.RequestError, loaded.change, {"heat_max_target_mc": 50000}).code == msg.E_OUT_OF_RANGE


# ---- a failing or cut write is all or nothing; a failing flash never stops a session --------------


class _Flaky(SimStorage):
    """Appends fail (OSError) once `appends_left` reaches 0, after writing `partial` bytes;
    reads fail while `fail_read`."""

    def __init__(self):
        super().__init__()
        self.appends_left = -1
        self.partial = 0
        self.fail_read = False

    def append(self, name, data):
        if self.appends_left == 0:
            if self.partial:
                SimStorage.append(self, name, data[: self.partial])
            raise OSError(28, "ENOSPC")
        if self.appends_left > 0:
            self.appends_left -= 1
        return SimStorage.append(self, name, data)

    def read(self, name, offset, size):
        if self.fail_read:
            raise OSError(5, "EIO")
        return SimStorage.read(self, name, offset, size)


def _flaky_harness():
    h = Harness()
    h.board.storage = _Flaky()
    h.device = h.board.build_device()
    h.board.pulse_out.recorder = h._record
    return h


def test_a_failing_flash_refuses_the_change_with_storage_and_the_session_runs_on():
    h = _flaky_harness()
    h.ok("start", {"amp_ua": [8000, 0], "lease_ms": 0})
    h.tick(200)
    before = h.ok("settings")["settings"]
    for partial in (0, 5, 30):
        h.board.storage.appends_left = 0
        h.board.storage.partial = partial
        reply = h.request("settings", {"set": {"ramp_default_ms": 2000, "session_default_ms": 60000}})
        assert reply["ok"] is False and reply["err"] == msg.E_STORAGE, reply
        assert "not changed" in reply["msg"], reply
        assert h.state == "RUNNING" and h.faults == [], (h.state, h.faults)
        assert h.device.settings.to_dict() == before
    h.tick(5)
    assert h.state == "RUNNING" and h.amps()[0] > 0
    h.board.storage.appends_left = -1
    assert Settings(h.board.storage).to_dict() == before  # nothing of it on the flash either


def test_one_change_is_one_record_so_a_cut_keeps_all_of_it_or_none():
    storage = SimStorage()
    Settings(storage).change({"ramp_default_ms": 2000})
    start = storage.size(STORE_NAME)
    Settings(storage).change({"heat_max_target_mc": 38000, "session_default_ms": 600000, "ramp_default_ms": 3000})
    whole = bytes(storage.files[STORE_NAME])
    assert whole[start:].count(b"\n") == 1  # one record
    old = {"heat_max_target_mc": 43000, "session_default_ms": 1800000, "ramp_default_ms": 2000}
    new = {"heat_max_target_mc": 38000, "session_default_ms": 600000, "ramp_default_ms": 3000}
    for size in range(start, len(whole) + 1):
        cut = SimStorage()
        cut.append(STORE_NAME, whole[:size])
        loaded = Settings(cut)
        got = {}
        for name in old:
            got[name] = loaded.get(name)
        assert got == (new if size == len(whole) else old), (size, got)


def test_a_fragment_of_a_failed_write_never_becomes_a_record():
    storage = _Flaky()
    settings = Settings(storage)
    record = frame.encode_frame({"set": {"ramp_default_ms": 2000}})
    storage.appends_left = 0
    storage.partial = len(record) - 1  # all but the newline lands, then the error
    assert raises(msg.RequestError, settings.change, {"ramp_default_ms": 2000}).code == msg.E_STORAGE
    assert settings.get("ramp_default_ms") == 5000
    storage.appends_left = -1
    settings.change({"session_default_ms": 600000})  # the next write must not mend the fragment into a record
    assert settings.get("ramp_default_ms") == 5000 and settings.get("session_default_ms") == 600000
    loaded = Settings(storage)
    assert loaded.get("ramp_default_ms") == 5000 and loaded.get("session_default_ms") == 600000
    assert loaded.skipped_records == 1


def test_after_a_failed_write_the_settings_in_use_are_the_settings_the_next_boot_loads():
    """A driver may fail after writing any part of the record, all of it included: a record
    that landed whole counts (the next boot applies it), anything less changes nothing."""
    changes = {"ramp_default_ms": 2000, "session_default_ms": 600000}
    record = frame.encode_frame({"set": changes})
    for partial in range(len(record) + 1):
        storage = _Flaky()
        settings = Settings(storage)
        before = settings.to_dict()
        storage.appends_left = 0
        storage.partial = partial
        try:
            settings.change(changes)
            refused = None
        except msg.RequestError as err:
            refused = err.code
        storage.appends_left = -1
        assert Settings(storage).to_dict() == settings.to_dict(), partial
        if partial == len(record):
            assert refused is None and settings.get("ramp_default_ms") == 2000, partial
        else:
            assert refused == msg.E_STORAGE and settings.to_dict() == before, partial


def test_a_torn_tail_found_at_boot_is_ended_before_the_next_record():
    storage = SimStorage()
    Settings(storage).change({"ramp_default_ms": 2000})
    record = frame.encode_frame({"set": {"ramp_default_ms": 9000}})
    storage.append(STORE_NAME, record[:-1])  # a cut just before the newline
    settings = Settings(storage)
    assert settings.get("ramp_default_ms") == 2000
    for _ in range(6):  # more changes than frame starts a glued line could hold
        settings.change({"heat_minutes_default": 12})
    loaded = Settings(storage)
    assert loaded.get("ramp_default_ms") == 2000 and loaded.get("heat_minutes_default") == 12


def test_earlier_per_name_records_are_still_read():
    storage = SimStorage()
    storage.append(STORE_NAME, frame.encode_frame({"name": "ramp_default_ms", "value": 2000}))
    storage.append(STORE_NAME, frame.encode_frame({"name": "interlock_default", "value": "alternate"}))
    settings = Settings(storage)
    settings.change({"ramp_default_ms": 4000})
    loaded = Settings(storage)
    assert loaded.get("ramp_default_ms") == 4000 and loaded.get("interlock_default") == "alternate"
    assert loaded.skipped_records == 0


def test_a_record_with_one_out_of_limit_value_is_skipped_whole():
    storage = SimStorage()
    storage.append(STORE_NAME, frame.encode_frame({"set": {"ramp_default_ms": 2000, "heat_max_target_mc": 50000}}))
    loaded = Settings(storage)
    assert loaded.get("ramp_default_ms") == 5000 and loaded.get("heat_max_target_mc") == 43000
    assert loaded.skipped_records == 1


def test_a_flash_unreadable_at_boot_gives_the_defaults_and_refuses_changes():
    storage = _Flaky()
    storage.append(STORE_NAME, frame.encode_frame({"set": {"ramp_default_ms": 2000}}))
    storage.fail_read = True
    h = Harness()
    h.board.storage = storage
    h.device = h.board.build_device()  # boots (the board would otherwise reset forever)
    h.board.pulse_out.recorder = h._record
    assert h.device.settings.get("ramp_default_ms") == 5000
    reply = h.request("settings", {"set": {"ramp_default_ms": 3000}})
    assert reply["ok"] is False and reply["err"] == msg.E_STORAGE, reply
    assert h.ok("settings")["settings"]["ramp_default_ms"] == 5000
