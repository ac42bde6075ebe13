"""Uploaded programs on the flash: kept across reboots, bounded in count, size and flash, compacted
without ever holding a mix of two states, and a power cut at any byte of any write (compaction
and its file removal included) leaves the state before that operation or the state after it."""

from firmware import program_store as ps
from firmware.program_store import FILES, MAX_PROGRAMS, PROGRAM_MAX_BYTES, ProgramStore
from firmware.protocols import frame, jsonenc
from firmware.protocols import messages as msg
from sim.board import SimStorage
from tests.fw.portable import raises


def program(name, value=0, text=""):
    return {"name": name, "value": value, "text": text}


def contents(store):
    out = {}
    for name in store.names():
        out[name] = store.get(name)
    return out


def nonempty_files(storage):
    return [name for name in FILES if storage.size(name) > 0]


class RecordingStorage:
    """SimStorage that logs every write, so a test can rebuild the flash as it stood at any byte."""

    def __init__(self):
        self.sim = SimStorage()
        self.ops = []

    def append(self, name, data):
        self.ops.append(("append", name, bytes(data)))
        return self.sim.append(name, data)

    def read(self, name, offset, size):
        return self.sim.read(name, offset, size)

    def size(self, name):
        return self.sim.size(name)

    def remove(self, name):
        self.ops.append(("remove", name, None))
        self.sim.remove(name)


class FlakyStorage:
    """SimStorage whose appends, reads or removes fail on demand (an append may write a part first)."""

    def __init__(self):
        self.sim = SimStorage()
        self.appends_left = -1  # appends that still succeed; -1: all
        self.partial = 0  # bytes a failing append writes before it fails
        self.fail_read = False
        self.fail_remove = False

    def append(self, name, data):
        if self.appends_left == 0:
            if self.partial:
                self.sim.append(name, data[: self.partial])
            raise OSError(28, "ENOSPC")
        if self.appends_left > 0:
            self.appends_left -= 1
        return self.sim.append(name, data)

    def read(self, name, offset, size):
        if self.fail_read:
            raise OSError(5, "EIO")
        return self.sim.read(name, offset, size)

    def size(self, name):
        return self.sim.size(name)

    def remove(self, name):
        if self.fail_remove:
            raise OSError(5, "EIO")
        self.sim.remove(name)

    def heal(self):
        self.appends_left = -1
        self.partial = 0
        self.fail_read = False
        self.fail_remove = False


def test_put_get_names_replace_delete_round_trip():
    store = ProgramStore(SimStorage())
    assert store.names() == [] and store.info()["programs"] == 0
    assert store.put(program("knee", 1)) is False
    assert store.put(program("back", 2, "lower")) is False
    assert store.names() == ["back", "knee"]
    assert store.get("back") == program("back", 2, "lower")
    assert store.put(program("knee", 5)) is True  # a replacement
    assert store.get("knee") == program("knee", 5) and store.names() == ["back", "knee"]
    store.delete("knee")
    assert store.names() == ["back"]
    assert raises(msg.RequestError, store.get, "knee").code == msg.E_NOT_FOUND
    info = store.info()
    assert info["programs"] == 1 and info["max_programs"] == MAX_PROGRAMS
    assert 0 < info["bytes"] <= info["capacity_bytes"] == ps.LOG_MAX_BYTES


def test_a_reboot_sees_the_same_programs():
    storage = SimStorage()
    store = ProgramStore(storage)
    store.put(program("a", 1))
    store.put(program("b", 2))
    store.put(program("a", 3))
    store.put(program("c", 4))
    store.delete("b")
    again = ProgramStore(storage)
    assert contents(again) == {"a": program("a", 3), "c": program("c", 4)}
    assert again.skipped == 0 and again.info()["bytes"] == store.info()["bytes"]


