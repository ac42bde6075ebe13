"""Scenario files: validate up front, then run a simulated device as fast as possible.

A scenario is checked completely before the run starts, so a typo in a fault
name or a malformed step is an error naming the step, not a surprise at minute
20. Validation turns seconds into integer milliseconds once (`normalize`), and
the runner only ever sees that normalized form: both runtimes run exactly the
same integers. The optional "expect" list (`sim.expect`, CPython only) is
validated here too and kept as written; the run ignores it, `sim.runner.check`
evaluates it over the trace afterwards.
"""

from firmware.protocols import frame
from firmware.protocols.messages import MAX_REQUEST_ID
from sim import audit as audit_mod
from sim import faults
from sim.board import SimBoard
from sim.trace import trace_line

TICK_MS = 10
TRACE_EVERY_MS = 100
MAX_DURATION_S = 7 * 24 * 3600
AUTO_ID_BASE = 1000000  # ids given to "send" steps that carry none
STEP_KINDS = ("send", "raw", "fault", "clear")
TOP_KEYS = ("duration_s", "seed", "start_ms", "channels", "description", "steps", "expect")
INFINITY = float("inf")
DESCRIPTION_MAX = 2000  # characters: a paragraph or two (the library's longest is under 600)


class ScenarioError(Exception):
    """A scenario that is not valid. When it has several mistakes, the text is a heading line
    and then one indented line per mistake, each naming its place (steps[i], expect[i], a key)."""


def _is_nan(value):
    return value != value  # NaN is the one value unequal to itself (no math.isnan needed on MicroPython)


def clip_text(text, most=60):
    """A value's text for a message, a long one cut short (a 400-digit number is still named)."""
    return text if len(text) <= most else text[: most - 3] + "..."


