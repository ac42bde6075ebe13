"""The device's session log as sessions, CSV and JSON.

The log comes off the device as a list of records (dicts), oldest first. It is
a ring: the oldest records rotate out, a power cut can lose the last ones, and
a newer firmware may write kinds this host does not know. So nothing here
trusts a record's shape: a field of the wrong type counts as absent, a record
that is not a dict or names no kind is counted and skipped, an unknown kind is
counted and otherwise ignored. Nothing is filled in that the log did not say:
an unknown value stays None.

Grouping rules (`parse`, `sessions`):

* A record belongs to the session its "sid" names; a "start" names its own
  (its "sid", else its "seq"). A session whose start rotated out still appears
  (has_start False, program and planned length unknown).
* A second "start" with the sid of a session that already has a start begins a
  new session (the later records join the newer one).
* When the device cannot write a start record it writes the session's records with
  a null sid. Such phase/amp/heat/sample/stop records (sid null or absent) join, by
  position: the open session without a number, else a start that nothing has joined
  yet (its write reported failure but landed), else a new session with sid None. A
  start or an erase ends that session, and so does its stop. A null-sid fault joins
  it while it is open; otherwise a null-sid fault is outside any session.
* Pain scores with a null sid attach by position in the log: a "before" to the
  session of the next "start" record after it, an "after" to the session of the
  latest record before it that belonged to a session (normally the previous
  start). An "erased" marker is a wall: nothing attaches across it. A score
  with no session to attach to is kept in Log.loose_pain.
* A session's pain_before / pain_after is the latest score of that kind for it
  in log order.
* run_ms comes from the stop record, else the latest sample, else 0.
  max_amp_ua comes from the stop record, else the largest sampled output per
  channel (an incomplete session), else []. cem43_ms comes from the stop
  record only (None when there is none).

Units as on the device: amplitudes in integer µA (amp_ua), temperatures in
milli-°C (temp_mc), times in ms (run_ms, up_ms) and unix seconds (unix_s, UTC).
"""

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field

KINDS = ("start", "phase", "amp", "heat", "sample", "fault", "stop", "pain", "erased")
_SESSION_KINDS = ("phase", "amp", "heat", "sample", "stop")  # always inside a session

# Device integers are far below these; anything outside is a corrupt record, not a value.
_INT_LIMIT = 2**53
_UNIX_S_MAX = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can show


# ---- tolerant field access -------------------------------------------------------------


def _int(value, low=-_INT_LIMIT, high=_INT_LIMIT):
    """An int within [low, high], else None (bools, floats, text and huge numbers are not device ints)."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def _count(value):
    """A non-negative int (a time span, an amplitude, a seq), else None."""
    return _int(value, 0)


def _text(value):
    """A str, else None: device strings are shown as they are (escaped where shown), never guessed."""
    return value if isinstance(value, str) else None


def _int_list(value):
    """A list of per-channel ints; entries that are not ints become None. Not a list: []."""
    if not isinstance(value, list):
        return []
    return [_int(item) for item in value]


def _text_list(value):
    """A list of names; entries that are not str are dropped. Not a list: []."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _unix_s(record):
    return _int(record.get("unix_s"), 0, _UNIX_S_MAX)


def _sid(record):
    """The session a record names: its "sid", or for a start without one its own "seq"."""
    sid = _count(record.get("sid"))
    if sid is None and record.get("ev") == "start":
        sid = _count(record.get("seq"))
    return sid


# ---- what a log says ---------------------------------------------------------------------


@dataclass
class AmpChange:
    """A change of one channel's amplitude target (up_ms: device uptime when it was written)."""

    seq: object
    up_ms: object
    unix_s: object
    ch: object
    target_ua: object


@dataclass
class HeatChange:
    """A change of the heat target (target_mc None: heat turned off)."""

    seq: object
    up_ms: object
    unix_s: object
    target_mc: object


