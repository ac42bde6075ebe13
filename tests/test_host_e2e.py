"""End to end: the installed `tensctl`, as a separate process, against a served simulator.

Each runtime (the device in a CPython thread, or inside one `micropython`
process) behind each front (a real pty, a TCP socket). The served device keeps
its state between tensctl invocations, the way a board on USB does.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from firmware.protocols import messages as msg
from sim.launcher import start_server

pytestmark = pytest.mark.e2e

SPEED = 10  # accelerated a little: replies within a millisecond, ramps still observable


def tensctl_command():
    script = os.path.join(os.path.dirname(sys.executable), "tensctl")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "host.cli"]


def tensctl(url, *args):
    env = dict(os.environ)
    env.pop("TENSCTL_PORT", None)
    return subprocess.run(
        tensctl_command() + ["--port", url] + list(args), capture_output=True, text=True, timeout=30, env=env
    )


def tensctl_json(url, *args, expect_code=0):
    result = tensctl(url, "--json", *args)
    assert result.returncode == expect_code, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(params=["cpython", "micropython"])
def runtime(request):
    return request.param


@pytest.fixture(params=["pty", "socket"])
def server(request, runtime):
    device_id = "e2e-%s-%s" % (runtime, request.param)
    listen = "127.0.0.1:0" if request.param == "socket" else None
    with start_server(runtime=runtime, speed=SPEED, pty=listen is None, listen=listen, device_id=device_id) as served:
        served.device_id = device_id
        yield served


def wait_for_status(url, predicate, wait_s=10.0):
    """Poll `tensctl status` until predicate(status) holds (returns it) or fail after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        status = tensctl_json(url, "status")
        if predicate(status):
            return status
        assert time.monotonic() < deadline, "status never satisfied the condition; last: %r" % status


def test_session_over_served_device(server, tmp_path):
    url = server.url
    if server.front.__class__.__name__ == "SocketFront":
        assert url.startswith("socket://127.0.0.1:")
    else:
        assert url.startswith("/dev/")

    info = tensctl_json(url, "info")
    assert info["device_id"] == server.device_id and info["proto"] == msg.PROTO_VERSION
    assert info["channels"] == 2 and info["amp_limit_ua"] == 80000
    assert tensctl_json(url, "status")["state"] == "IDLE"

    # start and watch the ramp in the same connection (a new tensctl call is a host reconnect)
    started = tensctl_json(url, "start", "--lease", "0", "--amp", "3", "--ramp", "1", "--wait")
    assert started["target_ua"] == 3000
    status = started["status"]
    assert status["state"] == "RUNNING" and status["faults"] == []
    assert [ch["amp_ua"] for ch in status["ch"]] == [3000, 0]
    assert abs(status["ch"][0]["delivered_ua"] - 3000) < 300

    human = tensctl(url, "amp", "0", "2.5")
    assert human.returncode == 0 and "2.5 mA" in human.stdout
    assert tensctl_json(url, "up", "0", "--steps", "2")["target_ua"] == 3500
    assert tensctl_json(url, "status")["ch"][0]["target_ua"] == 3500

    stopped = tensctl_json(url, "stop", "--wait")
    assert stopped["stopping"] is True and stopped["status"]["state"] == "IDLE"
    # a new invocation must really run this start (not be answered from the device's reply cache)
    assert tensctl_json(url, "start", "--lease", "0", "--amp", "1")["state"] == "RUNNING"
    assert tensctl_json(url, "status")["state"] == "RUNNING"

    over = tensctl(url, "amp", "0", "999")
    assert over.returncode == 2 and "80.0 mA" in over.stderr

    # a setting outside the safety envelope at the channel's target: refused, naming the limit
    assert tensctl_json(url, "amp", "0", "70")["target_ua"] == 70000
    setting = tmp_path / "wide.json"
    setting.write_text('{"mode": "continuous", "phase_us": 400}\n', encoding="utf-8")
    refused = tensctl(url, "stim", "0", "--set", str(setting))
    assert refused.returncode == 1, refused.stderr
    assert "outside the safety envelope" in refused.stderr
    assert "phase_charge 28000 nC exceeds the limit 25000 nC at 70000 uA" in refused.stderr
    assert refused.stdout == ""
    error = tensctl_json(url, "stim", "0", "--set", '{"phase_us": 400}', expect_code=1)["error"]
    assert error["code"] == "envelope" and error["limit"] == "phase_charge" and error["limit_value"] == 25000
    status = tensctl_json(url, "status")
    assert status["state"] == "RUNNING" and status["ch"][0]["target_ua"] == 70000

    estopped = tensctl(url, "estop")
    assert estopped.returncode == 0 and "EMERGENCY STOP" in estopped.stdout
    status = tensctl_json(url, "status")
    assert status["state"] == "IDLE" and status["reason"] == "estop"
    assert [(ch["amp_ua"], ch["target_ua"]) for ch in status["ch"]] == [(0, 0), (0, 0)]


