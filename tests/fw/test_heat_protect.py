"""firmware.heat.protect (and the controller's other faults): each named fault, its message, its latency.

Every fault must leave the heater off at once and stay latched; every message
names the sensor, the value and the limit (and the parameter for tunable ones).
"""

from firmware.heat import faults as F
from firmware.heat import thermistor as th
from firmware.heat.config import HeatConfig
from firmware.heat.protect import APPROACH, HOLD, Protector
from firmware.protocols import messages
from tests.fw.heat_fakes import Plant, Rig
from tests.fw.portable import raises


def _holding_rig(level="high", config=None, side=False):
    rig = Rig(config=config, plant=Plant(start_mc=30000), side=side)
    rig.heat.set_level(level)
    rig.heat.start(rig.now)
    assert rig.seconds(600) is None, rig.heat.fault_msg
    assert rig.heat.state == "holding"
    return rig


def _assert_latched_off(rig, name):
    heat = rig.heat
    assert rig.fault == name and heat.fault == name and heat.state == "fault"
    assert not rig.heater.leased
    offs = rig.heater.offs
    leases = rig.heater.leases
    for _ in range(200):
        rig.heater.now = rig.now
        assert heat.tick(rig.now) is None  # reported once, stays latched
        rig.now += 10
    assert rig.heater.leases == leases and rig.heater.offs >= offs + 200
    err = raises(messages.RequestError, heat.start, rig.now)
    assert err.code == messages.E_BAD_STATE and name in err.message


def test_over_temp_latches_at_the_cutoff():
    rig = _holding_rig()
    rig.plant.stuck_on = True
    rig.heat.config.stuck_rise_mc = 10000  # let it run to the cutoff (stuck_on would be first)
    rig.heat.protect._c.stuck_rise_mc = 10000
    assert rig.seconds(600) == F.F_OVER_TEMP
    msg = rig.heat.fault_msg
    assert "pad sensor" in msg and "45.00 C" in msg and "over_temp_mc" in msg
    assert 45000 <= rig.heat.pad.value_mc < 45100  # caught on the first reading at the cutoff
    _assert_latched_off(rig, F.F_OVER_TEMP)
    err = raises(messages.RequestError, rig.heat.clear_fault)
    assert "45.00 C" in err.message  # cannot clear while still over the cutoff
    rig.plant.stuck_on = False
    assert rig.until(lambda: rig.heat.pad.value_mc < 44000, 100 * 900)
    assert rig.heat.clear_fault() and rig.heat.state == "off"


def test_heat_slow_when_the_heater_is_open():
    config = HeatConfig()
    config.rise_permille = 0  # the fast watch would see the cooling pad pass 29 C: the gain watch alone
    rig = Rig(config=config, plant=Plant(start_mc=34500))  # 6.5 C below the band (41 C): the gain watch
    rig.plant.heater_open = True
    rig.heat.set_target_mc(43000)
    rig.heat.start(rig.now)
    t0 = rig.now
    found = rig.seconds(300)
    assert found == F.F_HEAT_SLOW
    elapsed = rig.now - t0
    assert config.check_gain_ms <= elapsed <= config.check_gain_ms + 100, elapsed
    msg = rig.heat.fault_msg
    assert "pad sensor" in msg and "heating_gain_mc" in msg and "check_gain_ms" in msg and "0.50 C" in msg
    assert "gain_near_mc" in msg and "6.00 C" in msg
    _assert_latched_off(rig, F.F_HEAT_SLOW)


def test_heat_slow_when_the_sensor_is_detached_at_the_start():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.therm.detached = True  # reads the room, whatever the pad does
    rig.therm.mc = 22000
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    t0 = rig.now
    assert rig.seconds(120) == F.F_HEAT_SLOW
    assert rig.now - t0 <= rig.heat.config.rise_check_ms + 100  # the fast heat-up watch: one window
    assert "rise_permille" in rig.heat.fault_msg
    assert rig.max_pad_mc < 31000  # the real pad barely warmed


