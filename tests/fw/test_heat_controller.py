"""firmware.heat.heat.HeatController: the device-facing interface, caps, timer, interlock, no false trips."""

from firmware.clock import TICKS_MAX
from firmware.heat.config import HeatConfig
from firmware.heat.heat import HeatController
from firmware.protocols import messages
from tests.fw.heat_fakes import FakeHeater, FakeThermistor, Plant, Rig
from tests.fw.portable import raises


def test_defaults_and_status_fields():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.tick()
    st = rig.heat.status()
    for key in (
        "state", "reason", "level", "target_mc", "measured_mc", "duty_permille", "heater_duty_pct",
        "heater_on", "allowed", "phase", "cem43_ms", "cem43_cap_ms", "time_left_ms", "fault",
    ):
        assert key in st, key
    assert st["state"] == "off" and st["level"] == "medium" and st["target_mc"] == 40000
    assert abs(st["measured_mc"] - 25000) < 50
    assert st["duty_permille"] == 0 and st["heater_duty_pct"] == 0 and st["heater_on"] is False
    assert st["time_left_ms"] == 0 and st["fault"] is None and st["allowed"] is True
    for key in st:
        value = st[key]
        assert value is None or isinstance(value, (int, str, bool)), key  # no floats on the wire


def test_no_reading_no_measurement():
    heat = HeatController(FakeHeater(), FakeThermistor())
    assert heat.status()["measured_mc"] is None


def test_levels():
    rig = Rig()
    for name, mc in (("low", 38000), ("medium", 40000), ("high", 42000)):
        rig.heat.set_level(name)
        assert rig.heat.target_mc == mc and rig.heat.level == name
    err = raises(messages.RequestError, rig.heat.set_level, "max")
    assert err.code == messages.E_BAD_FIELD and "low, medium, high" in err.message


def test_target_cap_enforced():
    rig = Rig()
    rig.heat.set_target_mc(43000)
    assert rig.heat.target_mc == 43000 and rig.heat.level is None
    err = raises(messages.RequestError, rig.heat.set_target_mc, 43001)
    assert err.code == messages.E_OUT_OF_RANGE
    assert "43001" in err.message and "43000" in err.message and "max_target_mc" in err.message
    assert rig.heat.target_mc == 43000  # unchanged
    err = raises(messages.RequestError, rig.heat.set_target_mc, 29999)
    assert err.code == messages.E_OUT_OF_RANGE and "min_target_mc" in err.message
    err = raises(messages.RequestError, rig.heat.set_target_mc, 41000.5)
    assert err.code == messages.E_BAD_FIELD


def test_a_lower_configured_cap_applies_to_levels_too():
    config = HeatConfig()
    config.max_target_mc = 41000
    rig = Rig(config=config)
    err = raises(messages.RequestError, rig.heat.set_level, "high")
    assert err.code == messages.E_OUT_OF_RANGE and "41000" in err.message and "max_target_mc" in err.message
    rig.heat.set_level("medium")


def test_config_cannot_exceed_43_c():
    config = HeatConfig()
    config.max_target_mc = 44000
    err = raises(ValueError, HeatController, FakeHeater(), FakeThermistor(), config)
    assert "max_target_mc" in str(err) and "43000" in str(err)
    config = HeatConfig()
    config.auto_off_max_ms = 121 * 60000
    assert "auto_off_max_ms" in str(raises(ValueError, config.validate))
    config = HeatConfig()
    config.over_temp_mc = 43500
    assert "over_temp_mc" in str(raises(ValueError, config.validate))


def test_heat_up_then_hold_states_and_duty():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    assert rig.heat.state == "heating"
    rig.tick(2)
    st = rig.heat.status()
    assert st["duty_permille"] == 1000 and st["heater_duty_pct"] == 100 and st["phase"] == "approach"
    assert rig.until(lambda: rig.heat.state == "holding", 100 * 600)
    assert rig.seconds(600) is None
    st = rig.heat.status()
    assert st["state"] == "holding" and st["phase"] == "hold"
    assert abs(st["measured_mc"] - 42000) < 150
    assert 0 < st["duty_permille"] < 1000
    assert st["heater_duty_pct"] == st["duty_permille"] // 10


def test_lease_every_heating_tick_never_longer_than_stated():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    lease_ms = rig.heat.config.lease_ms
    for _ in range(100 * 400):
        before = rig.heater.leases
        assert rig.tick() is None
        assert rig.heater.calls_this_tick == 1  # a lease or an off, on every tick
        if rig.heater.leases != before:
            assert rig.heater.last_lease_ms == lease_ms
    assert rig.heater.max_lease_ms == lease_ms <= 50
    assert rig.heater.leases > 1000


