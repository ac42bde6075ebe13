"""Reading a file of framed records (settings, the PIN, the session log) a chunk at a time.

Files on the flash may be larger than the heap can hold at once, so they are read in
small chunks and split into lines here, the same way for every store.
"""

from firmware.protocols import frame

READ_CHUNK = 256
# Ends a fragment left by a failed write: no frame ends in this byte (a frame ends in '*' and
# 4 hex digits), so the line can never read as a record, even when all of it but the newline landed.
FRAGMENT_END = b"~\n"


def lines(storage, name, offset=0, chunk=READ_CHUNK):
    """Yield (line, offset just past its newline) from `offset` on; a line is bytes, or None for
    one too long to keep (frame.LineReader's rule). A last line without its newline is not yielded."""
    reader = frame.LineReader()
    while True:
        data = storage.read(name, offset, chunk)
        if not data:
            return
        pos = 0
        for line in reader.feed(data):  # one entry per newline in data, in order
            pos = data.find(b"\n", pos) + 1
            yield line, offset + pos
        offset += len(data)


def records(storage, name):
    """Yield each record of a file as a dict, or None for a line that is damaged or not a
    record (a torn write, a bad checksum): the store counts it and goes on."""
    for line, _ in lines(storage, name):
        record = None
        if line is not None:
            try:
                record = frame.decode_line(line)
            except frame.FrameError:
                record = None
        yield record if isinstance(record, dict) else None


def torn(storage, name):
    """True when the file does not end in a newline: a write was cut, a fragment is there."""
    size = storage.size(name)
    return size > 0 and storage.read(name, size - 1, 1) != b"\n"


def end_fragment(storage, name):
    """Before the next record: end a fragment a failed write of this run may have left with
    FRAGMENT_END, so it is skipped on every later boot and the next record starts its own line."""
    if torn(storage, name):
        append(storage, name, FRAGMENT_END)


class Appender:
    """Appends records to one file, ending first a fragment that a failed or cut write may
    have left (found at boot: `torn`, or left by a failure in this run), so every record
    starts its own line: records glued to fragments could hide from the next boot's reader."""

    def __init__(self, storage, name):
        self.storage = storage
        self.name = name
        self.suspect = False  # the file may end in a fragment: set from `torn` when it is loaded

    def append(self, data):
        """One record; raises what the driver raised (the file is suspect until a write is whole)."""
        if self.suspect:
            end_fragment(self.storage, self.name)
            self.suspect = False
        self.suspect = True
        append(self.storage, self.name, data)
        self.suspect = False


def append(storage, name, data):
    """Append bytes; OSError on a short write (a driver that reports how much it wrote).

    A driver that raises after all the bytes landed has written them: the next boot reads the
    record, so the write counts and nothing is raised (every store then uses what the next
    boot will load). Landed means the file grew by exactly these bytes, not merely that it
    ends in them: the same record may already be the last one."""
    size = storage.size(name)
    try:
        written = storage.append(name, data)
    except Exception:
        if _landed(storage, name, size, data):
            return
        raise
    if isinstance(written, int) and written != len(data):
        raise OSError("short write: %d of %d bytes" % (written, len(data)))


def _landed(storage, name, size_before, data):
    """The file holds `data` whole right after size_before, and nothing after it. False when unknown."""
    try:
        return storage.size(name) == size_before + len(data) and storage.read(name, size_before, len(data)) == data
    except Exception:  # noqa: BLE001 - unreadable: take it as not there
        return False
