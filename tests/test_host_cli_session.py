"""tensctl through CliRunner against one served simulated device (a pty), so state carries over
from command to command the way it does with a board: sessions, stops, pauses, leases, settings.

Every tensctl call says hello, which the device takes as a host reconnect (a running output
restarts its ramp), so ramps are watched with --wait, which keeps one connection.
"""

import json
import time

import pytest
from click.testing import CliRunner

from host.cli import cli
from sim.launcher import start_server

SPEED = 20  # simulated seconds per wall second


@pytest.fixture
def served():
    with start_server(runtime="cpython", speed=SPEED, pty=True) as server:
        yield server


@pytest.fixture
def run(served):
    """run(*args, expect=0) -> Result, against the served device; the exit code is checked."""
    runner = CliRunner()

    def invoke(*args, expect=0):
        result = runner.invoke(cli, ["--port", served.url] + list(args), env={"TENSCTL_PORT": None}, catch_exceptions=False)
        assert result.exit_code == expect, (args, result.output)
        return result

    return invoke


def as_json(run, *args, expect=0):
    return json.loads(run("--json", *args, expect=expect).stdout)


def channel_rows(out):
    return {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["0"], ["1"])}


def test_start_wait_ramps_to_the_target_within_one_connection(run):
    document = as_json(run, "start", "--lease", "0", "--amp", "3", "--ramp", "1", "--wait")
    final = document["status"]
    assert document["state"] == "RUNNING" and document["target_ua"] == 3000
    assert final["state"] == "RUNNING" and [ch["amp_ua"] for ch in final["ch"]] == [3000, 0]
    assert abs(final["ch"][0]["delivered_ua"] - 3000) < 300
    assert final["ch"][0]["phase_us"] == 200 and final["ch"][0]["rate_hz"] == 100
    assert final["session_left_ms"] > 29 * 60000 and final["lease_ms"] == 0
    human = run("stop", "--wait").stdout
    assert "Stopped: IDLE" in human
    human = run("start", "--lease", "0", "--amp", "2.5", "--ramp", "1", "--wait").stdout
    assert "Ramp done" in human and "2.5 mA" in channel_rows(human)["0"]


def test_status_shows_both_channels_session_time_and_lease(run):
    run("amp", "1", "2")
    run("start", "--amp", "3", "--ramp", "1", "--minutes", "10", "--lease", "10", "--wait")
    out = run("status").stdout
    assert "RUNNING" in out and "faults: none" in out
    assert "session left: 9:" in out, out  # a 10 min session, seconds in
    assert "lease: 10 s" in out
    rows = channel_rows(out)
    for ch, target in (("0", "3.0 mA"), ("1", "2.0 mA")):
        assert "continuous" in rows[ch] and target in rows[ch] and "80.0 mA" in rows[ch]
        assert "200 µs" in rows[ch] and "100 Hz" in rows[ch], "firing channels show this tick's phase and rate"
    document = as_json(run, "status")
    assert set(document["ch"][1]) >= {"amp_ua", "target_ua", "max_amp_ua", "delivered_ua", "mode", "phase_us", "rate_hz"}


def test_stop_ramps_down_then_goes_idle(run):
    run("start", "--lease", "0", "--amp", "4", "--ramp", "1", "--wait")
    assert "Stopping: RUNNING, ramping down to zero, then IDLE" in run("stop").stdout
    document = as_json(run, "status")  # a hello from an observer does not disturb the ramp down
    assert document["state"] == "RUNNING" and document["stopping"] is True and document["ch"][0]["amp_ua"] > 0
    assert as_json(run, "stop", "--wait")["status"]["state"] == "IDLE"
    run("start", "--lease", "0", "--amp", "4", "--ramp", "1", "--wait")
    document = as_json(run, "stop", "--wait")
    assert document["state"] == "RUNNING" and document["stopping"] is True
    assert document["status"]["state"] == "IDLE" and document["status"]["reason"] == "stop"
    assert [ch["amp_ua"] for ch in document["status"]["ch"]] == [0, 0]
    assert [ch["target_ua"] for ch in document["status"]["ch"]] == [0, 0]
    assert "Stopped: IDLE (outputs off)" in run("stop", "--wait").stdout  # nothing to ramp
    # a new start really runs (it is not answered from the device's reply cache)
    assert as_json(run, "start", "--lease", "0", "--amp", "1", "--ramp", "1", "--wait")["status"]["ch"][0]["amp_ua"] == 1000


