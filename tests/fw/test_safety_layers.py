"""Layers docs/safety.md claims, each shown on the whole device (requests to a simulated device).

Rows covered (docs/safety.md, "Hazards"):

- "A pulse carries too much current, charge, energy or density": layer 1, `set_amp`,
  `amp_step` and `start` refused with error `envelope` naming the limit, the value and the
  limit, and nothing changes (target, amplitude, state, setting, pulses); layer 3, the
  per-pulse guard latching `envelope_breach:CH` for a pulse wider than the setting.
- "Overload": a read above 82 mA (the 80 mA limit + the 2 mA margin) latches
  `overcurrent:CH` at once and turns every output off, in RUNNING, while stopping, PAUSED,
  IDLE and with a fault already latched. The sense reading is made by the simulated board:
  the output stage's injected overshoot (sim/faults.py `overcurrent:CH`), or a sense read
  that reports what a stage driving on its own would put on the sense (as
  test_safety.test_clear_fault_refused_while_current_flows_with_the_output_off does).
- "The heater cannot heat" and "False trips stop therapy": the heat_slow / runaway / stuck_on
  / over_temp messages the host receives name the HeatConfig parameter(s) to change.

The harness checks the per-tick invariants throughout (tests/fw/invariants.py).
Portable: runs under CPython and in the MicroPython VM (tests/mp_runner.py).
"""

from firmware import envelope
from firmware import limits
from firmware.heat.config import HeatConfig
from firmware.protocols import messages as msg
from tests.fw.harness import Harness, ramp_ticks

FAST = limits.RAMP_MIN_MS
SECOND = 1000 // limits.TICK_MS  # ticks
HARD_LIMIT_UA = limits.AMP_LIMIT_UA + limits.OVERCURRENT_MARGIN_UA  # 82 mA

# the limits an `envelope` refusal may name, with their values (docs/safety.md, "The limits in force")
ENVELOPE_LIMITS = {
    "peak_current": (limits.AMP_LIMIT_UA, "uA"),
    "net_charge": (0, "nC"),
    "phase_charge": (limits.PHASE_CHARGE_LIMIT_NC, "nC"),
    "rms_current": (limits.RMS_LIMIT_UA, "uA"),
    "energy_per_pulse": (limits.ENERGY_LIMIT_UJ, "uJ"),
    "current_density": (limits.CURRENT_DENSITY_LIMIT_UA_CM2, "uA/cm2"),
    "power_density": (limits.POWER_DENSITY_LIMIT_UW_CM2, "uW/cm2"),
}

# a long phase at a high rate on small electrodes: the current density binds at 44.721 mA
LONG_FAST_SMALL = {"phase_us": 400, "rate_hz": 250, "area_cm2": 10}
# a long phase: the phase charge binds at 62.5 mA
LONG_PHASE = {"phase_us": 400}


def _figure(env, name):
    for check in env.limit_checks():
        if check[0] == name:
            return check[1]
    raise KeyError(name)


def assert_envelope_refusal(reply, setting, amp_ua, limit_name):
    """An `envelope` error whose message is "<limit> <value> <unit> exceeds the limit <limit> <unit>
    at <amp_ua> uA (...)": the limit named, the value over it (the figure the envelope computes for
    this setting at this amplitude) and the limit's value from firmware/limits.py."""
    assert reply["ok"] is False and reply["err"] == msg.E_ENVELOPE, reply
    words = reply["msg"].split(" ")
    assert words[0] == limit_name, reply["msg"]
    limit_value, unit = ENVELOPE_LIMITS[limit_name]
    assert words[2] == unit and words[7] == unit, reply["msg"]
    assert words[3:6] == ["exceeds", "the", "limit"] and words[8] == "at" and words[10] == "uA", reply["msg"]
    value = int(words[1])
    assert int(words[6]) == limit_value, reply["msg"]
    assert value > limit_value, reply["msg"]
    assert value == _figure(envelope.Envelope(setting, amp_ua), limit_name), reply["msg"]
    assert int(words[9]) == amp_ua, reply["msg"]


def snapshot(h):
    """What a refused request must leave as it was."""
    chans = []
    for c in h.device.channels:
        chans.append((c.target_ua, c.amp_ua, c.setting, c.max_amp_ua))
    return (h.state, list(h.faults), chans, h.device.supervisor.changes)


