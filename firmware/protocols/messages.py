"""Protocol messages: version, operations, error codes and field checks.

Requests:  {"id": <int>, "op": <name>, ...fields}
Replies:   {"id": <same>, "ok": true, ...fields}
           {"id": <same>, "ok": false, "err": <code>, "msg": <text>}
Events:    {"ev": <name>, ...fields}        (no id: not a reply to anything)
"""

from firmware.compat import const
from firmware.protocols.jsondec import NonInteger

PROTO_MAJOR = const(0)
PROTO_MINOR = const(4)
PROTO_VERSION = "%d.%d" % (PROTO_MAJOR, PROTO_MINOR)
SUPPORTED_MAJORS = (PROTO_MAJOR,)

MAX_REQUEST_ID = const(0x7FFFFFFF)

OP_HELLO = "hello"
OP_STATUS = "status"
OP_START = "start"
OP_STOP = "stop"
OP_ESTOP = "estop"
OP_PAUSE = "pause"
OP_RESUME = "resume"
OP_SET_AMP = "set_amp"
OP_AMP_STEP = "amp_step"
OP_SET_STIM = "set_stim"
OP_GET_STIM = "get_stim"
OP_KEEPALIVE = "keepalive"
OP_CLEAR_FAULT = "clear_fault"
OP_HEAT = "heat"
OP_TELEMETRY = "telemetry"
OP_SETTINGS = "settings"
OP_MAINTENANCE = "maintenance"
OP_PROGRAMS = "programs"  # list the built-in presets and the stored programs
OP_PROGRAM_GET = "program_get"
OP_PROGRAM_PUT = "program_put"  # upload (clinician)
OP_PROGRAM_DELETE = "program_delete"  # (clinician)
OP_LOG_INFO = "log_info"
OP_LOG_FETCH = "log_fetch"
OP_LOG_ERASE = "log_erase"  # (clinician)
OP_PAIN = "pain"  # a pain score (0-10) before or after a session, into the session log
OP_PIN = "pin"  # set, change or remove the clinician PIN
OPS = (
    OP_HELLO,
    OP_STATUS,
    OP_START,
    OP_STOP,
    OP_ESTOP,
    OP_PAUSE,
    OP_RESUME,
    OP_SET_AMP,
    OP_AMP_STEP,
    OP_SET_STIM,
    OP_GET_STIM,
    OP_KEEPALIVE,
    OP_CLEAR_FAULT,
    OP_HEAT,
    OP_TELEMETRY,
    OP_SETTINGS,
    OP_MAINTENANCE,
    OP_PROGRAMS,
    OP_PROGRAM_GET,
    OP_PROGRAM_PUT,
    OP_PROGRAM_DELETE,
    OP_LOG_INFO,
    OP_LOG_FETCH,
    OP_LOG_ERASE,
    OP_PAIN,
    OP_PIN,
)

# The fields each request takes besides id, op and pin (every request may carry the clinician
# PIN: the lock reads it where it guards, docs/protocol.md). Any other field is refused with
# bad_field, so a misspelt "sesion_ms" is an error, not a silent default. Not checked: hello
# (a newer host still learns the version from the reply) and estop, stop and pause, which act
# whatever else they carry: a stop is never refused.
FIELDS = {
    OP_HELLO: None,
    OP_STATUS: (),
    OP_START: ("amp_ua", "lease_ms", "session_ms", "ramp_ms", "interlock", "program"),
    OP_STOP: None,
    OP_ESTOP: None,
    OP_PAUSE: None,
    OP_RESUME: (),
    OP_SET_AMP: ("ch", "amp_ua"),
    OP_AMP_STEP: ("ch", "steps"),
    OP_SET_STIM: ("ch", "stim"),
    OP_GET_STIM: ("ch",),
    OP_KEEPALIVE: (),
    OP_CLEAR_FAULT: (),
    OP_HEAT: ("level", "target_mc", "minutes", "off"),
    OP_TELEMETRY: ("every_ms",),
    OP_SETTINGS: ("set",),
    OP_MAINTENANCE: ("on",),
    OP_PROGRAMS: (),
    OP_PROGRAM_GET: ("name",),
    OP_PROGRAM_PUT: ("program",),
    OP_PROGRAM_DELETE: ("name",),
    OP_LOG_INFO: (),
    OP_LOG_FETCH: ("from_seq", "max_bytes"),
    OP_LOG_ERASE: (),
    OP_PAIN: ("score", "when"),
    OP_PIN: ("new", "remove"),
}
ANY_REQUEST_FIELDS = ("id", "op", "pin")