@dataclass
class Phase:
    seq: object
    up_ms: object
    index: object
    name: object


@dataclass
class Sample:
    """What the outputs were doing run_ms into the session (every 60 s and at the end)."""

    run_ms: object
    amp_ua: list
    temp_mc: object
    target_mc: object


@dataclass
class Fault:
    seq: object
    unix_s: object
    sid: object
    faults: list
    msg: object


@dataclass
class Pain:
    seq: object
    unix_s: object
    when: str
    score: int


@dataclass
class Session:
    """One therapy session as far as the log still tells it."""

    sid: object  # int; None for a session whose start record could not be written
    has_start: bool = False
    program: object = None
    start_unix_s: object = None  # from the start record only
    start_up_ms: object = None
    planned_ms: object = None
    start_amp_ua: list = field(default_factory=list)
    heat_level: object = None
    heat_target_mc: object = None
    interlock: object = None
    first_unix_s: object = None  # earliest known time among its records
    complete: bool = False  # a stop record was seen
    stop_reason: object = None
    stop_run_ms: object = None
    stop_max_amp_ua: list = None
    cem43_ms: object = None
    phases: list = field(default_factory=list)
    amp_changes: list = field(default_factory=list)
    heat_changes: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    # (up_ms, run_ms) of each record that carries both (samples, the stop): they tie device
    # uptime to running time, which stands still while the session is paused
    clock_points: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    pain_before: object = None
    pain_after: object = None

    @property
    def unix_s(self):
        """When the session happened: its start's time, else the earliest time among its records (the
        start rotated out, or the device learnt the time during the session), else None."""
        return self.start_unix_s if self.start_unix_s is not None else self.first_unix_s

    @property
    def run_ms(self):
        if self.stop_run_ms is not None:
            return self.stop_run_ms
        sampled = [sample.run_ms for sample in self.samples if sample.run_ms is not None]
        return max(sampled) if sampled else 0

    @property
    def max_amp_ua(self):
        """Per channel; from the stop record, else the largest sampled output (None: never known)."""
        if self.stop_max_amp_ua:
            return list(self.stop_max_amp_ua)
        channels = max((len(sample.amp_ua) for sample in self.samples), default=0)
        peaks = []
        for ch in range(channels):
            seen = [s.amp_ua[ch] for s in self.samples if ch < len(s.amp_ua) and s.amp_ua[ch] is not None]
            peaks.append(max(seen) if seen else None)
        return peaks

    @property
    def pain_change(self):
        """after - before (negative: less pain), or None unless both were scored."""
        if self.pain_before is None or self.pain_after is None:
            return None
        return self.pain_after - self.pain_before


@dataclass
class Log:
    """Sessions plus what did not belong to one, and what was skipped (so a report can say so)."""

    sessions: list = field(default_factory=list)
    loose_faults: list = field(default_factory=list)  # faults outside any session
    loose_pain: list = field(default_factory=list)  # scores with no session to attach to
    unknown_kinds: Counter = field(default_factory=Counter)
    malformed: int = 0  # not a dict, no kind, or a session record naming no session
    erased: int = 0  # "erased" markers: the log was wiped before them
    records: int = 0


# ---- grouping ----------------------------------------------------------------------------


