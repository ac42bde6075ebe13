"""tensctl through click's CliRunner, mostly against `--port sim` (an embedded simulator per call)."""

import json
import socket
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from firmware.protocols import messages as msg
from host import cli as cli_module
from host.cli import cli
from host.client import Client


@pytest.fixture
def run(monkeypatch):
    """Invoke tensctl with TENSCTL_PORT unset and no serial ports on the machine."""
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])
    runner = CliRunner()

    def invoke(*args, env=None):
        full_env = {"TENSCTL_PORT": None}
        full_env.update(env or {})
        return runner.invoke(cli, list(args), env=full_env, catch_exceptions=False)

    return invoke


def one_json(result):
    """stdout must be exactly one JSON document."""
    return json.loads(result.stdout)


# ---- happy paths against the embedded simulator ------------------------------------------


def test_info_human_shows_identity_and_limit_in_ma(run):
    result = run("--port", "sim", "info")
    assert result.exit_code == 0, result.output
    assert "pulsewarm-sim-0" in result.stdout
    assert "80.0 mA" in result.stdout
    assert msg.PROTO_VERSION in result.stdout


@pytest.mark.parametrize(
    "args, expect",
    [
        (["info"], {"device_id": "pulsewarm-sim-0", "proto": msg.PROTO_VERSION, "amp_limit_ua": 80000, "channels": 2}),
        (["status"], {"state": "IDLE", "faults": []}),
        (["start"], {"state": "RUNNING"}),
        (["start", "--amp", "12.5"], {"state": "RUNNING", "ch": 0, "target_ua": 12500}),
        (["start", "--amp", "2", "--ch", "1", "--minutes", "1", "--lease", "2", "--ramp", "3"], {"state": "RUNNING", "ch": 1}),
        (["stop"], {"state": "IDLE", "stopping": False}),
        (["amp", "0", "7.25"], {"ch": 0, "target_ua": 7250}),
        (["estop"], {"state": "IDLE"}),
        (["keepalive"], {"state": "IDLE"}),
        (["up", "1", "--steps", "3"], {"ch": 1, "target_ua": 1500}),
        (["up", "0"], {"ch": 0, "target_ua": 500}),
        (["down", "0", "--steps", "10"], {"ch": 0, "target_ua": 0}),
    ],
)
def test_json_output_is_one_document_with_integer_units(run, args, expect):
    result = run("--port", "sim", "--json", *args)
    assert result.exit_code == 0, result.output
    document = one_json(result)
    assert document["ok"] is True and document["port"] == "sim"
    for key, value in expect.items():
        assert document[key] == value
    assert "id" not in document


def test_status_human_output_is_readable(run):
    result = run("--port", "sim", "status")
    assert result.exit_code == 0, result.output
    assert "IDLE" in result.stdout and "faults: none" in result.stdout
    assert "0.0 mA" in result.stdout
    for column in ("ch", "mode", "amplitude", "target", "max", "delivered", "phase", "rate"):
        assert column in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert [row[:3] for row in rows] == [["0", "continuous", "0.0"], ["1", "continuous", "0.0"]]
    assert all("80.0" in row for row in rows), "each channel's max amplitude"
    assert "session left" not in result.stdout, "no session while IDLE"


def test_port_from_environment(run):
    result = run("--json", "status", env={"TENSCTL_PORT": "sim"})
    assert result.exit_code == 0, result.output
    assert one_json(result)["state"] == "IDLE"


def test_start_on_channel_that_does_not_exist_is_a_usage_error(run):
    result = run("--port", "sim", "start", "--amp", "5", "--ch", "2")
    assert result.exit_code == 2
    assert "channel 2 does not exist" in result.stderr and "2 channels (0..1)" in result.stderr


def test_ch_without_amp_is_a_usage_error(run):
    result = run("--port", "sim", "start", "--ch", "1")
    assert result.exit_code == 2
    assert "--ch needs --amp" in result.stderr


