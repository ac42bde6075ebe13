"""Device-level protocol fuzzing: seeded random host input against a simulated Device.

`FrameGen(seed)` makes random host input at the byte level, one "frame" (a chunk
of bytes, usually one line) at a time, mixing:

- requests of every op in messages.OPS (and unknown ops), with random, often wrong,
  field values and types, random ids (fresh, reused, invalid), random key order and
  whitespace, CRLF endings and lower-case CRCs;
- byte-for-byte retries of recent requests (the reply cache);
- frames with a bad CRC (wrong value, not hex, wrong length, missing `*`);
- truncated frames (with or without their newline);
- over-long lines (> MAX_LINE_BYTES);
- non-ASCII and control bytes inside a frame, under a correct CRC;
- JSON edge cases under a correct CRC: deep nesting, huge integers, floats and
  exponents, NaN/Infinity text, duplicate keys, escaped lone surrogates, leading
  zeros, trailing commas, non-object payloads;
- raw garbage (random bytes, MicroPython banners and tracebacks, `@`-heavy noise);
- noise before a valid frame on the same line;
- frames the device itself sends (`ok`/`ev` keys), which it must ignore.

`run_fuzz(frames, seed)` feeds them to a Device on a SimBoard in batches, ticks it
(10 ms per tick) until every byte is read, reads all its output every tick, and
checks, tick by tick:

a. `tick()` never raises and never latches `internal_error`;
b. every line the device sends is a clean frame (<= 1024 bytes, CRC, strict JSON);
c. the device answers every request exactly once, in order: each line the host
   sent is decoded on the host side with the same frame module (a mirror reader),
   which says what the device owes for it (a reply with this id, a reply with
   `"id": null` for a bad id, an `rx_error` event with this code, or nothing);
   replies carry `ok` true/false, error replies a known reply code and a non-empty
   printable-ASCII `msg`, `unknown_op` exactly when the op is unknown; an `internal`
   reply (documented as a firmware bug) is a failure;
d. the state is consistent: FAULT iff faults are latched; outside RUNNING every
   channel's amplitude is zero, the driver is off, no pulse fires in a tick that
   began outside RUNNING, and the heater is off; the device enters RUNNING only in
   a tick where it accepted (ok: true) a `start` or `resume`, so garbage and refused
   requests alone never start stimulation; heat runs only in RUNNING/PAUSED.
   Valid `start` frames are NOT filtered out: the fuzz does reach RUNNING and
   stimulates into the simulated nominal load, and the checks above hold there too;
e. the tick never stalls and output is never lost: every tick reads
   min(pending, 512) bytes, the device's output queue is empty after each tick
   (the host reads everything), and `link.tx_dropped` stays 0.

Failures carry the check, the seed and the index of the frame that triggered
them. The run is deterministic: `--seed S --frames N` reproduces it exactly, and
`--show INDEX` prints the frames of the batch holding INDEX.

CLI:  python -m tests.fuzz_frames --frames 1000000 --seed 1
"""

import argparse
import binascii
import bisect
import json
import random
import sys
import time
from collections import Counter

from firmware import envelope as E
from firmware import limits as L
from firmware import presets
from firmware import supervisor as sup
from firmware.link import MAX_TX_BYTES, RX_CHUNK, RX_CHUNKS_PER_TICK, RX_ERROR_EVENTS_PER_TICK
from firmware.protocols import frame
from firmware.protocols import messages as msg

TICK_MS = L.TICK_MS
RX_PER_TICK = RX_CHUNK * RX_CHUNKS_PER_TICK  # 512
MAX = frame.MAX_LINE_BYTES
DEFAULT_SEED = 20240611
BATCH_FRAMES = 16

# codes and events as messages.py defines them (E_*, EV_*), so a new one needs no change here
RX_CODES = (msg.E_BAD_FRAME, msg.E_BAD_CHECKSUM, msg.E_BAD_JSON, msg.E_LINE_TOO_LONG)  # rx_error events only
ERROR_CODES = tuple(sorted(getattr(msg, name) for name in dir(msg) if name.startswith("E_")))
REPLY_CODES = tuple(code for code in ERROR_CODES if code not in RX_CODES)  # E_INTERNAL included: flagged apart
EVENTS = tuple(sorted(getattr(msg, name) for name in dir(msg) if name.startswith("EV_")))

# check names, grouped by the brief's (a)..(e)
CHECK_GROUPS = {
    "a": ("tick_raised", "internal_error"),
    "b": ("device_line_too_long", "device_line_damaged", "device_line_not_a_frame", "device_line_not_a_message"),
    "c": ("reply_shape", "reply_code", "reply_msg", "internal_reply", "reply_mismatch", "reply_missing",
          "rx_error_shape", "event_shape", "state_event_missing"),
    "d": ("fault_state", "output_outside_running", "pulse_outside_running", "heater_outside_running",
          "started_without_request", "heat_outside_session"),
    "e": ("stall", "tx_queue_not_empty", "tx_dropped"),
}

assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1 == frame.crc16(b"123456789")


def _crc(payload):
    return binascii.crc_hqx(payload, 0xFFFF)


# ---- JSON text with the edge cases a dict cannot hold ------------------------------------------


class Raw:
    """JSON text inserted as is (numbers like 1e3, NaN, broken tokens)."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class Obj:
    """A JSON object as (key, value) pairs: any order, duplicates allowed."""

    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


def _dump_str(text, ascii_only):
    return json.dumps(text, ensure_ascii=ascii_only)


def dump(value, sep=",", colon=":", ascii_only=True):
    """Serialise nested Python/Raw/Obj values to JSON text (floats as CPython writes them)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str:
        return _dump_str(value, ascii_only)
    if kind is float:
        return json.dumps(value)  # 1.5, 1e+300, NaN, Infinity, -0.0
    if kind is Raw:
        return value.text
    if kind is list:
        return "[" + sep.join([dump(v, sep, colon, ascii_only) for v in value]) + "]"
    if kind is Obj:
        return "{" + sep.join([_dump_str(k, ascii_only) + colon + dump(v, sep, colon, ascii_only) for k, v in value.pairs]) + "}"
    if kind is dict:
        return "{" + sep.join([_dump_str(k, ascii_only) + colon + dump(v, sep, colon, ascii_only) for k, v in value.items()]) + "}"
    raise TypeError(kind)


# ---- the generator ---------------------------------------------------------------------------------

