"""Session log: seq goes on across reboots, rotations and erases, flash stays bounded, pages fit
a frame, and a power cut at any byte of any write loses at most the record being written."""

from firmware.protocols import frame
from firmware.protocols import messages as msg
from firmware.session_log import ERASE_RESERVE, FILE_MAX_BYTES, FILES, SessionLog
from sim.board import SimStorage
from tests.fw.portable import raises

SMALL = 600  # file_max_bytes for most tests: a rotation every dozen records or so


def rec(i):
    return {"ev": "session", "prog": "p%d" % (i % 7), "ms": 1000 * i}


def read_all(log, page=100000):
    out = []
    seq = 1
    while True:
        records, nxt = log.read(seq, page)
        if not records:
            assert nxt == seq
            return out
        assert nxt == records[-1]["seq"] + 1
        out.extend(records)
        seq = nxt


def flash_bytes(storage):
    return storage.size(FILES[0]) + storage.size(FILES[1])


def test_append_and_read_round_trip():
    log = SessionLog(SimStorage())
    assert log.info() == {"first_seq": 0, "last_seq": 0, "records": 0, "bytes": 0, "capacity_bytes": 2 * FILE_MAX_BYTES,
                          "skipped": 0}
    assert log.read(1, 1000) == ([], 1)
    given = {"ev": "start", "amp_ua": [1200, 800], "note": "caf\u00e9 \"x\""}
    assert log.append(given) == 1
    assert "seq" not in given  # the caller's dict is not changed
    for i in range(2, 6):
        assert log.append(rec(i)) == i
    records = read_all(log)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    first = dict(given)
    first["seq"] = 1
    assert records[0] == first
    assert records[3] == dict(rec(4), seq=4)
    info = log.info()
    assert info["first_seq"] == 1 and info["last_seq"] == 5 and info["records"] == 5 and info["skipped"] == 0
    assert info["bytes"] == sum(len(frame.encode_frame(r)) for r in records)
    assert log.read(4, 1000) == (records[3:], 6)
    assert log.read(6, 1000) == ([], 6)


def test_paging_returns_every_record_once_in_order_within_max_bytes():
    log = SessionLog(SimStorage(), SMALL)
    for i in range(1, 41):
        record = rec(i)
        record["pad"] = "x" * (i % 13)
        log.append(record)
    everything = read_all(log)
    assert [r["seq"] for r in everything] == list(range(log.first_seq, 41))
    for page in (1, 60, 150, 333):
        got = []
        seq = log.first_seq
        pages = 0
        while True:
            records, nxt = log.read(seq, page)
            if not records:
                break
            pages += 1
            size = sum(len(frame.encode_frame(r)) for r in records)
            assert size <= page or len(records) == 1, (page, size)
            got.extend(records)
            seq = nxt
        assert got == everything, page
        assert page > 150 or pages > 4  # small pages really paged
    # a fresh start at every record (across the file boundary too), and before the oldest survivor
    for i in range(len(everything)):
        assert log.read(everything[i]["seq"], 100000) == (everything[i:], 41), i
    assert log.read(1, 100000)[0] == everything


def test_rotation_keeps_the_newest_records_within_two_files():
    storage = SimStorage()
    log = SessionLog(storage, SMALL)
    assert log.info()["capacity_bytes"] == 2 * SMALL
    first_seqs = []
    for i in range(1, 121):
        assert log.append(rec(i)) == i
        assert flash_bytes(storage) <= 2 * SMALL
        assert storage.size(FILES[0]) <= SMALL and storage.size(FILES[1]) <= SMALL
        records = read_all(log)
        seqs = [r["seq"] for r in records]
        assert seqs == list(range(seqs[0], i + 1))  # the newest, contiguous, in order
        assert log.first_seq == seqs[0] and log.last_seq == i and log.count == len(seqs)
        if seqs[0] > 1:  # something was dropped: more than one file's worth is kept
            assert sum(len(frame.encode_frame(r)) for r in records) > SMALL - ERASE_RESERVE
        if not first_seqs or first_seqs[-1] != seqs[0]:
            first_seqs.append(seqs[0])
    assert len(first_seqs) >= 4  # it rotated several times
    steps = [b - a for a, b in zip(first_seqs, first_seqs[1:])]
    assert min(steps) > 5, steps  # the oldest go a whole file at a time, never one by one


