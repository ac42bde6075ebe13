"""Physics of the spine: the electrode-skin load and the output-sense ADC.

The output stage is a current source with a compliance voltage: into a load R
it delivers the commanded current up to compliance / R. An electrode that is
off is an open circuit (nothing flows). The sense path is a 12-bit ADC over
0..100 mA (about 24 uA per code) with +-1 code of noise.
"""

COMPLIANCE_MV = 100000  # 100 V
SENSE_FULL_SCALE_UA = 100000
SENSE_CODES = 4096
OPEN_CIRCUIT = 0  # resistance value meaning "no contact"


class ElectrodeLoad:
    def __init__(self, resistance_ohm=1000):
        self.resistance_ohm = resistance_ohm

    def delivered_ua(self, commanded_ua):
        if self.resistance_ohm == OPEN_CIRCUIT or commanded_ua <= 0:
            return 0
        max_ua = COMPLIANCE_MV * 1000 // self.resistance_ohm
        return commanded_ua if commanded_ua < max_ua else max_ua


class SenseAdc:
    def __init__(self, rng, noise_codes=1):
        self._rng = rng
        self.noise_codes = noise_codes

    def measure_ua(self, true_ua):
        code = true_ua * SENSE_CODES // SENSE_FULL_SCALE_UA
        if self.noise_codes:
            code += self._rng.symmetric(self.noise_codes)
        if code < 0:
            code = 0
        if code > SENSE_CODES - 1:
            code = SENSE_CODES - 1
        return code * SENSE_FULL_SCALE_UA // SENSE_CODES
