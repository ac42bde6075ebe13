"""Expectations: the safety claims a scenario states, checked over its trace (CPython only).

A scenario file may carry an `"expect"` list. Each expectation is a small JSON
object with exactly one *kind* key, a few optional modifiers, and an optional
`"name"` (the text printed for it; otherwise its compact JSON). They are
checked after the run over the trace rows (one per 100 ms, `sim.trace`) and
the protocol messages in them (`rx`: replies and events), so every
expectation has the trace's resolution: 100 ms.

Kinds
-----
    {"always": COND}                  COND holds in every row of the window
    {"never": COND}                   COND holds in no row of the window, on no
                                      channel (see Channels below)
    {"eventually": COND}              COND holds in at least one row of the window
    {"within_ms": N, "after": ANCHOR, "that": COND}
                                      COND holds in some row at most N ms after
                                      ANCHOR (and before "until") and in every row
                                      from then on, up to "until" (default: the
                                      end of the run)
    {"at_end": COND}                  COND holds in the last row
    {"reply": MATCH}                  some reply (a message with "ok") matches
    {"event": MATCH}                  some event (a message with "ev") matches

Modifiers: "from" and "until" (ANCHORs) bound the window of always / never /
eventually (from inclusive, until exclusive, except that the end of the run
includes the last row; defaults: the first and the last row); "until" also
bounds within_ms; "count" (integer) makes reply / event require exactly that
many matching messages. A window must hold a row, or always / never would pass
having checked nothing: one known empty when the file loads (until not after
from) is refused, one found empty over the trace fails.

Timing: a trace row shows the device after the tick at its time, and steps due
at a time run before that tick; so an injection at t shows in the row at t, a
reaction "within 100 ms" must show by the row at t + 0.1 s. A row's pulses come
from its 10 ticks, its state from the last one: the first row of a FAULT may
still count pulses fired before the latch.

Predicates: see PREDICATES (name -> one-line meaning; docs/sim.md lists them
too). Stored programs a scenario uploads are not known
here: within_prescription and follows_phases follow built-in presets only.

COND, evaluated on one trace row:
    "NAME"                            a named predicate (PREDICATES below)
    "PATH OP VALUE"                   a comparison, e.g. "amp_ua <= 20000",
                                      "heat.pad_true_mc <= heat.target_mc + 300",
                                      "state == FAULT", "faults has sensor_open"
    {"PATH": VALUE, ...}              every PATH equals its VALUE (JSON), e.g.
                                      {"state": "FAULT", "faults": ["sensor_open"]}
    [COND, ...]                       all of them

PATH: a top-level field (`t_s`, `state`, `faults`, `sim_faults`, and `reason`:
the reason of the last state event the device sent so far, "" before any), a
channel field of one channel (`ch[1].pulses`) or of every channel
(`ch[*].amp_ua`, or just `amp_ua`), or a heat field (`heat.pad_true_mc`).
OP: == != < <= > >= has (a list field contains the value). VALUE: JSON (a
number, "text", null, true, [..]), a bare word (a string: FAULT), or another
PATH with an optional "+ N" / "- N" (integers). A null value compares false
with < <= > >=. The VALUE must fit its PATH when the file loads (`_field_type`):
a number for a numeric field, one of the field's values for `state`,
`heat.state` and `reason` (compared with == and != only), a name the list can
hold for `faults` and `sim_faults` (`has`, or == / != with a list); two PATHs
compare only as numbers, or as fields of one kind with == and !=.

Channels: a channel field without a channel number (`amp_ua`, `ch[*].amp_ua`)
names every channel. For always, eventually, within_ms, at_end and a {"first":
COND} anchor, COND holds on a row when it holds on every channel it names. For
never, COND is checked on each channel on its own (every such field reads that
channel, the same one throughout a list), and never fails when it holds on any
one: in no row does any named channel satisfy COND. With channel 0 at 12 mA and
channel 1 at 9 mA, {"never": "amp_ua > 10000"} fails on ch[0], as does
{"always": "amp_ua <= 10000"}, while {"eventually": "amp_ua > 10000"} does not
hold (ch[1] stays below). {"never": ["state == RUNNING", "amp_ua > target_ua"]}
fails when one channel, while RUNNING, is above its own target. A `ch[N]` field
reads channel N either way, and a predicate is a claim about the whole row
(never "no_output" fails on a row where no channel outputs).

ANCHOR, a time in the run:
    "start" / "end"                   the first / the last row
    "fault NAME" / "fault"            the step injecting NAME / the first "fault" step
    "clear NAME"                      the step clearing NAME
    "send OP"                         the first "send" step with that op
    a number                          seconds since the start of the run
    {"first": COND}                   the first row where COND holds

MATCH (reply / event): {"KEY": VALUE, ...}, every key equal in the message
(a dict VALUE matches a sub-object key by key); for replies the key "op" is
the op of the request the reply answers (the runner knows the ids it sent),
and for both "msg_contains" is a substring of the message's "msg" (or, for a
state or heat event, its "fault_msg").

A failure message names the expectation (its index and name) and the time and
trace line (1-based) where it failed, with the fields the condition looked at.
"""

import json
import re

from firmware import envelope, limits, presets
from firmware import supervisor as sup
from firmware.heat import faults as heat_faults
from firmware.heat.heat import ST_AUTOTUNE, ST_FAULT, ST_HEATING, ST_HOLDING, ST_OFF
from firmware.program import parse_program
from sim import faults as sim_faults
from sim.scenario import AUTO_ID_BASE, clip_text  # AUTO_ID_BASE: the ids the runner gives "send" steps that carry none

