"""Session log -> sessions, CSV, JSON and the HTML report (host/session_records.py, host/report.py)."""

import csv
import io
import json
import math
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.cbook import STEP_LOOKUP_MAP

from host import report
from host.report import summarize, write_report
from host.session_records import CSV_COLUMNS, KINDS, parse, sessions, to_csv, to_json
from tests.report_fixtures import SESSION_MS, synthetic_log

T0 = 1709577000  # 2024-03-04 18:30 UTC


def rec(seq, ev, **fields):
    """A record as the device writes it; unix_s advances with seq unless given."""
    record = {"seq": seq, "ev": ev, "up_ms": 1000 * seq, "unix_s": T0 + seq}
    record.update(fields)
    return record


def full_session(sid, program="heat-then-tens", reason="session_end"):
    """start, phase, amp, heat, two samples, stop: one of each kind for session sid."""
    return [
        rec(sid, "start", sid=sid, program=program, session_ms=SESSION_MS, amp_ua=[0, 0],
            heat={"level": "low", "target_mc": 40000}, interlock="alternate"),
        rec(sid + 1, "phase", sid=sid, index=0, name="heat"),
        rec(sid + 2, "amp", sid=sid, ch=1, target_ua=12000),
        rec(sid + 3, "heat", sid=sid, target_mc=None),
        rec(sid + 4, "sample", sid=sid, run_ms=60000, amp_ua=[10000, 12000], temp_mc=39000, target_mc=40000),
        rec(sid + 5, "sample", sid=sid, run_ms=90000, amp_ua=[11000, 9000], temp_mc=None, target_mc=None),
        rec(sid + 6, "stop", sid=sid, reason=reason, run_ms=90500, max_amp_ua=[11500, 12500], cem43_ms=1234),
    ]


# ---- grouping ------------------------------------------------------------------------------


def test_a_whole_session_is_read_field_by_field():
    (s,) = sessions(full_session(10))
    assert (s.sid, s.has_start, s.program, s.start_unix_s) == (10, True, "heat-then-tens", T0 + 10)
    assert s.planned_ms == SESSION_MS
    assert (s.heat_level, s.heat_target_mc, s.interlock) == ("low", 40000, "alternate")
    assert (s.complete, s.stop_reason, s.run_ms, s.cem43_ms) == (True, "session_end", 90500, 1234)
    assert s.max_amp_ua == [11500, 12500]  # the stop's, not the samples' [11000, 12000]
    assert [(a.ch, a.target_ua) for a in s.amp_changes] == [(1, 12000)]
    assert [h.target_mc for h in s.heat_changes] == [None]
    assert [(p.index, p.name) for p in s.phases] == [(0, "heat")]
    assert [(x.run_ms, x.amp_ua, x.temp_mc, x.target_mc) for x in s.samples] == [
        (60000, [10000, 12000], 39000, 40000),
        (90000, [11000, 9000], None, None),
    ]


def test_a_lost_stop_takes_time_and_peaks_from_the_samples_and_leaves_the_dose_unknown():
    (s,) = sessions(full_session(10)[:-1])
    assert (s.complete, s.stop_reason, s.cem43_ms) == (False, None, None)
    assert s.run_ms == 90000
    assert s.max_amp_ua == [11000, 12000]


def test_a_rotated_out_start_still_gives_a_session_dated_by_its_first_dated_record():
    records = full_session(10)[3:]
    records[0]["unix_s"] = None
    (s,) = sessions(records)
    assert (s.sid, s.has_start, s.program, s.planned_ms, s.start_unix_s) == (10, False, None, None, None)
    assert s.unix_s == T0 + 14
    assert s.complete and s.run_ms == 90500


def test_a_session_with_nothing_timed_has_run_ms_zero_and_no_peaks():
    (s,) = sessions([rec(1, "start", sid=1), rec(2, "fault", sid=1, faults=["overcurrent"], msg="ch 0")])
    assert (s.run_ms, s.max_amp_ua, s.complete) == (0, [], False)
    assert [(f.faults, f.msg) for f in s.faults] == [(["overcurrent"], "ch 0")]