class _Grouper:
    """One pass over the log in order; the pain rules need position, so it is not a dict-by-sid."""

    def __init__(self):
        self.log = Log()
        self.by_sid = {}
        self.last_session = None  # session of the latest record that had one (for "after" pain)
        self.waiting_before = []  # null-sid "before" scores waiting for the next start
        self.unnumbered = None  # the open session that null-sid records join
        self.bare_start = None  # a session with a start record and nothing after it yet

    def _new_session(self, sid):
        session = Session(sid=sid)
        if sid is not None:
            self.by_sid[sid] = session
        self.log.sessions.append(session)
        return session

    def session_for(self, sid):
        return self.by_sid.get(sid) or self._new_session(sid)

    def _unnumbered(self):
        """Where a session record with a null sid goes: the firmware writes those when the start
        record could not be written. The open unnumbered session, else a start nothing has joined
        yet (the write reported failure but landed), else a new session with sid None."""
        if self.unnumbered is None:
            self.unnumbered = self.bare_start or self._new_session(None)
        return self.unnumbered

    def feed(self, record):
        self.log.records += 1
        if not isinstance(record, dict) or not isinstance(record.get("ev"), str):
            self.log.malformed += 1
            return
        kind = record["ev"]
        if kind not in KINDS:
            self.log.unknown_kinds[kind] += 1
            return
        getattr(self, "_" + kind)(record)

    def _session_of(self, record):
        """The record's session (noting its time), or None after counting it malformed."""
        sid = _sid(record)
        if sid is not None:
            session = self.session_for(sid)
        elif record.get("sid") is None and record["ev"] in _SESSION_KINDS:
            session = self._unnumbered()
        else:
            self.log.malformed += 1
            return None
        self.bare_start = None
        self._note(session, record)
        return session

    def _note(self, session, record):
        """The record is the session's latest: remember its time and that it was last."""
        up_ms, run_ms = _count(record.get("up_ms")), _count(record.get("run_ms"))
        if up_ms is not None and run_ms is not None:
            session.clock_points.append((up_ms, run_ms))
        unix_s = _unix_s(record)
        if unix_s is not None and (session.first_unix_s is None or unix_s < session.first_unix_s):
            session.first_unix_s = unix_s
        self.last_session = session

    def _start(self, record):
        sid = _sid(record)
        if sid is not None and self.by_sid.get(sid) is not None and self.by_sid[sid].has_start:
            del self.by_sid[sid]  # a reused sid: a new session, not more of the old one
        self.unnumbered = None  # a start ends any session without a number
        if sid is None:  # neither sid nor seq: its null-sid records follow it
            session = self.unnumbered = self._new_session(None)
        else:
            session = self.session_for(sid)
        self._note(session, record)
        self.bare_start = session
        session.has_start = True
        session.program = _text(record.get("program"))
        session.start_unix_s = _unix_s(record)
        session.start_up_ms = _count(record.get("up_ms"))
        session.planned_ms = _count(record.get("session_ms"))
        session.start_amp_ua = _int_list(record.get("amp_ua"))
        heat = record.get("heat")
        if isinstance(heat, dict):
            session.heat_level = _text(heat.get("level"))
            session.heat_target_mc = _int(heat.get("target_mc"))
        session.interlock = _text(record.get("interlock"))
        for pain in self.waiting_before:
            session.pain_before = pain.score
        self.waiting_before = []

    def _phase(self, record):
        session = self._session_of(record)
        if session is not None:
            session.phases.append(
                Phase(
                    record.get("seq"),
                    _count(record.get("up_ms")),
                    _int(record.get("index")),
                    _text(record.get("name")),
                )
            )

    def _amp(self, record):
        session = self._session_of(record)
        if session is not None:
            session.amp_changes.append(
                AmpChange(
                    record.get("seq"),
                    _count(record.get("up_ms")),
                    _unix_s(record),
                    _count(record.get("ch")),
                    _int(record.get("target_ua")),
                )
            )

    def _heat(self, record):
        session = self._session_of(record)
        if session is not None:
            session.heat_changes.append(
                HeatChange(
                    record.get("seq"), _count(record.get("up_ms")), _unix_s(record), _int(record.get("target_mc"))
                )
            )

    def _sample(self, record):
        session = self._session_of(record)
        if session is not None:
            session.samples.append(
                Sample(
                    _count(record.get("run_ms")),
                    _int_list(record.get("amp_ua")),
                    _int(record.get("temp_mc")),
                    _int(record.get("target_mc")),
                )
            )

    def _fault(self, record):
        sid = _sid(record)
        fault = Fault(
            record.get("seq"), _unix_s(record), sid, _text_list(record.get("faults")), _text(record.get("msg"))
        )
        if sid is not None:
            self._session_of(record).faults.append(fault)
        elif record.get("sid") is None and self.unnumbered is not None:
            self._note(self.unnumbered, record)
            self.unnumbered.faults.append(fault)
        else:
            self.log.loose_faults.append(fault)

    def _stop(self, record):
        session = self._session_of(record)
        if session is None:
            return
        session.complete = True
        session.stop_reason = _text(record.get("reason"))
        session.stop_run_ms = _count(record.get("run_ms"))
        session.stop_max_amp_ua = _int_list(record.get("max_amp_ua"))
        session.cem43_ms = _count(record.get("cem43_ms"))
        if session is self.unnumbered:
            self.unnumbered = None

    def _pain(self, record):
        when = record.get("when")
        score = _int(record.get("score"), 0, 10)
        if when not in ("before", "after") or score is None:
            self.log.malformed += 1
            return
        pain = Pain(record.get("seq"), _unix_s(record), when, score)
        if record.get("sid") is not None:
            if _sid(record) is None:  # a sid that names no session: its score is still good, kept loose
                self.log.loose_pain.append(pain)  # (counted once: loose, not malformed too)
                return
            setattr(self._session_of(record), "pain_" + when, score)
        elif when == "before":
            self.waiting_before.append(pain)
        elif self.last_session is not None:
            self.last_session.pain_after = score
        else:
            self.log.loose_pain.append(pain)

    def _erased(self, record):
        self.log.erased += 1
        self.log.loose_pain.extend(self.waiting_before)
        self.waiting_before = []
        self.last_session = self.unnumbered = self.bare_start = None
        self.by_sid = {}  # a sid after the wall is a new session even if the number repeats

    def finish(self):
        self.log.loose_pain.extend(self.waiting_before)
        self.waiting_before = []
        return self.log