def test_a_pause_while_a_stop_ramps_down_completes_the_stop_and_says_so(run):
    run("start", "--lease", "0", "--amp", "20", "--ramp", "30", "--wait")
    assert "ramping down" in run("stop").stdout
    out = run("pause").stdout
    assert "Stopped: IDLE" in out and "session has ended" in out and "Paused" not in out, out
    document = as_json(run, "status")
    assert document["state"] == "IDLE" and document["reason"] == "stop"
    assert "cannot resume" in run("resume", expect=1).stderr


def test_estop_zeroes_every_output_and_target(run):
    run("amp", "1", "6")
    run("start", "--lease", "0", "--amp", "5", "--ramp", "1", "--wait")
    out = run("estop").stdout
    assert "EMERGENCY STOP" in out and "IDLE" in out
    document = as_json(run, "status")
    assert document["state"] == "IDLE" and document["reason"] == "estop" and document["stopping"] is False
    assert [(ch["amp_ua"], ch["target_ua"]) for ch in document["ch"]] == [(0, 0), (0, 0)]
    assert "IDLE (emergency stop)" in run("status").stdout


def test_pause_keeps_targets_and_resume_wait_ramps_back(run):
    run("start", "--lease", "0", "--amp", "3", "--ramp", "1", "--wait")
    assert as_json(run, "pause")["state"] == "PAUSED"
    out = run("status").stdout
    assert "PAUSED (paused on request)" in out and "session left" in out
    assert "0.0 mA" in channel_rows(out)["0"] and "3.0 mA" in channel_rows(out)["0"]
    assert "cannot pause: state is PAUSED" in run("pause", expect=1).stderr
    assert "cannot start: already PAUSED" in run("start", expect=1).stderr
    document = as_json(run, "resume", "--wait")
    assert document["state"] == "RUNNING" and document["status"]["ch"][0]["amp_ua"] == 3000
    assert "cannot resume: state is RUNNING" in run("resume", expect=1).stderr


def test_keepalive_holds_the_lease_and_silence_pauses(run):
    run("start", "--amp", "2", "--ramp", "1", "--lease", "10")  # 10 s of device time: 0.5 s of wall time
    for _ in range(8):  # 16 s of device time, renewed every 2 s or so
        assert "Lease renewed: RUNNING" in run("keepalive").stdout
        time.sleep(0.1)
    assert as_json(run, "status")["state"] == "RUNNING"
    time.sleep(1.0)  # 20 s of silence
    document = as_json(run, "status")
    assert document["state"] == "PAUSED" and document["reason"] == "lease_expired"
    assert "host lease expired" in run("status").stdout


def test_up_and_down_while_running(run):
    run("start", "--lease", "0", "--amp", "3", "--ramp", "1")
    assert as_json(run, "up", "0", "--steps", "2")["target_ua"] == 4000
    assert as_json(run, "down", "0")["target_ua"] == 3500
    assert as_json(run, "status")["ch"][0]["target_ua"] == 3500
    assert as_json(run, "down", "0", "--steps", "10")["target_ua"] == 0


def test_out_of_envelope_setting_is_refused_naming_the_limit_and_changes_nothing(run):
    run("amp", "0", "70")
    result = run("stim", "0", "--set", '{"phase_us": 400}', expect=1)
    assert "outside the safety envelope" in result.stderr
    assert "phase_charge 28000 nC exceeds the limit 25000 nC at 70000 uA" in result.stderr
    assert "Hint:" in result.stderr and "tensctl amp 0" in result.stderr
    assert result.stdout == ""
    error = as_json(run, "stim", "0", "--set", '{"phase_us": 400}', expect=1)["error"]
    assert error["code"] == "envelope" and error["kind"] == "device_error"
    assert (error["limit"], error["value"], error["limit_value"], error["unit"]) == ("phase_charge", 28000, 25000, "nC")
    channel = as_json(run, "status")["ch"][0]
    assert channel["target_ua"] == 70000 and channel["max_amp_ua"] == 80000, "a refused setting changes nothing"


