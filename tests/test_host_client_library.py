"""host.client as a library for users' own scripts: callbacks that raise, threads, replies that
break the protocol, lost connections, the error hierarchy, argument checks, the session context
manager and its lease keeper, and docs/client.md.

Names are looked up on the modules (hc.CallbackError), so each test fails on its own where
the library lacks what it checks.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque

import pytest

import host.client as hc
import host.transport as ht
from firmware.protocols import frame
from firmware.protocols import messages as msg
from tests.test_host_client import TICK_S, FakeClock, ServedLine, make_client

ROOT = pathlib.Path(__file__).resolve().parent.parent
enc = frame.encode_frame


class ScriptedLine:
    """A device that answers each request with respond(request): bytes, all of them in one
    read, or a list of byte strings, one read each.

    push(data) queues bytes for a read without a request (for poll)."""

    url = "fake://scripted"
    name = "fake://scripted"

    def __init__(self, respond):
        self.respond = respond
        self.clock = FakeClock()
        self.sent = []
        self._chunks = deque()

    def push(self, data):
        self._chunks.append(data)

    def write(self, data):
        message = frame.decode_line(data.rstrip(b"\n"))
        self.sent.append(message)
        out = self.respond(message) or b""
        self._chunks.extend(out if isinstance(out, list) else [out])

    def read(self, timeout_s):
        while self._chunks:
            out = self._chunks.popleft()
            if out:
                self.clock.ticks += 1
                return out
        self.clock.ticks += max(1, int(round(timeout_s / TICK_S)))
        return b""

    def close(self):
        pass


def ok(request, **fields):
    return enc(dict(fields, id=request["id"], ok=True))


def state_event(state, n=None):
    event = {"ev": "state", "state": state, "reason": "start"}
    if n is not None:
        event["n"] = n
    return enc(event)


def telemetry_event(n):
    return enc({"ev": "telemetry", "n": n, "state": "IDLE"})


class Boom(Exception):
    pass


def raise_on_first(seen):
    """A callback that records every event and raises on the first one only."""

    def callback(event):
        seen.append(event)
        if len(seen) == 1:
            raise Boom("bug in my callback")

    return callback


# ---- 1. an exception in the event callback ----------------------------------------------------


def test_a_callback_error_during_start_does_not_lose_the_reply_and_says_start_succeeded():
    def boom(event):
        if event.get("ev") == "state":
            raise ValueError("bug in my callback")

    line = ServedLine()
    client = make_client(line, on_event=boom)
    client.hello()
    with pytest.raises(hc.CallbackError) as caught:
        client.start([5000], lease_ms=0, ramp_ms=1000)
    err = caught.value
    assert isinstance(err, hc.ClientError)
    assert isinstance(err.__cause__, ValueError)
    assert err.op == "start" and err.error is None
    assert err.reply == {"state": "RUNNING"}
    text = str(err)
    assert "callback raised ValueError: bug in my callback" in text
    assert "start request itself succeeded" in text
    assert [m["op"] for m in line.sent].count("start") == 1
    client.on_event = None
    assert client.status()["state"] == "RUNNING"


def test_events_after_the_failing_one_in_the_same_read_are_still_delivered_and_kept():
    def respond(request):
        return state_event("IDLE") + telemetry_event(1) + telemetry_event(2) + ok(request, state="IDLE")

    seen = []
    line = ScriptedLine(respond)
    client = make_client(line, on_event=raise_on_first(seen))
    with pytest.raises(hc.CallbackError) as caught:
        client.status()
    assert [e["ev"] for e in seen] == ["state", "telemetry", "telemetry"]
    assert [e["ev"] for e in client.events] == ["state", "telemetry", "telemetry"]
    assert caught.value.reply == {"state": "IDLE"}
    assert len(line.sent) == 1, "no resend: the reply was not lost"
    assert client.status() == {"state": "IDLE"}  # the callback raises only once


def test_a_callback_error_during_a_refused_request_says_the_request_failed_and_with_what():
    def respond(request):
        return state_event("IDLE") + enc({"id": request["id"], "ok": False, "err": "bad_state", "msg": "not now"})

    client = make_client(ScriptedLine(respond), on_event=raise_on_first([]))
    with pytest.raises(hc.CallbackError) as caught:
        client.start([1000])
    err = caught.value
    assert isinstance(err.error, hc.DeviceError) and err.error.code == "bad_state"
    assert err.reply["err"] == "bad_state"
    assert "start request itself failed: device refused start: not now (bad_state)" in str(err)
    assert isinstance(err.__cause__, Boom)


def test_a_callback_error_during_hello_still_checks_the_version_and_keeps_the_device_info():
    def respond(request):
        return state_event("IDLE") + ok(request, proto=msg.PROTO_VERSION, channels=2)

    client = make_client(ScriptedLine(respond), on_event=raise_on_first([]))
    with pytest.raises(hc.CallbackError) as caught:
        client.hello()
    assert caught.value.op == "hello" and client.device["channels"] == 2


def test_a_callback_error_during_poll_keeps_every_event_read():
    seen = []
    line = ScriptedLine(lambda request: b"")
    client = make_client(line, on_event=raise_on_first(seen))
    line.push(state_event("IDLE") + telemetry_event(1) + telemetry_event(2))
    with pytest.raises(hc.CallbackError) as caught:
        client.poll(0.2)
    assert caught.value.op == "poll" and len(caught.value.events) == 3
    assert len(seen) == 3 and len(client.events) == 3
    assert "poll itself read 3 events" in str(caught.value)


def test_a_request_made_from_the_callback_does_not_take_the_outer_requests_reply():
    """The nested request used to read the outer reply and drop it: the outer one resent."""

    def respond(request):
        if request["op"] == "keepalive":
            return [telemetry_event(request["id"]), ok(request, state="IDLE")]  # the event, then the reply
        return ok(request, state="IDLE")

    line = ScriptedLine(respond)
    nested = []
    client = make_client(line, timeout_s=0.5)
    client.on_event = lambda event: nested.append(client.status()["state"])
    for _ in range(3):
        assert client.keepalive() == {"state": "IDLE"}
    assert nested == ["IDLE"] * 3
    assert client.resends == 0


# ---- 2. threads --------------------------------------------------------------------------------


def test_two_threads_sharing_a_client_get_their_own_replies():
    """tensctl-like keepalive thread plus status() in the main thread, on a served simulator."""
    from sim.launcher import start_server

    with start_server(runtime="cpython", speed=1, pty=False, listen="127.0.0.1:0") as served:
        client = hc.Client(ht.open_port(served.url), timeout_s=0.5)
        try:
            client.hello()
            errors = []
            counts = {"keeper": 0, "main": 0}
            stop = threading.Event()

            def keeper():
                while not stop.is_set():
                    try:
                        assert "state" in client.keepalive()
                        counts["keeper"] += 1
                    except Exception as err:  # noqa: BLE001 - collected for the assertion
                        errors.append(err)
                    time.sleep(0.005)

            thread = threading.Thread(target=keeper)
            thread.start()
            try:
                for _ in range(100):
                    try:
                        assert "uptime_ms" in client.status()
                        counts["main"] += 1
                    except Exception as err:  # noqa: BLE001
                        errors.append(err)
            finally:
                stop.set()
                thread.join()
            assert errors == [] and client.resends == 0
            assert counts["main"] == 100
            assert counts["keeper"] >= 10, "the waiting thread gets its turn: %r" % counts
        finally:
            client.close()


def test_the_request_lock_is_reentrant_and_first_come_first_served():
    lock = hc.FairRLock()
    order = []
    with lock:
        with lock:  # reentrant
            waiter = threading.Thread(target=lambda: (lock.acquire(), order.append("waiter"), lock.release()))
            waiter.start()
            time.sleep(0.05)
    with lock:  # the waiter was first in line: it goes before this thread takes the lock again
        order.append("main")
    waiter.join()
    assert order == ["waiter", "main"]


# ---- 3. replies that break the protocol --------------------------------------------------------


@pytest.mark.parametrize(
    "reply, words",
    [
        ({"ok": "yes", "state": "RUNNING"}, "with ok='yes'"),
        ({"state": "RUNNING"}, "without an ok field"),
        ({"ok": False}, "err and msg strings"),
        ({"ok": False, "err": "bad_state"}, "err and msg strings"),
        ({"ok": False, "err": 7, "msg": "x"}, "err and msg strings"),
    ],
)
def test_a_reply_that_breaks_the_protocol_is_a_protocol_error_naming_what(reply, words):
    client = make_client(ScriptedLine(lambda request: enc(dict(reply, id=request["id"]))))
    with pytest.raises(hc.ProtocolError) as caught:
        client.start([1000])
    assert not isinstance(caught.value, hc.DeviceError)
    assert words in str(caught.value) and "start" in str(caught.value)


def test_a_well_formed_error_reply_is_still_a_device_error():
    respond = lambda request: enc({"id": request["id"], "ok": False, "err": "bad_state", "msg": "not now"})  # noqa: E731
    with pytest.raises(hc.DeviceError) as caught:
        make_client(ScriptedLine(respond)).start([1000])
    assert caught.value.code == "bad_state" and caught.value.message == "not now"


# ---- 4. and 5. lost connections; one hierarchy -------------------------------------------------


def serve_once(handle):
    """A TCP server for one connection: handle(conn) runs in a thread. Returns the URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn, _ = listener.accept()
        try:
            handle(conn)
        finally:
            conn.close()
            listener.close()

    threading.Thread(target=run, daemon=True).start()
    return "socket://127.0.0.1:%d" % listener.getsockname()[1]