def set_stim(h, ch, fields):
    reply = h.request("set_stim", {"ch": ch, "stim": fields})
    assert reply["ok"] is True, reply
    return reply["max_amp_ua"]


def running_at(h, amps):
    h.ok("start", {"amp_ua": list(amps), "lease_ms": 0, "ramp_ms": FAST})
    top = 0
    for a in amps:
        if a > top:
            top = a
    h.tick(ramp_ticks(top, FAST) + 2)
    assert h.amps()[: len(amps)] == list(amps), h.amps()
    return h


# ---- row "A pulse carries too much current...": layer 1, the request is refused --------------


def test_set_amp_outside_the_envelope_is_refused_naming_the_limit_and_changes_nothing():
    h = Harness()
    top = set_stim(h, 0, LONG_FAST_SMALL)
    assert top == envelope.max_amp_ua(h.ch(0).setting) and top < limits.AMP_LIMIT_UA  # 44721 uA
    setting = h.ch(0).setting
    # IDLE: refused, the target stays where it was
    h.ok("set_amp", {"ch": 0, "amp_ua": 10000})
    before = snapshot(h)
    # the first limit broken is named: the current density just above the top, the phase charge at 80 mA
    for amp_ua, limit_name in ((top + 1, "current_density"), (62500, "current_density"), (62501, "phase_charge"),
                               (limits.AMP_LIMIT_UA, "phase_charge")):
        assert_envelope_refusal(h.request("set_amp", {"ch": 0, "amp_ua": amp_ua}), setting, amp_ua, limit_name)
        assert snapshot(h) == before
    # RUNNING: refused, the output goes on at its amplitude, uninterrupted
    running_at(h, (10000, 3000))
    before = snapshot(h)
    since = len(h.pulses)
    reply = h.request("set_amp", {"ch": 0, "amp_ua": top + 1})
    assert_envelope_refusal(reply, setting, top + 1, "current_density")
    h.tick(ramp_ticks(top, FAST))
    assert snapshot(h) == before and h.amps() == [10000, 3000]
    assert [p[3] for p in h.pulses_on(0, since)] == [10000] * len(h.pulses_on(0, since))
    assert len(h.pulses_on(0, since)) >= 2 * ramp_ticks(top, FAST)  # 250 Hz: it kept firing
    assert h.ok("set_amp", {"ch": 0, "amp_ua": top})["target_ua"] == top  # the boundary itself is allowed


def test_amp_step_outside_the_envelope_is_refused_naming_the_limit_and_changes_nothing():
    h = Harness()
    top = set_stim(h, 1, LONG_PHASE)
    assert top == 62500
    setting = h.ch(1).setting
    h.ok("set_amp", {"ch": 1, "amp_ua": 62000})
    running_at(h, (0, 62000))
    before = snapshot(h)
    since = len(h.pulses)
    for steps in (2, limits.AMP_STEPS_MAX):
        amp_ua = 62000 + steps * limits.AMP_STEP_UA
        if amp_ua > limits.AMP_LIMIT_UA:
            continue  # out_of_range, not the envelope: test_device.test_amp_step
        assert_envelope_refusal(h.request("amp_step", {"ch": 1, "steps": steps}), setting, amp_ua, "phase_charge")
        assert snapshot(h) == before
    h.tick(10)
    assert snapshot(h) == before and all(p[3] == 62000 for p in h.pulses_on(1, since))
    # in IDLE too
    h.ok("estop")
    h.ok("set_amp", {"ch": 1, "amp_ua": 62500})
    before = snapshot(h)
    assert_envelope_refusal(h.request("amp_step", {"ch": 1, "steps": 1}), setting, 63000, "phase_charge")
    assert snapshot(h) == before
    assert h.ok("amp_step", {"ch": 1, "steps": -1})["target_ua"] == 62000  # down is allowed


def test_start_outside_the_envelope_is_refused_naming_the_limit_and_starts_nothing():
    h = Harness()
    top = set_stim(h, 1, LONG_FAST_SMALL)
    setting = h.ch(1).setting
    h.ok("set_amp", {"ch": 0, "amp_ua": 1000})
    h.ok("set_amp", {"ch": 1, "amp_ua": 2000})
    before = snapshot(h)
    events = len(h.events("state"))
    # one channel over its envelope: the whole start is refused, the other channel's value too
    for amps in ([5000, top + 1], [5000, 60000], [limits.AMP_LIMIT_UA - 1, top + 1]):
        reply = h.request("start", {"amp_ua": amps, "lease_ms": 0, "ramp_ms": FAST})
        assert_envelope_refusal(reply, setting, amps[1], "current_density")
        h.tick(20)
        assert snapshot(h) == before, amps
        assert h.pulses == [] and h.board.pulse_out.last_commanded_ua == [0, 0]
    assert len(h.events("state")) == events  # no state change was announced
    h.ok("start", {"amp_ua": [5000, top], "lease_ms": 0, "ramp_ms": FAST})  # the boundary starts


