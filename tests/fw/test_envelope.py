"""firmware.envelope: settings field by field, the envelope's figures, each limit by name."""

from firmware import envelope as E
from firmware import limits as L
from firmware.protocols import messages as msg
from tests.fw.portable import Lcg, is_ascii_printable, raises


def _err(fields):
    return raises(msg.RequestError, E.parse_setting, fields)


def _breach(setting, amp_ua):
    err = raises(msg.RequestError, E.check, setting, amp_ua)
    assert err.code == msg.E_ENVELOPE == "envelope", err.code
    assert is_ascii_printable(err.message)
    return err.message


def _with_limit(name, value, fn):
    """Run fn() with limits.<name> lowered (restored afterwards): the check reads the module."""
    old = getattr(L, name)
    setattr(L, name, value)
    try:
        return fn()
    finally:
        setattr(L, name, old)


# ---- settings --------------------------------------------------------------------------


def test_default_setting():
    s = E.parse_setting({})
    assert s.mode == "continuous" and s.waveform == "symmetric" and s.ratio == 1
    assert s.phase_us == 200 and s.gap_us == 50 and s.rate_hz == 100 and s.area_cm2 == L.AREA_DEFAULT_CM2
    assert s.to_dict() == {"mode": "continuous", "waveform": "symmetric", "phase_us": 200, "gap_us": 50,
                           "area_cm2": L.AREA_DEFAULT_CM2, "rate_hz": 100}


def test_to_dict_lists_the_modes_fields():
    s = E.parse_setting({"mode": "burst", "waveform": "asymmetric", "asym_ratio": 3})
    d = s.to_dict()
    assert d["asym_ratio"] == 3 and d["burst_hz"] == 100 and d["train_ms"] == 500 and d["train_pulses"] == 7
    assert "rate_hz" not in d and "mod_amp_pct" not in d
    assert E.parse_setting(d).to_dict() == d  # round trip
    for mode in E.MODES:
        s = E.parse_setting({"mode": mode})
        assert E.parse_setting(s.to_dict()).to_dict() == s.to_dict()


def _base_for(name):
    """A setting in which `name` applies and both ends of its range are consistent."""
    if name in ("burst_hz", "train_ms", "train_pulses"):
        return {"mode": "burst", "train_ms": 2000, "train_pulses": 2}
    if name.startswith("mod_"):
        return {"mode": "modulated"}
    if name.startswith("sd_"):
        return {"mode": "strength_duration", "rate_hz": 1}
    if name == "asym_ratio":
        return {"mode": "continuous", "waveform": "asymmetric"}
    return {"mode": "continuous"}


def test_every_field_in_range_is_accepted_at_both_ends():
    for name in E._FIELDS:
        spec = E._FIELDS[name]
        for value in (spec[1], spec[2]):
            if name == "sd_rate_hz" and value <= 1:
                continue  # must exceed rate_hz >= 1
            fields = _base_for(name)
            fields[name] = value
            s = E.parse_setting(fields)
            assert getattr(s, name) == value, (name, value)
    s = E.parse_setting({"mode": "acupuncture"})
    assert s.rate_hz == E.ACUPUNCTURE_DEFAULT_HZ  # the mode's own default, not the 100 Hz one


def test_out_of_range_fields_name_field_value_and_limit():
    for name in E._FIELDS:
        spec = E._FIELDS[name]
        fields = _base_for(name)
        fields[name] = spec[2] + 1
        err = _err(fields)
        assert err.code == msg.E_OUT_OF_RANGE
        assert err.message == "%s %d exceeds the limit %d" % (name, spec[2] + 1, spec[2]), err.message
        fields[name] = spec[1] - 1
        err = _err(fields)
        assert err.code == msg.E_OUT_OF_RANGE
        assert err.message == "%s %d is below the minimum %d" % (name, spec[1] - 1, spec[1]), err.message


def test_wrong_types_name_the_field():
    for value in ("200", 1.5, True, None, [200], {"a": 1}):
        err = _err({"phase_us": value})
        assert err.code == msg.E_BAD_FIELD and "phase_us" in err.message, (value, err.message)