def read_until_lost(transport):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        transport.read(0.1)
    raise AssertionError("the connection never broke")


def answer_once_then_close(conn):
    conn.recv(100)  # after open_port, which drops what arrived before it
    conn.sendall(enc({"id": 1, "ok": True, "state": "IDLE"}))


def test_a_device_that_closes_after_talking_is_not_blamed_on_another_host():
    url = serve_once(answer_once_then_close)
    transport = ht.open_port(url)
    try:
        transport.write(enc({"id": 1, "op": "status"}))
        with pytest.raises(hc.ClientError) as caught:  # a dead link is a ClientError too
            read_until_lost(transport)
    finally:
        transport.close()
    assert isinstance(caught.value, ht.TransportError)
    text = str(caught.value)
    assert "one host at a time" not in text and "another tensctl" not in text
    assert "the device closed the connection" in text and url in text


def test_a_connection_closed_before_anything_came_keeps_the_one_host_hint():
    url = serve_once(lambda conn: None)
    transport = ht.open_port(url)
    try:
        with pytest.raises(ht.TransportError) as caught:
            read_until_lost(transport)
    finally:
        transport.close()
    assert "one host at a time" in str(caught.value)


def test_writing_after_the_device_went_away_says_so_without_the_hint():
    transport = ht.open_port(serve_once(answer_once_then_close))
    try:
        transport.write(enc({"id": 1, "op": "status"}))
        with pytest.raises(ht.TransportError):
            read_until_lost(transport)
        with pytest.raises(ht.TransportError) as caught:
            for _ in range(50):  # the first writes may still land in the socket's buffer
                transport.write(b"@x\n")
                time.sleep(0.01)
    finally:
        transport.close()
    assert "one host at a time" not in str(caught.value)


