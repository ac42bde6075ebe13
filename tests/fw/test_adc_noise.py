"""sim.adc_noise: the summed offset of noisy conversions, drawn in one step.

Portable: runs under CPython (pytest) and the MicroPython VM (tests/mp_runner.py).
"""

from sim.adc_noise import CDF_ONE, OversampleNoise
from tests.fw.portable import Lcg


def _draw24(rng):
    return (rng.below(4096) << 12) | rng.below(4096)  # Lcg.below gives at most 23 bits


def _enumerated(residue, noise_16, conversions):
    """Counts of every summed offset by walking all (2n+1)**k noise combinations."""
    counts = {}
    span = 2 * noise_16 + 1
    for combo in range(span ** conversions):
        total = 0
        for _ in range(conversions):
            u = combo % span - noise_16
            combo //= span
            total += (residue + u) >> 4
        counts[total] = counts.get(total, 0) + 1
    return counts, span ** conversions


def test_distribution_is_the_enumerated_one():
    for noise_16 in (0, 5, 16, 32):
        for conversions in (1, 2, 3):
            if (2 * noise_16 + 1) ** conversions > 40000:
                continue
            noise = OversampleNoise(noise_16, conversions)
            for residue in range(16):
                counts, total = _enumerated(residue, noise_16, conversions)
                cumulative = 0
                seen = 0
                for offset in range(min(counts), max(counts) + 1):
                    before = cumulative * CDF_ONE // total
                    cumulative += counts.get(offset, 0)
                    expected = cumulative * CDF_ONE // total - before
                    assert noise.probability(residue, offset) == expected, (noise_16, conversions, residue, offset)
                    seen += expected
                assert seen == CDF_ONE
                assert noise.probability(residue, min(counts) - 1) == 0
                assert noise.probability(residue, max(counts) + 1) == 0


def test_offset_is_the_inverse_of_the_cumulative_table():
    noise = OversampleNoise(32, 16)
    rng = Lcg(11)
    for _ in range(3000):
        residue = rng.below(16)
        draw = _draw24(rng)
        offset = noise.offset(residue, draw)
        # the draw falls inside this offset's slice of the cumulative table
        below = 0
        o = offset - 1
        while noise.probability(residue, o):
            below += noise.probability(residue, o)
            o -= 1
        assert below <= draw < below + noise.probability(residue, offset), (residue, draw, offset)
    # the ends of the draw range reach the ends of the distribution that have any weight
    for residue in range(16):
        low = noise.offset(residue, 0)
        assert noise.probability(residue, low) > 0 and noise.probability(residue, low - 1) == 0
        high = noise.offset(residue, CDF_ONE - 1)
        assert noise.probability(residue, high) > 0


def test_sixteen_conversions_match_drawing_each():
    """The sampled sum has the mean and spread of 16 conversions drawn one by one."""
    noise = OversampleNoise(32, 16)
    rng = Lcg(5)
    n = 3000
    for residue in (0, 7, 8, 15):
        direct = 0
        direct_sq = 0
        sampled = 0
        sampled_sq = 0
        for _ in range(n):
            total = 0
            for _ in range(16):
                total += (residue + rng.below(65) - 32) >> 4
            direct += total
            direct_sq += total * total
            s = noise.offset(residue, _draw24(rng))
            sampled += s
            sampled_sq += s * s
        # means agree within 0.25 LSB (the std of a mean of 3000 sums of spread ~2.3 is ~0.04)
        assert abs(direct - sampled) * 4 <= n, (residue, direct, sampled)
        var_direct = direct_sq * n - direct * direct
        var_sampled = sampled_sq * n - sampled * sampled
        assert abs(var_direct - var_sampled) * 5 <= var_direct, (residue, var_direct, var_sampled)


def test_no_noise_is_one_offset():
    noise = OversampleNoise(0, 16)
    for residue in range(16):
        assert noise.offset(residue, 0) == 0 and noise.offset(residue, CDF_ONE - 1) == 0
    assert noise.lowest == 0 and noise.highest == 0


def test_bad_arguments_are_refused():
    for args in ((-1, 16), (4, 0)):
        try:
            OversampleNoise(*args)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (args,))