def test_a_reboot_continues_seq_and_sees_the_same_records():
    storage = SimStorage()
    log = SessionLog(storage, SMALL)
    for i in range(1, 51):
        log.append(rec(i))
    before = read_all(log)
    info = log.info()
    again = SessionLog(storage, SMALL)
    assert read_all(again) == before and again.info() == info
    assert again.append(rec(51)) == 51
    after = read_all(SessionLog(storage, SMALL))  # the newest of the same records, and the new one
    assert after == read_all(again) and after[-1] == dict(rec(51), seq=51)
    assert after[:-1] == before[len(before) - len(after) + 1 :]
    empty = SimStorage()
    SessionLog(empty).append(rec(1))
    assert SessionLog(empty).append(rec(2)) == 2


class RecordingStorage(SimStorage):
    """SimStorage that remembers every write, so any moment of them can be replayed."""

    def __init__(self):
        SimStorage.__init__(self)
        self.ops = []

    def append(self, name, data):
        self.ops.append(("append", name, bytes(data)))
        return SimStorage.append(self, name, data)

    def remove(self, name):
        self.ops.append(("remove", name, b""))
        SimStorage.remove(self, name)


def replay(ops, upto, cut_bytes=0):
    """A storage as it stood with ops[:upto] done and cut_bytes of ops[upto] (an append) written."""
    storage = SimStorage()
    for kind, name, data in ops[:upto]:
        if kind == "append":
            storage.append(name, data)
        else:
            storage.remove(name)
    if cut_bytes:
        kind, name, data = ops[upto]
        storage.append(name, data[:cut_bytes])
    return storage


def whole_records(storage):
    """Every complete, valid record on flash that no erase removed, independently of SessionLog
    (the oracle): an `erased` marker removes every record of a lower seq, wherever it is."""
    found = {}
    for name in FILES:
        for line in bytes(storage.files.get(name, b"")).split(b"\n")[:-1]:  # a tail is a fragment, never a record
            try:
                record = frame.decode_line(line)
            except frame.FrameError:
                record = None
            if record is not None:
                found[record["seq"]] = record  # an erase may leave its marker in both files for a moment
    floor = 0
    for seq in found:
        if found[seq].get("ev") == "erased" and seq > floor:
            floor = seq
    return [found[seq] for seq in sorted(found) if seq >= floor]


def bad_lines(storage):
    """Lines on flash that hold no valid record, and each torn tail (a fragment, whatever it holds)."""
    count = 0
    for name in FILES:
        lines = bytes(storage.files.get(name, b"")).split(b"\n")
        if lines[-1]:
            count += 1
        for line in lines[:-1]:
            if not line:
                continue
            try:
                record = frame.decode_line(line)
            except frame.FrameError:
                record = None
            if record is None:
                count += 1
    return count