def test_heat_up_error_integral():
    config = HeatConfig()
    config.rise_permille = 0  # the fast heat-up watch off: the integral alone
    p = Protector(config)
    p.restart(40000, 25000)
    assert p.phase == APPROACH
    # duty below "high": the gain watch does not count, the integral does.
    # 13 C below the band (38 C) -> 600 C.s after 46.15 s.
    n = 0
    found = None
    while found is None and n < 10000:
        found = p.check(True, 40000, 25000, 500, 10)
        n += 1
    assert found == F.F_HEAT_SLOW
    assert n == (600000 * 1000 + 13000 * 10 - 1) // (13000 * 10)
    assert "max_error_mc_s" in p.fault_msg and "600 C.s" in p.fault_msg and "38.00 C" in p.fault_msg


def test_progress_resets_the_heat_up_watch():
    config = HeatConfig()
    p = Protector(config)
    p.restart(42000, 30000)
    m = 30000
    for _ in range(100 * 200):  # 200 s at full duty, gaining 0.5 C every 50 s
        m += 1 if _ % 10 == 0 else 0
        assert p.check(True, 42000, m, 1000, 10) is None


def _run(p, target, readings, duty=1000, dt=10):
    """Feed check() one reading per tick; returns (found, ticks) at the first fault."""
    n = 0
    for m in readings:
        n += 1
        found = p.check(True, target, m, duty, dt)
        if found is not None:
            return found, n
    return None, n


def _flat(value, ticks):
    for _ in range(ticks):
        yield value


def _ramp(start, mc, ticks, per=1):
    """start, then mc more every `per` ticks."""
    for i in range(ticks):
        yield start + i * mc // per


def test_fast_rise_watch_catches_a_flat_reading_after_one_window():
    config = HeatConfig()
    p = Protector(config)
    p.restart(42000, 22000)
    found, n = _run(p, 42000, _flat(22000, 100 * 60))
    assert found == F.F_HEAT_SLOW
    assert n * 10 == config.rise_check_ms  # the first full window, to the tick
    msg = p.fault_msg
    # 7 C below rise_ref_mc (29 C) x 36 permille = 0.25 C expected
    assert "pad sensor" in msg and "22.00 C" in msg and "0.25 C" in msg and "rise_permille" in msg
    assert "rise_ref_mc" in msg and "29.00 C" in msg and "rise_check_ms" in msg and "18.0 s" in msg


def test_fast_rise_watch_needs_rise_in_proportion_to_the_distance_below_its_reference():
    config = HeatConfig()
    p = Protector(config)
    p.restart(42000, 22000)
    # from 22 C: 0.25 C per 18 s expected; 0.36 C per 18 s (1 mC every 5 ticks) passes for minutes
    found, n = _run(p, 42000, _ramp(22000, 1, 100 * 300, 5))
    assert found is None, p.fault_msg
    p = Protector(config)  # a new heat-up (a restart would carry this one's evidence)
    p.restart(42000, 22000)
    found, n = _run(p, 42000, _ramp(22000, 1, 100 * 60, 100))  # 0.18 C per 18 s: too slow
    assert found == F.F_HEAT_SLOW and n * 10 == config.rise_check_ms
    p = Protector(config)
    p.restart(42000, 30000)  # above rise_ref_mc: the fast watch asks nothing (the gain watch does)
    found, n = _run(p, 42000, _flat(30000, 100 * 50))
    assert found is None


def test_fast_rise_watch_counts_full_power_equivalent_heating():
    config = HeatConfig()
    config.max_error_mc_s = 1000000  # the error integral would fire first at half power
    p = Protector(config)
    p.restart(42000, 22000)
    found, n = _run(p, 42000, _flat(22000, 100 * 60), duty=500)
    assert found == F.F_HEAT_SLOW and n * 10 == 2 * config.rise_check_ms  # half power: twice the time
    p = Protector(config)
    p.restart(42000, 22000)
    found, n = _run(p, 42000, _flat(22000, 100 * 50), duty=0)
    assert found is None  # no heat, no expectation