def test_the_size_limit_is_the_encoded_json_and_is_named():
    store = ProgramStore(SimStorage())
    base = len(jsonenc.encode(program("big", 0, "")))
    exact = program("big", 0, "x" * (PROGRAM_MAX_BYTES - base))
    assert len(jsonenc.encode(exact)) == PROGRAM_MAX_BYTES
    store.put(exact)
    assert store.get("big") == exact  # the largest program is a record within one frame
    over = program("big", 1, "x" * (PROGRAM_MAX_BYTES - base + 1))
    err = raises(msg.RequestError, store.put, over)
    assert err.code == msg.E_BAD_FIELD
    assert "%d" % (PROGRAM_MAX_BYTES + 1) in err.message and "%d" % PROGRAM_MAX_BYTES in err.message, err.message
    assert store.names() == ["big"] and store.get("big") == exact
    assert raises(msg.RequestError, store.put, {"value": 1}).code == msg.E_BAD_FIELD  # no name
    assert raises(msg.RequestError, store.put, [1]).code == msg.E_BAD_FIELD


def test_the_count_limit_refuses_a_seventeenth_name_but_allows_replacing():
    storage = SimStorage()
    store = ProgramStore(storage)
    for i in range(MAX_PROGRAMS):
        store.put(program("p%02d" % i, i))
    err = raises(msg.RequestError, store.put, program("one-more"))
    assert err.code == msg.E_STORAGE
    assert err.message == "program store full: 16 programs; delete one first", err.message
    assert len(store.names()) == MAX_PROGRAMS and "one-more" not in store.names()
    store.put(program("p03", 99))  # replacing is fine when full
    store.delete("p00")
    store.put(program("one-more"))
    assert len(ProgramStore(storage).names()) == MAX_PROGRAMS


def test_not_found_names_the_program_clipped():
    store = ProgramStore(SimStorage())
    store.put(program("a"))
    for call in (store.get, store.delete):
        err = raises(msg.RequestError, call, "nope")
        assert err.code == msg.E_NOT_FOUND and "'nope'" in err.message, err.message
    err = raises(msg.RequestError, store.delete, "z" * 500)
    assert err.code == msg.E_NOT_FOUND and len(err.message) < 80, err.message
    assert raises(msg.RequestError, store.get, 7).code == msg.E_BAD_FIELD
    assert store.names() == ["a"]


def test_compaction_keeps_exactly_the_live_programs_and_bounds_the_flash():
    storage = SimStorage()
    limit = 3000
    store = ProgramStore(storage, log_max_bytes=limit)
    expected = {}
    gens = 0
    for cycle in range(30):
        for k in range(5):
            p = program("prog%d" % k, cycle, "t" * (60 + 10 * k))
            store.put(p)
            expected[p["name"]] = p
            assert storage.size(FILES[0]) + storage.size(FILES[1]) <= limit
        if cycle % 7 == 3:
            store.delete("prog%d" % (cycle % 5))
            del expected["prog%d" % (cycle % 5)]
        if store.gen != gens:
            gens = store.gen
            assert len(nonempty_files(storage)) == 1  # the old file went once the new one was complete
    assert store.gen >= 3, store.gen  # compacted several times, both ways between the two files
    assert contents(store) == expected
    again = ProgramStore(storage, log_max_bytes=limit)
    assert contents(again) == expected and again.gen == store.gen and again.skipped == 0
    assert again.info()["bytes"] <= limit


def test_programs_that_cannot_fit_even_after_compaction_are_refused_and_nothing_changes():
    storage = SimStorage()
    limit = 500
    store = ProgramStore(storage, log_max_bytes=limit)
    store.put(program("a", 1, "x" * 170))
    store.put(program("b", 2, "x" * 170))
    before = contents(store)
    err = raises(msg.RequestError, store.put, program("c", 3, "x" * 170))
    assert err.code == msg.E_STORAGE and "500" in err.message, err.message
    assert contents(store) == before and nonempty_files(storage) == [FILES[0]]
    assert contents(ProgramStore(storage, log_max_bytes=limit)) == before
    store.delete("a")
    store.put(program("c", 3, "x" * 170))  # now it fits after a compaction
    assert store.gen == 1 and contents(ProgramStore(storage, log_max_bytes=limit)) == {
        "b": program("b", 2, "x" * 170), "c": program("c", 3, "x" * 170)}


# ---- power cuts ------------------------------------------------------------------------------

