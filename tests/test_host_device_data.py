"""Odd data from the wire and interrupts at awkward moments: a clear error naming the field (or
a "?" in the live view), never a traceback, and never a session left running."""

import json

import pytest
from rich.console import Console

import host.client as hc
from host import monitor as mon
from host import units
from tests.test_host_client_library import ScriptedLine, ok, ops
from host.keepalive import KeepalivePace
from tests.test_host_client import make_client


# ---- session(): every exit ends in stop or estop --------------------------------------------


def running_line():
    return ScriptedLine(lambda request: ok(request, state="RUNNING"))


def ops_of_a_session_interrupted_in(monkeypatch, method, replacement, block=lambda: None):
    """The requests a kept-lease session sent when LeaseKeeper.<method> raised KeyboardInterrupt."""
    monkeypatch.setattr(hc.LeaseKeeper, method, replacement)
    line = running_line()
    client = make_client(line, timeout_s=0.1)
    with pytest.raises(KeyboardInterrupt):
        with client.session(amp_ua=[4000], keep_lease=True):
            block()
    return ops(line)


def test_ctrl_c_while_the_lease_keeper_is_joined_on_leaving_still_estops(monkeypatch):
    real_stop = hc.LeaseKeeper.stop

    def interrupted_join(keeper, wait=True):
        real_stop(keeper, wait=False)
        if wait:
            raise KeyboardInterrupt

    sent = ops_of_a_session_interrupted_in(monkeypatch, "stop", interrupted_join)
    assert sent[0] == "start" and sent[-1] == "estop", sent


def test_ctrl_c_while_the_lease_keeper_starts_estops(monkeypatch):
    def interrupted_start(keeper):
        raise KeyboardInterrupt

    def block():
        raise AssertionError("the block must not run")

    sent = ops_of_a_session_interrupted_in(monkeypatch, "start", interrupted_start, block)
    assert sent == ["start", "estop"], sent


# ---- log_records: the reply's fields checked, the paging bounded -----------------------------


def log_line(page):
    """A device whose log_fetch reply is page(from_seq): a dict of reply fields."""
    return ScriptedLine(lambda request: ok(request, **page(request["from_seq"])))


def record(seq):
    return {"seq": seq, "ev": "pain", "score": 3, "when": "before", "sid": None, "up_ms": 5, "unix_s": 0}


@pytest.mark.parametrize("fields, words", [
    ({"records": [record(1)], "next_seq": "2"}, "next_seq must be an integer"),
    ({"records": [record(1)], "next_seq": True}, "next_seq must be an integer"),
    ({"records": [record(1)]}, "without next_seq"),
    ({"records": 5, "next_seq": 2}, "records must be a list"),
    ({"records": "abc", "next_seq": 2}, "records must be a list"),
    ({"records": [1, 2], "next_seq": 2}, "records must be a list"),
])
def test_a_log_fetch_reply_with_a_broken_field_is_a_protocol_error_naming_it(fields, words):
    client = make_client(log_line(lambda from_seq: fields), timeout_s=0.1)
    with pytest.raises(hc.ProtocolError, match=words):
        client.log_records()


def test_a_device_repeating_its_records_with_a_growing_next_seq_is_refused_not_looped():
    client = make_client(log_line(lambda from_seq: {"records": [record(1)], "next_seq": from_seq + 1}),
                         timeout_s=0.1)
    with pytest.raises(hc.ProtocolError, match="only repeats records"):
        client.log_records()


def test_a_device_that_never_ends_its_log_is_given_up_on_after_the_page_limit(monkeypatch):
    monkeypatch.setattr(hc, "MAX_LOG_PAGES", 50)
    line = log_line(lambda from_seq: {"records": [record(from_seq)], "next_seq": from_seq + 1})
    client = make_client(line, timeout_s=0.1)
    with pytest.raises(hc.ProtocolError, match="did not end after 50 pages"):
        client.log_records()
    assert len(line.sent) == 50


def test_a_well_formed_log_is_fetched_whole_page_by_page():
    log = [record(seq) for seq in range(1, 8)]

    def page(from_seq):
        chunk = [r for r in log if r["seq"] >= from_seq][:3]
        return {"records": chunk, "next_seq": (chunk[-1]["seq"] + 1) if chunk else from_seq, "last_seq": 7}

    assert [r["seq"] for r in make_client(log_line(page), timeout_s=0.1).log_records()] == list(range(1, 8))


