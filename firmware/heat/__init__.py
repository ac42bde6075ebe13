"""Heat therapy: pad thermostat, layered thermal protection, thermal dose (issue 4).

The device uses one class, firmware.heat.heat.HeatController (see its module
for the interface); the other modules each do one job and are tested alone:

    config.py      HeatConfig: every threshold and gain with its default; LEVELS; validate()
    thermistor.py  NTC code -> milli-C by table (divider orientation documented there)
    sensor.py      one thermistor channel: range (open/short), jump, frozen, EMA filter
    crosscheck.py  pad-side vs heater-side sensor (when a second sensor is fitted)
    pid.py         integer PID: anti-windup, derivative on measurement
    duty.py        time-proportioned output through the heater's short lease
    autotune.py    Astrom-Hagglund relay autotune -> PID gains
    protect.py     heat_slow, runaway, stuck_on, over_temp
    dose.py        CEM43 thermal dose, fixed point
    faults.py      fault names (stable strings) and message formatting
    heat.py        HeatController: composes the above

Portable subset (MicroPython 1.2x and CPython give identical integers); time
only from the `now` passed in (firmware.clock semantics); the per-tick path
uses small integers only and allocates nothing unless a fault is raised.
"""
