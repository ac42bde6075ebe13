"""Fakes for the heat tests: a heater with a lease, an ADC thermistor, a first-order pad plant.

Portable (CPython and the MicroPython VM), integers only, nothing allocated per
tick, so the heap-locked test can drive them too. Not sim/thermal.py: these
tests stand on their own.

Plant: one thermal node, first order toward ambient + gain * power,
    dT/dt = (ambient + gain_mc * duty / 1000 - T) / tau
kept in micro-C (forward Euler, 10 ms steps). Defaults: ambient 22 C,
full-power steady state 22 + 35 = 57 C (well above 43 C), tau 120 s. The
thermistor bead follows the pad through a first-order lag (2 s) and reads
through firmware.heat.thermistor's inverse with a few codes of deterministic
noise, like an oversampled ADC.
"""

from firmware.clock import ticks_add, ticks_diff
from firmware.heat import thermistor

TICK_MS = 10


class FakeHeater:
    """Implements Heater: lease(duty_permille, lease_ms) and off(). Records, never allocates."""

    def __init__(self):
        self.now = 0  # set by the rig before each tick
        self.expiry = 0
        self.leased = False
        self.leases = 0
        self.offs = 0
        self.calls_this_tick = 0
        self.last_lease_ms = 0
        self.max_lease_ms = 0
        self.last_duty = 0

    def lease(self, duty_permille, lease_ms):
        self.leases += 1
        self.calls_this_tick += 1
        self.last_lease_ms = lease_ms
        self.last_duty = duty_permille
        if lease_ms > self.max_lease_ms:
            self.max_lease_ms = lease_ms
        self.expiry = ticks_add(self.now, lease_ms)
        self.leased = True

    def off(self):
        self.offs += 1
        self.calls_this_tick += 1
        self.leased = False

    def on_at(self, now):
        """What the hardware does at `now`: on only inside an unexpired lease."""
        return self.leased and ticks_diff(self.expiry, now) > 0


class Plant:
    def __init__(self, ambient_mc=22000, gain_mc=35000, tau_ms=120000, start_mc=None, sensor_tau_ms=2000):
        self.ambient_mc = ambient_mc
        self.gain_mc = gain_mc
        self.tau_ms = tau_ms
        self.sensor_tau_ms = sensor_tau_ms
        start = ambient_mc if start_mc is None else start_mc
        self.t_u = start * 1000  # pad, micro-C
        self.s_u = start * 1000  # thermistor bead, micro-C
        self.stuck_on = False
        self.heater_open = False

    @property
    def pad_mc(self):
        return self.t_u // 1000

    @property
    def bead_mc(self):
        return self.s_u // 1000

    def step(self, dt_ms, on):
        if self.stuck_on:
            on = True
        if self.heater_open:
            on = False
        target_u = self.ambient_mc * 1000
        if on:
            target_u += self.gain_mc * 1000
        self.t_u += (target_u - self.t_u) * dt_ms // self.tau_ms
        self.s_u += (self.t_u - self.s_u) * dt_ms // self.sensor_tau_ms


class FakeThermistor:
    """Implements Thermistor.read_raw() for a bead temperature, with deterministic noise."""

    def __init__(self, source=None, noise_codes=3, seed=7, divider=thermistor.DIVIDER_NTC_LOW):
        self.source = source  # a Plant (reads its bead) or None (reads `mc`)
        self.mc = 25000
        self.code = None  # a fixed code overrides everything (open, short, frozen)
        self.noise = noise_codes
        self.state = seed
        self.divider = divider
        self.detached = False  # reads `detached_mc` through its own lag instead of the plant
        self.detached_mc = 22000

    def read_raw(self):
        if self.code is not None:
            return self.code
        mc = self.mc
        if self.source is not None and not self.detached:
            mc = self.source.bead_mc
            self.mc = mc
        elif self.detached:
            # a bead in air: relaxes toward detached_mc, tau 5 s (1/500 per 10 ms tick)
            self.mc += (self.detached_mc - self.mc) // 500
            mc = self.mc
        code = thermistor.mc_to_code(mc, self.divider)
        if self.noise:
            self.state = (self.state * 1103515245 + 12345) & 0x3FFFFFFF
            code += (self.state >> 12) % (2 * self.noise + 1) - self.noise
        return code


class Rig:
    """A HeatController over the fakes, stepped tick by tick like the device would."""

    def __init__(self, config=None, plant=None, side=False, start_ms=0, noise_codes=3):
        from firmware.heat.heat import HeatController

        self.plant = plant if plant is not None else Plant()
        self.heater = FakeHeater()
        self.therm = FakeThermistor(self.plant, noise_codes)
        self.side = None
        if side:
            self.side = FakeThermistor(None, noise_codes, seed=99)
        self.heat = HeatController(self.heater, self.therm, config, self.side)
        self.now = start_ms
        self.fault = None
        self.max_pad_mc = self.plant.pad_mc
        self.side_u = self.plant.pad_mc * 1000  # the element, micro-C: pad + 6 C at full power, tau 5 s

    def tick(self, count=1):
        """Advance count ticks; stops at (and returns) the first fault."""
        heat = self.heat
        heater = self.heater
        plant = self.plant
        for _ in range(count):
            heater.now = self.now
            heater.calls_this_tick = 0
            if self.side is not None and not self.side.detached:
                target_u = plant.t_u + (6000000 if heater.on_at(self.now) else 0)
                self.side_u += (target_u - self.side_u) * TICK_MS // 5000
                self.side.mc = self.side_u // 1000
            found = heat.tick(self.now)
            if found is not None:
                self.fault = found
                return found
            plant.step(TICK_MS, heater.on_at(self.now))
            if plant.pad_mc > self.max_pad_mc:
                self.max_pad_mc = plant.pad_mc
            self.now = ticks_add(self.now, TICK_MS)
        return None

    def seconds(self, secs):
        return self.tick(secs * 100)

    def until(self, predicate, limit_ticks):
        for _ in range(limit_ticks):
            if predicate():
                return True
            if self.tick() is not None:
                return False
        return predicate()