def test_one_error_hierarchy_with_the_old_names_still_importable():
    from host import errors

    assert issubclass(errors.TransportError, errors.ClientError)
    assert issubclass(errors.PortOpenError, errors.TransportError)
    for name in ("ClientError", "DeviceError", "NoResponse", "VersionMismatch", "ProtocolError", "CallbackError"):
        assert getattr(hc, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), errors.ClientError)
    assert ht.TransportError is errors.TransportError is hc.TransportError
    assert ht.PortOpenError is errors.PortOpenError
    err = ht.PortOpenError("/dev/x", "cannot open port /dev/x")
    assert err.url == "/dev/x" and err.message == "cannot open port /dev/x" and str(err) == err.message


# ---- 6. NoResponse and timeouts ----------------------------------------------------------------


def test_no_response_keeps_request_id_and_attempts_and_says_the_request_may_have_run():
    line = ScriptedLine(lambda request: b"")
    client = make_client(line, timeout_s=0.2, first_id=41)
    with pytest.raises(hc.NoResponse) as caught:
        client.start([1000])
    err = caught.value
    assert err.request_id == 41 and err.attempts == 2 and err.op == "start"
    assert "may have run" in str(err) and "status()" in str(err)
    assert "may have run" in hc.NoResponse.__doc__


@pytest.mark.parametrize("timeout_s", [None, 0, 0.0, -1, "1", float("nan"), float("inf"), True])
def test_a_timeout_that_is_not_a_positive_number_is_refused_up_front(timeout_s):
    with pytest.raises(ValueError) as caught:
        hc.Client(ScriptedLine(lambda request: b""), timeout_s=timeout_s)
    assert "timeout_s" in str(caught.value) and "greater than 0" in str(caught.value)


def test_the_timeouts_tensctl_passes_are_accepted():
    for timeout_s in (0.01, 1, 600.0):  # tensctl --timeout: click.FloatRange(0.01, 600)
        assert hc.Client(ScriptedLine(lambda request: b""), timeout_s=timeout_s).timeout_s == timeout_s


# ---- 7. integers in their units ----------------------------------------------------------------