def test_unknown_mode_waveform_and_field():
    err = _err({"mode": "turbo"})
    assert err.code == msg.E_BAD_FIELD and "'turbo'" in err.message and "burst" in err.message
    err = _err({"waveform": "square"})
    assert err.code == msg.E_BAD_FIELD and "'square'" in err.message and "asymmetric" in err.message
    err = _err({"volume": 11})
    assert err.code == msg.E_BAD_FIELD and "'volume'" in err.message
    err = _err({"mode": "continuous", "burst_hz": 100})  # a field of another mode
    assert err.code == msg.E_BAD_FIELD and "burst_hz" in err.message and "continuous" in err.message
    for bad in ("continuous", 1, None, [1]):
        assert _err(bad).code == msg.E_BAD_FIELD


def test_acupuncture_rate_is_low():
    assert E.parse_setting({"mode": "acupuncture", "rate_hz": E.ACUPUNCTURE_MAX_HZ}).rate_hz == E.ACUPUNCTURE_MAX_HZ
    err = _err({"mode": "acupuncture", "rate_hz": E.ACUPUNCTURE_MAX_HZ + 1})
    assert err.code == msg.E_OUT_OF_RANGE
    assert "rate_hz 11" in err.message and "10" in err.message and "acupuncture" in err.message


def test_strength_duration_rate_must_rise():
    err = _err({"mode": "strength_duration", "rate_hz": 150, "sd_rate_hz": 150})
    assert err.code == msg.E_OUT_OF_RANGE and "sd_rate_hz 150" in err.message and "rate_hz 150" in err.message
    assert E.parse_setting({"mode": "strength_duration", "rate_hz": 149, "sd_rate_hz": 150}).sd_rate_hz == 150


def test_modulated_width_may_not_go_below_the_minimum_phase():
    err = _err({"mode": "modulated", "phase_us": 40, "mod_width_pct": 60})
    assert err.code == msg.E_OUT_OF_RANGE and "16 us" in err.message and str(L.PHASE_MIN_US) in err.message
    assert E.min_phase_us(E.parse_setting({"mode": "modulated", "phase_us": 40, "mod_width_pct": 50})) == 20
    err = _err({"mode": "strength_duration", "phase_us": 30, "sd_width_pct": 90})
    assert err.code == msg.E_OUT_OF_RANGE and str(L.PHASE_MIN_US) in err.message


def test_burst_train_must_fit_its_repetition_period():
    err = _err({"mode": "burst", "burst_hz": 50, "train_pulses": 20, "train_ms": 250})
    assert err.code == msg.E_OUT_OF_RANGE and "20 pulses" in err.message and "250" in err.message
    assert E.parse_setting({"mode": "burst", "burst_hz": 50, "train_pulses": 20, "train_ms": 500}).train_pulses == 20
    # trains may not run into each other: the next one starts a whole burst period after the last pulse
    err = _err({"mode": "burst", "burst_hz": 60, "train_pulses": 16, "train_ms": 251})
    assert err.code == msg.E_OUT_OF_RANGE and "16 pulses" in err.message and "266656 us" in err.message
    assert E.parse_setting({"mode": "burst", "burst_hz": 60, "train_pulses": 16, "train_ms": 267}).train_ms == 267


def test_cycle_extremes():
    s = E.parse_setting({"mode": "modulated", "rate_hz": 100, "mod_rate_pct": 90, "phase_us": 300, "mod_width_pct": 50})
    assert E.min_rate_hz(s) == 10 and E.max_rate_hz(s) == 100 and E.min_phase_us(s) == 150
    s = E.parse_setting({"mode": "strength_duration", "rate_hz": 80, "sd_rate_hz": 200})
    assert E.max_rate_hz(s) == 200 and E.shortest_period_us(s) == 5000
    s = E.parse_setting({"mode": "burst", "burst_hz": 100, "train_pulses": 7, "train_ms": 250})
    assert E.max_rate_hz(s) == 100 and E.pulses_per_s(s) == 7 * 5
    s = E.parse_setting({"rate_hz": 3})
    assert E.pulses_per_s(s) == 4  # 0, 333333, 666666 and 999999 us fit in one second


# ---- the envelope's figures ----------------------------------------------------------------


