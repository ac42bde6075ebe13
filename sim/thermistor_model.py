"""The pad thermistor: NTC 10 kohm / Beta 3950 in a divider, a 12-bit ADC oversampled to 16 bits.

Circuit (ratiometric: the divider and the ADC reference share the 3.3 V rail, so
the code does not depend on the exact supply):

    3V3 ── R_fixed 10 kohm ──┬── ADC input
                             │
                            NTC 10 kohm @ 25 °C, Beta 3950
                             │
                            GND

The NTC sits on the low side, as on most 3D-printer and pad controllers:
    code ≈ 65536 * R_ntc / (R_ntc + R_fixed)
so the code FALLS as the temperature rises. An open NTC (broken wire, unplugged
connector) reads at the TOP rail (65520, every conversion 4095); a shorted NTC
(or a short in the cable) reads at the BOTTOM rail (~0).

The ADC is the RP2040's 12-bit converter; one `read_raw()` sums OVERSAMPLE = 16
conversions (0..4095 each) into a 16-bit code 0..65520. Each conversion rounds
the divider voltage plus uniform noise of +-noise_lsb 12-bit LSB (drawn from
sim.rng.Rng in 1/16 LSB steps), then clips to 0..4095; with noise >= 1 LSB the
noise dithers the 12-bit quantisation so the 16-bit sum resolves below one LSB;
with noise_lsb = 0 every conversion is identical and the code is a multiple of 16.
Away from the rails the sixteen noisy conversions are drawn as one sum from its exact
distribution (sim.adc_noise), one random number per read instead of sixteen.

The thermistor body follows the temperature of the node it touches (the pad's
skin face for the main sensor, the heater element for the second sensor)
through a first-order lag (tau_ms, a few seconds for a bead under a fabric
cover), integrated exactly (1 - exp(-dt/tau), sim.models tables) for any dt.
Faults are plain attributes: `open`, `short`, `detached` (the bead has come off
the pad: its lag target becomes ambient + detached_coupling_permille of the way
to the node, with the slower still-air time constant detached_tau_ms; it reads
cooler and hardly follows the heater).

Portable subset: integers only, no floats, no `math`; CPython and the MicroPython
VM give identical codes for the same seed. The per-tick methods (`sample`,
`update`, `read_raw`) allocate nothing and keep every intermediate below 2**30
(MicroPython small ints) for temperatures within +-4000 °C of each other and
r_fixed_ohm < 16384.
"""

from firmware.compat import const
from sim.adc_noise import OversampleNoise
from sim.models import one_minus_exp_q16, ratio_q16

NTC_R25_OHM = 10000  # resistance at 25 °C
NTC_BETA = 3950  # B25/50 of the common "10k 3950" NTC (e.g. MF52-103/3950)
R_FIXED_OHM = 10000  # the divider's fixed (high-side) resistor
VREF_MV = 3300  # the divider and ADC reference; the code is ratiometric, so only documentation
ADC_BITS = 12
OVERSAMPLE = const(16)  # conversions summed per read_raw(): 16 * 4095 = 65520 at most
CODE_FULL = const(65536)  # code of the rail itself (ratio 1.0); the largest code read is 65520
CONV_MAX = const(4095)

# NTC resistance in ohm at -20..125 °C in 1 °C steps (146 entries). Generated once
# offline with CPython from the Beta equation:
#     [round(10000 * math.exp(3950 * (1 / (T + 273.15) - 1 / 298.15))) for T in range(-20, 126)]
# Linear interpolation between 1 °C entries is within 0.004 °C of the Beta curve
# (chord error ~ (B/T^2 * 1 K)^2 / 8 of R); rounding to whole ohms adds at most
# 0.03 °C below 100 °C and 0.06 °C at 125 °C. Interpolation is done in 1/16 ohm so
# the code stays strictly monotonic. Outside the range the end entry holds.
NTC_T_MIN_MC = const(-20000)
NTC_T_STEP_MC = const(1000)
NTC_TABLE_OHM = (
    105385, 99109, 93252, 87783, 82674, 77898, 73432, 69253, 65341, 61678, 58246, 55028, 52011,
    49179, 46522, 44026, 41681, 39477, 37405, 35455, 33621, 31893, 30266, 28733, 27288, 25925,
    24639, 23425, 22279, 21197, 20175, 19208, 18294, 17430, 16612, 15837, 15104, 14409, 13751,
    13127, 12535, 11974, 11441, 10936, 10456, 10000, 9567, 9155, 8764, 8391, 8037, 7700, 7379,
    7074, 6783, 6506, 6241, 5989, 5749, 5520, 5301, 5093, 4894, 4703, 4522, 4348, 4182, 4024, 3872,
    3727, 3588, 3455, 3328, 3207, 3090, 2978, 2871, 2769, 2671, 2577, 2486, 2399, 2316, 2237, 2160,
    2086, 2016, 1948, 1883, 1820, 1760, 1702, 1646, 1593, 1541, 1492, 1444, 1398, 1354, 1311, 1270,
    1231, 1193, 1156, 1121, 1087, 1054, 1022, 992, 962, 934, 906, 880, 854, 829, 805, 782, 760,
    738, 718, 698, 678, 659, 641, 623, 606, 590, 574, 559, 544, 529, 515, 502, 488, 476, 463, 451,
    440, 429, 418, 407, 397, 387, 377, 368, 359,
)
NTC_T_MAX_MC = NTC_T_MIN_MC + (len(NTC_TABLE_OHM) - 1) * NTC_T_STEP_MC  # 125 °C

