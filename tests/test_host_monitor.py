"""`tensctl monitor`: the view model and keys without a terminal, then the real command as a
process against served devices: telemetry lines, Ctrl-C stopping a running session before
exit, and a device that goes away and comes back."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from rich.console import Console

from host import monitor as mon
from host.client import DeviceError
from sim.launcher import start_server
from tests.test_host_e2e import tensctl, tensctl_command, tensctl_json, wait_for_status


def telemetry(n, state="RUNNING", amp=(3000, 0), heat=None, faults=()):
    return {"ev": "telemetry", "n": n, "dropped": 0, "uptime_ms": 1000 + n * 50, "state": state,
            "faults": list(faults), "amp_ua": list(amp), "target_ua": [4000, 0], "delivered_ua": list(amp),
            "session_left_ms": 125000, "heat": heat}


def test_state_counts_missed_telemetry_and_keeps_recent_events():
    state = mon.MonitorState({"channels": 2})
    for n in (0, 1, 2, 5, 6):
        state.on_event(telemetry(n))
    assert state.received == 5 and state.missed == 2 and state.telemetry["n"] == 6
    state.new_connection({"channels": 2})
    state.on_event(telemetry(0))  # a new connection numbers afresh: no gap
    assert state.missed == 2
    for i in range(6):
        state.on_event({"ev": "state", "state": "PAUSED", "reason": "request %d" % i, "faults": []})
    assert len(state.events) == mon.EVENT_LINES and state.events[-1] == "state PAUSED (request 5)"


def test_render_shows_amplitudes_heat_time_and_faults():
    state = mon.MonitorState({"channels": 2, "device_id": "dev-7", "amp_limit_ua": 80000})
    state.connected = True
    heat = {"state": "holding", "target_mc": 40000, "measured_mc": 39985, "heater_duty_pct": 31, "cem43_ms": 0}
    state.on_event(telemetry(3, heat=heat, faults=["no_load:1"]))
    console = Console(width=120, record=True, color_system=None)
    console.print(mon.render(state))
    text = console.export_text()
    for expected in ("RUNNING", "2:05", "3.0 mA", "4.0 mA", "39.99 °C", "40.0 °C", "heater 31 %", "no_load:1",
                     "dev-7", "space: stop"):
        assert expected in text, (expected, text)
    line = mon.summary_line(state)
    assert "ch0 3.0 mA/4.0 mA" in line and "holding 39.99 °C" in line and "no_load:1" in line


@pytest.mark.parametrize("measured_mc, cem43_ms, pad, dose", [
    (29970, 480, "29.97 °C", "0.01 CEM43 min"),
    (30013, 600, "30.01 °C", "0.01 CEM43 min"),
    (30000, 0, "30.00 °C", "0.00 CEM43 min"),
])
def test_pad_temperature_and_dose_always_have_two_decimals(measured_mc, cem43_ms, pad, dose):
    state = mon.MonitorState({"channels": 2})
    state.connected = True
    heat = {"state": "heating", "target_mc": 40000, "measured_mc": measured_mc, "heater_duty_pct": 100,
            "cem43_ms": cem43_ms}
    state.on_event(telemetry(1, heat=heat))
    console = Console(width=120, record=True, color_system=None)
    console.print(mon.render(state))
    text = console.export_text()
    assert "pad %s" % pad in text and "dose %s" % dose in text, text
    assert mon.summary_line(state).endswith("heating %s" % pad)


class FakeClient:
    def __init__(self, refuse=None):
        self.calls = []
        self.refuse = refuse

    def _call(self, *call):
        self.calls.append(call)
        if self.refuse == call[0]:
            raise DeviceError(call[0], "bad_state", "cannot %s now" % call[0])

    def amp_step(self, ch, steps):
        self._call("amp_step", ch, steps)

    def pause(self):
        self._call("pause")

    def resume(self):
        self._call("resume")

    def stop(self):
        self._call("stop")

    def estop(self):
        self._call("estop")


def test_keys_steer_the_marked_channel_and_the_session():
    state = mon.MonitorState({"channels": 2})
    state.on_event(telemetry(0))
    client = FakeClient()
    assert "channel 0 up" in mon.press("up", client, state)
    mon.press("tab", client, state)
    mon.press("down", client, state)
    mon.press("p", client, state)
    state.on_event(telemetry(1, state="PAUSED"))
    mon.press("p", client, state)
    mon.press(" ", client, state)
    mon.press("e", client, state)
    assert mon.press("x", client, state) == ""
    assert client.calls == [("amp_step", 0, 1), ("amp_step", 1, -1), ("pause",), ("resume",), ("stop",), ("estop",)]
    note = mon.press("up", FakeClient(refuse="amp_step"), state)
    assert note.startswith("refused:") and "cannot amp_step now" in note


@pytest.fixture(params=["cpython", "micropython"])
def served(request):
    with start_server(runtime=request.param, speed=1, pty=False, listen="127.0.0.1:0") as server:
        yield server


def test_monitor_json_lines_follow_a_running_session(served):
    tensctl_json(served.url, "start", "--lease", "0", "--amp", "4", "--ramp", "1", "--heat", "low")
    result = tensctl(served.url, "--json", "monitor", "--every", "50", "--duration", "2")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) >= 25, len(lines)  # 20 a second, less start-up
    numbers = [line["n"] for line in lines]
    assert numbers == sorted(numbers) and all(line["dropped"] == 0 for line in lines)
    assert lines[-1]["state"] == "RUNNING" and lines[-1]["amp_ua"][0] == 4000
    assert lines[-1]["heat"]["state"] == "heating" and lines[-1]["heat"]["target_mc"] == 38000
    tensctl(served.url, "estop")


def _spawn_monitor(url, *args):
    env = dict(os.environ)
    env.pop("TENSCTL_PORT", None)
    return subprocess.Popen(tensctl_command() + ["--port", url] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_ctrl_c_stops_a_running_session_before_exit(served):
    tensctl_json(served.url, "start", "--amp", "6", "--ramp", "1", "--lease", "3")
    proc = _spawn_monitor(served.url, "monitor", "--every", "100")
    time.sleep(5)  # longer than the 3 s lease: the monitor's keepalives hold it
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "stopping stimulation (ramping down)" in err and "Stopped" in err, err
    states = [line.split()[0] for line in out.splitlines()]
    assert states.count("RUNNING") >= 3 and "PAUSED" not in states, out  # one line a second
    status = wait_for_status(served.url, lambda s: s["state"] == "IDLE")
    assert status["reason"] == "stop" and [ch["amp_ua"] for ch in status["ch"]] == [0, 0]


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_monitor_reconnects_to_a_device_that_comes_back():
    port = _free_port()
    listen = "127.0.0.1:%d" % port
    first = start_server(runtime="cpython", speed=1, pty=False, listen=listen)
    proc = _spawn_monitor(first.url, "--timeout", "0.5", "--json", "monitor", "--every", "100", "--duration", "9")
    try:
        time.sleep(2.5)
        first.close()  # the cable is pulled
        time.sleep(1.5)
        with start_server(runtime="cpython", speed=1, pty=False, listen=listen, device_id="back-again"):
            out, err = proc.communicate(timeout=30)
    finally:
        first.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    numbers = [json.loads(line)["n"] for line in out.splitlines()]
    restarts = sum(1 for a, b in zip(numbers, numbers[1:]) if b < a)
    assert restarts == 1, numbers  # telemetry before the loss, then again from the new device
    assert len(numbers) > 40, len(numbers)


def test_every_telemetry_event_waits_to_be_drawn_and_a_gap_is_marked():
    state = mon.MonitorState({"channels": 2})
    for n in (0, 1, 2, 5, 6):
        state.on_event(telemetry(n))
    assert [event["n"] for event in state.fresh] == [0, 1, 2, 5, 6]
    assert [event.get("missed") for event in state.fresh] == [None, None, None, 2, None]


def test_a_paused_line_says_why():
    state = mon.MonitorState({"channels": 2})
    state.connected = True
    state.on_status({"state": "PAUSED", "reason": "lease_expired", "program": None})
    state.on_event(telemetry(0, state="PAUSED"))
    assert mon.summary_line(state).startswith("PAUSED (lease expired) ch0")
    console = Console(width=120, record=True, color_system=None)
    console.print(mon.render(state))
    assert "PAUSED (lease expired)" in console.export_text()
    state.on_event({"ev": "state", "state": "RUNNING", "reason": "resume", "faults": []})
    state.on_event({"ev": "state", "state": "PAUSED", "reason": "request", "faults": []})
    assert mon.summary_line(state).startswith("PAUSED (on request) ")


def test_keepalives_come_four_times_a_lease_of_the_devices_own_time():
    wall = [0.0]

    class FastDevice:  # its clock runs 20 times the wall clock
        device = {"channels": 2}

        def telemetry(self, every_ms):
            return {"every_ms": every_ms}

        def status(self):
            return {"state": "RUNNING", "reason": "start", "lease_ms": 5000, "uptime_ms": int(wall[0] * 20000),
                    "program": None}

    monitor = mon.Monitor(lambda on_event: (FastDevice(), lambda: None), 200, lambda state: None, mon.NoKeys(),
                          clock=lambda: wall[0])
    monitor._open()
    assert monitor.keepalive_s() <= 0.05, "the device's clock rate is not known yet"
    wall[0] = 1.0
    monitor._refresh_status()
    assert monitor.keepalive_s() == pytest.approx(5.0 / 20 / 4)  # 5 s of device time is 0.25 s here


@pytest.fixture
def fast_socket_device():
    with start_server(runtime="cpython", speed=20, pty=False, listen="127.0.0.1:0") as server:
        yield server


def test_monitor_json_prints_every_event_in_order_from_a_fast_device(fast_socket_device):
    url = fast_socket_device.url
    tensctl_json(url, "start", "--lease", "0", "--amp", "4")
    result = tensctl(url, "--json", "monitor", "--every", "50", "--duration", "2")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    numbers = [line["n"] for line in lines]
    assert numbers[0] == 0 and len(numbers) > 100, numbers[:5]
    for before, line in zip(lines, lines[1:]):
        assert line["n"] == before["n"] + 1 + line.get("missed", 0), (before["n"], line)
    tensctl(url, "estop")


def test_run_holds_a_short_lease_on_a_fast_device_and_a_pause_says_why(fast_socket_device):
    url = fast_socket_device.url
    tensctl(url, "program", "upload", "--preset", "conventional", "--name", "rx-short", "--max", "20")
    result = tensctl(url, "run", "rx-short", "--amp", "3", "--lease", "10", "--duration", "3")  # 0.5 s of wall time
    assert result.returncode == 0, result.stderr
    states = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert len(states) >= 3 and set(states) == {"RUNNING"}, result.stdout
    time.sleep(1.0)  # nobody holds the lease now
    result = tensctl(url, "monitor", "--duration", "1")
    assert result.stdout.startswith("PAUSED (lease expired) "), result.stdout
    tensctl(url, "estop")