# ---- bad amplitudes -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["amp", "0", "abc"], ["start", "--amp", "abc"], ["amp", "0", "--", "-3"], ["amp", "0", "1.2345"]])
def test_unparsable_amplitude_is_a_usage_error(run, args):
    result = run("--port", "sim", *args)
    assert result.exit_code == 2
    assert "mA" in result.stderr
    assert result.stdout == ""


def test_unparsable_amplitude_with_json_still_prints_one_document(run):
    result = run("--port", "sim", "--json", "amp", "0", "abc")
    assert result.exit_code == 2
    document = one_json(result)
    assert document["ok"] is False and document["exit_code"] == 2
    assert "abc" in document["error"]["message"]


@pytest.mark.parametrize("args", [["amp", "0", "999"], ["start", "--amp", "999"], ["amp", "0", "80.001"]])
def test_amplitude_over_the_device_limit_names_the_limit(run, args):
    result = run("--port", "sim", *args)
    assert result.exit_code == 2
    assert "exceeds this device's amplitude limit of 80.0 mA" in result.stderr


def test_amplitude_at_the_limit_is_accepted(run):
    result = run("--port", "sim", "--json", "amp", "0", "80")
    assert result.exit_code == 0, result.output
    assert one_json(result)["target_ua"] == 80000


def test_over_limit_with_json_is_one_error_document(run):
    result = run("--port", "sim", "--json", "amp", "0", "999")
    assert result.exit_code == 2
    document = one_json(result)
    assert document["ok"] is False and "80.0 mA" in document["error"]["message"]


# ---- device errors, missing devices, silent devices -----------------------------------------


def test_device_error_reply_exits_1_with_its_code(run):
    result = run("--port", "sim", "--json", "clear-fault")
    assert result.exit_code == 1
    document = one_json(result)
    assert document["error"]["code"] == "bad_state"
    assert "no fault to clear" in document["error"]["message"]


def test_no_board_found_suggests_port_sim(run):
    result = run("status")
    assert result.exit_code == 3
    assert "no pulsewarm board found" in result.stderr
    assert "--port sim" in result.stderr
    assert "2E8A:0005" in result.stderr


def fake_port(device, vid=0x2E8A, pid=0x0005, serial_number="E660", description="Board in FS mode"):
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial_number, description=description)


def test_one_board_found_is_used(run, monkeypatch, tmp_path):
    missing = str(tmp_path / "ttyACM9")
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [fake_port(missing), fake_port("/dev/ttyS0", None, None)])
    result = run("status")
    assert result.exit_code == 3
    assert "cannot open port %s" % missing in result.stderr


def test_several_boards_ask_for_port(run, monkeypatch):
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [fake_port("/dev/ttyACM0"), fake_port("/dev/ttyACM1")])
    result = run("status")
    assert result.exit_code == 3
    assert "/dev/ttyACM0" in result.stderr and "/dev/ttyACM1" in result.stderr and "--port" in result.stderr


def test_ports_lists_boards_and_all_ports(run, monkeypatch):
    monkeypatch.setattr(
        "serial.tools.list_ports.comports",
        lambda: [fake_port("/dev/ttyACM0"), fake_port("/dev/ttyUSB0", 0x0403, 0x6001, "FT1", "FT232R")],
    )
    result = run("--json", "ports")
    assert result.exit_code == 0
    listed = one_json(result)["ports"]
    assert [p["device"] for p in listed] == ["/dev/ttyACM0"]
    assert listed[0] == {
        "device": "/dev/ttyACM0",
        "vid_pid": "2E8A:0005",
        "serial_number": "E660",
        "description": "Board in FS mode",
        "board": True,
    }
    result = run("ports", "--all")
    assert result.exit_code == 0
    assert "/dev/ttyUSB0" in result.stdout and "0403:6001" in result.stdout


def test_unopenable_port_exits_3_naming_it(run, tmp_path):
    path = str(tmp_path / "no-such-tty")
    result = run("--port", path, "--json", "info")
    assert result.exit_code == 3
    assert path in one_json(result)["error"]["message"]


def test_silent_device_exits_4_naming_port_and_wait(run):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # the connection completes from the backlog; nobody ever answers
        url = "socket://127.0.0.1:%d" % server.getsockname()[1]
        result = run("--port", url, "--timeout", "0.2", "status")
    assert result.exit_code == 4
    assert url in result.stderr and "0.4 s" in result.stderr and "hello" in result.stderr


