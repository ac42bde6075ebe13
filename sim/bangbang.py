"""A bang-bang thermostat with 1 C hysteresis: the yardstick for the heat controller.

Why it exists: cheap heat pads regulate like this (heater fully on below
target - 0.5 C, fully off above target + 0.5 C, unchanged in between), so
`sim/bench_heat.py` runs it on the same simulated pad, the same thermistor and
the same code -> temperature conversion as the firmware (firmware.heat.thermistor)
to show what the HeatController's PID buys (steady error, overshoot). It is a
benchmark baseline only: no filter, no protections, never used by the device.

    bb = BangBang(heater, thermistor, target_mc=42000)
    bb.start(now)
    bb.tick(now)      # every 10 ms; returns None (it detects no faults)
    bb.stop()

heater: the firmware Heater driver (lease(duty_permille, lease_ms), off()); every
tick calls one of them, as the HeatController does. thermistor: read_raw() -> code.
Integers only: milli-C and ms.
"""

from firmware.heat import thermistor as conversion

HYSTERESIS_MC = 1000  # full width of the band: switches at target - 500 and target + 500
LEASE_MS = 50  # the same short heater lease as HeatConfig.lease_ms


class BangBang:
    def __init__(self, heater, thermistor, target_mc=40000, hysteresis_mc=HYSTERESIS_MC,
                 lease_ms=LEASE_MS, divider=conversion.DIVIDER_NTC_LOW):
        self.heater = heater
        self.thermistor = thermistor
        self.target_mc = target_mc
        self.half_band_mc = hysteresis_mc // 2
        self.lease_ms = lease_ms
        self.divider = divider
        self.running = False  # between start() and stop()
        self.heater_on = False
        self.measured_mc = None  # last reading, milli-C (None before the first tick)
        heater.off()

    def set_target_mc(self, target_mc):
        self.target_mc = target_mc

    def start(self, now):
        self.running = True

    def stop(self):
        self.running = False
        self.heater_on = False
        self.heater.off()

    def tick(self, now):
        measured = conversion.code_to_mc(self.thermistor.read_raw(), self.divider)
        self.measured_mc = measured
        if not self.running:
            self.heater_on = False
        elif measured < self.target_mc - self.half_band_mc:
            self.heater_on = True
        elif measured > self.target_mc + self.half_band_mc:
            self.heater_on = False
        if self.heater_on:
            self.heater.lease(1000, self.lease_ms)
        else:
            self.heater.off()
        return None