def test_set_stim_that_would_put_the_target_outside_its_envelope_is_refused_and_changes_nothing():
    h = running_at(Harness(), (50000,))
    before = snapshot(h)
    reply = h.request("set_stim", {"ch": 0, "stim": LONG_FAST_SMALL})
    assert_envelope_refusal(reply, envelope.parse_setting(LONG_FAST_SMALL), 50000, "current_density")
    h.tick(5)
    assert snapshot(h) == before and h.amps() == [50000, 0]


# ---- row "A pulse carries too much current...": layer 3, the per-pulse guard -----------------


def test_a_pulse_wider_than_the_setting_latches_envelope_breach_and_fires_nothing():
    """The engine's last guard: a pulse whose phase came out wider than the setting (a
    modulation bug, here made by patching the channel's modulation step) is never fired."""
    h = running_at(Harness(), (0, 6000))
    channel = h.ch(1)
    modulate = channel._modulate

    def wider():
        modulate()
        channel.phase_us = channel.setting.phase_us + 1

    channel._modulate = wider
    since = len(h.pulses)
    h.tick()
    assert h.state == "FAULT" and h.faults == ["envelope_breach:1"], h.faults
    assert "channel 1" in h.device.supervisor.fault_msg and "envelope" in h.device.supervisor.fault_msg
    assert h.pulses_on(1, since) == [] and h.amps() == [0, 0]
    assert h.board.pulse_out.last_commanded_ua == [0, 0]
    h.tick(20)
    assert h.pulses[since:] == []


# ---- row "Overload": above 82 mA at once, in any state ---------------------------------------


def sense_reads(h, ch, value_ua=None, extra_ua=0):
    """The board's output sense on channel ch reads value_ua (a stage driving on its own, with no
    pulse commanded) or what it really reads plus extra_ua (a stage delivering more than asked).
    Returns a function that puts the real sense back."""
    sense = h.board.sense
    real = sense.read_ua

    def read_ua(i):
        got = real(i)
        if i != ch:
            return got
        if value_ua is not None:
            return value_ua
        return got + extra_ua

    sense.read_ua = read_ua

    def restore():
        sense.read_ua = real

    return restore


def assert_overload_latched(h, ch, delivered_ua=None, also=()):
    """overcurrent:CH latched by the hard limit, every output off, and off it stays."""
    assert h.state == "FAULT", (h.state, h.faults)
    assert list(also) + ["overcurrent:%d" % ch] == h.faults, h.faults
    text = h.device.supervisor.latest_msg
    assert ("channel %d: " % ch) in text and "above the hard limit %d uA" % limits.AMP_LIMIT_UA in text, text
    if delivered_ua is not None:
        assert text.startswith("channel %d: %d uA delivered" % (ch, delivered_ua)), text
    assert h.amps() == [0, 0] and [c.target_ua for c in h.device.channels] == [0, 0]
    assert h.board.pulse_out.last_commanded_ua == [0, 0]
    assert h.device.stopping is False
    since = len(h.pulses)
    h.tick(20)
    assert h.pulses[since:] == [] and h.state == "FAULT"
    event = h.events("state")[-1]
    assert event["state"] == "FAULT" and event["faults"] == h.faults


def test_over_82_ma_latches_at_once_while_running_even_within_the_per_pulse_margin():
    """80 mA commanded, 85 mA delivered: inside the two-pulse rule's margin (80 + 1/8 = 90 mA),
    so only the 82 mA hard limit can catch it, and it does on the first read."""
    h = Harness()
    set_stim(h, 0, {"phase_us": 50})  # short pulses: 80 mA flows in full, below the stage's compliance
    running_at(h, (limits.AMP_LIMIT_UA,))
    assert h.state == "RUNNING" and h.faults == []
    assert h.pulses[-1][8] == limits.AMP_LIMIT_UA and not h.board.pulse_out.last_at_compliance[0]
    sense_reads(h, 0, extra_ua=5000)
    h.tick()
    assert_overload_latched(h, 0)


