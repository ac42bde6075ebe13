"""Therapy programs: what a clinician prescribes, checked against the safety envelope.

A program is a small JSON object (docs/programs.md): per-channel stimulation settings,
an optional heat setting, and a timeline of phases (e.g. warm-up heat, then TENS with
heat, then cool-down). The same `parse_program` runs on the host before an upload and
on the device when the upload arrives, so both ends refuse the same programs with the
same words: the field path, the value and the limit it broke.
"""

from firmware import envelope
from firmware import limits as L
from firmware.heat.config import HARD_MAX_TARGET_MC, LEVELS
from firmware.protocols import jsonenc
from firmware.protocols import messages as msg

PROGRAM_MAX_BYTES = 900  # encoded; with its request around it, an upload fits one 1024-byte frame
NAME_MAX = 24
DESCRIPTION_MAX = 240
PHASES_MAX = 8
PHASE_MIN_S = 10
PHASE_NAME_MAX = 24
HEAT_MIN_TARGET_MC = 30000  # the heat controller refuses lower targets (heat off is no heat)
INTERLOCKS = ("concurrent", "alternate")
_TOP_FIELDS = ("name", "description", "channels", "heat", "phases", "session_s", "interlock", "ramp_ms")
_CHANNEL_FIELDS = ("stim", "amp_ua", "max_amp_ua")
_PHASE_FIELDS = ("name", "duration_s", "tens", "heat")


def _refuse(code, path, text):
    raise msg.RequestError(code, "%s %s" % (path, text))


def _name_ok(text):
    """Lower-case letters, digits, '-' and '_', a letter or digit first: safe as a file key, on
    any terminal, and as a command-line argument (a leading '-' reads as an option)."""
    if not ("a" <= text[0] <= "z" or "0" <= text[0] <= "9"):
        return False
    for ch in text:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "-" or ch == "_"):
            return False
    return True


def _printable(text):
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) > 0x7E:
            return False
    return True


def _only(fields, allowed, path):
    for key in fields:
        if key not in allowed:
            _refuse(msg.E_BAD_FIELD, path + msg._show(key), "is not a program field; allowed: %s" % ", ".join(allowed))


def _text(obj, key, path, limit, required):
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        _refuse(msg.E_BAD_FIELD, path, "must be a string of at most %d characters, got %s" % (limit, msg._show(value)))
    if len(value) > limit:
        _refuse(msg.E_OUT_OF_RANGE, path, "is %d characters long, beyond the limit %d" % (len(value), limit))
    if not _printable(value):
        _refuse(msg.E_BAD_FIELD, path, "must be printable ASCII")
    return value


def _int(obj, key, path, low, high, default=None, why_high=None):
    """msg.int_field with the path; why_high() names what sets `high` when the value exceeds it."""
    try:
        return msg.int_field(obj, key, low, high, default)
    except msg.RequestError as exc:
        text = "%s: %s" % (path, exc.message)
        value = obj.get(key)
        if why_high is not None and msg.is_int(value) and value > high:
            text = "%s (%s)" % (text, why_high())
        raise msg.RequestError(exc.code, text)


def _bool(obj, key, path, default):
    value = obj.get(key, default)
    if value is not True and value is not False:
        _refuse(msg.E_BAD_FIELD, path, "must be true or false, got %s" % msg._show(value))
    return value


class ChannelPlan:
    """One channel of a program: its validated setting, starting and prescribed maximum amplitude."""

    def __init__(self, setting, amp_ua, max_amp_ua):
        self.setting = setting
        self.amp_ua = amp_ua
        self.max_amp_ua = max_amp_ua


class Phase:
    def __init__(self, name, duration_ms, tens, heat):
        self.name = name
        self.duration_ms = duration_ms
        self.tens = tens
        self.heat = heat


class Program:
    """A validated program; `source` is the canonical dict (what is stored and sent)."""

    def __init__(self):
        self.name = ""
        self.description = ""
        self.channels = []
        self.heat_level = None
        self.heat_target_mc = None
        self.interlock = None  # None: the device's default
        self.ramp_ms = None
        self.phases = []
        self.session_ms = 0
        self.source = None

    @property
    def has_heat(self):
        return self.heat_target_mc is not None

    def phase_index_at(self, run_ms):
        """The phase that covers `run_ms` into the session (the last one past the end)."""
        end_ms = 0
        for i in range(len(self.phases)):
            end_ms += self.phases[i].duration_ms
            if run_ms < end_ms:
                return i
        return len(self.phases) - 1

    def heat_left_ms(self, index):
        """How long heat stays on from the start of phase `index` (consecutive heat phases)."""
        total_ms = 0
        for phase in self.phases[index:]:
            if not phase.heat:
                break
            total_ms += phase.duration_ms
        return total_ms

    def summary(self):
        """The short listing a host shows (no stimulation details)."""
        return {
            "name": self.name,
            "description": self.description,
            "session_s": self.session_ms // 1000,
            "channels": len(self.channels),
            "heat": self.heat_level if self.heat_level is not None else self.heat_target_mc,
            "phases": [phase.name for phase in self.phases],
        }