def test_figures_round_up_never_down():
    # a figure is never below the exact value, so "figure <= limit" means "exact value <= limit"
    s = E.parse_setting({"phase_us": 333, "rate_hz": 7, "area_cm2": 3})
    env = E.Envelope(s, 10001)
    assert env.pulses_per_s == 8  # a 142857 us period: 8 pulses fit in one second
    assert env.phase_charge_nc == 3331  # 3330.333 nC
    assert env.rms_ua == 731  # sqrt(2 * 10001^2 * 333 * 8 / 1e6) = 730.22 uA
    assert env.current_density_ua_cm2 == 244  # 731 / 3 = 243.7
    assert env.energy_uj == 34  # 500 * 2 * 10001^2 * 333e-12 = 33.31 uJ
    assert env.power_density_uw_cm2 == 89  # 33.31 uJ * 8 / 3 = 88.8


def test_figures_by_hand():
    s = E.parse_setting({})  # symmetric, 200 us, 100 Hz, 25 cm2
    env = E.Envelope(s, 20000)
    assert env.peak_ua == 20000
    assert env.phase_charge_nc == 4000  # 20 mA * 200 us
    assert env.net_charge_nc == 0
    assert env.pulses_per_s == 100
    assert env.rms_ua == 4000  # sqrt(2 * 200 us * 100 / s) = 0.2 of the peak
    assert env.energy_uj == 80  # 500 ohm * (20 mA)^2 * 400 us
    assert env.current_density_ua_cm2 == 160
    assert env.power_density_uw_cm2 == 320  # 8 mW / 25 cm2
    assert env.indicator is False
    d = env.to_dict()
    assert d["rms_ua"] == 4000 and d["indicator"] is False and len(d) == 10
    assert d["mod_amp_slope_ua_s"] == 0  # no amplitude modulation
    assert E.Envelope(s, 80000).indicator is True  # 16 mA r.m.s.


def test_amplitude_modulation_is_no_faster_than_the_steepest_ramp():
    """Full-depth modulation over 500 ms sweeps 20 mA in 250 ms: 80 mA/s, the ramp's own cap."""
    assert L.MOD_AMP_SLOPE_LIMIT_UA_S == L.RAMP_MAX_UA_PER_TICK * 1000 // L.TICK_MS
    s = E.parse_setting({"mode": "modulated", "rate_hz": 50, "phase_us": 100, "mod_amp_pct": 100, "mod_amp_ms": 500})
    assert E.Envelope(s, 20000).mod_amp_slope_ua_s == 80000  # 800 uA a tick: 40 permille of 20 mA
    assert E.max_amp_ua(s) == 20000 and E.binding_limit(s) == "mod_amp_slope"
    text = _breach(s, 20001)
    assert text.startswith("mod_amp_slope 80100 uA/s exceeds the limit 80000 uA/s at 20001 uA"), text
    slow = E.parse_setting({"mode": "modulated", "rate_hz": 50, "phase_us": 100, "mod_amp_pct": 50, "mod_amp_ms": 4000})
    # 40 mA in 2 s is 20 mA/s on average; the engine's integer steps reach 3 permille a tick: 24 mA/s
    assert E.Envelope(slow, 80000).mod_amp_slope_ua_s == 24000


def test_asymmetric_figures_by_hand():
    s = E.parse_setting({"waveform": "asymmetric", "asym_ratio": 4, "phase_us": 100, "rate_hz": 100})
    env = E.Envelope(s, 40001)
    assert env.peak_ua == 40000 and env.phase_charge_nc == 4000 and env.net_charge_nc == 0
    # i2t = 40 mA^2 * 100 us + 10 mA^2 * 400 us = 2e11 uA^2 us; * 100 / s: sqrt(2e7) = 4472.1, rounded up
    assert env.rms_ua == 4473


def test_phase_amps_balance_exactly():
    rng = Lcg(3)
    for waveform, ratio in (("symmetric", 1), ("asymmetric", 2), ("asymmetric", 3), ("asymmetric", 4)):
        fields = {"waveform": waveform}
        if ratio > 1:
            fields["asym_ratio"] = ratio
        s = E.parse_setting(fields)
        assert s.ratio == ratio
        for _ in range(200):
            amp = rng.below(L.AMP_LIMIT_UA + 1)
            amp1, amp2 = E.phase_amps(s, amp)
            assert amp1 == amp2 * ratio and amp - ratio < amp1 <= amp
            assert amp1 * s.phase_us == amp2 * s.phase_us * ratio
            assert E.Envelope(s, amp).net_charge_nc == 0