def test_protocol_version_mismatch_exits_4_with_both_versions(run, monkeypatch):
    monkeypatch.setattr(Client, "proto_version", "1.0")
    monkeypatch.setattr(Client, "supported_majors", (1,))
    result = run("--port", "sim", "--json", "status")
    assert result.exit_code == 4
    document = one_json(result)
    assert document["error"]["kind"] == "version_mismatch"
    assert "1.0" in document["error"]["message"] and msg.PROTO_VERSION in document["error"]["message"]


# ---- help -------------------------------------------------------------------------------


def test_help_documents_exit_codes_and_ports(run):
    result = run("--help")
    assert result.exit_code == 0
    for line in ("0  ok", "1  the device replied with an error", "2  usage error", "3  cannot open the port", "4  no response"):
        assert line in result.stdout
    assert "socket://HOST:PORT" in result.stdout and "sim:micropython" in result.stdout
    for code in range(5):
        assert "  %d  " % code in cli_module.__doc__


# ---- the commands of protocol 0.2, each against a fresh embedded simulator ----------------


def test_help_makes_the_emergency_stop_obvious(run):
    result = run("--help")
    listed = [line for line in result.stdout.splitlines() if line.strip().startswith("estop")]
    assert listed and "EMERGENCY STOP" in listed[0] and "output zero at once" in listed[0]
    assert "Emergency stop: tensctl estop" in result.stdout
    result = run("estop", "--help")
    assert result.exit_code == 0 and "EMERGENCY STOP" in result.stdout and "no ramp" in result.stdout
    assert "ramps" in run("stop", "--help").stdout and "estop" in run("stop", "--help").stdout


def test_estop_human_output_says_emergency_stop_and_zero(run):
    result = run("--port", "sim", "estop")
    assert result.exit_code == 0, result.output
    assert "EMERGENCY STOP" in result.stdout and "output zero" in result.stdout and "IDLE" in result.stdout


@pytest.mark.parametrize(
    "args, words",
    [(["pause"], "cannot pause: state is IDLE"), (["resume"], "cannot resume: state is IDLE, not PAUSED")],
)
def test_pause_and_resume_outside_a_session_are_device_errors(run, args, words):
    result = run("--port", "sim", "--json", *args)
    assert result.exit_code == 1
    error = one_json(result)["error"]
    assert error["code"] == "bad_state" and words in error["message"]
    human = run("--port", "sim", *args)
    assert human.exit_code == 1 and words in human.stderr and human.stdout == ""


def test_up_and_down_human_output_names_target_and_step(run):
    result = run("--port", "sim", "up", "1", "--steps", "4")
    assert result.exit_code == 0, result.output
    assert "Channel 1 target: 2.0 mA" in result.stdout and "4 × 0.5 mA" in result.stdout
    result = run("--port", "sim", "down", "0")
    assert result.exit_code == 0 and "Channel 0 target: 0.0 mA" in result.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["up", "0", "--steps", "11"], "11 is not in the range 1<=x<=10"),
        (["down", "0", "--steps", "0"], "0 is not in the range 1<=x<=10"),
        (["up", "2"], "channel 2 does not exist"),
        (["down", "5"], "2 channels (0..1)"),
        (["stim", "2"], "channel 2 does not exist"),
    ],
)
def test_step_and_stim_usage_errors(run, args, words):
    result = run("--port", "sim", *args)
    assert result.exit_code == 2
    assert words in result.stderr


def test_stim_shows_setting_max_amplitude_binding_limit_and_envelope_units(run):
    result = run("--port", "sim", "stim", "0")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Channel 0: continuous, symmetric biphasic" in out
    assert "phase_us" in out and "200 µs" in out and "100 Hz" in out and "25 cm²" in out
    assert "Max amplitude: 80.0 mA (set by the peak current limit)" in out
    for unit in ("mA r.m.s.", "µC", "mJ", "mA/cm² r.m.s.", "mW/cm²"):
        assert unit in out, unit
    # the limits, in readable units
    for limit in ("50.0 mA r.m.s.", "25.0 µC", "300.0 mJ", "2.0 mA/cm² r.m.s.", "250.0 mW/cm²"):
        assert limit in out, limit
    assert "peak current (binding)" in out


