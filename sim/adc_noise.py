"""The noise of an oversampled ADC read, drawn in one step instead of one per conversion.

A read sums `conversions` conversions, each (v + u) >> 4: v the true code plus half an LSB,
in 1/16 LSB, and u uniform in -noise_16..noise_16. Written as v = 16 * q + r, each
conversion is q + ((r + u) >> 4), so the sum is conversions * q plus an offset whose
distribution depends only on the residue r (0..15). `OversampleNoise` computes that
distribution exactly once per residue (integer convolution), keeps it as a cumulative
table in 2**24ths, and draws an offset with one 24-bit random number and a short walk
from a 256-entry index. Same distribution as drawing every conversion (to 2**-24 in
probability), for a sixteenth of the random numbers: the per-conversion draws were the
simulator's most expensive loop. Clipping at the ADC's rails is not modelled here; the
caller draws conversion by conversion where a conversion could clip.

Portable (MicroPython and CPython): the tables are built with big integers once, in
the constructor; `offset` uses only small integers and allocates nothing.
"""

CDF_BITS = 24
CDF_ONE = 1 << CDF_BITS
INDEX_BITS = 8
_INDEX_SHIFT = CDF_BITS - INDEX_BITS


def _one_conversion(residue, noise_16):
    """(lowest offset, counts of each offset from it) of (residue + u) >> 4 over every u."""
    low = (residue - noise_16) >> 4
    high = (residue + noise_16) >> 4
    counts = [0] * (high - low + 1)
    for u in range(-noise_16, noise_16 + 1):
        counts[((residue + u) >> 4) - low] += 1
    return low, counts


def _convolve(a, b):
    out = [0] * (len(a) + len(b) - 1)
    for i in range(len(a)):
        ai = a[i]
        if ai:
            for j in range(len(b)):
                out[i + j] += ai * b[j]
    return out


def _power(counts, n):
    """The n-fold convolution of counts (binary exponentiation: a handful of products)."""
    result = [1]
    while n:
        if n & 1:
            result = _convolve(result, counts)
        n >>= 1
        if n:
            counts = _convolve(counts, counts)
    return result


class OversampleNoise:
    """Per residue, the distribution of the summed offset of `conversions` noisy conversions.

    `lowest` / `highest`: the extreme per-conversion offsets over every residue: how far
    from v >> 4 a single conversion can land (so where clipping at a rail can begin).
    """

    def __init__(self, noise_16, conversions):
        if noise_16 < 0 or conversions < 1:
            raise ValueError("noise_16 must be >= 0 and conversions >= 1")
        self.noise_16 = noise_16
        self.conversions = conversions
        self._low = []  # per residue: the lowest possible summed offset
        self._cdf = []  # per residue: cumulative probability in 2**24ths, the last exactly 2**24
        self._index = []  # per residue: for each top 8 bits of a draw, where the walk starts
        self.lowest = 0
        self.highest = 0
        for residue in range(16):
            low, counts = _one_conversion(residue, noise_16)
            high = low + len(counts) - 1
            self.lowest = min(self.lowest, low)
            self.highest = max(self.highest, high)
            dist = _power(counts, conversions)
            total = (2 * noise_16 + 1) ** conversions
            cdf = []
            acc = 0
            for weight in dist:
                acc += weight
                cdf.append(acc * CDF_ONE // total)
            index = []
            i = 0
            for top in range(1 << INDEX_BITS):
                while cdf[i] <= top << _INDEX_SHIFT:
                    i += 1
                index.append(i)
            self._low.append(low * conversions)
            self._cdf.append(tuple(cdf))
            self._index.append(bytes(index) if index[-1] < 256 else tuple(index))  # bytes: 8x smaller

    def offset(self, residue, draw24):
        """The summed offset for a uniform draw24 in 0..2**24-1: the first entry above it."""
        cdf = self._cdf[residue]
        i = self._index[residue][draw24 >> _INDEX_SHIFT]
        while cdf[i] <= draw24:
            i += 1
        return self._low[residue] + i

    def probability(self, residue, offset):
        """P(summed offset == offset) in 2**24ths (for tests and documentation)."""
        i = offset - self._low[residue]
        cdf = self._cdf[residue]
        if i < 0 or i >= len(cdf):
            return 0
        return cdf[i] - (cdf[i - 1] if i else 0)