# ---- lease_ms in a status reply (the lease keeper's and the monitor's pace) ------------------


@pytest.mark.parametrize("lease_ms", ["3000", 10**400, -1, 100, None, True, [3000]],
                         ids=["text", "huge", "negative", "below-500", "null", "bool", "list"])
def test_a_status_lease_ms_outside_the_protocol_is_a_protocol_error_naming_it(lease_ms):
    pace = KeepalivePace(clock=lambda: 0.0)
    with pytest.raises(hc.ProtocolError, match="lease_ms .*0 \\(no lease\\) or an integer 500..30000"):
        pace.note({"state": "RUNNING", "lease_ms": lease_ms, "uptime_ms": 5})
        pace.interval_s()


def test_a_huge_uptime_does_not_overflow_the_pace():
    times = iter([0.0, 1.0])
    pace = KeepalivePace(clock=lambda: next(times))
    pace.note({"lease_ms": 3000, "uptime_ms": 0})
    pace.note({"lease_ms": 3000, "uptime_ms": 10**400})
    assert 0 < pace.interval_s() <= 1.0


def test_the_lease_keeper_ends_on_a_bad_lease_ms_naming_the_field():
    line = ScriptedLine(lambda request: ok(request, state="RUNNING", lease_ms="3000", uptime_ms=5))
    keeper = hc.LeaseKeeper(make_client(line, timeout_s=0.1))
    keeper._run()  # noqa: SLF001 - the thread's body, run here
    assert isinstance(keeper.error, hc.ProtocolError) and "lease_ms" in str(keeper.error), keeper.error


# ---- the live view: a field it cannot read is shown as "?", and it keeps drawing -------------


def good_telemetry(**changes):
    event = {"ev": "telemetry", "n": 1, "dropped": 0, "uptime_ms": 1000, "state": "RUNNING", "faults": [],
             "amp_ua": [3000, 0], "target_ua": [4000, 0], "delivered_ua": [3000, 0], "session_left_ms": 125000,
             "heat": {"state": "holding", "target_mc": 40000, "measured_mc": 39985, "heater_duty_pct": 31}}
    event.update(changes)
    return {key: value for key, value in event.items() if value is not MISSING}


MISSING = object()


def drawn(state):
    console = Console(width=160, record=True, color_system=None)
    console.print(mon.render(state))
    return console.export_text() + "\n" + mon.summary_line(state)


@pytest.mark.parametrize("changes, shown", [
    ({"faults": [1, 2]}, "faults: 1, 2"),
    ({"faults": "x"}, "faults: ?"),
    ({"heat": [1]}, "heat ?"),
    ({"amp_ua": ["a", "b"]}, "ch0 ?/4.0 mA"),
    ({"amp_ua": 5}, "RUNNING"),
    ({"session_left_ms": "x"}, "session left ?"),
    ({"target_ua": MISSING}, "ch0 3.0 mA/?"),
    ({"delivered_ua": [3000]}, "?"),
    ({"heat": {"state": "holding", "target_mc": "x", "measured_mc": "y", "heater_duty_pct": "x"}}, "heater ? %"),
    ({"state": ["RUNNING"]}, "?"),
    ({"n": "7", "uptime_ms": None}, "RUNNING"),
], ids=["faults-ints", "faults-text", "heat-list", "amps-text", "amps-int", "left-text", "no-target",
        "short-delivered", "heat-text", "state-list", "n-text"])
def test_the_view_shows_a_field_it_cannot_read_as_a_question_mark(changes, shown):
    state = mon.MonitorState({"channels": 2, "amp_limit_ua": 80000})
    state.connected = True
    state.on_event(good_telemetry(**changes))
    assert shown in drawn(state)


@pytest.mark.parametrize("channels", [0, "two", None, -1], ids=["zero", "text", "null", "negative"])
def test_a_hello_with_an_unreadable_channel_count_still_draws_and_steers(channels):
    state = mon.MonitorState({"channels": channels, "amp_limit_ua": "x"})
    state.connected = True
    state.on_event(good_telemetry())
    state.select_next(1)
    assert state.selected in (0, 1)
    assert "ch1 0.0 mA/0.0 mA" in drawn(state)