def test_unknown_kinds_are_counted_and_ignored():
    log = parse(full_session(10) + [rec(30, "battery", level_pct=40), rec(31, "battery"), rec(32, "gps", sid=10)])
    assert dict(log.unknown_kinds) == {"battery": 2, "gps": 1}
    assert len(log.sessions) == 1 and log.sessions[0].run_ms == 90500


def test_malformed_records_are_counted_never_raised():
    bad_sid = {"ev": "sample", "sid": "one", "run_ms": 5}
    bad_pain = {"ev": "pain", "when": "x", "score": 3}
    log = parse(["text", 7, None, [], {}, {"ev": 3}, bad_sid, bad_pain])
    assert (log.malformed, log.records, log.sessions) == (8, 8, [])


def test_a_start_without_a_sid_field_is_named_by_its_seq():
    """The firmware's start record carries no "sid": its seq names the session."""
    records = full_session(10)
    del records[0]["sid"]
    (s,) = sessions(records)
    assert (s.sid, s.has_start, s.complete) == (10, True, True)


def unnumbered(records):
    """The records as the firmware writes them when the start record could not be written."""
    return [dict(r, sid=None) for r in records if r["ev"] != "start"]


def test_records_of_a_session_whose_start_failed_are_grouped_by_position():
    records = (
        full_session(10)
        + unnumbered(full_session(20))[:3]
        + [rec(27, "fault", sid=None, faults=["overtemp"], msg="pad hot")]
        + unnumbered(full_session(30))[3:]  # sample, sample, stop
        + [rec(40, "fault", sid=None, faults=["idle"], msg="outside")]  # after the stop: outside any session
        + unnumbered(full_session(50))  # a second one after the stop above
    )
    log = parse(records)
    numbered, first, second = log.sessions
    assert numbered.sid == 10 and len(numbered.samples) == 2
    assert (first.sid, first.has_start, first.complete, first.run_ms) == (None, False, True, 90500)
    assert [f.faults for f in first.faults] == [["overtemp"]]
    assert [p.name for p in first.phases] == ["heat"] and len(first.samples) == 2
    assert [f.faults for f in log.loose_faults] == [["idle"]]
    assert (second.sid, second.complete, len(second.samples)) == (None, True, 2)
    assert log.malformed == 0


def test_a_start_that_landed_although_its_write_failed_takes_the_null_sid_records():
    records = full_session(10)[:1] + unnumbered(full_session(10)) + full_session(30)
    first, second = sessions(records)
    assert (first.sid, first.program, first.complete, len(first.samples)) == (10, "heat-then-tens", True, 2)
    assert second.sid == 30


def test_fields_of_the_wrong_type_count_as_absent():
    (s,) = sessions(
        [
            rec(1, "start", sid=1, program=5, session_ms="35 min", unix_s=True, heat="hot"),
            rec(2, "sample", sid=1, run_ms=60000.0, amp_ua="12"),
            rec(3, "stop", sid=1, reason=None, run_ms=-4, max_amp_ua=[True, 3], cem43_ms=2**70),
        ]
    )
    assert (s.program, s.planned_ms, s.start_unix_s, s.heat_level) == (None, None, None, None)
    assert s.samples[0].run_ms is None and s.samples[0].amp_ua == []
    assert (s.run_ms, s.max_amp_ua, s.cem43_ms, s.stop_reason) == (0, [None, 3], None, None)


def test_pain_with_a_sid_goes_to_that_session_and_the_latest_score_wins():
    records = full_session(10) + [
        rec(20, "pain", sid=10, when="after", score=4),
        rec(21, "pain", sid=10, when="after", score=3),
        rec(22, "pain", sid=10, when="before", score=7),
    ]
    (s,) = sessions(records)
    assert (s.pain_before, s.pain_after, s.pain_change) == (7, 3, -4)