NODE_PAD = "pad"  # main sensor: on the pad's skin face (plant.pad_mc)
NODE_HEATER = "heater"  # second sensor: on the heater element (plant.heater_mc)
NODE_SKIN = "skin"  # for experiments: the skin node (plant.skin_mc)
_NODE_IDS = {NODE_PAD: 0, NODE_HEATER: 1, NODE_SKIN: 2}

_NOISE_TABLES = {}  # noise half-range in 1/16 LSB -> OversampleNoise, shared by every model


def oversample_noise(noise_16):
    """The summed-noise distribution of one read at this noise (built once per process)."""
    noise = _NOISE_TABLES.get(noise_16)
    if noise is None:
        noise = _NOISE_TABLES[noise_16] = OversampleNoise(noise_16, OVERSAMPLE)
    return noise


def ntc_r16(temp_mc):
    """NTC resistance at temp_mc in 1/16 ohm: table + linear interpolation, clamped to -20..125 °C."""
    table = NTC_TABLE_OHM
    if temp_mc <= NTC_T_MIN_MC:
        return table[0] << 4
    if temp_mc >= NTC_T_MAX_MC:
        return table[len(table) - 1] << 4
    off = temp_mc - NTC_T_MIN_MC
    idx = off // NTC_T_STEP_MC
    frac = off - idx * NTC_T_STEP_MC
    r0 = table[idx] << 4
    return r0 + (((table[idx + 1] << 4) - r0) * frac + NTC_T_STEP_MC // 2) // NTC_T_STEP_MC


def ntc_ohm(temp_mc):
    """NTC resistance at temp_mc in ohm, rounded (see ntc_r16)."""
    return (ntc_r16(temp_mc) + 8) >> 4


def _divider_code(r_ntc, r_fixed):
    # 65536 - round(65536 * r_fixed / (r_ntc + r_fixed)), resistances in the same unit, by two
    # 8-bit long-division steps: intermediates stay below 2**30 while r_ntc + r_fixed < 2**22
    # (ideal_code: at most 1.9e6 in 1/16 ohm).
    if r_ntc <= 0:
        return 0
    den = r_ntc + r_fixed
    num = r_fixed << 8
    hi = num // den
    rem = num - hi * den
    lo = ((rem << 8) + (den >> 1)) // den
    return CODE_FULL - ((hi << 8) + lo)


def divider_code(r_ntc_ohm, r_fixed_ohm=R_FIXED_OHM):
    """Noise-free 16-bit-scale code 65536 * R_ntc / (R_ntc + R_fixed), rounded (0..65536)."""
    return _divider_code(r_ntc_ohm, r_fixed_ohm)


def ideal_code(temp_mc, r_fixed_ohm=R_FIXED_OHM):
    """The mean read_raw() code of a sensor body at temp_mc (no noise, no 12-bit quantisation).

    Strictly falling in temperature over -20..125 °C at 0.1 °C resolution.
    """
    return _divider_code(ntc_r16(temp_mc), r_fixed_ohm << 4)


def code_to_mc(code, r_fixed_ohm=R_FIXED_OHM):
    """Integer inverse of ideal_code (a test and trace helper, not the firmware's conversion).

    R_ntc = R_fixed * code / (65536 - code) in 1/16 ohm, then the table searched and
    interpolated. Clamped to the table range (-20..125 °C); codes at or beyond the rails give
    the range ends. Not a per-tick method: it may use big intermediates.
    """
    if code >= CODE_FULL:
        return NTC_T_MIN_MC
    if code <= 0:
        return NTC_T_MAX_MC
    r16 = (r_fixed_ohm * code * 16) // (CODE_FULL - code)
    table = NTC_TABLE_OHM
    last = len(table) - 1
    if r16 >= table[0] * 16:
        return NTC_T_MIN_MC
    if r16 <= table[last] * 16:
        return NTC_T_MAX_MC
    lo = 0  # table[lo] * 16 > r16 >= table[hi] * 16 (the table falls with temperature)
    hi = last
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if table[mid] * 16 > r16:
            lo = mid
        else:
            hi = mid
    span = (table[lo] - table[hi]) * 16
    return NTC_T_MIN_MC + lo * NTC_T_STEP_MC + ((table[lo] * 16 - r16) * NTC_T_STEP_MC + span // 2) // span


class ThermistorModel:
    """One NTC thermistor with lag, ADC noise and quantisation; implements `read_raw()`.

    ThermistorModel(rng, plant=None, node="pad", tau_ms=3000, noise_lsb=2, start_mc=None,
                    r_fixed_ohm=10000, ambient_mc=22000, detached_tau_ms=10000,
                    detached_coupling_permille=150)

    rng         sim.rng.Rng for ADC noise (None: no noise)
    plant       optional PadPlant: `update(dt_ms)` then follows plant.<node>_mc and
                takes the ambient from plant.ambient_mc
    node        "pad" (main sensor, default) or "heater" (second sensor) or "skin"
    tau_ms      first-order lag of the bead on its node: a glass bead under a fabric
                cover is ~1-5 s; 3 s default
    noise_lsb   uniform ADC noise per conversion, +- this many 12-bit LSB (RP2040:
                ENOB ~8.7-9 bits, i.e. a few LSB of noise)
    start_mc    initial sensor temperature (default: the node's, else ambient_mc)
    detached_*  when detached: target = ambient + coupling * (node - ambient) / 1000,
                lag detached_tau_ms (a bead in still air near the pad, ~10 s)

    Attributes: sensor_mc (the bead's own temperature), last_code (last read_raw()),
    open / short / detached (fault flags), ambient_mc, and every constructor argument.
    Methods: sample(node_mc, dt_ms), update(dt_ms), read_raw() -> int, true_code() -> int.
    """

    def __init__(
        self,
        rng=None,
        plant=None,
        node=NODE_PAD,
        tau_ms=3000,
        noise_lsb=2,
        start_mc=None,
        r_fixed_ohm=R_FIXED_OHM,
        ambient_mc=22000,
        detached_tau_ms=10000,
        detached_coupling_permille=150,
    ):
        if node not in _NODE_IDS:
            raise ValueError("node must be 'pad', 'heater' or 'skin', not %r" % (node,))
        if tau_ms <= 0 or detached_tau_ms <= 0:
            raise ValueError("time constants must be > 0 ms")
        if noise_lsb < 0:
            raise ValueError("noise_lsb must be >= 0")
        if not 0 < r_fixed_ohm < 16384:
            raise ValueError("r_fixed_ohm must be 1..16383")
        self._rng = rng
        self.plant = plant
        self.node = node
        self._node_id = _NODE_IDS[node]
        self.tau_ms = tau_ms
        self.noise_lsb = noise_lsb
        self.r_fixed_ohm = r_fixed_ohm
        self.detached_tau_ms = detached_tau_ms
        self.detached_coupling_permille = detached_coupling_permille
        self.ambient_mc = plant.ambient_mc if plant is not None else ambient_mc
        if start_mc is None:
            start_mc = self._node_mc() if plant is not None else self.ambient_mc
        self.sensor_mc = start_mc
        self._frac = 0  # sub-milli-degree part of sensor_mc, Q16
        self._f_dt = -1  # one-entry cache of the lag factor for (dt, tau)
        self._f_tau = -1
        self._f = 0
        self.open = False
        self.short = False
        self.detached = False
        self._v16 = ideal_code(start_mc, r_fixed_ohm)
        # what _v16 was computed from: sample() recomputes only when either changed (the bead's
        # temperature stays put on most 10 ms ticks, in whole milli-degrees)
        self._v16_mc = start_mc
        self._v16_r_fixed_ohm = r_fixed_ohm
        self.last_code = self._v16
        # the summed-noise table for noise_lsb, made now, not in the middle of a measured run
        self._noise = oversample_noise(noise_lsb << 4) if noise_lsb and rng is not None else None

    def _node_mc(self):
        plant = self.plant
        nid = self._node_id
        if nid == 0:
            return plant.pad_mc
        if nid == 1:
            return plant.heater_mc
        return plant.skin_mc

    def update(self, dt_ms):
        """Follow the attached plant's node for dt_ms (ambient taken from the plant)."""
        plant = self.plant
        self.ambient_mc = plant.ambient_mc
        nid = self._node_id  # _node_mc() inlined: called every tick
        if nid == 0:
            self.sample(plant.pad_mc, dt_ms)
        elif nid == 1:
            self.sample(plant.heater_mc, dt_ms)
        else:
            self.sample(plant.skin_mc, dt_ms)

    def sample(self, node_mc, dt_ms):
        """Advance the lag by dt_ms toward node_mc (or the detached target); refresh the true code.

        Exact first-order step: sensor += (target - sensor) * (1 - exp(-dt/tau)), the factor in
        Q16 and the product carried with a Q16 remainder so small errors never stall the bead.
        """
        if self.detached:
            amb = self.ambient_mc
            target = amb + (node_mc - amb) * self.detached_coupling_permille // 1000
            tau = self.detached_tau_ms
        else:
            target = node_mc
            tau = self.tau_ms
        if dt_ms > 0:
            if dt_ms != self._f_dt or tau != self._f_tau:
                self._f_dt = dt_ms
                self._f_tau = tau
                self._f = one_minus_exp_q16(ratio_q16(dt_ms, tau))
            f = self._f
            d = target - self.sensor_mc
            # d * f + frac = (a >> 8) << 16 + b, split so no product reaches 2**30
            a = (d >> 8) * f
            b = (d & 255) * f + ((a & 255) << 8) + self._frac
            self.sensor_mc += (a >> 8) + (b >> 16)
            self._frac = b & 0xFFFF
        sensor_mc = self.sensor_mc
        r_fixed_ohm = self.r_fixed_ohm
        if sensor_mc != self._v16_mc or r_fixed_ohm != self._v16_r_fixed_ohm:
            self._v16 = ideal_code(sensor_mc, r_fixed_ohm)
            self._v16_mc = sensor_mc
            self._v16_r_fixed_ohm = r_fixed_ohm

    def true_code(self):
        """Noise-free code of the current state (faults included): 65536 open, 0 short."""
        if self.open:
            return CODE_FULL
        if self.short:
            return 0
        return self._v16

    def read_raw(self):
        """Sum of OVERSAMPLE 12-bit conversions, 0..65520.

        Each conversion is (v + u) >> 4 (v: the true code plus half an LSB, u: noise in 1/16
        LSB), clipped to 0..4095. Away from the rails no conversion can clip, and the sum is
        drawn in one step from its exact distribution (sim.adc_noise: one random number, not
        sixteen). Near a rail (an open or shorted sensor) every conversion is drawn and clipped.
        """
        v = self.true_code() + 8  # + half a 12-bit LSB: each conversion rounds
        n = self.noise_lsb << 4  # noise half-range in 1/16 LSB
        rng = self._rng
        if not n or rng is None:
            c = v >> 4
            if c < 0:
                c = 0
            elif c > CONV_MAX:
                c = CONV_MAX
            total = c * OVERSAMPLE
        elif v - n >= 0 and v + n < (CONV_MAX + 1) << 4:
            noise = self._noise
            if noise is None or noise.noise_16 != n:
                noise = self._noise = oversample_noise(n)
            total = (v >> 4) * OVERSAMPLE + noise.offset(v & 15, rng.next_u32() >> 8)
        else:
            total = self._read_clipped(v, n, rng)
        self.last_code = total
        return total

    def _read_clipped(self, v, n, rng):
        """Conversion by conversion, each clipped to 0..CONV_MAX: the rails (open, short)."""
        span = 2 * n + 1
        low = v - n  # the lowest a conversion can be, in 1/16 LSB (before >> 4)
        total = 0
        for _ in range(OVERSAMPLE):
            c = (low + rng.next_u32() % span) >> 4
            if c < 0:
                c = 0
            elif c > CONV_MAX:
                c = CONV_MAX
            total += c
        return total
