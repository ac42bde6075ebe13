"""Port URLs: device paths, socket://, and the embedded simulator."""

import socket
import time

import pytest

from firmware.protocols import frame
from host.transport import PortOpenError, SimTransport, TransportError, open_port, parse_sim_url


def read_reply(transport, wait_s=5.0):
    reader = frame.LineReader()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for line in reader.feed(transport.read(0.1)):
            message = frame.decode_line(line) if line is not None else None
            if message and "id" in message:
                return message
    raise AssertionError("no reply within %s s" % wait_s)


def test_parse_sim_url():
    assert parse_sim_url("sim") == "cpython"
    assert parse_sim_url("sim:micropython") == "micropython"
    assert parse_sim_url("/dev/ttyACM0") is None
    assert parse_sim_url("socket://sim:1") is None


def test_missing_device_path_names_the_url(tmp_path):
    path = str(tmp_path / "ttyACM7")
    with pytest.raises(PortOpenError) as caught:
        open_port(path)
    assert caught.value.url == path and path in str(caught.value)


def test_refused_socket_names_the_url():
    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = "socket://127.0.0.1:%d" % probe.getsockname()[1]
    with pytest.raises(PortOpenError) as caught:
        open_port(url)
    assert url in str(caught.value)


def test_unknown_sim_runtime_is_a_clear_open_error():
    with pytest.raises(PortOpenError) as caught:
        open_port("sim:jython")
    assert "jython" in str(caught.value) and "micropython" in str(caught.value)


def test_socket_read_times_out_empty_then_reports_a_dropped_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = "socket://127.0.0.1:%d" % server.getsockname()[1]
        transport = open_port(url)
        try:
            peer, _ = server.accept()
            assert transport.read(0.05) == b""
            peer.sendall(b"abc\n")
            assert transport.read(1.0) == b"abc\n"
            peer.close()
            with pytest.raises(TransportError) as caught:
                transport.read(1.0)
            assert url in str(caught.value)
        finally:
            transport.close()


@pytest.mark.parametrize("url", ["sim", "sim:micropython"])
def test_sim_url_starts_owns_and_stops_a_simulator(url):
    transport = open_port(url, sim_speed=10)
    try:
        assert isinstance(transport, SimTransport)
        assert transport.pty_path.startswith("/dev/") and transport.pty_path in transport.name
        transport.write(frame.encode_frame({"id": 7, "op": "hello", "proto": "0.1"}))
        reply = read_reply(transport)
        assert reply["id"] == 7 and reply["ok"] is True
        server = transport.server
        assert server.alive()
    finally:
        transport.close()
    assert not server.alive()


def test_a_second_host_on_a_served_device_is_turned_away_at_once_and_told_why():
    """It used to wait out every resend for replies that could never come."""
    from host.client import Client
    from sim.launcher import start_server

    with start_server(runtime="cpython", speed=5, pty=False, listen="127.0.0.1:0") as served:
        first = Client(open_port(served.url))
        try:
            first.hello()
            started = time.monotonic()
            second = Client(open_port(served.url))
            with pytest.raises(TransportError) as err:
                second.hello()
            second.transport.close()
            assert time.monotonic() - started < 3
            assert "one host at a time" in str(err.value), str(err.value)
            assert first.status()["state"] == "IDLE"  # the first host is undisturbed
        finally:
            first.transport.close()
