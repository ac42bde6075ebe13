"""The heat controller on the simulator's reference pad (sim/thermal.py, sim/thermistor_model.py).

A few end-to-end checks on the physics the rest of the project benches against:
a normal session (no trip, small overshoot and ripple), a sensor coming off
while holding (runaway within 20 s: the fall watch takes about 1 s, the band
watch behind it about 17 s), a heater stuck on (stuck_on before the pad passes
44 C). Detachment before and during the heat-up: tests/fw/test_heat_detection.py.
Portable: the simulator models are integer-only too.
"""

from firmware.clock import ticks_add, ticks_diff
from firmware.heat import faults as F
from firmware.heat.heat import HeatController
from sim.rng import Rng
from sim.thermal import PadPlant
from sim.thermistor_model import ThermistorModel


class _Heater:
    def __init__(self):
        self.now = 0
        self.expiry = 0
        self.leased = False

    def lease(self, duty_permille, lease_ms):
        self.expiry = ticks_add(self.now, lease_ms)
        self.leased = True

    def off(self):
        self.leased = False

    def duty(self, now):
        return 1000 if self.leased and ticks_diff(self.expiry, now) > 0 else 0


class _SimRig:
    def __init__(self, seed=1):
        self.plant = PadPlant()
        self.plant.settle()
        self.therm = ThermistorModel(Rng(seed), self.plant, "pad")
        self.heater = _Heater()
        self.heat = HeatController(self.heater, self.therm)
        self.now = 0
        self.max_pad_mc = self.plant.pad_mc

    def seconds(self, secs):
        for _ in range(secs * 100):
            self.heater.now = self.now
            found = self.heat.tick(self.now)
            if found is not None:
                return found
            self.plant.step(10, self.heater.duty(self.now))
            self.therm.update(10)
            if self.plant.pad_mc > self.max_pad_mc:
                self.max_pad_mc = self.plant.pad_mc
            self.now = ticks_add(self.now, 10)
        return None


def _holding(seed=1):
    rig = _SimRig(seed)
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    assert rig.seconds(600) is None, rig.heat.fault_msg
    assert rig.heat.state == "holding"
    return rig


def test_normal_session_on_the_reference_pad():
    rig = _holding()
    assert rig.max_pad_mc <= 42000 + 300  # overshoot <= 0.3 C (true pad temperature)
    low = 100000
    high = 0
    for _ in range(120):
        assert rig.seconds(1) is None, rig.heat.fault_msg
        low = min(low, rig.plant.pad_mc)
        high = max(high, rig.plant.pad_mc)
    assert 42000 - 100 <= low and high <= 42000 + 100


def test_sensor_off_the_pad_while_holding_is_a_runaway_within_20_s():
    rig = _holding()
    rig.therm.ambient_mc = rig.plant.ambient_mc
    rig.therm.detached = True
    t0 = rig.now
    assert rig.seconds(60) == F.F_RUNAWAY
    assert ticks_diff(rig.now, t0) <= 2000  # the fall watch: the bead falls 1.7 C/s at first
    assert "fall_mc" in rig.heat.fault_msg
    assert rig.max_pad_mc < 42200
    assert not rig.heater.leased


def test_sensor_off_the_pad_while_holding_band_watch_behind_the_fall_watch():
    rig = _SimRig()
    while rig.plant.pad_mc < 41800:  # warm the pad open-loop (fast), then hold it closed-loop
        rig.plant.step(1000, 1000)
    rig.therm.sensor_mc = rig.plant.pad_mc
    rig.therm.sample(rig.plant.pad_mc, 0)  # the bead and its ADC code with it
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    assert rig.seconds(60) is None and rig.heat.state == "holding"
    rig.heat.config.fall_mc = 20000  # as if the fall watch missed it: runaway_ms still within 20 s
    rig.therm.ambient_mc = rig.plant.ambient_mc
    rig.therm.detached = True
    t0 = rig.now
    assert rig.seconds(60) == F.F_RUNAWAY
    assert ticks_diff(rig.now, t0) <= 20000
    assert "runaway_ms" in rig.heat.fault_msg or "runaway_error_mc_s" in rig.heat.fault_msg
    assert rig.max_pad_mc < 43000


def test_stuck_heater_while_holding_latches_within_20_s():
    rig = _holding()
    rig.plant.stuck_on = True
    t0 = rig.now
    assert rig.seconds(120) == F.F_STUCK_ON
    # 31.4 s behind a fixed 10 s grace and a 0.5 C rise; the element-heat bound lets the watch
    # run once the duty is 0 (10.7 s here), then 0.15 C of rise
    assert ticks_diff(rig.now, t0) <= 20000, ticks_diff(rig.now, t0)
    assert rig.heat.pad.value_mc < 43500
    assert rig.max_pad_mc < 44000
