"""firmware.supervisor: IDLE / RUNNING / PAUSED / FAULT, latching, clearing."""

from firmware import supervisor as sup
from firmware.protocols import messages as msg
from tests.fw.portable import raises


def _bad_state(fn, *args):
    err = raises(msg.RequestError, fn, *args)
    assert err.code == msg.E_BAD_STATE, err.code
    return err.message


def test_boots_idle():
    s = sup.Supervisor()
    assert s.state == sup.IDLE and s.state_name == "IDLE"
    assert s.faults == [] and s.fault_msg == "" and s.reason == ""
    assert not s.running()
    assert s.changes == 0


def test_state_names():
    assert sup.STATE_NAMES[sup.IDLE] == "IDLE"
    assert sup.STATE_NAMES[sup.RUNNING] == "RUNNING"
    assert sup.STATE_NAMES[sup.PAUSED] == "PAUSED"
    assert sup.STATE_NAMES[sup.FAULT] == "FAULT"


def test_start_and_end_a_session():
    s = sup.Supervisor()
    s.start()
    assert s.state == sup.RUNNING and s.running() and s.state_name == "RUNNING" and s.reason == "start"
    assert s.changes == 1
    assert "RUNNING" in _bad_state(s.start)  # already running: refused, no change
    assert s.changes == 1
    s.to_idle("stop")
    assert s.state == sup.IDLE and s.changes == 2 and s.reason == "stop"
    s.to_idle("stop")  # already idle: no change
    assert s.changes == 2


def test_pause_and_resume():
    s = sup.Supervisor()
    assert "IDLE" in _bad_state(s.pause, sup.PAUSE_REQUEST)  # nothing to pause
    assert "IDLE" in _bad_state(s.resume)
    s.start()
    s.pause(sup.PAUSE_LEASE)
    assert s.state == sup.PAUSED and not s.running() and s.reason == "lease_expired"
    assert "PAUSED" in _bad_state(s.pause, sup.PAUSE_REQUEST)
    assert "PAUSED" in _bad_state(s.start)  # resume a pause, do not start over it
    s.resume()
    assert s.state == sup.RUNNING and s.reason == "resume"
    assert "RUNNING" in _bad_state(s.resume)
    s.pause(sup.PAUSE_REQUEST)
    assert s.reason == "request"
    s.to_idle("stop")  # a paused session can end
    assert s.state == sup.IDLE
    assert s.changes == 5


def test_trip_from_every_state():
    for begin in ("IDLE", "RUNNING", "PAUSED"):
        s = sup.Supervisor()
        if begin != "IDLE":
            s.start()
        if begin == "PAUSED":
            s.pause(sup.PAUSE_REQUEST)
        s.trip("no_load:0", "channel 0: 0 uA delivered")
        assert s.state == sup.FAULT and not s.running() and s.state_name == "FAULT"
        assert s.faults == ["no_load:0"] and s.reason == "no_load:0"
        assert s.fault_msg == "channel 0: 0 uA delivered"


def test_faults_latch_and_keep_the_first_message():
    s = sup.Supervisor()
    s.start()
    s.trip("overcurrent:1", "first")
    changes = s.changes
    s.trip("overcurrent:1", "again")
    s.trip(sup.F_INTERNAL, "second")
    assert s.faults == ["overcurrent:1", sup.F_INTERNAL]
    assert s.fault_msg == "first" and s.reason == "overcurrent:1"
    assert s.changes == changes + 1  # the same fault again is nothing new; another one is (a state event)
    s.to_idle("estop")  # neither a stop nor an emergency stop leaves FAULT
    assert s.state == sup.FAULT


def test_nothing_but_clear_leaves_fault():
    s = sup.Supervisor()
    s.trip("no_load:0", "electrode off")
    for fn, args in ((s.start, ()), (s.resume, ()), (s.pause, (sup.PAUSE_REQUEST,))):
        _bad_state(fn, *args)
        assert s.state == sup.FAULT
    text = _bad_state(s.start)
    assert "no_load:0" in text and "clear_fault" in text and "electrode off" in text


def test_clear_only_from_fault():
    s = sup.Supervisor()
    assert "IDLE" in _bad_state(s.clear)
    s.start()
    assert "RUNNING" in _bad_state(s.clear)
    assert s.state == sup.RUNNING


def test_clear_goes_to_idle_never_running():
    s = sup.Supervisor()
    s.start()
    s.trip(sup.F_INTERNAL, "boom")
    s.clear()
    assert s.state == sup.IDLE and s.reason == "clear_fault"
    assert s.faults == [] and s.fault_msg == ""
    s.start()
    assert s.state == sup.RUNNING


def test_changes_count_every_transition():
    s = sup.Supervisor()
    s.start()
    s.pause(sup.PAUSE_REQUEST)
    s.resume()
    s.trip("no_load:1", "x")
    s.clear()
    s.start()
    s.to_idle("stop")
    assert s.changes == 7


def test_fault_names():
    assert (sup.F_NO_LOAD, sup.F_OVERCURRENT, sup.F_ENVELOPE, sup.F_INTERNAL) == (
        "no_load", "overcurrent", "envelope_breach", "internal_error")