_BAD_SCALARS = (
    None, True, False, 0, -1, 1, 2, 7, 2**31 - 1, 2**31, -(2**31), 2**63, 10**30, -(10**30), 10**400,
    "", "0", "1", "x", "true", "null", "\u00e9", "\u2603", "\U0001F600", "\ud800", "a\u0000b", "tab\there",
    "quote\"back\\slash", "@{*}\n", "x" * 60,
    1.5, -0.0, 0.0, 1e3, 1e300, -1e-7, float("nan"), float("inf"), float("-inf"),
    Raw("1E2"), Raw("-0"), Raw("1e-0"), Raw("0.5e+2"),
    [], [1], [1, 2, 3], ["x"], [None], {}, {"a": 1}, {"mode": "burst"},
)
_BAD_OPS = (
    "explode", "HELLO", "Status", "status ", " start", "", "start\u0000", "\u00e9", "set-amp", "get_stim2",
    "reboot", "__init__", "ops", "x" * 100, 1, 0, -1, None, True, False, [], ["start"], {}, {"op": "start"},
    1.5, Raw("1e3"),
)
_BAD_IDS = (
    0, -1, -(2**31), msg.MAX_REQUEST_ID + 1, 2**32, 2**64, 10**40, -(10**40), "7", "", True, False, None,
    [7], {}, {"id": 7}, 7.0, 1.5, Raw("1e3"), Raw("7E0"), Raw("-0"), Raw("7.0"),
)
_PROTOS = ("0.2", "0.1", "0.0", "0.9", "0.99999", "1.0", "9.0", "0.2.1", "", "00.2", "1", ".", "0.", ".2",
           "12345678901.1", "0.2 ", "\u00b2.0", "-1.0", "0x0.2")
_LEVELS = ("low", "medium", "high", "LOW", "hot", "", "\u00e9", "\U0001F525", "x" * 40)
_INTERLOCKS = ("concurrent", "alternate", "both", "none", "")
_PIN = "1234"
_SESSION_OPS = tuple(op for op in msg.OPS if not op.startswith(("program", "log_", "pin", "pain")))
_CLINICIAN_OPS = ("settings", "program_put", "program_delete", "log_erase", "maintenance", "start", "set_stim", "pin")
_PROGRAM_NAMES = ("fz-a", "fz-b", "fz-c", "fz-d", "conventional", "burst", "heat-then-tens", "heat-low", "nope", "", 7,
                  "\u00e9" * 30)
