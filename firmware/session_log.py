"""The therapy session log: what ran and when, kept on flash for the therapist to fetch over USB.

Records are framed lines (`@{json}*CRC`, the wire format) appended to one of two files.
When the active file is full the other one is removed and becomes active, so the log
never takes more than 2 * FILE_MAX_BYTES of flash and always keeps at least the newest
FILE_MAX_BYTES; the oldest records go first, a whole file at a time. An ordinary record
leaves ERASE_RESERVE bytes free at the end of a file, so an erase marker always fits.

Every record carries `seq`, one more than the record before it, across reboots,
rotations and erases: a host that fetched up to seq n asks for n + 1 and can never
mistake an old record for a new one. A record is stored once all of it, newline and all,
is on the flash (only then is the host told so), so a power cut loses at most the record
being written: what it left is a fragment, even all of a record but its newline, skipped
on boot and ended with record_file.FRAGMENT_END (which no record ends in) so the next
record starts its own line. A write that fails while the device runs leaves its fragment
the same way: one the host was told failed never becomes a record, not after a reboot either. Nothing
is kept in RAM but counters and offsets; `read` pages by seq so each page fits a
1024-byte frame.

Erase. An `erased` marker commits an erase: every record before the newest marker (a lower
seq) is gone, on boot and in reads, wherever it is on the flash. The marker is appended to
the active file first (the commit), then the other file is removed, the marker is written
again to that now empty file and the old file is removed. A power cut or a failure at any
point therefore leaves all the old records (no marker yet) or the marker (the erase done,
whatever of the old files is still on the flash is ignored and removed at boot).
"""

from firmware import record_file
from firmware.protocols import frame, jsonenc
from firmware.protocols import messages as msg

FILES = ("sessions.0", "sessions.1")
FILE_MAX_BYTES = 98304
_FRAMING_BYTES = 7  # len("@") + len("*CRC4\n") around the JSON payload
EV_ERASED = "erased"
FRAGMENT_END = record_file.FRAGMENT_END
# room an ordinary record leaves at the end of a file: the longest erase marker, after the end
# of a fragment a failed write may have left
ERASE_RESERVE = len(frame.encode_frame({"seq": 2147483647, "ev": EV_ERASED})) + len(FRAGMENT_END)


def _decode(line):
    """The record on one stored line, or None for a torn, damaged or seq-less line."""
    if line is None:  # longer than a frame: not one of ours
        return None
    try:
        record = frame.decode_line(line)
    except (frame.FrameError, ValueError):
        return None
    if record is None:
        return None
    seq = record.get("seq")
    if not msg.is_int(seq) or seq < 1:
        return None
    return record


def _failed(what, err):
    if isinstance(err, msg.RequestError):
        return err
    text = msg.clip("%s %s" % (type(err).__name__, err))
    return msg.RequestError(msg.E_STORAGE, "session log %s failed: %s" % (what, text))


