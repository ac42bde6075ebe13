"""Faults the simulator can inject: each changes the simulated hardware.

Every entry: name -> (one-line description, function(board, active)). A fault
is injected with active=True and cleared with active=False.
"""

from sim.models import OPEN_CIRCUIT


def _lead_off(board, active):
    for load in board.loads:
        load.resistance_ohm = OPEN_CIRCUIT if active else board.nominal_resistance_ohm


def _high_impedance(board, active):
    # Dry electrodes: 20 kOhm limits a 100 V stage to 5 mA.
    for load in board.loads:
        load.resistance_ohm = 20000 if active else board.nominal_resistance_ohm


def _output_overshoot(board, active):
    for ch in range(board.pulse_out.channels):
        board.pulse_out.gain_fault[ch] = active


def _sense_adc_error(board, active):
    board.sense.broken = active


def _pulse_queue_full(board, active):
    board.pulse_out.queue_full = active


FAULTS = {
    "lead_off": ("electrode contact lost on every channel (open circuit)", _lead_off),
    "high_impedance": ("dry electrodes: 20 kOhm load, the stage cannot reach high amplitudes", _high_impedance),
    "output_overshoot": ("output stage delivers 1.5x the commanded current + 5 mA", _output_overshoot),
    "sense_adc_error": ("output-sense ADC read raises OSError (a driver exception in the tick)", _sense_adc_error),
    "pulse_queue_full": ("pulse FIFO refuses every pulse (CPU outran the PIO)", _pulse_queue_full),
}


def names():
    return sorted(FAULTS)


def describe(name):
    return FAULTS[name][0]


def set_fault(board, name, active):
    """Inject (active=True) or clear a fault; KeyError names the known faults."""
    if name not in FAULTS:
        raise KeyError("unknown fault %r; known: %s" % (name, ", ".join(names())))
    FAULTS[name][1](board, active)
    if active and name not in board.active_faults:
        board.active_faults.append(name)
    if not active and name in board.active_faults:
        board.active_faults.remove(name)