def test_stim_json_is_the_device_reply(run):
    result = run("--port", "sim", "--json", "stim", "1")
    assert result.exit_code == 0, result.output
    document = one_json(result)
    assert document["ch"] == 1 and document["stim"]["mode"] == "continuous"
    assert document["max_amp_ua"] == 80000 and document["binding_limit"] == "peak_current"
    assert document["envelope"]["peak_ua"] == 0 and document["envelope"]["net_charge_nc"] == 0


def test_stim_set_inline_json_applies_and_shows_the_new_binding_limit(run):
    setting = '{"mode": "modulated", "phase_us": 300, "rate_hz": 120, "mod_amp_pct": 30, "area_cm2": 4}'
    result = run("--port", "sim", "stim", "1", "--set", setting)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Setting applied to channel 1" in out and "Channel 1: modulated" in out
    assert "set by the current density limit" in out and "current density (binding)" in out
    document = one_json(run("--port", "sim", "--json", "stim", "1", "--set", setting))
    assert document["binding_limit"] == "current_density" and document["max_amp_ua"] < 80000
    assert document["stim"]["area_cm2"] == 4 and document["stim"]["mod_amp_pct"] == 30


def test_stim_set_from_a_file_and_from_stdin(run, tmp_path):
    path = tmp_path / "burst.json"
    path.write_text('{\n  "mode": "burst",\n  "burst_hz": 80,\n  "train_pulses": 5\n}\n', encoding="utf-8")
    document = one_json(run("--port", "sim", "--json", "stim", "0", "--set", str(path)))
    assert document["stim"]["mode"] == "burst" and document["stim"]["burst_hz"] == 80
    runner = CliRunner()
    result = runner.invoke(cli, ["--port", "sim", "--json", "stim", "0", "--set", "-"], input='{"mode": "acupuncture", "rate_hz": 2}')
    assert result.exit_code == 0, result.output
    assert one_json(result)["stim"] == {
        "mode": "acupuncture", "waveform": "symmetric", "rate_hz": 2, "phase_us": 200, "gap_us": 50, "area_cm2": 25
    }


