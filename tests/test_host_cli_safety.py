"""tensctl defects found by QA, each pinned: the emergency stop without a handshake, partial
outcomes of `start`, what `start` says it will run, Ctrl-C while waiting, programs in status and
the live view, clear-fault of a fault whose cause is still there, and bad input of every kind
(files, URLs, paths, numbers) ending in one clear line instead of a traceback."""

import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import date2num
from matplotlib.figure import Figure
from rich.console import Console

from firmware.protocols import frame
from host import cli as cli_module
from host import monitor as mon
from host import report as report_module
from host.cli import cli
from host.client import Client, DeviceError
from sim.launcher import start_server

SPEED = 20


@pytest.fixture
def served():
    with start_server(runtime="cpython", speed=SPEED, pty=True) as server:
        yield server


def invoke(*args, stdin=None):
    return CliRunner().invoke(cli, list(args), env={"TENSCTL_PORT": None}, catch_exceptions=False, input=stdin)


@pytest.fixture
def run(served):
    def call(*args, expect=0):
        result = invoke("--port", served.url, *args)
        assert result.exit_code == expect, (args, result.output)
        return result

    return call


def as_json(run, *args, expect=0):
    return json.loads(run("--json", *args, expect=expect).stdout)


# ---- 1. the emergency stop goes out whatever the handshake says ------------------------------


class FakeDevice:
    """A TCP device that logs the ops it receives; hello and estop answered as `mode` says."""

    def __init__(self, mode):
        self.mode = mode
        self.ops = []
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(5)
        self.url = "socket://127.0.0.1:%d" % self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _reply(self, message):
        op, rid = message.get("op"), message.get("id")
        if self.mode == "silent":
            return None
        if op == "hello":
            if self.mode == "refuse_hello":
                return {"id": rid, "ok": False, "err": "version", "msg": "host speaks 0.4; this device speaks 1.0"}
            if self.mode == "silent_hello":
                return None
            return {"id": rid, "ok": True, "proto": "9.0", "proto_majors": [9], "fw": "9", "device_id": "fake",
                    "channels": 2, "amp_limit_ua": 80000, "amp_step_ua": 500, "tick_ms": 10}
        if op == "estop" and self.mode == "refuse_estop":
            return {"id": rid, "ok": False, "err": "bad_state", "msg": "cannot now"}
        return {"id": rid, "ok": True, "state": "IDLE"}

    def _serve(self, conn):
        reader = frame.LineReader()
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                for line in reader.feed(data):
                    message = frame.decode_line(line) if line is not None else None
                    if not isinstance(message, dict):
                        continue
                    self.ops.append(message.get("op"))
                    reply = self._reply(message)
                    if reply is not None:
                        out = frame.encode_frame(reply)
                        conn.sendall(out if isinstance(out, bytes) else out.encode())

    def close(self):
        self.server.close()


@pytest.fixture
def fake_device(request):
    device = FakeDevice(request.param)
    yield device
    device.close()


@pytest.mark.parametrize("fake_device", ["refuse_hello", "other_major", "silent_hello"], indirect=True)
def test_estop_is_sent_and_confirmed_whatever_the_hello_would_say(fake_device):
    result = invoke("--port", fake_device.url, "--timeout", "0.2", "estop")
    assert result.exit_code == 0, result.output
    assert fake_device.ops[0] == "estop", fake_device.ops
    assert "EMERGENCY STOP" in result.stdout and "output zero" in result.stdout


@pytest.mark.parametrize("fake_device, code", [("silent", 4), ("refuse_estop", 1)], indirect=["fake_device"])
def test_an_unconfirmed_estop_says_so_loudly_and_exits_non_zero(fake_device, code):
    result = invoke("--port", fake_device.url, "--timeout", "0.1", "estop")
    assert result.exit_code == code
    assert "estop" in fake_device.ops
    assert result.stderr.startswith("Error: EMERGENCY STOP NOT CONFIRMED: ")
    assert "electrodes" in result.stderr  # what to do instead
    document = json.loads(invoke("--port", fake_device.url, "--timeout", "0.1", "--json", "estop").stdout)
    assert document["ok"] is False and document["error"]["message"].startswith("EMERGENCY STOP NOT CONFIRMED")


def test_an_estop_with_no_port_to_open_is_not_confirmed(tmp_path):
    result = invoke("--port", str(tmp_path / "no-tty"), "estop")
    assert result.exit_code == 3 and "EMERGENCY STOP NOT CONFIRMED: cannot open port" in result.stderr


# ---- 2, 3, 5. what start says, and heat it cannot give --------------------------------------