@pytest.mark.parametrize(
    "call, name, unit",
    [
        (lambda c: c.start(amp_ua=5000), "amp_ua", "µA"),
        (lambda c: c.start(amp_ua=[1.5]), "amp_ua", "µA"),
        (lambda c: c.start(amp_ua=["1000"]), "amp_ua", "µA"),
        (lambda c: c.set_amp(0, 1.5), "amp_ua", "µA"),
        (lambda c: c.set_amp(0, "1000"), "amp_ua", "µA"),
        (lambda c: c.start_program("conventional", amp_ua=[1.5]), "amp_ua", "µA"),
        (lambda c: c.start_program("conventional", amp_ua=5000), "amp_ua", "µA"),
        (lambda c: c.start(amp_ua=[1000], lease_ms=1.5), "lease_ms", "ms"),
        (lambda c: c.start_program("conventional", lease_ms="3000"), "lease_ms", "ms"),
        (lambda c: c.telemetry(50.0), "every_ms", "ms"),
        (lambda c: c.heat(target_mc=40000.0), "target_mc", "milli-°C"),
        (lambda c: c.amp_step(0, 0.5), "steps", "steps of 0.5 mA"),
    ],
)
def test_non_integers_are_refused_before_sending_naming_the_argument_and_unit(call, name, unit):
    line = ScriptedLine(lambda request: ok(request))
    client = make_client(line)
    with pytest.raises(ValueError) as caught:
        call(client)
    text = str(caught.value)
    assert text.startswith(name + " must be ") and "integer" in text and "in " + unit in text, text
    assert isinstance(caught.value, TypeError), "start() used to raise TypeError: code catching it still works"
    assert line.sent == []


def test_integers_and_tuples_still_go_through():
    line = ScriptedLine(lambda request: ok(request))
    client = make_client(line)
    client.start(amp_ua=(5000, 0), lease_ms=3000)
    client.set_amp(1, 2500)
    assert line.sent[0]["amp_ua"] == [5000, 0] and line.sent[1]["amp_ua"] == 2500


# ---- 8. after a version mismatch ---------------------------------------------------------------


def test_after_a_version_mismatch_requests_are_refused_but_estop_and_hello_still_go():
    def respond(request):
        if request["op"] == "hello":
            return ok(request, proto="9.0", proto_majors=[9])
        return ok(request, state="IDLE")

    line = ScriptedLine(respond)
    client = make_client(line)
    with pytest.raises(hc.VersionMismatch):
        client.hello()
    sent = len(line.sent)
    with pytest.raises(hc.VersionMismatch) as caught:
        client.start([1000])
    assert len(line.sent) == sent, "nothing was sent"
    assert "not sending start" in str(caught.value) and "9.0" in str(caught.value)
    assert caught.value.device_version == "9.0"
    assert client.estop() == {"state": "IDLE"}  # an emergency stop is never refused by the host


# ---- 9. the session context manager and the lease keeper ---------------------------------------


def ops(line):
    return [m["op"] for m in line.sent]


def test_session_starts_and_stops_normally_on_leaving_the_block():
    line = ServedLine()
    client = make_client(line)
    client.hello()
    with client.session(amp_ua=[4000], ramp_ms=1000, lease_ms=0) as started:
        assert started == {"state": "RUNNING"}
        client.poll(0.5)
    assert ops(line)[-1] == "stop"
    status = client.status()
    assert status["stopping"] is True or status["state"] == "IDLE"


def test_session_sends_estop_when_the_block_raises_and_the_error_propagates():
    line = ServedLine()
    client = make_client(line)
    client.hello()
    with pytest.raises(RuntimeError, match="script bug"):
        with client.session(amp_ua=[4000], ramp_ms=1000, lease_ms=0):
            client.poll(1.5)
            raise RuntimeError("script bug")
    assert ops(line)[-1] == "estop"
    status = client.status()
    assert status["state"] == "IDLE" and status["reason"] == "estop"
    assert [ch["amp_ua"] for ch in status["ch"]] == [0, 0]


def test_session_estops_when_start_got_no_reply_since_it_may_have_run():
    line = ScriptedLine(lambda request: b"" if request["op"] == "start" else ok(request, state="IDLE"))
    client = make_client(line, timeout_s=0.2)
    with pytest.raises(hc.NoResponse):
        with client.session(amp_ua=[4000]):
            raise AssertionError("the block must not run")
    assert ops(line) == ["start", "start", "estop"]