def test_isqrt():
    for n in (0, 1, 2, 3, 4, 15, 16, 17, 10 ** 6, 10 ** 12 + 1, (1 << 61) - 1):
        r = E.isqrt(n)
        assert r * r <= n < (r + 1) * (r + 1), n
    assert E.isqrt(-4) == 0


def test_figures_never_decrease_with_amplitude():
    s = E.parse_setting({"waveform": "asymmetric", "asym_ratio": 3, "rate_hz": 250, "phase_us": 300, "area_cm2": 5})
    previous = E.Envelope(s, 0)
    for amp in range(0, L.AMP_LIMIT_UA + 1, 997):
        env = E.Envelope(s, amp)
        assert env.peak_ua >= previous.peak_ua and env.rms_ua >= previous.rms_ua
        assert env.phase_charge_nc >= previous.phase_charge_nc and env.power_density_uw_cm2 >= previous.power_density_uw_cm2
        previous = env


# ---- each limit, by name, with value and limit ------------------------------------------------


def test_peak_current_named():
    s = E.parse_setting({"phase_us": 100})
    E.check(s, L.AMP_LIMIT_UA)
    text = _breach(s, L.AMP_LIMIT_UA + 1)
    assert text.startswith("peak_current %d uA exceeds the limit %d uA at %d uA" % (
        L.AMP_LIMIT_UA + 1, L.AMP_LIMIT_UA, L.AMP_LIMIT_UA + 1)), text
    assert "continuous symmetric, 100 us, 100 Hz max, 25 cm2" in text


def test_phase_charge_named():
    s = E.parse_setting({"phase_us": 400})
    top = E.max_amp_ua(s)
    assert top == 62500 and E.binding_limit(s) == "phase_charge"  # 25 uC / 400 us exactly
    E.check(s, top)
    text = _breach(s, top + 1)  # 25000.4 nC: rounded up, so a fraction over the limit is over it
    assert text.startswith("phase_charge 25001 nC exceeds the limit %d nC" % L.PHASE_CHARGE_LIMIT_NC), text


def test_current_density_named():
    s = E.parse_setting({"phase_us": 400, "rate_hz": 250, "area_cm2": 10})
    top = E.max_amp_ua(s)
    assert E.binding_limit(s) == "current_density"
    assert E.Envelope(s, top).current_density_ua_cm2 == L.CURRENT_DENSITY_LIMIT_UA_CM2
    text = _breach(s, top + 1)
    assert text.startswith("current_density 2001 uA/cm2 exceeds the limit %d uA/cm2" % L.CURRENT_DENSITY_LIMIT_UA_CM2)
    assert "10 cm2" in text


def test_rms_current_named():
    # Under the real hard limits phase charge and current density always bind first;
    # a lowered r.m.s. limit shows that this check is there and names itself.
    s = E.parse_setting({"rate_hz": 250, "phase_us": 200, "area_cm2": 200})

    def probe():
        top = E.max_amp_ua(s)
        assert E.binding_limit(s) == "rms_current"
        assert E.Envelope(s, top).rms_ua <= 10000 < E.Envelope(s, top + 1).rms_ua
        return _breach(s, top + 1)

    text = _with_limit("RMS_LIMIT_UA", 10000, probe)
    assert text.startswith("rms_current 10000") or text.startswith("rms_current 10001"), text
    assert "exceeds the limit 10000 uA" in text


def test_energy_per_pulse_named():
    s = E.parse_setting({"phase_us": 400, "area_cm2": 200})
    assert E.Envelope(s, E.max_amp_ua(s)).energy_uj < L.ENERGY_LIMIT_UJ  # far below 300 mJ at any setting

    def probe():
        top = E.max_amp_ua(s)
        assert E.binding_limit(s) == "energy_per_pulse"
        return _breach(s, top + 1)

    text = _with_limit("ENERGY_LIMIT_UJ", 500, probe)
    assert "energy_per_pulse" in text and "exceeds the limit 500 uJ" in text, text


def test_power_density_named():
    s = E.parse_setting({"phase_us": 400, "rate_hz": 250, "area_cm2": 100})

    def probe():
        top = E.max_amp_ua(s)
        assert E.binding_limit(s) == "power_density"
        assert E.Envelope(s, top).power_density_uw_cm2 <= 1000
        return _breach(s, top + 1)

    text = _with_limit("POWER_DENSITY_LIMIT_UW_CM2", 1000, probe)
    assert text.startswith("power_density 100") and "exceeds the limit 1000 uW/cm2" in text, text