def test_over_82_ma_latches_on_the_first_pulse_while_running():
    h = Harness()
    set_stim(h, 0, {"phase_us": 50})  # short pulses: the stage's 100 V drive 106 mA into the load
    running_at(h, (60000, 5000))
    h.fault("overcurrent:0")  # the stage delivers 1.5 x 60 mA + 5 mA = 95 mA
    since = len(h.pulses)
    h.tick_until(lambda: h.state == "FAULT", 5)
    assert len(h.pulses_on(0, since)) == 1  # one pulse: not the two-pulse rule
    assert h.pulses_on(0, since)[0][8] > HARD_LIMIT_UA
    assert_overload_latched(h, 0)


def test_over_82_ma_latches_at_once_while_stopping():
    h = Harness()
    set_stim(h, 1, {"phase_us": 50})
    running_at(h, (0, 60000))
    h.ok("stop")
    h.tick(3)
    assert h.state == "RUNNING" and h.device.stopping and 0 < h.amps()[1] < 60000
    h.fault("overcurrent:1")
    since = len(h.pulses)
    h.tick_until(lambda: h.state == "FAULT", 5)
    assert len(h.pulses_on(1, since)) == 1 and h.pulses_on(1, since)[0][8] > HARD_LIMIT_UA
    assert_overload_latched(h, 1)
    assert h.device.supervisor.reason == "overcurrent:1"  # the fault, not the stop, ended the session


def test_over_82_ma_latches_at_once_while_paused():
    h = running_at(Harness(), (8000, 8000))
    h.ok("pause")
    h.tick(5)
    assert h.state == "PAUSED"
    restore = sense_reads(h, 1, value_ua=90000)  # current flows while nothing is commanded
    h.tick()
    assert_overload_latched(h, 1, 90000)
    restore()
    h.ok("clear_fault")
    assert h.state == "IDLE"


def test_over_82_ma_latches_at_once_while_idle_and_82_ma_itself_does_not():
    h = Harness()
    h.tick(5)
    restore = sense_reads(h, 0, value_ua=HARD_LIMIT_UA)
    h.tick(50)
    assert h.state == "IDLE" and h.faults == []  # the limit itself is not above it
    restore()
    sense_reads(h, 0, value_ua=HARD_LIMIT_UA + 1)
    h.tick()
    assert_overload_latched(h, 0, HARD_LIMIT_UA + 1)


def test_over_82_ma_is_added_while_another_fault_is_latched():
    h = running_at(Harness(), (5000,))
    h.fault("electrode_off:0")
    h.tick_until(lambda: h.state == "FAULT", 10)
    assert h.faults == ["no_load:0"]
    h.fault("electrode_off:0", False)
    changes = h.device.supervisor.changes
    sense_reads(h, 1, value_ua=95000)
    h.tick()
    assert h.device.supervisor.changes > changes  # announced: a further fault is a change
    assert_overload_latched(h, 1, 95000, also=("no_load:0",))


# ---- rows "The heater cannot heat" and "False trips": the message names the parameter ----------

# Each protection message of firmware/heat/protect.py, told apart by a phrase of its own, and the
# HeatConfig parameters it must name (the ones to change when a slow pad is healthy).
HEAT_MESSAGES = (
    ("heat_slow", "gained less than", ("heating_gain_mc", "check_gain_ms", "gain_near_mc")),
    ("heat_slow", "heat-up error integral", ("max_error_mc_s",)),
    ("heat_slow", "of full-power heating", ("rise_permille", "rise_ref_mc", "rise_check_ms")),
    ("heat_slow", "more than a pad cools", ("fall_rate_mc_s", "fall_mc")),
    ("runaway", "more than a pad cools", ("fall_rate_mc_s", "fall_mc")),
    ("runaway", "permille duty, limit", ("runaway_hyst_mc", "runaway_ms")),
    ("runaway", ": error integral", ("runaway_hyst_mc", "runaway_error_mc_s")),
    ("stuck_on", "with the heater off", ("stuck_rise_mc", "stuck_floor_mc")),
    ("over_temp", "at or above the cutoff", ("over_temp_mc",)),
)