def test_fast_rise_watch_slides_a_fall_inside_a_window_is_caught_one_window_later():
    # rising nicely, then the bead comes off: the reading falls back 1 C (slowly, below the
    # fall watch) and stays; the sliding window's low moves to the fallen reading
    config = HeatConfig()
    p = Protector(config)
    p.restart(42000, 22000)
    found, n = _run(p, 42000, _ramp(22000, 2, 100 * 15))  # +3 C in 15 s
    assert found is None
    found, n = _run(p, 42000, _ramp(25000, -1, 100 * 10))  # -1 C in 10 s (0.1 C/s)
    assert found is None
    found, n = _run(p, 42000, _flat(24000, 100 * 30))
    assert found == F.F_HEAT_SLOW
    assert n * 10 <= config.rise_check_ms + config.rise_check_ms // 16 + 10, n


def test_fall_watch_fault_name_by_phase_and_duty():
    config = HeatConfig()
    # 0.12 C/s at full power: a fast-cooling pad (the family's fastest is slower), never a fault
    p = Protector(config)
    p.restart(42000, 35000)
    found, n = _run(p, 42000, _ramp(35000, -12, 100 * 30, 10))
    assert found is None
    # 0.5 C/s at full power: 0.35 C/s beyond the 0.15 C/s allowance, 0.5 C after 1.43 s
    p = Protector(config)
    p.restart(42000, 35000)
    found, n = _run(p, 42000, _ramp(35000, -5, 100 * 20))
    assert found == F.F_HEAT_SLOW and 141 <= n <= 145, n
    msg = p.fault_msg
    assert "fall_mc" in msg and "fall_rate_mc_s" in msg and "150 mC/s" in msg and "0.50 C" in msg
    # the same fall at low duty (the controller is braking): no fault
    p = Protector(config)
    p.restart(42000, 35000)
    found, n = _run(p, 42000, _ramp(35000, -5, 100 * 20), duty=300)
    assert found is None
    # while holding it is a runaway
    p.restart(42000, 42000)
    assert p.phase == HOLD
    found, n = _run(p, 42000, _ramp(42000, -5, 100 * 20))
    assert found == F.F_RUNAWAY and 141 <= n <= 145, n


def test_gain_watch_pauses_near_the_band():
    # a slow pad creeping up 3 C below the band (after an ambient drop): no heat_slow from the
    # gain watch; the error integral (600 C.s / 3 C = 200 s) still bounds it
    config = HeatConfig()
    p = Protector(config)
    p.restart(43000, 38000)
    found, n = _run(p, 43000, _flat(38000, 100 * 150))
    assert found is None
    found, n = _run(p, 43000, _flat(38000, 100 * 60))
    assert found == F.F_HEAT_SLOW and "max_error_mc_s" in p.fault_msg


def test_new_thresholds_are_validated_by_name():
    for name, value in (
        ("rise_check_ms", 0), ("rise_permille", 1001), ("rise_ref_mc", 44000), ("fall_mc", 50),
        ("fall_rate_mc_s", -1), ("gain_near_mc", -1), ("stuck_tau_ms", 0), ("stuck_heat_permille", -1),
        ("stuck_heat_permille", 1001), ("stuck_rise_mc", 10),
    ):
        config = HeatConfig()
        setattr(config, name, value)
        assert name in str(raises(ValueError, config.validate)), name


def test_runaway_when_the_sensor_comes_off_while_holding():
    rig = _holding_rig()
    rig.therm.detached = True
    rig.therm.detached_mc = 22000
    t0 = rig.now
    found = rig.seconds(60)
    assert found == F.F_RUNAWAY
    assert rig.now - t0 <= 5000  # the fall watch: 20 C above the room the bead falls 4 C/s at first
    msg = rig.heat.fault_msg
    assert "pad sensor" in msg and "fall_mc" in msg and "fall_rate_mc_s" in msg and "0.50 C" in msg
    assert rig.max_pad_mc < 42500
    _assert_latched_off(rig, F.F_RUNAWAY)


def test_runaway_band_when_the_fall_watch_is_off():
    config = HeatConfig()
    config.fall_mc = 20000  # the fall watch cannot fire: the band and runaway_ms catch it
    rig = _holding_rig(config=config)
    rig.therm.detached = True
    rig.therm.detached_mc = 22000
    t0 = rig.now
    assert rig.seconds(60) == F.F_RUNAWAY
    assert rig.now - t0 <= 20000
    msg = rig.heat.fault_msg
    assert "pad sensor" in msg and "39.00 C" in msg and ("runaway_ms" in msg or "runaway_error_mc_s" in msg)


