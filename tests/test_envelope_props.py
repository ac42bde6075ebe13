"""Property tests of the safety envelope (CPython, hypothesis).

For random valid settings and amplitudes: check() either raises naming a limit
whose figure really is over it, or every limit holds (figures recomputed here
independently, in floating point); max_amp_ua is the exact boundary; and the
engine itself, driven at max_amp_ua through a whole modulation cycle, never
fires a pulse outside the envelope Envelope computed for the setting, nor
breaks the r.m.s. limit over any 1 s window of what it actually fired.
"""

import math
import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware import envelope as E
from firmware import limits as L
from firmware.protocols import messages as msg
from firmware.stim import BREACH, Channel
from tests.strategies import parsed_settings

LIMITS = {
    "peak_current": L.AMP_LIMIT_UA,
    "net_charge": 0,
    "phase_charge": L.PHASE_CHARGE_LIMIT_NC,
    "rms_current": L.RMS_LIMIT_UA,
    "energy_per_pulse": L.ENERGY_LIMIT_UJ,
    "current_density": L.CURRENT_DENSITY_LIMIT_UA_CM2,
    "power_density": L.POWER_DENSITY_LIMIT_UW_CM2,
    "mod_amp_slope": L.MOD_AMP_SLOPE_LIMIT_UA_S,
}
MESSAGE = re.compile(r"^([a-z_]+) (\d+) (\S+) exceeds the limit (\d+) (\S+) at (\d+) uA \((.+)\)$")
WINDOW_US = L.TICK_MS * 1000
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def figures(env):
    return {check[0]: check[1] for check in env.limit_checks()}


def float_figures(s, amp_ua):
    """The envelope again, from the physics, in floating point (SI units)."""
    amp1, amp2 = E.phase_amps(s, amp_ua)
    i1, i2 = amp1 * 1e-6, amp2 * 1e-6
    t1, t2 = s.phase_us * 1e-6, s.phase_us * s.ratio * 1e-6
    pps = E.pulses_per_s(s)
    i2t = i1 * i1 * t1 + i2 * i2 * t2  # A^2 s per pulse
    rms = math.sqrt(i2t * pps)  # A, averaged over 1 s
    return {
        "peak_current": amp1,
        "phase_charge": i1 * t1 * 1e9,  # nC
        "net_charge": abs(i1 * t1 - i2 * t2) * 1e9,
        "rms_current": rms * 1e6,
        "energy_per_pulse": L.REFERENCE_LOAD_OHM * i2t * 1e6,  # uJ
        "current_density": rms * 1e6 / s.area_cm2,
        "power_density": L.REFERENCE_LOAD_OHM * i2t * pps * 1e6 / s.area_cm2,  # uW/cm2
        # the amplitude falls by amp * pct / 100 over half the modulation period, and back
        "mod_amp_slope": amp_ua * s.mod_amp_pct / 100 / (s.mod_amp_ms / 2000) if s.mode == "modulated" else 0,
    }


@PROFILE
@given(parsed_settings(), st.one_of(st.integers(0, L.AMP_LIMIT_UA + 1000), st.sampled_from([0, L.AMP_LIMIT_UA])))
def test_check_names_a_broken_limit_or_every_limit_holds(s, amp_ua):
    env = E.Envelope(s, amp_ua)
    got = figures(env)
    exact = float_figures(s, amp_ua)
    assert set(got) == set(LIMITS) == set(exact)
    for name in got:
        # integer figures round up: never below the exact value, less than a unit (or two, after
        # the r.m.s. is divided by the area) above it
        slack = 2.0001 if name == "current_density" else 1.0001
        if name == "mod_amp_slope":  # a bound on the engine's integer steps (the engine test below
            assert exact[name] * (1 - 1e-9) <= got[name], (got, exact)  # checks them): never below the mean
            continue
        assert exact[name] * (1 - 1e-9) - 1e-9 <= got[name] <= exact[name] + slack, (name, got, exact)
    assert env.net_charge_nc == 0
    try:
        E.check(s, amp_ua)
    except msg.RequestError as err:
        assert err.code == msg.E_ENVELOPE == "envelope"
        match = MESSAGE.match(err.message)
        assert match, err.message
        name, value, unit, limit, unit2, at = match.group(1), int(match.group(2)), match.group(3), int(match.group(4)), match.group(5), int(match.group(6))
        assert name in LIMITS and unit == unit2 and at == amp_ua
        assert limit == LIMITS[name] and value == got[name] > limit, (err.message, got)
        # the first broken limit, in the documented order
        for other in LIMITS:
            if other == name:
                break
            assert got[other] <= LIMITS[other], (other, got)
    else:
        for name in LIMITS:
            assert got[name] <= LIMITS[name], (name, got)
        assert amp_ua <= E.max_amp_ua(s)


