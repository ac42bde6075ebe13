"""Live fault injection into a served simulated device (sim/control.py).

A device served by sim.launcher (both runtimes) takes control requests on its
control socket while a host talks to it over its serial line; the host sees the
device react through the protocol (status, telemetry). `tens-sim faults` and
`tens-sim inject` run as processes.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from host.client import Client
from host.transport import open_port
from sim import control, faults
from sim.cli import cli
from sim.launcher import SimError, start_server

pytestmark = pytest.mark.e2e

SPEED = 5  # simulated seconds per wall second: reactions within a fraction of a second, easy on 2 cores
WAIT_S = 30.0  # generous: the machine is shared with other test processes


def tens_sim_command():
    script = os.path.join(os.path.dirname(sys.executable), "tens-sim")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "sim.cli"]


def tens_sim(*args, env=None):
    return subprocess.run(tens_sim_command() + list(args), capture_output=True, text=True, timeout=60, env=env)


def wait_for(fetch, predicate, wait_s=WAIT_S, what="condition"):
    deadline = time.monotonic() + wait_s
    while True:
        value = fetch()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, "%s never held; last: %r" % (what, value)
        time.sleep(0.05)


@pytest.fixture(params=["cpython", "micropython"])
def served(request):
    with start_server(runtime=request.param, speed=SPEED, pty=False, listen="127.0.0.1:0",
                      device_id="inject-%s" % request.param) as server:
        transport = open_port(server.url)
        client = Client(transport, timeout_s=3.0, retries=2)
        try:
            client.hello()
            yield server, client
        finally:
            transport.close()


def test_inject_and_clear_through_the_control_socket(served):
    server, client = served
    address = server.control_address
    assert address.startswith("127.0.0.1:")

    # electrode_off:0 during a session: the device latches no_load:0 and stops the channel
    client.start([4000], lease_ms=0, ramp_ms=1000)
    wait_for(client.status, lambda s: s["state"] == "RUNNING" and s["ch"][0]["amp_ua"] == 4000, what="ramp done")
    client.telemetry(100)
    reply = control.request(address, {"inject": "electrode_off:0"})
    assert reply["ok"] is True and reply["active"] == ["electrode_off:0"]
    assert reply["device_id"] == "inject-%s" % server.runtime and reply["runtime"] == server.runtime
    assert reply["url"] == server.url
    status = wait_for(client.status, lambda s: s["state"] == "FAULT", what="FAULT after electrode_off:0")
    assert status["faults"] == ["no_load:0"] and status["ch"][0]["amp_ua"] == 0

    # what `tensctl monitor` draws: telemetry events carry the latched fault
    def telemetry_faults():
        events = client.poll(0.3)
        found = [e for e in events if e.get("ev") == "telemetry"]
        return found[-1]["faults"] if found else None

    assert wait_for(telemetry_faults, lambda f: f == ["no_load:0"], what="telemetry shows no_load:0") == ["no_load:0"]
    client.telemetry(0)

    reply = control.request(address, {"clear": "electrode_off:0"})
    assert reply["ok"] is True and reply["active"] == []
    assert client.clear_fault()["state"] == "IDLE"

    # a heat-pad fault: the thermistor reads open and the device latches sensor_open, even when idle
    assert server.inject("thermistor_open")["active"] == ["thermistor_open"]
    status = wait_for(client.status, lambda s: s["state"] == "FAULT", what="FAULT after thermistor_open")
    assert "sensor_open" in status["faults"]
    # still open: the fault comes back at once, so the host cannot clear it away for long
    assert server.clear("thermistor_open")["active"] == []
    time.sleep(0.5)  # a few simulated seconds: the filtered reading settles back in range
    wait_for(lambda: _try_clear(client), lambda state: state == "IDLE", what="clear_fault after thermistor_open")
    assert client.status()["faults"] == []


def _try_clear(client):
    from host.client import DeviceError

    try:
        return client.clear_fault()["state"]
    except DeviceError as err:
        return err.code


def test_control_requests_are_checked_and_the_device_runs_on(served):
    server, client = served
    address = server.control_address
    unknown = control.request(address, {"inject": "leadoff"})
    assert unknown["ok"] is False
    assert unknown["error"].startswith("unknown fault 'leadoff'; known: electrode_off:0, electrode_off:1")
    assert unknown["known"] == faults.names(2)
    assert control.request(address, {"inject": 5})["ok"] is False
    assert "unknown control key" in control.request(address, {"inject_all": True})["error"]
    both = control.request(address, {"inject": "heater_open", "clear": "heater_open"})
    assert both["ok"] is False and both["active"] == []
    deep = control.request(address, {"inject": [[[[[[[[[[[["x"]]]]]]]]]]]]})  # deeper than the VM decodes
    assert deep["ok"] is False
    listed = control.request(address, {"list": True})
    assert [f["name"] for f in listed["faults"]] == faults.names(2)
    assert all(f["description"] == faults.describe(f["name"]) for f in listed["faults"])

    # raw socket: garbage lines get an error line each, and the connection stays usable
    host, port = control.parse_address(address)
    with socket.create_connection((host, port), timeout=10) as conn:
        reader = conn.makefile("rb")
        conn.sendall(b"not json\n[1, 2]\n{\"inject\": \"supply_sag\"}\n{\"clear_all\": true}\n")
        replies = [json.loads(reader.readline()) for _ in range(4)]
    assert [r["ok"] for r in replies] == [False, False, True, True]
    assert replies[2]["active"] == ["supply_sag"] and replies[3]["active"] == []

    with pytest.raises(SimError, match="unknown fault 'nope'"):
        server.inject("nope")
    # the serial line never saw any of it: the device answers as before
    assert client.status()["state"] == "IDLE"
    assert server.control({"status": True})["elapsed_ms"] > 0


def test_faults_command_lists_every_fault_with_its_description():
    result = tens_sim("faults")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == faults.names(2)
    for line in lines:
        name, description = line.split(None, 1)
        assert description == faults.describe(name) and len(description) > 10
    # every kind defined in sim/faults.py appears, channel faults once per channel
    kinds = {line.split()[0].split(":")[0] for line in lines}
    assert kinds == set(faults.CHANNEL_FAULTS) | set(faults.DEVICE_FAULTS)
    listed = [json.loads(line) for line in tens_sim("faults", "--json").stdout.splitlines()]
    assert listed == [{"name": n, "description": faults.describe(n)} for n in faults.names(2)]


def test_inject_command_finds_the_device_by_its_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TENS_SIM_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("TENSCTL_PORT", raising=False)
    env = dict(os.environ)
    with start_server(runtime="micropython", speed=SPEED, pty=True, register=True, device_id="cli-inject") as server:
        injected = tens_sim("inject", "electrode_off:1", "heater_stuck_on", "--port", server.url, env=env)
        assert injected.returncode == 0, injected.stderr
        assert injected.stdout.strip() == (
            "cli-inject (%s): injected electrode_off:1, heater_stuck_on; active faults: electrode_off:1, heater_stuck_on"
            % server.url
        )
        assert server.control({})["active"] == ["electrode_off:1", "heater_stuck_on"]

        # the only device served: found without --port; --json gives the reply
        shown = tens_sim("inject", "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["active"] == ["electrode_off:1", "heater_stuck_on"]

        cleared = tens_sim("inject", "--clear", "heater_stuck_on", "--control", server.control_address, env=env)
        assert cleared.returncode == 0 and cleared.stdout.strip().endswith("active faults: electrode_off:1")

        unknown = tens_sim("inject", "leadoff", "--port", server.url, env=env)
        assert unknown.returncode == 2 and unknown.stdout == ""
        assert "unknown fault 'leadoff'; known: " in unknown.stderr
        assert all(name in unknown.stderr for name in faults.names(2))

        assert tens_sim("inject", "--clear-all", "--port", server.url, env=env).returncode == 0
        assert server.control({})["active"] == []

        missing = tens_sim("inject", "heater_open", "--port", "socket://127.0.0.1:9", env=env)
        assert missing.returncode == 1 and "no served simulated device at socket://127.0.0.1:9" in missing.stderr
    # the server is gone: so is its registry entry
    gone = tens_sim("inject", "--port", server.url, env=env)
    assert gone.returncode == 1 and "no served simulated device" in gone.stderr
    assert control.entries() == []


@pytest.mark.micropython
def test_a_non_ascii_name_reads_the_same_under_both_runtimes():
    """The VM's repr escaped it: unknown fault '\\xe9' under micropython, 'é' under cpython."""
    errors = {}
    for runtime in ("cpython", "micropython"):
        with start_server(runtime=runtime, speed=SPEED, pty=False, listen="127.0.0.1:0") as server:
            address = server.control_address
            errors[runtime] = [control.request(address, request)["error"] for request in ({"inject": "é"}, {"é": 1})]
    assert errors["micropython"] == errors["cpython"]
    assert errors["micropython"][0].startswith("unknown fault 'é'; known: electrode_off:0")
    assert errors["micropython"][1].startswith("unknown control key 'é'; use inject")


