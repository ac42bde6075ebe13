"""Line framing: `@<json>*<crc16 hex>\\n`.

One message per line. A frame starts at `@`; anything else on the serial line
(MicroPython banners, tracebacks, noise) is not a frame and is ignored. The
CRC-16/CCITT-FALSE of the JSON text lets a receiver drop a damaged line
instead of acting on it. Lines are bounded: a longer one is discarded up to its
newline and reported once, so garbage can never grow a buffer.
"""

from firmware.compat import const
from firmware.protocols import jsondec, jsonenc

MAX_LINE_BYTES = const(1024)
SYNC = const(0x40)  # '@'
_STAR = const(0x2A)  # '*'
_LBRACE = const(0x7B)  # '{'
MAX_SYNC_TRIES = const(4)  # frame starts checked per line (bounds the work of a garbage line)
_NL = const(0x0A)
_CR = const(0x0D)


def _make_crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data, start=0, end=None):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of data[start:end]."""
    if end is None:
        end = len(data)
    crc = 0xFFFF
    table = _CRC_TABLE
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ data[i]) & 0xFF]
    return crc


class FrameError(Exception):
    """A line that looked like a frame but cannot be trusted; `code` is stable."""

    def __init__(self, code, message):
        super().__init__(message)  # MicroPython: Exception has no __init__ attribute
        self.code = code
        self.message = message


def encode_frame(message):
    """Encode a message dict to the bytes of one line, newline included."""
    payload = jsonenc.encode(message).encode()
    if len(payload) + 7 > MAX_LINE_BYTES:
        raise ValueError("frame of %d bytes exceeds MAX_LINE_BYTES %d" % (len(payload) + 7, MAX_LINE_BYTES))
    return b"@" + payload + ("*%04X\n" % crc16(payload)).encode()


def _hex4(data, start):
    value = 0
    for i in range(start, start + 4):
        c = data[i]
        if 0x30 <= c <= 0x39:
            digit = c - 0x30
        elif 0x41 <= c <= 0x46:
            digit = c - 0x37
        elif 0x61 <= c <= 0x66:
            digit = c - 0x57
        else:
            return -1
        value = (value << 4) | digit
    return value


def _check_payload(line, start, end):
    """Return None if line[start:end] is printable ASCII, else an error text."""
    for i in range(start, end):
        c = line[i]
        if c < 0x20 or c > 0x7E:
            return "byte 0x%02X at %d is not printable ASCII" % (c, i)
    return None


def _decode_at(line, at, end):
    star = -1
    i = end - 1
    while i > at:
        if line[i] == _STAR:
            star = i
            break
        i -= 1
    if star < 0 or end - star != 5:
        raise FrameError("bad_frame", "frame does not end in '*' and 4 hex digits of CRC-16")
    sent = _hex4(line, star + 1)
    if sent < 0:
        raise FrameError("bad_frame", "CRC field is not 4 hex digits")
    actual = crc16(line, at + 1, star)
    if sent != actual:
        raise FrameError("bad_checksum", "CRC-16 mismatch: frame says %04X, payload gives %04X" % (sent, actual))
    bad = _check_payload(line, at + 1, star)
    if bad:
        raise FrameError("bad_frame", bad)
    try:
        payload = bytes(line[at + 1 : star])
        message = jsondec.decode(payload.decode())
    except jsondec.JsonError as err:
        raise FrameError("bad_json", "payload is not valid JSON: %s" % err)
    if not isinstance(message, dict):
        raise FrameError("bad_json", "payload must be a JSON object")
    return message, payload


def decode_line(line):
    """Decode one line (without its newline) to a message dict (see decode_frame)."""
    found = decode_frame(line)
    return None if found is None else found[0]


def decode_frame(line):
    """Decode one line (without its newline) to (message dict, payload bytes).

    The payload is the exact JSON text between the `@` and the `*` (what the CRC
    covers): two frames with equal payloads are the same request byte for byte,
    whatever noise or line ending surrounded them.

    Returns None when the line holds no frame at all (ignore it). Raises
    FrameError when it holds a damaged one (the error of its first `@`).
    Noise before the `@` on the same line is skipped: later `@`s are tried as
    frame starts until one checks out. Only an `@{` can start a valid frame,
    and at most MAX_SYNC_TRIES starts are checked per line, so a line full of
    `@`s costs a few CRCs, not one per `@` (hundreds of ms on the board).
    """
    end = len(line)
    while end > 0 and line[end - 1] == _CR:
        end -= 1
    first_error = None
    tries = 0
    at = 0
    while at < end:
        if line[at] == SYNC and (first_error is None or (at + 1 < end and line[at + 1] == _LBRACE)):
            try:
                return _decode_at(line, at, end)
            except FrameError as err:
                if first_error is None:
                    first_error = err
            tries += 1
            if tries >= MAX_SYNC_TRIES:
                break
        at += 1
    if first_error is not None:
        raise first_error
    return None


class LineReader:
    """Splits a byte stream into bounded lines.

    `feed()` returns the complete lines it found (as bytes) and, for each line
    longer than `max_line`, None in its place (the line was dropped).

    With `crlf=True` (the device's request input, where the protocol ignores a
    `\\r` before the newline) that `\\r` does not count against `max_line`
    either: a line of `max_line` bytes ending in CRLF passes, without its `\\r`,
    and the buffer still never holds more than `max_line` bytes. Without it every
    byte before the newline counts (a plain split: files on the flash).
    """

    def __init__(self, max_line=MAX_LINE_BYTES, crlf=False):
        self.max_line = max_line
        self.crlf = crlf
        self._buf = bytearray(max_line)
        self._len = 0
        self._discarding = False
        self._cr_at_bound = False  # a \r arrived with the buffer full: fine if the newline follows
        self.overflows = 0

    def feed(self, data):
        lines = []
        buf = self._buf
        for c in data:
            if c == _NL:
                if self._discarding:
                    self._discarding = False
                    self.overflows += 1
                    lines.append(None)
                else:
                    lines.append(bytes(buf[: self._len]))
                self._len = 0
                self._cr_at_bound = False
            elif not self._discarding:
                if self._len >= self.max_line:
                    if c == _CR and self.crlf and not self._cr_at_bound:
                        self._cr_at_bound = True  # not stored: only a newline may follow it
                        continue
                    self._cr_at_bound = False
                    self._discarding = True
                    self._len = 0
                else:
                    buf[self._len] = c
                    self._len += 1
        return lines