def test_a_power_cut_at_any_byte_of_any_write_loses_only_that_record():
    """Appends, rotations and two erases; the storage cut at every byte of every write and at
    every removal. An erase leaves all the old records or its marker, never a part of them."""
    fmax = 120
    storage = RecordingStorage()
    log = SessionLog(storage, fmax)
    erase_ops = []  # (first op, end op, records before, marker seq) of each erase
    for i in range(1, 13):  # several files' worth: rotations
        log.append({"ev": "s", "n": i})
        if i in (6, 9):
            first = len(storage.ops)
            before = read_all(log)
            marker = log.erase()
            erase_ops.append((first, len(storage.ops), before, marker))
    ops = storage.ops
    assert len([op for op in ops if op[0] == "remove"]) >= 4
    cuts = 0
    erase_outcomes = set()
    for k in range(len(ops)):
        kind, name, data = ops[k]
        for cut_bytes in range(len(data) if kind == "append" else 1):
            cut = replay(ops, k, cut_bytes)
            expected = whole_records(cut)
            rebooted = SessionLog(cut, fmax)
            assert read_all(rebooted) == expected, (k, cut_bytes)
            for first, end, before, marker in erase_ops:
                if first <= k < end:  # cut during an erase: the old records, all of them, or the marker
                    if expected == [{"seq": marker, "ev": "erased"}]:
                        erase_outcomes.add("erased")
                    else:
                        assert expected == before, (k, cut_bytes, expected)
                        erase_outcomes.add("kept")
            writing = frame.decode_line(data[:-1]) if kind == "append" else None
            torn = 1 if cut_bytes else 0  # even all but the newline: not stored until all of it is
            committed = whole_records(replay(ops, k))  # a marker written again to a fresh file
            if writing is not None and writing not in committed:
                assert writing not in expected, (k, cut_bytes)
            assert rebooted.skipped == bad_lines(cut) <= torn, (k, cut_bytes, rebooted.skipped)
            seq = rebooted.append({"ev": "after"})
            assert seq == (expected[-1]["seq"] + 1 if expected else 1), (k, cut_bytes)
            new = {"ev": "after", "seq": seq}
            assert read_all(rebooted) == [r for r in expected if r["seq"] >= rebooted.first_seq] + [new]
            holder = bytes(cut.files[FILES[rebooted._active]])
            line = frame.encode_frame(new)
            assert holder == line or holder.endswith(b"\n" + line), (k, cut_bytes, holder)  # not glued
            assert flash_bytes(cut) <= 2 * fmax
            assert cut.size(FILES[0]) <= fmax and cut.size(FILES[1]) <= fmax
            again = SessionLog(cut, fmax)
            assert read_all(again) == read_all(rebooted) and again.last_seq == seq, (k, cut_bytes)
            assert again.skipped == bad_lines(cut) <= torn, (k, cut_bytes)
            cuts += 1
    assert cuts > 300
    assert erase_outcomes == set(["erased", "kept"])


def test_damaged_records_are_skipped_and_counted():
    storage = SimStorage()
    log = SessionLog(storage)
    log.append(rec(1))
    good = frame.encode_frame(dict(rec(2), seq=2))
    storage.append(FILES[0], good[:10] + b"X" + good[11:])  # one byte flipped: CRC fails
    storage.append(FILES[0], b"garbage\n")
    storage.append(FILES[0], frame.encode_frame({"ev": "no seq"}))
    storage.append(FILES[0], frame.encode_frame({"ev": "text seq", "seq": "3"}))
    storage.append(FILES[0], b"@" + b"x" * 1500 + b"\n")  # longer than any frame
    storage.append(FILES[0], frame.encode_frame(dict(rec(3), seq=3)))
    storage.append(FILES[0], b'@{"ev":"torn","se')  # and a torn tail
    rebooted = SessionLog(storage)
    assert rebooted.skipped == 6 and rebooted.info()["skipped"] == 6
    assert rebooted.count == 2 and rebooted.first_seq == 1 and rebooted.last_seq == 3
    assert read_all(rebooted) == [dict(rec(1), seq=1), dict(rec(3), seq=3)]
    assert rebooted.append(rec(4)) == 4
    assert [r["seq"] for r in read_all(SessionLog(storage))] == [1, 3, 4]
    assert SessionLog(storage).skipped == 6


