"""The desktop simulator: physics models, simulated drivers, fault injection.

Modules named in `PORTABLE_MODULES` run under MicroPython too, so a whole
simulated device fits in one `micropython` process.
"""

PORTABLE_MODULES = ("sim.clock", "sim.rng", "sim.models", "sim.board", "sim.faults", "sim.scenario", "sim.audit", "sim.trace", "sim.serve_loop", "sim.thermal", "sim.thermistor_model", "sim.adc_noise", "sim.mp_main")