def assert_names_its_parameters(fault, text, phrase):
    """text is the fault's message as the host gets it; it is the variant `phrase` picks and names
    every parameter of that variant, each a real HeatConfig parameter."""
    config = HeatConfig()
    for entry in HEAT_MESSAGES:
        if entry[0] == fault and entry[1] == phrase:
            assert phrase in text, (fault, phrase, text)
            for name in entry[2]:
                assert hasattr(config, name), name
                assert name in text, (fault, name, text)
            return
    raise AssertionError("no such message variant: %s %r" % (fault, phrase))


def heat_session(level="high", settle=False):
    h = Harness()
    if settle:
        h.board.plant.settle()  # a pad at rest on the back (about 31.4 C)
    h.ok("start", {"amp_ua": [0], "lease_ms": 0, "ramp_ms": FAST})
    h.ok("heat", {"level": level})
    return h


def holding(h):
    h.tick_until(lambda: h.device.heat.state == "holding", 1200 * SECOND)
    h.tick(30 * SECOND)
    assert h.state == "RUNNING" and h.device.heat.state == "holding", h.faults
    return h


def heat_fault(h, fault, limit_s):
    """Tick until the fault latches; returns the whole messages the host got: the state event's
    and the heat event's."""
    h.tick_until(lambda: h.state == "FAULT", limit_s * SECOND)
    assert h.faults == [fault], h.faults
    state = [e for e in h.events("state") if e["state"] == "FAULT"][-1]
    heat = h.events("heat")[-1]
    assert heat["fault"] == fault and state["faults"] == [fault]
    assert not h.device.heat.heater.on()
    return state["fault_msg"], heat["fault_msg"]


def check_messages(messages, fault, phrase):
    for text in messages:
        assert_names_its_parameters(fault, text, phrase)


def test_an_open_heater_while_holding_is_a_runaway_naming_its_parameters():
    h = holding(heat_session())
    h.fault("heater_open")
    check_messages(heat_fault(h, "runaway", 120), "runaway", "permille duty, limit")


def test_an_open_heater_while_holding_past_the_band_integral_names_its_parameter():
    h = holding(heat_session())
    h.device.heat.config.runaway_ms = 600000  # the time watch later: the error integral alone
    h.fault("heater_open")
    check_messages(heat_fault(h, "runaway", 300), "runaway", ": error integral")


def test_an_open_heater_from_a_cool_start_is_heat_slow_naming_its_parameter():
    h = heat_session()
    h.fault("heater_open")
    check_messages(heat_fault(h, "heat_slow", 400), "heat_slow", "heat-up error integral")


def test_an_open_heater_on_a_pad_at_rest_is_heat_slow_by_the_gain_watch_naming_its_parameters():
    h = heat_session(settle=True)
    h.fault("heater_open")
    check_messages(heat_fault(h, "heat_slow", 120), "heat_slow", "gained less than")


def test_a_detached_sensor_at_the_start_is_heat_slow_naming_its_parameters():
    h = heat_session()
    h.fault("thermistor_detached")
    check_messages(heat_fault(h, "heat_slow", 60), "heat_slow", "of full-power heating")


def test_a_sensor_falling_away_while_heating_up_is_heat_slow_naming_its_parameters():
    h = heat_session()
    h.tick_until(lambda: h.device.heat.reading_mc() is not None and h.device.heat.reading_mc() > 34000, 600 * SECOND)
    h.fault("thermistor_detached")
    check_messages(heat_fault(h, "heat_slow", 30), "heat_slow", "more than a pad cools")


def test_a_sensor_falling_away_while_holding_is_a_runaway_naming_its_parameters():
    h = holding(heat_session())
    h.fault("thermistor_detached")
    check_messages(heat_fault(h, "runaway", 30), "runaway", "more than a pad cools")


def test_a_stuck_heater_is_stuck_on_naming_its_parameters():
    h = Harness()
    h.board.plant.settle()
    h.ok("start", {"amp_ua": [0], "lease_ms": 0, "ramp_ms": FAST})
    h.tick(20 * SECOND)
    h.fault("heater_stuck_on")
    check_messages(heat_fault(h, "stuck_on", 300), "stuck_on", "with the heater off")


def test_a_pad_at_the_cutoff_is_over_temp_naming_its_parameter():
    h = holding(heat_session())
    h.device.heat.config.stuck_rise_mc = 10000  # the stuck_on watch later: the cutoff first
    h.fault("heater_stuck_on")
    check_messages(heat_fault(h, "over_temp", 600), "over_temp", "at or above the cutoff")