def test_pain_without_a_sid_before_goes_to_the_next_start_after_to_the_previous_session():
    records = (
        [rec(1, "pain", sid=None, when="before", score=8)]
        + full_session(10)
        + [rec(20, "pain", sid=None, when="after", score=5), rec(21, "pain", sid=None, when="before", score=6)]
        + full_session(30)
        + [rec(40, "pain", when="after", score=2)]  # no "sid" key at all: same as null
    )
    first, second = sessions(records)
    assert (first.pain_before, first.pain_after) == (8, 5)
    assert (second.pain_before, second.pain_after) == (6, 2)


def test_pain_with_nothing_to_attach_to_is_kept_loose_and_erase_is_a_wall():
    records = (
        [rec(1, "pain", sid=None, when="after", score=9)]  # no session before it
        + full_session(10)
        + [rec(20, "pain", sid=None, when="before", score=7), {"seq": 21, "ev": "erased"}]  # start rotated... erased
        + [rec(22, "pain", sid=None, when="after", score=1)]  # session 10 is behind the wall
        + [rec(23, "pain", sid=None, when="before", score=4)]  # no start follows
        + [rec(24, "pain", sid="ten", when="after", score=2), rec(25, "pain", sid=None, when="after", score=11)]
    )
    log = parse(records)
    (s,) = log.sessions
    assert (s.pain_before, s.pain_after) == (None, None)
    assert sorted(p.score for p in log.loose_pain) == [1, 2, 4, 7, 9]
    assert log.erased == 1 and log.malformed == 1  # score 11 (sid "ten" is counted once: loose, above)


def test_a_reused_sid_after_a_start_is_a_new_session():
    records = full_session(10) + [dict(r, seq=r["seq"] + 100) for r in full_session(10, program="tens-only")]
    first, second = sessions(records)
    assert (first.program, second.program) == ("heat-then-tens", "tens-only")
    assert len(first.samples) == len(second.samples) == 2


def test_faults_outside_a_session_are_loose():
    log = parse([rec(1, "fault", sid=None, faults=["pad_missing"], msg="no pad")] + full_session(10))
    assert [f.faults for f in log.loose_faults] == [["pad_missing"]]
    assert log.sessions[0].faults == []


def test_the_synthetic_log_groups_as_generated():
    log = parse(synthetic_log())
    by_reason = {}
    for s in log.sessions:
        by_reason.setdefault(s.stop_reason, []).append(s)
    assert len(by_reason["fault"]) == len(by_reason["estop"]) == len(by_reason[None]) == 1
    assert not by_reason[None][0].complete
    assert [s.unix_s for s in log.sessions].count(None) == 1
    assert log.erased == 1 and dict(log.unknown_kinds) == {"battery": 1} and log.malformed == 0
    assert log.loose_pain == [] and all(s.pain_before is not None for s in log.sessions)


# ---- CSV and JSON -------------------------------------------------------------------------------


def csv_rows(records):
    out = io.StringIO(newline="")
    to_csv(records, out)
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def test_csv_has_the_documented_columns_one_row_per_record():
    out = io.StringIO(newline="")
    to_csv(full_session(10), out)
    header = out.getvalue().split("\r\n")[0]
    assert header == (
        "seq,ev,unix_s,up_ms,sid,ch,program,session_ms,interlock,index,name,amp_ua,target_ua,heat_level,"
        "target_mc,temp_mc,run_ms,reason,max_amp_ua,cem43_ms,faults,msg,when,score,other"
    )
    assert tuple(header.split(",")) == CSV_COLUMNS
    assert len(csv_rows(full_session(10))) == 7


def test_csv_cells():
    rows = csv_rows(full_session(10) + [rec(20, "fault", sid=10, faults=["a", "b"], msg="m"), rec(21, "zap", x=[1])])
    start, sample, stop, fault, zap = rows[0], rows[4], rows[6], rows[7], rows[8]
    identity = [start[key] for key in ("seq", "ev", "unix_s", "up_ms", "sid")]
    assert identity == ["10", "start", str(T0 + 10), "10000", "10"]
    assert (start["heat_level"], start["target_mc"], start["amp_ua"], start["other"]) == ("low", "40000", "0;0", "")
    assert (sample["amp_ua"], sample["temp_mc"], sample["run_ms"]) == ("10000;12000", "39000", "60000")
    assert (stop["max_amp_ua"], stop["cem43_ms"], stop["ch"]) == ("11500;12500", "1234", "")
    assert fault["faults"] == "a;b"
    assert json.loads(zap["other"]) == {"x": [1]}