def test_any_net_charge_is_refused_even_under_one_nc():
    """net_charge rounds away from zero like every figure rounds up: 900 pC either way is 1 nC."""
    s = E.parse_setting({"waveform": "asymmetric", "asym_ratio": 2})
    saved = E.phase_amps
    for skew_ua in (3, -3):  # 3 uA over one phase: well under 1 nC, either way
        E.phase_amps = lambda setting, amp, skew_ua=skew_ua: (amp + skew_ua, amp // 2)
        try:
            env = E.Envelope(s, 9000)
            text = _breach(s, 9000)
        finally:
            E.phase_amps = saved
        assert abs(env.net_charge_nc) == 1, (skew_ua, env.net_charge_nc)
        assert text.startswith("net_charge 1 nC exceeds the limit 0"), text


def test_net_charge_check_names_itself():
    # phase_amps makes every pulse balanced; a broken split must still be caught by name.
    s = E.parse_setting({"waveform": "asymmetric", "asym_ratio": 2})
    saved = E.phase_amps
    E.phase_amps = lambda setting, amp: (amp, amp // 3)
    try:
        text = _breach(s, 9000)
    finally:
        E.phase_amps = saved
    assert text.startswith("net_charge "), text


def test_check_passes_inside_the_envelope():
    for fields in ({}, {"mode": "burst"}, {"mode": "acupuncture", "rate_hz": 2}, {"waveform": "asymmetric"}):
        s = E.parse_setting(fields)
        for amp in (0, 1, L.AMP_STEP_UA, 20000, E.max_amp_ua(s)):
            E.check(s, amp)
            assert E.Envelope(s, amp).violation() is None


def test_max_amp_is_exactly_the_boundary():
    rng = Lcg(11)
    cases = [{}, {"phase_us": 400}, {"phase_us": 400, "rate_hz": 250, "area_cm2": 1},
             {"mode": "burst", "phase_us": 400, "area_cm2": 2, "train_ms": 250, "train_pulses": 20, "burst_hz": 150},
             {"mode": "strength_duration", "rate_hz": 100, "sd_rate_hz": 250, "phase_us": 350, "area_cm2": 4},
             {"mode": "modulated", "waveform": "asymmetric", "asym_ratio": 4, "phase_us": 390, "area_cm2": 7}]
    for _ in range(12):
        cases.append({"phase_us": 20 + rng.below(381), "rate_hz": 1 + rng.below(250), "area_cm2": 1 + rng.below(40)})
    for fields in cases:
        s = E.parse_setting(fields)
        top = E.max_amp_ua(s)
        assert 0 < top <= L.AMP_LIMIT_UA
        E.check(s, top)  # the maximum passes ...
        if top < L.AMP_LIMIT_UA:
            text = _breach(s, top + 1)  # ... one microampere more does not
            assert text.startswith(E.binding_limit(s) + " "), (fields, text)
        else:
            assert E.binding_limit(s) == "peak_current"


def test_min_step_is_at_most_two_percent_of_the_maximum():
    # IEC 60601-2-10: output at the minimum setting <= 2 % of the maximum. One user step
    # against the maximum of the default electrode: r.m.s. scales with amplitude.
    for fields in ({}, {"phase_us": 400}, {"mode": "burst"}, {"mode": "acupuncture", "rate_hz": 2},
                   {"waveform": "asymmetric", "asym_ratio": 4}, {"mode": "modulated", "rate_hz": 250, "phase_us": 250}):
        s = E.parse_setting(fields)
        low = E.Envelope(s, L.AMP_STEP_UA)
        high = E.Envelope(s, E.max_amp_ua(s))
        assert low.rms_ua * 100 <= 2 * high.rms_ua, (fields, low.rms_ua, high.rms_ua)
        assert low.peak_ua * 100 <= 2 * high.peak_ua


def test_asym_ratio_with_symmetric_pulses_is_refused():
    for fields in ({"asym_ratio": 3}, {"waveform": "symmetric", "asym_ratio": 2, "mode": "burst"}):
        err = raises(msg.RequestError, E.parse_setting, fields)
        assert err.code == msg.E_BAD_FIELD and "asym_ratio" in err.message and "asymmetric" in err.message, err.message
    assert E.parse_setting({"waveform": "asymmetric", "asym_ratio": 3}).ratio == 3