@PROFILE
@given(parsed_settings())
def test_max_amp_is_the_exact_boundary(s):
    top = E.max_amp_ua(s)
    assert 0 < top <= L.AMP_LIMIT_UA
    E.check(s, top)
    if top < L.AMP_LIMIT_UA:
        try:
            E.check(s, top + 1)
        except msg.RequestError as err:
            assert err.code == msg.E_ENVELOPE and err.message.startswith(E.binding_limit(s) + " ")
        else:
            raise AssertionError("max_amp_ua + 1 passed the envelope")
    else:
        assert E.binding_limit(s) == "peak_current"
    # one user step is never more than 2 % of the setting's maximum output at the default area
    # (a fast full-depth amplitude modulation may cap it at 20 mA: 40 steps, 2.5 % each)
    if s.area_cm2 >= L.AREA_DEFAULT_CM2 and E.binding_limit(s) != "mod_amp_slope":
        assert E.Envelope(s, L.AMP_STEP_UA).rms_ua * 100 <= 2 * E.Envelope(s, top).rms_ua + 100


def cycle_ms(s):
    """A whole cycle of the setting's pattern, and at least two seconds (for 1 s windows)."""
    if s.mode == "modulated":
        periods = [0]
        for pct, period in ((s.mod_amp_pct, s.mod_amp_ms), (s.mod_width_pct, s.mod_width_ms), (s.mod_rate_pct, s.mod_rate_ms)):
            if pct:
                periods.append(period)
        longest = max(periods)
    elif s.mode == "strength_duration":
        longest = s.sd_period_ms
    elif s.mode == "burst":
        longest = 2 * s.train_ms
    else:
        longest = 0
    return max(longest + 1000, 2000)


class Recorder:
    def __init__(self):
        self.pulses = []

    def fire(self, ch, start_us, amp1, phase1, gap, amp2, phase2):
        self.pulses.append((self.now_us + start_us, amp1, phase1, gap, amp2, phase2))
        return True


def max_window_i2t(pulses):
    """Largest sum of i^2 t (uA^2 us) over any half-open 1 s window of the pulses."""
    best = 0
    total = 0
    j = 0
    for i in range(len(pulses)):
        while j < len(pulses) and pulses[j][0] < pulses[i][0] + 1000000:
            p = pulses[j]
            total += p[1] * p[1] * p[2] + p[4] * p[4] * p[5]
            j += 1
        best = max(best, total)
        p = pulses[i]
        total -= p[1] * p[1] * p[2] + p[4] * p[4] * p[5]
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parsed_settings(), st.integers(0, 100))
def test_engine_at_max_amplitude_stays_inside_the_envelope(s, below_pct):
    top = E.max_amp_ua(s)
    amp_ua = top - top * below_pct // 1000  # at the maximum, or up to 10 % under it
    env = E.Envelope(s, top)
    assume(amp_ua > 0)
    ch = Channel(0)
    ch.apply_setting(s)
    assert ch.max_amp_ua == top
    ch.set_target(amp_ua)
    while ch.amp_ua < ch.target_ua:
        ch.ramp()
    out = Recorder()
    ticks = cycle_ms(s) // L.TICK_MS
    phases = set()
    for t in range(ticks):
        out.now_us = t * WINDOW_US
        assert ch.fire_window(out, WINDOW_US) != BREACH
        if ch.phase_us:
            phases.add(ch.phase_us)
            assert E.min_phase_us(s) <= ch.phase_us <= s.phase_us
            assert E.min_rate_hz(s) <= ch.rate_hz <= E.max_rate_hz(s) or s.mode == "burst"
    assert out.pulses, "no pulses in a whole cycle"
    for start_us, amp1, phase1, gap, amp2, phase2 in out.pulses:
        assert amp1 <= env.peak_ua <= L.AMP_LIMIT_UA
        assert amp1 * phase1 // 1000 <= env.phase_charge_nc <= L.PHASE_CHARGE_LIMIT_NC
        assert amp1 * phase1 == amp2 * phase2, "net charge"
        assert phase2 == phase1 * s.ratio and gap == s.gap_us and phase1 <= s.phase_us
        energy_uj = L.REFERENCE_LOAD_OHM * (amp1 * amp1 * phase1 + amp2 * amp2 * phase2) // 10**12
        assert energy_uj <= env.energy_uj <= L.ENERGY_LIMIT_UJ
    for i in range(1, len(out.pulses)):
        assert out.pulses[i][0] - out.pulses[i - 1][0] >= E.shortest_period_us(s)
    # modulation moves the amplitude no faster than the steepest ramp (a tick apart at least;
    # the split into phases may round each by up to ratio - 1)
    by_window = {}
    for pulse in out.pulses:
        by_window[pulse[0] // WINDOW_US] = pulse[1]
    for t in range(1, ticks):
        if t in by_window and t - 1 in by_window:
            assert abs(by_window[t] - by_window[t - 1]) <= L.RAMP_MAX_UA_PER_TICK + s.ratio, (t, by_window[t - 1], by_window[t])
    worst = max_window_i2t(out.pulses)
    rms = E.isqrt(worst // 1000000)
    assert rms <= env.rms_ua <= L.RMS_LIMIT_UA, (rms, env.rms_ua)
    assert rms // s.area_cm2 <= env.current_density_ua_cm2 <= L.CURRENT_DENSITY_LIMIT_UA_CM2
    power = L.REFERENCE_LOAD_OHM * worst // 10**12 // s.area_cm2
    assert power <= env.power_density_uw_cm2 <= L.POWER_DENSITY_LIMIT_UW_CM2