@pytest.mark.parametrize(
    "text, cell",
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("-5", "-5"),  # a number, not a formula
        ("plain = fine", "plain = fine"),
    ],
)
def test_csv_escapes_text_a_spreadsheet_would_run(text, cell):
    (row,) = csv_rows([rec(1, "fault", sid=None, faults=[text], msg=text)])
    assert (row["msg"], row["faults"]) == (cell, cell)
    (row,) = csv_rows([rec(1, "start", sid=1, program=text)])
    assert row["program"] == cell


def test_csv_a_negative_number_stays_a_number_but_a_list_starting_with_minus_is_text():
    (row,) = csv_rows([rec(1, "sample", sid=1, temp_mc=-5000, amp_ua=[-1, 2])])
    assert (row["temp_mc"], row["amp_ua"]) == ("-5000", "'-1;2")


def test_csv_and_json_write_to_a_path(tmp_path):
    records = synthetic_log(weeks=1)
    to_csv(records, tmp_path / "log.csv")
    to_json(records, str(tmp_path / "log.json"))
    assert len((tmp_path / "log.csv").read_text(encoding="utf-8").splitlines()) == len(records) + 1
    assert json.loads((tmp_path / "log.json").read_text(encoding="utf-8")) == records


def test_json_round_trips_with_a_stable_key_order():
    records = synthetic_log(weeks=1) + [{"zz": 1, "ev": "new", "aa": {"b": 1, "a": 2}}, "not a dict"]
    first, second = io.StringIO(), io.StringIO()
    to_json(records, first)
    to_json([dict(reversed(list(r.items()))) if isinstance(r, dict) else r for r in records], second)
    assert first.getvalue() == second.getvalue()
    assert json.loads(first.getvalue()) == records
    start = json.loads(next(line for line in first.getvalue().splitlines() if '"ev": "start"' in line).rstrip(","))
    assert list(start)[:5] == ["seq", "ev", "unix_s", "up_ms", "sid"]
    assert '"aa": {"a": 2, "b": 1}' in first.getvalue()


def test_json_of_an_empty_log_is_an_empty_array():
    out = io.StringIO()
    to_json([], out)
    assert json.loads(out.getvalue()) == []


# ---- the report -----------------------------------------------------------------------------------

SUMMARY_PNGS = ("sessions_per_week.png", "minutes_per_week.png", "amplitude_used.png", "pain_trend.png")


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    """A 1-week synthetic report (still every unusual case: 7 sessions), written once for the tests that read it."""
    records = synthetic_log(weeks=1)
    out = tmp_path_factory.mktemp("report")
    index = write_report(records, out)
    return records, out, index.read_text(encoding="utf-8")


def expected_figures(records):
    """Total ms and pain pairs straight from the records (the fixture's pain pattern), not via parse()."""
    run_ms, before, after, last_sid, pending = {}, {}, {}, None, None
    for r in records:
        if r["ev"] == "start":
            last_sid = r["sid"]
            if pending is not None:
                before[last_sid], pending = pending, None
        elif r["ev"] == "sample":
            run_ms[r["sid"]] = max(run_ms.get(r["sid"], 0), r["run_ms"])
        elif r["ev"] == "stop":
            run_ms[r["sid"]] = r["run_ms"]
        elif r["ev"] == "pain" and r["when"] == "before":
            pending = r["score"]
        elif r["ev"] == "pain":
            after[r["sid"] if r["sid"] is not None else last_sid] = r["score"]
    pairs = [(before[sid], after[sid]) for sid in before if sid in after]
    return sum(run_ms.values()), pairs