def _number(value, where, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError("%s must be a number of seconds, got %r" % (where, value))
    if _is_nan(value):
        raise ScenarioError("%s is NaN; it must be a number of seconds in %r..%r" % (where, low, high))
    if value < low or value > high:
        raise ScenarioError("%s is %r, outside %r..%r" % (where, value, low, high))
    return int(value * 1000 + 0.5)


def _int(value, where, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError("%s must be an integer, got %r" % (where, value))
    if value < low or value > high:
        raise ScenarioError("%s is %d, outside %d..%d" % (where, value, low, high))
    return value


def _description(value):
    if not isinstance(value, str):
        raise ScenarioError("description must be a string (free text), got %s" % clip_text(repr(value)))
    if len(value) > DESCRIPTION_MAX:
        raise ScenarioError("description is %d characters long; at most %d" % (len(value), DESCRIPTION_MAX))
    return value


def _checked(mistakes, fallback, check, *args):
    """check(*args), or `fallback` with the check's ScenarioError noted in `mistakes`, so that
    the rest of the file is still checked and every mistake is reported at once."""
    try:
        return check(*args)
    except ScenarioError as err:
        mistakes.append(str(err))
        return fallback


def normalize(scenario):
    """Check a parsed scenario and return its normalized form (integers only).

    Every mistake is collected before anything is raised, so one look at the file shows all
    of them: a ScenarioError with one line per mistake (a lone mistake is its line alone).
    """
    if not isinstance(scenario, dict):
        raise ScenarioError("a scenario must be a JSON object")
    mistakes = []
    _keys_twice(scenario, "", mistakes)
    for key in scenario:
        if key not in TOP_KEYS:
            mistakes.append("unknown key %r; allowed: %s" % (key, ", ".join(TOP_KEYS)))
    # An invalid duration or channel count is noted, and the rest is checked against the widest
    # valid value: no mistake is invented, and the others are still found.
    duration_ms = MAX_DURATION_S * 1000
    if "duration_s" not in scenario:
        mistakes.append("missing duration_s")
    else:
        duration_ms = _checked(mistakes, duration_ms, _number, scenario["duration_s"], "duration_s", 0.01,
                               MAX_DURATION_S)
    seed = _checked(mistakes, 1, _int, scenario.get("seed", 1), "seed", 0, 0xFFFFFFFF)
    start_ms = _checked(mistakes, 0, _int, scenario.get("start_ms", 0), "start_ms", 0, (1 << 30) - 1)
    channels = _checked(mistakes, 2, _int, scenario.get("channels", 2), "channels", 1, 2)
    if "description" in scenario:
        _checked(mistakes, None, _description, scenario["description"])
    steps = scenario.get("steps", [])
    timed = []  # (normalized step, its index in the file)
    if not isinstance(steps, list):
        mistakes.append("steps must be a list")
    else:
        for index in range(len(steps)):
            step = _checked(mistakes, None, _normalize_step, steps[index], "steps[%d]" % index, duration_ms,
                            channels)
            if step is not None:
                timed.append((step, index))
    # Stable sort by time: steps at the same time keep their file order.
    timed = sorted(timed, key=lambda pair: (pair[0]["at_ms"], pair[1]))
    _clears_without_fault(timed, mistakes)
    normalized = {
        "duration_ms": duration_ms,
        "seed": seed,
        "start_ms": start_ms,
        "channels": channels,
        "steps": [pair[0] for pair in timed],
        "expect": [],
    }
    if "expect" in scenario:
        normalized["expect"] = _expectations(scenario["expect"], normalized["steps"], duration_ms, channels, mistakes)
    if len(mistakes) == 1:
        raise ScenarioError(mistakes[0])
    if mistakes:
        raise ScenarioError("%d mistakes:\n  %s" % (len(mistakes), "\n  ".join(mistakes)))
    return normalized


def _expectations(items, steps, duration_ms, channels, mistakes):
    """The "expect" list as written; each malformed expectation adds its one mistake."""
    from sim import expect  # CPython only: the checks run on the host, after the run

    if not isinstance(items, list):
        mistakes.append("expect must be a list of expectations")
        return []
    for index in range(len(items)):
        where = "expect[%d]" % index
        found = _non_finite(items[index], where)
        if found is None:
            found = expect.mistake(index, items[index], steps, duration_ms, channels)
        if found is not None:
            mistakes.append(found)
    return list(items)


def _non_finite(value, where):
    """NaN and Infinity (JSON extensions Python's parser accepts) nowhere in `value`: as a time,
    a bound or a value to compare they would make no sense. Returns the first one, by its path."""
    if isinstance(value, float) and (_is_nan(value) or value in (INFINITY, -INFINITY)):
        shown = "NaN" if _is_nan(value) else value
        return "%s is %s; a scenario's numbers must be finite" % (where, shown)
    if isinstance(value, dict):
        parts = [(value[key], "%s.%s" % (where, key)) for key in value]
    elif isinstance(value, list):
        parts = [(value[index], "%s[%d]" % (where, index)) for index in range(len(value))]
    else:
        return None
    for part, path in parts:
        found = _non_finite(part, path)
        if found is not None:
            return found
    return None


class _KeysTwice(dict):
    """A JSON object that held a key more than once (see `json_object`); `twice` lists those keys."""


def json_object(pairs):
    """object_pairs_hook for json.load (CPython): JSON keeps the last of two equal keys silently,
    so a key given twice is marked here and `normalize` refuses it by its place."""
    out = {}
    twice = []
    for key, value in pairs:
        if key in out and key not in twice:
            twice.append(key)
        out[key] = value
    if not twice:
        return out
    marked = _KeysTwice(out)
    marked.twice = twice
    return marked


def _keys_twice(value, where, mistakes):
    """Note every object of `value` that `json_object` marked, by its path ("" is the scenario)."""
    if isinstance(value, dict):
        for key in getattr(value, "twice", ()):
            mistakes.append("%s has the key %r twice; only the last would count"
                            % (where or "the scenario", key))
        for key in value:
            _keys_twice(value[key], "%s.%s" % (where, key) if where else key, mistakes)
    elif isinstance(value, list):
        for index in range(len(value)):
            _keys_twice(value[index], "%s[%d]" % (where, index), mistakes)


def _clears_without_fault(timed, mistakes):
    """A clear step whose fault is not injected at that time does nothing: a misspelt or
    mistimed step, refused by its place. `timed` is in run order."""
    injected = {}  # fault -> True while an earlier step has it injected
    for step, index in timed:
        if "fault" in step:
            injected[step["fault"]] = True
        elif "clear" in step:
            name = step["clear"]
            if injected.get(name):
                injected[name] = False
                continue
            mistakes.append("steps[%d].clear: %r is not injected at %s s; %s" % (
                index, name, step["at_ms"] / 1000,
                "an earlier step cleared it" if name in injected else "no earlier step injects it"))


def _normalize_step(step, where, duration_ms, channels):
    if not isinstance(step, dict):
        raise ScenarioError("%s must be an object" % where)
    if "at_s" not in step:
        raise ScenarioError("%s: missing at_s" % where)
    at_ms = _number(step["at_s"], where + ".at_s", 0, duration_ms / 1000)
    kinds = [key for key in step if key != "at_s"]
    if len(kinds) != 1 or kinds[0] not in STEP_KINDS:
        raise ScenarioError("%s needs exactly one of %s besides at_s, got %s" % (where, ", ".join(STEP_KINDS), kinds))
    kind = kinds[0]
    value = step[kind]
    if kind == "send":
        if not isinstance(value, dict) or not isinstance(value.get("op"), str):
            raise ScenarioError('%s.send must be a protocol request object with an "op" string' % where)
        rid = value.get("id", 1)
        if isinstance(rid, bool) or not isinstance(rid, int) or not 1 <= rid <= MAX_REQUEST_ID:
            # The device refuses such a request unrun; a raw step can send one on purpose.
            raise ScenarioError("%s.send.id is %s; the device takes an integer 1..%d (send other ids with a raw step)"
                                % (where, clip_text(repr(rid)), MAX_REQUEST_ID))
        try:
            probe = dict(value)
            probe["id"] = rid
            frame.encode_frame(probe)
        except ValueError as err:
            raise ScenarioError("%s.send cannot be sent: %s" % (where, err))
    elif kind == "raw":
        if not isinstance(value, str):
            raise ScenarioError("%s.raw must be a string of bytes to write to the serial line" % where)
        try:
            value.encode()  # what the run writes: UTF-8
        except UnicodeError as err:
            raise ScenarioError("%s.raw: character %d (U+%04X, a lone surrogate) has no UTF-8 form; "
                                "write bytes as characters up to U+10FFFF that are not surrogates"
                                % (where, err.start, ord(value[err.start])))
    else:
        if not faults.is_known(value, channels):
            raise ScenarioError(
                "%s.%s: unknown fault %r; known: %s" % (where, kind, value, ", ".join(faults.names(channels)))
            )
    return {"at_ms": at_ms, kind: value}


class ScenarioRun:
    """Runs a normalized scenario; `emit(line)` receives each trace line (no newline).

    `audit(line)`, if given, receives one compact JSON line per tick (before that
    tick's trace line, if any): the record of `sim.audit`, for safety checks that
    need every tick. The trace is the same with or without an audit.
    """

    def __init__(self, normalized, emit, audit=None):
        self.scenario = normalized
        self.emit = emit
        self.audit = audit
        self.board = SimBoard(
            seed=normalized["seed"], start_ms=normalized["start_ms"], channels=normalized["channels"]
        )
        self.device = self.board.build_device()
        self._reader = frame.LineReader(frame.MAX_LINE_BYTES)
        self._next_id = AUTO_ID_BASE
        self._tracker = None  # audit only: which replies ran their request
        self._pulses = []
        if audit is not None:
            self._tracker = audit_mod.ReplyTracker()
            self.board.pulse_out.recorder = self._record_pulse

    def run(self):
        # The hot loop: everything it calls each tick is bound to a local once, and the next
        # step's time is held in `next_at` (past the end when none is left), so a tick with
        # nothing to do costs a compare, not a list lookup.
        steps = self.scenario["steps"]
        duration_ms = self.scenario["duration_ms"]
        end = duration_ms + TICK_MS  # past the last tick: "no step left"
        index = 0
        next_at = steps[0]["at_ms"] if steps else end
        received = []
        tick = self.device.tick
        host_read = self.board.serial.host_read
        advance = self.board.advance
        emit = self.emit
        audit = self.audit
        device = self.device
        board = self.board
        t_ms = 0
        while t_ms <= duration_ms:
            while next_at <= t_ms:
                self._apply(steps[index])
                index += 1
                next_at = steps[index]["at_ms"] if index < len(steps) else end
            tick()
            data = host_read()
            if audit is not None:
                seen = len(received)
                if data:
                    self._feed(data, received)
                audit(self._audit_line(t_ms, received, seen))
            elif data:
                self._feed(data, received)
            if t_ms % TRACE_EVERY_MS == 0:
                emit(trace_line(t_ms, device, board, received))
                received = []
            advance(TICK_MS)
            t_ms += TICK_MS

    def _apply(self, step):
        if "send" in step:
            request = dict(step["send"])
            if "id" not in request:
                self._next_id += 1
                request["id"] = self._next_id
            if self._tracker is not None:
                self._tracker.sent(request)
            self.board.serial.host_write(frame.encode_frame(request))
        elif "raw" in step:
            self.board.serial.host_write(step["raw"].encode())
        elif "fault" in step:
            faults.set_fault(self.board, step["fault"], True)
        else:
            faults.set_fault(self.board, step["clear"], False)

    def _feed(self, data, received):
        """Decode the device's output bytes into messages appended to `received`."""
        for line in self._reader.feed(data):
            if line is None:
                continue
            try:
                message = frame.decode_line(line)
            except frame.FrameError:
                message = {"host_rx_error": True}
            if message is not None:
                received.append(message)

    # ---- audit -----------------------------------------------------------------

    def _record_pulse(self, ch, start_us, amp1, phase1, gap, amp2, phase2, delivered):
        self._pulses.append([ch, start_us, amp1, phase1, gap, amp2, phase2])

    def _audit_line(self, t_ms, received, seen):
        replies = []
        for index in range(seen, len(received)):
            if "ok" in received[index]:
                replies.append(audit_mod.reply_entry(self._tracker, received[index]))
        pulses = self._pulses
        self._pulses = []
        return audit_mod.encode(audit_mod.record(t_ms, self.device, self.board.pulse_out, pulses, replies))