class SessionLog:
    def __init__(self, storage, file_max_bytes=FILE_MAX_BYTES):
        self.storage = storage
        self.file_max_bytes = file_max_bytes
        # a line must fit one file, or rotation could not keep the 2-file bound
        self.line_max = min(frame.MAX_LINE_BYTES, file_max_bytes)
        # per file, counting from its newest erase marker (or its start): valid records, their
        # first and last seq, skipped lines, the offset counting starts at, the marker's seq
        self._n = [0, 0]
        self._first = [0, 0]
        self._last = [0, 0]
        self._bad = [0, 0]
        self._base = [0, 0]
        self._marker = [0, 0]
        self._active = 0
        self._next = 1  # seq of the next record
        self._cursor = None  # (seq, file index, offset): where a page that continues at seq starts
        # what ends a torn tail of the active file before the next record: None (nothing to
        # check) or FRAGMENT_END (a fragment, from a failed write or a power cut, must never
        # become a record)
        self._tail_end = None
        self._force_rotate = False  # a rotation failed half way: the other file may hold a fragment
        try:
            self._recover()
        except Exception as err:  # noqa: BLE001 - any driver error becomes E_STORAGE
            raise _failed("scan", err)

    # ---- boot -------------------------------------------------------------------------

    def _recover(self):
        """Rebuild the counters from flash; end a torn tail so it never becomes a record.

        A record is stored once all of it, newline and all, is on the flash: only then is the
        host told so. A tail after the last newline is a fragment, even all of a record but its
        newline (a write that failed, or was cut by a power cut, before it returned)."""
        for idx in (0, 1):
            name = FILES[idx]
            done = 0  # offset after the last newline
            for line, end in self._lines(name, 0):
                self._count(idx, _decode(line), done)
                done = end
            if self.storage.size(name) > done:  # the fragment after the last newline
                self._count(idx, None, done)
        floor = max(self._marker[0], self._marker[1])
        if floor:
            # the newest marker committed an erase: a file holding only records before it is old
            for idx in (0, 1):
                if self._marker[idx] != floor and (self._n[idx] == 0 or self._last[idx] < floor):
                    self._drop(idx)
            if self._marker[0] == floor and self._marker[1] == floor:
                # the marker in both files (an erase cut before it removed the old file): keep the
                # one that went on, else the one that starts with it (no old records in it)
                if self._last[0] != self._last[1]:
                    self._drop(0 if self._last[0] < self._last[1] else 1)
                else:
                    self._drop(0 if self._base[0] > self._base[1] else 1)
        self._active = 1 if self._last[1] > self._last[0] else 0
        active = self._active
        self._next = max(self._last[0], self._last[1]) + 1
        if self._torn(FILES[active]):
            self._tail_end = FRAGMENT_END
            try:
                self.storage.append(FILES[active], FRAGMENT_END)
                self._tail_end = None
            except Exception:  # noqa: BLE001 - boot goes on; the next append ends it first
                pass
        self._refresh()

    def _drop(self, idx):
        """Forget a file whose records an erase removed, and remove it (or leave that to rotation)."""
        self._forget(idx)
        try:
            self.storage.remove(FILES[idx])
        except Exception:  # noqa: BLE001 - forgotten already; the next rotation removes it
            pass

    def _count(self, idx, record, offset):
        if record is None:
            self._bad[idx] += 1
            return
        seq = record["seq"]
        if record.get("ev") == EV_ERASED:  # what came before it in this file is erased
            self._forget(idx)
            self._base[idx] = offset
            self._marker[idx] = seq
        if self._n[idx] == 0:
            self._first[idx] = seq
        self._n[idx] += 1
        if seq > self._last[idx]:
            self._last[idx] = seq

    def _torn(self, name):
        return record_file.torn(self.storage, name)

    def _lines(self, name, offset):
        """Yield (line, offset after its newline) from offset on, a chunk at a time."""
        return record_file.lines(self.storage, name, offset)

    # ---- counters ------------------------------------------------------------------------

    def _forget(self, idx):
        self._n[idx] = 0
        self._first[idx] = 0
        self._last[idx] = 0
        self._bad[idx] = 0
        self._base[idx] = 0
        self._marker[idx] = 0
        if self._cursor is not None and self._cursor[1] == idx:
            self._cursor = None

    def _refresh(self):
        active = self._active
        older = 1 - active
        self.count = self._n[0] + self._n[1]
        self.skipped = self._bad[0] + self._bad[1]
        self.first_seq = self._first[older] if self._n[older] else self._first[active]
        self.last_seq = self._last[active] if self._n[active] else self._last[older]

    # ---- writing -------------------------------------------------------------------------

    def _encode(self, record):
        try:
            line = frame.encode_frame(record)
        except ValueError as err:
            try:
                size = len(jsonenc.encode(record)) + _FRAMING_BYTES
            except ValueError:
                raise msg.RequestError(msg.E_BAD_FIELD, "session record cannot be stored: %s" % msg.clip(str(err)))
            line = None
        else:
            size = len(line)
        if size > self.line_max:
            raise msg.RequestError(
                msg.E_BAD_FIELD, "session record of %d bytes exceeds the limit of %d bytes" % (size, self.line_max)
            )
        return line

    def _with_tail(self, line):
        """The bytes to append to the active file for `line`: after the end of a torn tail."""
        if self._tail_end is not None and self._torn(FILES[self._active]):
            return self._tail_end + line
        return line

    def _write(self, name, data):
        """Append; after a failure, end at once what it may have left (best effort), else before
        the next record, so the fragment can never become a record."""
        try:
            record_file.append(self.storage, name, data)
        except Exception:
            try:
                record_file.end_fragment(self.storage, name)
            except Exception:  # noqa: BLE001 - the next append ends it first
                if name == FILES[self._active]:
                    self._tail_end = FRAGMENT_END
            raise

    def append(self, record):
        """Store a record (a dict) with the next seq; returns that seq.

        A storage error raises E_STORAGE and leaves the counters as they were."""
        if not isinstance(record, dict):
            raise msg.RequestError(msg.E_BAD_FIELD, "a session record must be an object")
        seq = self._next
        stored = dict(record)  # the caller's dict stays as it was
        stored["seq"] = seq
        line = self._encode(stored)
        active = self._active
        room = self.file_max_bytes - ERASE_RESERVE  # an erase marker must always fit after
        try:
            size = self.storage.size(FILES[active])
            data = line
            rotate = self._force_rotate or (size > 0 and size + len(line) > room)
            if not rotate:
                data = self._with_tail(line)
                rotate = size + len(data) > room
                if rotate:
                    data = line
            # a failed write may still have landed whole: its seq is never handed out again
            self._next = seq + 1
            if rotate:
                other = 1 - active
                self.storage.remove(FILES[other])
                self._forget(other)  # its records are gone, whatever happens next
                self._force_rotate = True  # until the new line is in: a fragment may be left there
                self._write(FILES[other], data)
                self._active = active = other
                self._force_rotate = False
            else:
                self._write(FILES[active], data)
            self._tail_end = None
        except Exception as err:  # noqa: BLE001 - any driver error becomes E_STORAGE
            self._refresh()
            raise _failed("write", err)
        if self._n[active] == 0:
            self._first[active] = seq
        self._n[active] += 1
        self._last[active] = seq
        self._refresh()
        return seq

    def erase(self):
        """Remove every record; seq goes on. Returns the seq of the `erased` marker left behind.

        The marker goes to the active file first: once it is there the erase is done (boot and
        reads ignore every record before it). Then the other file is removed, the marker written
        to it alone and the old active file removed. A power cut or a failure at any point leaves
        either all the old records (E_STORAGE, nothing erased) or the marker."""
        seq = self._next
        line = frame.encode_frame({"seq": seq, "ev": EV_ERASED})
        active = self._active
        other = 1 - active
        name = FILES[active]
        try:
            data = self._with_tail(line)
            offset = self.storage.size(name) + len(data) - len(line)
            self._next = seq + 1  # a failed write may still have landed whole: never reuse its seq
            self._write(name, data)
        except Exception as err:  # noqa: BLE001 - nothing erased (a marker that landed whole raised nothing)
            self._refresh()
            raise _failed("erase", err)
        # committed: only the marker is left in the log
        self._tail_end = None
        self._forget(other)
        self._forget(active)
        self._cursor = None
        self._n[active] = 1
        self._first[active] = seq
        self._last[active] = seq
        self._base[active] = offset
        self._marker[active] = seq
        self._refresh()
        # now the old records leave the flash; a failure here is no failure of the erase
        try:
            self.storage.remove(FILES[other])
            self._force_rotate = False  # whatever fragment it held is gone
        except Exception:  # noqa: BLE001 - forgotten; boot or the next rotation removes it
            return seq
        try:
            self._write(FILES[other], line)
        except Exception:  # noqa: BLE001 - the marker in the active file stands
            self._force_rotate = True  # the other file may hold a fragment: the next rotation removes it
            return seq
        self._active = other
        self._n[other] = 1
        self._first[other] = seq
        self._last[other] = seq
        self._marker[other] = seq
        self._forget(active)
        self._refresh()
        try:
            self.storage.remove(name)
        except Exception:  # noqa: BLE001 - forgotten; boot or the next rotation removes it
            pass
        return seq

    # ---- reading -------------------------------------------------------------------------

    def read(self, from_seq, max_bytes):
        """Records with seq >= from_seq, oldest first, at most max_bytes of stored lines
        (but at least one record when there is one). Returns (records, next_seq).

        A page that goes on where the last one stopped starts at a remembered offset,
        so fetching the whole log costs one pass over the flash, not one per page."""
        if not msg.is_int(from_seq) or not msg.is_int(max_bytes):
            raise msg.RequestError(msg.E_BAD_FIELD, "from_seq and max_bytes must be integers")
        active = self._active
        older = 1 - active
        plan = []
        cursor = self._cursor
        if cursor is not None and cursor[0] == from_seq:
            plan.append((cursor[1], cursor[2]))
            if cursor[1] == older:
                plan.append((active, self._base[active]))
        else:
            if self._n[older] and not (self._n[active] and from_seq >= self._first[active]):
                plan.append((older, self._base[older]))
            plan.append((active, self._base[active]))
        records = []
        used = 0
        next_seq = from_seq
        full = False
        try:
            for idx, start in plan:
                if self._n[idx]:
                    for line, end in self._lines(FILES[idx], start):
                        record = _decode(line)
                        if record is not None and record["seq"] >= next_seq:
                            if records and used + end - start > max_bytes:
                                full = True
                                break
                            records.append(record)
                            used += end - start
                            next_seq = record["seq"] + 1
                        start = end
                if full:
                    break
        except Exception as err:  # noqa: BLE001
            raise _failed("read", err)
        self._cursor = (next_seq, idx, start)  # where the line after the last one returned starts
        return records, next_seq

    def info(self):
        try:
            used = self.storage.size(FILES[0]) + self.storage.size(FILES[1])
        except Exception as err:  # noqa: BLE001
            raise _failed("read", err)
        return {
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "records": self.count,
            "bytes": used,
            "capacity_bytes": 2 * self.file_max_bytes,
            "skipped": self.skipped,
        }


class UnreadableLog:
    """The session log when the flash could not be read at boot. Nothing is kept in RAM in its
    place: a record there would be confirmed to the host, lost at the next boot and its seq handed
    out again. Every use tries the flash again (E_STORAGE while it fails); once it reads, this is
    that log from then on, its seq going on from the records on the flash."""

    def __init__(self, storage, error):
        self.storage = storage
        self.error = error.message  # why the last try failed
        self._log = None

    def _open(self):
        if self._log is None:
            try:
                self._log = SessionLog(self.storage)
            except msg.RequestError as err:
                self.error = err.message
                raise msg.RequestError(msg.E_STORAGE, "session log unreadable since boot: %s" % msg.clip(err.message, 80))
        return self._log

    def append(self, record):
        return self._open().append(record)

    def erase(self):
        return self._open().erase()

    def read(self, from_seq, max_bytes):
        return self._open().read(from_seq, max_bytes)

    def info(self):
        return self._open().info()