def check_fields(op, message):
    """Raise RequestError(E_BAD_FIELD) naming the first field `op` does not take."""
    taken = FIELDS.get(op)
    if taken is None:
        return
    for key in message:
        if key not in taken and key not in ANY_REQUEST_FIELDS:
            raise RequestError(
                E_BAD_FIELD,
                "unknown field %s in %s; %s takes %s" % (
                    _show(key), op, op, ", ".join(taken) + " and pin" if taken else "no fields but pin"),
            )


# Error codes. Stable strings: hosts and scripts branch on them.
E_BAD_FRAME = "bad_frame"  # line started like a frame but is malformed
E_BAD_CHECKSUM = "bad_checksum"
E_BAD_JSON = "bad_json"
E_LINE_TOO_LONG = "line_too_long"
E_BAD_REQUEST = "bad_request"  # no valid id or op
E_UNKNOWN_OP = "unknown_op"
E_BAD_FIELD = "bad_field"  # missing field or wrong type
E_OUT_OF_RANGE = "out_of_range"  # value beyond a limit
E_BAD_STATE = "bad_state"  # not allowed in the current state
E_VERSION = "version"  # protocol major version not spoken
E_ENVELOPE = "envelope"  # a setting or amplitude outside the safety envelope
E_NOT_FOUND = "not_found"  # no program (or record) of that name
E_STORAGE = "storage"  # the flash store is full or failed; nothing was half-written
E_LOCKED = "locked"  # the clinician PIN is needed for this request
E_BAD_PIN = "bad_pin"  # wrong PIN (the reply says how many tries before a wait)
E_TRY_LATER = "try_later"  # too many wrong PINs, or pain scores: the reply says how long to wait
E_INTERNAL = "internal"  # the device could not build its reply (a firmware bug; nothing was lost)

EV_RX_ERROR = "rx_error"  # a damaged line was dropped; no id can be trusted
EV_STATE = "state"  # the supervisor changed state (with the reason)
EV_TELEMETRY = "telemetry"  # periodic status, at the rate the host asked for
EV_HEAT = "heat"  # the heat controller changed state (heating, holding, off with the reason, fault)


class RequestError(Exception):
    """A request that cannot be carried out; becomes an error reply."""

    def __init__(self, code, message):
        super().__init__(message)  # MicroPython: Exception has no __init__ attribute
        self.code = code
        self.message = message


def request(request_id, op, fields=None):
    message = {"id": request_id, "op": op}
    if fields:
        for key in fields:
            message[key] = fields[key]
    return message


def reply_ok(request_id, fields=None):
    message = {"id": request_id, "ok": True}
    if fields:
        for key in fields:
            message[key] = fields[key]
    return message


def reply_error(request_id, code, text):
    return {"id": request_id, "ok": False, "err": code, "msg": text}


def event(name, fields=None):
    message = {"ev": name}
    if fields:
        for key in fields:
            message[key] = fields[key]
    return message


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def request_id_of(message):
    """The request id, or raise RequestError if it is missing or invalid."""
    request_id = message.get("id")
    if not is_int(request_id) or request_id < 1 or request_id > MAX_REQUEST_ID:
        raise RequestError(E_BAD_REQUEST, "id must be an integer 1..%d, got %s" % (MAX_REQUEST_ID, _show(request_id)))
    return request_id