@pytest.mark.micropython
def test_a_request_seq_is_echoed_under_both_runtimes():
    """The launcher took the VM's reply apart and dropped the request's own "seq" with its
    line number: under micropython a client that matches replies by seq got none."""
    for runtime in ("cpython", "micropython"):
        with start_server(runtime=runtime, speed=SPEED, pty=False, listen="127.0.0.1:0") as server:
            address = server.control_address
            assert control.request(address, {"seq": 7}).get("seq") == 7, runtime
            refused = control.request(address, {"seq": "a", "inject": "leadoff"})
            assert (refused["ok"], refused.get("seq")) == (False, "a"), runtime
            assert "seq" not in control.request(address, {}), runtime


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """A served device in a registry of its own, found by `tens-sim inject` (run in this process)."""
    monkeypatch.setenv("TENS_SIM_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("TENSCTL_PORT", raising=False)
    with start_server(runtime="cpython", speed=SPEED, pty=False, listen="127.0.0.1:0", register=True,
                      device_id="registered") as server:
        yield server


def inject(*args, env=None):
    result = CliRunner().invoke(cli, ["inject"] + list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_inject_never_sends_a_control_request_into_a_serial_socket(registered):
    """--port HOST:PORT of the serial socket wrote JSON into the serial line, then waited 10 s."""
    serial = registered.url[len("socket://"):]
    started = time.monotonic()
    by_port = inject("heater_open", "--port", serial)
    assert by_port.exit_code == 2, by_port.output
    assert "%s is the serial socket of registered: use --port %s (its URL) or --control %s" % (
        serial, registered.url, registered.control_address) in by_port.output
    by_control = inject("heater_open", "--control", serial)
    assert by_control.exit_code == 2 and "not its control socket" in by_control.output
    assert time.monotonic() - started < 5.0
    assert registered.control({})["active"] == []

    by_address = inject("heater_open", "--port", registered.control_address)  # a control address it knows
    assert by_address.exit_code == 0 and "injected heater_open" in by_address.output
    unknown = inject("heater_open", "--port", "127.0.0.1:9")
    assert unknown.exit_code == 1
    assert "no served simulated device has the control address 127.0.0.1:9" in unknown.output


def test_inject_refuses_port_with_control_and_a_name_twice(registered):
    both = inject("heater_open", "--port", registered.url, "--control", registered.control_address)
    assert both.exit_code == 2 and "give --port URL or --control HOST:PORT, not both" in both.output
    twice = inject("heater_open", "supply_sag", "heater_open", "--port", registered.url)
    assert twice.exit_code == 2 and "heater_open given more than once; name each fault once" in twice.output
    assert registered.control({})["active"] == []
    # $TENSCTL_PORT is tensctl's default port: --control still chooses the device
    chosen = inject("heater_open", "--control", registered.control_address, env={"TENSCTL_PORT": "socket://127.0.0.1:9"})
    assert chosen.exit_code == 0 and "injected heater_open; active faults: heater_open" in chosen.output


def test_the_electrode_load_follows_every_electrode_fault_still_active():
    """Clearing electrode_partial:0 under electrode_off:0 put the nominal load back: 10 mA flowed
    into an electrode the simulator listed as off, and no_load never latched. Every sequence of
    up to four injections and clears of the two faults on a channel is checked."""
    import itertools

    from sim.board import SimBoard
    from sim.models import OPEN_CIRCUIT

    steps = [(name, active) for name in ("electrode_off:0", "electrode_partial:0") for active in (True, False)]
    for length in range(1, 5):
        for sequence in itertools.product(steps, repeat=length):
            board = SimBoard()
            for name, active in sequence:
                faults.set_fault(board, name, active)
            if "electrode_off:0" in board.active_faults:
                expected = OPEN_CIRCUIT
            elif "electrode_partial:0" in board.active_faults:
                expected = faults.PARTIAL_SERIES_OHM
            else:
                expected = board.nominal_series_ohm
            assert board.loads[0].series_ohm == expected, sequence
            assert board.loads[1].series_ohm == board.nominal_series_ohm, sequence