def test_off_states_call_off_every_tick():
    rig = Rig(plant=Plant(start_mc=25000))
    for _ in range(300):
        rig.tick()
        assert rig.heater.calls_this_tick == 1 and not rig.heater.leased


def test_stop_turns_the_heater_off_at_once():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.heat.start(rig.now)
    rig.seconds(5)
    assert rig.heater.leased
    rig.heat.stop()
    assert not rig.heater.leased and rig.heat.state == "off" and rig.heat.reason == "stop"
    rig.heat.stop()  # idempotent
    assert rig.heat.fault is None


def test_auto_off_timer():
    rig = Rig(plant=Plant(start_mc=35000))
    rig.heat.start(rig.now, 60000)
    rig.tick(100)
    left = rig.heat.status()["time_left_ms"]
    assert 58900 <= left <= 59000
    assert rig.seconds(58) is None and rig.heat.state != "off"
    assert rig.seconds(2) is None
    assert rig.heat.state == "off" and rig.heat.reason == "timer" and rig.heat.fault is None
    assert not rig.heater.leased


def test_default_and_maximum_session_length():
    rig = Rig()
    rig.heat.start(rig.now)
    assert rig.heat.duration_ms == 30 * 60000
    rig.heat.stop()
    rig.heat.start(rig.now, 120 * 60000)
    rig.heat.stop()
    err = raises(messages.RequestError, rig.heat.start, rig.now, 120 * 60000 + 1)
    assert err.code == messages.E_OUT_OF_RANGE and "auto_off_max_ms" in err.message
    rig.heat.start(rig.now)
    err = raises(messages.RequestError, rig.heat.start, rig.now)
    assert err.code == messages.E_BAD_STATE


def test_interlock_holds_heat_off_without_a_fault():
    rig = Rig(plant=Plant(start_mc=30000))
    rig.heat.set_level("medium")
    rig.heat.start(rig.now)
    assert rig.seconds(300) is None
    rig.heat.set_allowed(False)
    assert not rig.heater.leased  # off at once
    for _ in range(100 * 300):
        assert rig.tick() is None
        assert not rig.heater.leased
    st = rig.heat.status()
    assert st["allowed"] is False and st["fault"] is None and st["duty_permille"] == 0
    rig.heat.set_allowed(True)
    assert rig.seconds(600) is None
    assert abs(rig.heat.pad.value_mc - 40000) < 150


def test_target_change_while_heating():
    rig = Rig(plant=Plant(start_mc=30000))
    rig.heat.set_level("low")
    rig.heat.start(rig.now)
    assert rig.seconds(400) is None and rig.heat.state == "holding"
    rig.heat.set_target_mc(43000)
    assert rig.heat.state == "holding"
    rig.tick()
    assert rig.heat.state == "heating"  # 5 C below the new target: approaching again
    assert rig.seconds(600) is None
    assert abs(rig.heat.pad.value_mc - 43000) < 150
    rig.heat.set_level("low")
    assert rig.seconds(600) is None
    assert abs(rig.heat.pad.value_mc - 38000) < 150


def test_no_false_trip_normal_sessions_across_plants():
    # the fake plant family: tau and full-power rise +-30 %, ambient 18..26 C, every level
    cases = (
        (84000, 24500, 18000, "high"),
        (84000, 45500, 26000, "low"),
        (156000, 24500, 22000, "high"),
        (156000, 45500, 18000, "medium"),
        (120000, 35000, 22000, "high"),
        (84000, 24500, 26000, "medium"),
        (156000, 45500, 26000, "high"),
        (156000, 24500, 18000, "low"),
    )
    for tau, gain, ambient, level in cases:
        plant = Plant(ambient_mc=ambient, gain_mc=gain, tau_ms=tau, start_mc=ambient)
        rig = Rig(plant=plant)
        rig.heat.set_level(level)
        rig.heat.start(rig.now)
        found = rig.seconds(12 * 60)
        assert found is None, (tau, gain, ambient, level, rig.heat.fault_msg)
        target = rig.heat.target_mc
        assert abs(rig.heat.pad.value_mc - target) < 200, (tau, gain, level, rig.heat.pad.value_mc)
        assert rig.max_pad_mc < target + 500, (tau, gain, level, rig.max_pad_mc)


