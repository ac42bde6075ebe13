"""The clinician lock: open without a PIN; with one, protected requests need it; guessing is
rate limited (3 free tries, then waits doubling from 1 s to 15 min) across reboots and the
2^30 ms tick wrap; the PIN never appears in a message or on flash."""

import binascii
import hashlib

from firmware import lock as lk
from firmware.lock import STORE_NAME, ClinicianLock
from firmware.protocols import frame
from firmware.protocols import messages as msg
from sim.board import SimStorage
from tests.fw.portable import raises

TICKS_MASK = (1 << 30) - 1
NEAR_WRAP = (1 << 30) - 1000


class FakeClock:
    def __init__(self, start=0):
        self.now = start & TICKS_MASK

    def ticks_ms(self):
        return self.now

    def advance(self, ms):
        self.now = (self.now + ms) & TICKS_MASK


class FakeRandom:
    """Deterministic bytes, different on every call."""

    def __init__(self, seed=7):
        self.state = seed

    def __call__(self, n):
        out = bytearray(n)
        for i in range(n):
            self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
            out[i] = (self.state >> 16) & 0xFF
        return bytes(out)


class FailingStorage(SimStorage):
    """A flash that can be made to refuse writes (raise) or to write only part of them."""

    def __init__(self):
        SimStorage.__init__(self)
        self.mode = None  # None, "raise", "short" or "whole_then_raise"

    def append(self, name, data):
        if self.mode == "raise":
            raise OSError(28)
        if self.mode == "whole_then_raise":  # all of it landed, then the driver reported an error
            SimStorage.append(self, name, data)
            raise OSError(5)
        if self.mode == "short":
            return SimStorage.append(self, name, data[: len(data) // 2])
        return SimStorage.append(self, name, data)


def make(storage=None, start=0):
    storage = SimStorage() if storage is None else storage
    clock = FakeClock(start)
    return ClinicianLock(storage, clock, FakeRandom()), storage, clock


def stored(storage):
    return bytes(storage.files.get(STORE_NAME, b""))


def records(storage):
    out = []
    for line in stored(storage).split(b"\n"):
        if line:
            out.append(frame.decode_line(line))
    return out


def code_of(fn, *args):
    return raises(msg.RequestError, fn, *args).code


def test_open_device_accepts_everything():
    lock, storage, _ = make()
    assert not lock.has_pin
    for pin in (None, "1234", "wrong", 1234, ""):
        assert lock.check(pin) is None
    assert lock.status() == {"pin_set": False, "failures": 0, "wait_s": 0}
    lock.remove_pin(None)  # nothing to remove: no error, nothing written
    assert stored(storage) == b""


def test_set_then_check_right_wrong_missing():
    lock, storage, _ = make()
    lock.set_pin("2468")
    assert lock.has_pin and lock.status()["pin_set"] is True
    assert lock.check("2468") is None
    err = raises(msg.RequestError, lock.check, "2469")
    assert err.code == msg.E_BAD_PIN and "2 tries before a wait" in err.message, err.message
    assert "2469" not in err.message and "2468" not in err.message
    err = raises(msg.RequestError, lock.check, None)
    assert err.code == msg.E_LOCKED and "clinician PIN required" in err.message and "patient mode" in err.message
    assert lock.status()["failures"] == 1  # a missing PIN is not a try
    assert code_of(lock.check, "24680") == msg.E_BAD_PIN  # a longer PIN starting alike is not the PIN
    assert code_of(lock.check, "246") == msg.E_BAD_FIELD
    assert lock.check("2468") is None
    assert ClinicianLock(storage, FakeClock(), FakeRandom(99)).check("2468") is None  # the same after a reboot


def test_pin_format_errors_never_contain_the_pin():
    bad = ["123", "123456789", "12a4", "12 34", "-1234", "1234\n", "\uff11\uff12\uff13\uff14", 1234, 12345678,
           ["1", "2", "3", "4"], None, ""]
    lock, storage, _ = make()
    lock.set_pin("5555")
    for pin in bad:
        if pin is not None:  # None to check() is "missing", not a format error
            err = raises(msg.RequestError, lock.check, pin)
            assert err.code == msg.E_BAD_FIELD, (pin, err.code)
            assert "4 to 8 digits" in err.message
            shown = "%s" % (pin,)
            assert shown == "" or shown not in err.message, err.message
        for args in ((pin, "5555"), ("7777", pin) if pin is not None else ("77", "5555")):
            err = raises(msg.RequestError, lock.set_pin, *args)
            assert err.code == msg.E_BAD_FIELD, (args, err.code)
            assert "4 to 8 digits" in err.message
            for value in args:
                shown = "%s" % (value,)
                assert shown == "" or shown not in err.message, err.message
    assert lock.status()["failures"] == 0  # format errors are not tries
    assert lock.check("5555") is None  # and the PIN did not change
    assert len(records(storage)) == 1


def test_stored_record_holds_no_pin_and_salts_differ():
    lock, storage, _ = make()
    lock.set_pin("31415926")
    lock.set_pin("31415926", "31415926")
    data = stored(storage)
    assert b"31415926" not in data
    first, second = records(storage)
    for rec in (first, second):
        assert sorted(rec) == ["hash", "iter", "salt"]
        assert len(rec["salt"]) == 32 and len(rec["hash"]) == 64 and rec["iter"] == lk.HASH_ITERATIONS
        # the construction the spec states, computed apart: h0 = sha256(salt+pin), h' = sha256(h+salt)
        salt = binascii.unhexlify(rec["salt"])
        h = hashlib.sha256(salt + b"31415926").digest()
        for _ in range(rec["iter"]):
            h = hashlib.sha256(h + salt).digest()
        assert binascii.hexlify(h).decode() == rec["hash"]
    assert first["salt"] != second["salt"] and first["hash"] != second["hash"]


def test_a_record_with_its_own_iteration_count_still_verifies():
    storage = SimStorage()
    salt = bytes(range(16))
    h = hashlib.sha256(salt + b"0000").digest()
    for _ in range(7):
        h = hashlib.sha256(h + salt).digest()
    storage.append(STORE_NAME, frame.encode_frame(
        {"salt": binascii.hexlify(salt).decode(), "hash": binascii.hexlify(h).decode(), "iter": 7}))
    lock, _, _ = make(storage)
    assert lock.check("0000") is None
    assert code_of(lock.check, "0001") == msg.E_BAD_PIN


def _wrong_until_wait(lock, clock, wrong):
    """Three free wrong PINs: each refused as wrong, none sets a wait."""
    for n in (1, 2, 3):
        err = raises(msg.RequestError, lock.check, wrong)
        left = ("2 tries", "1 try", "0 tries")[n - 1]
        assert err.code == msg.E_BAD_PIN and (left + " before a wait") in err.message, err.message
        assert lock.status() == {"pin_set": True, "failures": n, "wait_s": 0}


def test_rate_limit_three_free_then_doubling_waits_capped_across_the_tick_wrap():
    lock, _, clock = make(start=NEAR_WRAP)
    lock.set_pin("8080")
    _wrong_until_wait(lock, clock, "0808")
    expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
    wrapped = False
    for i, wait_s in enumerate(expected):
        err = raises(msg.RequestError, lock.check, "0808")
        assert err.code == msg.E_BAD_PIN and ("wait %d s" % wait_s) in err.message, (wait_s, err.message)
        assert lock.status() == {"pin_set": True, "failures": 4 + i, "wait_s": wait_s}
        err = raises(msg.RequestError, lock.check, "8080")  # the right PIN is refused during a wait
        assert err.code == msg.E_TRY_LATER and ("try again in %d s" % wait_s) in err.message, err.message
        assert "8080" not in err.message
        assert code_of(lock.check, None) == msg.E_TRY_LATER
        clock.advance(wait_s * 1000 - 1)
        wrapped = wrapped or clock.now < NEAR_WRAP
        assert lock.status()["wait_s"] == 1
        assert code_of(lock.check, "8080") == msg.E_TRY_LATER
        clock.advance(1)
        assert lock.status()["wait_s"] == 0
    assert wrapped  # the waits ran across the 2^30 ms wrap of the tick counter
    assert lock.failures == 3 + len(expected)
    assert lock.check("8080") is None  # accepted once the wait is over
    assert lock.status() == {"pin_set": True, "failures": 0, "wait_s": 0}


def test_a_wait_that_starts_just_before_the_wrap_ends_on_time():
    lock, _, clock = make(start=NEAR_WRAP)
    lock.set_pin("1357")
    _wrong_until_wait(lock, clock, "7531")
    raises(msg.RequestError, lock.check, "7531")  # 1 s
    clock.advance(1000)
    raises(msg.RequestError, lock.check, "7531")  # 2 s, from NEAR_WRAP + 1000 = 24 ms before the wrap
    clock.advance(500)
    assert clock.now < 1000 and lock.status()["wait_s"] == 2  # past the wrap, 1.5 s left
    assert code_of(lock.check, "1357") == msg.E_TRY_LATER
    clock.advance(1500)
    assert lock.check("1357") is None


def test_a_wait_not_looked_at_for_days_is_over_not_back():
    lock, _, clock = make(start=NEAR_WRAP)
    lock.set_pin("1357")
    _wrong_until_wait(lock, clock, "7531")
    raises(msg.RequestError, lock.check, "7531")  # a 1 s wait
    clock.advance((1 << 29) + 5000)  # 6.2 days later ticks_diff turns negative: it still is over
    assert lock.status()["wait_s"] == 0
    assert lock.check("1357") is None


def test_the_wait_table():
    assert [lk.wait_ms_for(n) for n in range(0, 8)] == [0, 0, 0, 0, 1000, 2000, 4000, 8000]
    assert lk.wait_ms_for(13) == 512000 and lk.wait_ms_for(14) == 900000
    assert lk.wait_ms_for(99) == 900000 and lk.wait_ms_for(10 ** 6) == 900000


def test_failure_count_survives_a_reboot_and_the_wait_restarts_from_boot():
    lock, storage, clock = make()
    lock.set_pin("4321")
    _wrong_until_wait(lock, clock, "1111")
    raises(msg.RequestError, lock.check, "1111")  # failures 4: a 1 s wait
    assert code_of(lock.check, "1111") == msg.E_TRY_LATER  # not a try: not counted
    clock.advance(1000)
    assert code_of(lock.check, "1111") == msg.E_BAD_PIN  # failures 5: a 2 s wait
    clock.advance(10 ** 6)  # long over before the reboot: the device cannot know that
    again, _, clock2 = make(storage, start=123456)
    assert again.status() == {"pin_set": True, "failures": 5, "wait_s": 2}
    assert code_of(again.check, "4321") == msg.E_TRY_LATER
    clock2.advance(2000)
    assert again.check("4321") is None
    assert make(storage)[0].status() == {"pin_set": True, "failures": 0, "wait_s": 0}


def test_up_to_three_failures_on_flash_set_no_wait_at_boot():
    lock, storage, clock = make()
    lock.set_pin("4321")
    _wrong_until_wait(lock, clock, "1111")
    again, _, _ = make(storage)
    assert again.status() == {"pin_set": True, "failures": 3, "wait_s": 0}
    err = raises(msg.RequestError, again.check, "1111")
    assert err.code == msg.E_BAD_PIN and "wait 1 s" in err.message


def test_right_pin_resets_failures_and_failures_are_written_only_when_they_change():
    lock, storage, clock = make()
    lock.set_pin("9876")
    size = len(stored(storage))
    assert lock.check("9876") is None
    assert len(stored(storage)) == size  # a right PIN with no failures writes nothing
    raises(msg.RequestError, lock.check, "6789")
    raises(msg.RequestError, lock.check, "6789")
    assert records(storage)[-1] == {"failures": 2}
    assert lock.check("9876") is None
    assert records(storage)[-1] == {"failures": 0} and lock.failures == 0
    _wrong_until_wait(lock, clock, "6789")  # three free tries again
    assert make(storage)[0].failures == 3


def test_the_failure_count_stops_at_its_maximum():
    storage = SimStorage()
    make(storage)[0].set_pin("2020")
    storage.append(STORE_NAME, frame.encode_frame({"failures": lk.FAILURES_MAX}))
    lock, _, clock = make(storage)
    assert lock.status() == {"pin_set": True, "failures": lk.FAILURES_MAX, "wait_s": lk.WAIT_MAX_S}
    clock.advance(lk.WAIT_MAX_S * 1000)
    size = len(stored(storage))
    err = raises(msg.RequestError, lock.check, "0202")
    assert err.code == msg.E_BAD_PIN and ("wait %d s" % lk.WAIT_MAX_S) in err.message
    assert lock.failures == lk.FAILURES_MAX and len(stored(storage)) == size


def test_change_pin_requires_the_old_one():
    lock, storage, _ = make()
    lock.set_pin("1111")
    count = len(records(storage))
    assert code_of(lock.set_pin, "2222") == msg.E_LOCKED
    assert code_of(lock.set_pin, "2222", "1112") == msg.E_BAD_PIN
    assert lock.failures == 1  # a wrong old PIN is a counted try
    assert lock.check("1111") is None and lock.failures == 0
    assert len([r for r in records(storage) if "salt" in r]) == count
    lock.set_pin("2222", "1111")
    assert code_of(lock.check, "1111") == msg.E_BAD_PIN
    assert lock.check("2222") is None
    again, _, _ = make(storage)
    assert again.check("2222") is None and code_of(again.check, "1111") == msg.E_BAD_PIN


def test_changing_the_pin_is_rate_limited_too():
    lock, _, clock = make()
    lock.set_pin("1111")
    _wrong_until_wait(lock, clock, "0000")
    raises(msg.RequestError, lock.check, "0000")  # a 1 s wait
    assert code_of(lock.set_pin, "2222", "1111") == msg.E_TRY_LATER
    assert code_of(lock.remove_pin, "1111") == msg.E_TRY_LATER
    clock.advance(1000)
    lock.set_pin("2222", "1111")
    assert lock.check("2222") is None


def test_remove_pin():
    lock, storage, _ = make()
    lock.set_pin("3333")
    assert code_of(lock.remove_pin, None) == msg.E_LOCKED
    assert code_of(lock.remove_pin, "3334") == msg.E_BAD_PIN
    assert lock.has_pin
    lock.remove_pin("3333")
    assert not lock.has_pin and lock.check(None) is None
    assert records(storage)[-1] == {"salt": None, "hash": None}
    again, _, _ = make(storage)
    assert not again.has_pin and again.check(None) is None
    again.set_pin("4444")  # setting a PIN on an open device needs no current one
    assert code_of(again.check, "3333") == msg.E_BAD_PIN


def test_damaged_records_are_skipped():
    lock, storage, _ = make()
    lock.set_pin("1212")
    good = stored(storage)
    lock.set_pin("3434", "1212")
    data = bytearray(stored(storage))
    at = len(good) + data[len(good):].index(b'"hash":"') + 9
    data[at] = ord("0") if data[at] != ord("0") else ord("1")  # one hex digit of the second hash
    storage.files[STORE_NAME] = data
    storage.append(STORE_NAME, b"garbage\n@{not json}*0000\n")
    storage.append(STORE_NAME, frame.encode_frame({"salt": "00" * 16, "hash": "11" * 32, "iter": 0}))
    storage.append(STORE_NAME, frame.encode_frame({"salt": "00" * 16, "hash": "11" * 32, "iter": 10 ** 9}))
    storage.append(STORE_NAME, frame.encode_frame({"salt": "00" * 15, "hash": "11" * 32, "iter": 5}))
    storage.append(STORE_NAME, frame.encode_frame({"salt": "zz" * 16, "hash": "11" * 32, "iter": 5}))
    storage.append(STORE_NAME, frame.encode_frame({"salt": "00" * 16, "iter": 5}))
    storage.append(STORE_NAME, frame.encode_frame({"failures": -1}))
    storage.append(STORE_NAME, frame.encode_frame({"failures": "2"}))
    storage.append(STORE_NAME, frame.encode_frame({"colour": 3}))
    loaded, _, _ = make(storage)
    assert loaded.skipped_records == 11, loaded.skipped_records
    assert loaded.failures == 0
    assert loaded.check("1212") is None  # the last good PIN record wins
    assert code_of(loaded.check, "3434") == msg.E_BAD_PIN


def _pin_record(pin, iterations, salt=None):
    salt = bytes(range(16)) if salt is None else salt
    h = hashlib.sha256(salt + pin.encode()).digest()
    for _ in range(iterations):
        h = hashlib.sha256(h + salt).digest()
    return frame.encode_frame({"salt": binascii.hexlify(salt).decode(), "hash": binascii.hexlify(h).decode(),
                               "iter": iterations})


def test_a_stored_iteration_count_keeps_one_check_well_under_the_watchdog():
    # at the file's own estimate (10k-20k sha256 blocks/s on the RP2040) 4x HASH_ITERATIONS is
    # 100-200 ms: within the 1 s watchdog with room for the rest of the tick
    assert lk.HASH_ITERATIONS < lk.ITER_MAX <= 4 * lk.HASH_ITERATIONS
    assert (lk.ITER_MAX + 1) * 1000 // 10000 <= 250  # ms at the slow end of the estimate


def test_a_record_at_the_iteration_bound_is_accepted_and_one_above_it_is_damage():
    storage = SimStorage()
    storage.append(STORE_NAME, _pin_record("2580", lk.ITER_MAX))
    lock, _, _ = make(storage)
    assert lock.skipped_records == 0 and lock.broken is None
    assert lock.check("2580") is None and code_of(lock.check, "0852") == msg.E_BAD_PIN
    older = SimStorage()
    older.append(STORE_NAME, _pin_record("1470", 3))
    older.append(STORE_NAME, _pin_record("2580", lk.ITER_MAX + 1))
    lock, _, _ = make(older)
    assert lock.skipped_records == 1  # damage: the older PIN stays, the device stays locked
    assert lock.check("1470") is None and code_of(lock.check, "2580") == msg.E_BAD_PIN


def test_a_damaged_pin_record_that_would_leave_the_device_open_fails_closed():
    """A PIN record that decodes but cannot be used (a count above ITER_MAX, a short salt, a
    hash that is not hex) says a PIN was set; which one is unknown. With no older PIN to fall
    back on, the device must not come up open: it fails closed like an unreadable lock.log."""
    damaged = (
        _pin_record("2580", lk.ITER_MAX + 1),
        frame.encode_frame({"salt": "00" * 15, "hash": "11" * 32, "iter": 5}),
        frame.encode_frame({"salt": "00" * 16, "hash": "zz" * 32, "iter": 5}),
        frame.encode_frame({"salt": "00" * 16, "iter": 5}),
    )
    for record in damaged:
        for before in (b"", _pin_record("1111", 3) + frame.encode_frame({"salt": None, "hash": None})):
            storage = SimStorage()
            storage.append(STORE_NAME, before + record)
            lock, _, _ = make(storage)
            assert lock.has_pin and lock.broken is not None, (record, before)
            assert lock.status()["pin_set"] is True
            for pin in (None, "2580", "1111"):
                assert code_of(lock.check, pin) == msg.E_STORAGE
            err = raises(msg.RequestError, lock.check, None)
            assert "2580" not in err.message and "damaged" in err.message, err.message
            assert code_of(lock.set_pin, "1357") == msg.E_STORAGE
            assert code_of(lock.remove_pin, "1111") == msg.E_STORAGE
    # a good PIN record after the damaged one settles it: the newest good record wins
    storage = SimStorage()
    storage.append(STORE_NAME, damaged[0] + _pin_record("3690", 3))
    lock, _, _ = make(storage)
    assert lock.broken is None and lock.check("3690") is None
    storage = SimStorage()
    storage.append(STORE_NAME, damaged[0] + frame.encode_frame({"salt": None, "hash": None}))
    lock, _, _ = make(storage)
    assert lock.broken is None and not lock.has_pin  # removed after it: open, as asked


def test_a_power_cut_at_any_byte_of_a_write_loses_at_most_that_write():
    lock, storage, _ = make()
    lock.set_pin("5656")
    whole = stored(storage)
    lock.remove_pin("5656")
    full = stored(storage)
    for size in range(len(whole), len(full)):
        cut = SimStorage()
        cut.append(STORE_NAME, full[:size])
        loaded, _, _ = make(cut)
        assert loaded.has_pin, size  # a half-written removal leaves the device locked
    assert not make(storage)[0].has_pin


def test_storage_failure_leaves_state_unchanged():
    storage = FailingStorage()
    lock, _, _ = make(storage)
    storage.mode = "raise"
    err = raises(msg.RequestError, lock.set_pin, "6060")
    assert err.code == msg.E_STORAGE and len(err.message) <= 80 and "6060" not in err.message, err.message
    assert not lock.has_pin and lock.check(None) is None
    storage.mode = None
    lock.set_pin("6060")
    for mode in ("raise", "short"):
        storage.mode = mode
        assert code_of(lock.set_pin, "7070", "6060") == msg.E_STORAGE
        assert lock.check("6060") is None and code_of(lock.check, "7070") == msg.E_BAD_PIN
        assert lock.check("6060") is None
        assert code_of(lock.remove_pin, "6060") == msg.E_STORAGE
        assert lock.has_pin and code_of(lock.check, None) == msg.E_LOCKED
    storage.mode = None
    assert make(storage)[0].check("6060") is None


def test_a_write_that_landed_whole_before_its_driver_failed_counts_now_as_at_the_next_boot():
    storage = FailingStorage()
    lock, _, _ = make(storage)
    storage.mode = "whole_then_raise"
    assert lock.set_pin("6060") is None  # on the flash: the next boot would be locked with it
    assert lock.has_pin and code_of(lock.check, None) == msg.E_LOCKED
    storage.mode = None
    rebooted, _, _ = make(storage)
    assert rebooted.check("6060") is None and code_of(rebooted.check, "7070") == msg.E_BAD_PIN
    storage.mode = "whole_then_raise"
    assert lock.remove_pin("6060") is None
    assert not lock.has_pin and not make(storage)[0].has_pin


def test_wrong_pins_count_even_when_the_store_fails():
    storage = FailingStorage()
    lock, _, clock = make(storage)
    lock.set_pin("6060")
    storage.mode = "raise"
    _wrong_until_wait(lock, clock, "0606")  # a failing flash must not switch the rate limit off
    err = raises(msg.RequestError, lock.check, "0606")
    assert err.code == msg.E_BAD_PIN and "wait 1 s" in err.message
    assert lock.store_errors == 4
    clock.advance(1000)
    assert lock.check("6060") is None and lock.failures == 0  # the clinician is not shut out


def test_status_holds_no_pin_data():
    lock, _, _ = make()
    lock.set_pin("8642")
    status = lock.status()
    assert sorted(status) == ["failures", "pin_set", "wait_s"]
    assert "8642" not in ("%s" % (status,))


class UnreadableStorage(SimStorage):
    """A flash whose reads fail (EIO)."""

    def read(self, name, offset, size):
        raise OSError(5, "EIO")


def test_a_lock_log_unreadable_at_boot_fails_closed():
    for with_pin in (False, True):
        storage = UnreadableStorage()
        if with_pin:
            source, _, _ = make()
            source.set_pin("2468")
            storage.files[STORE_NAME] = bytearray(stored(source.storage))
        before = stored(storage)
        lock, _, _ = make(storage)  # boots: no exception
        assert lock.has_pin and lock.broken is not None  # patient mode, never open
        assert lock.status()["pin_set"] is True
        for pin in (None, "2468", "1111"):
            assert code_of(lock.check, pin) == msg.E_STORAGE
        assert code_of(lock.set_pin, "1357") == msg.E_STORAGE
        assert code_of(lock.set_pin, "1357", "2468") == msg.E_STORAGE
        assert code_of(lock.remove_pin, "2468") == msg.E_STORAGE
        assert lock.failures == 0 and stored(storage) == before  # nothing written, nothing counted


def test_a_device_whose_flash_cannot_be_read_boots_locked():
    from tests.fw.harness import Harness

    h = Harness()
    h.board.storage = UnreadableStorage()
    h.device = h.board.build_device()  # Device() must not raise: on the board that is a boot loop
    h.board.pulse_out.recorder = h._record
    assert h.ok("programs")["patient_mode"] is True
    for op, fields in (
        ("start", {"amp_ua": [5000], "lease_ms": 0}),
        ("settings", {"set": {"ramp_default_ms": 2000}}),
        ("maintenance", {"on": True}),
        ("log_erase", {"pin": "2468"}),
        ("pin", {"new": "2468"}),
        ("start", {"program": "conventional", "lease_ms": 0}),
    ):
        reply = h.request(op, fields)
        assert reply["ok"] is False and reply["err"] in (msg.E_STORAGE, msg.E_LOCKED), (op, reply)
    assert h.state == "IDLE" and h.amps() == [0, 0]
    assert h.request("start", {"amp_ua": [5000], "lease_ms": 0})["err"] == msg.E_STORAGE


def test_a_confirmed_pin_survives_any_number_of_failed_or_cut_writes_before_it():
    """Each failed write ends its fragment before the next record, in this run or after a reboot:
    glued together, fragments would fill a line past the frame reader's tries and hide the record
    the host was told was stored (a locked device back open, or a replaced PIN back)."""
    storage = FailingStorage()
    lock, _, _ = make(storage)
    storage.mode = "short"
    for _ in range(6):
        assert code_of(lock.set_pin, "2468") == msg.E_STORAGE
    storage.mode = None
    lock.set_pin("2468")
    rebooted = make(storage)[0]
    assert rebooted.has_pin and rebooted.check("2468") is None
    for _ in range(6):  # a change that keeps failing, then one that is confirmed
        storage.mode = "short"
        assert code_of(rebooted.set_pin, "1357", "2468") == msg.E_STORAGE
    storage.mode = None
    rebooted.set_pin("1357", "2468")
    after = make(storage)[0]
    assert after.check("1357") is None and code_of(after.check, "2468") == msg.E_BAD_PIN
    # cut mid-write with a reboot after each, then a confirmed PIN
    storage = SimStorage()
    for _ in range(6):
        cut_lock = make(storage)[0]
        assert not cut_lock.has_pin  # no cut write ever counts
        before = storage.size(STORE_NAME)
        cut_lock.set_pin("9753")
        storage.cut(STORE_NAME, before + 30)
    make(storage)[0].set_pin("9753")
    assert make(storage)[0].check("9753") is None and make(storage)[0].has_pin
