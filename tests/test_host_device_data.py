"""Odd data from the wire and interrupts at awkward moments: a clear error naming the field (or
a "?" in the live view), never a traceback, and never a session left running."""

import pytest

import host.client as hc
from tests.test_host_client_library import ScriptedLine, enc, ok, ops
from tests.test_host_client import make_client


# ---- 1. session(): every exit ends in stop or estop --------------------------------------------


def running_line():
    return ScriptedLine(lambda request: ok(request, state="RUNNING"))


def test_ctrl_c_while_the_lease_keeper_is_joined_on_leaving_still_estops(monkeypatch):
    real_stop = hc.LeaseKeeper.stop

    def interrupted_join(keeper, wait=True):
        real_stop(keeper, wait=False)
        if wait:
            raise KeyboardInterrupt

    monkeypatch.setattr(hc.LeaseKeeper, "stop", interrupted_join)
    line = running_line()
    client = make_client(line, timeout_s=0.1)
    with pytest.raises(KeyboardInterrupt):
        with client.session(amp_ua=[4000], keep_lease=True):
            pass
    assert ops(line)[0] == "start" and ops(line)[-1] == "estop", ops(line)


def test_ctrl_c_while_the_lease_keeper_starts_estops(monkeypatch):
    def interrupted_start(keeper):
        raise KeyboardInterrupt

    monkeypatch.setattr(hc.LeaseKeeper, "start", interrupted_start)
    line = running_line()
    client = make_client(line, timeout_s=0.1)
    with pytest.raises(KeyboardInterrupt):
        with client.session(amp_ua=[4000], keep_lease=True):
            raise AssertionError("the block must not run")
    assert ops(line) == ["start", "estop"], ops(line)


# ---- 2. log_records: the reply's fields checked, the paging bounded -----------------------------


def log_line(page):
    """A device whose log_fetch reply is page(from_seq): a dict of reply fields."""
    return ScriptedLine(lambda request: ok(request, **page(request["from_seq"])))


def record(seq):
    return {"seq": seq, "ev": "pain", "score": 3, "when": "before", "sid": None, "up_ms": 5, "unix_s": 0}


@pytest.mark.parametrize("fields, words", [
    ({"records": [record(1)], "next_seq": "2"}, "next_seq must be an integer"),
    ({"records": [record(1)], "next_seq": True}, "next_seq must be an integer"),
    ({"records": [record(1)]}, "without next_seq"),
    ({"records": 5, "next_seq": 2}, "records must be a list"),
    ({"records": "abc", "next_seq": 2}, "records must be a list"),
    ({"records": [1, 2], "next_seq": 2}, "records must be a list"),
])
def test_a_log_fetch_reply_with_a_broken_field_is_a_protocol_error_naming_it(fields, words):
    client = make_client(log_line(lambda from_seq: fields), timeout_s=0.1)
    with pytest.raises(hc.ProtocolError, match=words):
        client.log_records()


def test_a_device_repeating_its_records_with_a_growing_next_seq_is_refused_not_looped():
    client = make_client(log_line(lambda from_seq: {"records": [record(1)], "next_seq": from_seq + 1}),
                         timeout_s=0.1)
    with pytest.raises(hc.ProtocolError, match="only repeats records"):
        client.log_records()


def test_a_device_that_never_ends_its_log_is_given_up_on_after_the_page_limit(monkeypatch):
    monkeypatch.setattr(hc, "MAX_LOG_PAGES", 50)
    line = log_line(lambda from_seq: {"records": [record(from_seq)], "next_seq": from_seq + 1})
    client = make_client(line, timeout_s=0.1)
    with pytest.raises(hc.ProtocolError, match="did not end after 50 pages"):
        client.log_records()
    assert len(line.sent) == 50


def test_a_well_formed_log_is_fetched_whole_page_by_page():
    log = [record(seq) for seq in range(1, 8)]

    def page(from_seq):
        chunk = [r for r in log if r["seq"] >= from_seq][:3]
        return {"records": chunk, "next_seq": (chunk[-1]["seq"] + 1) if chunk else from_seq, "last_seq": 7}

    assert [r["seq"] for r in make_client(log_line(page), timeout_s=0.1).log_records()] == list(range(1, 8))
