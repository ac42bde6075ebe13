"""Issue 3 on the whole device: engine modes, supervisor states, timers, lease, output monitoring.

Each test drives a Device over the simulated board through the protocol; the
harness checks the per-tick safety invariants throughout (tests/fw/invariants.py).
"""

from firmware import envelope
from firmware import limits
from firmware.protocols import messages as msg
from tests.fw.harness import Harness, ramp_ticks

FAST = limits.RAMP_MIN_MS
TICKS_PER_S = 1000 // limits.TICK_MS


def running(h=None, amps=(10000,), lease_ms=0, **fields):
    if h is None:
        h = Harness()
    request = {"amp_ua": list(amps), "lease_ms": lease_ms, "ramp_ms": FAST}
    for key in fields:
        request[key] = fields[key]
    reply = h.request("start", request)
    assert reply["ok"] is True, reply
    h.tick(ramp_ticks(max(amps), FAST) + 2)
    assert h.amps()[: len(amps)] == list(amps), h.amps()
    return h


def stim(h, ch, fields):
    reply = h.request("set_stim", {"ch": ch, "stim": fields})
    assert reply["ok"] is True, reply
    return reply


def rms_ua(pulses, delivered=False):
    """r.m.s. of a list of harness pulses over 1 s (current source: commanded, or delivered)."""
    total = 0
    for p in pulses:
        amp1 = p[8] if delivered else p[3]
        amp2 = amp1 // (p[7] // p[4])
        total += amp1 * amp1 * p[4] + amp2 * amp2 * p[7]
    return envelope.isqrt(total // 1000000)


# ---- stimulation settings through the protocol ----------------------------------------------


def test_set_stim_and_get_stim():
    h = Harness()
    reply = stim(h, 1, {"mode": "burst", "burst_hz": 80, "train_pulses": 5, "train_ms": 1000, "phase_us": 150})
    assert reply["ch"] == 1
    assert reply["stim"] == {"mode": "burst", "waveform": "symmetric", "phase_us": 150, "gap_us": 50,
                             "area_cm2": limits.AREA_DEFAULT_CM2, "burst_hz": 80, "train_ms": 1000, "train_pulses": 5}
    assert reply["max_amp_ua"] == h.ch(1).max_amp_ua == envelope.max_amp_ua(h.ch(1).setting)
    assert reply["binding_limit"] == "peak_current"
    assert reply["envelope"]["net_charge_nc"] == 0
    got = h.request("get_stim", {"ch": 1})
    assert got["ok"] is True and got["stim"] == reply["stim"] and got["max_amp_ua"] == reply["max_amp_ua"]
    assert h.request("get_stim", {"ch": 0})["stim"]["mode"] == "continuous"
    assert h.request("get_stim", {"ch": 2})["err"] == msg.E_OUT_OF_RANGE


def test_set_stim_errors_leave_the_setting_alone():
    h = Harness()
    before = h.ch(0).setting
    for fields, code, words in (
        ({"phase_us": 401}, msg.E_OUT_OF_RANGE, ("phase_us 401 exceeds the limit 400",)),
        ({"mode": "acupuncture", "rate_hz": 50}, msg.E_OUT_OF_RANGE, ("rate_hz 50", "10")),
        ({"mode": "bogus"}, msg.E_BAD_FIELD, ("'bogus'",)),
        ({"burst_hz": 100}, msg.E_BAD_FIELD, ("burst_hz", "continuous")),
        ("fast", msg.E_BAD_FIELD, ("stim",)),
    ):
        reply = h.request("set_stim", {"ch": 0, "stim": fields})
        assert reply["ok"] is False and reply["err"] == code, (fields, reply)
        for word in words:
            assert word in reply["msg"], (fields, reply["msg"])
    assert h.request("set_stim", {"ch": 0})["err"] == msg.E_BAD_FIELD  # no stim at all
    assert h.ch(0).setting is before


def test_set_stim_refused_when_the_target_would_leave_its_envelope():
    h = Harness()
    h.request("set_amp", {"ch": 0, "amp_ua": 70000})
    reply = h.request("set_stim", {"ch": 0, "stim": {"phase_us": 400}})
    assert reply["ok"] is False and reply["err"] == msg.E_ENVELOPE
    assert reply["msg"].startswith("phase_charge 28000 nC exceeds the limit 25000 nC at 70000 uA"), reply["msg"]
    assert h.ch(0).setting.phase_us == 200


def test_set_stim_while_running_restarts_that_channel_from_zero():
    h = running(amps=(12000, 8000))
    stim(h, 0, {"rate_hz": 80, "phase_us": 150})
    assert h.amps() == [0, 8000]  # a program change is an interruption for its channel only
    since = len(h.pulses)
    h.tick(3)
    first = h.pulses_on(0, since)[0]
    assert first[3] <= h.ch(0).ramp_step_ua and first[4] == 150
    assert all(p[3] == 8000 for p in h.pulses_on(1, since))
    h.tick(ramp_ticks(12000, FAST))
    assert h.amps() == [12000, 8000]


def test_a_train_restarted_mid_session_keeps_its_distance_from_the_last_pulse():
    """set_stim restarts the channel's train at the next window's start; the last pulse of the
    old one may have started just before. The first new pulse waits until 4 ms (250 Hz, the
    highest rate of any setting) after it, every restart point tried (the harness checks the
    spacing of every pulse against the one before, across ticks)."""
    setting = {"mode": "continuous", "rate_hz": 150, "phase_us": 400, "gap_us": 200}
    for ticks in range(700, 703):  # the old train's last pulse lands at a different place in each
        h = Harness()
        h.ok("set_stim", {"ch": 0, "stim": setting})
        h.ok("start", {"amp_ua": [20000, 0], "lease_ms": 0})
        for _ in range(7):
            h.tick(99)
            h.forget()  # seven seconds of pulses in one list: more than the VM's heap finds room for
        h.tick(ticks - 7 * 99)
        last_t, last_us = [(p[0], p[2]) for p in h.pulses_on(0)][-1]
        since = len(h.pulses)
        h.ok("set_stim", {"ch": 0, "stim": setting})
        h.tick(2)
        first_t, first_us = [(p[0], p[2]) for p in h.pulses_on(0, since)][0]
        assert (first_t - last_t) * 10000 + first_us - last_us >= 4000, (ticks, last_t, last_us, first_t, first_us)


def test_modes_through_the_device():
    h = running(amps=(20000, 20000))
    stim(h, 0, {"mode": "acupuncture", "rate_hz": 2, "phase_us": 250})
    stim(h, 1, {"mode": "burst", "burst_hz": 100, "train_pulses": 7, "train_ms": 500})
    h.tick(ramp_ticks(20000, FAST) + 1)
    since = len(h.pulses)
    h.tick(2 * TICKS_PER_S)
    acu = h.pulses_on(0, since)
    burst = h.pulses_on(1, since)
    assert len(acu) == 4 and all(p[3] == 20000 and p[4] == 250 for p in acu)
    assert len(burst) == 28
    status = h.request("status")
    assert status["ch"][0]["mode"] == "acupuncture" and status["ch"][0]["rate_hz"] == 2
    assert status["ch"][1]["mode"] == "burst" and status["ch"][1]["rate_hz"] == 100


def test_asymmetric_pulses_are_balanced_on_the_wire():
    h = Harness()
    stim(h, 0, {"waveform": "asymmetric", "asym_ratio": 3, "phase_us": 100})
    running(h, amps=(9001,))
    h.tick(20)
    for p in h.pulses_on(0)[-10:]:
        assert p[3] == 9000 and p[6] == 3000 and p[4] == 100 and p[7] == 300
        assert p[3] * p[4] == p[6] * p[7]


# ---- supervisor: pause, resume, estop --------------------------------------------------------


def test_pause_zeroes_output_at_once_and_resume_ramps_from_zero():
    h = running(amps=(12000, 6000))
    since = len(h.inbox)
    reply = h.request("pause")
    assert reply["ok"] is True and reply["state"] == "PAUSED"
    assert h.amps() == [0, 0] and h.board.pulse_out.last_commanded_ua == [0, 0]
    event = h.events("state", since)[-1]
    assert event["state"] == "PAUSED" and event["reason"] == "request"
    count = len(h.pulses)
    h.tick(100)
    assert len(h.pulses) == count
    assert h.request("pause")["err"] == msg.E_BAD_STATE
    assert [c.target_ua for c in h.device.channels] == [12000, 6000]  # the targets wait
    reply = h.request("resume")
    assert reply["ok"] is True and reply["state"] == "RUNNING"
    h.tick(2)
    first = h.pulses_on(0, count)[0]
    assert first[3] <= h.ch(0).ramp_step_ua
    h.tick(ramp_ticks(12000, FAST))
    assert h.amps() == [12000, 6000]
    assert h.request("resume")["err"] == msg.E_BAD_STATE


def test_pause_and_resume_refused_outside_their_states():
    h = Harness()
    assert h.request("pause")["err"] == msg.E_BAD_STATE
    assert h.request("resume")["err"] == msg.E_BAD_STATE
    assert h.state == "IDLE"


def test_paused_session_time_does_not_count():
    h = running(amps=(3000,), session_ms=5000)
    h.request("pause")
    h.tick(10 * TICKS_PER_S)
    assert h.state == "PAUSED"
    assert 0 < h.request("status")["session_left_ms"] < 5000


def test_emergency_stop_zeroes_output_at_once():
    h = running(amps=(30000, 20000))
    since = len(h.inbox)
    reply = h.request("estop")
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.amps() == [0, 0] and [c.target_ua for c in h.device.channels] == [0, 0]  # no ramp, targets gone
    assert h.board.pulse_out.last_commanded_ua == [0, 0]
    assert h.events("state", since)[-1]["reason"] == "estop"
    count = len(h.pulses)
    h.tick(50)
    assert len(h.pulses) == count
    assert h.request("estop")["state"] == "IDLE"  # idempotent


def test_emergency_stop_during_a_stop_ramp_and_when_paused():
    h = running(amps=(30000,))
    h.request("stop")
    h.tick(5)
    assert h.state == "RUNNING" and h.amps()[0] > 0
    h.request("estop")
    assert h.state == "IDLE" and h.amps() == [0, 0] and h.device.stopping is False
    running(h, amps=(5000,))
    h.request("pause")
    assert h.request("estop")["state"] == "IDLE"


def test_hello_while_running_does_not_disturb_the_session():
    # an observer (tensctl status) may connect to a running session; a controlling host that
    # was away longer than its lease finds it PAUSED instead, and resuming ramps from zero
    h = running(amps=(15000,))
    count = len(h.pulses)
    reply = h.request("hello", {"proto": msg.PROTO_VERSION})
    assert reply["ok"] is True
    h.tick(5)
    assert h.state == "RUNNING" and h.amps() == [15000, 0]
    assert all(p[3] == 15000 for p in h.pulses_on(0, count))


# ---- session timer ------------------------------------------------------------------------------


def test_session_timer_ramps_down_and_ends():
    h = running(amps=(8000,), session_ms=3000)
    status = h.request("status")
    assert status["session_left_ms"] <= 3000 - ramp_ticks(8000, FAST) * limits.TICK_MS
    since = len(h.inbox)
    h.tick_until(lambda: h.device.stopping, limit=3 * TICKS_PER_S)
    assert h.state == "RUNNING" and h.device.supervisor.reason == "session_end"
    assert [c.target_ua for c in h.device.channels] == [0, 0]
    ticks = h.tick_until(lambda: h.state == "IDLE", limit=10 * TICKS_PER_S)
    assert ticks >= 8000 // h.ch(0).ramp_step_ua - 1  # ramped, not cut
    event = h.events("state", since)[-1]
    assert event["state"] == "IDLE" and event["reason"] == "session_end"
    assert h.amps() == [0, 0]


def test_session_defaults_and_maximum():
    h = running(amps=(1000,))
    assert h.device.session_ms == limits.SESSION_DEFAULT_MS == 30 * 60 * 1000
    h.request("estop")
    reply = h.request("start", {"session_ms": limits.SESSION_MAX_MS + 1})
    assert reply["err"] == msg.E_OUT_OF_RANGE and "session_ms %d exceeds the limit %d" % (
        limits.SESSION_MAX_MS + 1, limits.SESSION_MAX_MS) in reply["msg"]
    assert h.request("start", {"session_ms": limits.SESSION_MAX_MS, "lease_ms": 0})["ok"] is True
    assert h.device.session_ms == 60 * 60 * 1000


def test_session_end_cannot_be_undone_by_raising_the_amplitude():
    h = running(amps=(5000,), session_ms=2000)
    h.tick_until(lambda: h.device.stopping, limit=3 * TICKS_PER_S)
    reply = h.request("set_amp", {"ch": 0, "amp_ua": 5000})
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE
    h.tick_until(lambda: h.state == "IDLE", limit=5 * TICKS_PER_S)
    assert h.device.session_run_ms <= 2000 + 10 * TICKS_PER_S * limits.TICK_MS


def test_longest_session_ends_on_time():
    h = Harness()
    h.request("start", {"amp_ua": [4000], "lease_ms": 0, "session_ms": limits.SESSION_MAX_MS, "ramp_ms": FAST})
    assert h.request("status")["session_left_ms"] == limits.SESSION_MAX_MS - limits.TICK_MS
    h.tick(2 * TICKS_PER_S)
    # an hour of RUNNING ticks, fast-forwarded: the timer is a plain sum of tick times
    h.device.session_run_ms = limits.SESSION_MAX_MS - 5 * limits.TICK_MS
    h.tick(4)
    assert h.state == "RUNNING" and not h.device.stopping
    h.tick(1)
    assert h.device.stopping and h.device.supervisor.reason == "session_end"
    h.tick_until(lambda: h.state == "IDLE", limit=20 * TICKS_PER_S)


# ---- keepalive lease ----------------------------------------------------------------------------


def test_lease_expiry_pauses():
    h = Harness()
    h.request("start", {"amp_ua": [6000], "ramp_ms": FAST})  # default lease
    assert h.device.lease_ms == limits.LEASE_DEFAULT_MS == 3000
    since = len(h.inbox)
    ticks = h.tick_until(lambda: h.state != "RUNNING", limit=5 * TICKS_PER_S)
    assert h.state == "PAUSED" and h.device.supervisor.reason == "lease_expired"
    assert 300 <= ticks <= 302  # no valid request for just over the lease
    assert h.amps() == [0, 0] and h.board.pulse_out.last_commanded_ua == [0, 0]
    assert h.events("state", since)[-1]["reason"] == "lease_expired"
    assert h.request("status")["reason"] == "lease_expired"
    count = len(h.pulses)
    h.request("resume")
    h.tick(2)
    assert h.pulses_on(0, count)[0][3] <= h.ch(0).ramp_step_ua  # from zero


def test_any_valid_request_renews_the_lease():
    h = Harness()
    h.request("start", {"amp_ua": [6000], "lease_ms": 1000, "ramp_ms": FAST})
    ops = ("keepalive", "status", "get_stim", "hello", "set_amp", "pause")
    for i in range(30):
        h.tick(80)  # 0.8 s
        h.forget()  # 24 s of pulses: a list the VM's fragmented heap may not find room for
        op = ops[i % 4]
        fields = {"ch": 0} if op == "get_stim" else None
        reply = h.request(op, fields)
        assert reply["ok"] is True
        assert h.state == "RUNNING", (i, op)
    h.request("amp_step", {"ch": 0, "steps": 100})  # refused (out of range), but a request with a known op
    h.tick(80)
    assert h.state == "RUNNING"


def test_noise_and_unknown_ops_do_not_renew_the_lease():
    h = Harness()
    h.request("start", {"amp_ua": [6000], "lease_ms": 500, "ramp_ms": FAST})
    for _ in range(8):
        h.tick(10)
        h.send_raw(b"noise\n@{\"id\":5,\"op\":\"status\"}*0000\n")
        h.send("explode")
    assert h.state == "PAUSED" and h.device.supervisor.reason == "lease_expired"


def test_lease_zero_disables_it():
    h = Harness()
    h.request("start", {"amp_ua": [6000], "lease_ms": 0, "ramp_ms": FAST})
    h.tick(10 * TICKS_PER_S)
    assert h.state == "RUNNING" and h.amps()[0] == 6000
    assert h.request("status")["lease_ms"] == 0


# ---- output monitoring -------------------------------------------------------------------------


def test_electrode_off_latches_no_load_within_one_tick_of_the_first_pulse():
    h = running(amps=(6000, 9000))
    h.fault("electrode_off:1")
    count = len(h.pulses)
    since = len(h.inbox)
    h.tick_until(lambda: len(h.pulses_on(1, count)) > 0, limit=5)
    first_tick = h.pulses_on(1, count)[0][0]
    h.tick(1)
    assert h.state == "FAULT" and h.faults == ["no_load:1"]
    assert h.device.ticks == first_tick + 1  # the tick after the first pulse into the open electrode
    assert h.amps() == [0, 0] and h.board.pulse_out.last_commanded_ua == [0, 0]  # every channel stops
    assert len(h.pulses_on(1, count)) == 1  # exactly one pulse went into the open electrode
    event = h.events("state", since)[-1]
    assert event["faults"] == ["no_load:1"] and "channel 1" in event["fault_msg"] and "electrode" in event["fault_msg"]


def test_no_load_latches_at_low_rates_too():
    h = Harness()
    stim(h, 0, {"mode": "acupuncture", "rate_hz": 1})
    running(h, amps=(8000,))
    h.fault("electrode_off:0")
    count = len(h.pulses)
    h.tick_until(lambda: h.state == "FAULT", limit=2 * TICKS_PER_S)
    assert len(h.pulses_on(0, count)) == 1 and h.pulses[-1][0] == h.device.ticks - 1


BOARD_LEAD_US = 5000  # rp2_pulse.LEAD_US (a board-only module): a window starts this long after its tick
# rates whose pulses land late in their window on some ticks (not a multiple of 10 ms)
LATE_PULSE_SETTINGS = (
    {"rate_hz": 66}, {"rate_hz": 40}, {"rate_hz": 9}, {"mode": "acupuncture", "rate_hz": 3},
    {"mode": "modulated", "rate_hz": 60, "mod_rate_pct": 50},
)


def _with_board_timing(fields, fault, amp_ua=8000):
    """A channel running `fields` with the board's pulse timing, `fault` injected; returns
    (harness, pulses into the fault before the outputs stopped)."""
    h = Harness(pulse_lead_us=BOARD_LEAD_US)
    stim(h, 0, fields)
    running(h, amps=(amp_ua,))
    h.tick(37)  # somewhere in the pattern of early and late pulses
    h.fault(fault)
    count = len(h.pulses)
    h.tick_until(lambda: h.state == "FAULT", limit=3 * TICKS_PER_S)
    return h, len(h.pulses_on(0, count))


def test_with_the_boards_pulse_timing_every_pulse_is_judged():
    # On the board a pulse fires LEAD_US + start_us after the tick that fed it: one late in its
    # window completes after the next tick's sense read. It must still be judged against what
    # was commanded, and a read between pulses must not break the row of over-limit pulses.
    for fields in LATE_PULSE_SETTINGS:
        h, pulses = _with_board_timing(fields, "electrode_off:0")
        assert h.faults == ["no_load:0"] and pulses == 1, (fields, h.faults, pulses)
        h, pulses = _with_board_timing(fields, "overcurrent:0")
        assert h.faults == ["overcurrent:0"] and pulses == limits.OVERCURRENT_PULSES, (fields, h.faults, pulses)


def test_with_the_boards_pulse_timing_a_healthy_load_never_trips():
    for fields in LATE_PULSE_SETTINGS + ({"rate_hz": 100}, {"mode": "burst"}):
        h = Harness(pulse_lead_us=BOARD_LEAD_US)
        stim(h, 0, fields)
        stim(h, 1, fields)
        running(h, amps=(8000, 30000))
        h.ok("set_amp", {"ch": 1, "amp_ua": 2500})  # ramping down between judged pulses
        h.tick(3 * TICKS_PER_S)
        assert h.state == "RUNNING" and h.faults == [], (fields, h.faults, h.device.supervisor.fault_msg)


def test_dead_band_never_trips_no_load():
    h = running(amps=(limits.SENSE_MIN_CHECK_UA - limits.AMP_STEP_UA, 1000))
    h.fault("electrode_off:0")
    h.fault("electrode_off:1")
    h.tick(5 * TICKS_PER_S)
    assert h.state == "RUNNING" and h.faults == []
    assert all(p[8] == 0 for p in h.pulses[-20:])  # nothing flows; too little commanded to judge


def test_overcurrent_latches_after_two_pulses():
    h = running(amps=(8000, 4000))
    h.fault("overcurrent:0")
    count = len(h.pulses)
    h.tick_until(lambda: h.state == "FAULT", limit=20)
    assert h.faults == ["overcurrent:0"]
    assert len(h.pulses_on(0, count)) == limits.OVERCURRENT_PULSES == 2
    assert "channel 0" in h.device.supervisor.fault_msg
    assert h.amps() == [0, 0]


def test_electrode_partial_limits_current_then_trips_no_load_when_far_below():
    # 40 kohm: a 100 V stage delivers about 2.4 mA; under a quarter of the command is "no load"
    h = running(amps=(5000,))
    h.fault("electrode_partial:0")
    h.tick(2 * TICKS_PER_S)
    assert h.state == "RUNNING" and h.faults == []
    delivered = h.pulses[-1][8]
    assert 2000 < delivered < 2600, delivered  # compliance-limited, well under the 5 mA commanded
    assert abs(h.request("status")["ch"][0]["delivered_ua"] - delivered) < 100
    h.request("set_amp", {"ch": 0, "amp_ua": 15000})
    h.tick_until(lambda: h.state == "FAULT", limit=10 * TICKS_PER_S)
    assert h.faults == ["no_load:0"]
    last = h.pulses[-1]
    assert last[8] * limits.NO_LOAD_RATIO_DIV < last[3] and last[3] < 4 * 2600 + h.ch(0).ramp_step_ua
    h.fault("electrode_partial:0", False)
    assert h.request("clear_fault")["ok"] is True


def test_clear_fault_refused_while_the_cause_is_present():
    h = running(amps=(5000,))
    h.fault("sense_adc_error")
    h.tick(2)
    assert h.faults == ["internal_error"]
    reply = h.request("clear_fault")
    assert reply["ok"] is False and reply["err"] == msg.E_BAD_STATE
    assert "cannot clear the fault yet" in reply["msg"] and "OSError" in reply["msg"], reply["msg"]
    assert h.state == "FAULT"
    h.tick(50)
    assert h.state == "FAULT"  # still latched
    h.fault("sense_adc_error", False)
    reply = h.request("clear_fault")
    assert reply["ok"] is True and reply["state"] == "IDLE"
    assert h.amps() == [0, 0] and [c.target_ua for c in h.device.channels] == [0, 0]


def test_clear_fault_refused_while_current_flows_with_the_output_off():
    h = running(amps=(5000,))
    h.fault("sense_adc_error")
    h.tick(2)
    h.fault("sense_adc_error", False)
    sense = h.board.sense
    read_ua = sense.read_ua
    sense.read_ua = lambda ch: 9000 if ch == 1 else read_ua(ch)  # a stage that keeps driving after off()
    reply = h.request("clear_fault")
    assert reply["ok"] is False and "channel 1" in reply["msg"] and "flows with the output off" in reply["msg"]
    sense.read_ua = read_ua
    assert h.request("clear_fault")["ok"] is True


def test_fault_during_pause_and_idle():
    h = running(amps=(5000,))
    h.request("pause")
    h.fault("sense_adc_error")
    h.tick(2)
    assert h.state == "FAULT"
    h.fault("sense_adc_error", False)
    h.request("clear_fault")
    assert h.state == "IDLE"


# ---- output at the minimum setting ----------------------------------------------------------


def test_minimum_output_is_at_most_two_percent_of_the_maximum():
    h = Harness()
    assert h.request("amp_step", {"ch": 0, "steps": 1})["target_ua"] == limits.AMP_STEP_UA
    h.request("start", {"lease_ms": 0, "ramp_ms": FAST})
    h.tick(TICKS_PER_S)
    since = len(h.pulses)
    h.tick(TICKS_PER_S)
    low = h.pulses_on(0, since)
    assert all(p[3] == limits.AMP_STEP_UA for p in low)
    top = h.ch(0).max_amp_ua
    assert top == limits.AMP_LIMIT_UA  # the default setting
    h.request("set_amp", {"ch": 0, "amp_ua": top})
    h.tick(ramp_ticks(top, FAST) + 1)
    since = len(h.pulses)
    h.tick(TICKS_PER_S)
    high = h.pulses_on(0, since)
    assert all(p[3] == top for p in high) and len(high) == len(low)
    low_rms = rms_ua(low, delivered=True)
    high_rms = rms_ua(high, delivered=True)
    assert low_rms > 0 and low_rms * 100 <= 2 * high_rms, (low_rms, high_rms)
    assert rms_ua(low) * 100 <= 2 * rms_ua(high)


def test_output_indicator_follows_the_iec_threshold():
    # IEC 60601-2-10: an output indicator above 10 mA r.m.s. (or 10 mJ per pulse into 1 kohm)
    h = running(amps=(60000, 45000))  # default setting: r.m.s. is a fifth of the peak: 12 and 9 mA
    status = h.request("status")
    assert status["ch"][0]["indicator"] is True and status["ch"][1]["indicator"] is False
    h.request("pause")
    assert h.request("status")["ch"][0]["indicator"] is False  # nothing flows
