"""firmware.supervisor: IDLE / RUNNING / FAULT, latching, clearing."""

from firmware import supervisor as sup
from firmware.protocols import messages as msg
from tests.fw.portable import raises


def test_boots_idle():
    s = sup.Supervisor()
    assert s.state == sup.IDLE and s.state_name == "IDLE"
    assert s.faults == [] and s.fault_msg == ""
    assert not s.running()
    assert s.changes == 0


def test_state_names():
    assert sup.STATE_NAMES[sup.IDLE] == "IDLE"
    assert sup.STATE_NAMES[sup.RUNNING] == "RUNNING"
    assert sup.STATE_NAMES[sup.FAULT] == "FAULT"


def test_start_and_stop():
    s = sup.Supervisor()
    s.start()
    assert s.state == sup.RUNNING and s.running() and s.state_name == "RUNNING"
    assert s.changes == 1
    s.start()  # already running: no change
    assert s.changes == 1
    s.stop()
    assert s.state == sup.IDLE and s.changes == 2
    s.stop()  # already idle: no change
    assert s.changes == 2


def test_trip_from_idle_and_running():
    for begin_running in (False, True):
        s = sup.Supervisor()
        if begin_running:
            s.start()
        s.trip(sup.F_NO_LOAD, "channel 0: 0 uA measured")
        assert s.state == sup.FAULT and not s.running()
        assert s.faults == [sup.F_NO_LOAD]
        assert s.fault_msg == "channel 0: 0 uA measured"


def test_faults_latch_and_keep_the_first_message():
    s = sup.Supervisor()
    s.start()
    s.trip(sup.F_OVERCURRENT, "first")
    changes = s.changes
    s.trip(sup.F_OVERCURRENT, "again")
    s.trip(sup.F_INTERNAL, "second")
    assert s.faults == [sup.F_OVERCURRENT, sup.F_INTERNAL]
    assert s.fault_msg == "first"
    assert s.changes == changes  # still FAULT: no new state change
    s.stop()  # stop does not leave FAULT
    assert s.state == sup.FAULT


def test_start_refused_in_fault():
    s = sup.Supervisor()
    s.trip(sup.F_NO_LOAD, "electrode off")
    err = raises(msg.RequestError, s.start)
    assert err.code == msg.E_BAD_STATE
    assert sup.F_NO_LOAD in err.message and "clear_fault" in err.message
    assert s.state == sup.FAULT


def test_clear_only_from_fault():
    s = sup.Supervisor()
    assert raises(msg.RequestError, s.clear).code == msg.E_BAD_STATE
    s.start()
    err = raises(msg.RequestError, s.clear)
    assert err.code == msg.E_BAD_STATE and "RUNNING" in err.message
    assert s.state == sup.RUNNING


def test_clear_goes_to_idle_never_running():
    s = sup.Supervisor()
    s.start()
    s.trip(sup.F_INTERNAL, "boom")
    s.clear()
    assert s.state == sup.IDLE
    assert s.faults == [] and s.fault_msg == ""
    s.start()
    assert s.state == sup.RUNNING


def test_changes_count_every_transition():
    s = sup.Supervisor()
    s.start()
    s.trip(sup.F_NO_LOAD, "x")
    s.clear()
    s.start()
    s.stop()
    assert s.changes == 5