@pytest.mark.parametrize("front", ["pty", "socket"])
def test_fault_latches_and_clears_through_tensctl(front):
    """cpython runtime only: fault injection reaches into the in-process device."""
    listen = "127.0.0.1:0" if front == "socket" else None
    with start_server(runtime="cpython", speed=SPEED, pty=listen is None, listen=listen) as served:
        url = served.url
        tensctl_json(url, "start", "--lease", "0", "--amp", "5", "--ramp", "1", "--wait")
        served.served.set_fault("electrode_off:0", True)
        status = wait_for_status(url, lambda s: s["state"] == "FAULT")
        assert status["faults"] == ["no_load:0"] and status["ch"][0]["amp_ua"] == 0
        assert "channel 0" in status["fault_msg"]
        human = tensctl(url, "status")
        assert human.returncode == 0 and "FAULT" in human.stdout and "no_load:0" in human.stdout
        refused = tensctl_json(url, "start", expect_code=1)
        assert refused["error"]["code"] == "bad_state"
        served.served.set_fault("electrode_off:0", False)
        assert tensctl_json(url, "clear-fault")["state"] == "IDLE"


def test_start_on_a_second_channel_keeps_the_first_channels_target():
    with start_server(runtime="cpython", speed=SPEED, pty=True) as served:
        url = served.url
        assert tensctl_json(url, "info")["channels"] == 2
        assert tensctl_json(url, "amp", "0", "2")["target_ua"] == 2000  # allowed while IDLE
        started = tensctl_json(url, "start", "--lease", "0", "--amp", "4", "--ch", "1")
        assert started["state"] == "RUNNING" and started["ch"] == 1
        targets = [ch["target_ua"] for ch in tensctl_json(url, "status")["ch"]]
        assert targets == [2000, 4000]
        missing = tensctl(url, "amp", "2", "1")
        assert missing.returncode == 2 and "2 channels (0..1)" in missing.stderr
        tensctl_json(url, "stop")