def int_field(message, name, low, high, default=None):
    """Read an integer field and check it against [low, high], naming the limit broken. A field
    sent as null is refused as a value, not taken for a missing one (the default)."""
    if name in message:
        value = message[name]
    elif default is None:
        raise RequestError(E_BAD_FIELD, "missing field %s (integer %d..%d)" % (name, low, high))
    else:
        value = default
    if not is_int(value):
        raise RequestError(E_BAD_FIELD, "%s must be an integer, got %s" % (name, _show(value)))
    if value < low:
        raise RequestError(E_OUT_OF_RANGE, "%s %s is below the minimum %d" % (name, _show(value), low))
    if value > high:
        raise RequestError(E_OUT_OF_RANGE, "%s %s exceeds the limit %d" % (name, _show(value), high))
    return value


def channel_amp(values, index, limit_ua):
    """One channel's amplitude of a list such as start's amp_ua, named by its place: amp_ua[1]."""
    name = "amp_ua[%d]" % index
    return int_field({name: values[index]}, name, 0, limit_ua)


def int_field_or_zero(message, name, low, high, zero_means, default=None):
    """int_field where 0 is allowed too (it turns something off): a refusal says so."""
    value = message[name] if name in message else default
    if is_int(value) and value == 0:
        return 0
    try:
        return int_field(message, name, low, high, default)
    except RequestError as err:
        raise RequestError(err.code, "%s (or 0: %s)" % (err.message, zero_means))


def parse_version(text):
    """'0.1' -> (0, 1); raises RequestError on anything else."""
    if not isinstance(text, str):
        raise RequestError(E_BAD_FIELD, "proto must be a string like %s" % PROTO_VERSION)
    parts = text.split(".")
    if len(parts) != 2 or not _digits(parts[0]) or not _digits(parts[1]) or len(text) > 11:
        raise RequestError(E_BAD_FIELD, "proto must look like MAJOR.MINOR, got %s" % _show(text))
    return int(parts[0]), int(parts[1])


def _digits(text):
    """A non-empty run of ASCII digits. (CPython's str.isdigit() also accepts a
    superscript two and other non-ASCII digits, which int() then rejects or reads.)"""
    if not text:
        return False
    for ch in text:
        if ch < "0" or ch > "9":
            return False
    return True


SHOW_MAX = const(40)


def clip(text, limit=SHOW_MAX):
    """`text` as printable ASCII of at most `limit` characters, the same on every runtime.

    Received values and exception texts end up in replies. Escaping here keeps a
    reply within the frame limit (a non-ASCII character costs up to 12 bytes on
    the wire) and identical under CPython and MicroPython, whose repr() differ.
    An astral character is written as its UTF-16 surrogate pair, which is what
    MicroPython's json decoder hands over for it.
    """
    out = []
    size = 0
    for ch in text:
        code = ord(ch)
        if 0x20 <= code <= 0x7E:
            piece = ch
        elif code <= 0xFF:
            piece = "\\x%02x" % code
        elif code <= 0xFFFF:
            piece = "\\u%04x" % code
        else:
            code -= 0x10000
            piece = "\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    text = "".join(out)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _show(value):
    """A short rendering of a received value for an error text (see `clip`)."""
    if value is None or value is True or value is False:
        text = "null" if value is None else ("true" if value else "false")  # as the host wrote it: JSON
    elif isinstance(value, int):
        text = "%d" % value
    elif isinstance(value, NonInteger):
        text = value.text  # as sent: 1.5, 2e3
    elif isinstance(value, float):
        text = "%.6g" % value  # repr(float) differs between runtimes; %.6g does not
    elif isinstance(value, str):
        text = "'" + value + "'"
    elif isinstance(value, list):
        text = "a list of %d items" % len(value)
    elif isinstance(value, dict):
        text = "an object with %d keys" % len(value)  # dict order differs between runtimes
    else:
        text = type(value).__name__
    return clip(text)
