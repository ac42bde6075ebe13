"""tensctl at its edges: `log erase` under --json needs --yes; `log fetch -o` writes only a plain
file (through a link, keeping its mode); a single-valued option given twice is an error, not the
last value silently; nan and inf are no numbers; Ctrl-C while a reply is awaited exits 130 (an
estop says it is not confirmed); a link lost after `start --wait` says the session started;
messages and exit codes say what was wrong; `--json --version`; `python -m host.cli`.
(The build folder's own rules are in test_build_firmware.py and test_deploy.py.)"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from host import cli as cli_module
from host.cli import cli
from host.client import Client
from host.transport import TransportError

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(cli, list(args), env={"TENSCTL_PORT": None}, catch_exceptions=False)


def json_error(result, exit_code):
    """stdout is exactly one JSON document, a failure with exit_code; its error object."""
    assert result.exit_code == exit_code, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["exit_code"] == exit_code
    return document["error"]


@pytest.fixture
def calls(monkeypatch):
    """Client requests that must not happen, recorded instead of sent: log_erase, program_put, log_records."""
    made = []
    for name in ("log_erase", "program_put", "log_records"):
        real = getattr(Client, name)

        def record(self, *args, _name=name, _real=real, **kwargs):
            made.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Client, name, record)
    return made


# ---- log erase under --json ------------------------------------------------------------------


def test_json_log_erase_without_yes_refuses_and_erases_nothing(calls):
    error = json_error(invoke("--port", "sim", "--json", "log", "erase"), 2)
    assert "--yes" in error["message"] and "nothing was erased" in error["message"]
    assert calls == []
    assert json.loads(invoke("--port", "sim", "--json", "log", "erase", "--yes").stdout)["ok"] is True


# ---- log fetch -o: what stands at the path ----------------------------------------------------


def test_log_fetch_writes_through_a_symlink_and_keeps_it(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    result = invoke("--port", "sim", "log", "fetch", "-o", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text()) == json.loads(invoke("--port", "sim", "log", "fetch").stdout)


@pytest.mark.parametrize("kind", ["fifo", "device", "link-to-fifo"])
def test_log_fetch_refuses_a_path_that_is_not_a_regular_file_and_leaves_it(tmp_path, calls, kind):
    words = "it is a FIFO (named pipe), not a regular file"
    if kind == "device":  # a /dev/full of its own: code that replaced it must not damage the machine's
        path, words = tmp_path / "full", "it is a character device, not a regular file"
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        except (PermissionError, AttributeError):
            pytest.skip("making a device node needs root (CAP_MKNOD)")
    else:
        path = tmp_path / "pipe"
        os.mkfifo(path)
        if kind == "link-to-fifo":
            path = tmp_path / "link"
            path.symlink_to(tmp_path / "pipe")
    before = os.lstat(path)
    error = json_error(invoke("--port", "sim", "--json", "log", "fetch", "-o", str(path)), 2)
    assert str(path) in error["message"] and words in error["message"] and "nothing was fetched" in error["message"]
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert calls == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".tensctl-")]


def test_log_fetch_keeps_an_existing_files_mode_and_gives_a_new_one_the_umasks(tmp_path):
    kept = tmp_path / "kept.csv"
    kept.write_text("old")
    kept.chmod(0o640)
    assert invoke("--port", "sim", "log", "fetch", "--format", "csv", "-o", str(kept)).exit_code == 0
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text().startswith("seq,ev,")
    old_umask = os.umask(0o027)
    try:
        assert invoke("--port", "sim", "log", "fetch", "-o", str(tmp_path / "new.json")).exit_code == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640


def test_log_fetch_over_a_read_only_file_says_so(calls):
    error = json_error(invoke("--port", "sim", "--json", "log", "fetch", "-o", "/proc/version"), 2)
    assert "cannot write /proc/version: it is read-only (mode 0444)" in error["message"]
    assert "No such file" not in error["message"] and calls == []


# ---- an option given twice ----------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["program", "upload", "--preset", "heat-then-tens", "--name", "rx", "--max", "0=10", "--max", "0=20"],
     "--max gives channel 0 twice (10 mA and 20 mA)"),
    (["program", "upload", "--preset", "heat-then-tens", "--name", "rx", "--max", "20", "--max", "1=10"],
     "--max gives channel 1 twice"),
    (["program", "upload", "--preset", "heat-low", "--name", "rx", "--max", "20"],
     "program rx has no channels"),
    (["program", "upload", "--preset", "heat-then-tens", "--name", "rx", "--max", "-1=20", "--max", "1=30"],
     "CH a channel number from 0, got '-1=20'"),
    (["program", "upload", "--preset", "heat-then-tens", "--name", "rx", "--max", "-3=20"],
     "CH a channel number from 0, got '-3=20'"),
    (["settings", "--set", "ramp_default_ms=1000", "--set", "ramp_default_ms=2000"],
     "--set ramp_default_ms given twice (1000 and 2000)"),
    (["start", "--amp", "5", "--amp", "6"], "--amp given more than once"),
    (["start", "--amp", "5", "--ch", "0", "--ch", "1"], "--ch given more than once"),
    (["heat", "--target", "40", "--target", "43"], "--target given more than once"),
    (["--timeout", "1", "--timeout", "2", "status"], "--timeout given more than once"),
    (["stim", "0", "--set", "{}", "--set", '{"mode": "burst"}'], "--set given more than once"),
])
def test_a_value_given_twice_is_a_usage_error_not_the_last_one_silently(calls, args, words):
    error = json_error(invoke("--port", "sim", "--json", *args), 2)
    assert words in error["message"]
    assert calls == []


def test_repeatable_options_still_repeat(calls):
    result = invoke("--port", "sim", "--json", "program", "upload", "--preset", "heat-then-tens", "--name", "rx",
                    "--max", "0=10", "--max", "1=12")
    assert result.exit_code == 0, result.output
    assert calls == ["program_put"]


# ---- nan and inf ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--timeout", "nan", "status"], "not a finite number: expected one in the range 0.01<=x<=600"),
    (["--timeout", "inf", "status"], "not in the range 0.01<=x<=600"),  # click's own check: above the top
    (["monitor", "--duration", "nan"], "not a finite number: expected one in the range x>=0.1"),
    (["monitor", "--reconnect", "nan"], "not a finite number: expected one in the range x>=0"),
    (["monitor", "--reconnect", "inf"], "not a finite number: expected one in the range x>=0"),
    (["run", "conventional", "--duration", "nan"], "not a finite number: expected one in the range x>=0.1"),
    (["run", "conventional", "--duration", "inf"], "not a finite number: expected one in the range x>=0.1"),
])
def test_nan_and_inf_are_refused_with_the_range(args, words):
    error = json_error(invoke("--port", "sim", "--json", *args), 2)
    assert words in error["message"]


def test_the_demo_speed_refuses_nan_too():
    from host import demo

    result = CliRunner().invoke(demo.main, ["--speed", "nan"])
    assert result.exit_code == 2 and "is not a finite number" in result.output


# ---- Ctrl-C while a reply is awaited ------------------------------------------------------------


def _interrupt(*_args, **_kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("method, args", [
    ("status", ["status"]),
    ("program_put", ["program", "upload", "--preset", "heat-then-tens", "--name", "rx", "--max", "10"]),
    ("log_records", ["log", "fetch"]),
])
def test_ctrl_c_while_waiting_for_a_reply_exits_130_with_one_json_document(monkeypatch, method, args):
    monkeypatch.setattr(Client, method, _interrupt)
    error = json_error(invoke("--port", "sim", "--json", *args), 130)
    assert error["kind"] == "interrupted" and "tensctl status" in error["message"]
    result = invoke("--port", "sim", *args)
    assert result.exit_code == 130 and "interrupted by Ctrl-C" in result.stderr and "Aborted" not in result.stderr


def test_ctrl_c_during_estop_says_the_emergency_stop_is_not_confirmed(monkeypatch):
    monkeypatch.setattr(Client, "estop", _interrupt)
    error = json_error(invoke("--port", "sim", "--json", "estop"), 130)
    assert error["message"].startswith("EMERGENCY STOP NOT CONFIRMED: interrupted by Ctrl-C")
    assert "remove the electrodes" in error["hint"]
    result = invoke("--port", "sim", "estop")
    assert result.exit_code == 130 and "EMERGENCY STOP NOT CONFIRMED" in result.stderr


def test_ctrl_c_at_the_pin_prompt_is_an_interruption(monkeypatch):
    def prompt(*_args, **_kwargs):
        raise click.Abort()

    monkeypatch.setattr(click, "prompt", prompt)
    with pytest.raises(cli_module.CliFailure) as failure:
        cli_module.ask_pin()
    assert failure.value.exit_code == 130 and failure.value.kind == "interrupted"


def test_sigint_to_a_real_process_waiting_for_an_estop_reply():
    from tests.test_host_cli_safety import FakeDevice

    device = FakeDevice("silent")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "--port", device.url, "--json", "--timeout", "5", "estop"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, TENSCTL_PORT=""),
        )
        deadline = time.monotonic() + 20
        while "estop" not in device.ops and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "estop" in device.ops, "the estop never reached the device"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        device.close()
    assert process.returncode == 130, err
    document = json.loads(out)
    assert document["error"]["kind"] == "interrupted" and "NOT CONFIRMED" in document["error"]["message"]
    assert "Traceback" not in err


# ---- the link lost after start --------------------------------------------------------------------


def test_a_lost_link_during_start_wait_says_the_session_was_started(monkeypatch):
    def lost(client, budget_ms):
        raise TransportError("sim", "lost the connection to sim")

    monkeypatch.setattr(cli_module, "_wait_ramped", lost)
    args = ("--port", "sim", "start", "--amp", "10", "--lease", "0", "--wait")
    document = json.loads(invoke("--json", *args).stdout)
    assert document["exit_code"] == 3 and document["state"] == "RUNNING" and document["target_ua"] == 10000
    message = document["error"]["message"]
    assert "the session WAS STARTED (channel 0 at 10.0 mA" in message and "no lease" in message
    assert "may still be running" in message and "lost the connection" in message
    result = invoke(*args)
    assert result.exit_code == 3 and "Started: RUNNING" in result.stdout and "WAS STARTED" in result.stderr


# ---- messages and exit codes ------------------------------------------------------------------------


def test_run_checks_the_amplitude_limit_on_the_host_like_start():
    error = json_error(invoke("--port", "sim", "--json", "run", "conventional", "--amp", "90"), 2)
    assert "exceeds this device's amplitude limit of 80.0 mA" in error["message"]


def test_a_heat_target_that_is_no_temperature_gives_the_range():
    error = json_error(invoke("--port", "sim", "--json", "heat", "--target", "-5"), 2)
    assert "30.0 °C to 43.0 °C" in error["message"]


@pytest.mark.parametrize("value, kind", [("[]", "a JSON array"), ("5", "a JSON number"), ("null", "JSON null")])
def test_stim_set_json_that_is_not_an_object_says_so_not_cannot_read(tmp_path, monkeypatch, value, kind):
    monkeypatch.chdir(tmp_path)
    error = json_error(invoke("--port", "sim", "--json", "stim", "0", "--set", value), 2)
    assert "must be a JSON object" in error["message"] and kind in error["message"]
    assert "cannot read" not in error["message"]


# ---- --json --version and the JSON lines of run ------------------------------------------------------


def test_json_version_is_one_json_document():
    for args in (["--json", "--version"], ["--version", "--json"]):
        result = invoke(*args)
        assert result.exit_code == 0
        document = json.loads(result.stdout)
        assert document["ok"] is True and document["protocol"] and document["tensctl"]
    assert invoke("--version").stdout.startswith("tensctl ")


def test_the_json_option_says_monitor_and_run_print_json_lines():
    assert "run print JSON lines" in " ".join(invoke("--help").stdout.split())


# ---- python -m host.cli is tensctl ---------------------------------------------------------------


def test_python_m_host_cli_has_every_command():
    result = subprocess.run([sys.executable, "-m", "host.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    commands = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.startswith("  ")}
    for name in ("program", "run", "log", "pain", "pin", "report", "deploy", "estop", "start"):
        assert name in commands, name
