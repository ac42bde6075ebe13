"""Therapy programs a clinician uploaded, kept on the flash across reboots and power cuts.

The store does not interpret a program beyond its "name" and its encoded size: the caller
has validated it against the safety envelope already. Programs live in an append-only log of
framed records (`@{json}*CRC\\n`, the wire format), like the settings:

    {"put": program}    the newest put of a name is the program
    {"del": name}       the name is gone
    {"gen": g}          first line of a compacted file (generation g)
    {"done": g}         the compaction into generation g is complete

RAM holds only an index name -> (file, offset) of each name's newest put; a program's body is
read back from the flash (CRC checked) when asked for, so 16 programs of 900 bytes never sit
in the heap together.

Two files take turns: generation g lives in FILES[g % 2]. When an append would grow the
active file past `log_max_bytes`, the live programs are first copied into the other file
between a header and a footer, and only then is the old file removed. At boot a file is valid
when it is a gen-0 file (no header, FILES[0]) or holds its footer; the valid file of the
higher generation wins and the other file is removed. So a power cut at any byte of any write
leaves either the state before the operation or the state after it. A record counts once all
of it, newline and all, is on the flash (only then is the host told so): a write that fails
while the device runs (the request refused with `storage`) or a power cut may leave a fragment,
even all of a record but its newline, and it is ended with record_file.FRAGMENT_END, which no
record ends in, so it never becomes a record, not after a reboot either.
"""

from firmware.compat import const
from firmware import record_file
from firmware.protocols import frame, jsonenc
from firmware.protocols import messages as msg

FILES = ("programs.0", "programs.1")
MAX_PROGRAMS = const(16)
PROGRAM_MAX_BYTES = const(900)  # encoded JSON; a put request with its envelope still fits one 1024-byte frame
LOG_MAX_BYTES = const(24576)  # per file: 16 programs of 900 bytes plus one more fit after a compaction
READ_CHUNK = const(256)  # boot scan: small reads keep the heap small
FRAGMENT_END = record_file.FRAGMENT_END
_NL = const(0x0A)


class _Scan:
    """What one pass over a file found at boot."""

    def __init__(self, name):
        self.name = name
        self.gen = 0
        self.header = False
        self.done = False
        self.index = {}
        self.skipped = 0
        self.size = 0
        self.torn = False  # the last byte is not a newline: a write was cut