def test_start_with_heat_above_the_cap_starts_nothing(run):
    run("settings", "--set", "heat_max_target_mc=39000")
    result = run("start", "--amp", "8", "--heat", "high", expect=1)
    assert "nothing started" in result.stderr and "42.0 °C" in result.stderr and "39.0 °C" in result.stderr
    assert as_json(run, "status")["state"] == "IDLE"


def test_start_whose_heat_is_refused_after_the_start_reports_both(run, monkeypatch):
    def refuse(self, **fields):
        raise DeviceError("heat", "bad_state", "this device has no heat pad")

    monkeypatch.setattr(Client, "heat", refuse)
    result = run("start", "--amp", "8", "--lease", "0", "--heat", "medium", expect=1)
    assert "Started: RUNNING" in result.stdout and "channel 0 8.0 mA" in result.stdout
    assert "HEAT REFUSED (the session is RUNNING without heat)" in result.stderr and "no heat pad" in result.stderr
    document = as_json(run, "start", expect=1)  # already running: a plain refusal, no partial outcome
    assert "targets_ua" not in document
    run("stop", "--wait")
    result = run("--json", "start", "--amp", "8", "--lease", "0", "--heat", "medium", expect=1)
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["error"]["kind"] == "heat_refused"
    assert document["state"] == "RUNNING" and document["targets_ua"] == [8000, 0]
    assert "--heat" in run("start", "--help").stdout and "keeps running without heat" in run("start", "--help").stdout


def test_start_lists_every_channels_target_including_one_set_earlier(run):
    run("amp", "1", "30")
    result = run("start", "--amp", "5", "--lease", "0")
    assert "channel 0 5.0 mA" in result.stdout
    assert "channel 1 30.0 mA (kept from before" in result.stdout
    assert as_json(run, "status")["ch"][1]["target_ua"] == 30000


def test_start_states_the_devices_own_ramp_session_and_lease(run):
    run("settings", "--set", "ramp_default_ms=3000", "--set", "session_default_ms=600000",
        "--set", "lease_default_ms=20000")
    result = run("start", "--amp", "2")
    assert "over 3 s" in result.stdout and "Auto-off after 10 min" in result.stdout
    assert "every 20 s (the device's lease_default_ms" in result.stdout
    assert as_json(run, "status")["lease_ms"] == 20000, "no --lease: the device's default lease applies"
    run("stop", "--wait")
    document = as_json(run, "start", "--lease", "0", "--ramp", "2", "--minutes", "7")
    assert document["lease_ms"] == 0 and document["ramp_ms"] == 2000 and document["session_ms"] == 7 * 60000
    assert as_json(run, "status")["lease_ms"] == 0


# ---- 4. Ctrl-C while start --wait waits --------------------------------------------------------


@pytest.mark.parametrize("command", [("start", "--amp", "6", "--lease", "0", "--ramp", "30", "--wait")])
def test_ctrl_c_during_start_wait_stops_the_session_and_exits_130(run, monkeypatch, command):
    def interrupted(client, budget_ms):
        client.poll(0.05)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_wait_ramped", interrupted)
    result = run(*command, expect=130)
    assert "Ctrl-C: stopping stimulation" in result.stderr and "stimulation stopped" in result.stderr
    monkeypatch.undo()
    assert as_json(run, "status")["state"] == "IDLE"


def test_ctrl_c_during_resume_wait_stops_the_session_too(run, monkeypatch):
    run("start", "--amp", "3", "--lease", "0")
    run("pause")
    monkeypatch.setattr(cli_module, "_wait_ramped", lambda client, budget_ms: (_ for _ in ()).throw(KeyboardInterrupt))
    run("resume", "--wait", expect=130)
    monkeypatch.undo()
    assert as_json(run, "status")["state"] == "IDLE"


# ---- 6. a running program in status and the live view ---------------------------------------