@pytest.mark.parametrize(
    "value, words",
    [
        ("{not json", "the --set JSON is not valid JSON"),
        ('{"phase_us": 1.5}', "phase_us is 1.5; the device takes whole numbers"),
        ('{"phase_us": 2e2}', "phase_us is 2e2"),
        ('{"mode": "burst", "mode": "continuous"}', "duplicate"),
        ("nosuchfile.json", "cannot read the setting file nosuchfile.json"),
        ('{"name": "%s"}' % ("x" * 1100), "cannot be sent"),
    ],
)
def test_stim_set_unreadable_setting_is_a_usage_error_before_any_device(run, value, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("--port", str(tmp_path / "no-device"), "stim", "0", "--set", value)  # never opened
    assert result.exit_code == 2, result.output
    assert words in result.stderr and result.stdout == ""
    result = run("--port", str(tmp_path / "no-device"), "--json", "stim", "0", "--set", value)
    assert result.exit_code == 2
    assert words in one_json(result)["error"]["message"]


def test_stim_set_must_be_an_object(run, tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    result = run("--port", "sim", "stim", "0", "--set", str(path))
    assert result.exit_code == 2 and "must be a JSON object" in result.stderr


@pytest.mark.parametrize(
    "setting, code, words",
    [
        ('{"phase_us": 999}', "out_of_range", "phase_us 999 exceeds the limit 400"),
        ('{"mode": "acupuncture", "rate_hz": 50}', "out_of_range", "rate_hz 50 exceeds the limit 10"),
        ('{"mode": "dance"}', "bad_field", "mode 'dance' is not one of"),
        ('{"burst_hz": 80}', "bad_field", "does not apply to mode continuous"),
    ],
)
def test_stim_set_refused_by_the_device_is_a_bad_setting_naming_field_and_limit(run, setting, code, words):
    result = run("--port", "sim", "--json", "stim", "0", "--set", setting)
    assert result.exit_code == 2
    error = one_json(result)["error"]
    assert error["code"] == code and words in error["message"]
    human = run("--port", "sim", "stim", "0", "--set", setting)
    assert human.exit_code == 2 and words in human.stderr


# ---- settings, the PIN and programs: what was wrong, and the limit -------------------------


@pytest.mark.parametrize("change, words", [
    ("heat_max_target_mc=44000", "heat_max_target_mc 44000 exceeds the limit 43000"),
    ("lease_default_ms=200", "lease_default_ms 200 is below the minimum 500"),
    ("nosuch=3", "unknown setting 'nosuch'"),
])
def test_a_setting_the_device_refuses_exits_2_as_help_says(run, change, words):
    result = run("--port", "sim", "settings", "--set", change)
    assert result.exit_code == 2 and words in result.stderr, result.output
    assert "2  usage error" in run("--help").stdout and "bad setting" in run("--help").stdout
    document = one_json(run("--port", "sim", "--json", "settings", "--set", change))
    assert document["exit_code"] == 2 and words in document["error"]["message"]


@pytest.mark.parametrize("new_pin", ["123", "123456789", "12a4"])
def test_a_malformed_new_pin_is_named_as_new(run, new_pin):
    result = run("--port", "sim", "pin", "set", "--new", new_pin)
    assert result.exit_code == 2, result.output
    assert "--new must be 4 to 8 digits (0-9)" in result.stderr and "pin must" not in result.stderr
    assert new_pin not in result.output


def program_file(tmp_path, channel, duration="60"):
    path = tmp_path / "p.json"
    path.write_text('{"name": "rx", "channels": [%s], "phases": [{"name": "a", "duration_s": %s}]}'
                    % (channel, duration), encoding="utf-8")
    return str(path)


def test_validate_quotes_a_number_as_written(run, tmp_path):
    result = run("program", "validate", program_file(tmp_path, "{}", "60.0"))
    assert result.exit_code == 2 and "duration_s must be an integer, got 60.0" in result.stderr, result.output


def test_validate_names_the_limit_behind_a_maximum_too_high_for_the_electrodes(run, tmp_path):
    result = run("program", "validate", program_file(tmp_path, '{"stim": {"area_cm2": 1}, "max_amp_ua": 20000}'))
    assert result.exit_code == 2, result.output
    assert "max_amp_ua 20000 exceeds the limit 10000 (set by the current density limit" in result.stderr
    assert "at 1 cm²" in result.stderr


def test_upload_max_over_the_limit_is_said_in_ma(run):
    result = run("--port", "sim", "program", "upload", "--preset", "conventional", "--name", "x", "--max", "90")
    assert result.exit_code == 2, result.output
    assert "--max 90 mA for channel 0 exceeds the limit 80.0 mA" in result.stderr and "90000" not in result.stderr


def test_deleting_a_preset_says_presets_are_built_in(run):
    result = run("--port", "sim", "program", "delete", "conventional")
    assert result.exit_code == 1
    assert "conventional is a built-in preset: presets cannot be deleted" in result.stderr
    assert "no program 'nosuch'" in run("--port", "sim", "program", "delete", "nosuch").stderr


def test_info_shows_the_devices_own_default_lease_and_none_for_zero(run, monkeypatch):
    """hello reports the lease a start would get now: the device's lease_default_ms setting."""
    from firmware import settings as device_settings

    low, high, _ = device_settings.INT_SETTINGS["lease_default_ms"]
    monkeypatch.setitem(device_settings.INT_SETTINGS, "lease_default_ms", (low, high, 0))
    result = run("--port", "sim", "info")
    assert result.exit_code == 0, result.output
    assert "none (the device times sessions alone)" in result.stdout, result.stdout
    monkeypatch.setitem(device_settings.INT_SETTINGS, "lease_default_ms", (low, high, 7500))
    result = run("--port", "sim", "info")
    assert "7.5 s" in result.stdout and "3 s" not in result.stdout, result.stdout