def test_runaway_when_the_heater_fails_while_holding():
    rig = _holding_rig()
    rig.plant.heater_open = True
    assert rig.seconds(900) == F.F_RUNAWAY
    _assert_latched_off(rig, F.F_RUNAWAY)


def test_runaway_error_integral_below_the_band():
    config = HeatConfig()
    p = Protector(config)
    p.restart(40000, 40000)
    assert p.phase == HOLD
    n = 0
    found = None
    while found is None and n < 10000:
        found = p.check(True, 40000, 33000, 500, 10)  # 4 C below the 37 C band, duty not high
        n += 1
    assert found == F.F_RUNAWAY and n == 3000  # 120 C.s / 4 C = 30 s
    assert "runaway_error_mc_s" in p.fault_msg and "120 C.s" in p.fault_msg


def test_stuck_on_while_holding():
    rig = _holding_rig()
    rig.plant.stuck_on = True
    t0 = rig.now
    assert rig.seconds(300) == F.F_STUCK_ON
    msg = rig.heat.fault_msg
    assert "pad sensor" in msg and "stuck_rise_mc" in msg and "0.15 C" in msg and "38.00 C" in msg
    assert rig.now - t0 < 60000
    assert rig.heat.pad.value_mc < 44000  # fast plant (0.12 C/s at 42 C): caught below 44 C
    _assert_latched_off(rig, F.F_STUCK_ON)


def test_stuck_on_while_stopped():
    rig = _holding_rig("medium")
    rig.heat.stop()
    assert rig.seconds(60) is None
    rig.plant.stuck_on = True
    assert rig.seconds(120) == F.F_STUCK_ON
    assert rig.max_pad_mc < 42000


def test_stuck_on_cannot_be_postponed_by_stop_requests():
    rig = _holding_rig("medium")
    rig.heat.stop()
    rig.seconds(30)
    rig.plant.stuck_on = True
    found = None
    for _ in range(120):
        rig.heat.stop()
        found = rig.seconds(1)
        if found:
            break
    assert found == F.F_STUCK_ON


def test_no_stuck_on_from_skin_warming_a_cold_pad():
    # heat off, a cold pad laid on warm skin: rises from 22 C toward 36 C on its own
    rig = Rig(plant=Plant(ambient_mc=36000, start_mc=22000, tau_ms=60000))
    assert rig.seconds(900) is None
    assert rig.heat.pad.value_mc > 35000


def test_no_stuck_on_after_stopping_mid_approach():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    assert rig.until(lambda: rig.heat.pad.value_mc > 39000, 100 * 600)
    rig.heat.stop()
    assert rig.seconds(600) is None


def test_lease_expired_when_the_tick_comes_late():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    assert rig.seconds(2) is None
    assert rig.heater.leased
    rig.now += rig.heat.config.lease_ms + 20  # the loop stalled: the lease ran out
    rig.heater.now = rig.now
    assert rig.heat.tick(rig.now) == F.F_LEASE_EXPIRED
    rig.fault = F.F_LEASE_EXPIRED
    msg = rig.heat.fault_msg
    assert "80 ms" in msg and "50 ms" in msg and "lease_ms" in msg
    _assert_latched_off(rig, F.F_LEASE_EXPIRED)


def test_a_late_tick_with_the_heater_off_is_no_fault():
    rig = Rig(plant=Plant(start_mc=25000))
    rig.tick(10)
    rig.now += 500
    assert rig.tick(10) is None


def test_sensor_open_turns_the_heater_off_within_the_bad_readings():
    rig = _holding_rig()
    rig.therm.code = 65535
    for i in range(rig.heat.config.bad_readings):
        found = rig.tick()
    assert found == F.F_SENSOR_OPEN
    _assert_latched_off(rig, F.F_SENSOR_OPEN)


def test_sensor_short_and_frozen_through_the_controller():
    rig = _holding_rig()
    rig.therm.code = 0
    assert rig.tick(10) == F.F_SENSOR_SHORT
    rig = Rig(plant=Plant(start_mc=30000))
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    rig.tick(5)
    rig.therm.code = th.mc_to_code(30500)  # stuck ADC while the heater drives at full power
    assert rig.seconds(40) == F.F_SENSOR_FROZEN
    _assert_latched_off(rig, F.F_SENSOR_FROZEN)
    assert rig.heat.status()["measured_mc"] is None  # a frozen reading is not the pad's temperature