def _parse_channel(fields, index):
    path = "channels[%d]" % index
    if not isinstance(fields, dict):
        _refuse(msg.E_BAD_FIELD, path, "must be an object with stim, amp_ua and max_amp_ua")
    _only(fields, _CHANNEL_FIELDS, path + ".")
    try:
        setting = envelope.parse_setting(fields.get("stim", {}))
    except msg.RequestError as exc:
        raise msg.RequestError(exc.code, "%s.stim: %s" % (path, exc.message))
    top_ua = envelope.max_amp_ua(setting)
    max_amp_ua = _int(fields, "max_amp_ua", path + ".max_amp_ua", 0, top_ua, top_ua,
                      lambda: "the %s limit at %s" % (envelope.binding_limit(setting), envelope.describe(setting)))
    amp_ua = _int(fields, "amp_ua", path + ".amp_ua", 0, max_amp_ua, 0, lambda: "the channel's max_amp_ua")
    return ChannelPlan(setting, amp_ua, max_amp_ua)


def _parse_heat(program, heat, max_target_mc):
    if heat is None:
        return
    if not isinstance(heat, dict) or len(heat) != 1 or ("level" not in heat and "target_mc" not in heat):
        _refuse(msg.E_BAD_FIELD, "heat", "must be {\"level\": low|medium|high} or {\"target_mc\": n}, or left out")
    if "level" in heat:
        for pair in LEVELS:
            if pair[0] == heat["level"]:
                program.heat_level = pair[0]
                program.heat_target_mc = pair[1]
        if program.heat_level is None:
            _refuse(
                msg.E_BAD_FIELD, "heat.level",
                "%s is not one of %s" % (msg._show(heat["level"]), ", ".join([pair[0] for pair in LEVELS])),
            )
    else:
        program.heat_target_mc = _int(heat, "target_mc", "heat.target_mc", HEAT_MIN_TARGET_MC, HARD_MAX_TARGET_MC)
    if program.heat_target_mc > max_target_mc:
        _refuse(
            msg.E_OUT_OF_RANGE, "heat",
            "%d mC exceeds this device's heat cap %d mC (settings heat_max_target_mc)" % (program.heat_target_mc, max_target_mc),
        )


