"""firmware.heat.autotune: relay autotune math and a run on the fake plant."""

import math

from firmware.heat import autotune as at
from firmware.heat.config import RULE_ZIEGLER_NICHOLS, HeatConfig
from firmware.protocols import messages
from tests.fw.heat_fakes import Plant, Rig
from tests.fw.portable import raises


def test_isqrt():
    for n in (0, 1, 2, 3, 4, 15, 16, 17, 99, 100, 12345678, 2 ** 40 + 5):
        r = at.isqrt(n)
        assert r * r <= n < (r + 1) * (r + 1)


def test_ultimate_gain_matches_the_describing_function():
    for d, a, eps in ((400, 257, 100), (500, 1000, 0), (300, 2000, 150)):
        ku = at.ultimate_gain_x10(d, a, eps)
        exact = 10.0 * 4 * d * 1000 / (math.pi * math.sqrt(a * a - eps * eps))  # 0.1 permille per C
        assert abs(ku - exact) <= exact * 0.002 + 1, (ku, exact)


def test_gain_rules():
    kp, ki, kd = at.gains_from_ultimate(22000, 50000, "tyreus_luyben")
    assert kp == 10000  # Ku / 2.2
    assert ki == 10000 * 1000000 // (22 * 50000)  # Kp / (2.2 Tu), in 0.001 permille per C.s
    assert kd == 10000 * 50000 // 63000  # Kp * Tu / 6.3
    kp, ki, kd = at.gains_from_ultimate(10000, 40000, RULE_ZIEGLER_NICHOLS)
    assert kp == 6000 and ki == 6000 * 200000 // 40000 and kd == 6000 * 40000 // 80000


def test_autotune_on_the_fake_plant_stays_below_the_cap_and_applies_gains():
    config = HeatConfig()
    rig = Rig(config=config, plant=Plant(start_mc=30000))
    rig.heat.start_autotune(rig.now)
    assert rig.heat.state == "autotune"
    peak = 0
    for _ in range(100 * 60 * 20):
        assert rig.tick() is None, rig.heat.fault_msg
        if rig.heat.pad.value_mc > peak:
            peak = rig.heat.pad.value_mc
        if rig.heat.state != "autotune":
            break
    assert rig.heat.reason == "autotune_done", rig.heat.tune_msg
    assert peak <= config.max_target_mc
    assert rig.max_pad_mc <= config.max_target_mc
    kp, ki, kd = rig.heat.tune.result[0], rig.heat.tune.result[1], rig.heat.tune.result[2]
    assert kp > 0 and ki > 0 and kd > 0
    assert (rig.heat.pid.kp, rig.heat.pid.ki, rig.heat.pid.kd) == (kp, ki, kd)
    assert "kp %d" % kp in rig.heat.tune_msg
    # and the tuned loop holds the pad without a fault
    rig.heat.set_level("medium")
    rig.heat.start(rig.now)
    assert rig.seconds(900) is None, rig.heat.fault_msg
    assert abs(rig.heat.pad.value_mc - 40000) < 300


def test_autotune_refuses_a_target_too_close_to_the_cap():
    rig = Rig()
    err = raises(messages.RequestError, rig.heat.start_autotune, rig.now, 41500)
    assert err.code == messages.E_OUT_OF_RANGE and "tune_margin_mc" in err.message and "41000" in err.message


def test_autotune_aborts_above_the_cap_without_a_fault():
    config = HeatConfig()
    config.tune_high_permille = 1000
    config.tune_hyst_mc = 2500  # a wide relay on a fast plant overshoots past 43 C
    rig = Rig(config=config, plant=Plant(start_mc=39000, tau_ms=30000, sensor_tau_ms=8000))
    rig.heat.start_autotune(rig.now)
    for _ in range(100 * 600):
        assert rig.tick() is None, rig.heat.fault_msg
        if rig.heat.state != "autotune":
            break
    assert rig.heat.reason == "autotune_failed"
    assert "max_target_mc" in rig.heat.tune_msg and "43000" in rig.heat.tune_msg
    assert not rig.heater.leased
