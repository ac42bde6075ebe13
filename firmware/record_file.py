"""Reading a file of framed records (settings, the PIN, the session log) a chunk at a time.

Files on the flash may be larger than the heap can hold at once, so they are read in
small chunks and split into lines here, the same way for every store.
"""

from firmware.protocols import frame

READ_CHUNK = 256


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
