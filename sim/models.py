"""Physics of the spine: the electrode-skin load and the output-sense ADC.

The output stage is a current source with a compliance voltage: it pushes the
commanded current until the electrode voltage reaches compliance, then
saturates. The load is the usual electrode-skin equivalent circuit: a series
resistance (electrolyte/gel, deep tissue) in series with a parallel R-C
(stratum corneum). During a constant-current phase the capacitor charges, so
the voltage rises over the phase; long phases into dry skin hit compliance
first. An electrode that is off is an open circuit (nothing flows). The sense
path is a 12-bit ADC over 0..100 mA (about 24 uA per code) with +-1 code of
noise.

Portable subset: integer arithmetic only (no floats, no `math`), so CPython
and the MicroPython VM produce byte-identical results; intermediates stay
below 2**30 (MicroPython small ints, no heap) over the documented ranges and
stay exact (just slower) outside them.
"""

from firmware.compat import const

COMPLIANCE_MV = const(100000)  # 100 V: default compliance of the output stage
SENSE_FULL_SCALE_UA = const(100000)
SENSE_CODES = const(4096)
OPEN_CIRCUIT = const(0)  # series_ohm value meaning "no contact"

# 1 - exp(-x) in 1/65536 units ("Q16") at x = k/32 time constants, k = 0..256
# (0..8 tau). Generated once offline with CPython:
#     [round(65536 * (1 - math.exp(-k / 32))) for k in range(257)]
# Linear interpolation between entries is within 0.29 % of the exact value for
# x >= 1/32 (0.26 % from the chord, error <= h*h/8 with h = 1/32, and the rest from
# rounding the entries; the worst, 0.281 %, is near x = 1.4/32); below 1/32 the first step uses
# x - x*x/2 instead, because a chord from 0 would be up to h/2 = 1.6 % low there.
# Beyond 8 tau the capacitor counts as fully charged (exp(-8) = 0.034 %).
# (ElectrodeLoad uses t / C instead of the first step: see effective_r16.)
EXP_ONE = const(65536)  # 1.0 in Q16
EXP_STEP_SHIFT = const(11)  # Q16 x per table step: 65536 / 32 = 2048 = 1 << 11
EXP_X_MAX = const(524288)  # 8 tau in Q16
EXP_TABLE = (
    0, 2016, 3971, 5865, 7701, 9480, 11205, 12876, 14497, 16067, 17589, 19064,
    20494, 21880, 23223, 24525, 25786, 27009, 28195, 29344, 30457, 31536, 32582, 33596,
    34579, 35531, 36455, 37349, 38217, 39057, 39872, 40661, 41427, 42168, 42887, 43584,
    44260, 44914, 45549, 46164, 46760, 47337, 47897, 48440, 48966, 49476, 49970, 50449,
    50913, 51363, 51799, 52222, 52631, 53028, 53413, 53786, 54148, 54498, 54838, 55167,
    55486, 55795, 56095, 56385, 56667, 56940, 57204, 57460, 57709, 57950, 58183, 58409,
    58629, 58841, 59047, 59247, 59440, 59628, 59810, 59986, 60156, 60322, 60482, 60638,
    60789, 60935, 61076, 61213, 61346, 61475, 61600, 61721, 61839, 61952, 62063, 62170,
    62273, 62374, 62471, 62565, 62657, 62745, 62831, 62914, 62995, 63073, 63149, 63222,
    63293, 63362, 63429, 63494, 63557, 63618, 63677, 63734, 63790, 63843, 63895, 63946,
    63995, 64042, 64088, 64133, 64176, 64218, 64258, 64298, 64336, 64373, 64408, 64443,
    64477, 64509, 64541, 64572, 64601, 64630, 64658, 64685, 64711, 64736, 64761, 64785,
    64808, 64830, 64852, 64873, 64894, 64913, 64932, 64951, 64969, 64986, 65003, 65020,
    65036, 65051, 65066, 65080, 65094, 65108, 65121, 65134, 65146, 65158, 65170, 65181,
    65192, 65203, 65213, 65223, 65233, 65242, 65251, 65260, 65268, 65276, 65284, 65292,
    65300, 65307, 65314, 65321, 65327, 65334, 65340, 65346, 65352, 65358, 65363, 65368,
    65374, 65379, 65383, 65388, 65393, 65397, 65401, 65405, 65409, 65413, 65417, 65421,
    65424, 65428, 65431, 65434, 65437, 65441, 65443, 65446, 65449, 65452, 65454, 65457,
    65459, 65462, 65464, 65466, 65468, 65470, 65472, 65474, 65476, 65478, 65480, 65482,
    65483, 65485, 65486, 65488, 65489, 65491, 65492, 65494, 65495, 65496, 65497, 65499,
    65500, 65501, 65502, 65503, 65504, 65505, 65506, 65507, 65508, 65509, 65509, 65510,
    65511, 65512, 65513, 65513, 65514,
)