def test_erase_keeps_seq_going_across_a_reboot():
    storage = SimStorage()
    log = SessionLog(storage, SMALL)
    for i in range(1, 31):
        log.append(rec(i))
    assert log.erase() == 31
    marker = {"seq": 31, "ev": "erased"}
    assert read_all(log) == [marker]
    info = log.info()
    assert info["records"] == 1 and info["first_seq"] == 31 and info["last_seq"] == 31
    assert info["bytes"] == len(frame.encode_frame(marker))
    rebooted = SessionLog(storage, SMALL)
    assert read_all(rebooted) == [marker] and rebooted.last_seq == 31
    assert rebooted.append(rec(1)) == 32
    assert read_all(SessionLog(storage, SMALL)) == [marker, dict(rec(1), seq=32)]
    fresh = SessionLog(SimStorage())
    assert fresh.erase() == 1 and fresh.append(rec(1)) == 2


def test_a_power_cut_during_an_erase_leaves_the_old_records_or_the_marker():
    storage = RecordingStorage()
    log = SessionLog(storage, 200)
    for i in range(1, 13):
        log.append({"ev": "s", "n": i})
    old = read_all(log)
    start = len(storage.ops)
    marker_seq = log.erase()
    ops = storage.ops
    outcomes = set()
    for k in range(start, len(ops) + 1):
        kind = ops[k][0] if k < len(ops) else "end"
        for cut_bytes in range(len(ops[k][2]) if kind == "append" else 1):
            rebooted = SessionLog(replay(ops, k, cut_bytes), 200)
            records = read_all(rebooted)
            if records == [{"seq": marker_seq, "ev": "erased"}]:
                outcomes.add("erased")
            else:  # not erased: every old record is there, the older file's too
                assert records == old, (k, cut_bytes, records)
                outcomes.add("kept")
            assert rebooted.append({"ev": "after"}) > old[-1]["seq"]
    assert outcomes == set(["erased", "kept"])


def test_an_oversized_record_is_refused_and_nothing_written():
    storage = SimStorage()
    log = SessionLog(storage)
    log.append(rec(1))
    size = storage.size(FILES[0])
    err = raises(msg.RequestError, log.append, {"ev": "big", "note": "x" * 1100})
    assert err.code == msg.E_BAD_FIELD and "1024" in err.message and "bytes" in err.message, err.message
    assert storage.size(FILES[0]) == size and log.last_seq == 1 and log.append(rec(2)) == 2
    small = SessionLog(SimStorage(), 100)  # a line may not outgrow one file either
    err = raises(msg.RequestError, small.append, {"ev": "x" * 120})
    assert err.code == msg.E_BAD_FIELD and "100" in err.message, err.message
    err = raises(msg.RequestError, log.append, {"ev": "float", "v": 1.5})
    assert err.code == msg.E_BAD_FIELD
    assert raises(msg.RequestError, log.append, ["not", "a", "dict"]).code == msg.E_BAD_FIELD
    assert log.info()["records"] == 2


class FlakyStorage(SimStorage):
    """When armed, the next append (after `skip` more that succeed) writes `partial` bytes of its
    data (all of it for -1) and raises; removes raise while `fail_remove`."""

    def __init__(self):
        SimStorage.__init__(self)
        self.partial = None
        self.skip = 0
        self.fail_remove = False

    def append(self, name, data):
        if self.partial is not None:
            if self.skip > 0:
                self.skip -= 1
                return SimStorage.append(self, name, data)
            SimStorage.append(self, name, data if self.partial < 0 else data[:self.partial])
            self.partial = None
            raise OSError(28)
        return SimStorage.append(self, name, data)

    def remove(self, name):
        if self.fail_remove:
            raise OSError(5)
        SimStorage.remove(self, name)


