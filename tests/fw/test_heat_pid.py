"""firmware.heat.pid: integer PID, anti-windup, derivative on measurement."""

from firmware.heat.config import HeatConfig
from firmware.heat.pid import I_SCALE, Pid
from tests.fw.portable import Lcg


def _pid(kp=0, ki=0, kd=0, zone=None):
    config = HeatConfig()
    config.kp = kp
    config.ki = ki
    config.kd = kd
    if zone is not None:
        config.i_zone_mc = zone
    config.validate()
    pid = Pid(config)
    pid.reset(0)
    return pid


def test_proportional_scale():
    pid = _pid(kp=10000)  # 1000 permille per C
    assert pid.update(40000, 39500) == 500  # 0.5 C below: 500 permille
    pid = _pid(kp=1500)  # 150 permille per C
    assert pid.update(40000, 38000) == 300


def test_output_is_clamped():
    pid = _pid(kp=10000)
    assert pid.update(40000, 30000) == 1000
    assert pid.update(40000, 45000) == 0


def test_integral_scale_is_exact():
    pid = _pid(ki=1000, zone=0)  # 1 permille per C per second
    pid.reset(0)
    for _ in range(100):  # 1 s at 1 C of error
        pid.update(40000, 39000)
    assert pid.i_acc == 1 * I_SCALE
    for _ in range(1000):  # 10 s more
        pid.update(40000, 39000)
    assert pid.i_acc == 11 * I_SCALE


def test_derivative_on_measurement_no_kick_on_target_change():
    pid = _pid(kp=1000, kd=5000)
    for _ in range(500):
        pid.update(38000, 38000)
    before = pid.update(38000, 38000)
    after = pid.update(42000, 38000)  # target steps by 4 C
    assert pid.d == 0  # measurement did not move: no derivative kick
    assert after - before == 1000 * 4000 // 10000  # only the proportional step


def test_derivative_opposes_a_rising_measurement():
    pid = _pid(kd=10000)  # 10000 permille per C/s
    pid.reset(500)
    m = 30000
    for _ in range(2000):  # rising at 0.1 C/s (1 mC per tick)
        m += 1
        pid.update(40000, m)
    assert 95 <= pid.slope_mc_s <= 100
    assert pid.d == -(10000 * pid.slope_mc_s // 1000)
    assert pid.d < -900


def test_anti_windup_no_integration_while_saturated_far_from_target():
    pid = _pid(kp=2000, ki=5000)
    for _ in range(100 * 600):  # 10 minutes at full output, 5 C below
        assert pid.update(40000, 35000) == 1000
    assert pid.i_acc == 0  # nothing wound up
    # the measurement crosses the target: the output leaves saturation at once
    out = pid.update(40000, 40100)
    assert out == 0


def test_anti_windup_integral_term_never_exceeds_the_output_range():
    pid = _pid(ki=18000, zone=5000)
    for _ in range(100 * 300):
        pid.update(40000, 38000)
    assert pid.i_acc == 1000 * I_SCALE
    for _ in range(100 * 300):
        pid.update(40000, 42000)
    assert pid.i_acc == 0


def test_integral_zone_integrates_while_saturated_near_target():
    pid = _pid(kp=10000, ki=5000, zone=2000)
    for _ in range(100):
        assert pid.update(40000, 38500) == 1000  # saturated, 1.5 C below: inside the zone
    assert pid.i_acc > 0
    pid = _pid(kp=10000, ki=5000, zone=1000)
    for _ in range(100):
        pid.update(40000, 38500)  # outside a 1 C zone
    assert pid.i_acc == 0


def test_reset_preloads_and_clamps():
    pid = _pid()
    pid.reset(300)
    assert pid.i_acc == 300 * I_SCALE
    pid.reset(5000)
    assert pid.i_acc == 1000 * I_SCALE
    pid.reset(-1)
    assert pid.i_acc == 0


def test_track_follows_without_output():
    pid = _pid(kd=5000)
    for i in range(300):
        pid.track(30000 + i)
    assert pid.out == 0
    assert pid.slope_mc_s > 0  # derivative state is current: no kick when output resumes


def test_output_always_in_range_for_random_inputs():
    rng = Lcg(3)
    pid = _pid(kp=10000, ki=18000, kd=20000)
    for _ in range(20000):
        target = 30000 + rng.below(13001)
        measured = -10000 + rng.below(95001)
        out = pid.update(target, measured)
        assert 0 <= out <= 1000
        assert 0 <= pid.i_acc <= 1000 * I_SCALE