KINDS = ("always", "never", "eventually", "within_ms", "at_end", "reply", "event")
MODIFIERS = {
    "always": ("from", "until"),
    "never": ("from", "until"),
    "eventually": ("from", "until"),
    "within_ms": ("after", "that", "until"),
    "at_end": (),
    "reply": ("count",),
    "event": ("count",),
}
OPS = ("==", "!=", "<=", ">=", "<", ">", "has")
TOP_FIELDS = ("t_s", "state", "faults", "sim_faults", "reason")
CH_FIELDS = ("amp_ua", "target_ua", "delivered_ua", "phase_us", "rate_hz", "pulses", "max_phase_charge_nc",
             "net_charge_nc")
HEAT_FIELDS = ("state", "target_mc", "measured_mc", "pad_true_mc", "heater_duty_pct", "cem43_min")
HEAT_ACTIVE = ("heating", "holding", "autotune")
HEAT_STATES = (ST_OFF, ST_HEATING, ST_HOLDING, ST_AUTOTUNE, ST_FAULT)
REASONS = ("", "start", "resume", "stop", "estop", "session_end", "clear_fault", sup.PAUSE_REQUEST, sup.PAUSE_LEASE)
PHASE_EDGE_MS = 200  # follows_phases leaves rows this near a phase boundary alone


class ExpectError(Exception):
    """A malformed expectation; sim.scenario turns it into a ScenarioError naming expect[i]."""


# ---- predicates -------------------------------------------------------------------------------
# Each takes (trace, i) and returns None when it holds on row i, else what it saw (a string).


def _heater_off(trace, i):
    heat = trace.rows[i].get("heat")
    if heat is None:
        return None
    if heat["state"] in HEAT_ACTIVE or heat["heater_duty_pct"] != 0:
        return "heat.state=%s heat.heater_duty_pct=%d" % (heat["state"], heat["heater_duty_pct"])
    return None


def _no_output(trace, i):
    bad = []
    for n, ch in enumerate(trace.rows[i]["ch"]):
        if ch["amp_ua"] or ch["pulses"]:
            bad.append("ch[%d] amp_ua=%d pulses=%d" % (n, ch["amp_ua"], ch["pulses"]))
    return ", ".join(bad) or None


def _no_pulse_outside_running(trace, i):
    row = trace.rows[i]
    if row["state"] == "RUNNING" or (i > 0 and trace.rows[i - 1]["state"] == "RUNNING"):
        return None
    bad = ["ch[%d] pulses=%d" % (n, ch["pulses"]) for n, ch in enumerate(row["ch"]) if ch["pulses"]]
    if bad:
        before = trace.rows[i - 1]["state"] if i > 0 else "-"
        return "state %s (row before: %s) with %s" % (row["state"], before, ", ".join(bad))
    return None


def _in_envelope(trace, i):
    row = trace.rows[i]
    bad = []
    for n, ch in enumerate(row["ch"]):
        if ch["net_charge_nc"] != 0:
            bad.append("ch[%d] net_charge_nc=%d" % (n, ch["net_charge_nc"]))
        if not 0 <= ch["max_phase_charge_nc"] <= limits.PHASE_CHARGE_LIMIT_NC:
            bad.append("ch[%d] max_phase_charge_nc=%d > %d" % (n, ch["max_phase_charge_nc"], limits.PHASE_CHARGE_LIMIT_NC))
        for name in ("amp_ua", "target_ua"):
            if not 0 <= ch[name] <= limits.AMP_LIMIT_UA:
                bad.append("ch[%d] %s=%d > %d" % (n, name, ch[name], limits.AMP_LIMIT_UA))
        if ch["phase_us"] > limits.PHASE_MAX_US or ch["rate_hz"] > limits.RATE_MAX_HZ:
            bad.append("ch[%d] phase_us=%d rate_hz=%d" % (n, ch["phase_us"], ch["rate_hz"]))
        top = limits.AMP_LIMIT_UA + limits.OVERCURRENT_MARGIN_UA
        if ch["delivered_ua"] > top and "overcurrent:%d" % n not in row["sim_faults"]:
            bad.append("ch[%d] delivered_ua=%d > %d" % (n, ch["delivered_ua"], top))
    return ", ".join(bad) or None


def _ramp_limited(trace, i):
    if i == 0:
        return None
    most = limits.RAMP_MAX_UA_PER_TICK * (trace.rows[i]["_t"] - trace.rows[i - 1]["_t"]) // limits.TICK_MS
    bad = []
    for n, ch in enumerate(trace.rows[i]["ch"]):
        rise = ch["amp_ua"] - trace.rows[i - 1]["ch"][n]["amp_ua"]
        if rise > most:
            bad.append("ch[%d] amp_ua rose %d uA in one row (at most %d)" % (n, rise, most))
    return ", ".join(bad) or None


def _no_fault(trace, i):
    row = trace.rows[i]
    if row["faults"] or row["state"] == "FAULT":
        return "state %s faults %s" % (row["state"], row["faults"])
    return None