def failing_write_case(partial, at_rotation):
    """Fail one append (at a rotation or not), then append again; returns what that leaves."""
    fmax = 200
    storage = FlakyStorage()
    log = SessionLog(storage, fmax)
    for i in range(1, 10):  # both files in use
        log.append({"ev": "s", "n": i})
    assert storage.size(FILES[0]) and storage.size(FILES[1])
    lost = {"ev": "lost", "pad": "x" * 20}
    lost_size = len(frame.encode_frame(dict(lost, seq=99)))
    while (storage.size(FILES[log._active]) + lost_size > fmax - ERASE_RESERVE) != at_rotation:
        log.append({"ev": "s"})
    before = read_all(log)
    info = log.info()
    storage.partial = partial
    err = raises(msg.RequestError, log.append, lost)
    assert err.code == msg.E_STORAGE and err.message.startswith("session log write failed: "), err.message
    assert len(err.message) <= 70 and "OSError" in err.message, err.message
    assert log.last_seq == info["last_seq"]
    if at_rotation:  # the rotation removed the oldest file: those records are really gone
        assert 0 < log.count < info["records"] and log.first_seq > info["first_seq"]
        before = [r for r in before if r["seq"] >= log.first_seq]
    else:
        now = log.info()
        assert now.pop("bytes") >= info.pop("bytes") and now == info  # the bytes may hold what failed
    assert read_all(log) == before  # reads show the flash as it is
    seq = log.append({"ev": "next"})  # short: it would fit the old file
    assert seq > info["last_seq"]
    return storage, log, before, seq


def test_a_failing_write_is_e_storage_and_moves_no_counter():
    for partial in (0, 9):
        for at_rotation in (False, True):
            storage, log, before, seq = failing_write_case(partial, at_rotation)
            after = read_all(SessionLog(storage, 200))
            assert read_all(log) == after, (partial, at_rotation)
            seqs = [r["seq"] for r in after]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # a seq is never given twice
            assert after[-1] == {"ev": "next", "seq": seq}
            assert after == before + [after[-1]], (partial, at_rotation)  # nothing of "lost" survives


def test_a_write_whose_driver_fails_after_it_landed_whole_is_stored_under_its_seq():
    """The record is on the flash and the next boot reads it: the host is told it was stored
    (a pain score reported lost but kept would be sent again and counted twice)."""
    for at_rotation in (False, True):
        storage = FlakyStorage()
        log = SessionLog(storage, 200)
        for i in range(1, 10):
            log.append({"ev": "s", "n": i})
        lost_size = len(frame.encode_frame({"ev": "kept", "pad": "x" * 20, "seq": 99}))
        while (storage.size(FILES[log._active]) + lost_size > 200 - ERASE_RESERVE) != at_rotation:
            log.append({"ev": "s"})
        last = log.last_seq
        storage.partial = -1  # all of it lands, then the driver raises
        seq = log.append({"ev": "kept", "pad": "x" * 20})
        assert seq == last + 1 and log.last_seq == seq, at_rotation
        after = read_all(SessionLog(storage, 200))
        assert after == read_all(log) and after[-1] == {"ev": "kept", "pad": "x" * 20, "seq": seq}, at_rotation


def test_after_a_torn_write_the_next_record_starts_its_own_line():
    storage, log, before, seq = failing_write_case(9, False)
    held = bytes(storage.files[FILES[log._active]])
    assert held.endswith(b"\n" + frame.encode_frame({"ev": "next", "seq": seq}))
    assert SessionLog(storage, 200).skipped == 1  # the fragment, on its own line