def test_runs_across_the_tick_wrap():
    rig = Rig(plant=Plant(start_mc=30000), start_ms=TICKS_MAX - 100 * 120)
    rig.heat.set_level("medium")
    rig.heat.start(rig.now, 5 * 60000)
    assert rig.seconds(240) is None  # crosses 2^30 after two minutes
    assert rig.now < 1000000
    assert rig.heat.state == "holding"
    assert rig.seconds(70) is None
    assert rig.heat.state == "off" and rig.heat.reason == "timer"


def test_clear_fault_returns_to_off_and_allows_a_new_start():
    rig = Rig(plant=Plant(start_mc=30000))
    rig.heat.start(rig.now)
    rig.tick(10)
    rig.therm.code = 65535
    assert rig.tick(10) == "sensor_open"
    assert rig.heat.clear_fault()  # the cause is checked again by the next readings
    rig.therm.code = None
    rig.fault = None
    assert rig.heat.state == "off" and rig.heat.fault is None
    rig.heat.start(rig.now)
    assert rig.seconds(30) is None


def test_tick_allocates_nothing_on_micropython():
    try:
        import micropython
    except ImportError:
        return  # CPython: nothing to check
    rig = Rig(plant=Plant(start_mc=30000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    rig.tick(10)
    micropython.heap_lock()
    try:
        found = rig.tick(100 * 400)  # heat-up, braking, holding: every branch of the hot path
    finally:
        micropython.heap_unlock()
    assert found is None
    assert rig.heat.state == "holding"


def test_a_latched_sensor_fault_allocates_nothing_while_the_sensor_stays_broken():
    # a fault can stand for minutes before someone reads it; the tick must not fill the heap meanwhile
    try:
        import micropython
    except ImportError:
        micropython = None
    for code, fault in ((65535, "sensor_open"), (3, "sensor_short"), ("jump", "sensor_jump")):
        rig = Rig(plant=Plant(start_mc=30000))
        rig.heat.start(rig.now)
        rig.tick(100)
        rig.therm.code = rig.therm.read_raw() - 9000 if code == "jump" else code  # 9000 codes: about 16 C
        assert rig.tick(20) == fault, rig.heat.fault_msg
        message = rig.heat.fault_msg
        if micropython is not None:
            micropython.heap_lock()
        try:
            found = rig.tick(500)
        finally:
            if micropython is not None:
                micropython.heap_unlock()
        assert found is None and rig.heat.state == "fault" and rig.heat.fault == fault
        assert rig.heat.fault_msg == message and rig.heater.on_at(rig.now) is False
        if code == "jump":  # refused while the step stands (the stepped reading is not the truth)
            assert raises(messages.RequestError, rig.heat.clear_fault).code == messages.E_BAD_STATE
            continue
        assert rig.heat.clear_fault()
        rig.heat.start(rig.now)
        assert rig.tick(20) == fault  # still open or shorted: the next readings find it again


def test_tick_allocates_nothing_from_a_cold_start_on_micropython():
    # below rise_ref_mc the fast heat-up watch computes its expectation every window slot
    try:
        import micropython
    except ImportError:
        return  # CPython: nothing to check
    rig = Rig(plant=Plant(start_mc=22000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    rig.tick(10)
    micropython.heap_lock()
    try:
        found = rig.tick(100 * 60)  # three windows of the fast watch, all below 29 C at first
    finally:
        micropython.heap_unlock()
    assert found is None
    assert rig.heat.state == "heating" and rig.heat.pad.value_mc > 29000


def test_a_jump_fault_cannot_be_cleared_while_the_step_stands():
    # a connector that adds 8 C of error at once latches sensor_jump; a clear then would take
    # the stepped reading as the truth and hold the true pad 8 C above its target
    from firmware.heat import thermistor

    rig = Rig(plant=Plant(start_mc=30000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    assert rig.seconds(600) is None, rig.heat.fault_msg
    held_mc = rig.heat.pad.value_mc
    rig.therm.code = thermistor.mc_to_code(held_mc - 8000)
    assert rig.seconds(5) == "sensor_jump"
    rig.tick(100)
    err = raises(messages.RequestError, rig.heat.clear_fault)
    assert err.code == messages.E_BAD_STATE and "jump_limit_mc" in err.message, err.message
    assert rig.heat.state == "fault"
    rig.therm.code = None  # the connector repaired: the reading is back near its last good value
    rig.tick(10)
    assert rig.heat.clear_fault() and rig.heat.state == "off"