def parse(records):
    """The whole log: sessions in order of first appearance, plus loose faults/pain and skip counts."""
    grouper = _Grouper()
    for record in records or []:
        grouper.feed(record)
    return grouper.finish()


def sessions(records):
    """The log's sessions (list of Session), oldest first."""
    return parse(records).sessions


# ---- export --------------------------------------------------------------------------------

# One row per record, these columns, in this order. A field a record does not have is an
# empty cell; per-channel lists and fault names are joined with ';'; the start's
# {"heat": {"level", "target_mc"}} fills heat_level and target_mc. Fields outside this set
# (unknown kinds, newer firmware) go to `other` as one JSON object, so nothing is dropped;
# an empty one (null, such as a start's "heat": null) leaves its cell empty.
CSV_COLUMNS = (
    "seq",
    "ev",
    "unix_s",
    "up_ms",
    "sid",
    "ch",
    "program",
    "session_ms",
    "interlock",
    "index",
    "name",
    "amp_ua",
    "target_ua",
    "heat_level",
    "target_mc",
    "temp_mc",
    "run_ms",
    "reason",
    "max_amp_ua",
    "cem43_ms",
    "faults",
    "msg",
    "when",
    "score",
    "other",
)

# Kept first in JSON output, in this order; any other keys follow sorted.
_JSON_KEY_ORDER = ("seq", "ev", "unix_s", "up_ms", "sid")

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection);
# a tab or carriage return first can smuggle one past some importers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^-?\d+$")


def encodable(text):
    """Text any UTF-8 stream can take: a lone surrogate (JSON can carry "\\ud800") becomes the
    visible escape '\\ud800' instead of a UnicodeEncodeError halfway through the file."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _csv_safe(text):
    """Text with a leading apostrophe when a spreadsheet would take it as a formula.

    A plain integer such as '-5' stays as it is: it is a number to a spreadsheet, not a formula.
    """
    text = encodable(text)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def _cell(value):
    """One CSV cell: '' for absent/None, ints as digits, lists of ints and plain text joined with ';',
    any other list (empty, or with an item holding ';') and anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _csv_safe(value)
    if isinstance(value, list) and value and all(_joinable(item) for item in value):
        return _csv_safe(";".join(str(item) for item in value))
    return _csv_safe(_json_text(value))