@pytest.mark.parametrize("runtime_name", ["cpython", "micropython"])
def test_every_subcommand_against_a_served_device(runtime_name, tmp_path):
    """Each tensctl subcommand once, as a process, against one served device per runtime."""
    from host.cli import cli

    walked = set()
    groups = {name for name, command in cli.commands.items() if hasattr(command, "commands")}

    def run(*args, code=0):
        walked.add(" ".join(args[:2]) if args[0] in groups else args[0])
        result = tensctl(url, "--json", *args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else {}

    with start_server(runtime=runtime_name, speed=SPEED, pty=True) as served:
        url = served.url
        assert run("info")["proto"] == msg.PROTO_VERSION
        assert run("status")["state"] == "IDLE"
        assert run("start", "--lease", "0", "--amp", "3", "--ramp", "1", "--heat", "low", "--interlock", "concurrent")["state"] == "RUNNING"
        assert run("amp", "0", "4")["target_ua"] == 4000
        assert run("up", "0", "--steps", "2")["target_ua"] == 5000
        assert run("down", "0")["target_ua"] == 4500
        assert run("stim", "0")["stim"]["mode"] == "continuous"
        assert run("stim", "1", "--set", '{"phase_us": 150, "rate_hz": 80}')["stim"]["phase_us"] == 150
        assert run("keepalive")["state"] == "RUNNING"
        assert run("heat", "--target", "39.5")["target_mc"] == 39500
        assert run("pause")["state"] == "PAUSED"
        assert run("resume")["state"] == "RUNNING"
        assert run("heat", "off")["state"] == "off"
        lines = tensctl(url, "--json", "monitor", "--every", "100", "--duration", "1").stdout.splitlines()
        walked.add("monitor")
        assert lines and json.loads(lines[-1])["state"] == "RUNNING"
        assert run("stop")["state"] == "RUNNING"  # ramping down
        wait_for_status(url, lambda s: s["state"] == "IDLE")
        assert run("estop")["state"] == "IDLE"
        refusal = run("clear-fault", code=1)["error"]  # nothing latched: refused, and says why
        assert refusal["code"] == "bad_state" and "no fault to clear" in refusal["message"]
        run("ports")
        changed = run("settings", "--set", "ramp_default_ms=2000", "--set", "interlock_default=alternate")
        assert changed["settings"]["ramp_default_ms"] == 2000 and changed["settings"]["interlock_default"] == "alternate"
        refusal = run("settings", "--set", "heat_max_target_mc=43500", code=2)["error"]
        assert refusal["code"] == "out_of_range" and "43000" in refusal["message"]
        assert run("settings")["settings"]["heat_max_target_mc"] == 43000
        assert run("maintenance", "on")["maintenance"] is True
        assert "maintenance" in run("start", code=1)["error"]["message"]
        assert run("maintenance", "off")["maintenance"] is False
        _walk_records_commands(url, run, walked, tmp_path)
    expected = set()
    for name, command in cli.commands.items():
        if name in groups:
            expected.update(name + " " + sub for sub in command.commands)
        else:
            expected.add(name)
    assert walked == expected, sorted(expected - walked)


def _walk_records_commands(url, run, walked, tmp_path):
    """Programs, run, the session log, pain scores, the report and the clinician PIN."""
    program_file = tmp_path / "rx-file.json"
    program_file.write_text(json.dumps({
        "name": "rx-file", "description": "e2e", "channels": [{"stim": {"rate_hz": 80}, "max_amp_ua": 15000}],
        "phases": [{"name": "tens", "duration_s": 60}],
    }))
    assert run("program", "validate", str(program_file))["program"]["session_s"] == 60
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps({"name": "bad", "channels": [{"stim": {"rate_hz": 400}}], "phases": [{"name": "a", "duration_s": 60}]}))
    refusal = run("program", "validate", str(bad_file), code=2)["error"]["message"]
    assert "channels[0].stim" in refusal and "rate_hz" in refusal and "250" in refusal
    listing = run("program", "list")
    assert "heat-then-tens" in listing["presets"] and len(listing["programs"]) == len(listing["presets"])
    assert run("program", "show", "burst")["program"]["channels"][0]["stim"]["mode"] == "burst"
    assert run("program", "upload", "--preset", "conventional", "--name", "rx-conv", "--max", "20")["name"] == "rx-conv"
    assert run("program", "upload", str(program_file))["stored"] == 2
    assert run("program", "delete", "rx-file")["stored"] == 1
    assert run("pain", "6", "--before")["score"] == 6
    result = tensctl(url, "--json", "run", "rx-conv", "--amp", "5", "--lease", "30", "--duration", "1")
    walked.add("run")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["program"] == "rx-conv" and lines[-1]["state"] == "RUNNING"
    refusal = run("amp", "0", "21", code=1)["error"]
    assert refusal["code"] == "out_of_range" and "prescribed maximum 20000" in refusal["message"]
    run("stop")
    wait_for_status(url, lambda s: s["state"] == "IDLE")
    assert run("pain", "3", "--after")["score"] == 3
    records = run("log", "fetch")["records"]
    kinds = [record["ev"] for record in records]
    assert "start" in kinds and "stop" in kinds and kinds.count("pain") == 2
    csv_out = tensctl(url, "log", "fetch", "--format", "csv")
    assert csv_out.returncode == 0 and csv_out.stdout.splitlines()[0].startswith("seq,")
    assert len(csv_out.stdout.splitlines()) == len(records) + 1
    assert run("log", "info")["last_seq"] == records[-1]["seq"]
    report = run("report", "-o", str(tmp_path / "report"))
    assert report["records"] == len(records) and (tmp_path / "report" / "index.html").exists()
    assert run("pin", "status")["pin_set"] is False
    assert run("pin", "set", "--new", "2468")["pin_set"] is True
    assert run("program", "delete", "rx-conv", code=1)["error"]["code"] == "locked"
    assert run("log", "erase", "--yes", code=1)["error"]["code"] == "locked"
    erased = tensctl(url, "--json", "--pin", "2468", "log", "erase", "--yes")
    assert erased.returncode == 0, erased.stderr
    plan = run("deploy", "--dry-run")  # lists the files it would copy; opens no port
    assert plan["dry_run"] is True and any(item["path"] == "main.py" for item in plan["files"])
    removed = tensctl(url, "--json", "--pin", "2468", "pin", "remove")
    walked.add("pin remove")
    assert removed.returncode == 0 and json.loads(removed.stdout)["pin_set"] is False
