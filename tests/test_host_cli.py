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
    assert "60.0 mA" in result.stdout
    assert msg.PROTO_VERSION in result.stdout


@pytest.mark.parametrize(
    "args, expect",
    [
        (["info"], {"device_id": "pulsewarm-sim-0", "proto": msg.PROTO_VERSION, "amp_limit_ua": 60000}),
        (["status"], {"state": "IDLE", "faults": []}),
        (["start"], {"state": "RUNNING"}),
        (["start", "--amp", "12.5"], {"state": "RUNNING", "ch": 0, "target_ua": 12500}),
        (["stop"], {"state": "IDLE"}),
        (["amp", "0", "7.25"], {"ch": 0, "target_ua": 7250}),
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


def test_port_from_environment(run):
    result = run("--json", "status", env={"TENSCTL_PORT": "sim"})
    assert result.exit_code == 0, result.output
    assert one_json(result)["state"] == "IDLE"


def test_start_on_channel_that_does_not_exist_is_a_usage_error(run):
    result = run("--port", "sim", "start", "--amp", "5", "--ch", "2")
    assert result.exit_code == 2
    assert "channel 2 does not exist" in result.stderr and "1 channel" in result.stderr


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


@pytest.mark.parametrize("args", [["amp", "0", "999"], ["start", "--amp", "999"], ["amp", "0", "60.001"]])
def test_amplitude_over_the_device_limit_names_the_limit(run, args):
    result = run("--port", "sim", *args)
    assert result.exit_code == 2
    assert "exceeds this device's amplitude limit of 60.0 mA" in result.stderr


def test_amplitude_at_the_limit_is_accepted(run):
    result = run("--port", "sim", "--json", "amp", "0", "60")
    assert result.exit_code == 0, result.output
    assert one_json(result)["target_ua"] == 60000


def test_over_limit_with_json_is_one_error_document(run):
    result = run("--port", "sim", "--json", "amp", "0", "999")
    assert result.exit_code == 2
    document = one_json(result)
    assert document["ok"] is False and "60.0 mA" in document["error"]["message"]


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
