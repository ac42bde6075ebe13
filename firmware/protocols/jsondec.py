"""Strict JSON decoding, the same on every runtime.

MicroPython's `json.loads` accepts malformed text that CPython's rejects
(trailing commas, missing colons, leading zeros) and the two disagree on NaN,
so a frame could be a request on one runtime and an error on the other. This
small decoder accepts exactly RFC 8259 JSON, refuses duplicate keys, bounds the
nesting depth, and never produces a float: a number with a fraction or an
exponent becomes a `NonInteger` holding its text, so "must be an integer"
errors quote what was sent, identically everywhere.
"""

from firmware.compat import const

MAX_DEPTH = const(8)

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_WS = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"


class JsonError(ValueError):
    pass


class NonInteger:
    """A JSON number with a fraction or exponent; the protocol does not take these."""

    def __init__(self, text):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, NonInteger) and other.text == self.text

    def __repr__(self):
        return self.text


class _Parser:
    def __init__(self, text, max_depth):
        self.text = text
        self.pos = 0
        self.max_depth = max_depth

    def fail(self, what):
        raise JsonError("%s at offset %d" % (what, self.pos))

    def skip_ws(self):
        text = self.text
        while self.pos < len(text) and text[self.pos] in _WS:
            self.pos += 1

    def peek(self):
        if self.pos >= len(self.text):
            self.fail("unexpected end")
        return self.text[self.pos]

    def value(self, depth):
        self.skip_ws()
        ch = self.peek()
        if ch == "{":
            return self.obj(depth + 1)
        if ch == "[":
            return self.array(depth + 1)
        if ch == '"':
            return self.string()
        if ch == "-" or ch in _DIGITS:
            return self.number()
        for word, result in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return result
        self.fail("unexpected character '%s'" % ch)

    def obj(self, depth):
        if depth > self.max_depth:
            self.fail("nesting deeper than %d" % self.max_depth)
        self.pos += 1
        result = {}
        self.skip_ws()
        if self.peek() == "}":
            self.pos += 1
            return result
        while True:
            self.skip_ws()
            if self.peek() != '"':
                self.fail("object key must be a string")
            key = self.string()
            if key in result:
                self.fail("duplicate key")
            self.skip_ws()
            if self.peek() != ":":
                self.fail("expected ':'")
            self.pos += 1
            result[key] = self.value(depth)
            self.skip_ws()
            ch = self.peek()
            self.pos += 1
            if ch == "}":
                return result
            if ch != ",":
                self.pos -= 1
                self.fail("expected ',' or '}'")

    def array(self, depth):
        if depth > self.max_depth:
            self.fail("nesting deeper than %d" % self.max_depth)
        self.pos += 1
        result = []
        self.skip_ws()
        if self.peek() == "]":
            self.pos += 1
            return result
        while True:
            result.append(self.value(depth))
            self.skip_ws()
            ch = self.peek()
            self.pos += 1
            if ch == "]":
                return result
            if ch != ",":
                self.pos -= 1
                self.fail("expected ',' or ']'")

    def string(self):
        self.pos += 1
        text = self.text
        out = []
        start = self.pos
        while True:
            if self.pos >= len(text):
                self.fail("unterminated string")
            ch = text[self.pos]
            if ch == '"':
                out.append(text[start : self.pos])
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                out.append(text[start : self.pos])
                self.pos += 1
                out.append(self.escape())
                start = self.pos
            elif ord(ch) < 0x20:
                self.fail("control character in string")
            else:
                self.pos += 1

    def hex4(self):
        digits = self.text[self.pos : self.pos + 4]
        if len(digits) != 4 or any(d not in _HEX for d in digits):
            self.fail("\\u needs 4 hex digits")
        self.pos += 4
        return int(digits, 16)

    def escape(self):
        ch = self.peek()
        self.pos += 1
        if ch in _ESCAPES:
            return _ESCAPES[ch]
        if ch != "u":
            self.fail("invalid escape \\%s" % ch)
        code = self.hex4()
        if 0xD800 <= code <= 0xDBFF and self.text.startswith("\\u", self.pos):
            save = self.pos
            self.pos += 2
            low = self.hex4()
            if 0xDC00 <= low <= 0xDFFF:
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
            self.pos = save
        if 0xD800 <= code <= 0xDFFF:
            self.fail("unpaired surrogate \\u%04x" % code)
        return chr(code)

    def digits(self):
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] in _DIGITS:
            self.pos += 1
        if self.pos == start:
            self.fail("expected a digit")

    def number(self):
        start = self.pos
        text = self.text
        if text[self.pos] == "-":
            self.pos += 1
        if self.peek() == "0":
            self.pos += 1
            if self.pos < len(text) and text[self.pos] in _DIGITS:
                self.fail("leading zero")
        else:
            self.digits()
        integer = True
        if self.pos < len(text) and text[self.pos] == ".":
            self.pos += 1
            self.digits()
            integer = False
        if self.pos < len(text) and text[self.pos] in "eE":
            self.pos += 1
            if self.pos < len(text) and text[self.pos] in "+-":
                self.pos += 1
            self.digits()
            integer = False
        if integer:
            return int(text[start : self.pos])
        return NonInteger(text[start : self.pos])


def decode(text, max_depth=MAX_DEPTH):
    """Decode one JSON document from a str; raises JsonError naming the problem and offset."""
    parser = _Parser(text, max_depth)
    result = parser.value(0)
    parser.skip_ws()
    if parser.pos != len(text):
        parser.fail("extra data after the value")
    return result
