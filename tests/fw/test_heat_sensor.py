"""firmware.heat.sensor and crosscheck: plausibility faults after N readings, filter, messages."""

from firmware.heat import faults as F
from firmware.heat import thermistor as th
from firmware.heat.config import HeatConfig
from firmware.heat.crosscheck import CrossCheck
from firmware.heat.sensor import Sensor


class Codes:
    def __init__(self, code):
        self.code = code

    def read_raw(self):
        return self.code


def _sensor(mc=30000, config=None):
    drv = Codes(th.mc_to_code(mc))
    return drv, Sensor(drv, config or HeatConfig())


def _feed(sensor, n, duty=0, dt=10):
    """n readings; returns (index, fault) of the first fault or None."""
    for i in range(n):
        found = sensor.update(duty, dt)
        if found is not None:
            return i, found
    return None


def test_first_reading_initialises_the_filter():
    drv, s = _sensor(30000)
    assert not s.valid
    assert _feed(s, 1) is None
    assert s.valid and abs(s.value_mc - 30000) <= 3


def test_filter_converges_exactly_and_follows_a_step():
    drv, s = _sensor(30000)
    _feed(s, 1)
    drv.code = th.mc_to_code(31000)
    _feed(s, 1)
    first = s.value_mc
    assert 30000 < first < 31000  # low-passed
    _feed(s, 100)
    assert s.value_mc == th.code_to_mc(drv.code)  # no truncation bias


def test_open_after_exactly_n_readings_and_value_is_held():
    config = HeatConfig()
    drv, s = _sensor(30000, config)
    _feed(s, 5)
    held = s.value_mc
    drv.code = 65535
    found = _feed(s, 10)
    assert found == (config.bad_readings - 1, F.F_SENSOR_OPEN)
    assert s.value_mc == held  # bad readings never reach the controller
    msg = s.fault_msg
    assert "pad sensor" in msg and "-55.00 C" in msg and "-10.00 C" in msg and "min_valid_mc" in msg
    assert "raw 65535" in msg


def test_short_after_exactly_n_readings():
    config = HeatConfig()
    drv, s = _sensor(30000, config)
    _feed(s, 5)
    drv.code = 3
    assert _feed(s, 10) == (config.bad_readings - 1, F.F_SENSOR_SHORT)
    assert "85.00 C" in s.fault_msg and "max_valid_mc" in s.fault_msg and "pad sensor" in s.fault_msg


def test_n_minus_one_bad_readings_are_forgiven_by_as_many_good_ones():
    config = HeatConfig()
    drv, s = _sensor(30000, config)
    good = drv.code
    _feed(s, 3)
    for _ in range(20):
        drv.code = 65535
        assert _feed(s, config.bad_readings - 1) is None
        drv.code = good
        assert _feed(s, config.bad_readings - 1) is None


def test_an_intermittent_open_adds_up_to_the_latch():
    """3 open readings in every 4 never latched: each good reading reset the count (a loose
    connector heated on a reading rejected three times in four). A good one now takes one off."""
    config = HeatConfig()
    drv, s = _sensor(30000, config)
    good = drv.code
    _feed(s, 3)
    found = None
    for _ in range(5):
        drv.code = 65535
        found = found or _feed(s, config.bad_readings - 1)
        drv.code = good
        found = found or _feed(s, 1)
    assert found is not None and found[1] == F.F_SENSOR_OPEN, found


def test_bad_readings_is_configurable():
    config = HeatConfig()
    config.bad_readings = 1
    drv, s = _sensor(30000, config)
    _feed(s, 3)
    drv.code = 0
    assert _feed(s, 3) == (0, F.F_SENSOR_SHORT)


def test_single_spike_is_ignored():
    drv, s = _sensor(30000)
    good = drv.code
    _feed(s, 10)
    before = s.value_mc
    drv.code = th.mc_to_code(36000)  # 6 C in 10 ms: impossible
    assert _feed(s, 1) is None
    assert s.value_mc == before  # held back
    drv.code = good
    assert _feed(s, 10) is None


def test_persistent_jump_latches_after_jump_readings():
    config = HeatConfig()
    drv, s = _sensor(30000, config)
    _feed(s, 10)
    drv.code = th.mc_to_code(33000)
    assert _feed(s, 10) == (config.jump_readings - 1, F.F_SENSOR_JUMP)
    msg = s.fault_msg
    assert "pad sensor" in msg and "2.00 C" in msg and "jump_limit_mc" in msg and "33.00 C" in msg