def test_a_program_with_unreadable_channel_plans_shows_question_marks_for_its_maxima():
    assert mon.prescribed_maxima({"channels": [5, {"max_amp_ua": 8000}, {"max_amp_ua": "x"}]}) == [None, 8000, None]
    assert mon.prescribed_maxima({"channels": "x"}) == []
    assert mon.prescribed_maxima(["x"]) == []
    state = mon.MonitorState({"channels": 2})
    state.connected = True
    state.on_status({"state": "RUNNING", "program": "rx"}, mon.prescribed_maxima({"channels": [5, 6]}))
    state.on_event(good_telemetry())
    assert "prescribed max ?/?" in drawn(state)


def test_the_formatters_show_a_value_that_is_not_an_integer_as_a_question_mark():
    for value in ("a", None, [1], 1.5, True, 10**400):
        assert units.format_ma(value) == "?"
        assert units.format_duration_ms(value) == "?"
        assert units.format_temperature(value) == "?"
        assert units.format_dose(value) == "?"
        assert units.format_celsius(value) == "?"


# ---- tensctl monitor: Ctrl-C whose stop meets a broken reply --------------------------------


class InterruptedMonitor:
    """A monitor whose view is ended by Ctrl-C, and whose session stop then fails with `error`."""

    made = []

    def __init__(self, connect, every_ms, draw, keys, reconnect_s=30.0, error=None):
        self.client = EstopClient()
        self.state = mon.MonitorState()
        InterruptedMonitor.made.append(self)

    def run(self, duration_s):
        raise KeyboardInterrupt

    def stop_session(self, wait_s):
        raise hc.ProtocolError("the device answered stop with ok='yes'")

    def close(self):
        pass


class EstopClient:
    def __init__(self):
        self.calls = []

    def estop(self):
        self.calls.append("estop")


def invoke_cli(*args):
    from click.testing import CliRunner

    from host.cli import cli

    return CliRunner().invoke(cli, list(args), env={"TENSCTL_PORT": None})


def test_ctrl_c_in_monitor_whose_stop_breaks_the_protocol_estops_and_says_so(monkeypatch):
    monkeypatch.setattr(mon, "Monitor", InterruptedMonitor)
    result = invoke_cli("--port", "socket://127.0.0.1:9", "monitor")
    assert result.exit_code == 130, (result.output, result.exception)
    assert "Could not stop the session" in result.stderr and "ok='yes'" in result.stderr
    assert "Emergency stop sent and confirmed" in result.stderr
    assert InterruptedMonitor.made[-1].client.calls == ["estop"]


class BrokenMonitor(InterruptedMonitor):
    def run(self, duration_s):
        raise hc.ProtocolError("the device's status reply has lease_ms '3000'")


def test_a_protocol_error_in_monitor_is_reported_as_kind_protocol(monkeypatch):
    monkeypatch.setattr(mon, "Monitor", BrokenMonitor)
    result = invoke_cli("--port", "socket://127.0.0.1:9", "--json", "monitor")
    assert result.exit_code == 4, (result.output, result.exception)
    document = json.loads(result.stdout.strip().splitlines()[-1])
    assert document["error"]["kind"] == "protocol" and "lease_ms" in document["error"]["message"]


# ---- no reply, but damaged lines arrived --------------------------------------------------


def damaged(request):
    good = ok(request, state="IDLE")
    crc = good[-5:-1]
    return good[:-5] + (b"0000" if crc != b"0000" else b"1111") + b"\n"


def test_no_reply_when_every_reply_was_damaged_says_damaged_lines_arrived_and_how_many():
    client = make_client(ScriptedLine(damaged), timeout_s=0.1)
    with pytest.raises(hc.NoResponse) as caught:
        client.status()
    text = str(caught.value)
    assert "2 damaged lines arrived" in text and "bad checksum" in text, text
    assert "is a pulsewarm device on that port" not in text
    assert caught.value.damaged == 2


def test_no_reply_when_a_too_long_line_arrived_says_so_too():
    client = make_client(ScriptedLine(lambda request: b"@" + b"x" * 5000 + b"\n"), timeout_s=0.1, retries=0)
    with pytest.raises(hc.NoResponse, match="1 damaged line arrived"):
        client.status()


