"""NTC thermistor: ADC code -> milli-degrees C, by table (integers only).

THE CIRCUIT (default orientation, DIVIDER_NTC_LOW; the simulator matches it)
---------------------------------------------------------------------------
    3.3 V ---[ R_FIXED 10 k ]---+---[ NTC 10 k @ 25 C, B 3950 ]--- GND
                                |
                               ADC (ratiometric: the ADC reference is the same 3.3 V)

    code = round(65535 * R_ntc / (R_ntc + R_FIXED))      0..65535 (oversampled, 16 bit)
    R_ntc(T) = 10000 * exp(3950 * (1/T - 1/298.15))      T in kelvin (Beta model)

  So hotter reads LOWER: 25 C -> 32768, 40 C -> 22706, 43 C -> 20964, 45 C -> 19860.
  An open NTC reads full scale (65535: "very cold"), a shorted NTC reads 0 ("very hot").
  (A sum of 16 12-bit conversions, full scale 65520 = 65536 * ratio, differs from this
  scale by 1/65536: under 1 mC. Anything above about 55930 codes reads colder than
  -10 C and counts toward sensor_open; below about 6430, hotter than 85 C: sensor_short.)

DIVIDER_NTC_HIGH is the mirror circuit (NTC from 3.3 V to the ADC node, R_FIXED
to ground): code = round(65535 * R_FIXED / (R_ntc + R_FIXED)); hotter reads
higher, open reads 0, short reads 65535. `code_to_mc` flips such a code
(65535 - code) and uses the same table, so in both orientations "open" means
"colder than any real pad" and "short" means "hotter than any real pad".

THE TABLE
---------
TABLE[i] is the temperature in milli-C at normalized code i * 512 (i = 0..128),
generated once offline with CPython and pasted here:

    import math
    def t(c):
        if c <= 0: return 150000
        if c >= 65535: return -55000
        r = 10000.0 * c / (65535.0 - c)
        k = 1.0 / (1.0 / 298.15 + math.log(r / 10000.0) / 3950.0)
        return max(-55000, min(150000, int(round((k - 273.15) * 1000))))
    TABLE = [t(512 * i) for i in range(129)]

(clipped to -55 C .. 150 C at the rails, which are open/short territory anyway;
tests/fw/test_heat_thermistor.py regenerates it and compares). Linear
interpolation between entries is within 3.5 mC of the exact Beta curve over
15..50 C and within 32 mC over -10..85 C: far below the sensor's own
tolerance (B3950 parts are +-1 % in R25, about +-0.25 C).

Integer cost per conversion: one shift, one mask, one multiply (< 2^30), one
floor division. No allocation.
"""

from firmware.compat import const

DIVIDER_NTC_LOW = const(0)  # default: fixed resistor to 3.3 V, NTC to ground (hot -> low code)
DIVIDER_NTC_HIGH = const(1)  # NTC to 3.3 V, fixed resistor to ground (hot -> high code)

CODE_MAX = const(65535)
_STEP_SHIFT = const(9)  # 512 codes per table step
_STEP_MASK = const(511)
_STEP = const(512)

R25_OHM = const(10000)  # what the table was generated for (documentation; the table is fixed)
BETA_K = const(3950)
R_FIXED_OHM = const(10000)

TABLE = (
    150000, 150000, 150000, 141824, 129320, 120056, 112738, 106712, 101601, 97169, 93260, 89765,
    86605, 83722, 81071, 78616, 76331, 74192, 72182, 70284, 68487, 66779, 65151, 63596, 62106,
    60675, 59299, 57973, 56692, 55454, 54254, 53090, 51959, 50859, 49788, 48744, 47724, 46728,
    45754, 44801, 43866, 42950, 42050, 41167, 40298, 39444, 38602, 37774, 36956, 36150, 35354,
    34568, 33792, 33023, 32263, 31510, 30764, 30025, 29292, 28565, 27843, 27126, 26413, 25704,
    24999, 24298, 23599, 22903, 22209, 21517, 20826, 20137, 19449, 18761, 18073, 17385, 16697,
    16007, 15317, 14624, 13930, 13233, 12534, 11831, 11124, 10413, 9698, 8978, 8252, 7520, 6781,
    6034, 5280, 4517, 3745, 2962, 2168, 1362, 544, -289, -1138, -2003, -2886, -3788, -4712,
    -5660, -6634, -7635, -8668, -9735, -10841, -11989, -13186, -14436, -15748, -17130, -18594,
    -20153, -21824, -23631, -25604, -27786, -30237, -33050, -36380, -40506, -46040, -54852,
    -55000,
)


def normalize(code, divider=DIVIDER_NTC_LOW):
    """Clamp to 0..65535 and map to the DIVIDER_NTC_LOW sense (high code = cold)."""
    if code < 0:
        code = 0
    elif code > CODE_MAX:
        code = CODE_MAX
    if divider == DIVIDER_NTC_HIGH:
        code = CODE_MAX - code
    return code


def code_to_mc(code, divider=DIVIDER_NTC_LOW):
    """ADC code (0..65535) -> milli-C, interpolated in TABLE. Monotone; clipped to -55..150 C."""
    code = normalize(code, divider)
    i = code >> _STEP_SHIFT
    low = TABLE[i]
    return low + (TABLE[i + 1] - low) * (code & _STEP_MASK) // _STEP


def mc_to_code(mc, divider=DIVIDER_NTC_LOW):
    """Inverse of code_to_mc (for fakes, tests and the simulator): the code, rounded to the
    nearest, that reads mc. Binary search over the table, then interpolation. Integers only."""
    if mc >= TABLE[0]:
        code = 0
    elif mc <= TABLE[128]:
        code = CODE_MAX
    else:
        lo = 0
        hi = 128  # TABLE[lo] > mc >= TABLE[hi] (the table falls with the code)
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if TABLE[mid] > mc:
                lo = mid
            else:
                hi = mid
        span = TABLE[lo] - TABLE[hi]
        code = (lo << _STEP_SHIFT) + ((TABLE[lo] - mc) * _STEP + span // 2) // span
        if code > CODE_MAX:
            code = CODE_MAX
    if divider == DIVIDER_NTC_HIGH:
        code = CODE_MAX - code
    return code
