"""The analog inputs on the RP2040: the pad thermistor and the output-current sense. Board only.

    therm = Rp2Thermistor()              # ADC0 (GP26)
    therm.read_raw()                     # sum of 16 12-bit conversions: 0..65520 (thermistor.py)
    sense = Rp2OutputSense()             # ADC1/ADC2 (GP27/GP28), comparators on GP16/GP17
    sense.read_ua(ch)                    # µA of channel ch's last pulse (first phase)
    sense.at_compliance(ch)              # whether that pulse hit the stage's voltage limit

OVERSAMPLING. The RP2040's ADC converts 12 bits in 2 µs; one read_u16() from MicroPython
costs some 10 µs with the call. read_raw() sums 2**shift conversions (16 by default, about
0.2 ms) and scales the sum to 16 bits, so 16 conversions give exactly the "sum of 16 12-bit
conversions" firmware/heat/thermistor.py is written for (full scale 65520, open NTC reads
there, shorted reads 0). shift is clamped to 0..OVERSAMPLE_SHIFT_MAX (64 conversions, under
1 ms): the time a read takes is bounded whatever is asked. The sense averages 4 conversions
of the peak-hold (its droop over 40 µs is negligible).

OUTPUT SENSE. Each channel's return current flows through SENSE_R_OHM; a peak-hold and an
amplifier of gain SENSE_GAIN_MILLI / 1000 bring the first phase's peak to the ADC, whose
reference is the 3.3 V rail (ADC_VREF_MV). Full scale, SENSE_FULL_SCALE_UA, is the current
whose amplified sense voltage reaches the reference: 3300 mV / (10 ohm * 3.3) = 100 mA, the
output stage's maximum (the simulator's SenseAdc uses the same scale and 4096 codes). The
peak-hold's bleed resistor discharges it well within a 10 ms tick, so a channel that fired
nothing since the last read reads (about) 0. Integers only: the 12-bit average times the full
scale stays below 2**30 (no long integers on the board).

COMPLIANCE. The comparators (open drain, pulled up) go low while a stage is at its compliance
voltage: only during a pulse, long over when the tick reads. A hard IRQ on the falling edge
latches it per channel; read_ua(ch) takes and clears the latch (IRQs off for those two
bytecodes), together with the pin's level now, so at_compliance(ch) describes the pulse that
the last read_ua(ch) reported, as the interface asks.

ERRORS. Neither class raises on ordinary conditions: a channel out of range reads 0 and not at
compliance. An ADC that fails raises OSError from machine, passed on (the tick turns that into
a latched fault).
"""

import machine
from machine import ADC, Pin

from firmware.compat import const
from firmware.drivers import rp2_pins

ADC_BITS = const(12)  # the RP2040's converter; read_u16() returns it scaled to 16 bits
OVERSAMPLE_SHIFT_MAX = const(6)  # at most 64 conversions per read: under 1 ms
THERMISTOR_SHIFT = const(4)  # 16 conversions: the sum is thermistor.py's 16-bit code
SENSE_SHIFT = const(2)  # 4 conversions of the peak-hold

ADC_VREF_MV = const(3300)  # the ADC's reference: the 3.3 V rail, mV
SENSE_R_OHM = const(10)  # each channel's current-sense resistor, ohm
SENSE_GAIN_MILLI = const(3300)  # the sense amplifier's voltage gain, x1/1000 (3.3)
# the current whose amplified sense voltage reaches the ADC reference, µA (100000 = 100 mA)
SENSE_FULL_SCALE_UA = ADC_VREF_MV * 1000 // SENSE_R_OHM * 1000 // SENSE_GAIN_MILLI
_CODE_SHIFT = const(4)  # read_u16() >> 4 is the converter's 12-bit code


def _clamp_shift(shift: int) -> int:
    if shift < 0:
        return 0
    if shift > OVERSAMPLE_SHIFT_MAX:
        return OVERSAMPLE_SHIFT_MAX
    return shift


class Rp2Thermistor:
    def __init__(self, pin: int = rp2_pins.ADC_THERMISTOR, shift: int = THERMISTOR_SHIFT):
        self._adc = ADC(pin)
        self.shift = _clamp_shift(shift)
        self.samples = 1 << self.shift

    def read_raw(self) -> int:
        """Oversampled code, 0..65520 (16 bits at 65536 * ratio). Time bounded by `samples`."""
        adc = self._adc
        total = 0
        for _ in range(self.samples):
            total += adc.read_u16() >> _CODE_SHIFT
        return (total << (16 - ADC_BITS)) >> self.shift


class Rp2OutputSense:
    def __init__(self, adc_pins: tuple = rp2_pins.ADC_SENSE, compliance_pins: tuple = rp2_pins.COMPLIANCE_PINS,
                 shift: int = SENSE_SHIFT):
        self.channels = len(adc_pins)
        self.shift = _clamp_shift(shift)
        self.samples = 1 << self.shift
        self._adcs = [ADC(pin) for pin in adc_pins]
        self._comparators = [Pin(pin, Pin.IN, Pin.PULL_UP) for pin in compliance_pins]
        self._latch = bytearray(self.channels)  # set by the comparator IRQ: hit compliance since the last read
        self._compliance = bytearray(self.channels)  # what the last read_ua(ch) found
        for ch in range(min(self.channels, len(self._comparators))):
            self._comparators[ch].irq(handler=_latcher(self._latch, ch), trigger=Pin.IRQ_FALLING, hard=True)

    def read_ua(self, ch: int) -> int:
        """Current of channel ch's last pulse (first phase), µA; 0 for a channel out of range."""
        if ch < 0 or ch >= self.channels:
            return 0
        state = machine.disable_irq()
        hit = self._latch[ch]
        self._latch[ch] = 0
        machine.enable_irq(state)
        if ch < len(self._comparators) and self._comparators[ch].value() == 0:
            hit = 1  # at the limit right now
        self._compliance[ch] = hit
        adc = self._adcs[ch]
        total = 0
        for _ in range(self.samples):
            total += adc.read_u16() >> _CODE_SHIFT
        code = (total + (self.samples >> 1)) >> self.shift  # rounded 12-bit average
        return code * SENSE_FULL_SCALE_UA >> ADC_BITS

    def at_compliance(self, ch: int) -> bool:
        """Whether the pulse the last read_ua(ch) reported drove the stage to its compliance voltage."""
        if ch < 0 or ch >= self.channels:
            return False
        return self._compliance[ch] != 0


def _latcher(latch: bytearray, ch: int):
    """A hard-IRQ handler for one channel's comparator: sets its latch, allocates nothing."""

    def handler(_pin: Pin) -> None:
        latch[ch] = 1

    return handler
