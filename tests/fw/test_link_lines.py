"""firmware.link's line input: a request line of MAX_LINE_BYTES may end in CRLF (the `\\r` before
the newline is ignored, so it does not count against the bound); one byte more is too long."""

from firmware.protocols import frame, jsonenc
from tests.fw.harness import Harness


def _status_line(total):
    """A status request whose line (without its ending) is `total` bytes."""
    base = {"id": 5, "op": "status", "pin": ""}  # padded in the one field every request may carry
    base["pin"] = "a" * (total - len(jsonenc.encode(base)) - 6)
    payload = jsonenc.encode(base).encode()
    line = b"@" + payload + ("*%04X" % frame.crc16(payload)).encode()
    assert len(line) == total
    return line


def _answers(h, data):
    start = len(h.inbox)
    h.send_raw(data)
    h.tick(4)
    return [(m.get("ok"), m.get("err")) for m in h.inbox[start:] if "ok" in m or m.get("ev") == "rx_error"]


def test_a_request_of_max_line_bytes_is_answered_with_lf_or_crlf():
    h = Harness()
    line = _status_line(frame.MAX_LINE_BYTES)
    assert _answers(h, line + b"\n") == [(True, None)]
    assert _answers(h, line + b"\r\n") == [(True, None)]


def test_one_byte_more_is_too_long_with_lf_or_crlf():
    h = Harness()
    line = _status_line(frame.MAX_LINE_BYTES + 1)
    assert _answers(h, line + b"\n") == [(None, "line_too_long")]
    assert _answers(h, line + b"\r\n") == [(None, "line_too_long")]
    assert _answers(h, _status_line(frame.MAX_LINE_BYTES) + b"\r\r\n") == [(None, "line_too_long")]
    assert _answers(h, _status_line(100) + b"\r\n") == [(True, None)]  # and the reader resyncs