CUT_LIMIT = 220  # tiny files: the sequence below compacts twice (FILES[0] -> [1] -> [0])


def tiny(name, value):
    return {"name": name, "v": value}  # a 33-byte put record


def _steps():
    return (
        ("put", tiny("a", 1)), ("put", tiny("b", 2)), ("put", tiny("c", 3)),
        ("put", tiny("a", 4)), ("del", "b"), ("put", tiny("d", 5)), ("put", tiny("a", 6)),
        ("put", tiny("e", 7)), ("del", "c"), ("put", tiny("b", 8)), ("put", tiny("d", 9)),
    )


def _storage_from(ops, count, cut=None):
    """The flash after the first `count` operations, then `cut` bytes of operation `count`, if given."""
    storage = SimStorage()
    for i in range(count):
        _apply(storage, ops[i])
    if cut is not None:
        storage.append(ops[count][1], ops[count][2][:cut])
    return storage


def _apply(storage, op):
    if op[0] == "append":
        storage.append(op[1], op[2])
    else:
        storage.remove(op[1])


def _copy(storage):
    out = SimStorage()
    for name in storage.files:
        out.files[name] = bytearray(storage.files[name])
    return out


def _check_after_cut(storage, before, after, must_be_after, where):
    loaded = ProgramStore(storage, log_max_bytes=CUT_LIMIT)
    got = contents(loaded)
    assert got == before or got == after, (where, got)
    is_after = got == after
    if must_be_after:
        assert is_after, ("went back to the state before", where, got)
    assert len(nonempty_files(storage)) <= 1, where  # the loser was removed at boot
    for name in FILES:
        size = storage.size(name)
        assert size == 0 or storage.read(name, size - 1, 1) == b"\n", where  # torn tail padded
    loaded.put(tiny("z", 99))  # the store still takes programs, not glued to a fragment
    got["z"] = tiny("z", 99)
    assert contents(ProgramStore(storage, log_max_bytes=CUT_LIMIT)) == got, where
    return is_after


def test_a_power_cut_at_any_byte_of_any_write_leaves_the_state_before_or_after():
    recording = RecordingStorage()
    store = ProgramStore(recording, log_max_bytes=CUT_LIMIT)
    states = [{}]
    spans = []
    for kind, arg in _steps():
        first = len(recording.ops)
        if kind == "put":
            store.put(arg)
        else:
            store.delete(arg)
        spans.append((first, len(recording.ops)))
        states.append(contents(store))
    ops = recording.ops
    assert store.gen == 2, store.gen  # both directions of compaction are covered
    assert len([op for op in ops if op[0] == "remove"]) >= 4  # target cleared and old file removed, twice
    checked = 0
    for step in range(len(spans)):
        first, last = spans[step]
        before, after = states[step], states[step + 1]
        base = _storage_from(ops, first)
        seen_after = False
        for i in range(first, last):
            op = ops[i]
            where = (step, i, op[0], op[1])
            if op[0] == "append":
                for cut in range(len(op[2])):
                    storage = _copy(base)
                    storage.append(op[1], op[2][:cut])
                    seen_after = _check_after_cut(storage, before, after, seen_after, where + (cut,)) or seen_after
                    checked += 1
            else:  # a cut just before the removal (just after is the next write's byte 0, or the end)
                seen_after = _check_after_cut(_copy(base), before, after, seen_after, where) or seen_after
                checked += 1
            _apply(base, op)
        assert _check_after_cut(_copy(base), before, after, seen_after, (step, "done")), step
    assert checked > 500


def test_an_incomplete_compaction_file_is_removed_at_boot_and_the_old_file_kept():
    storage = SimStorage()
    store = ProgramStore(storage)
    store.put(program("a", 1))
    storage.append(FILES[1], frame.encode_frame({"gen": 1}))
    storage.append(FILES[1], frame.encode_frame({"put": program("a", 1)}))  # no footer: cut here
    again = ProgramStore(storage)
    assert again.gen == 0 and again.active == FILES[0] and contents(again) == {"a": program("a", 1)}
    assert nonempty_files(storage) == [FILES[0]]
    storage.append(FILES[1], frame.encode_frame({"gen": 1}))
    storage.append(FILES[1], frame.encode_frame({"put": program("a", 2)}))
    storage.append(FILES[1], frame.encode_frame({"done": 1}))  # complete: the newer generation wins
    assert contents(ProgramStore(storage)) == {"a": program("a", 2)} and nonempty_files(storage) == [FILES[1]]