def test_report_writes_the_page_and_every_png(synthetic_report):
    records, out, page = synthetic_report
    sids = [r["sid"] for r in records if r["ev"] == "start"]
    for name in SUMMARY_PNGS + tuple("session-%d.png" % sid for sid in sids):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (out / src).is_file()
    assert len(re.findall(r"<img ", page)) == len(SUMMARY_PNGS) + len(sids)


def test_report_shows_the_numbers_of_the_records(synthetic_report):
    records, _, page = synthetic_report
    total_ms, pairs = expected_figures(records)
    assert "%.1f min" % (total_ms / 60000) in page
    mean_before = sum(b for b, _ in pairs) / len(pairs)
    mean_after = sum(a for _, a in pairs) / len(pairs)
    assert "mean %.1f before, %.1f after" % (mean_before, mean_after) in page
    assert "mean change %+.1f (over %d sessions" % (mean_after - mean_before, len(pairs)) in page
    dates = sorted(r["unix_s"] for r in records if r["ev"] == "start" and r["unix_s"] is not None)
    assert "%s to %s (UTC)" % tuple(time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (dates[0], dates[-1])) in page
    summary = summarize(parse(records))
    assert (summary.total_run_ms, summary.pain_pairs) == (total_ms, len(pairs))


def test_report_tables_say_how_each_session_ended(synthetic_report):
    _, _, page = synthetic_report
    for text in ("emergency stop", "stopped by a fault", "no stop record (incomplete)", "completed",
                 "pad_sensor_open: pad thermistor reads open circuit", "Sessions with unknown time",
                 "battery ×1", "The log was erased"):
        assert text in page
    assert page.count("<table>") == 3  # dated sessions, unknown time, faults


def test_report_escapes_device_text(tmp_path):
    records = full_session(10, program='<script>alert("x")</script>') + [
        rec(30, "fault", sid=None, faults=["<b>"], msg="<img src=x onerror=alert(1)>"),
        rec(31, "start", sid=31, program="$\\frac{$ & more", unix_s=None),
        rec(32, "phase", sid=31, index=0, name="$\\notacommand$"),
        rec(33, "sample", sid=31, run_ms=60000, amp_ua=[1000], temp_mc=30000, target_mc=None),
    ]
    page = write_report(records, tmp_path, title="<i>title</i>").read_text(encoding="utf-8")
    assert "<script>" not in page and "<img src=x" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "$\\frac{$ &amp; more" in page
    assert (tmp_path / "session-31.png").is_file()


def test_report_of_a_session_without_a_number(tmp_path):
    records = unnumbered(full_session(20)) + unnumbered(full_session(30))
    page = write_report(records, tmp_path).read_text(encoding="utf-8")
    assert "Some sessions have no number" in page and "(no number)" in page
    assert all((tmp_path / name).is_file() for name in ("session-unnumbered.png", "session-unnumbered-2.png"))


def test_empty_log_gives_a_page_saying_so(tmp_path):
    index = write_report([], tmp_path / "new" / "dir")
    page = index.read_text(encoding="utf-8")
    assert index.name == "index.html" and "No sessions in this log." in page
    assert sorted(p.name for p in index.parent.iterdir()) == ["index.html"]


def test_log_of_only_incomplete_sessions(tmp_path):
    records = full_session(10)[:-1] + full_session(30)[:5]
    page = write_report(records, tmp_path).read_text(encoding="utf-8")
    assert "2 (0 with a stop record, 2 without)" in page
    assert "%.1f min" % ((90000 + 60000) / 60000) in page
    assert page.count("no stop record (incomplete)") == 2
    assert all((tmp_path / name).is_file() for name in SUMMARY_PNGS + ("session-10.png", "session-30.png"))


def test_log_with_no_known_time_keeps_the_sessions_out_of_the_date_charts(tmp_path):
    records = [dict(r, unix_s=None) for r in full_session(10) + full_session(30)]
    page = write_report(records, tmp_path).read_text(encoding="utf-8")
    assert "unknown (the device did not know the time)" in page
    assert "No session with a known date." in page and "Sessions with unknown time" in page
    assert "leave out the 2 sessions with unknown time" in page