def test_status_and_live_view_show_program_phase_and_prescribed_max(run):
    run("program", "upload", "--preset", "heat-then-tens", "--name", "rx-back", "--max", "25")
    result = run("run", "rx-back", "--duration", "1.5")
    assert "program rx-back phase" in result.stdout and "prescribed max 25.0 mA" in result.stdout
    out = run("status").stdout
    assert "program: rx-back  phase:" in out and "prescribed max" in out
    rows = [line for line in out.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert "25.0 mA" in rows[0] and "80.0 mA" not in rows[0], rows
    run("estop")


def test_render_shows_program_phase_and_prescribed_max():
    state = mon.MonitorState({"channels": 2, "device_id": "dev-7", "amp_limit_ua": 80000})
    state.connected = True
    state.on_event({"ev": "telemetry", "n": 1, "state": "RUNNING", "faults": [], "amp_ua": [3000, 0],
                    "target_ua": [4000, 0], "delivered_ua": [3000, 0], "session_left_ms": 60000, "heat": None})
    state.on_status({"program": "rx-back", "phase": "tens-and-heat"}, [25000])
    console = Console(width=120, record=True, color_system=None)
    console.print(mon.render(state))
    text = console.export_text()
    assert "program rx-back   phase tens-and-heat" in text and "prescribed max" in text and "25.0 mA" in text
    assert "not used" in text  # channel 1 is not in the program
    assert "80.0 mA" not in text


# ---- 7. clear-fault when the cause is still there ---------------------------------------------


def test_clear_fault_reports_a_fault_that_latches_again(run, served):
    served.served.set_fault("thermistor_open", True)
    deadline = time.monotonic() + 10
    while as_json(run, "status")["state"] != "FAULT":
        assert time.monotonic() < deadline
    result = run("clear-fault", expect=1)
    assert "fault latched again: sensor_open" in result.stderr and "Fault cleared" not in result.stdout
    served.served.set_fault("thermistor_open", False)
    time.sleep(0.2)
    assert "Fault cleared: IDLE" in run("clear-fault").stdout


# ---- 8, 15. numbers and flags -------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["pain", "5", "--before", "--after"], "--before and --after exclude each other"),
    (["pain", "4.5", "--before"], "a pain score is a whole number from 0 (none) to 10"),
    (["pain", "-1", "--after"], "a pain score is a whole number"),
    (["amp", "0", "-1"], "an amplitude cannot be negative"),
])
def test_bad_numbers_and_flags_are_usage_errors_that_say_what_is_wrong(args, words):
    result = invoke("--port", "sim", *args)
    assert result.exit_code == 2 and words in result.stderr, result.output
    assert "No such option" not in result.stderr


def test_device_refusals_name_tensctl_commands_not_protocol_requests(run):
    assert "tensctl program list" in run("run", "nosuch", expect=1).stderr
    run("maintenance", "on")
    out = run("status").stdout
    assert "maintenance mode: on" in out
    result = run("start", expect=1)
    assert "tensctl maintenance off" in result.stderr and "send maintenance" not in result.stderr
    run("maintenance", "off")


# ---- 9, 11. program and other input files -----------------------------------------------------


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_program_file_with_a_duplicated_key_is_refused_naming_it(tmp_path):
    path = write(tmp_path, "dup.json", b'{"name": "x", "name": "y", "channels": [{}], "phases": [{"name": "a", "duration_s": 60}]}')
    for args in (["program", "validate", path], ["--port", "sim", "program", "upload", path]):
        result = invoke(*args)
        assert result.exit_code == 2 and 'the key "name" twice' in result.stderr, result.output


def test_validate_says_a_program_named_like_a_preset_would_be_refused(tmp_path):
    path = write(tmp_path, "p.json", b'{"name": "conventional", "channels": [{}], "phases": [{"name": "a", "duration_s": 60}]}')
    result = invoke("program", "validate", path)
    assert result.exit_code == 2 and "built-in preset" in result.stderr and "valid" not in result.stdout


@pytest.mark.parametrize("content, words", [
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not UTF-8 text"),
    (b"[" * 20000, "nested too deeply"),
    (b" " * (70 * 1024) + b"{}", "larger than 64 KB"),
])
def test_unreadable_program_files_are_one_line_usage_errors(tmp_path, content, words):
    path = write(tmp_path, "bad.json", content)
    for args in (["program", "validate", path], ["--port", "sim", "program", "upload", path]):
        result = invoke(*args)
        assert result.exit_code == 2 and words in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_dev_zero_is_not_read_whole():
    started = time.monotonic()
    for args in (["program", "validate", "/dev/zero"], ["--port", "sim", "stim", "0", "--set", "/dev/zero"],
                 ["report", "--input", "/dev/zero"]):
        result = invoke(*args)
        assert result.exit_code == 2 and "larger than" in result.stderr, result.output
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("content, stim_words, report_words", [
    (b"\xff\xfe\x00", "not UTF-8", "not UTF-8"),
    (b"[" * 20000, "nesting deeper than", "nested too deeply"),
    (b"[" * 100000, "larger than 64 KB", "nested too deeply"),
])
def test_stim_set_and_report_input_files_that_are_not_text(tmp_path, content, stim_words, report_words):
    path = write(tmp_path, "x.json", content)
    result = invoke("--port", "sim", "stim", "0", "--set", path)
    assert result.exit_code == 2 and stim_words in result.stderr, result.output
    result = invoke("report", "--input", path, "-o", str(tmp_path / "r"))
    assert result.exit_code == 2 and report_words in result.stderr, result.output