def test_a_torn_tail_is_padded_and_the_next_record_is_not_glued_to_it():
    storage = SimStorage()
    ProgramStore(storage).put(program("a", 1))
    storage.append(FILES[0], frame.encode_frame({"put": program("b", 2)})[:20])
    store = ProgramStore(storage)
    assert store.names() == ["a"] and store.skipped == 1
    store.put(program("c", 3))
    again = ProgramStore(storage)
    assert contents(again) == {"a": program("a", 1), "c": program("c", 3)} and again.skipped == 1


def test_a_damaged_record_is_skipped_and_a_damaged_body_is_reported():
    storage = SimStorage()
    store = ProgramStore(storage)
    store.put(program("a", 1))
    store.put(program("b", 2))
    storage.append(FILES[0], b'@{"put":{"name":"a","text":"","value":9}}*0000\n')  # bad CRC
    storage.append(FILES[0], b"garbage\n")
    again = ProgramStore(storage)
    assert contents(again) == {"a": program("a", 1), "b": program("b", 2)} and again.skipped == 2
    offset = again.index["b"][1]
    storage.files[FILES[0]][offset + 12] ^= 0x01  # a bit flips in b's body after boot
    err = raises(msg.RequestError, again.get, "b")
    assert err.code == msg.E_STORAGE and "'b'" in err.message, err.message
    assert again.get("a") == program("a", 1)
    assert ProgramStore(storage).names() == ["a"]  # at the next boot b's damaged record is skipped


def test_failing_storage_leaves_the_index_unchanged():
    storage = FlakyStorage()
    store = ProgramStore(storage, log_max_bytes=300)
    store.put(program("a", 1))
    store.put(program("b", 2))
    before = contents(store)
    storage.appends_left = 0
    err = raises(msg.RequestError, store.put, program("c", 3))
    assert err.code == msg.E_STORAGE and "ENOSPC" in err.message, err.message
    assert raises(msg.RequestError, store.delete, "a").code == msg.E_STORAGE
    assert contents(store) == before
    storage.partial = 10  # a write that stops part way: the next record must not be glued to it
    assert raises(msg.RequestError, store.put, program("a", 5)).code == msg.E_STORAGE
    assert contents(store) == before
    storage.heal()
    store.put(program("c", 3))
    before["c"] = program("c", 3)
    assert contents(store) == before and contents(ProgramStore(storage, log_max_bytes=300)) == before
    filler = program("a", 1)
    while store.used + len(frame.encode_frame({"put": filler})) <= 300:
        store.put(filler)  # the same program again: only the flash fills
    storage.appends_left = 2  # the next put compacts: fail in the middle of the copy
    err = raises(msg.RequestError, store.put, program("d", 4))
    assert err.code == msg.E_STORAGE and store.gen == 0 and contents(store) == before
    assert storage.size(FILES[1]) == 0  # the incomplete copy was removed
    storage.heal()
    storage.fail_read = True
    assert raises(msg.RequestError, store.get, "a").code == msg.E_STORAGE
    assert raises(msg.RequestError, store.put, program("d", 4)).code == msg.E_STORAGE  # compaction reads
    storage.heal()
    storage.fail_remove = True
    assert raises(msg.RequestError, store.put, program("d", 4)).code == msg.E_STORAGE
    assert contents(store) == before
    storage.heal()
    store.put(program("d", 4))
    before["d"] = program("d", 4)
    assert store.gen == 1 and contents(store) == before
    assert contents(ProgramStore(storage, log_max_bytes=300)) == before


def test_a_storage_failure_at_boot_leaves_a_store_that_refuses_but_does_not_crash():
    storage = FlakyStorage()
    ProgramStore(storage).put(program("a", 1))
    storage.fail_read = True
    store = ProgramStore(storage)
    assert store.broken is not None and store.names() == []
    err = raises(msg.RequestError, store.put, program("b"))
    assert err.code == msg.E_STORAGE and "EIO" in err.message, err.message
    storage.heal()
    assert ProgramStore(storage).names() == ["a"]