# ---- the session chart ------------------------------------------------------------------------------


def session_chart(records, tmp_path, monkeypatch):
    """The amplitude and temperature axes of the chart of the log's last session, as write_report draws it."""
    figures = []

    def save(fig, path):
        figures.append(fig)
        return path.name

    monkeypatch.setattr(report, "_save", save)
    write_report(records, tmp_path)
    amp_ax, temp_ax = figures[-1].axes[:2]
    return amp_ax, temp_ax


def line(ax, label):
    (found,) = [drawn for drawn in ax.get_lines() if drawn.get_label() == label]
    return found


def drawn_at(drawn, minute):
    """The height a line is drawn at, at that minute (nan where it is not drawn)."""
    xs, ys = STEP_LOOKUP_MAP[drawn.get_drawstyle()](list(drawn.get_xdata()), list(drawn.get_ydata()))
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:]):
        if x0 <= minute < x1:
            return y0 + (y1 - y0) * (minute - x0) / (x1 - x0)
    return math.nan


def phase_minutes(ax):
    return [drawn.get_xdata()[0] for drawn in ax.get_lines() if drawn.get_linestyle() == ":"]


def paused_program_session():
    """A program of four 1-minute phases (warm: heat; tens: TENS and heat; rest; tens2: TENS), paused
    40 s into warm for 5 minutes (the host's lease ran out) and resumed, as the device logs it: the
    phase and heat records carry only the uptime, the samples also the running time."""
    up = 10000  # uptime at the start
    pause_ms = 300000

    def at(run_ms):
        return {"up_ms": up + run_ms + (pause_ms if run_ms > 40000 else 0), "unix_s": None}

    sample = dict(ev="sample", sid=1)
    return [
        dict(seq=1, ev="start", **at(0), program="rx-short", session_ms=240000, amp_ua=[10000, 8000],
             heat={"level": "medium", "target_mc": 40000}, interlock="concurrent"),
        dict(seq=2, ev="phase", sid=1, **at(0), index=0, name="warm"),
        dict(seq=3, ev="heat", sid=1, **at(0), target_mc=40000),
        dict(seq=4, ev="phase", sid=1, **at(60000), index=1, name="tens"),
        dict(seq=5, ev="heat", sid=1, **at(60000), target_mc=40000),
        dict(seq=6, **sample, **at(60000), run_ms=60000, amp_ua=[20, 16], temp_mc=30416, target_mc=40000),
        dict(seq=7, ev="phase", sid=1, **at(120000), index=2, name="rest"),
        dict(seq=8, **sample, **at(120000), run_ms=120000, amp_ua=[9980, 7984], temp_mc=34319, target_mc=None),
        dict(seq=9, ev="heat", sid=1, **at(120000), target_mc=None),
        dict(seq=10, ev="phase", sid=1, **at(180000), index=3, name="tens2"),
        dict(seq=11, **sample, **at(180000), run_ms=180000, amp_ua=[20, 16], temp_mc=33857, target_mc=None),
        dict(seq=12, **sample, **at(240000), run_ms=240000, amp_ua=[9980, 7984], temp_mc=33073, target_mc=None),
        dict(seq=13, **sample, **at(244990), run_ms=244990, amp_ua=[0, 0], temp_mc=33029, target_mc=None),
        dict(seq=14, ev="stop", sid=1, **at(244990), reason="session_end", run_ms=244990, max_amp_ua=[10000, 8000],
             cem43_ms=0),
    ]


def test_session_chart_places_phases_and_heat_of_a_paused_session_on_its_running_time(tmp_path, monkeypatch):
    amp_ax, temp_ax = session_chart(paused_program_session(), tmp_path, monkeypatch)
    assert phase_minutes(amp_ax) == phase_minutes(temp_ax) == [0, 1, 2, 3]
    names = [label.get_text() for label in amp_ax.child_axes[0].get_xticklabels()]
    assert names == ["warm", "tens", "rest", "tens2"]
    target = line(temp_ax, "target")
    assert [drawn_at(target, minute) for minute in (0.5, 1.5)] == [40, 40]
    assert all(math.isnan(drawn_at(target, minute)) for minute in (2.5, 3.5))