@pytest.mark.parametrize("how", ["broken reply", "ctrl-c", "internal", "lost port"])
def test_session_estops_whenever_the_start_may_have_run(how):
    """Anything but a plain refusal leaves a start that may have run: estop before the error."""

    def respond(request):
        if request["op"] != "start":
            return ok(request, state="IDLE")
        if how == "broken reply":
            return enc({"id": request["id"], "ok": "yes"})
        if how == "internal":
            return enc({"id": request["id"], "ok": False, "err": "internal", "msg": "KeyError x"})
        if how == "ctrl-c":
            raise KeyboardInterrupt  # while its reply is awaited
        raise ht.TransportError("fake://scripted", "read failed: device went away")  # after the write reached it

    line = ScriptedLine(respond)
    client = make_client(line, timeout_s=0.2)
    expected = {"broken reply": hc.ProtocolError, "ctrl-c": KeyboardInterrupt, "internal": hc.DeviceError,
                "lost port": ht.TransportError}[how]
    with pytest.raises(expected):
        with client.session(amp_ua=[4000]):
            raise AssertionError("the block must not run")
    assert ops(line)[0] == "start" and ops(line)[-1] == "estop", ops(line)


def test_session_sends_no_estop_for_a_refused_start_or_a_bad_argument():
    line = ScriptedLine(lambda request: enc({"id": request["id"], "ok": False, "err": "bad_state", "msg": "FAULT"}))
    client = make_client(line, timeout_s=0.2)
    with pytest.raises(hc.DeviceError):
        with client.session(amp_ua=[4000]):
            raise AssertionError("the block must not run")
    assert ops(line) == ["start"]
    with pytest.raises(ValueError):
        with client.session(amp_ua=[1.5]):
            raise AssertionError("the block must not run")
    assert ops(line) == ["start"], "nothing sent for a bad argument"


def test_session_estops_when_the_stop_on_leaving_is_not_confirmed():
    line = ScriptedLine(lambda request: b"" if request["op"] == "stop" else ok(request, state="RUNNING"))
    client = make_client(line, timeout_s=0.1)
    with pytest.raises(hc.NoResponse):
        with client.session(amp_ua=[4000]):
            pass
    assert ops(line)[-1] == "estop" and "stop" in ops(line), ops(line)


def test_an_unconfirmed_estop_is_noted_on_the_error_that_ended_the_session():
    line = ScriptedLine(lambda request: ok(request, state="RUNNING") if request["op"] == "start" else b"")
    client = make_client(line, timeout_s=0.1)
    with pytest.raises(RuntimeError) as caught:
        with client.session(amp_ua=[4000]):
            raise RuntimeError("script bug")
    assert "estop" in ops(line)
    assert any("NOT confirmed" in note for note in caught.value.__notes__)


def test_the_lease_keeper_holds_the_lease_on_device_time_at_ten_times_speed():
    """1 s lease at --speed 10: 100 ms of wall time. A keepalive every 0.5 s wall would lose it."""
    with hc.Client(ht.open_port("sim", sim_speed=10)) as client:
        client.hello()
        with client.session(amp_ua=[3000], lease_ms=1000, keep_lease=True):
            time.sleep(1.5)  # 15 s of device time, 15 leases
            status = client.status()
            assert status["state"] == "RUNNING", status
        status = client.status()
        assert status["state"] != "PAUSED" and status["reason"] != "lease_expired", status


# ---- 10. docstrings and docs/client.md ---------------------------------------------------------


def test_every_public_client_method_has_a_docstring():
    missing = [name for name in dir(hc.Client)
               if not name.startswith("_") and callable(getattr(hc.Client, name)) and not getattr(hc.Client, name).__doc__]
    assert missing == []


def test_docs_client_md_is_linked_from_readme_and_sim_doc():
    assert (ROOT / "docs" / "client.md").is_file()
    assert "docs/client.md" in (ROOT / "README.md").read_text()
    assert "(client.md)" in (ROOT / "docs" / "sim.md").read_text()


def test_the_example_script_in_docs_client_md_runs_against_the_embedded_simulator(tmp_path):
    text = (ROOT / "docs" / "client.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = [block for block in blocks if "open_port" in block and "__main__" in block]
    assert len(example) == 1, "one complete example script"
    script = tmp_path / "example.py"
    script.write_text(example[0])
    result = subprocess.run([sys.executable, str(script), "sim"], cwd=ROOT, capture_output=True, text=True,
                            timeout=90, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped" in result.stdout


def test_a_lease_keeper_that_meets_a_bug_says_so_instead_of_dying_silently():
    line = ScriptedLine(lambda request: ok(request, state="RUNNING"))
    client = make_client(line, timeout_s=0.1)
    keeper = hc.LeaseKeeper(client)

    def broken(status):
        raise RuntimeError("pacing bug")

    keeper._pace.note = broken  # noqa: SLF001 - the pacing, failing
    keeper._run()  # noqa: SLF001 - the thread's body, run here
    assert isinstance(keeper.error, hc.ClientError) and "pacing bug" in str(keeper.error), keeper.error
    assert isinstance(keeper.error.__cause__, RuntimeError)
