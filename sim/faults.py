"""Faults the simulator can inject: each changes the simulated hardware.

Channel faults are named `KIND:CH` (e.g. `electrode_off:1`); the others are
plain names. Every kind: name -> (one-line description, function(board, ch, active)).
"""

from sim.models import OPEN_CIRCUIT
from sim.thermal import THERMAL_FAULTS

PARTIAL_SERIES_OHM = 40000  # a half-detached electrode: 40 kohm


def _electrode_off(board, ch, active):
    _set_electrode(board, ch, active, _is_active(board, "electrode_partial", ch))


def _electrode_partial(board, ch, active):
    _set_electrode(board, ch, _is_active(board, "electrode_off", ch), active)


def _set_electrode(board, ch, off, partial):
    """Both electrode faults act on one resistance: off wins while it lasts, and clearing one
    leaves the other in force (the load matches the list of active faults)."""
    if off:
        board.loads[ch].series_ohm = OPEN_CIRCUIT
    elif partial:
        board.loads[ch].series_ohm = PARTIAL_SERIES_OHM
    else:
        board.loads[ch].series_ohm = board.nominal_series_ohm


def _is_active(board, kind, ch):
    return "%s:%d" % (kind, ch) in board.active_faults


def _overcurrent(board, ch, active):
    board.pulse_out.overshoot[ch] = active


def _sense_adc_error(board, ch, active):
    board.sense.broken = active


def _pulse_queue_full(board, ch, active):
    board.pulse_out.queue_full = active


CHANNEL_FAULTS = {
    "electrode_off": ("electrode contact lost on channel CH (open circuit)", _electrode_off),
    "electrode_partial": (
        "electrode half off on channel CH: the load rises to 40 kohm, a 100 V stage tops out near 2.5 mA",
        _electrode_partial,
    ),
    "overcurrent": ("output stage of channel CH delivers 1.5x the commanded current + 5 mA", _overcurrent),
}
DEVICE_FAULTS = {
    "sense_adc_error": ("output-sense ADC read raises OSError (a driver exception in the tick)", _sense_adc_error),
    "pulse_queue_full": ("pulse FIFO refuses every pulse (CPU outran the PIO)", _pulse_queue_full),
}


def _thermal(apply):
    def set_it(board, ch, active):
        apply(board.plant, board.pad_thermistor, active)

    return set_it


for _name in THERMAL_FAULTS:
    DEVICE_FAULTS[_name] = (THERMAL_FAULTS[_name][0], _thermal(THERMAL_FAULTS[_name][1]))


def names(channels=2):
    out = []
    for kind in sorted(CHANNEL_FAULTS):
        for ch in range(channels):
            out.append("%s:%d" % (kind, ch))
    return out + sorted(DEVICE_FAULTS)


def catalog(channels=2):
    """Every fault name with its one-line description, in `names` order."""
    return [(name, describe(name)) for name in names(channels)]


def _parse(name, channels):
    if isinstance(name, str) and name in DEVICE_FAULTS:
        return DEVICE_FAULTS[name][1], 0
    if isinstance(name, str) and ":" in name:
        kind, _, ch_text = name.partition(":")
        if kind in CHANNEL_FAULTS and ch_text.isdigit() and int(ch_text) < channels:
            return CHANNEL_FAULTS[kind][1], int(ch_text)
    raise KeyError("unknown fault %r; known: %s" % (name, ", ".join(names(channels))))


def is_known(name, channels=2):
    try:
        _parse(name, channels)
    except KeyError:
        return False
    return True


def describe(name):
    if name in DEVICE_FAULTS:
        return DEVICE_FAULTS[name][0]
    kind, _, ch_text = name.partition(":")
    return CHANNEL_FAULTS[kind][0].replace("CH", ch_text)


def set_fault(board, name, active):
    """Inject (active=True) or clear a fault; KeyError names the known faults."""
    apply, ch = _parse(name, board.pulse_out.channels)
    apply(board, ch, active)
    if active and name not in board.active_faults:
        board.active_faults.append(name)
    if not active and name in board.active_faults:
        board.active_faults.remove(name)