def _parse_phases(program, phases):
    if not isinstance(phases, list) or not phases or len(phases) > PHASES_MAX:
        _refuse(msg.E_BAD_FIELD, "phases", "must be a list of 1 to %d phases" % PHASES_MAX)
    total_ms = 0
    for i in range(len(phases)):
        path = "phases[%d]" % i
        fields = phases[i]
        if not isinstance(fields, dict):
            _refuse(msg.E_BAD_FIELD, path, "must be an object with name, duration_s, tens and heat")
        _only(fields, _PHASE_FIELDS, path + ".")
        name = _text(fields, "name", path + ".name", PHASE_NAME_MAX, True)
        duration_s = _int(fields, "duration_s", path + ".duration_s", PHASE_MIN_S, L.SESSION_MAX_MS // 1000)
        tens = _bool(fields, "tens", path + ".tens", True)
        heat = _bool(fields, "heat", path + ".heat", program.has_heat)
        if heat and not program.has_heat:
            _refuse(msg.E_BAD_FIELD, path + ".heat", "is true but the program has no heat setting")
        if tens and not program.channels:
            _refuse(msg.E_BAD_FIELD, path + ".tens", "is true but the program has no channels")
        total_ms += duration_s * 1000
        program.phases.append(Phase(name, duration_s * 1000, tens, heat))
    if total_ms > L.SESSION_MAX_MS:
        _refuse(
            msg.E_OUT_OF_RANGE, "phases",
            "last %d s in all, beyond the session limit %d s" % (total_ms // 1000, L.SESSION_MAX_MS // 1000),
        )
    program.session_ms = total_ms


def _check_ramp_down(program, ramp_default_ms):
    """A phase without TENS that follows a TENS phase lasts at least the ramp time, so the
    channels reach zero within it (a stop's ramp: at most ramp_ms from any amplitude). A phase
    without TENS after another one, or first, starts at zero: nothing to ramp down."""
    ramp_ms = program.ramp_ms if program.ramp_ms is not None else ramp_default_ms
    phases = program.phases
    for i in range(1, len(phases)):
        phase = phases[i]
        if phase.tens or not phases[i - 1].tens or phase.duration_ms >= ramp_ms:
            continue
        _refuse(
            msg.E_OUT_OF_RANGE, "phases[%d].duration_s" % i,
            "%d s is shorter than the ramp time %d ms (%s): phase %s has no TENS after a TENS phase, so the "
            "channels must ramp down to zero within it; make duration_s at least %d or %s at most %d"
            % (phase.duration_ms // 1000, ramp_ms,
               "ramp_ms" if program.ramp_ms is not None else "the default: the program has no ramp_ms",
               phase.name, (ramp_ms + 999) // 1000, "ramp_ms" if program.ramp_ms is not None else "set ramp_ms",
               phase.duration_ms),
        )


def parse_program(fields, channels=L.CHANNELS, max_target_mc=HARD_MAX_TARGET_MC, ramp_default_ms=L.RAMP_DEFAULT_MS):
    """Check a program object field by field; RequestError names the path, the value and the limit.

    `ramp_default_ms`: the ramp time of a program without ramp_ms, which its phases without
    TENS must leave time for (a caller that knows the device's ramp_default_ms setting passes it)."""
    if not isinstance(fields, dict):
        raise msg.RequestError(msg.E_BAD_FIELD, "program must be an object (docs/programs.md)")
    _only(fields, _TOP_FIELDS, "")
    program = Program()
    name = _text(fields, "name", "name", NAME_MAX, True)
    if not name or not _name_ok(name):
        _refuse(msg.E_BAD_FIELD, "name", "%s must be 1 to %d of a-z, 0-9, - and _, a letter or digit first" % (msg._show(name), NAME_MAX))
    program.name = name
    program.description = _text(fields, "description", "description", DESCRIPTION_MAX, False)
    plans = fields.get("channels", [])
    if not isinstance(plans, list) or len(plans) > channels:
        _refuse(msg.E_BAD_FIELD, "channels", "must be a list of at most %d channel settings" % channels)
    for i in range(len(plans)):
        program.channels.append(_parse_channel(plans[i], i))
    _parse_heat(program, fields.get("heat"), max_target_mc)
    if not program.channels and not program.has_heat:
        _refuse(msg.E_BAD_FIELD, "program", "has neither channels nor heat: nothing to run")
    if "interlock" in fields:
        if fields["interlock"] not in INTERLOCKS:
            _refuse(msg.E_BAD_FIELD, "interlock", "%s is not one of %s" % (msg._show(fields["interlock"]), ", ".join(INTERLOCKS)))
        program.interlock = fields["interlock"]
    if "ramp_ms" in fields:
        program.ramp_ms = _int(fields, "ramp_ms", "ramp_ms", L.RAMP_MIN_MS, L.RAMP_MAX_MS)
    _parse_phases(program, fields.get("phases"))
    _check_ramp_down(program, ramp_default_ms)
    if "session_s" in fields:
        session_s = _int(fields, "session_s", "session_s", 1, L.SESSION_MAX_MS // 1000)
        if session_s * 1000 != program.session_ms:
            _refuse(
                msg.E_OUT_OF_RANGE, "session_s",
                "%d does not match the phases, which last %d s" % (session_s, program.session_ms // 1000),
            )
    program.source = canonical(program)
    size = len(jsonenc.encode(program.source))
    if size > PROGRAM_MAX_BYTES:
        _refuse(
            msg.E_OUT_OF_RANGE, "program",
            "is %d bytes encoded, beyond the limit %d; shorten the description or phase names" % (size, PROGRAM_MAX_BYTES),
        )
    return program


def canonical(program):
    """The program as stored: defaults filled in, so device and host show the same thing."""
    channels = []
    for plan in program.channels:
        channels.append({"stim": plan.setting.to_dict(), "amp_ua": plan.amp_ua, "max_amp_ua": plan.max_amp_ua})
    phases = []
    for phase in program.phases:
        phases.append({"name": phase.name, "duration_s": phase.duration_ms // 1000, "tens": phase.tens, "heat": phase.heat})
    out = {"name": program.name, "description": program.description, "channels": channels, "phases": phases,
           "session_s": program.session_ms // 1000}
    if program.heat_level is not None:
        out["heat"] = {"level": program.heat_level}
    elif program.heat_target_mc is not None:
        out["heat"] = {"target_mc": program.heat_target_mc}
    if program.interlock is not None:
        out["interlock"] = program.interlock
    if program.ramp_ms is not None:
        out["ramp_ms"] = program.ramp_ms
    return out
