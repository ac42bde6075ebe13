"""The therapy session log: what ran and when, kept on flash for the therapist to fetch over USB.

Records are framed lines (`@{json}*CRC`, the wire format) appended to one of two files.
When the active file is full the other one is removed and becomes active, so the log
never takes more than 2 * FILE_MAX_BYTES of flash and always keeps at least the newest
FILE_MAX_BYTES; the oldest records go first, a whole file at a time.

Every record carries `seq`, one more than the record before it, across reboots,
rotations and erases: a host that fetched up to seq n asks for n + 1 and can never
mistake an old record for a new one. A power cut loses at most the record being
written: its torn fragment fails the CRC and is skipped on boot, and a newline is
added after it so the next record starts its own line. Nothing is kept in RAM but
counters and offsets; `read` pages by seq so each page fits a 1024-byte frame.
"""

from firmware import record_file
from firmware.protocols import frame, jsonenc
from firmware.protocols import messages as msg

FILES = ("sessions.0", "sessions.1")
FILE_MAX_BYTES = 98304
_FRAMING_BYTES = 7  # len("@") + len("*CRC4\n") around the JSON payload
EV_ERASED = "erased"


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
        # per file: valid records, their first and last seq, skipped lines
        self._n = [0, 0]
        self._first = [0, 0]
        self._last = [0, 0]
        self._bad = [0, 0]
        self._active = 0
        self._next = 1  # seq of the next record
        self._cursor = None  # (seq, file index, offset): where a page that continues at seq starts
        self._check_tail = False  # a write failed: the active file may end in a torn line
        self._force_rotate = False  # a rotation failed half way: the other file may hold a fragment
        try:
            self._recover()
        except Exception as err:  # noqa: BLE001 - any driver error becomes E_STORAGE
            raise _failed("scan", err)

    # ---- boot -------------------------------------------------------------------------

    def _recover(self):
        """Rebuild the counters from flash; after a power cut, end a torn line with a newline.

        A cut can leave a whole record but for its newline: its CRC proves it complete, so
        it counts (the newline added now makes it an ordinary line for every later boot)."""
        starts_erased = [False, False]
        for idx in (0, 1):
            name = FILES[idx]
            done = 0  # offset after the last newline
            for line, end in self._lines(name, 0):
                done = end
                self._count(idx, _decode(line), starts_erased)
            left = self.storage.size(name) - done
            if left > 0:  # the fragment after the last newline
                tail = None
                if left <= frame.MAX_LINE_BYTES:
                    tail = _decode(self.storage.read(name, done, left))
                self._count(idx, tail, starts_erased)
        self._active = 1 if self._last[1] > self._last[0] else 0
        active = self._active
        other = 1 - active
        self._next = self._last[active] + 1
        if starts_erased[active] and self.storage.size(FILES[other]):
            # a power cut between writing the erase marker and removing the old file:
            # the marker committed the erase, so finish it
            self._forget(other)
            try:
                self.storage.remove(FILES[other])
            except Exception:  # noqa: BLE001 - already forgotten; the next rotation removes it
                pass
        if self._torn(FILES[active]):
            self._check_tail = True
            try:
                self.storage.append(FILES[active], b"\n")
                self._check_tail = False
            except Exception:  # noqa: BLE001 - boot goes on; the next append writes the newline first
                pass
        self._refresh()

    def _count(self, idx, record, starts_erased):
        if record is None:
            self._bad[idx] += 1
            return
        seq = record["seq"]
        if self._n[idx] == 0:
            self._first[idx] = seq
            starts_erased[idx] = record.get("ev") == EV_ERASED
        self._n[idx] += 1
        if seq > self._last[idx]:
            self._last[idx] = seq

    def _torn(self, name):
        size = self.storage.size(name)
        return size > 0 and self.storage.read(name, size - 1, 1) != b"\n"

    def _lines(self, name, offset):
        """Yield (line, offset after its newline) from offset on, a chunk at a time."""
        return record_file.lines(self.storage, name, offset)

    # ---- counters ------------------------------------------------------------------------

    def _forget(self, idx):
        self._n[idx] = 0
        self._first[idx] = 0
        self._last[idx] = 0
        self._bad[idx] = 0
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
        try:
            size = self.storage.size(FILES[active])
            data = line
            rotate = self._force_rotate or size + len(line) > self.file_max_bytes
            if not rotate and self._check_tail and self._torn(FILES[active]):
                data = b"\n" + line
                rotate = size + len(data) > self.file_max_bytes
                if rotate:
                    data = line
            # a failed write may still have landed whole: its seq is never handed out again
            self._next = seq + 1
            if rotate:
                other = 1 - active
                self.storage.remove(FILES[other])
                self._forget(other)  # its records are gone, whatever happens next
                self._force_rotate = True  # until the new line is in: a fragment may be left there
                self.storage.append(FILES[other], data)
                self._active = active = other
                self._force_rotate = False
            else:
                self._check_tail = True
                self.storage.append(FILES[active], data)
            self._check_tail = False
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

        The marker is written to a fresh file before the old one is removed: a power cut
        leaves either the old records (no erase) or the marker (erase done, seq kept)."""
        seq = self._next
        line = frame.encode_frame({"seq": seq, "ev": EV_ERASED})
        active = self._active
        other = 1 - active
        try:
            self._next = seq + 1
            self.storage.remove(FILES[other])
            self._forget(other)
            self._force_rotate = True
            self.storage.append(FILES[other], line)
        except Exception as err:  # noqa: BLE001
            self._refresh()
            raise _failed("erase", err)
        self._force_rotate = False
        self._check_tail = False
        self._active = other
        self._forget(active)
        self._cursor = None
        self._n[other] = 1
        self._first[other] = seq
        self._last[other] = seq
        self._refresh()
        try:
            self.storage.remove(FILES[active])
        except Exception:  # noqa: BLE001 - the marker committed the erase; boot or rotation removes it
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
                plan.append((active, 0))
        else:
            if self._n[older] and not (self._n[active] and from_seq >= self._first[active]):
                plan.append((older, 0))
            plan.append((active, 0))
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
