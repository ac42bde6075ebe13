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


class ScenarioError(Exception):
    pass


def _is_nan(value):
    return value != value  # NaN is the one value unequal to itself (no math.isnan needed on MicroPython)


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


def normalize(scenario):
    """Check a parsed scenario and return its normalized form (integers only)."""
    if not isinstance(scenario, dict):
        raise ScenarioError("a scenario must be a JSON object")
    for key in scenario:
        if key not in TOP_KEYS:
            raise ScenarioError("unknown key %r; allowed: %s" % (key, ", ".join(TOP_KEYS)))
    if "duration_s" not in scenario:
        raise ScenarioError("missing duration_s")
    duration_ms = _number(scenario["duration_s"], "duration_s", 0.01, MAX_DURATION_S)
    seed = _int(scenario.get("seed", 1), "seed", 0, 0xFFFFFFFF)
    start_ms = _int(scenario.get("start_ms", 0), "start_ms", 0, (1 << 30) - 1)
    channels = _int(scenario.get("channels", 2), "channels", 1, 2)
    steps = scenario.get("steps", [])
    if not isinstance(steps, list):
        raise ScenarioError("steps must be a list")
    out = []
    for index in range(len(steps)):
        out.append(_normalize_step(steps[index], "steps[%d]" % index, duration_ms, channels))
    # Stable sort by time: steps at the same time keep their file order.
    order = sorted(range(len(out)), key=lambda i: (out[i]["at_ms"], i))
    normalized = {
        "duration_ms": duration_ms,
        "seed": seed,
        "start_ms": start_ms,
        "channels": channels,
        "steps": [out[i] for i in order],
        "expect": [],
    }
    if "expect" in scenario:
        from sim import expect  # CPython only: the checks run on the host, after the run

        _check_finite(scenario["expect"], "expect")
        try:
            normalized["expect"] = expect.validate(scenario["expect"], normalized["steps"], duration_ms, channels)
        except expect.ExpectError as err:
            raise ScenarioError(str(err))
    return normalized


def _check_finite(value, where):
    """NaN and Infinity (JSON extensions Python's parser accepts) nowhere in `value`: as a time,
    a bound or a value to compare they would make no sense, so they are refused by their path."""
    if isinstance(value, float) and (_is_nan(value) or value in (INFINITY, -INFINITY)):
        shown = "NaN" if _is_nan(value) else value
        raise ScenarioError("%s is %s; a scenario's numbers must be finite" % (where, shown))
    if isinstance(value, dict):
        for key in value:
            _check_finite(value[key], "%s.%s" % (where, key))
    elif isinstance(value, list):
        for index in range(len(value)):
            _check_finite(value[index], "%s[%d]" % (where, index))


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
        try:
            probe = dict(value)
            probe["id"] = value.get("id", 1)
            frame.encode_frame(probe)
        except ValueError as err:
            raise ScenarioError("%s.send cannot be sent: %s" % (where, err))
    elif kind == "raw":
        if not isinstance(value, str):
            raise ScenarioError("%s.raw must be a string of bytes to write to the serial line" % where)
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
