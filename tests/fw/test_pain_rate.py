"""`pain` needs no PIN, so it is rate limited: at most PAIN_PER_HOUR scores in any hour and
PAIN_PER_DAY in any day of uptime; more are refused with try_later, naming the limit and the
seconds to wait, and write nothing. A flood of scores cannot rotate the therapy records away."""

from firmware import clinic
from firmware.session_log import SessionLog
from firmware.protocols import messages as msg
from tests.fw.harness import Harness


def _jump(h, seconds):
    """Uptime forward (the device's only time base for the limit), without ticking for hours."""
    h.device.uptime.total_ms = h.device.uptime.total_ms + seconds * 1000
    h.tick()


def _log_records(h):
    return h.ok("log_info")["records"]


def test_a_patients_real_use_is_never_refused():
    h = Harness()
    for day in range(3):
        for session in range(4):  # four sessions a day, a score before and after, one corrected
            for score in (6, 5, 3):
                assert h.request("pain", {"when": "before", "score": score})["ok"] is True, (day, session)
            _jump(h, 3 * 3600)
        _jump(h, 12 * 3600)


def test_more_than_the_hourly_limit_is_try_later_naming_the_limit_and_the_wait():
    h = Harness()
    for i in range(clinic.PAIN_PER_HOUR):
        h.ok("pain", {"when": "after", "score": i % 11})
        _jump(h, 60)
    records = _log_records(h)
    reply = h.request("pain", {"when": "after", "score": 3})
    assert reply["ok"] is False and reply["err"] == msg.E_TRY_LATER, reply
    assert "%d per hour" % clinic.PAIN_PER_HOUR in reply["msg"], reply
    wait = 3600 - 60 * clinic.PAIN_PER_HOUR
    assert "try again in %d s" % wait in reply["msg"], reply
    assert _log_records(h) == records  # nothing written
    _jump(h, wait - 1)
    assert h.request("pain", {"when": "after", "score": 3})["err"] == msg.E_TRY_LATER
    _jump(h, 1)
    h.ok("pain", {"when": "after", "score": 3})  # the oldest of the hour has left the window
    assert _log_records(h) == records + 1


def test_more_than_the_daily_limit_is_try_later_naming_the_limit_and_the_wait():
    h = Harness()
    step = 3600 // clinic.PAIN_PER_HOUR + 1  # never the hourly limit
    for i in range(clinic.PAIN_PER_DAY):
        h.ok("pain", {"when": "before", "score": 2})
        _jump(h, step)
    reply = h.request("pain", {"when": "before", "score": 2})
    assert reply["ok"] is False and reply["err"] == msg.E_TRY_LATER, reply
    assert "%d per day" % clinic.PAIN_PER_DAY in reply["msg"], reply
    wait = 86400 - step * clinic.PAIN_PER_DAY
    assert "try again in %d s" % wait in reply["msg"], reply
    _jump(h, wait)
    h.ok("pain", {"when": "before", "score": 2})


def test_refused_or_unrecorded_scores_do_not_count():
    h = Harness()
    for _ in range(3 * clinic.PAIN_PER_HOUR):
        assert h.request("pain", {"when": "during", "score": 2})["err"] == msg.E_BAD_FIELD
        assert h.request("pain", {"when": "after", "score": 12})["err"] == msg.E_OUT_OF_RANGE
    for _ in range(clinic.PAIN_PER_HOUR):
        h.ok("pain", {"when": "after", "score": 1})


def test_a_flood_of_pain_scores_cannot_rotate_the_therapy_records_away():
    h = Harness()
    # a log of two 4 KB files (the board's are 96 KB): a flood of 400 scores would rotate it twice
    h.device.recorder.log = SessionLog(h.board.storage, 4096)
    h.ok("pin", {"new": "2468"})
    h.ok("program_put", {"pin": "2468", "program": {"name": "rx", "channels": [{"max_amp_ua": 20000}],
                                                   "phases": [{"name": "t", "duration_s": 10}]}})
    h.ok("start", {"program": "rx", "amp_ua": [5000], "lease_ms": 0})
    h.tick(1200)
    accepted = 0
    for _ in range(40):  # 400 requests over 40 hours of uptime
        for _ in range(10):
            h.send("pain", {"score": 0, "when": "after"})
        h.tick(3)
        accepted += len([m for m in h.inbox if m.get("ok") is True and "score" in m])
        h.inbox = []
        _jump(h, 3600)
    assert accepted <= 2 * clinic.PAIN_PER_DAY
    assert h.ok("log_info")["first_seq"] == 1  # the session's records are all still there
    kinds = [r["ev"] for r in h.ok("log_fetch", {"from_seq": 1})["records"]]
    assert "start" in kinds