_TAU_MAX = const(4194304)  # 2**22: keeps (remainder << 8) in ratio_q16 below 2**30


def ratio_q16(t, tau):
    """t / tau in Q16, floored, for integer t >= 0 and tau (same unit); EXP_X_MAX from 8 tau on.

    tau <= 0 means no time constant (the capacitor is charged at once).
    Non-decreasing in t.
    """
    if t <= 0:
        return 0
    if tau <= 0 or t >> 3 >= tau:  # t >= 8 tau, without the product
        return EXP_X_MAX
    while tau >= _TAU_MAX:  # only for tau above 4 ms (in ns): keep the products small
        tau >>= 1
        t >>= 1
    # long division, 8 bits at a time (t < 8 tau here, so the result is < 2**19)
    whole = t // tau
    rem = (t - whole * tau) << 8
    hi = rem // tau
    rem = (rem - hi * tau) << 8
    return (whole << 16) | (hi << 8) | (rem // tau)


def one_minus_exp_q16(x):
    """1 - exp(-x) in Q16 (0..65536) for x in Q16 (x >= 0). Non-decreasing in x."""
    if x >= EXP_X_MAX:
        return EXP_ONE
    idx = x >> EXP_STEP_SHIFT
    if idx == 0:
        # first step: x - x^2/2 (+ x^3/6, which is < 0.4 LSB here)
        return x - ((x * x + 65536) >> 17)
    base = EXP_TABLE[idx]
    frac = x & ((1 << EXP_STEP_SHIFT) - 1)
    return base + (((EXP_TABLE[idx + 1] - base) * frac + (1 << (EXP_STEP_SHIFT - 1))) >> EXP_STEP_SHIFT)


def _rp_times_q16(rp, f):
    """Rp * f / 65536 in 1/16 ohm, rounded; products stay below 2**30 for Rp < 4 Mohm."""
    return ((rp >> 8) * f + (((rp & 255) * f) >> 8) + 8) >> 4


class ElectrodeLoad:
    """One channel's electrode pair on skin, driven by a compliance-limited current source.

    Equivalent circuit: series_ohm in series with (parallel_ohm || capacitance_nf).
    Typical TENS electrode-skin values (hydrogel electrodes, a few cm^2):
    series ~200-1000 ohm, parallel ~1-10 kohm, capacitance ~10-200 nF;
    IEC 60601-2-10 specifies output into resistive reference loads of 500 ohm
    to 1 kohm. compliance_mv is the highest voltage the output stage can
    reach (100 V default). All four attributes may be changed at run time
    (fault injection): series_ohm = OPEN_CIRCUIT (0) means the electrode is
    off; raising series/parallel resistance models drying or peeling.

    After drive(): delivered_ua (the current that flowed), at_compliance
    (the stage saturated, or nothing was connected) and peak_mv (electrode
    voltage at the end of the phase).

    Integer ranges: every intermediate stays a MicroPython small int (< 2**30,
    no heap) for parallel_ohm < 512 kohm, series + parallel < 4 Mohm,
    parallel_ohm * capacitance_nf < 2**30 (tau < 1 s), compliance_mv < 1073 V
    and phase_us < 1 s; beyond that the results are still exact, only slower.
    """

    def __init__(self, series_ohm=500, parallel_ohm=2000, capacitance_nf=100, compliance_mv=COMPLIANCE_MV):
        self.series_ohm = series_ohm
        self.parallel_ohm = parallel_ohm
        self.capacitance_nf = capacitance_nf
        self.compliance_mv = compliance_mv
        self.delivered_ua = 0
        self.at_compliance = False
        self.peak_mv = 0
        # One-entry cache of drive()'s figures (r16, max_ua): a channel fires the same phase into
        # the same load pulse after pulse. The key is every input they depend on, so a run-time
        # change of any attribute (a fault) misses. series -1 never hits: drive() returns before.
        self._key_series_ohm = -1
        self._key_parallel_ohm = -1
        self._key_capacitance_nf = -1
        self._key_compliance_mv = -1
        self._key_phase_us = -1
        self._cached_r16 = 0
        self._cached_max_ua = 0

    def effective_r16(self, phase_us):
        """Electrode voltage / current at the end of a constant-current phase, in 1/16 ohm.

        Rs + Rp * (1 - exp(-t / tau)) with tau = Rp * C (ohm * nF = ns). 1/16 ohm
        keeps the result within 0.5 % of the exact model down to Rs ~ 100 ohm.
        """
        r16 = self.series_ohm << 4
        rp = self.parallel_ohm
        if rp <= 0 or phase_us <= 0:
            return r16
        t_ns = phase_us * 1000
        x = ratio_q16(t_ns, rp * self.capacitance_nf)
        if x >= 1 << EXP_STEP_SHIFT:
            return r16 + _rp_times_q16(rp, one_minus_exp_q16(x))
        # Early in the phase (t < tau/32) the capacitor takes nearly all the current:
        # Rp * (1 - exp(-x)) = (t / C) * (1 - x/2 + ...), t / C in ohm (ns / nF). Taken from
        # t / C directly because f in Q16 is too coarse here when Rp is large (Rp / 65536 per LSB).
        lin16 = (t_ns << 4) // self.capacitance_nf  # ~<= Rp / 2 (C > 0 here, since x < 8 tau)
        x16 = (lin16 << 12) // rp  # x in Q16 from lin16 alone, so the result is monotonic in lin16
        cap16 = lin16 - ((lin16 * x16 + 65536) >> 17)
        edge16 = _rp_times_q16(rp, EXP_TABLE[1])  # the table path's value at x = 1/32
        return r16 + (cap16 if cap16 < edge16 else edge16)  # so R never drops across the seam

    def _load_figures(self, comp, phase_us):
        """Fill drive()'s cache for the present load, comp (clamped) and phase_us: R_eff (1/16 ohm)
        and the most current within compliance. A separate method keeps drive()'s frame small
        (MicroPython puts a frame above 11 slots on the heap, every call)."""
        r16 = self.effective_r16(phase_us)
        # floor(comp * 1000 * 16 / r16), split to keep ints small
        lim = comp * 1000
        q = lim // r16
        self._cached_max_ua = (q << 4) + (((lim - q * r16) << 4) // r16)
        self._cached_r16 = r16
        self._key_series_ohm = self.series_ohm
        self._key_parallel_ohm = self.parallel_ohm
        self._key_capacitance_nf = self.capacitance_nf
        self._key_compliance_mv = comp
        self._key_phase_us = phase_us

    def drive(self, amp_ua, phase_us):
        """Push amp_ua for phase_us; return the delivered current (uA).

        V = I * R_eff. Within compliance the full current flows. Above it the
        source saturates: delivered = I * compliance / V = compliance / R_eff,
        i.e. floor(compliance_mv * 16000 / R16), and peak_mv = compliance.
        Allocation-free.
        """
        comp = self.compliance_mv
        if comp < 0:
            comp = 0
        if amp_ua <= 0:
            self.delivered_ua = 0
            self.at_compliance = False
            self.peak_mv = 0
            return 0
        series_ohm = self.series_ohm
        if series_ohm <= OPEN_CIRCUIT:  # no contact (a negative value is treated the same)
            self.delivered_ua = 0
            self.at_compliance = True
            self.peak_mv = comp
            return 0
        if (
            phase_us != self._key_phase_us
            or series_ohm != self._key_series_ohm
            or comp != self._key_compliance_mv
            or self.parallel_ohm != self._key_parallel_ohm
            or self.capacitance_nf != self._key_capacitance_nf
        ):
            self._load_figures(comp, phase_us)
        max_ua = self._cached_max_ua
        if amp_ua <= max_ua:
            self.delivered_ua = amp_ua
            self.at_compliance = False
            # floor(amp * r16 / 16 / 1000); amp * (r16 >> 4) <= comp * 1000 here
            r16 = self._cached_r16
            self.peak_mv = (amp_ua * (r16 >> 4) + ((amp_ua * (r16 & 15)) >> 4)) // 1000
            return amp_ua
        self.delivered_ua = max_ua
        self.at_compliance = True
        self.peak_mv = comp
        return max_ua


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
