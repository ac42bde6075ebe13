"""Deterministic JSON encoding for the wire and the trace.

MicroPython and CPython `json.dumps` differ in spacing and in dict order, so
both ends encode through this one function: keys sorted, no spaces, and only
the types the protocol allows (no floats: the device speaks integers).
"""


_CACHE = {}  # short strings seen before (keys, state names): encoded once
_CACHE_MAX = 64
_CACHE_TEXT_MAX = 24


def _escape(text):
    hit = _CACHE.get(text)
    if hit is not None:
        return hit
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code > 0x7E or ch == '"' or ch == "\\":
            break
    else:
        out = '"' + text + '"'
        if len(text) <= _CACHE_TEXT_MAX and len(_CACHE) < _CACHE_MAX:
            _CACHE[text] = out
        return out
    return _escape_slow(text)


def _escape_slow(text):
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code > 0x7E:
            if 0xD800 <= code <= 0xDFFF:
                raise ValueError("cannot encode a lone surrogate U+%04X" % code)
            if code > 0xFFFF:
                code -= 0x10000
                out.append("\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)))
            else:
                out.append("\\u%04x" % code)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def encode(value):
    """Encode to a compact ASCII JSON string; raises ValueError on a float or unknown type."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join([encode(item) for item in value]) + "]"
    if isinstance(value, dict):
        parts = []
        for key in sorted(value):
            if not isinstance(key, str):
                raise ValueError("JSON object keys must be strings")
            parts.append(_escape(key) + ":" + encode(value[key]))
        return "{" + ",".join(parts) + "}"
    raise ValueError("cannot encode %s on the wire (integers only, no floats)" % type(value).__name__)