def _reports(sensor, n):
    """Indices of the readings, out of n, that returned a fault."""
    return [i for i in range(n) if sensor.update(0, 10) is not None]


def test_a_broken_sensor_is_reported_once_per_run_and_reset_rearms():
    # the controller latches on the first report; the sensor must not compose the message again
    # on every later reading of the same fault (it allocates), but must find it again after reset
    config = HeatConfig()
    for code, fault in ((65535, F.F_SENSOR_OPEN), (3, F.F_SENSOR_SHORT)):
        drv, s = _sensor(30000, config)
        _feed(s, 5)
        drv.code = code
        assert _reports(s, 300) == [config.bad_readings - 1], fault
        s.fault_msg = ""
        s.reset()
        assert _reports(s, 300) == [config.bad_readings - 1], fault
        assert s.update(0, 10) is None and s.fault_msg != ""


def test_a_persistent_jump_is_reported_once_and_again_after_good_readings():
    config = HeatConfig()
    drv, s = _sensor(30000, config)
    good = drv.code
    _feed(s, 10)
    drv.code = th.mc_to_code(33000)
    assert _reports(s, 300) == [config.jump_readings - 1]
    drv.code = good
    assert _reports(s, 5) == []
    drv.code = th.mc_to_code(33000)
    assert _reports(s, 300) == [config.jump_readings - 1]


def test_steps_within_the_limit_are_no_jump():
    drv, s = _sensor(30000)
    _feed(s, 3)
    mc = 30000
    for _ in range(40):
        mc += 1900
        if mc > 80000:
            break
        drv.code = th.mc_to_code(mc)
        assert _feed(s, 1) is None


def test_frozen_code_while_heating_latches_after_frozen_ms_of_full_power():
    config = HeatConfig()
    drv, s = _sensor(35000, config)
    _feed(s, 1)
    ticks = config.frozen_ms // 10
    assert _feed(s, ticks + 5, duty=1000) == (ticks - 1, F.F_SENSOR_FROZEN)  # 20 s of full power, no change
    assert "frozen_ms" in s.fault_msg and "pad sensor" in s.fault_msg and "20.0 s" in s.fault_msg


def test_frozen_is_weighted_by_duty():
    config = HeatConfig()
    drv, s = _sensor(35000, config)
    _feed(s, 1)
    ticks = config.frozen_ms // 10
    assert _feed(s, ticks, duty=500) is None  # half power: half the energy so far
    found = _feed(s, ticks + 2, duty=500)
    assert found is not None and found[1] == F.F_SENSOR_FROZEN


def test_frozen_never_without_heating():
    drv, s = _sensor(35000)
    assert _feed(s, 10000, duty=0) is None


def test_a_changing_code_is_not_frozen():
    drv, s = _sensor(35000)
    base = drv.code
    for i in range(5000):
        drv.code = base + (i & 1)
        assert s.update(1000, 10) is None


def test_crosscheck_heater_side_cooler_while_heating():
    config = HeatConfig()
    xc = CrossCheck(config)
    n = config.xc_ms // 10
    for i in range(n - 1):
        assert xc.update(40000, 36500, True, 10) is None
    assert xc.update(40000, 36500, True, 10) == F.F_SENSOR_MISMATCH
    msg = xc.fault_msg
    assert "heater-side sensor" in msg and "36.50 C" in msg and "3.00 C" in msg and "xc_cooler_mc" in msg


def test_crosscheck_cooler_is_fine_when_not_heating():
    xc = CrossCheck(HeatConfig())
    for _ in range(5000):
        assert xc.update(40000, 30000, False, 10) is None


def test_crosscheck_divergence():
    config = HeatConfig()
    xc = CrossCheck(config)
    found = None
    for i in range(config.xc_ms // 10 + 5):
        found = xc.update(30000, 60000, True, 10)
        if found:
            break
    assert found == F.F_SENSOR_MISMATCH and i == config.xc_ms // 10 - 1
    assert "25.00 C" in xc.fault_msg and "xc_diverge_mc" in xc.fault_msg


def test_crosscheck_recovers_when_in_agreement():
    config = HeatConfig()
    xc = CrossCheck(config)
    for _ in range(20):
        for _ in range(config.xc_ms // 10 - 1):
            assert xc.update(40000, 36000, True, 10) is None
        assert xc.update(40000, 42000, True, 10) is None