def test_session_chart_places_a_record_that_gives_its_running_time_there(tmp_path, monkeypatch):
    """A phase starts 30 s after the sample of minute 1, written after a 5-minute pause."""
    records = [
        rec(1, "start", up_ms=10000, program="rx", session_ms=120000, amp_ua=[0, 0], heat=None),
        rec(2, "sample", sid=1, up_ms=70000, run_ms=60000, amp_ua=[0, 0], temp_mc=None, target_mc=None),
        rec(3, "phase", sid=1, up_ms=400000, run_ms=90000, index=1, name="tens"),
        rec(4, "sample", sid=1, up_ms=430000, run_ms=120000, amp_ua=[0, 0], temp_mc=None, target_mc=None),
        rec(5, "stop", sid=1, up_ms=430000, reason="session_end", run_ms=120000, max_amp_ua=[0, 0], cem43_ms=0),
    ]
    amp_ax, _ = session_chart(records, tmp_path, monkeypatch)
    assert phase_minutes(amp_ax) == [1.5]

def test_session_chart_changes_amplitude_in_steps_at_the_phase_starts(tmp_path, monkeypatch):
    amp_ax, _ = session_chart(paused_program_session(), tmp_path, monkeypatch)
    for label, on, off in (("ch 0", 9.98, 0.02), ("ch 1", 7.984, 0.016)):
        drawn = [drawn_at(line(amp_ax, label), minute) for minute in (1.01, 1.99, 2.01, 2.99, 3.01, 4.05)]
        assert drawn == pytest.approx([on, on, off, off, on, on])


def test_session_chart_ends_the_heat_target_where_the_samples_say_heat_is_off(tmp_path, monkeypatch):
    """Heat ended by its own timer after 9.5 minutes, leaving no heat record; the samples say so."""
    records = [
        rec(1, "start", up_ms=5000, program=None, session_ms=900000, amp_ua=[10000, 0], heat=None),
        rec(2, "heat", sid=1, up_ms=5000, target_mc=40000),
    ]
    for minute in range(1, 16):
        target_mc = 40000 if minute < 10 else None
        records.append(rec(2 + minute, "sample", sid=1, up_ms=5000 + 60000 * minute, run_ms=60000 * minute,
                           amp_ua=[10000, 0], temp_mc=39000, target_mc=target_mc))
    records.append(rec(18, "stop", sid=1, up_ms=905000, reason="session_end", run_ms=900000,
                       max_amp_ua=[10000, 0], cem43_ms=0))
    _, temp_ax = session_chart(records, tmp_path, monkeypatch)
    target = line(temp_ax, "target")
    assert [drawn_at(target, minute) for minute in (0.5, 9.5)] == [40, 40]
    assert all(math.isnan(drawn_at(target, minute)) for minute in (10.5, 12, 14.9))


@pytest.mark.parametrize("end_sample", [True, False])
def test_session_chart_draws_an_emergency_stop_as_a_step_at_the_stop(tmp_path, monkeypatch, end_sample):
    """15 mA until an emergency stop 12 s after the last sample of a minute; the device writes an end
    sample of zero output with the stop (a log may lack it: its write failed)."""
    records = [rec(1, "start", up_ms=5000, program=None, session_ms=1800000, amp_ua=[15000, 0], heat=None)]
    for minute in range(1, 13):
        records.append(rec(1 + minute, "sample", sid=1, up_ms=5000 + 60000 * minute, run_ms=60000 * minute,
                           amp_ua=[15000, 0], temp_mc=None, target_mc=None))
    if end_sample:
        records.append(rec(14, "sample", sid=1, up_ms=737000, run_ms=732000, amp_ua=[0, 0], temp_mc=None,
                           target_mc=None))
    records.append(rec(15, "stop", sid=1, up_ms=737000, reason="estop", run_ms=732000, max_amp_ua=[15000, 0],
                       cem43_ms=0))
    amp_ax, _ = session_chart(records, tmp_path, monkeypatch)
    ch0 = line(amp_ax, "ch 0")
    assert [drawn_at(ch0, minute) for minute in (11.5, 12.1, 12.19)] == [15, 15, 15]
    assert (ch0.get_xdata()[-1], ch0.get_ydata()[-1]) == (12.2, 0)