def _joinable(item):
    """Whether a list item reads back unambiguously from a ';'-joined cell: an int, or text that is
    not empty, has no ';' and does not start with '[' (a cell starting so is a JSON list)."""
    if isinstance(item, int) and not isinstance(item, bool):
        return True
    return isinstance(item, str) and item != "" and ";" not in item and not item.startswith("[")


def _json_text(value):
    return json.dumps(_stable(value), ensure_ascii=False, default=repr)


def _csv_row(record):
    """A record's cells by column name; keys outside CSV_COLUMNS (and a non-dict record) go to `other`,
    as does a field named "other" and, in a kind this host does not know, a null field."""
    if not isinstance(record, dict):
        return {"other": _cell(record)}
    fields = {str(key): value for key, value in record.items()}
    heat = fields.get("heat")
    if isinstance(heat, dict) and set(heat) <= {"level", "target_mc"} and not {"heat_level", "target_mc"} & set(fields):
        del fields["heat"]  # its two fields have columns of their own, both free
        fields["heat_level"] = heat.get("level")
        fields["target_mc"] = heat.get("target_mc")
    # a known kind's null means "none" (heat: null), an empty cell; an unknown kind's null is kept
    keep_null = fields.get("ev") not in KINDS
    other = {key: value for key, value in fields.items()
             if (key not in CSV_COLUMNS or key == "other") and (value is not None or keep_null)}
    row = {column: _cell(fields.get(column)) for column in CSV_COLUMNS if column != "other"}
    row["other"] = _cell(other) if other else ""
    return row


def _open_for_text(file):
    """(file object, whether we opened it): a path is opened as UTF-8 with newline='' (csv needs it)."""
    if hasattr(file, "write"):
        return file, False
    return open(os.fspath(file), "w", encoding="utf-8", newline=""), True


def to_csv(records, file):
    """Write one row per record under a header of CSV_COLUMNS (file: a path or a text file object).

    Program names and fault messages come from the device, so a text cell that a
    spreadsheet would run as a formula (starting with =, +, -, @, tab or CR) gets a
    leading apostrophe. Pass a file object opened with newline='' to avoid blank rows
    on Windows.
    """
    out, opened = _open_for_text(file)
    try:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for record in records or []:
            writer.writerow(_csv_row(record))
    finally:
        if opened:
            out.close()


def _stable(value):
    """Dicts (at any depth) with keys sorted, so the same record always prints the same."""
    if isinstance(value, dict):
        return {str(key): _stable(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_stable(item) for item in value]
    return value


def _ordered(record):
    """A record with the identifying keys (seq, ev, unix_s, up_ms, sid) first, the rest sorted."""
    if not isinstance(record, dict):
        return _stable(record)
    stable = _stable(record)
    ordered = {key: stable[key] for key in _JSON_KEY_ORDER if key in stable}
    ordered.update((key, value) for key, value in stable.items() if key not in ordered)
    return ordered


def to_json(records, file):
    """Write the records as one JSON array, one record per line, keys in a stable order.

    Nested objects (a start's "heat") have sorted keys. Non-ASCII text is written as
    \\u escapes, so any stream takes it (even a lone surrogate) and json.load of the
    output gives back the records (for records that came from JSON in the first place).
    """
    out, opened = _open_for_text(file)
    try:
        rows = [json.dumps(_ordered(record), default=repr) for record in records or []]
        out.write("[\n" + ",\n".join(rows) + ("\n]\n" if rows else "]\n"))
    finally:
        if opened:
            out.close()
