"""Property tests of the wire protocol (CPython, hypothesis)."""

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware.protocols import frame, jsonenc

MAX = frame.MAX_LINE_BYTES

# Lone surrogates exist only in CPython strings; the encoder refuses them (tested in test_jsonenc).
_chars = st.characters(exclude_categories=("Cs",))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.integers(),
    st.text(alphabet=_chars, max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0x80, exclude_categories=("Cs",)), max_size=8),  # non-ASCII, incl. astral
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(alphabet=_chars, max_size=8), inner, max_size=4)),
    max_leaves=12,
)
messages = st.dictionaries(st.text(alphabet=_chars, max_size=10), values, max_size=6)


def same(a, b):
    """Equality that also tells True from 1 and lists from tuples."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@settings(max_examples=500, deadline=None)
@given(messages)
def test_encode_decode_round_trip(message):
    payload = jsonenc.encode(message)
    assert payload.isascii()
    assert json.loads(payload) == message
    if len(payload) + 7 > MAX:
        try:
            frame.encode_frame(message)
        except ValueError:
            return
        raise AssertionError("oversized frame was encoded")
    data = frame.encode_frame(message)
    assert len(data) <= MAX and data.endswith(b"\n") and data.count(b"\n") == 1
    lines = frame.LineReader().feed(data)
    assert len(lines) == 1
    assert same(frame.decode_line(lines[0]), message)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_encoding_is_independent_of_insertion_order(message):
    reordered = dict(reversed(list(message.items())))
    assert jsonenc.encode(reordered) == jsonenc.encode(message)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.floats(allow_nan=True), lambda inner: st.lists(inner, min_size=1, max_size=3), max_leaves=4))
def test_floats_never_encode(value):
    try:
        jsonenc.encode({"v": value})
    except ValueError:
        return
    raise AssertionError("a float was encoded")


# ---- arbitrary bytes never raise anything but FrameError ----------------------------------

_TEMPLATE_MESSAGES = [
    {"id": 1, "op": "status"},
    {"id": 2147483647, "op": "start", "amp_ua": [60000, 0]},
    {"id": 3, "op": "set_amp", "ch": 0, "amp_ua": 1000},
    {"ev": "rx_error", "err": "bad_json", "msg": "payload is not valid JSON"},
    {"id": 4, "ok": False, "err": "unknown_op", "msg": "unknown op 'x@{y}*12AB'"},
    {"s": "caf\u00e9 \U0001F600 \\ \"", "n": None, "l": [[], {}, [True, False]]},
    {},
]
_TEMPLATES = [jsonenc.encode(m).encode() for m in _TEMPLATE_MESSAGES]
_ALPHABET = b'@*{}[]":,-.09AFafeEtrunl\\\r\x00\xff '


def _mutate(args):
    payload, pos, byte, insert, recrc = args
    pos %= len(payload) + 1
    damaged = payload[:pos] + insert + bytes([byte]) + payload[pos + 1 :]
    crc = frame.crc16(damaged if recrc else payload)
    return b"@" + damaged + ("*%04X" % crc).encode()


# cheap to generate (10 000 examples must stay fast): raw bytes, bytes from the frame
# alphabet, and real frames with one damage, their CRC either stale or recomputed
lines = st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=200).map(lambda b: bytes(_ALPHABET[c % len(_ALPHABET)] for c in b)),
    st.tuples(
        st.sampled_from(_TEMPLATES), st.integers(0, 200), st.integers(0, 255), st.binary(max_size=6), st.booleans()
    ).map(_mutate),
)


@settings(max_examples=10000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_decode_line_only_raises_frame_error(line):
    try:
        result = frame.decode_line(line)
    except frame.FrameError as err:
        assert err.code in ("bad_frame", "bad_checksum", "bad_json")
        assert isinstance(err.message, str) and err.message
        return
    assert result is None or isinstance(result, dict)
    if result is not None:
        assert b"@" in line


@settings(max_examples=10000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=64))
def test_line_reader_matches_a_reference_split(data, max_line, chunk):
    data = data.replace(b"\x0b", b"\n")  # plenty of newlines
    reader = frame.LineReader(max_line)
    got = []
    for i in range(0, len(data), chunk):
        got.extend(reader.feed(data[i : i + chunk]))
    complete = data.split(b"\n")[:-1]
    expected = [segment if len(segment) <= max_line else None for segment in complete]
    assert got == expected
    assert reader.overflows == expected.count(None)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=6))
def test_line_reader_default_bound(chunks):
    reader = frame.LineReader()
    for chunk in chunks:
        for line in reader.feed(chunk):
            assert line is None or (len(line) <= MAX and b"\n" not in line)


# ---- resync after garbage ----------------------------------------------------------------------

small_messages = st.dictionaries(st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=6)), max_size=3)


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=MAX).map(lambda b: b.replace(b"\n", b"")), small_messages)
def test_garbage_without_newline_then_frame_on_the_same_line(garbage, message):
    # at most MAX_SYNC_TRIES frame starts are checked per line; fewer '@' than that always resync
    assume(garbage.count(b"@") < frame.MAX_SYNC_TRIES)
    data = frame.encode_frame(message)
    garbage = garbage[: MAX - len(data) + 1]  # the joined line must still fit the bound
    lines = frame.LineReader().feed(garbage + data)
    assert len(lines) == 1 and lines[0] is not None
    assert same(frame.decode_line(lines[0]), message)


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=3000), small_messages, st.integers(1, 64))
def test_garbage_with_newline_then_frame(garbage, message, chunk):
    data = garbage + b"\n" + frame.encode_frame(message)
    reader = frame.LineReader()
    lines = []
    for i in range(0, len(data), chunk):
        lines.extend(reader.feed(data[i : i + chunk]))
    assert lines, "no line came out"
    for line in lines[:-1]:
        if line is not None:
            try:
                frame.decode_line(line)
            except frame.FrameError:
                pass
    assert same(frame.decode_line(lines[-1]), message)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=MAX + 1, max_size=4 * MAX).map(lambda b: b.replace(b"\n", b"x")), small_messages)
def test_overlong_garbage_is_dropped_then_the_next_frame_arrives(garbage, message):
    reader = frame.LineReader()
    lines = reader.feed(garbage + b"\n" + frame.encode_frame(message))
    assert lines[0] is None and len(lines) == 2
    assert same(frame.decode_line(lines[1]), message)


# ---- the firmware's strict JSON decoder agrees with CPython's json on valid JSON ---------------

import json as _json

from firmware.protocols import jsondec as _jsondec

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=2000, deadline=None)
@given(_json_values, st.booleans())
def test_jsondec_agrees_with_cpython_json(value, ascii_only):
    text = _json.dumps(value, ensure_ascii=ascii_only, indent=None if ascii_only else 1)
    assert _jsondec.decode(text) == value


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789-+.eE \\utrufalsn\u00e9x', max_size=30))
def test_jsondec_is_never_laxer_than_cpython_json(text):
    """Whatever the firmware accepts, CPython's json accepts too and reads the same."""
    try:
        ours = _jsondec.decode(text)
    except _jsondec.JsonError:
        return
    theirs = _json.loads(text)
    if isinstance(ours, _jsondec.NonInteger):
        assert isinstance(theirs, float)
    else:
        assert ours == theirs or _has_non_integer(ours)


def _has_non_integer(value):
    if isinstance(value, _jsondec.NonInteger):
        return True
    if isinstance(value, list):
        return any(_has_non_integer(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_integer(v) for v in value.values())
    return False