def test_paging_while_records_are_added_never_repeats_and_skips_only_what_rotated_away():
    storage = SimStorage()
    log = SessionLog(storage, SMALL)
    written = {}
    n = 0
    seq = 1
    got = []
    while n < 150 or seq <= log.last_seq:
        for _ in range(4 if n < 150 else 0):  # faster than the reader at first: rotations overtake it
            n += 1
            written[log.append(rec(n))] = dict(rec(n), seq=n)
        oldest = log.first_seq
        records, nxt = log.read(seq, 160)
        assert records, seq
        if records[0]["seq"] != seq:  # a gap only where the records are gone
            assert seq < oldest and records[0]["seq"] == oldest, (seq, oldest, records[0]["seq"])
        for r in records:
            assert r == written[r["seq"]]
        got.extend(records)
        seq = nxt
    seqs = [r["seq"] for r in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[-1] == n == log.last_seq
    assert len(seqs) < 150  # the reader really fell behind a rotation


def _rebooted(storage):
    """A SessionLog over a copy of the flash: a reboot seen without disturbing the running log."""
    copy = SimStorage()
    for name in FILES:
        if name in storage.files:
            copy.append(name, bytes(storage.files[name]))
    return SessionLog(copy, 200)


def _nine_records(storage):
    log = SessionLog(storage, 200)
    for i in range(1, 10):
        log.append({"ev": "s", "n": i})
    assert storage.size(FILES[0]) and storage.size(FILES[1])  # both files in use
    return log


def test_a_failing_erase_is_e_storage_and_erases_nothing():
    marker_len = len(frame.encode_frame({"seq": 10, "ev": "erased"}))
    for partial in (0, 7, marker_len - 1):  # nothing, a part, all but the newline of the marker
        storage = FlakyStorage()
        log = _nine_records(storage)
        before = read_all(log)
        assert before[0]["seq"] == 1
        info = log.info()
        storage.partial = partial
        err = raises(msg.RequestError, log.erase)
        assert err.code == msg.E_STORAGE and err.message.startswith("session log erase failed: "), err.message
        assert read_all(log) == before, partial  # every record, the older file's too
        now = log.info()
        assert now.pop("bytes") >= info.pop("bytes") and now == info, partial
        assert read_all(_rebooted(storage)) == before, partial  # and so after a reboot
        seq = log.append({"ev": "next"})
        after = read_all(_rebooted(storage))
        assert seq > 9 and after == read_all(log) and after[-1] == {"ev": "next", "seq": seq}, partial
        assert after[:-1] == before[len(before) - len(after) + 1 :], partial  # a rotation may drop the oldest
        assert SessionLog(storage, 200).erase() > seq


def test_an_erase_whose_marker_landed_is_done_whatever_fails_after():
    cases = (
        ("marker landed whole, then an error", {"partial": -1}),
        ("the old file cannot be removed", {"fail_remove": True}),
        ("the fresh file's marker fails", {"partial": 5, "skip": 1}),
        ("the fresh file's marker fails whole", {"partial": -1, "skip": 1}),
    )
    for what, arm in cases:
        storage = FlakyStorage()
        log = _nine_records(storage)
        for key in arm:
            setattr(storage, key, arm[key])
        seq = log.erase()
        storage.partial = None
        storage.fail_remove = False
        marker = {"seq": seq, "ev": "erased"}
        assert seq == 10 and read_all(log) == [marker], what
        assert log.info()["records"] == 1 and log.first_seq == log.last_seq == 10, what
        assert read_all(_rebooted(storage)) == [marker], what
        assert log.append({"ev": "next"}) == 11
        assert read_all(log) == read_all(_rebooted(storage)) == [marker, {"ev": "next", "seq": 11}], what
        for i in range(20):  # rotations clear whatever the erase left on the flash
            log.append({"ev": "s", "n": i})
            assert flash_bytes(storage) <= 400
            assert read_all(_rebooted(storage)) == read_all(log), what
        assert all(r.get("ev") != "s" or r["seq"] > 11 for r in read_all(log)), what
        assert SessionLog(storage, 200).info() == log.info(), what


def test_a_failed_write_that_left_all_but_its_newline_never_becomes_a_record():
    for at_rotation in (False, True):
        storage = FlakyStorage()
        log = _nine_records(storage)
        lost = {"ev": "lost"}
        size = len(frame.encode_frame(dict(lost, seq=log.last_seq + 1)))
        while (storage.size(FILES[log._active]) + size > 200 - ERASE_RESERVE) != at_rotation:
            log.append({"ev": "s"})
        before = read_all(log)
        storage.partial = size - 1  # the whole record but its newline, then an error
        assert raises(msg.RequestError, log.append, lost).code == msg.E_STORAGE
        assert all(r["ev"] != "lost" for r in read_all(_rebooted(storage))), at_rotation  # a cut now: not there
        seq = log.append({"ev": "next"})
        for view in (log, _rebooted(storage)):
            records = read_all(view)
            assert all(r["ev"] != "lost" for r in records), at_rotation
            assert records[-1] == {"ev": "next", "seq": seq}
            assert records[:-1] == before[len(before) - len(records) + 1 :], at_rotation


class _FullAfterOne(SimStorage):
    """A flash that fills up in the middle of a write once armed: all of that write but its
    newline lands, then every append is refused (ending the fragment too) while `full`."""

    def __init__(self):
        SimStorage.__init__(self)
        self.armed = False
        self.full = False

    def append(self, name, data):
        if self.armed:
            self.armed = False
            self.full = True
            SimStorage.append(self, name, data[:-1])
            raise OSError(28)
        if self.full:
            raise OSError(28)
        return SimStorage.append(self, name, data)


def test_a_write_refused_to_the_host_never_comes_back_after_a_reboot():
    """All of a record but its newline landed, the write raised, and the flash refused to end
    the fragment: the host was told `storage`, so no reboot may find that record."""
    storage = _FullAfterOne()
    log = SessionLog(storage, 200)
    for n in range(3):
        log.append({"ev": "s", "n": n})
    before = read_all(log)
    storage.armed = True
    assert raises(msg.RequestError, log.append, {"ev": "pain", "score": 9}).code == msg.E_STORAGE
    assert read_all(log) == before
    rebooted = SessionLog(storage, 200)  # still full: the fragment cannot be ended yet
    assert read_all(rebooted) == before and rebooted.skipped == 1
    storage.full = False
    seq = rebooted.append({"ev": "next"})
    again = SessionLog(storage, 200)
    assert read_all(again) == before + [{"ev": "next", "seq": seq}] and again.skipped == 1


class _UnreadableAtFirst(SimStorage):
    """A flash whose session log files cannot be read until `heal()` (an EIO at boot)."""

    def __init__(self):
        SimStorage.__init__(self)
        self.broken = False

    def read(self, name, offset, size):
        if self.broken and name in FILES:
            raise OSError(5)
        return SimStorage.read(self, name, offset, size)


def test_a_log_unreadable_at_boot_refuses_records_and_takes_the_flash_back_once_it_reads():
    """Nothing is kept in RAM in its place: a record there would be confirmed, then lost at the
    next boot, and its seq handed out again."""
    from tests.fw.harness import Harness

    h = Harness()
    storage = _UnreadableAtFirst()
    h.board.storage = storage
    h.device = h.board.build_device()
    assert h.ok("pain", {"score": 3, "when": "before"})["seq"] == 1
    h.tick(6000)  # the pain rate limit: one score a minute
    assert h.ok("pain", {"score": 4, "when": "before"})["seq"] == 2
    storage.broken = True
    h.device = h.board.build_device()  # a reboot that cannot read the log
    h.tick(1)
    for op, fields in (("pain", {"score": 9, "when": "after"}), ("log_info", None), ("log_fetch", None)):
        reply = h.request(op, fields)
        assert reply["ok"] is False and reply["err"] == msg.E_STORAGE, (op, reply)
        assert "unreadable since boot" in reply["msg"], reply
    h.ok("start", {"amp_ua": [3000, 0], "lease_ms": 0})  # therapy goes on; its records are refused
    h.tick(50)
    h.ok("stop")
    h.tick(600)
    assert h.state == "IDLE"
    storage.broken = False  # the flash reads again: the same log, seq going on, nothing lost
    info = h.ok("log_info")
    assert info["first_seq"] == 1 and info["last_seq"] == 2 and info["records"] == 2, info
    h.tick(6000)
    assert h.ok("pain", {"score": 9, "when": "after"})["seq"] == 3
    h.device = h.board.build_device()
    assert [r["score"] for r in h.ok("log_fetch")["records"] if r["ev"] == "pain"] == [3, 4, 9]