def _within_prescription(trace, i):
    session = trace.session_at(i)
    if session is None:
        return None
    program = session["program"]
    row = trace.rows[i]
    bad = []
    for n, ch in enumerate(row["ch"]):
        if n >= len(program.channels):
            if ch["amp_ua"] or ch["pulses"]:
                bad.append("ch[%d] outputs but program %s does not use it" % (n, program.name))
            continue
        top_ua, low_us, high_us, rate_hz, charge_nc, most = session["limits"][n]
        if ch["amp_ua"] > top_ua or ch["target_ua"] > top_ua:
            bad.append("ch[%d] amp_ua=%d target_ua=%d above the prescribed %d" % (n, ch["amp_ua"], ch["target_ua"], top_ua))
        if ch["phase_us"] and not low_us <= ch["phase_us"] <= high_us:
            bad.append("ch[%d] phase_us=%d outside %d..%d" % (n, ch["phase_us"], low_us, high_us))
        if ch["rate_hz"] > rate_hz:
            bad.append("ch[%d] rate_hz=%d above %d" % (n, ch["rate_hz"], rate_hz))
        if ch["max_phase_charge_nc"] > charge_nc:
            bad.append("ch[%d] max_phase_charge_nc=%d above %d" % (n, ch["max_phase_charge_nc"], charge_nc))
        if ch["pulses"] > most:
            bad.append("ch[%d] pulses=%d above %d per 100 ms" % (n, ch["pulses"], most))
        if ch["net_charge_nc"]:
            bad.append("ch[%d] net_charge_nc=%d" % (n, ch["net_charge_nc"]))
    heat = row.get("heat")
    if heat is not None and heat["state"] in HEAT_ACTIVE:
        if program.heat_target_mc is None or heat["target_mc"] > program.heat_target_mc:
            bad.append("heat target_mc=%d, program %s prescribes %s" % (heat["target_mc"], program.name, program.heat_target_mc))
    if bad:
        return "program %s: %s" % (program.name, ", ".join(bad))
    return None