# ---- 12. output paths are checked before anything is fetched ----------------------------------


@pytest.fixture
def no_fetch(monkeypatch):
    fetched = []
    real = Client.log_records

    def log_records(self, from_seq=1):
        fetched.append(from_seq)
        return real(self, from_seq)

    monkeypatch.setattr(Client, "log_records", log_records)
    return fetched


@pytest.mark.parametrize("args", [
    ["log", "fetch", "--format", "csv", "-o", "/nonexistent/dir/x.csv"],
    ["log", "fetch", "-o", "/proc/x.json"],
    ["report", "-o", "/proc/x"],
    ["report", "-o", "/proc/no/such/dir"],
])
def test_an_unwritable_output_fails_before_fetching(no_fetch, args):
    result = invoke("--port", "sim", *args)
    assert result.exit_code == 2 and "cannot write" in result.stderr and "nothing was fetched" in result.stderr
    assert no_fetch == [], "fetched although the output cannot be written"


def test_log_fetch_to_a_file_keeps_the_old_file_until_the_new_one_is_written(tmp_path, no_fetch):
    out = tmp_path / "log.csv"
    result = invoke("--port", "sim", "log", "fetch", "--format", "csv", "-o", str(out))
    assert result.exit_code == 0 and out.read_text().startswith("seq,ev,")
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"], "no temporary file left behind"
    document = json.loads(invoke("--port", "sim", "--json", "log", "fetch", "-o", str(out)).stdout)
    assert document["ok"] is True and document["output"] == str(out)


# ---- 13. socket URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("url, words", [
    ("socket://127.0.0.1", "expected socket://HOST:PORT"),
    ("socket://127.0.0.1:99999", "from 1 to 65535, got '99999'"),
    ("socket://127.0.0.1:0", "from 1 to 65535"),
    ("socket://:7777", "expected socket://HOST:PORT"),
])
def test_bad_socket_urls_say_what_is_wrong(url, words):
    result = invoke("--port", url, "status")
    assert result.exit_code == 3 and words in result.stderr, result.output
    assert "NoneType" not in result.stderr and "debug|info" not in result.stderr


# ---- 14. heat targets and a paused session ----------------------------------------------------


@pytest.mark.parametrize("target", ["44", "29.5", "43.001"])
def test_heat_target_outside_30_to_43_is_refused_on_the_host_in_celsius(target):
    result = invoke("--port", "sim", "heat", "--target", target)
    assert result.exit_code == 2 and "30.0 °C..43.0 °C" in result.stderr and "mC" not in result.stderr


def test_heat_while_paused_says_resume_first(run):
    run("start", "--lease", "0")
    run("pause")
    result = run("heat", "medium", expect=1)
    assert "PAUSED" in result.stderr and "tensctl resume first" in result.stderr
    assert "start one first" not in result.stderr
    run("stop")


def test_heat_above_the_devices_cap_is_said_in_celsius(run):
    run("settings", "--set", "heat_max_target_mc=39000")
    run("start", "--lease", "0")
    result = run("heat", "high", expect=1)
    assert "42.0 °C" in result.stderr and "39.0 °C" in result.stderr
    run("stop")


# ---- 16. heat that ended is not a fault --------------------------------------------------------


def test_heat_that_last_ended_by_a_cleared_fault_does_not_read_as_a_fault():
    text = cli_module._heat_text({"state": "off", "reason": "fault", "fault": None, "heater_duty_pct": 0})
    assert "(fault)" not in text and "since cleared" in text
    text = cli_module._heat_text({"state": "fault", "reason": "fault", "fault": "sensor_open", "heater_duty_pct": 0})
    assert "heat: [bold red]fault[/] (sensor_open)" in text


# ---- 17. the emergency-stop key is never cut off -----------------------------------------------


def test_the_emergency_stop_key_comes_first_and_near_the_top_at_80_columns():
    state = mon.MonitorState({"channels": 2, "device_id": "pulsewarm-sim-0"})
    state.connected = True
    state.on_event({"ev": "telemetry", "n": 1, "state": "RUNNING", "faults": [], "amp_ua": [3000, 0],
                    "target_ua": [4000, 0], "delivered_ua": [3000, 0], "session_left_ms": 60000,
                    "heat": {"state": "holding", "target_mc": 40000, "measured_mc": 39985, "heater_duty_pct": 31}})
    for n in range(6):
        state.on_event({"ev": "state", "state": "RUNNING", "reason": "event %d" % n, "faults": []})
    console = Console(width=80, record=True, color_system=None)
    console.print(mon.render(state))
    lines = console.export_text().splitlines()
    keys = [i for i, line in enumerate(lines) if "e: EMERGENCY STOP" in line]
    table = [i for i, line in enumerate(lines) if "amplitude" in line]
    assert keys and table and keys[0] < table[0], lines
    assert lines[keys[0]].strip("│ ").startswith("e: EMERGENCY STOP"), "first on its line, never wrapped away"