def test_no_reply_and_nothing_at_all_keeps_the_is_a_device_there_hint():
    client = make_client(ScriptedLine(lambda request: b""), timeout_s=0.1)
    with pytest.raises(hc.NoResponse, match="is a pulsewarm device on that port"):
        client.status()


# ---- the CSV export drops nothing ------------------------------------------------------------


def csv_rows(records):
    import csv
    import io

    from host.session_records import to_csv

    out = io.StringIO(newline="")
    to_csv(records, out)
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def test_csv_keeps_the_null_fields_of_an_unknown_kind_and_a_field_named_other():
    (row,) = csv_rows([{"seq": 4, "ev": "battery", "level": None, "pct": 50, "other": "x"}])
    assert json.loads(row["other"]) == {"level": None, "pct": 50, "other": "x"}
    (row,) = csv_rows([{"seq": 5, "ev": "start", "heat": None, "other": [1]}])  # a known kind's null: none
    assert json.loads(row["other"]) == {"other": [1]}


def test_csv_start_with_both_a_heat_object_and_heat_level_keeps_both():
    (row,) = csv_rows([{"seq": 2, "ev": "start", "heat": {"level": "low", "target_mc": 40000}, "heat_level": "high"}])
    assert row["heat_level"] == "high" and json.loads(row["other"]) == {"heat": {"level": "low", "target_mc": 40000}}
    (row,) = csv_rows([{"seq": 2, "ev": "start", "heat": {"level": "low"}, "target_mc": 5}])
    assert row["target_mc"] == "5" and json.loads(row["other"]) == {"heat": {"level": "low"}}


@pytest.mark.parametrize("faults", [["a;b", "c"], ["a", "b;c"], [None, "c"], ["", "c"], ["[1]"], [], [[1], 2]],
                         ids=["semicolon-first", "semicolon-last", "null", "empty-text", "bracket", "empty", "nested"])
def test_csv_lists_that_joining_would_blur_are_written_as_json(faults):
    (row,) = csv_rows([{"seq": 3, "ev": "fault", "faults": faults}])
    assert json.loads(row["faults"]) == faults


def test_csv_plain_lists_are_still_joined_with_semicolons():
    (row,) = csv_rows([{"seq": 3, "ev": "fault", "faults": ["no_load:1", "overtemp"], "amp_ua": [8000, 0]}])
    assert (row["faults"], row["amp_ua"]) == ("no_load:1;overtemp", "8000;0")


# ---- a pain record with a sid that names no session is counted once -------------------------


def test_a_pain_score_with_a_text_sid_is_loose_and_not_also_malformed():
    from host.session_records import parse

    log = parse([{"seq": 1, "ev": "pain", "sid": "x", "when": "before", "score": 4, "unix_s": 0, "up_ms": 1}])
    assert [p.score for p in log.loose_pain] == [4] and log.malformed == 0


# ---- the report: sessions dated at the end of year 9999, and charts that cannot be drawn -----

LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z


@pytest.mark.parametrize("days_before", [None, 3], ids=["one-day", "three-days"])
def test_a_report_of_sessions_on_the_last_day_of_year_9999_draws_every_chart(tmp_path, days_before):
    from host.report import write_report
    from tests.test_host_report import full_session

    records = [dict(r, unix_s=LAST_SECOND - 100) for r in full_session(10)]
    if days_before is not None:
        records += [dict(r, unix_s=LAST_SECOND - 86400 * days_before) for r in full_session(20)]
    index = write_report(records, tmp_path)
    assert "Chart not drawn" not in index.read_text(encoding="utf-8")
    assert (tmp_path / "amplitude_used.png").is_file() and (tmp_path / "pain_trend.png").is_file()


def test_a_chart_that_cannot_be_drawn_is_a_note_and_the_report_is_still_written(tmp_path, monkeypatch):
    from host import report
    from tests.test_host_report import full_session

    def broken(dated, path):
        raise ValueError("Matplotlib dates must be between year 0001 and 9999")

    monkeypatch.setattr(report, "_plot_pain_trend", broken)
    text = report.write_report(full_session(10), tmp_path).read_text(encoding="utf-8")
    assert "Chart not drawn (Pain before and after each session): ValueError" in text
    assert (tmp_path / "amplitude_used.png").is_file()