class ProgramStore:
    def __init__(self, storage, log_max_bytes=LOG_MAX_BYTES):
        self.storage = storage
        self.log_max_bytes = log_max_bytes
        self.index = {}  # name -> (file, offset of its newest put record)
        self.active = FILES[0]
        self.gen = 0
        self.used = 0  # bytes in the active file
        self.skipped = 0  # damaged or unexpected lines found in the active file (and unreadable programs dropped)
        self.broken = None  # text of a storage failure at boot: the store then refuses everything
        # what ends a torn tail of the active file before the next write: None (nothing to check)
        # or FRAGMENT_END (a fragment of a failed or cut write, even all of a record but its
        # newline, must never become one)
        self._tail_end = None
        self._stale = None  # a file that must be removed before the next write (a failed compaction's leftover)
        try:
            self._boot()
        except Exception as exc:  # noqa: BLE001 - the device must still boot with its built-in presets
            self.index = {}
            self.broken = msg.clip("%s" % (exc,))
        if self.broken is None:
            try:
                self._prepare()  # end a torn tail now, so the next record is never glued to the fragment
            except msg.RequestError:
                pass  # retried before the next write

    # ---- queries ----------------------------------------------------------------------------

    def names(self):
        return sorted(self.index)

    def info(self):
        return {
            "programs": len(self.index),
            "max_programs": MAX_PROGRAMS,
            "bytes": self.used,
            "capacity_bytes": self.log_max_bytes,
        }

    def get(self, name):
        """The program as stored: read back from the flash, CRC checked."""
        self._usable()
        self._known(name)
        try:
            line, program = self._read_record(name)
        except Exception as exc:  # noqa: BLE001 - any driver failure
            raise _storage_error(exc)
        if line is None:
            raise msg.RequestError(msg.E_STORAGE, "program %s is damaged on the flash" % msg._show(name))
        return program

    # ---- changes ----------------------------------------------------------------------------

    def put(self, program):
        """Store a new program or replace one of the same name; True when it replaced one."""
        self._usable()
        if not isinstance(program, dict):
            raise msg.RequestError(msg.E_BAD_FIELD, "a program must be an object, got %s" % msg._show(program))
        name = program.get("name")
        if not isinstance(name, str):
            raise msg.RequestError(msg.E_BAD_FIELD, "a program needs a name (a string), got %s" % msg._show(name))
        try:
            size = len(jsonenc.encode(program))
        except ValueError as exc:
            raise msg.RequestError(msg.E_BAD_FIELD, "program cannot be stored: %s" % msg.clip("%s" % (exc,)))
        if size > PROGRAM_MAX_BYTES:
            raise msg.RequestError(
                msg.E_BAD_FIELD,
                "program %s is %d bytes encoded; the limit is %d bytes" % (msg._show(name), size, PROGRAM_MAX_BYTES),
            )
        replacing = name in self.index
        if not replacing and len(self.index) >= MAX_PROGRAMS:
            raise msg.RequestError(msg.E_STORAGE, "program store full: %d programs; delete one first" % MAX_PROGRAMS)
        offset = self._append(frame.encode_frame({"put": program}))
        self.index[name] = (self.active, offset)
        return replacing

    def delete(self, name):
        self._usable()
        self._known(name)
        self._append(frame.encode_frame({"del": name}))
        del self.index[name]

    # ---- internals ----------------------------------------------------------------------------

    def _usable(self):
        if self.broken is not None:
            raise msg.RequestError(msg.E_STORAGE, "program store unavailable: %s" % self.broken)

    def _known(self, name):
        if not isinstance(name, str):
            raise msg.RequestError(msg.E_BAD_FIELD, "a program name must be a string, got %s" % msg._show(name))
        if name not in self.index:
            raise msg.RequestError(msg.E_NOT_FOUND, "no program %s" % msg._show(name))

    def _append(self, record):
        """Append one record to the active file (compacting first if it would not fit); its offset.

        On any failure the index is left as it was and RequestError(E_STORAGE) is raised.
        """
        try:
            self._prepare()
            if self.used + len(record) > self.log_max_bytes:
                self._compact(len(record))
            offset = self.used
            self._write(self.active, record)
        except msg.RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver failure
            raise _storage_error(exc)
        self.used = offset + len(record)
        return offset

    def _write(self, name, data):
        try:
            record_file.append(self.storage, name, data)
        except Exception:
            if name == self.active:
                self._tail_end = FRAGMENT_END
                try:
                    self._prepare()  # at once, so a power cut now cannot make the fragment count at boot
                except msg.RequestError:
                    pass  # retried before the next write
            raise

    def _prepare(self):
        """Before a write: remove a leftover that could outrank the active file, mend a cut tail."""
        try:
            if self._stale is not None:
                self.storage.remove(self._stale)
                self._stale = None
            if self._tail_end is not None:
                if record_file.torn(self.storage, self.active):
                    record_file.append(self.storage, self.active, self._tail_end)
                self.used = self.storage.size(self.active)
                self._tail_end = None
        except Exception as exc:  # noqa: BLE001 - any driver failure
            raise _storage_error(exc)

    def _compact(self, reserve):
        """Copy the live programs into the other file, then switch to it; `reserve` bytes must fit after."""
        gen = self.gen + 1
        target = FILES[gen % 2]
        old = self.active
        head = frame.encode_frame({"gen": gen})
        foot = frame.encode_frame({"done": gen})
        budget = self.log_max_bytes - reserve - len(foot)
        index = {}
        dropped = 0
        try:
            self.storage.remove(target)  # a leftover of an earlier failed compaction
            self._write(target, head)
            size = len(head)
            for name in sorted(self.index):  # sorted: the same layout on both runtimes
                line, _ = self._read_record(name)
                if line is None:  # unreadable already (get says so); copying it would wedge every compaction
                    dropped += 1
                    continue
                if size + len(line) > budget:
                    raise msg.RequestError(
                        msg.E_STORAGE,
                        "program store full: the programs do not fit in %d bytes; delete one first"
                        % self.log_max_bytes,
                    )
                self._write(target, line)
                index[name] = (target, size)
                size += len(line)
            self._write(target, foot)
            size += len(foot)
        except Exception as exc:  # noqa: BLE001 - undo, then report
            try:
                self.storage.remove(target)
            except Exception:  # noqa: BLE001 - it might be complete: no write until it is gone
                self._stale = target
            if isinstance(exc, msg.RequestError):
                raise
            raise _storage_error(exc)
        self.index = index
        self.active = target
        self.gen = gen
        self.used = size
        self.skipped += dropped
        try:
            self.storage.remove(old)
        except Exception:  # noqa: BLE001 - harmless (lower generation); retried before the next write
            self._stale = old

    def _read_record(self, name):
        """(line bytes with newline, program) of a name's newest put, or (None, None) if damaged."""
        file, offset = self.index[name]
        data = b""
        while len(data) < frame.MAX_LINE_BYTES:
            chunk = self.storage.read(file, offset + len(data), frame.MAX_LINE_BYTES - len(data))
            if not chunk:
                break
            data += chunk
            if chunk.find(b"\n") >= 0:
                break
        end = data.find(b"\n")
        if end < 0:
            return None, None
        try:
            record = frame.decode_line(data[:end])
        except frame.FrameError:
            return None, None
        program = record.get("put") if record is not None else None
        if not isinstance(program, dict) or program.get("name") != name:
            return None, None
        return data[: end + 1], program

    def _boot(self):
        scans = []
        for i in range(len(FILES)):
            scans.append(self._scan(FILES[i]) if self.storage.size(FILES[i]) > 0 else None)
        best = None
        for i in range(len(FILES)):
            scan = scans[i]
            if scan is None or scan.gen % 2 != i or (scan.header and not scan.done):
                continue  # missing, or a compaction cut short (or FILES[1] without its header)
            if best is None or scan.gen > best.gen:
                best = scan
        for scan in scans:
            if scan is not None and scan is not best:  # an older generation or an incomplete compaction
                if best is None:
                    self.storage.remove(scan.name)  # a new store starts in FILES[0]: it must be empty
                else:
                    try:
                        self.storage.remove(scan.name)
                    except Exception:  # noqa: BLE001 - it cannot outrank `best`; retried before the next write
                        self._stale = scan.name
        if best is None:
            return  # a new store
        self.index = best.index
        self.active = best.name
        self.gen = best.gen
        self.used = best.size
        self.skipped = best.skipped
        self._tail_end = FRAGMENT_END if best.torn else None

    def _scan(self, name):
        """One pass over a file in small chunks: its generation, footer and index."""
        scan = _Scan(name)
        reader = frame.LineReader()
        offset = 0
        start = 0  # offset of the line being read
        last = _NL
        while True:
            data = self.storage.read(name, offset, READ_CHUNK)
            if not data:
                break
            pos = 0
            for line in reader.feed(data):  # one entry per newline in data, in order
                end = data.find(b"\n", pos)
                _scan_line(scan, line, start)
                start = offset + end + 1
                pos = end + 1
            offset += len(data)
            last = data[-1]
        scan.size = offset
        if last != _NL:  # a fragment, even all of a record but its newline: never a record
            scan.torn = True
            scan.skipped += 1
        return scan


def _scan_line(scan, line, start):
    try:
        record = frame.decode_line(line) if line is not None else None
    except frame.FrameError:
        record = None
    if record is not None:
        if start == 0 and "gen" in record:
            gen = record["gen"]
            if msg.is_int(gen) and gen > 0:
                scan.header = True
                scan.gen = gen
                return
        elif "put" in record:
            program = record["put"]
            if isinstance(program, dict) and isinstance(program.get("name"), str):
                scan.index[program["name"]] = (scan.name, start)
                return
        elif "del" in record:
            if isinstance(record["del"], str):
                scan.index.pop(record["del"], None)
                return
        elif "done" in record:
            if scan.header and msg.is_int(record["done"]) and record["done"] == scan.gen:
                scan.done = True
                return
    scan.skipped += 1


def _storage_error(exc):
    return msg.RequestError(msg.E_STORAGE, "program store: %s" % msg.clip("%s" % (exc,)))