_NON_ASCII = (b"\x80", b"\xff", b"\xc3\xa9", b"\xe2\x98\x83", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80", b"\xef\xbb\xbf")
_CONTROL = bytes(c for c in range(0x20) if c != 0x0A) + b"\x7f"
_BANNERS = (
    b"MicroPython v1.23.0 on 2024-06-02; Raspberry Pi Pico with RP2040\r\n",
    b"Type \"help()\" for more information.\r\n",
    b">>> ",
    b"Traceback (most recent call last):\r\n  File \"main.py\", line 12, in <module>\r\nOSError: [Errno 5] EIO\r\n",
    b"\x1b[2J\x1b[H",
    b"raw REPL; CTRL-B to exit\r\n>",
    b"\x03\x03\x01\x04",
)
_DEVICE_SHAPES = (
    lambda r, i: {"id": i, "ok": True, "state": "RUNNING"},
    lambda r, i: {"id": i, "ok": False, "err": "bad_field", "msg": "x"},
    lambda r, i: {"ev": "state", "state": "FAULT", "faults": ["no_load:0"], "reason": "no_load:0", "fault_msg": "m"},
    lambda r, i: {"ev": "rx_error", "err": "bad_checksum", "msg": "CRC-16 mismatch"},
    lambda r, i: {"ev": "heat", "state": "heating", "reason": "", "target_mc": 42000, "fault": None, "fault_msg": ""},
    # frames that carry an op as well as ok/ev: requests, refused with bad_field (estop, stop
    # and pause act anyway)
    lambda r, i: {"id": i, "op": "start", "ok": True, "amp_ua": [20000, 20000], "lease_ms": 0},
    lambda r, i: {"ev": "x", "id": i, "op": "set_amp", "ch": 0, "amp_ua": 30000},
    lambda r, i: {"id": i, "op": "resume", "ok": None},
    lambda r, i: {"ev": None, "id": i, "op": "heat", "level": "high"},
)

# (kind, weight)
KINDS = (
    ("request", 40),
    ("retry", 4),
    ("bad_crc", 7),
    ("truncated", 7),
    ("long", 2),
    ("bytes", 5),
    ("json_edge", 12),
    ("garbage", 6),
    ("noise_prefix", 4),
    ("device_echo", 5),
    ("burst", 2),
)


class FrameGen:
    """Seeded random host input; `next()` returns (kind, bytes) of one frame."""

    def __init__(self, seed, channels=2):
        self.r = random.Random(seed)
        self.channels = channels
        self.next_id = self.r.randint(1, msg.MAX_REQUEST_ID // 2)
        self.recent = []  # recent well-formed request frames (bytes), for retries
        self.recent_ids = []
        table = []
        total = 0
        for kind, weight in KINDS:
            total += weight
            table.append(total)
        self._table = table
        self._total = total
        self._kinds = [kind for kind, _ in KINDS]
        self._makers = {kind: getattr(self, "_k_" + kind) for kind in self._kinds}

    # -- small helpers

    def _chance(self, p):
        return self.r.random() < p

    def _pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def _bad(self):
        r = self.r
        roll = r.random()
        if roll < 0.55:
            return self._pick(_BAD_SCALARS)
        if roll < 0.8:
            return r.randint(-(10**6), 10**7)
        if roll < 0.9:
            return self._nested(r.randint(2, 10))
        return "".join(chr(r.randint(1, 0x2FF)) for _ in range(r.randint(0, 12)))

    def _nested(self, depth):
        value = self._pick((1, "x", None, []))
        for _ in range(depth):
            value = [value] if self.r.random() < 0.5 else {"k": value}
        return value

    def _value(self, good, p_good=0.65):
        return good(self.r) if self.r.random() < p_good else self._bad()

    def _ch(self, r):
        return r.randrange(self.channels) if r.random() < 0.9 else self._pick((-1, self.channels, 99))

    def _fresh_id(self):
        self.next_id += self.r.randint(1, 3)
        if self.next_id > msg.MAX_REQUEST_ID:
            self.next_id = 1
        request_id = self.next_id
        self.recent_ids.append(request_id)
        if len(self.recent_ids) > 16:
            self.recent_ids.pop(0)
        return request_id

    def _request_id(self):
        r = self.r
        roll = r.random()
        if roll < 0.80:
            return self._fresh_id()
        if roll < 0.86 and self.recent_ids:
            return self._pick(self.recent_ids)  # reuse: the cache must compare the message too
        if roll < 0.88:
            return self._pick((1, msg.MAX_REQUEST_ID))
        return self._pick(_BAD_IDS)

    # -- requests

    def _stim(self, r):
        mode = self._pick(E.MODES) if r.random() < 0.92 else self._bad()
        fields = {}
        if r.random() < 0.15 and mode in ("continuous", "modulated", "strength_duration"):
            # a harsh setting: wide pulses, a high rate, small electrodes; amplitudes then hit the envelope
            fields = {"mode": mode, "phase_us": r.randint(300, 400), "rate_hz": r.randint(150, 249),
                      "area_cm2": r.randint(1, 10)}
            if mode == "strength_duration":
                fields["sd_rate_hz"] = 250
            return fields
        if r.random() < 0.9:
            fields["mode"] = mode
        if r.random() < 0.4:
            fields["waveform"] = self._pick(E.WAVEFORMS) if r.random() < 0.9 else self._bad()
        allowed = E._COMMON + E._MODE_FIELDS.get(mode, ()) if isinstance(mode, str) else E._COMMON
        names = list(allowed)
        if r.random() < 0.15:
            names.append(self._pick(tuple(E._FIELDS)))  # maybe a field of another mode
        for name in names:
            if r.random() < 0.45:
                _, low, high = E._FIELDS[name]
                if r.random() < 0.8:
                    fields[name] = r.randint(low, high) if r.random() < 0.7 else self._pick((low, high, low - 1, high + 1))
                else:
                    fields[name] = self._bad()
        return fields

    def _amps(self, r):
        count = r.randint(0, self.channels) if r.random() < 0.9 else self.channels + 1
        return [r.randint(0, 30000) if r.random() < 0.8 else self._amp(r) for _ in range(count)]

    def _amp(self, r):
        return self._pick((0, 1, 500, 2000, 30000, 62502, 62503, L.AMP_LIMIT_UA, L.AMP_LIMIT_UA + 1, -1)) \
            if r.random() < 0.5 else r.randint(0, L.AMP_LIMIT_UA)

    def _fields(self, op):
        r = self.r
        out = []
        v = self._value

        def add(name, good, p_present=0.7, p_good=0.65):
            if r.random() < p_present:
                out.append((name, v(good, p_good)))

        if op == "hello":
            add("proto", lambda r: self._pick(_PROTOS), 0.6, 0.8)
        elif op == "start":
            add("amp_ua", self._amps, 0.7)
            add("lease_ms", lambda r: self._pick((0, 0, 500, 3000, 30000, 499, 30001)) if r.random() < 0.5
                else r.randint(L.LEASE_MIN_MS, L.LEASE_MAX_MS), 0.6, 0.8)
            add("session_ms", lambda r: r.randint(1000, L.SESSION_MAX_MS) if r.random() < 0.8
                else self._pick((999, 1000, L.SESSION_MAX_MS, L.SESSION_MAX_MS + 1)), 0.4, 0.8)
            add("ramp_ms", lambda r: r.randint(L.RAMP_MIN_MS, L.RAMP_MAX_MS) if r.random() < 0.8
                else self._pick((999, 30001)), 0.4, 0.8)
            add("interlock", lambda r: self._pick(_INTERLOCKS), 0.4, 0.8)
        elif op in ("set_amp",):
            add("ch", self._ch, 0.93, 0.9)
            add("amp_ua", self._amp, 0.93, 0.85)
        elif op == "amp_step":
            add("ch", self._ch, 0.93, 0.9)
            add("steps", lambda r: r.randint(-12, 12), 0.93, 0.85)
        elif op == "set_stim":
            add("ch", self._ch, 0.93, 0.9)
            add("stim", self._stim, 0.93, 0.85)
        elif op == "get_stim":
            add("ch", self._ch, 0.93, 0.8)
        elif op == "telemetry":
            add("every_ms", lambda r: self._pick((0, 0, 50, 100, 1000, 60000, 49, 60001)) if r.random() < 0.5
                else r.randint(50, 5000), 0.9, 0.8)
        elif op == "heat":
            roll = r.random()
            if roll < 0.2:
                add("off", lambda r: True, 1.0, 0.8)
            else:
                if roll < 0.55 or roll > 0.95:
                    add("level", lambda r: self._pick(_LEVELS), 1.0, 0.8)
                if roll >= 0.55:
                    add("target_mc", lambda r: r.randint(30000, 43000) if r.random() < 0.7
                        else self._pick((29999, 43001, 45000, 0)), 1.0, 0.8)
                add("minutes", lambda r: r.randint(1, 120) if r.random() < 0.8 else self._pick((0, 121, 100000)), 0.4, 0.8)
        elif op == "maintenance":
            add("on", lambda r: r.random() < 0.15, 0.9, 0.8)  # mostly off again: sessions keep running
        elif op == "settings":
            add("set", self._settings_change, 0.6, 0.8)
        elif op in ("program_get", "program_delete"):
            add("name", self._program_name, 0.93, 0.85)
        elif op == "program_put":
            add("program", self._program, 0.93, 0.85)
        elif op == "log_fetch":
            add("from_seq", lambda r: r.randint(0, 400) if r.random() < 0.8 else self._pick((-1, 2 ** 31)), 0.7, 0.85)
            add("max_bytes", lambda r: r.randint(100, 640) if r.random() < 0.8 else self._pick((99, 641, 0)), 0.5, 0.85)
        elif op == "pain":
            add("score", lambda r: r.randint(0, 10) if r.random() < 0.85 else self._pick((-1, 11)), 0.93, 0.85)
            add("when", lambda r: self._pick(("before", "after", "during")), 0.93, 0.85)
        elif op == "pin":
            roll = r.random()  # the PIN is set now and then and removed more often: the device stays usable
            if roll < 0.15:
                add("new", lambda r: self._pick((_PIN, _PIN, "12", "123456789", "abcd")), 1.0, 0.9)
            elif roll < 0.55:
                add("remove", lambda r: True, 1.0, 0.9)
        if op == "start" and r.random() < 0.3:
            out.append(("program", v(self._program_name, 0.85)))
        if op in _CLINICIAN_OPS and r.random() < 0.8:
            out.append(("pin", _PIN))  # never a wrong PIN: waits would shut the rest of the run out
        if r.random() < (0.02 if op in ("start", "heat", "resume") else 0.08):  # a field it does not take: refused
            out.append((self._pick(("foo", "ID", "Op", "", "\u00e9", "x" * 30)), self._bad()))
        return out

    def _program_name(self, r):
        return self._pick(_PROGRAM_NAMES)

    def _program(self, r):
        """A preset under a fuzz name, now and then with one field broken."""
        program = json.loads(json.dumps(presets.PRESETS[r.randint(0, len(presets.PRESETS) - 1)]))
        program["name"] = self._pick(_PROGRAM_NAMES[:4])
        roll = r.random()
        if roll < 0.1:
            program["phases"][0]["duration_s"] = self._pick((0, 9, 3601))
        elif roll < 0.2 and program.get("channels"):
            program["channels"][0]["max_amp_ua"] = self._pick((-1, 80001, 5000))
        elif roll < 0.25:
            program["heat"] = {"target_mc": self._pick((29999, 43001, 41000))}
        return program

    def _settings_change(self, r):
        names = ("session_default_ms", "ramp_default_ms", "lease_default_ms", "heat_max_target_mc",
                 "heat_minutes_default", "interlock_default", "colour")
        change = {}
        for _ in range(r.randint(1, 3)):
            name = self._pick(names)
            if name == "interlock_default":
                change[name] = self._pick(_INTERLOCKS)
            elif name == "heat_max_target_mc":  # kept high enough that heat levels still start
                change[name] = self._pick((42000, 43000, 43000, 43001, 29999))
            else:
                change[name] = self._pick((0, 1, 500, 1000, 3000, 30000, 40000, 43000, 43001, 3600000))
        return change

    def _request(self):
        """A request as Obj pairs (and whether its id is one the generator made fresh)."""
        r = self.r
        pairs = []
        roll = r.random()
        if roll < 0.6:
            op = self._pick(_SESSION_OPS)  # weighted: sessions must start, pause and resume often
        elif roll < 0.87:
            op = self._pick(msg.OPS)
        else:
            op = self._pick(_BAD_OPS)
        if r.random() < 0.985:
            pairs.append(("id", self._request_id()))
        if r.random() < 0.985:
            pairs.append(("op", op))
        pairs.extend(self._fields(op if isinstance(op, str) else ""))
        if r.random() < 0.3:
            r.shuffle(pairs)
        else:
            pairs.sort(key=lambda kv: kv[0])
        return Obj(pairs)

    def _payload(self, value):
        """JSON text of a value as bytes, usually compact, sometimes with spaces."""
        if self.r.random() < 0.9:
            return dump(value).encode()
        return (" " + dump(value, ", ", " : ") + " ").encode()

    def _frame(self, payload, crc=None):
        r = self.r
        if crc is None:
            crc = _crc(payload)
        tail = ("*%04x" if r.random() < 0.1 else "*%04X") % crc
        end = "\r\n" if r.random() < 0.1 else "\n"
        return b"@" + payload + (tail + end).encode()

    # -- the kinds of frame

    def _k_request(self):
        payload = self._payload(self._request())
        if len(payload) + 7 > MAX:
            return self._frame(payload)  # rare: an over-long request line
        data = self._frame(payload)
        self.recent.append(data)
        if len(self.recent) > 12:
            self.recent.pop(0)
        return data

    def _k_retry(self):
        if not self.recent:
            return self._k_request()
        return self._pick(self.recent)

    def _k_bad_crc(self):
        r = self.r
        payload = self._payload(self._request())
        crc = _crc(payload)
        roll = r.random()
        if roll < 0.6:
            return self._frame(payload, crc ^ r.randint(1, 0xFFFF))
        if roll < 0.7:
            return b"@" + payload + b"*" + self._pick((b"12G4", b"XXXX", b"+123", b" 1A2", b"\xff\xff\xff\xff")) + b"\n"
        if roll < 0.8:
            return b"@" + payload + ("*%03X\n" % (crc & 0xFFF)).encode()
        if roll < 0.9:
            return b"@" + payload + ("*%05X\n" % crc).encode()
        return b"@" + payload + b"\n"  # no CRC at all

    def _k_truncated(self):
        r = self.r
        data = self._frame(self._payload(self._request()))
        cut = r.randint(0, len(data) - 2)
        # usually the line still ends (a cable glitch); sometimes the rest of the line is lost with its newline
        return data[:cut] + (b"\n" if r.random() < 0.8 else b"")

    def _k_long(self):
        r = self.r
        size = r.randint(MAX + 1, 3 * MAX)
        roll = r.random()
        if roll < 0.4:
            # a "valid" frame with a huge string field: CRC right, line too long
            pad = size - 40
            payload = dump(Obj([("id", self._request_id()), ("op", "status"), ("pad", "x" * pad)])).encode()
            return self._frame(payload)
        if roll < 0.6:
            return b"@" * size + b"\n"
        if roll < 0.8:
            return bytes(r.randint(0x20, 0x7E) for _ in range(64)) * (size // 64 + 1) + b"\n"
        return b"@{\"id\":1,\"op\":\"status\"," + b"\"a\":[" * (size // 5) + b"\n"

    def _k_bytes(self):
        r = self.r
        payload = bytearray(self._payload(self._request()))
        for _ in range(r.randint(1, 3)):
            pos = r.randint(0, len(payload))
            junk = self._pick(_NON_ASCII) if r.random() < 0.6 else bytes([self._pick(_CONTROL)])
            payload[pos:pos] = junk
        payload = bytes(payload)
        if r.random() < 0.2:
            return self._frame(payload, _crc(payload) ^ 1)
        return self._frame(payload)  # CRC over the damaged payload: the ASCII check must catch it

    def _k_json_edge(self):
        r = self.r
        rid = self._fresh_id()
        roll = r.randrange(14)
        if roll == 0:  # deep nesting in a field, or as the payload
            depth = r.randint(6, 14)
            text = dump(Obj([("id", rid), ("op", "status"), ("x", self._nested(depth))]))
            if r.random() < 0.3:
                text = "[" * depth + "]" * depth if r.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
        elif roll == 1:  # huge integers
            big = self._pick((10**18, 2**64, 10**40, 10**200, -(10**300)))
            text = dump(Obj([("id", self._pick((rid, big))), ("op", self._pick(("set_amp", "amp_step", "start"))),
                             ("ch", self._pick((0, big))), ("amp_ua", big), ("steps", -big)]))
        elif roll == 2:  # floats and exponents
            num = self._pick((Raw("1.0"), Raw("1e3"), Raw("1E+3"), Raw("-0.0"), Raw("2.5e-3"), 1.5, 1e300, -1e-300))
            name = self._pick(("id", "ch", "amp_ua", "steps", "minutes", "target_mc", "lease_ms"))
            pairs = [("id", rid), ("op", self._pick(msg.OPS)), ("ch", 0), ("amp_ua", 1000)]
            pairs = [(k, num if k == name else val) for k, val in pairs]
            if name not in ("id", "ch", "amp_ua"):
                pairs.append((name, num))
            text = dump(Obj(pairs))
        elif roll == 3:  # NaN / Infinity as text
            token = self._pick(("NaN", "Infinity", "-Infinity", "nan", "inf", "+1", ".5", "1.", "0x10", "1_000"))
            text = '{"amp_ua":%s,"ch":0,"id":%d,"op":"set_amp"}' % (token, rid)
        elif roll == 4:  # duplicate keys
            key = self._pick(("id", "op", "ch", "amp_ua"))
            pairs = [("id", rid), ("op", "set_amp"), ("ch", 0), ("amp_ua", 1000)]
            pairs.insert(r.randint(0, 4), (key, self._pick((rid + 1, "stop", 1, 2000, "start"))))
            text = dump(Obj(pairs))
        elif roll == 5:  # escaped lone surrogates and other escapes
            esc = self._pick(("\\ud800", "\\udfff", "\\ud83d", "\\ude00x", "\\ud83d\\ude00", "\\u0000", "\\u00e9",
                              "\\uZZZZ", "\\u12", "\\x41", "\\'", "\\/", "\\b\\f\\n\\r\\t"))
            where = self._pick(("op", "level", "proto", "key"))
            if where == "key":
                text = '{"id":%d,"op":"status","k%s":1}' % (rid, esc)
            elif where == "op":
                text = '{"id":%d,"op":"st%s"}' % (rid, esc)
            else:
                op = "heat" if where == "level" else "hello"
                text = '{"id":%d,"%s":"a%s","op":"%s"}' % (rid, where, esc, op)
        elif roll == 6:  # leading zeros, signs
            text = '{"id":%s,"op":"status"}' % self._pick(("01", "-0", "00", "0%d" % rid, "-%d" % rid, "+%d" % rid, "1-2"))
        elif roll == 7:  # trailing / missing commas and colons
            text = self._pick((
                '{"id":%d,"op":"status",}', '{"id":%d "op":"status"}', '{"id" %d,"op":"status"}',
                '{"id":%d,,"op":"status"}', '{"id":%d,"op":"status"', '{"id":%d,"op":["status",]}',
                "{'id':%d,'op':'status'}", '{id:%d,op:"status"}', '{"id":%d,"op":"status"}}',
                '{"id":%d,"op":"status"} {}', '{"id":%d,"op":"status"}//c', '{"id":%d,"op":"stat\tus"}',
            )) % rid
        elif roll == 8:  # non-object payloads
            text = self._pick(("[]", "[1,2]", "1", "-1", '"status"', "null", "true", "", " ", "{}", "[{}]", '""'))
        elif roll == 9:  # literals in the wrong case, truncated literals
            text = '{"id":%d,"op":"heat","off":%s}' % (rid, self._pick(("True", "TRUE", "tru", "nul", "fals", "true", "1")))
        elif roll == 10:  # very long strings and numbers within the line limit
            n = r.randint(100, MAX - 60) if r.random() < 0.5 else MAX - 60 - r.randint(0, 60)
            filler = self._pick(("x" * n, "\\u00e9" * (n // 6), "9" * n))
            if filler[0] == "9":
                text = '{"amp_ua":%s,"ch":0,"id":%d,"op":"set_amp"}' % (filler, rid)
            else:
                field = self._pick(("level", "proto", "interlock", "op"))
                op = {"level": "heat", "proto": "hello", "interlock": "start", "op": filler}[field]
                text = '{"id":%d,"%s":"%s","op":"%s"}' % (rid, field, filler, op) if field != "op" \
                    else '{"id":%d,"op":"%s"}' % (rid, filler)
        elif roll == 11:  # whitespace everywhere
            ws = self._pick((" ", "\t", "\r", "  \t "))
            text = ws + "{" + ws + '"id"' + ws + ":" + ws + str(rid) + ws + "," + ws + '"op":"status"' + ws + "}" + ws
        elif roll == 12:  # raw JSON-alphabet noise
            text = "".join(self._pick('{}[]":,-.09eEtrufalsn\\u ') for _ in range(r.randint(1, 40)))
        else:  # a big but valid object: many keys, lists
            pairs = [("id", rid), ("op", self._pick(msg.OPS))] + [("k%d" % i, i) for i in range(r.randint(10, 80))]
            text = dump(Obj(pairs))
        payload = text.encode()
        if len(payload) + 7 > MAX and r.random() < 0.5:
            payload = payload[: MAX - 7]
        return self._frame(payload)

    def _k_garbage(self):
        r = self.r
        roll = r.random()
        if roll < 0.35:
            return bytes(r.getrandbits(8) for _ in range(r.randint(0, 200)))
        if roll < 0.55:
            return self._pick(_BANNERS)
        if roll < 0.75:
            return ("".join(self._pick("@*{}\"\n\r:,x0F") for _ in range(r.randint(1, 80)))).encode()
        if roll < 0.85:
            return self._pick((b"\n", b"\r\n", b"\n\n\n", b"@\n", b"@{\n", b"*\n", b"@*0000\n", b"@{}*FFFF\n"))
        return bytes(r.randint(0x20, 0x7E) for _ in range(r.randint(1, 120))) + b"\n"

    def _k_noise_prefix(self):
        r = self.r
        noise = self._pick((b"x", b">>> ", b"\x00\xff", b"@", b"@@", b"@{", b"@{\"id\":1*", b"garbage ", b"\r", b"*1234"))
        return noise * r.randint(1, 3) + self._k_request()

    def _k_burst(self):
        """A host pipelining short valid queries (status polling, both channels' settings)."""
        r = self.r
        out = []
        for _ in range(r.randint(2, 12)):
            op = self._pick(("status", "status", "get_stim", "hello", "keepalive"))
            pairs = [("id", self._fresh_id()), ("op", op)]
            if op == "get_stim":
                pairs.insert(0, ("ch", r.randrange(self.channels)))
            out.append(self._frame(dump(Obj(pairs)).encode()))
        return b"".join(out)

    def _k_device_echo(self):
        shape = self._pick(_DEVICE_SHAPES)
        return self._frame(self._payload(shape(self.r, self._request_id())))

    def next(self):
        roll = self.r.random() * self._total
        kind = self._kinds[bisect.bisect_right(self._table, roll)]
        return kind, self._makers[kind]()


# ---- what the device owes for each line the host sent ------------------------------------------


STOP_OPS = (msg.OP_ESTOP, msg.OP_STOP, msg.OP_PAUSE)  # they act whatever the frame carries


def expect_line(line):
    """What the device must answer to one complete line: None (nothing), ("rx", code),
    or ("reply", request_id_or_None, op_or_None)."""
    if line is None:
        return ("rx", msg.E_LINE_TOO_LONG)
    try:
        message = frame.decode_line(line)
    except frame.FrameError as err:
        return ("rx", err.code)
    if message is None or ("op" not in message and ("ev" in message or "ok" in message)):
        return None  # an echo of a reply or event; a frame with an `op` is a request
    op = message.get("op")
    try:
        request_id = msg.request_id_of(message)
    except msg.RequestError:
        # estop, stop and pause act without a valid id too, replying to id null
        return ("reply", None, op if op in STOP_OPS else None)
    return ("reply", request_id, op if isinstance(op, str) else None)


def _printable(text):
    if not isinstance(text, str) or not text:
        return False
    for ch in text:
        if ch < " " or ch > "~":
            return False
    return True


class Failure:
    def __init__(self, check, seed, frame_index, batch, tick, detail):
        self.check = check
        self.seed = seed
        self.frame_index = frame_index
        self.batch = batch
        self.tick = tick
        self.detail = detail

    def __repr__(self):
        return "%s at frame %d (seed %d, batch %d, tick %d): %s" % (
            self.check, self.frame_index, self.seed, self.batch, self.tick, self.detail)


class FuzzResult:
    def __init__(self, seed):
        self.seed = seed
        self.frames = 0
        self.bytes = 0
        self.ticks = 0
        self.kinds = Counter()  # frames generated, by kind
        self.replies = Counter()  # "ok" or the error code
        self.ok_by_op = Counter()
        self.rx_errors = Counter()  # rx_error events by code
        self.rx_unreported = 0  # damaged lines past a tick's cap of rx_error events (counted only)
        self.events = Counter()  # every event by name
        self.ignored_lines = 0  # complete lines the device owes nothing for (noise, echoes)
        self.entered_running = 0
        self.heat_started = 0
        self.faults = Counter()  # faults latched (by name) over the run
        self.failures = []  # the first `keep` failures
        self.first = {}  # check -> its first failure, however many came before
        self.failure_counts = Counter()
        self.elapsed_s = 0.0
        self.max_tick_ms = 0.0
        self.tx_dropped = 0

    @property
    def ok(self):
        return not self.failure_counts

    def failed(self, group):
        """Failures of one check group ("a".."e")."""
        names = CHECK_GROUPS[group]
        return [f for f in self.failures if f.check in names]

    def first_by_check(self):
        return self.first

    def summary(self):
        rate = self.frames / self.elapsed_s if self.elapsed_s else 0.0
        lines = [
            "fuzz seed %d: %d frames, %d bytes, %d ticks (%.0f s simulated) in %.1f s: %.0f frames/s, %.0f KB/s"
            % (self.seed, self.frames, self.bytes, self.ticks, self.ticks * TICK_MS / 1000.0, self.elapsed_s, rate,
               self.bytes / 1024.0 / self.elapsed_s if self.elapsed_s else 0.0),
            "  frames by kind: " + _fmt(self.kinds),
            "  replies: " + _fmt(self.replies),
            "  ok replies by op: " + _fmt(self.ok_by_op),
            "  rx_error events: " + _fmt(self.rx_errors) + " (%d more over the per-tick cap); events: "
            % self.rx_unreported + _fmt(self.events),
            "  lines ignored (noise, echoes): %d; entered RUNNING %d times; heat started %d times; tx_dropped %d"
            % (self.ignored_lines, self.entered_running, self.heat_started, self.tx_dropped),
            "  faults latched: " + (_fmt(self.faults) or "none"),
            "  slowest tick: %.2f ms (wall, CPython)" % self.max_tick_ms,
        ]
        if self.failure_counts:
            lines.append("  FAILED checks: " + _fmt(self.failure_counts))
            for check, f in sorted(self.first_by_check().items(), key=lambda kv: kv[1].frame_index):
                lines.append("    first %r" % f)
                lines.append("      replay: python -m tests.fuzz_frames --seed %d --frames %d; "
                             "frames: --seed %d --show %d" % (f.seed, f.frame_index + 1, f.seed, f.frame_index))
        else:
            lines.append("  all checks passed")
        return "\n".join(lines)


def _fmt(counter):
    return ", ".join("%s %d" % (k, v) for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


class Fuzzer:
    """Feeds FrameGen output to one simulated device and checks it; see the module docstring."""

    def __init__(self, seed, device=None, board=None, batch_frames=BATCH_FRAMES, keep=50, stop_on_failure=False):
        if device is None:
            from sim.board import SimBoard

            board = SimBoard(seed=1)
            device = board.build_device()
        self.board = board
        self.device = device
        self.serial = device.link.serial
        self.advance = board.advance if board is not None else device.clock.advance
        self.pulse_out = device.pulse_out
        self.heater = board.heater if board is not None else None
        self._rx_capped = False  # this tick's damaged lines went past the cap of rx_error events
        self.gen = FrameGen(seed, channels=len(device.channels))
        self.seed = seed
        self.batch_frames = batch_frames
        self.keep = keep
        self.stop_on_failure = stop_on_failure
        self.result = FuzzResult(seed)
        self.host_in = frame.LineReader(crlf=True)  # mirror of the device's reader (firmware/link.py): what the device owes
        self.host_out = frame.LineReader()  # the device's output, as a host reads it
        # answers owed, oldest first: [frame index, stream offset of the line's newline, owed]
        self.expected = []
        self.sent = 0  # bytes written to the device so far
        self.read = 0  # bytes the device has read so far
        self.batch = 0
        self.tick_no = 0
        self._last_internal = False
        self._clock = time.perf_counter
        self._chunks = []
        self._ends = [0]  # global stream offset where each frame of the batch ends
        self._first = 0

    # -- failures

    def fail(self, check, frame_index, detail):
        res = self.result
        res.failure_counts[check] += 1
        if len(res.failures) < self.keep or check not in res.first:
            failure = Failure(check, self.seed, frame_index, self.batch, self.tick_no, detail)
            res.first.setdefault(check, failure)
            if len(res.failures) < self.keep:
                res.failures.append(failure)

    def _frame_index_at(self, offset):
        """The index of the frame holding stream byte `offset - 1` (the last byte read)."""
        i = bisect.bisect_left(self._ends, offset)
        return self._first + min(i, max(len(self._ends) - 1, 0))

    def frame_bytes(self, index):
        i = index - self._first
        if 0 <= i < len(self._chunks):
            data = self._chunks[i]
            return data if len(data) <= 200 else data[:120] + b"...(%d bytes)" % len(data)
        return "(an earlier batch)"

    # -- one batch

    def run_batch(self, count):
        gen = self.gen
        res = self.result
        first = res.frames
        chunks = []
        ends = []
        offset = self.sent
        expected = self.expected
        host_in = self.host_in
        for i in range(count):
            kind, data = gen.next()
            res.kinds[kind] += 1
            chunks.append(data)
            lines = host_in.feed(data)
            if lines:
                pos = -1
                for line in lines:
                    pos = data.find(b"\n", pos + 1)
                    owed = expect_line(line)
                    if owed is None:
                        res.ignored_lines += 1
                    else:
                        expected.append((first + i, offset + pos, owed))
            offset += len(data)
            ends.append(offset)
        self._chunks, self._ends, self._first = chunks, ends, first
        res.frames += count
        data = b"".join(chunks)
        res.bytes += len(data)
        self.serial.host_write(data)
        self.sent = offset
        link = self.device.link
        while self.read < self.sent or link.waiting_lines:
            pending_before = self.sent - self.read
            deferred_before = link.deferred_ticks
            waiting_before = link.waiting_lines
            self._tick()
            got = pending_before - len(self.serial._rx)
            self.read += got
            frame_index = self._frame_index_at(self.read)
            deferred = link.deferred_ticks != deferred_before
            # a tick reads all it may, unless it held lines back for room in the output queue
            if got < min(pending_before, RX_PER_TICK) and not deferred:
                self.fail("stall", frame_index, "tick read %d of %d pending bytes" % (got, pending_before))
            if deferred and link.waiting_lines >= waiting_before and got == 0:
                self.fail("stall", frame_index, "lines held back and none handled: %d waiting" % link.waiting_lines)
            self._after_tick(frame_index)
        self.batch += 1

    def _tick(self):
        dev = self.device
        self._state_before = dev.supervisor.state
        self._pulses_before = sum(self.pulse_out.pulse_count) if hasattr(self.pulse_out, "pulse_count") else 0
        self._dropped_before = dev.link.tx_dropped
        self._changes_before = dev.supervisor.changes
        self._read_before = self.read
        heat = dev.heat
        self._heat_before = heat.state if heat is not None else "off"
        start = self._clock()
        try:
            dev.tick()
        except Exception as exc:  # (a) tick() must never raise
            self._raised = exc
        else:
            self._raised = None
        took = (self._clock() - start) * 1000.0
        if took > self.result.max_tick_ms:
            self.result.max_tick_ms = took
        self.advance(TICK_MS)
        self.tick_no += 1
        self.result.ticks += 1

    def _after_tick(self, frame_index):
        dev = self.device
        res = self.result
        supervisor = dev.supervisor
        if self._raised is not None:
            self.fail("tick_raised", frame_index, "%s: %s" % (type(self._raised).__name__, self._raised))
        dropped = dev.link.tx_dropped - self._dropped_before
        # past RX_ERROR_EVENTS_PER_TICK damaged lines in a tick, the rest are counted, not reported
        self._rx_capped = dev.link._rx_error_events >= RX_ERROR_EVENTS_PER_TICK
        # (b), (c): the device's output
        self._accepted = set()  # ops of this tick's accepted requests
        self._state_events = []
        self._lost = []  # answers owed but lost to a dropped message
        out = self.serial.host_read()
        if out:
            for line in self.host_out.feed(out):
                self._check_line(line, frame_index, dropped)
        # every line the device has read by now must have been answered, but for those it
        # holds back for room in its output queue (the last lines it read)
        expected = self.expected
        held = 0
        for line in dev.link._lines:
            if expect_line(line) is not None:
                held += 1
        due = 0
        while due < len(expected) and expected[due][1] < self.read:
            due += 1
        for _ in range(due - held):
            index, _, owed = expected.pop(0)
            if owed[0] == "rx" and self._rx_capped:
                res.rx_unreported += 1
            elif dropped:
                self._lost.append((index, owed))
            else:
                self.fail("reply_missing", index, "no answer to %r (frame %r)" % (owed, self.frame_bytes(index)))
        changed = supervisor.changes != self._changes_before
        if changed and supervisor.state_name not in self._state_events[-1:]:
            if dropped:
                self._lost.append((frame_index, ("event", "state", supervisor.state_name)))
            else:
                self.fail("state_event_missing", frame_index, "state changed to %s (%s) but the tick sent state events %r"
                          % (supervisor.state_name, supervisor.reason, self._state_events))
        # (e) bounded, never lost
        if dropped:
            res.tx_dropped += dropped
            lo = self._frame_index_at(self._read_before + 1)
            self.fail("tx_dropped", frame_index,
                      "%d device message(s) dropped in one tick although the host reads every tick "
                      "(frames %d..%d read in it); lost: %s" % (dropped, lo, frame_index, _show_lost(self._lost)))
        if dev.link._tx:
            self.fail("tx_queue_not_empty", frame_index, "%d bytes left in the output queue" % len(dev.link._tx))
        # (a) internal_error
        internal = sup.F_INTERNAL in supervisor.faults
        if internal and not self._last_internal:
            self.fail("internal_error", frame_index, "internal_error latched: %s" % supervisor.fault_msg)
        self._last_internal = internal
        # (d) state consistency
        state = supervisor.state
        if (state == sup.FAULT) != bool(supervisor.faults):
            self.fail("fault_state", frame_index, "state %s with faults %r" % (supervisor.state_name, supervisor.faults))
        if state == sup.FAULT and self._state_before != sup.FAULT:
            for name in supervisor.faults:
                res.faults[name] += 1
        if state != sup.RUNNING:
            for ch in dev.channels:
                if ch.amp_ua:
                    self.fail("output_outside_running", frame_index,
                              "channel %d amp_ua %d in state %s" % (ch.index, ch.amp_ua, supervisor.state_name))
            commanded = getattr(self.pulse_out, "last_commanded_ua", None)
            if commanded and any(commanded):
                self.fail("output_outside_running", frame_index,
                          "driver still commands %r in state %s" % (commanded, supervisor.state_name))
            if self.heater is not None and self.heater.on():
                self.fail("heater_outside_running", frame_index, "heater on in state %s" % supervisor.state_name)
        if self._state_before != sup.RUNNING and hasattr(self.pulse_out, "pulse_count"):
            if sum(self.pulse_out.pulse_count) != self._pulses_before:
                self.fail("pulse_outside_running", frame_index,
                          "pulses fired in a tick that began in %s" % sup.STATE_NAMES[self._state_before])
        accepted = self._accepted
        if state == sup.RUNNING and self._state_before != sup.RUNNING:
            res.entered_running += 1
            # with a dropped reply the host cannot tell; the drop is the failure then
            if "start" not in accepted and "resume" not in accepted and not dropped:
                self.fail("started_without_request", frame_index,
                          "entered RUNNING from %s without an accepted start/resume in the tick"
                          % sup.STATE_NAMES[self._state_before])
        heat = dev.heat
        if heat is not None:
            heating = heat.state not in ("off", "fault")
            if heating and self._heat_before in ("off", "fault"):
                res.heat_started += 1
                by_program = dev.program is not None and dev.program.has_heat  # its start or a heat phase
                if "heat" not in accepted and not by_program and not dropped:
                    self.fail("heat_outside_session", frame_index,
                              "heat started without an accepted heat request or a program with heat")
            if heating and state not in (sup.RUNNING, sup.PAUSED):
                self.fail("heat_outside_session", frame_index, "heat %s in state %s" % (heat.state, supervisor.state_name))

    def _check_line(self, line, frame_index, dropped):
        """Check one line from the device (shape, codes) and pair it with the answer owed."""
        res = self.result
        if line is None:
            self.fail("device_line_too_long", frame_index, "the device sent a line over %d bytes" % MAX)
            return
        try:
            m = frame.decode_line(line)
        except frame.FrameError as err:
            self.fail("device_line_damaged", frame_index, "%s: %s in %r" % (err.code, err.message, line[:200]))
            return
        if m is None:
            self.fail("device_line_not_a_frame", frame_index, repr(line[:200]))
            return
        if "ev" in m:
            ev = m["ev"]
            res.events[ev] += 1
            if ev not in EVENTS:
                self.fail("event_shape", frame_index, "unknown event %r" % (m,))
                return
            if ev == msg.EV_STATE:
                self._state_events.append(m.get("state"))
            if ev != msg.EV_RX_ERROR:
                return
            code = m.get("err")
            res.rx_errors[code] += 1
            self._match(("rx", code), m, frame_index, dropped)
            if code not in RX_CODES or not _printable(m.get("msg")) or "id" in m:
                self.fail("rx_error_shape", self._index, "%r for frame %r" % (m, self.frame_bytes(self._index)))
            return
        if "ok" not in m:
            self.fail("device_line_not_a_message", frame_index, repr(m))
            return
        op = self._match(("reply",), m, frame_index, dropped)
        index = self._index  # the request this answers (the tick's last frame if unmatched)
        ok = m["ok"]
        if ok is True:
            res.replies["ok"] += 1
            if "err" in m:
                self.fail("reply_shape", index, "ok reply with err: %r" % (m,))
        elif ok is False:
            code = m.get("err")
            res.replies[code] += 1
            if code not in REPLY_CODES:
                self.fail("reply_code", index, "unknown error code in %r" % (m,))
            elif code == msg.E_INTERNAL:
                self.fail("internal_reply", index, "the device could not frame a reply: %r; request frame %r"
                          % (m, self.frame_bytes(index)))
            if not _printable(m.get("msg")):
                self.fail("reply_msg", index, "msg is not non-empty printable ASCII: %r; request frame %r"
                          % (m, self.frame_bytes(index)))
            if set(m) != {"id", "ok", "err", "msg"}:
                self.fail("reply_shape", index, "error reply keys %r" % sorted(m))
        else:
            self.fail("reply_shape", index, "ok is %r" % (ok,))
        if ok is True and op is not None:
            res.ok_by_op[op] += 1
            self._accepted.add(op)

    def _match(self, got, m, frame_index, dropped):
        """Pair a reply or rx_error with the oldest answer owed; returns the request's op for a reply."""
        expected = self.expected
        self._index = frame_index
        if got[0] == "reply" and self._rx_capped:
            # the damaged lines past this tick's cap of rx_error events: counted, not reported
            while expected and expected[0][2][0] == "rx":
                expected.pop(0)
                self.result.rx_unreported += 1
        skip = 0
        if dropped:
            # some messages of this tick were dropped: the missing ones are lost, not out of order
            while skip < len(expected) and not self._matches(expected[skip][2], got, m):
                skip += 1
        if skip >= len(expected) or not self._matches(expected[skip][2], got, m):
            head = expected[0] if expected else None
            self.fail("reply_mismatch", head[0] if head else frame_index,
                      "device sent %r, host expected %r (frame %r)"
                      % (m, head[2] if head else "nothing", self.frame_bytes(head[0]) if head else b""))
            return None
        for index, _, owed in expected[:skip]:
            self._lost.append((index, owed))
        del expected[:skip]
        index, _, owed = expected.pop(0)
        self._index = index
        if owed[0] != "reply":
            return None
        request_id, op = owed[1], owed[2]
        if request_id is None:
            if op in STOP_OPS:  # handled as with a good id (a pause in IDLE is still bad_state)
                if m.get("err") in (msg.E_BAD_REQUEST, msg.E_UNKNOWN_OP):
                    self.fail("reply_code", index, "%s with a bad id refused for it: %r" % (op, m))
                return op
            if m.get("err") != msg.E_BAD_REQUEST:
                self.fail("reply_code", index, "bad id answered with %r" % (m,))
            return None
        code = m.get("err")
        if op not in msg.OPS and code != msg.E_UNKNOWN_OP:
            self.fail("reply_code", index, "unknown op %r answered with %r" % (op, m))
        elif op in msg.OPS and code == msg.E_UNKNOWN_OP:
            self.fail("reply_code", index, "known op %r answered with %r" % (op, m))
        return op

    @staticmethod
    def _matches(owed, got, m):
        if owed[0] != got[0]:
            return False
        if owed[0] == "rx":
            return owed[1] == got[1]
        return m.get("id") == owed[1] and (owed[1] is not None or m.get("ok") is False or owed[2] in STOP_OPS)

    # -- the whole run

    def run(self, frames, progress=None, progress_every=100000):
        res = self.result
        started = self._clock()
        next_report = progress_every
        while res.frames < frames:
            self.run_batch(min(self.batch_frames, frames - res.frames))
            if self.stop_on_failure and res.failure_counts:
                break
            if progress is not None and res.frames >= next_report:
                next_report += progress_every
                res.elapsed_s = self._clock() - started
                progress(res)
        for _ in range(3):  # a few quiet ticks: timers run, nothing is left unsaid
            self._tick()
            self._after_tick(max(res.frames - 1, 0))
        res.elapsed_s = self._clock() - started
        return res


def _show_lost(lost):
    if not lost:
        return "nothing owed (rx_error or state events)"
    parts = ["frame %d %r" % (index, owed) for index, owed in lost[:6]]
    if len(lost) > 6:
        parts.append("and %d more" % (len(lost) - 6))
    return ", ".join(parts)


def run_fuzz(frames, seed, device=None, board=None, batch_frames=BATCH_FRAMES, stop_on_failure=False, progress=None,
             progress_every=100000, keep=50):
    """Fuzz one simulated device with `frames` random frames from `seed`; returns a FuzzResult.

    `device` defaults to SimBoard().build_device(); pass `board` with it so time
    moves the pad model too (otherwise only device.clock advances)."""
    fuzzer = Fuzzer(seed, device=device, board=board, batch_frames=batch_frames, keep=keep,
                    stop_on_failure=stop_on_failure)
    return fuzzer.run(frames, progress=progress, progress_every=progress_every)


def show(seed, index, batch_frames=BATCH_FRAMES):
    """The frames of the batch holding frame `index` (generation only, no device)."""
    gen = FrameGen(seed)
    batch_start = index - index % batch_frames
    out = []
    for i in range(batch_start + batch_frames):
        kind, data = gen.next()
        if i >= batch_start:
            out.append((i, kind, data))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_frames", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--batch", type=int, default=BATCH_FRAMES, help="frames written to the device at once")
    parser.add_argument("--progress", type=int, default=100000, help="print progress every N frames")
    parser.add_argument("--stop-on-failure", action="store_true")
    parser.add_argument("--show", type=int, metavar="INDEX", help="print the batch holding frame INDEX and exit")
    args = parser.parse_args(argv)
    if args.show is not None:
        for i, kind, data in show(args.seed, args.show, args.batch):
            mark = ">>" if i == args.show else "  "
            print("%s %8d %-12s %r" % (mark, i, kind, data))
        return 0

    def progress(res):
        rate = res.frames / res.elapsed_s if res.elapsed_s else 0.0
        left = (args.frames - res.frames) / rate if rate else 0.0
        print("  %9d frames  %6.0f frames/s  %5.0f s elapsed  ~%4.0f s left  failures %d"
              % (res.frames, rate, res.elapsed_s, left, sum(res.failure_counts.values())), flush=True)

    print("fuzzing a simulated device: %d frames, seed %d, %d frames per batch"
          % (args.frames, args.seed, args.batch), flush=True)
    res = run_fuzz(args.frames, args.seed, batch_frames=args.batch, stop_on_failure=args.stop_on_failure,
                   progress=progress, progress_every=args.progress)
    print(res.summary())
    print("throughput: %.0f frames/s (%.1f us per frame)" % (res.frames / res.elapsed_s, 1e6 * res.elapsed_s / res.frames))
    if res.failure_counts:
        print("FAILED: %d failed checks (seed %d); the replay lines above rerun each from the start"
              % (sum(res.failure_counts.values()), args.seed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