class FailsOnce(FlakyStorage):
    """The next append writes `partial` bytes and fails; the flash works again after it."""

    def append(self, name, data):
        if self.appends_left == 0:
            self.appends_left = -1
            self.sim.append(name, data[: self.partial])
            raise OSError(5, "EIO")
        return FlakyStorage.append(self, name, data)


class FillsUp(FlakyStorage):
    """The next append writes `partial` bytes and fails; later ones write nothing and fail (a
    full flash: ending the fragment fails too) until heal()."""

    def append(self, name, data):
        if self.appends_left == 0:
            part, self.partial = self.partial, 0
            if part:
                self.sim.append(name, data[:part])
            raise OSError(28, "ENOSPC")
        return FlakyStorage.append(self, name, data)


def test_after_a_failed_write_the_programs_in_use_are_the_programs_the_next_boot_loads():
    """A driver may fail after writing any part of a record, all of it included: a record
    that landed whole counts (the next boot reads it), anything less changes nothing."""
    for change in ("put", "delete"):
        if change == "put":
            record = frame.encode_frame({"put": program("a", 2)})
        else:
            record = frame.encode_frame({"del": "a"})
        for partial in range(len(record) + 1):
            storage = FailsOnce()
            store = ProgramStore(storage)
            store.put(program("a", 1))
            before = contents(store)
            storage.appends_left = 0
            storage.partial = partial
            try:
                store.put(program("a", 2)) if change == "put" else store.delete("a")
                refused = None
            except msg.RequestError as err:
                refused = err.code
            assert contents(ProgramStore(storage)) == contents(store), (change, partial)
            if partial == len(record):
                assert refused is None and contents(store) != before, (change, partial)
            else:
                assert refused == msg.E_STORAGE and contents(store) == before, (change, partial)
            store.put(program("b", 3))  # and the store goes on
            assert contents(ProgramStore(storage)) == contents(store), (change, partial)


def test_a_write_that_failed_before_anything_landed_is_no_write_even_after_the_same_record():
    """The file already ends in the bytes of this record (the same program put twice): a write
    that fails before a byte lands has not written it, however the file ends."""
    storage = FailsOnce()
    store = ProgramStore(storage)
    store.put(program("a", 1))
    before = contents(store)
    storage.appends_left = 0
    storage.partial = 0
    assert raises(msg.RequestError, store.put, program("a", 1)).code == msg.E_STORAGE
    assert store.used == storage.size(FILES[0])  # the index still matches the flash
    store.put(program("b", 2))
    before["b"] = program("b", 2)
    assert contents(store) == before and contents(ProgramStore(storage)) == before


def test_a_failed_write_that_left_all_but_its_newline_never_becomes_a_record():
    for storage_kind in (FailsOnce, FlakyStorage, FillsUp):  # the flash works again at once, or only later
        for change in ("put", "delete"):
            storage = storage_kind()
            store = ProgramStore(storage)
            store.put(program("a", 1))
            before = contents(store)
            if change == "put":
                record, call = frame.encode_frame({"put": program("a", 2)}), (store.put, program("a", 2))
            else:
                record, call = frame.encode_frame({"del": "a"}), (store.delete, "a")
            storage.appends_left = 0
            storage.partial = len(record) - 1  # all but the newline lands, then an error
            assert raises(msg.RequestError, call[0], call[1]).code == msg.E_STORAGE
            assert contents(store) == before
            # a reboot now, the fragment ended at once (FailsOnce) or not yet (the flash still
            # failing): the refused change is not there either way
            assert contents(ProgramStore(storage)) == before, (storage_kind, change)
            storage.heal()
            store.put(program("b", 3))  # the next write must not turn the fragment into a record
            before["b"] = program("b", 3)
            assert contents(store) == before, (storage_kind, change)
            rebooted = ProgramStore(storage)
            assert contents(rebooted) == before and rebooted.skipped == 1, (storage_kind, change)