def test_a_setting_lowers_the_max_amplitude_and_amplitudes_past_it_are_refused(run):
    run("amp", "0", "50")
    document = as_json(run, "stim", "0", "--set", '{"phase_us": 400}')
    assert document["binding_limit"] == "phase_charge" and document["max_amp_ua"] * 400 // 1000 == 25000
    assert document["envelope"]["phase_charge_nc"] == 20000
    out = run("stim", "0").stdout
    assert "Max amplitude: 62.5" in out and "(set by the phase charge limit)" in out and "phase charge (binding)" in out
    assert "at target 50.0 mA" in out and "20.0 µC" in out  # 50 mA for 400 µs
    error = as_json(run, "amp", "0", "65", expect=1)["error"]
    assert error["code"] == "envelope" and error["limit"] == "phase_charge" and error["value"] == 26000
    run("amp", "0", "62.5")
    assert "phase_charge 25200 nC exceeds the limit 25000 nC" in run("up", "0", expect=1).stderr


def test_start_wait_stops_waiting_when_the_device_faults(run, served):
    served.served.set_fault("electrode_off:0", True)
    result = run("start", "--lease", "0", "--amp", "5", "--ramp", "1", "--wait", expect=1)
    assert "stopped waiting for the ramp up: the device is FAULT (no_load:0" in result.stderr
    assert "electrode off" in result.stderr
    error = as_json(run, "start", expect=1)["error"]
    assert error["code"] == "bad_state" and "no_load:0" in error["message"]
    served.served.set_fault("electrode_off:0", False)
    assert as_json(run, "clear-fault")["state"] == "IDLE"


def test_heat_on_a_level_shows_in_status_and_goes_off(run):
    document = as_json(run, "start", "--lease", "0", "--interlock", "alternate", "--heat", "medium")
    assert document["state"] == "RUNNING" and document["heat"]["state"] == "heating"
    assert document["heat"]["target_mc"] == 40000
    human = run("status").stdout
    assert "heat: heating to 40.0 °C (medium)" in human and "interlock: alternate" in human
    document = as_json(run, "heat", "--target", "41.25", "--minutes", "10")
    assert document["target_mc"] == 41250 and document["level"] is None
    assert 9 * 60000 < document["time_left_ms"] <= 10 * 60000
    assert "heat: off (last heat ended: turned off)" in run("heat", "off").stdout
    run("stop", "--wait")


def test_heat_refusals_name_the_limit(run):
    result = run("heat", "high", expect=1)  # no session
    assert "start one first" in result.stderr
    run("start", "--lease", "0")
    result = run("--json", "heat", "--target", "43.5", expect=2)  # checked on the host, in °C
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "usage" and "43.5 °C" in error["message"] and "43.0 °C" in error["message"]
    result = run("heat", "--target", "hot", expect=2)
    assert "not a temperature" in result.stderr
    result = run("heat", "low", "--target", "40", expect=2)
    assert "not both" in result.stderr
    run("stop", "--wait")


def test_heat_held_off_names_the_real_reason(run):
    run("start", "--lease", "0", "--amp", "3", "--ramp", "1", "--interlock", "alternate", "--heat", "medium")
    run("pause")
    out = run("status").stdout
    assert "(held off: paused, on request)" in out and "stimulat" not in out, out
    run("resume")
    out = run("heat", "high").stdout
    assert "(held off: a channel stimulates, interlock alternate)" in out and "paused" not in out, out
    run("stop", "--wait")
    run("start", "--lease", "1", "--amp", "3", "--ramp", "1", "--interlock", "alternate", "--heat", "medium")
    time.sleep(0.5)  # 10 s of device time without a request: the 1 s lease expires
    out = run("status").stdout
    assert "(held off: paused, lease expired)" in out and "stimulat" not in out, out
    run("stop", "--wait")


def test_start_with_heat_in_patient_mode_starts_nothing(run):
    run("pin", "set", "--new", "2468")
    result = run("--pin", "2468", "start", "--amp", "12", "--lease", "0", "--heat", "medium", expect=1)
    assert "nothing started: in patient mode heat comes only with a prescribed program" in result.stderr
    assert as_json(run, "status")["state"] == "IDLE"
    run("--pin", "2468", "pin", "remove")


def test_csv_export_leaves_empty_fields_empty(run):
    run("start", "--lease", "0", "--amp", "1")
    run("stop", "--wait")
    rows = run("log", "fetch", "--format", "csv").stdout.splitlines()
    header = rows[0].split(",")
    starts = [dict(zip(header, row.split(","))) for row in rows[1:] if row.split(",")[1] == "start"]
    assert starts and all(start["other"] == "" for start in starts), rows
