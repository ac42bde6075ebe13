"""firmware.link's reply cache: a retry is the same id and the same payload bytes; estop, stop and
pause always run; a retry answered from the cache still renews the keepalive lease."""

from firmware.protocols import frame
from tests.fw.harness import Harness


def _raw_line(payload, prefix=b"", ending=b"\n"):
    return prefix + b"@" + payload + ("*%04X" % frame.crc16(payload)).encode() + ending


def _replies_to(h, request_id, since):
    return [m for m in h.inbox[since:] if m.get("id") == request_id and "ok" in m]


def _send_raw_request(h, payload, request_id, prefix=b"", ending=b"\n"):
    h.sent_ops[request_id] = "?"
    start = len(h.inbox)
    h.send_raw(_raw_line(payload, prefix, ending))
    h.tick()
    found = _replies_to(h, request_id, start)
    assert len(found) == 1, found
    return found[0]


def _restarted_host_repeats(op):
    """A host script run twice without a hello: the second run reuses the first run's ids."""
    h = Harness()
    assert h.request("start", {"amp_ua": [10000, 0], "lease_ms": 0}, request_id=1)["ok"] is True
    h.tick(100)
    assert h.request(op, request_id=2)["ok"] is True
    h.tick(300)  # a stop ramps down
    assert h.state == "IDLE"
    reply = h.request("start", {"amp_ua": [12000, 0], "lease_ms": 0}, request_id=1)  # other bytes: runs
    assert reply["ok"] is True and h.state == "RUNNING"
    h.tick(300)
    assert h.amps()[0] > 0
    return h, h.request(op, request_id=2)  # the same id, the same bytes as the first run's


def test_a_repeated_estop_always_runs():
    h, reply = _restarted_host_repeats("estop")
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.state == "IDLE"  # it ran: not answered from the first run's cache entry
    h.tick(2)
    assert h.amps() == [0, 0]


def test_a_repeated_stop_always_runs():
    h, reply = _restarted_host_repeats("stop")
    assert reply["ok"] is True
    h.tick(400)
    assert h.state == "IDLE" and h.amps() == [0, 0]


def test_a_repeated_pause_always_runs():
    h = Harness()
    h.request("start", {"amp_ua": [10000, 0], "lease_ms": 0}, request_id=1)
    h.tick(50)
    assert h.request("pause", request_id=2)["state"] == "PAUSED"
    h.request("resume", request_id=3)
    h.tick(50)
    assert h.state == "RUNNING"
    reply = h.request("pause", request_id=2)  # same id, same bytes: runs again
    assert reply["ok"] is True and reply["state"] == "PAUSED"
    assert h.state == "PAUSED"
    h.tick(2)
    assert h.amps() == [0, 0]


def test_equal_dicts_with_other_bytes_are_a_new_request():
    h = Harness()
    reply = h.request("maintenance", {"on": 1}, request_id=7)
    assert reply["ok"] is False  # 1 is not a boolean
    reply = h.request("maintenance", {"on": True}, request_id=7)  # {"on": 1} == {"on": True} in Python
    assert reply["ok"] is True and reply["maintenance"] is True
    assert h.device.maintenance


def test_key_order_and_escapes_make_a_new_request():
    h = Harness()
    first = _send_raw_request(h, b'{"ch":0,"id":9,"op":"amp_step","steps":1}', 9)
    assert first["ok"] is True and first["target_ua"] == 500
    again = _send_raw_request(h, b'{"ch":0,"id":9,"op":"amp_step","steps":1}', 9)  # a retry
    assert again == first
    other = _send_raw_request(h, b'{"steps":1,"op":"amp_step","id":9,"ch":0}', 9)  # other order
    assert other["ok"] is True and other["target_ua"] == 1000
    escaped = _send_raw_request(h, b'{"ch":0,"id":9,"op":"amp_\\u0073tep","steps":1}', 9)
    assert escaped["ok"] is True and escaped["target_ua"] == 1500


def test_a_retry_with_noise_or_crlf_is_still_a_retry():
    h = Harness()
    payload = b'{"ch":0,"id":11,"op":"amp_step","steps":2}'
    first = _send_raw_request(h, payload, 11)
    assert first["target_ua"] == 1000
    assert _send_raw_request(h, payload, 11, prefix=b"\x00junk", ending=b"\r\n") == first
    assert h.ch(0).target_ua == 1000  # answered again, not run again


def test_a_retry_answered_from_the_cache_renews_the_lease():
    h = Harness()
    h.ok("start", {"amp_ua": [8000, 0], "lease_ms": 1000})
    kid = h.send("keepalive")
    h.tick(1)
    for _ in range(15):  # the host retries the same keepalive every 100 ms (its reply "lost")
        h.tick(10)
        h.send("keepalive", request_id=kid)
    h.tick(2)
    assert h.state == "RUNNING", h.device.supervisor.reason
