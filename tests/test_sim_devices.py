"""Many simulated devices at once (`tens-sim serve --devices N`, sim.launcher.start_servers).

Each device has its own id, seed, port (or pty), control socket and state; the
virtual clock options (--speed, --start-ms, --near-wrap) apply to every one.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from firmware.clock import TICKS_MAX
from host.client import Client
from host.transport import open_port
from sim import control
from sim.clock import NEAR_WRAP_MS
from sim.launcher import SimError, close_servers, device_ids, start_servers
from tests.test_sim_inject import WAIT_S, wait_for

pytestmark = pytest.mark.e2e

SPEED = 5




class Hosts:
    """A connected client per served device."""

    def __init__(self, servers):
        self.transports = [open_port(server.url) for server in servers]
        self.clients = [Client(t, timeout_s=3.0, retries=2) for t in self.transports]

    def close(self):
        for transport in self.transports:
            transport.close()


def test_device_ids():
    assert device_ids(1) == ["pulsewarm-sim-0"]
    assert device_ids(3) == ["pulsewarm-sim-0", "pulsewarm-sim-1", "pulsewarm-sim-2"]
    assert device_ids(1, "bench") == ["bench"]
    assert device_ids(2, "bench") == ["bench-0", "bench-1"]


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_three_devices_on_sockets_are_independent(runtime):
    servers = start_servers(3, runtime=runtime, speed=SPEED, pty=False, listen="127.0.0.1:0", seed=7)
    hosts = Hosts(servers)
    try:
        urls = [server.url for server in servers]
        assert len(set(urls)) == 3 and all(url.startswith("socket://127.0.0.1:") for url in urls)
        assert len({server.control_address for server in servers}) == 3
        ids = [client.hello()["device_id"] for client in hosts.clients]
        assert ids == ["pulsewarm-sim-0", "pulsewarm-sim-1", "pulsewarm-sim-2"]
        assert [server.control({})["seed"] for server in servers] == [7, 8, 9]  # each its own noise

        one = hosts.clients[1]
        one.start([3000], lease_ms=0, ramp_ms=1000)
        wait_for(one.status, lambda s: s["ch"][0]["amp_ua"] == 3000, what="device 1 ramped")
        states = [client.status()["state"] for client in hosts.clients]
        assert states == ["IDLE", "RUNNING", "IDLE"]

        # a fault injected into device 2 stays on device 2
        servers[2].inject("thermistor_short")
        wait_for(hosts.clients[2].status, lambda s: s["state"] == "FAULT", what="device 2 faulted")
        assert [server.control({})["active"] for server in servers] == [[], [], ["thermistor_short"]]
        assert [client.status()["state"] for client in hosts.clients[:2]] == ["IDLE", "RUNNING"]
    finally:
        hosts.close()
        close_servers(servers)


def _free_base(count, tries=20):
    """A base port with `count` consecutive ports that are free now (best effort)."""
    import socket

    for _ in range(tries):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    pytest.skip("no %d consecutive free ports found" % count)


def test_consecutive_ports_and_control_ports():
    for _ in range(5):  # another process may take a port between the probe and the bind: try again
        base, control_base = _free_base(3), _free_base(3)
        try:
            servers = start_servers(3, speed=SPEED, pty=False, listen="127.0.0.1:%d" % base,
                                    control="127.0.0.1:%d" % control_base, device_id="ci")
        except SimError as err:
            assert "cannot" in str(err)
            continue
        break
    else:
        pytest.skip("the probed ports kept being taken")
    try:
        assert [s.url for s in servers] == ["socket://127.0.0.1:%d" % (base + i) for i in range(3)]
        assert [s.control_address for s in servers] == ["127.0.0.1:%d" % (control_base + i) for i in range(3)]
        assert [control.request(s.control_address, {})["device_id"] for s in servers] == ["ci-0", "ci-1", "ci-2"]
    finally:
        close_servers(servers)


def test_a_taken_port_stops_the_devices_already_started():
    servers = start_servers(1, pty=False, listen="127.0.0.1:0")
    try:
        taken = int(servers[0].url.rsplit(":", 1)[1])
        with pytest.raises(SimError, match="cannot listen on 127.0.0.1:%d" % taken):
            start_servers(2, pty=False, listen="127.0.0.1:%d" % (taken - 1))
    finally:
        close_servers(servers)
    with pytest.raises(SimError, match="at least 1"):
        start_servers(0)


def test_near_wrap_start_with_several_devices_on_ptys():
    """Both runtimes side by side, each on a pty, the clock 5 s before the 2^30 ms wrap."""
    servers = start_servers(2, runtime="cpython", speed=SPEED, pty=True, start_ms=NEAR_WRAP_MS)
    servers += start_servers(1, runtime="micropython", speed=SPEED, pty=True, start_ms=NEAR_WRAP_MS,
                             device_id="vm")
    hosts = Hosts(servers)
    try:
        assert all(server.url.startswith("/dev/") for server in servers) and len({s.url for s in servers}) == 3
        for server in servers:
            ticks = server.control({})["ticks_ms"]
            assert NEAR_WRAP_MS <= ticks <= TICKS_MAX, ticks
        assert [c.hello()["device_id"] for c in hosts.clients] == ["pulsewarm-sim-0", "pulsewarm-sim-1", "vm"]
        for client in (hosts.clients[0], hosts.clients[2]):
            client.start([2000], lease_ms=0, ramp_ms=1000, session_ms=60000)

        # across the wrap: every clock went round, the sessions run on, ramped and timed right
        def wrapped(server):
            reply = server.control({})
            return reply["elapsed_ms"] > 6000 and reply["ticks_ms"] < NEAR_WRAP_MS

        wait_for(lambda: all(wrapped(server) for server in servers), bool, what="every clock wrapped")
        for index, client in enumerate(hosts.clients):
            status = client.status()
            if index == 1:
                assert status["state"] == "IDLE"
                continue
            assert status["state"] == "RUNNING" and status["faults"] == [], status
            assert status["ch"][0]["amp_ua"] == 2000
            assert 10000 < status["session_left_ms"] < 55000, status
    finally:
        hosts.close()
        close_servers(servers)


def tens_sim_command():
    script = os.path.join(os.path.dirname(sys.executable), "tens-sim")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "sim.cli"]


def _read_lines(stream, count, wait_s):
    """`count` lines from a pipe, or fail after wait_s (the read runs in a thread)."""
    lines = []

    def read():
        while len(lines) < count:
            line = stream.readline()
            if not line:
                return
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(wait_s)
    assert len(lines) == count, "got %r" % lines
    return lines


def test_serve_command_with_three_devices(tmp_path):
    """`tens-sim serve --devices 3` as a process: URLs on stdout, inject through the CLI, SIGTERM stops all."""
    env = dict(os.environ)
    env["TENS_SIM_RUN_DIR"] = str(tmp_path / "run")
    env.pop("TENSCTL_PORT", None)
    serve = subprocess.Popen(
        tens_sim_command() + ["serve", "--devices", "3", "--listen", "127.0.0.1:0", "--speed", str(SPEED),
                              "--near-wrap", "--seed", "11"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    hosts = None
    try:
        urls = _read_lines(serve.stdout, 3, WAIT_S)
        assert all(url.startswith("socket://127.0.0.1:") for url in urls) and len(set(urls)) == 3
        banner = _read_lines(serve.stderr, 4, WAIT_S)
        for index, url in enumerate(urls):
            device_id, shown_url, word, address, seed_word, seed = banner[index].split()
            assert (device_id, shown_url, word) == ("pulsewarm-sim-%d" % index, url, "control")
            assert (seed_word, seed) == ("seed", str(11 + index))
            assert address.startswith("127.0.0.1:")
        assert banner[3].startswith("serving 3 devices (cpython runtime, speed 5.0, clock from %d ms)" % NEAR_WRAP_MS)

        class Served:
            def __init__(self, url):
                self.url = url

        hosts = Hosts([Served(url) for url in urls])
        assert [c.hello()["device_id"] for c in hosts.clients] == ["pulsewarm-sim-%d" % i for i in range(3)]
        hosts.clients[0].start([3000], lease_ms=0, ramp_ms=1000)
        wait_for(hosts.clients[0].status, lambda s: s["ch"][0]["amp_ua"] == 3000, what="device 0 ramped")

        injected = subprocess.run(tens_sim_command() + ["inject", "electrode_off:0", "--port", urls[0]],
                                  capture_output=True, text=True, timeout=60, env=env)
        assert injected.returncode == 0, injected.stderr
        assert injected.stdout.startswith("pulsewarm-sim-0 (%s): injected electrode_off:0" % urls[0])
        status = wait_for(hosts.clients[0].status, lambda s: s["state"] == "FAULT", what="device 0 faulted")
        assert status["faults"] == ["no_load:0"]
        assert [c.status()["state"] for c in hosts.clients[1:]] == ["IDLE", "IDLE"]
        assert len(os.listdir(env["TENS_SIM_RUN_DIR"])) == 3
        shown = subprocess.run(tens_sim_command() + ["inject", "--json", "--port", urls[2]],
                               capture_output=True, text=True, timeout=60, env=env)
        assert shown.returncode == 0, shown.stderr
        reply = json.loads(shown.stdout)
        assert (reply["device_id"], reply["seed"], reply["active"]) == ("pulsewarm-sim-2", 13, [])
        assert reply["ticks_ms"] >= NEAR_WRAP_MS or reply["ticks_ms"] < 60000  # near (or just past) the wrap

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=WAIT_S) == 0
        assert os.listdir(env["TENS_SIM_RUN_DIR"]) == []  # every device left the registry
    finally:
        if hosts is not None:
            hosts.close()
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        serve.stdout.close()
        serve.stderr.close()


def test_signals_while_stopping_do_not_cut_the_stop_short(tmp_path):
    """`timeout` sends SIGTERM to serve and then to its process group, and an impatient user
    presses Ctrl-C twice: the second signal, arriving while serve stopped its devices, cut the
    stop short (exit before every device was closed) and left their registry entries behind."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, TENS_SIM_RUN_DIR=str(run_dir))
    env.pop("TENSCTL_PORT", None)
    serve = subprocess.Popen(tens_sim_command() + ["serve", "--devices", "2", "--listen", "127.0.0.1:0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _read_lines(serve.stdout, 2, WAIT_S)
        assert _read_lines(serve.stderr, 3, WAIT_S)[2].startswith("serving 2 devices")
        assert len(os.listdir(run_dir)) == 2
        serve.send_signal(signal.SIGTERM)
        for index in range(200):  # more of both kinds while it stops, until it has exited
            serve.send_signal(signal.SIGINT if index % 2 else signal.SIGTERM)
            if serve.poll() is not None:
                break
            time.sleep(0.0005)
        status = serve.wait(timeout=WAIT_S)
        errors = serve.stderr.read()
        assert os.listdir(run_dir) == [], errors  # every device left the registry
        assert status == 0, errors  # not killed by a later signal on its way out
        assert "Traceback" not in errors, errors
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        serve.stdout.close()
        serve.stderr.close()