# ---- never raises -----------------------------------------------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["=cmd", "\ud800", "$\\frac$", "<b>", "-1", ""]),
    st.lists(st.one_of(st.none(), st.integers(-(10**6), 10**6), st.text(max_size=3)), max_size=3),
    st.dictionaries(
        st.sampled_from(["level", "target_mc", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=3)),
        max_size=2,
    ),
)

PLAUSIBLE = {
    "seq": st.integers(0, 50),
    "sid": st.integers(0, 6),
    "up_ms": st.integers(0, 10**7),
    "unix_s": st.one_of(st.none(), st.integers(T0, T0 + 60 * 86400), st.integers(0, 253402300799)),
    "program": st.text(max_size=12),
    "session_ms": st.integers(0, 4 * 10**6),
    "amp_ua": st.lists(st.integers(0, 80000), max_size=3),
    "max_amp_ua": st.lists(st.integers(0, 80000), max_size=3),
    "heat": st.fixed_dictionaries(
        {"level": st.sampled_from(["low", "high", None]), "target_mc": st.integers(30000, 45000)}
    ),
    "run_ms": st.integers(0, 4 * 10**6),
    "temp_mc": st.integers(20000, 45000),
    "target_mc": st.one_of(st.none(), st.integers(30000, 45000)),
    "ch": st.integers(0, 2),
    "target_ua": st.integers(0, 80000),
    "index": st.integers(0, 3),
    "name": st.text(max_size=8),
    "faults": st.lists(st.text(max_size=6), max_size=2),
    "msg": st.text(max_size=10),
    "reason": st.sampled_from(["stop", "session_end", "estop", "fault", "lease_expired", "?"]),
    "cem43_ms": st.integers(0, 10**6),
    "when": st.sampled_from(["before", "after", "during"]),
    "score": st.integers(-1, 11),
}


@st.composite
def partial_record(draw):
    """A record of any kind (or a new one) whose fields are each missing, plausible or junk."""
    if draw(st.integers(0, 19)) == 0:
        return draw(JUNK)  # not even a dict
    record = {"ev": draw(st.one_of(st.sampled_from(KINDS), st.sampled_from(["zap", ""]), JUNK))}
    for key, plausible in PLAUSIBLE.items():
        choice = draw(st.integers(0, 5))
        if choice <= 2:
            record[key] = draw(plausible)
        elif choice == 3:
            record[key] = draw(JUNK)
    return record


LOGS = st.lists(partial_record(), max_size=15)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOGS)
def test_sessions_and_exports_never_raise(records):
    log = parse(records)
    for s in log.sessions:
        assert isinstance(s.run_ms, int) and s.run_ms >= 0
        assert s.pain_before is None or 0 <= s.pain_before <= 10
        assert s.complete or (s.stop_reason is None and s.cem43_ms is None)
    out = io.StringIO(newline="")
    to_csv(records, out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert len(rows) == len(records) + 1 and all(len(row) == len(CSV_COLUMNS) for row in rows)
    to_json(records, io.StringIO())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=5) | JSON_VALUES, max_size=5))
def test_json_round_trips_anything_that_came_from_json(records):
    out = io.StringIO()
    to_json(records, out)
    assert json.loads(out.getvalue()) == records


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(partial_record(), max_size=6))
def test_write_report_never_raises(tmp_path, records):
    index = write_report(records, tmp_path)
    assert "<!DOCTYPE html>" in index.read_text(encoding="utf-8")