def test_sensor_jump_through_the_controller():
    rig = _holding_rig()
    assert rig.heat.status()["measured_mc"] is not None
    rig.therm.code = th.mc_to_code(30000)  # 12 C down in one reading, and it stays
    assert rig.tick(10) == F.F_SENSOR_JUMP
    _assert_latched_off(rig, F.F_SENSOR_JUMP)
    assert rig.heat.status()["measured_mc"] is None  # neither the old value nor the step: no reading


def test_heater_side_sensor_mismatch_and_over_temp():
    rig = _holding_rig(side=True)  # the fake heater side agrees: no fault so far
    rig.side.detached = True  # heater-side bead comes off: cools toward the room
    rig.side.detached_mc = 22000
    t0 = rig.now
    assert rig.seconds(60) == F.F_SENSOR_MISMATCH
    assert rig.now - t0 < 20000
    assert "heater-side sensor" in rig.heat.fault_msg and "pad sensor" in rig.heat.fault_msg
    rig = _holding_rig(side=True)
    rig.side.code = th.mc_to_code(72000)
    rig.side.detached = True
    assert rig.tick(10) in (F.F_OVER_TEMP, F.F_SENSOR_JUMP)


def test_heater_side_over_temp_message():
    rig = Rig(plant=Plant(start_mc=30000), side=True)
    rig.side.detached = True
    rig.side.mc = 70500
    rig.side.detached_mc = 70500
    assert rig.tick(5) == F.F_OVER_TEMP
    assert "heater-side sensor" in rig.heat.fault_msg and "70.00 C" in rig.heat.fault_msg
    assert "heater_side_max_mc" in rig.heat.fault_msg


def test_every_fault_name_is_a_stable_string():
    assert F.ALL == (
        "heat_slow",
        "runaway",
        "stuck_on",
        "over_temp",
        "sensor_open",
        "sensor_short",
        "sensor_frozen",
        "sensor_jump",
        "sensor_mismatch",
        "lease_expired",
    )


def _hold_off(p, target, readings):
    """Heating held off (pause, interlock) while the pad reads `readings`: check() sees no heating."""
    last = None
    for m in readings:
        assert p.check(False, target, m, 0, 10) is None
        last = m
    return last


def test_a_heat_up_in_bursts_keeps_its_rise_window_less_the_cooling_between():
    # a pad rising at a healthy rate (0.36 C per 18 s of heat from 24 C), heated for 10 s,
    # held off for a minute while it cools 1.5 C, then heated on at the same rate: judged on
    # what the heating did, not on the cooling between (that would be a false heat_slow)
    config = HeatConfig()
    p = Protector(config)
    p.restart(42000, 24000)
    found, n = _run(p, 42000, _ramp(24000, 1, 100 * 10, 5))
    assert found is None, p.fault_msg
    cooled = _hold_off(p, 42000, _ramp(24200, -1, 100 * 60, 4))
    assert cooled == 22700
    p.restart(42000, cooled)
    found, n = _run(p, 42000, _ramp(cooled, 1, 100 * 60, 5))
    assert found is None, p.fault_msg
    # a flat reading in bursts of 10 s with 10 s off: caught once 18 s of heat have gone in
    p = Protector(config)
    p.restart(42000, 22000)
    heated_s = 0
    for _ in range(5):
        found, n = _run(p, 42000, _flat(22000, 100 * 10))
        heated_s += n / 100
        if found is not None:
            break
        _hold_off(p, 42000, _flat(22000, 100 * 10))
        p.restart(42000, 22000)
    assert found == F.F_HEAT_SLOW and heated_s * 1000 == config.rise_check_ms, (found, heated_s)
    # the band reached once (the sensor sees the pad): a later restart starts every watch afresh
    p = Protector(config)
    p.restart(42000, 40000)
    assert p.phase == HOLD
    p.restart(42000, 22000)
    found, n = _run(p, 42000, _flat(22000, 100 * 60))
    assert found == F.F_HEAT_SLOW and n * 10 == config.rise_check_ms
