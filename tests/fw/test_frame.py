"""firmware.protocols.frame: CRC, framing, decoding, bounded line reader."""

from firmware.protocols import frame
from firmware.protocols import messages as msg
from tests.fw.portable import raises


def _crc_bitwise(data):
    """Independent bit-at-a-time CRC-16/CCITT-FALSE, to check the table version."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def _line(payload):
    """A frame line (no newline) around raw payload bytes, with the right CRC."""
    return b"@" + payload + ("*%04X" % frame.crc16(payload)).encode()


def _code(fn, *args):
    return raises(frame.FrameError, fn, *args).code


# ---- CRC ----------------------------------------------------------------------


def test_crc_check_value():
    assert frame.crc16(b"123456789") == 0x29B1


def test_crc_empty_is_init():
    assert frame.crc16(b"") == 0xFFFF


def test_crc_matches_bitwise_reference():
    samples = [b"A", b"\x00", b"\xff\xff", b'{"id":1,"op":"status"}', bytes(range(256))]
    for data in samples:
        assert frame.crc16(data) == _crc_bitwise(data), data


def test_crc_of_a_slice():
    data = b"xx123456789yy"
    assert frame.crc16(data, 2, 11) == 0x29B1
    assert frame.crc16(bytearray(data), 2, 11) == 0x29B1
    assert frame.crc16(memoryview(data), 2) == frame.crc16(b"123456789yy")


# ---- encoding -------------------------------------------------------------------


def test_encode_shape():
    data = frame.encode_frame({"op": "status", "id": 7})
    assert data == b'@{"id":7,"op":"status"}*' + ("%04X" % frame.crc16(b'{"id":7,"op":"status"}')).encode() + b"\n"
    assert data[0:1] == b"@"
    assert data[-1:] == b"\n"
    assert data[-7:-5] == b"}*"


def test_encode_rejects_oversized():
    raises(ValueError, frame.encode_frame, {"pad": "x" * frame.MAX_LINE_BYTES})
    raises(ValueError, frame.encode_frame, {"amp": 1.5})


def test_largest_frame_fits_the_reader():
    # '@' + payload + '*XXXX' + '\n' = payload + 7 bytes
    overhead = len('{"pad":""}') + 7
    message = {"pad": "x" * (frame.MAX_LINE_BYTES - overhead)}
    data = frame.encode_frame(message)
    assert len(data) == frame.MAX_LINE_BYTES
    lines = frame.LineReader().feed(data)
    assert len(lines) == 1 and lines[0] is not None
    assert frame.decode_line(lines[0]) == message
    raises(ValueError, frame.encode_frame, {"pad": "x" * (frame.MAX_LINE_BYTES - overhead + 1)})


# ---- decoding ---------------------------------------------------------------------


def test_round_trip():
    messages = [
        {"id": 1, "op": "hello", "proto": "0.1"},
        {"id": 2, "ok": True, "ch": [{"amp_ua": 1000}]},
        {"ev": "state", "faults": [], "state": "IDLE", "fault_msg": ""},
        {"s": "caf\u00e9 \"q\" \\ \n", "n": None, "neg": -5, "big": 1 << 40},
        {},
    ]
    for message in messages:
        data = frame.encode_frame(message)
        assert frame.decode_line(data[:-1]) == message
        assert frame.decode_line(bytearray(data[:-1])) == message


def test_crlf_line_ending():
    data = frame.encode_frame({"id": 3, "op": "stop"})
    assert frame.decode_line(data[:-1] + b"\r") == {"id": 3, "op": "stop"}
    assert frame.decode_line(data[:-1] + b"\r\r") == {"id": 3, "op": "stop"}


def test_lowercase_crc_accepted():
    payload = b'{"id":1,"op":"status"}'
    line = b"@" + payload + ("*%04x" % frame.crc16(payload)).encode()
    assert frame.decode_line(line) == {"id": 1, "op": "status"}


def test_non_frame_lines_are_ignored():
    for line in (
        b"",
        b"\r",
        b"MicroPython v1.22.0 on 2024-01-01; Raspberry Pi Pico with RP2040",
        b'Type "help()" for more information.',
        b">>> ",
        b"Traceback (most recent call last):",
        b'  File "main.py", line 12, in <module>',
        b"OSError: [Errno 5] EIO",
        b"\x00\x01\xfe\xff",
        b'{"id":1,"op":"status"}*1234',
    ):
        assert frame.decode_line(line) is None, line


def test_noise_before_sync_on_the_same_line():
    good = frame.encode_frame({"id": 9, "op": "status"})[:-1]
    for noise in (b"garbage", b"\x00\xff\x1b[2J", b">>> ", b"@", b"@@@", b"@x*0000", b"@{}*"):
        assert frame.decode_line(noise + good) == {"id": 9, "op": "status"}, noise


def test_a_garbage_line_costs_bounded_work():
    # every '@' used to cost a CRC over the rest of the line: ~30 ms per 512-byte line
    # on a desktop, seconds on the board
    counted = [0]
    real = frame.crc16

    def counting(data, start=0, end=None):
        counted[0] += (len(data) if end is None else end) - start
        return real(data, start, end)

    frame.crc16 = counting
    try:
        for line in (b"@" * 506 + b"*0000", b"@{" * 253 + b"*0000", (b"@{" + b"x" * 10) * 40 + b"*0000"):
            counted[0] = 0
            raises(frame.FrameError, frame.decode_line, line)
            assert counted[0] <= frame.MAX_SYNC_TRIES * frame.MAX_LINE_BYTES, counted[0]
    finally:
        frame.crc16 = real


def test_sync_tries_are_limited_per_line():
    good = frame.encode_frame({"id": 9, "op": "status"})[:-1]
    noise = b"@{" * (frame.MAX_SYNC_TRIES - 1)
    assert frame.decode_line(noise + good) == {"id": 9, "op": "status"}
    assert frame.decode_line(b"@" * 100 + good) == {"id": 9, "op": "status"}  # a bare '@' is no start
    raises(frame.FrameError, frame.decode_line, b"@{" + noise + good)


def test_bad_checksum():
    good = frame.encode_frame({"id": 1, "op": "start"})[:-1]
    damaged = good.replace(b"start", b"stArt")
    assert _code(frame.decode_line, damaged) == msg.E_BAD_CHECKSUM
    crc = int(good[-4:], 16)
    wrong = good[:-4] + ("%04X" % (crc ^ 1)).encode()
    err = raises(frame.FrameError, frame.decode_line, wrong)
    assert err.code == msg.E_BAD_CHECKSUM
    assert ("%04X" % (crc ^ 1)) in err.message and ("%04X" % crc) in err.message


def test_missing_or_malformed_crc():
    assert _code(frame.decode_line, b'@{"id":1,"op":"status"}') == msg.E_BAD_FRAME
    assert _code(frame.decode_line, b'@{"id":1,"op":"status"}*') == msg.E_BAD_FRAME
    assert _code(frame.decode_line, b'@{"id":1,"op":"status"}*123') == msg.E_BAD_FRAME
    assert _code(frame.decode_line, b'@{"id":1,"op":"status"}*12345') == msg.E_BAD_FRAME
    assert _code(frame.decode_line, b'@{"id":1,"op":"status"}*ZZZZ') == msg.E_BAD_FRAME
    assert _code(frame.decode_line, b"@") == msg.E_BAD_FRAME


def test_bad_json():
    assert _code(frame.decode_line, _line(b"not json")) == msg.E_BAD_JSON
    assert _code(frame.decode_line, _line(b'{"id":1')) == msg.E_BAD_JSON
    assert _code(frame.decode_line, _line(b"")) == msg.E_BAD_JSON


def test_payload_must_be_an_object():
    for payload in (b"[1,2]", b"1", b'"text"', b"null", b"true"):
        assert _code(frame.decode_line, _line(payload)) == msg.E_BAD_JSON, payload


def test_non_printable_payload_rejected():
    err = raises(frame.FrameError, frame.decode_line, _line(b'{"a":"\x01"}'))
    assert err.code == msg.E_BAD_FRAME
    assert "0x01" in err.message
    assert _code(frame.decode_line, _line(b'{"a":"\xc3\xa9"}')) == msg.E_BAD_FRAME


def test_first_error_is_reported():
    # two damaged candidates on one line: the first '@' (whose CRC spans both) names the problem
    line = b"@x" + _line(b"not json")
    assert _code(frame.decode_line, line) == msg.E_BAD_CHECKSUM
    assert _code(frame.decode_line, line[2:]) == msg.E_BAD_JSON


def test_frame_error_fields():
    err = frame.FrameError("bad_json", "payload is not valid JSON")
    assert err.code == "bad_json"
    assert err.message == "payload is not valid JSON"
    assert str(err) == "payload is not valid JSON"
    assert isinstance(err, Exception)


# ---- LineReader --------------------------------------------------------------------


def test_reader_splits_lines():
    reader = frame.LineReader()
    assert reader.feed(b"one\ntwo\n\nthree") == [b"one", b"two", b""]
    assert reader.feed(b" and more\n") == [b"three and more"]
    assert reader.feed(b"") == []


def test_reader_byte_by_byte_equals_whole():
    data = frame.encode_frame({"id": 1, "op": "status"}) + b"noise\n" + frame.encode_frame({"id": 2, "op": "stop"})
    whole = frame.LineReader().feed(data)
    reader = frame.LineReader()
    pieces = []
    for i in range(len(data)):
        pieces.extend(reader.feed(data[i : i + 1]))
    assert pieces == whole
    assert len(whole) == 3


def test_reader_accepts_bytearray_and_memoryview():
    reader = frame.LineReader()
    assert reader.feed(bytearray(b"a\n")) == [b"a"]
    buf = bytearray(b"xyz\nrest")
    assert reader.feed(memoryview(buf)[:6]) == [b"xyz"]
    assert reader.feed(b"\n") == [b"re"]


def test_reader_returns_bytes_copies():
    reader = frame.LineReader()
    first = reader.feed(b"abc\n")[0]
    reader.feed(b"xyz\n")
    assert first == b"abc"
    assert isinstance(first, bytes)


def test_reader_line_at_the_bound_passes():
    reader = frame.LineReader(max_line=8)
    assert reader.feed(b"12345678\n") == [b"12345678"]
    assert reader.overflows == 0


def test_reader_overlong_line_is_dropped_once_then_resyncs():
    reader = frame.LineReader(max_line=8)
    assert reader.feed(b"123456789\nok\n") == [None, b"ok"]
    assert reader.overflows == 1


def test_reader_discards_across_chunks():
    reader = frame.LineReader(max_line=8)
    out = []
    for _ in range(50):
        out.extend(reader.feed(b"garbage without newline "))
    assert out == []
    out.extend(reader.feed(b"still garbage\nnxt"))
    assert out == [None]
    assert reader.feed(b" ln\n") == [b"nxt ln"]
    assert reader.overflows == 1


def test_reader_default_bound():
    reader = frame.LineReader()
    assert reader.max_line == frame.MAX_LINE_BYTES
    assert reader.feed(b"x" * frame.MAX_LINE_BYTES + b"\n") == [b"x" * frame.MAX_LINE_BYTES]
    assert reader.feed(b"x" * (frame.MAX_LINE_BYTES + 1) + b"\n") == [None]
    good = frame.encode_frame({"id": 4, "op": "status"})
    lines = reader.feed(b"y" * 5000 + b"\n" + good)
    assert lines[0] is None
    assert frame.decode_line(lines[1]) == {"id": 4, "op": "status"}


def test_reader_then_decode_with_garbage_prefix():
    good = frame.encode_frame({"id": 5, "op": "status"})
    lines = frame.LineReader().feed(b"\x00\xffjunk" + good)
    assert len(lines) == 1
    assert frame.decode_line(lines[0]) == {"id": 5, "op": "status"}


def test_reader_a_crlf_line_at_the_bound_passes():
    """A \\r before the newline is ignored, so it does not count against the bound (crlf=True:
    the device's request input; the default reader is a plain split)."""
    assert frame.LineReader(max_line=8).feed(b"12345678\r\n") == [None]
    reader = frame.LineReader(max_line=8, crlf=True)
    assert reader.feed(b"12345678\r\n") == [b"12345678"]
    assert reader.overflows == 0
    assert reader.feed(b"12345678\r\r\n") == [None]  # only one \r is free
    assert reader.feed(b"12345678\rx\n") == [None]  # a \r not followed by the newline: too long
    assert reader.feed(b"1234567\r\r\n") == [b"1234567\r"]  # below the bound a \r is kept as before
    assert reader.feed(b"12345678\r") == [] and reader.feed(b"\nok\n") == [b"12345678", b"ok"]
    assert reader.overflows == 2


def test_a_line_of_max_bytes_with_crlf_is_a_request():
    # '@' + payload + '*XXXX' = MAX_LINE_BYTES, then "\r\n" (a host that writes CRLF)
    pad = frame.MAX_LINE_BYTES - 6 - len('{"pad":""}')
    payload = ('{"pad":"%s"}' % ("x" * pad)).encode()
    line = _line(payload)
    assert len(line) == frame.MAX_LINE_BYTES
    for ending in (b"\n", b"\r\n"):
        lines = frame.LineReader(crlf=True).feed(line + ending)
        assert len(lines) == 1 and lines[0] is not None, ending
        assert frame.decode_line(lines[0]) == {"pad": "x" * pad}


def test_decode_frame_gives_the_payload_bytes():
    payload = b'{"op":"status","id":3}'
    line = b"junk@" + payload + ("*%04X\r" % frame.crc16(payload)).encode()
    assert frame.decode_frame(line) == ({"id": 3, "op": "status"}, payload)
    assert frame.decode_frame(b"no frame here") is None
    assert frame.decode_line(line) == {"id": 3, "op": "status"}