def _follows_phases(trace, i):
    session = trace.session_at(i)
    if session is None or trace.rows[i]["state"] not in ("RUNNING", "PAUSED"):
        return None
    program = session["program"]
    run_ms = trace.rows[i]["_t"] - session["t_ms"]
    end_ms = 0
    for phase in program.phases:
        start_ms = end_ms
        end_ms += phase.duration_ms
        if run_ms < end_ms:
            break
    if run_ms < start_ms + PHASE_EDGE_MS or run_ms > end_ms - PHASE_EDGE_MS:
        return None  # at a boundary: the device switches within a tick of it
    row = trace.rows[i]
    where = "program %s, phase %s (%d s into the session)" % (program.name, phase.name, run_ms // 1000)
    bad = []
    if not phase.tens:
        for n, ch in enumerate(row["ch"]):
            if ch["target_ua"]:
                bad.append("ch[%d] target_ua=%d in a phase without TENS" % (n, ch["target_ua"]))
    heat = row.get("heat")
    if heat is not None and row["state"] == "RUNNING":
        if phase.heat and heat["state"] not in HEAT_ACTIVE and heat["state"] != "fault":
            bad.append("heat.state=%s in a heat phase" % heat["state"])
        if phase.heat and heat["state"] in HEAT_ACTIVE and heat["target_mc"] != program.heat_target_mc:
            bad.append("heat.target_mc=%d, the program's is %d" % (heat["target_mc"], program.heat_target_mc))
        if not phase.heat and _heater_off(trace, i) is not None:
            bad.append("heater on in a phase without heat: " + _heater_off(trace, i))
    if bad:
        return "%s: %s" % (where, ", ".join(bad))
    return None


PREDICATES = {
    "heater_off": (
        "the heat controller is off or latched in fault and its output is 0 % (it switches the heater off "
        "every tick in these states)",
        _heater_off,
    ),
    "no_output": ("every channel: amplitude 0 and no pulse in the row's 100 ms", _no_output),
    "no_pulse_outside_running": (
        "pulses only in a row that is RUNNING or follows a RUNNING row (a row's pulses come from its "
        "ticks, the state is the one at its end)",
        _no_pulse_outside_running,
    ),
    "in_envelope": (
        "every pulse inside the hard limits: phase charge <= 25000 nC, zero net charge, amplitude and "
        "target <= 80 mA, width and rate in range, delivered <= 82 mA unless overcurrent is injected",
        _in_envelope,
    ),
    "ramp_limited": (
        "no amplitude step: each channel's amp_ua rises by at most 800 uA per tick (8 mA per row) over the "
        "row before, the steepest ramp limits.RAMP_MAX_UA_PER_TICK allows",
        _ramp_limited,
    ),
    "no_fault": ("nothing latched: no fault, state not FAULT", _no_fault),
    "within_prescription": (
        "while a program started by the scenario runs: amplitude <= each channel's prescribed maximum, "
        "width and rate inside its setting, phase charge <= the setting's at that maximum, no more pulses "
        "in a row than its fastest rate allows, heat target <= the program's",
        _within_prescription,
    ),
    "follows_phases": (
        "while a program runs (timed from its start reply, no pauses): no TENS target in a phase without "
        "TENS, heat on at the program's target in heat phases, heater off in the others (rows within "
        "200 ms of a phase boundary are left alone)",
        _follows_phases,
    ),
}


# ---- conditions -------------------------------------------------------------------------------

_COMPARE = re.compile(r"^\s*([A-Za-z_][\w.\[\]*]*)\s*(==|!=|<=|>=|<|>|\bhas\b)\s*(.+?)\s*$")
_PATH_OFFSET = re.compile(r"^([A-Za-z_][\w.\[\]*]*)\s*(?:([+-])\s*(\d+))?$")
_CH_PATH = re.compile(r"^ch\[(\d+|\*)\]\.(\w+)$")


def field_names():
    return list(TOP_FIELDS) + ["ch[*].%s" % f for f in CH_FIELDS] + ["heat.%s" % f for f in HEAT_FIELDS]


def _path(text, channels):
    """(kind, channel or None, field): kind "top", "ch" (channel None = every channel) or "heat"."""
    if text in TOP_FIELDS:
        return ("top", None, text)
    if text in CH_FIELDS:
        return ("ch", None, text)
    if text.startswith("heat.") and text[5:] in HEAT_FIELDS:
        return ("heat", None, text[5:])
    found = _CH_PATH.match(text)
    if found and found.group(2) in CH_FIELDS:
        if found.group(1) == "*":
            return ("ch", None, found.group(2))
        ch = int(found.group(1))
        if ch >= channels:
            have = "channel 0 only" if channels == 1 else "channels 0..%d" % (channels - 1)
            raise ExpectError("%s: channel %d does not exist: the scenario has %s" % (text, ch, have))
        return ("ch", ch, found.group(2))
    raise ExpectError("unknown field %r; fields: %s" % (text, ", ".join(field_names())))


def device_fault_names(channels):
    """Every name the device's `faults` list can hold: channel faults carry their channel."""
    names = ["%s:%d" % (fault, ch) for fault in (sup.F_NO_LOAD, sup.F_OVERCURRENT, sup.F_ENVELOPE)
             for ch in range(channels)]
    return names + [sup.F_INTERNAL] + list(heat_faults.ALL)


def _field_type(path, channels):
    """("number", None), ("enum", names) for a one-of-these string, or ("list", names) for a list of them.

    A comparison's value is checked against this when the scenario loads: a typo such as
    `amp_ua > 5OOO` or `state == RUNING` would otherwise compare false on every row, and a
    `never` built on it would pass without checking anything."""
    kind, _, name = path
    if kind == "top":
        if name == "state":
            return ("enum", sup.STATE_NAMES)
        if name == "faults":
            return ("list", device_fault_names(channels))
        if name == "sim_faults":
            return ("list", sim_faults.names(channels))
        if name == "reason":
            # a fault can share its name with a reason (lease_expired): each value is listed once
            return ("enum", tuple(_unique(REASONS + tuple(device_fault_names(channels)))))
        return ("number", None)
    if kind == "heat" and name == "state":
        return ("enum", HEAT_STATES)
    return ("number", None)


def _unique(names):
    out = []
    for name in names:
        if name not in out:
            out.append(name)
    return out


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(label, ftype, op, value):
    """ExpectError unless `label OP value` can be true on some row of a trace."""
    kind, names = ftype
    if kind == "list":
        if op == "has":
            if value not in names:
                raise ExpectError("%s has %s: not a name %s can hold; names: %s"
                                  % (label, _show(value), label, ", ".join(names)))
            return
        if op in ("==", "!="):
            if not isinstance(value, list) or any(item not in names for item in value):
                raise ExpectError("%s %s %s: the value must be a list of names from: %s"
                                  % (label, op, _show(value), ", ".join(names)))
            return
        raise ExpectError("%s is a list: compare it with has, == or !=, not %s" % (label, op))
    if op == "has":
        raise ExpectError("%s is not a list: has works on faults and sim_faults only" % label)
    if kind == "enum":
        if op not in ("==", "!="):
            raise ExpectError("%s is one of %s: compare it with == or !=, not %s" % (label, ", ".join(names), op))
        if value not in names and not (value is None and label.startswith("heat.")):
            raise ExpectError("%s %s %s: not a value %s takes; values: %s"
                              % (label, op, _show(value), label, ", ".join(repr(n) if not n else n for n in names)))
        return
    if value is None and op in ("==", "!=") and label.startswith("heat."):
        return  # a scenario without a pad has no heat fields
    if not _is_number(value):
        raise ExpectError("%s %s %s: %s is a number, the value is not (a typo?)" % (label, op, _show(value), label))


def _values(trace, i, path, only=None):
    """[(label, value)] of a path on row i: one per channel for an every-channel path, or
    channel `only`'s alone when it is given."""
    kind, ch, name = path
    row = trace.rows[i]
    if kind == "top":
        return [(name, row.get(name, ""))]
    if kind == "heat":
        heat = row.get("heat")
        return [("heat." + name, None if heat is None else heat[name])]
    if ch is None:
        ch = only
    if ch is not None:
        return [("ch[%d].%s" % (ch, name), row["ch"][ch][name])]
    return [("ch[%d].%s" % (n, name), c[name]) for n, c in enumerate(row["ch"])]


def _compare(op, left, right):
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "has":
        return isinstance(left, list) and right in left
    if left is None or right is None or isinstance(left, (list, dict)) or isinstance(right, (list, dict)):
        return False
    try:
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        return left >= right
    except TypeError:
        return False


def _constant(text):
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word: a string (FAULT, sensor_open)


def _comparison(text, channels):
    found = _COMPARE.match(text)
    if not found:
        raise ExpectError(
            "%r is neither a predicate (%s) nor a comparison PATH OP VALUE (OP one of %s)"
            % (text, ", ".join(sorted(PREDICATES)), " ".join(OPS))
        )
    left = _path(found.group(1), channels)
    left_type = _field_type(left, channels)
    op = found.group(2)
    rhs = found.group(3)
    right_path = None
    offset = 0
    ref = _PATH_OFFSET.match(rhs)
    if ref is not None and _is_path(ref.group(1)):
        right_path = _path(ref.group(1), channels)
        if ref.group(3):
            offset = int(ref.group(3)) * (-1 if ref.group(2) == "-" else 1)
        if right_path[0] == "ch" and right_path[1] is None and not (left[0] == "ch" and left[1] is None):
            raise ExpectError("%r: an every-channel value needs an every-channel field on the left" % text)
        right_type = _field_type(right_path, channels)
        if left_type[0] != "number" or right_type[0] != "number":
            if op not in ("==", "!=") or offset or left_type != right_type:
                raise ExpectError("%r: only numbers compare with < <= > >= and + N; %s and %s are not both numbers "
                                  "of one kind" % (text, found.group(1), ref.group(1)))
        constant = None
    else:
        constant = _constant(rhs)
        try:
            _check_value(found.group(1), left_type, op, constant)
        except ExpectError as err:
            raise ExpectError("%r: %s" % (text, err))

    def check(trace, i, only=None):
        lefts = _values(trace, i, left, only)
        if right_path is None:
            rights = [("", constant)] * len(lefts)
        else:
            rights = _values(trace, i, right_path, only)
            if len(rights) == 1:
                rights = rights * len(lefts)
            rights = [(label, None if v is None else v + offset) for label, v in rights]
        bad = []
        for (llabel, lvalue), (rlabel, rvalue) in zip(lefts, rights):
            if not _compare(op, lvalue, rvalue):
                shown = "%s=%s" % (llabel, json.dumps(lvalue))
                if rlabel:
                    shown += " %s%s=%s" % (rlabel, "%+d" % offset if offset else "", json.dumps(rvalue))
                bad.append(shown)
        return ", ".join(bad) or None

    check.paths = [left] if right_path is None else [left, right_path]
    return check


def _every_channel(cond):
    """True when the condition reads a field of every channel (`amp_ua`, `ch[*].pulses`)."""
    return any(kind == "ch" and ch is None for kind, ch, _ in cond.paths)


def _seen(cond, trace, i, channels):
    """The fields a condition reads on row i, every-channel paths on each of `channels`."""
    shown = []
    for only in channels:
        for path in cond.paths:
            for label, value in _values(trace, i, path, only):
                text = "%s=%s" % (label, json.dumps(value))
                if text not in shown:
                    shown.append(text)
    return ", ".join(shown)


def _is_path(text):
    try:
        _path(text, 1 << 30)
    except ExpectError:
        return False
    return True


def compile_cond(cond, channels):
    """A COND -> function(trace, i, only=None) returning None (holds) or what it saw.

    Given `only`, every-channel paths read that channel alone: `never` checks each channel on
    its own. The function's `paths` are the fields it reads (a predicate reads the whole row)."""
    if isinstance(cond, str):
        if cond in PREDICATES:
            function = PREDICATES[cond][1]

            def predicate(trace, i, only=None):
                return function(trace, i)

            predicate.paths = []
            return predicate
        return _comparison(cond, channels)
    if isinstance(cond, list):
        if not cond:
            raise ExpectError("an empty list of conditions")
        parts = [compile_cond(c, channels) for c in cond]

        def all_of(trace, i, only=None):
            for part in parts:
                found = part(trace, i, only)
                if found is not None:
                    return found
            return None

        all_of.paths = [path for part in parts for path in part.paths]
        return all_of
    if isinstance(cond, dict):
        if not cond:
            raise ExpectError("an empty object of fields")
        pairs = [(_path(key, channels), cond[key]) for key in sorted(cond)]
        for key, (path, want) in zip(sorted(cond), pairs):
            _check_value(key, _field_type(path, channels), "==", want)

        def fields_equal(trace, i, only=None):
            bad = []
            for path, want in pairs:
                for label, value in _values(trace, i, path, only):
                    if value != want:
                        bad.append("%s=%s (want %s)" % (label, json.dumps(value), json.dumps(want)))
            return ", ".join(bad) or None

        fields_equal.paths = [path for path, _ in pairs]
        return fields_equal
    raise ExpectError(
        "a condition is a predicate name (%s), a comparison string, an object of fields or a list; got %r"
        % (", ".join(sorted(PREDICATES)), cond)
    )


# ---- anchors --------------------------------------------------------------------------------


def _anchor(value, steps, duration_ms, channels):
    """A compiled anchor: ("ms", ms, label) or ("first", cond, label)."""
    if isinstance(value, bool):
        raise ExpectError("an anchor cannot be %r" % value)
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ExpectError("anchor %r s is not a finite number of seconds" % (value,))
        # the range first: * 1000 of a huge anchor would overflow
        if not 0 <= value <= duration_ms / 1000 + 0.0005 or int(value * 1000 + 0.5) > duration_ms:
            raise ExpectError("anchor %s s is outside the run (0..%s s)" % (clip_text(repr(value), 24), duration_ms / 1000))
        ms = int(value * 1000 + 0.5)
        return ("ms", ms, "%s s" % value)
    if isinstance(value, dict) and list(value) == ["first"]:
        return ("first", compile_cond(value["first"], channels), "the first row with %s" % _show(value["first"]))
    if not isinstance(value, str):
        raise ExpectError('an anchor is "start", "end", "fault NAME", "clear NAME", "send OP", seconds or '
                          '{"first": COND}; got %r' % (value,))
    if value == "start":
        return ("ms", 0, "start")
    if value == "end":
        return ("ms", duration_ms, "end")
    kind, _, name = value.partition(" ")
    if kind in ("fault", "clear", "send"):
        for step in steps:
            if kind == "send":
                if "send" in step and (not name or step["send"].get("op") == name):
                    return ("ms", step["at_ms"], value)
            elif kind in step and (not name or step[kind] == name):
                return ("ms", step["at_ms"], value)
        have = sorted(set(
            ("send " + s["send"].get("op", "?")) if "send" in s else "%s %s" % (k, s[k])
            for s in steps for k in ("fault", "clear", "send") if k in s
        ))
        # only steps that loaded reach here: say so, or a step with a mistake of its own would
        # seem missing from the file
        raise ExpectError("anchor %r: no such step in the scenario; its steps: %s (steps with an invalid field, if "
                          "any, are not listed)" % (value, ", ".join(have) or "none"))
    raise ExpectError('unknown anchor %r; anchors: "start", "end", "fault NAME", "fault", "clear NAME", '
                      '"send OP", seconds, {"first": COND}' % value)


def _resolve(anchor, trace):
    """(ms or None, label)."""
    if anchor[0] == "ms":
        return anchor[1], anchor[2]
    for i in range(len(trace.rows)):
        if anchor[1](trace, i) is None:
            return trace.rows[i]["_t"], "%s (t=%s s)" % (anchor[2], trace.rows[i]["t_s"])
    return None, anchor[2]


# ---- expectations ---------------------------------------------------------------------------


def _show(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Expectation:
    def __init__(self, index, raw, steps, duration_ms, channels):
        if not isinstance(raw, dict):
            raise ExpectError("must be an object with one of: %s" % ", ".join(KINDS))
        self.index = index
        self.raw = raw
        kinds = [key for key in raw if key in KINDS]
        if len(kinds) != 1:
            unknown = [key for key in raw if key not in KINDS and key != "name"
                       and not any(key in MODIFIERS[k] for k in KINDS)]
            raise ExpectError(
                "needs exactly one kind of %s, got %s%s"
                % (", ".join(KINDS), kinds or "none", "; unknown keys %s" % unknown if unknown else "")
            )
        self.kind = kind = kinds[0]
        allowed = ("name", kind) + MODIFIERS[kind]
        for key in raw:
            if key not in allowed:
                raise ExpectError("%s takes %s; unknown key %r" % (kind, ", ".join(allowed[1:]) or "nothing else", key))
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            raise ExpectError("name must be a string")
        shown = dict(raw)
        shown.pop("name", None)
        self.label = name or _show(shown)
        self.start = ("ms", 0, "start")
        self.until = ("ms", duration_ms, "end")
        self.duration_ms = duration_ms
        if "from" in raw:
            self.start = _anchor(raw["from"], steps, duration_ms, channels)
        if "until" in raw:
            self.until = _anchor(raw["until"], steps, duration_ms, channels)
        if kind in ("always", "never", "eventually"):
            self._refuse_empty_window()
        if kind in ("always", "never", "eventually", "at_end"):
            self.cond = compile_cond(raw[kind], channels)
        elif kind == "within_ms":
            within = raw["within_ms"]
            if isinstance(within, bool) or not isinstance(within, int) or within < 0:
                raise ExpectError("within_ms must be a whole number of milliseconds >= 0, got %r" % (within,))
            for key in ("after", "that"):
                if key not in raw:
                    raise ExpectError('within_ms needs "after" (an anchor) and "that" (a condition)')
            self.within_ms = within
            self.after = _anchor(raw["after"], steps, duration_ms, channels)
            self.cond = compile_cond(raw["that"], channels)
            if self.after[0] == "ms" and self.until[0] == "ms" and self.until[1] <= self.after[1]:
                raise ExpectError("its window is empty: until (%s) must come after after (%s)"
                                  % (self._when("until", self.until), self._when("after", self.after)))
        else:
            match = raw[kind]
            if not isinstance(match, dict) or not match:
                raise ExpectError("%s must be an object of message fields, e.g. %s" % (
                    kind, '{"op": "start", "ok": true}' if kind == "reply" else '{"ev": "state", "state": "FAULT"}'))
            if "op" in match and kind == "reply" and not isinstance(match["op"], str):
                raise ExpectError("reply.op must be a string (the request's op)")
            if "msg_contains" in match and not isinstance(match["msg_contains"], str):
                raise ExpectError("msg_contains must be a string")
            self.match = match
            count = raw.get("count")
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise ExpectError("count must be a whole number >= 0, got %r" % (count,))
            self.count = count

    def _refuse_empty_window(self):
        """A window whose ends are known now and hold no row (until not after from, unless both
        are the end) would let always and never pass having checked nothing."""
        start, until = self.start, self.until
        if start[0] != "ms" or until[0] != "ms":
            return  # a {"first": COND} end is known from the trace only: an empty window fails then
        if until[1] > start[1] or until[1] == start[1] == self.duration_ms:
            return
        raise ExpectError("its window is empty: until (%s) must come after from (%s)"
                          % (self._when("until", until), self._when("from", start)))

    def _when(self, key, anchor):
        """An anchor known at load, with its time when it names a step or an end."""
        value = self.raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return anchor[2]
        return "%s, t=%s s" % (anchor[2], anchor[1] / 1000)

    # Each check returns None (passed) or the failure text.

    def check(self, trace):
        if not trace.rows:
            return "the trace is empty"
        return getattr(self, "_check_" + self.kind)(trace)

    def _window(self, trace):
        start, start_label = _resolve(self.start, trace)
        if start is None:
            return None, "its start (%s) never happened" % start_label
        end, end_label = _resolve(self.until, trace)
        if end is None:
            return None, "its end (%s) never happened" % end_label
        rows = []
        for i in range(len(trace.rows)):
            t = trace.rows[i]["_t"]
            if t >= start and (t < end or (end >= self.duration_ms and t <= end)):
                rows.append(i)
        window = "from %s to %s" % (start_label, end_label)
        if not rows:  # always and never would pass having checked nothing
            return None, "no trace row %s" % window
        return rows, window

    def _check_always(self, trace):
        rows, window = self._window(trace)
        if rows is None:
            return window
        for i in rows:
            found = self.cond(trace, i)
            if found is not None:
                return "failed at %s: %s" % (trace.where(i), found)
        return None

    def _check_never(self, trace):
        """Fails on the first row where the condition holds; one that reads every channel fails
        when it holds on any one channel (see the module docstring)."""
        rows, window = self._window(trace)
        if rows is None:
            return window
        each = _every_channel(self.cond)
        reads_a_channel = any(kind == "ch" for kind, _, _ in self.cond.paths)
        for i in rows:
            if not each:
                if self.cond(trace, i) is None:
                    if not reads_a_channel:
                        return "held at %s: %s" % (trace.where(i), trace.show_row(i))
                    # the row summary lists channels without names: name the channel fields read
                    return "held at %s: %s; row: %s" % (
                        trace.where(i), _seen(self.cond, trace, i, [None]), trace.show_row(i))
                continue
            held = [n for n in range(len(trace.rows[i]["ch"])) if self.cond(trace, i, n) is None]
            if held:
                return "held on %s at %s: %s; row: %s" % (
                    " and ".join("ch[%d]" % n for n in held), trace.where(i), _seen(self.cond, trace, i, held),
                    trace.show_row(i))
        return None

    def _check_eventually(self, trace):
        rows, window = self._window(trace)
        if rows is None:
            return window
        for i in rows:
            if self.cond(trace, i) is None:
                return None
        last = rows[-1]
        return "never held %s; at the last of those rows, %s: %s" % (window, trace.where(last), self.cond(trace, last))

    def _check_at_end(self, trace):
        last = len(trace.rows) - 1
        found = self.cond(trace, last)
        if found is not None:
            return "failed at the end, %s: %s" % (trace.where(last), found)
        return None

    def _check_within_ms(self, trace):
        anchor, label = _resolve(self.after, trace)
        if anchor is None:
            return "%s never happened" % label
        end, end_label = _resolve(self.until, trace)
        if end is None:
            return "its end (%s) never happened" % end_label
        if end <= anchor and end < self.duration_ms:
            return "its window is empty: %s (t=%s s) is not after %s (t=%s s)" % (
                end_label, end / 1000, label, anchor / 1000)
        deadline = anchor + self.within_ms
        cut = ""
        if end < deadline and end < self.duration_ms:
            deadline = end - 1  # the reaction must come while the window is open, then hold to its end
            cut = ", before %s (t=%s s)" % (end_label, end / 1000)
        first = None
        last_checked = None
        for i in range(len(trace.rows)):
            t = trace.rows[i]["_t"]
            if t < anchor:
                continue
            if t > deadline:
                break
            last_checked = i
            if self.cond(trace, i) is None:
                first = i
                break
        if first is None:
            if last_checked is None:
                return "no trace row between %s (t=%s s) and %d ms later" % (label, anchor / 1000, self.within_ms)
            return "not within %d ms of %s (t=%s s)%s: at %s: %s" % (
                self.within_ms, label, anchor / 1000, cut, trace.where(last_checked), self.cond(trace, last_checked))
        for i in range(first, len(trace.rows)):
            t = trace.rows[i]["_t"]
            if t >= end and end < self.duration_ms:
                break
            found = self.cond(trace, i)
            if found is not None:
                return "held from t=%s s (%d ms after %s) but failed at %s, before %s: %s" % (
                    trace.rows[first]["t_s"], trace.rows[first]["_t"] - anchor, label, trace.where(i), end_label, found)
        return None

    def _matches(self, trace, message, op):
        for key in self.match:
            want = self.match[key]
            if key == "op" and self.kind == "reply":
                if op != want:
                    return False
            elif key == "msg_contains":
                text = message.get("msg", message.get("fault_msg"))
                if not isinstance(text, str) or want not in text:
                    return False
            elif key not in message or not _submatch(want, message[key]):
                return False
        return True

    def _check_reply(self, trace):
        return self._check_messages(trace, trace.replies, "reply")

    def _check_event(self, trace):
        return self._check_messages(trace, trace.events, "event")

    def _check_messages(self, trace, messages, what):
        found = [(i, m) for i, m, op in messages if self._matches(trace, m, op)]
        if self.count is None and found:
            return None
        if self.count is not None and len(found) == self.count:
            return None
        near = messages
        if self.kind == "reply" and "op" in self.match:
            near = [entry for entry in messages if entry[2] == self.match["op"]]
        elif self.kind == "event" and "ev" in self.match:
            near = [entry for entry in messages if entry[1].get("ev") == self.match["ev"]]
        shown = "; ".join("%s: %s" % (trace.where(i), _show(m)) for i, m, _ in near[:4])
        if len(near) > 4:
            shown += "; ... %d more" % (len(near) - 4)
        if self.count is not None:
            at = ", ".join(trace.where(i) for i, _ in found[:6])
            return "%d matching %s, expected %d%s" % (len(found), _plural(what, len(found)), self.count,
                                                      (" (at " + at + ")") if at else "")
        return "no %s matched%s" % (what, "; the nearest: " + shown if shown else " (none of its kind in the trace)")


def _plural(noun, count):
    if count == 1:
        return noun
    return noun[:-1] + "ies" if noun.endswith("y") else noun + "s"


def _submatch(want, have):
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        for key in want:
            if key not in have or not _submatch(want[key], have[key]):
                return False
        return True
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(_submatch(w, h) for w, h in zip(want, have))
    return want == have and isinstance(want, bool) == isinstance(have, bool)


def mistake(index, raw, steps, duration_ms, channels):
    """What is wrong with expectation `index`, as "expect[i]: ...", or None when it is valid."""
    try:
        Expectation(index, raw, steps, duration_ms, channels)
    except ExpectError as err:
        return "expect[%d]: %s" % (index, err)
    return None


def validate(expect, steps, duration_ms, channels):
    """Check a scenario's "expect" list; returns it as is. ExpectError lists every malformed
    expectation, one line each, naming expect[i]."""
    if not isinstance(expect, list):
        raise ExpectError("expect must be a list of expectations")
    found = [mistake(index, expect[index], steps, duration_ms, channels) for index in range(len(expect))]
    found = [text for text in found if text is not None]
    if found:
        raise ExpectError("\n".join(found))
    return list(expect)


# ---- the trace, as the checks see it ------------------------------------------------------------


class Trace:
    """Trace rows with what the checks derive: time in ms, the last state event's reason, the
    op of the request each reply answers, and the program sessions the scenario started."""

    def __init__(self, lines, normalized):
        self.rows = []
        for number, line in enumerate(lines):
            line = line.strip() if isinstance(line, str) else line
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise ExpectError("trace line %d is not JSON: %s" % (number + 1, err))
            row["_t"] = int(round(row["t_s"] * 1000))
            row["_line"] = number + 1
            self.rows.append(row)
        self.replies = []  # (row index, message, op of the request)
        self.events = []  # (row index, message)
        self.sessions = []  # {"program": Program, "t_ms", "first": row index, "last": row index}
        self._derive(normalized)

    def _derive(self, normalized):
        pending = {}  # id -> ops of the requests sent with it, oldest first
        next_id = AUTO_ID_BASE
        for step in normalized["steps"]:
            if "send" in step:
                request = step["send"]
                rid = request.get("id")
                if rid is None:
                    next_id += 1
                    rid = next_id
                pending.setdefault(_key(rid), []).append(request)
        reason = ""
        session = None
        channels = normalized["channels"]
        for i, row in enumerate(self.rows):
            for message in row["rx"]:
                if "ev" in message:
                    self.events.append((i, message, None))
                    if message.get("ev") == "state":
                        reason = message.get("reason", "")
                elif "ok" in message:
                    waiting = pending.get(_key(message.get("id")))
                    request = waiting.pop(0) if waiting else {}
                    op = request.get("op") if isinstance(request.get("op"), str) else ""
                    self.replies.append((i, message, op))
                    if op == "start" and message.get("ok") is True and isinstance(message.get("program"), str):
                        session = self._program_session(message["program"], row, i, channels)
            row["reason"] = reason
            if session is not None:
                if row["state"] in ("RUNNING", "PAUSED"):
                    session["last"] = i
                elif i > session["first"]:
                    session = None

    def _program_session(self, name, row, i, channels):
        source = presets.find(name)
        if source is None:
            return None  # a stored program: the scenario uploaded it, its text is not known here
        program = parse_program(source, channels)
        limits_ = []
        for plan in program.channels:  # what within_prescription allows, per channel
            s = plan.setting
            limits_.append((
                plan.max_amp_ua, envelope.min_phase_us(s), s.phase_us, envelope.max_rate_hz(s),
                envelope.Envelope(s, plan.max_amp_ua).phase_charge_nc,
                envelope.max_rate_hz(s) // 10 + 1,  # 100 ms at the setting's fastest rate
            ))
        session = {"program": program, "t_ms": row["_t"], "first": i, "last": i, "limits": limits_}
        self.sessions.append(session)
        return session

    def session_at(self, i):
        for session in self.sessions:
            if session["first"] <= i <= session["last"]:
                return session
        return None

    def where(self, i):
        return "t=%s s (trace line %d)" % (self.rows[i]["t_s"], self.rows[i]["_line"])

    def show_row(self, i):
        row = self.rows[i]
        parts = ["state %s" % row["state"], "faults %s" % row["faults"]]
        parts.append("amp_ua %s" % [c["amp_ua"] for c in row["ch"]])
        parts.append("pulses %s" % [c["pulses"] for c in row["ch"]])
        heat = row.get("heat")
        if heat is not None:
            parts.append("heat %s duty %d%% pad %d mC target %d mC" % (
                heat["state"], heat["heater_duty_pct"], heat["pad_true_mc"], heat["target_mc"]))
        return ", ".join(parts)


def _key(rid):
    return json.dumps(rid, sort_keys=True)


class Result:
    def __init__(self, index, label, failure):
        self.index = index
        self.label = label
        self.failure = failure  # None when it passed

    @property
    def ok(self):
        return self.failure is None

    def line(self):
        if self.ok:
            return "PASS expect[%d] %s" % (self.index, self.label)
        return "FAIL expect[%d] %s: %s" % (self.index, self.label, self.failure)


def check(normalized, lines):
    """Check every expectation of a normalized scenario over its trace lines; a Result each."""
    trace = Trace(lines, normalized)
    results = []
    for index, raw in enumerate(normalized.get("expect", [])):
        expectation = Expectation(index, raw, normalized["steps"], normalized["duration_ms"], normalized["channels"])
        results.append(Result(index, expectation.label, expectation.check(trace)))
    return results