# ---- 10. report date axes ----------------------------------------------------------------------


def tick_labels(offsets_s, base=1795771133):
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    dated = [SimpleNamespace(unix_s=base + offset) for offset in offsets_s]
    ax.plot([date2num(report_module._utc(s.unix_s)) for s in dated], [1] * len(dated), "o")
    report_module._date_axis(ax, dated)
    fig.canvas.draw()
    return [label.get_text() for label in ax.get_xticklabels()], ax.get_xlabel()


def test_sessions_of_one_day_get_times_of_day_and_the_real_date():
    labels, xlabel = tick_labels([0, 3600, 7200])
    assert len(set(labels)) == len(labels) >= 3, labels
    assert all(":" in label for label in labels) and "1 Jan" not in labels
    assert "27 Nov 2026" in xlabel


@pytest.mark.parametrize("days", [1, 2, 5, 20, 90, 400])
def test_sessions_days_apart_get_one_label_per_tick(days):
    labels, _ = tick_labels([0, days * 86400])
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
    assert "27 Nov" in " ".join(labels) or days > 5


# ---- what status says: why heat is held off, whole words, one precision ----------------------


HELD_OFF = {"state": "heating", "target_mc": 40000, "level": "medium", "time_left_ms": 60000, "allowed": False,
            "measured_mc": 30013, "heater_duty_pct": 0, "cem43_ms": 480}


@pytest.mark.parametrize("status, words", [
    ({"state": "PAUSED", "reason": "request", "interlock": "alternate"}, "(held off: paused, on request)"),
    ({"state": "PAUSED", "reason": "lease_expired", "interlock": "alternate"}, "(held off: paused, lease expired)"),
    ({"state": "PAUSED", "reason": "lease_expired", "interlock": "concurrent"}, "(held off: paused, lease expired)"),
    ({"state": "RUNNING", "reason": "start", "interlock": "alternate"},
     "(held off: a channel stimulates, interlock alternate)"),
])
def test_heat_held_off_says_why_from_the_devices_state(status, words):
    assert words in cli_module._heat_text(HELD_OFF, status)


def test_status_figures_keep_one_precision():
    text = cli_module._heat_text(HELD_OFF, {"state": "RUNNING", "interlock": "concurrent"})
    assert "pad: 30.01 °C" in text and "dose: 0.01 CEM43 min" in text
    text = cli_module._heat_text(dict(HELD_OFF, measured_mc=29970, cem43_ms=600))
    assert "pad: 29.97 °C" in text and "dose: 0.01 CEM43 min" in text


def test_a_clipped_fault_message_ends_at_a_whole_word():
    whole = ("pad sensor rose from 38.42 C to 38.92 C (+0.50 C) with the heater off for 20.9 s, limit +0.50 C "
             "above 38.00 C (stuck_rise_mc)")
    clipped = whole[:117] + "..."  # as the device clips it for status
    console = Console(width=300, record=True, color_system=None)
    cli_module._render_status(console, {"state": "FAULT", "faults": ["stuck_on"], "fault_msg": clipped, "ch": []})
    text = console.export_text()
    assert "above 38.00 C …)" in text and "stuck_" not in text.replace("faults: stuck_on", ""), text


def test_status_says_how_many_faults_it_left_out_and_a_short_clipped_message_is_marked():
    """Status lists the first few faults (`faults_more` counts the rest) and shortens the message
    to the room its frame has left, which can be well under 120 characters."""
    from firmware.device import clip_json

    whole = "channel 0: sensed 85000 uA for 20000 uA commanded, beyond the margin (overcurrent_margin)"
    clipped = clip_json(whole, 60)
    assert clipped.endswith("...") and len(clipped) <= 60
    console = Console(width=300, record=True, color_system=None)
    status = {"state": "FAULT", "faults": ["overcurrent:0", "no_load:1", "sensor_open", "stuck_on"],
              "faults_more": 3, "fault_msg": clipped, "ch": []}
    cli_module._render_status(console, status)
    text = console.export_text()
    assert "overcurrent:0, no_load:1, sensor_open, stuck_on and 3 more" in text, text
    assert "…)" in text and "...)" not in text, text
    assert "and 3 more" in cli_module._state_text(status)
