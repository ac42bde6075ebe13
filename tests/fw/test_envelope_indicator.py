"""firmware.envelope.indicator_threshold_ua: the lowest lit amplitude, exact against Envelope.

The board's output indicator runs every loop step; it compares the channel's amplitude with
this threshold (computed once per setting) instead of building an Envelope (whose products
are long ints on the board) whenever the amplitude moves, i.e. every ramp tick.
"""

from firmware import envelope as E
from firmware import limits as L
from firmware import presets
from firmware.protocols import messages as msg
from tests.fw.portable import Lcg


def _lit(setting, amp_ua):
    return bool(E.Envelope(setting, amp_ua).indicator)


def _exact_at_the_threshold(setting):
    t = E.indicator_threshold_ua(setting)
    assert t >= 1, t  # no current lights nothing
    assert _lit(setting, t), (E.describe(setting), t)
    assert not _lit(setting, t - 1), (E.describe(setting), t)
    return t


def _preset_settings():
    out = []
    for preset in presets.PRESETS:
        for channel in preset.get("channels", ()):
            out.append(E.parse_setting(channel["stim"]))
    return out


def _spread(count, seed):
    """Valid settings across every mode, waveform and field range (inconsistent draws skipped)."""
    rng = Lcg(seed)
    out = []
    tries = 0
    while len(out) < count and tries < count * 20:
        tries += 1
        mode = E.MODES[rng.below(len(E.MODES))]
        fields = {"mode": mode}
        if rng.below(3) == 0:
            fields["waveform"] = "asymmetric"
            fields["asym_ratio"] = 2 + rng.below(L.ASYM_RATIO_MAX - 1)
        fields["phase_us"] = L.PHASE_MIN_US + rng.below(L.PHASE_MAX_US - L.PHASE_MIN_US + 1)
        fields["gap_us"] = rng.below(L.GAP_MAX_US + 1)
        fields["area_cm2"] = L.AREA_MIN_CM2 + rng.below(L.AREA_MAX_CM2)
        if mode == "continuous":
            fields["rate_hz"] = L.RATE_MIN_HZ + rng.below(L.RATE_MAX_HZ)
        elif mode == "acupuncture":
            fields["rate_hz"] = 1 + rng.below(E.ACUPUNCTURE_MAX_HZ)
        elif mode == "burst":
            fields["burst_hz"] = 50 + rng.below(101)
            fields["train_ms"] = 250 + rng.below(1751)
            fields["train_pulses"] = 2 + rng.below(19)
        elif mode == "modulated":
            fields["rate_hz"] = 2 + rng.below(L.RATE_MAX_HZ - 1)
            fields["mod_amp_pct"] = rng.below(101)
            fields["mod_width_pct"] = rng.below(91)
            fields["mod_rate_pct"] = rng.below(91)
        else:
            fields["rate_hz"] = 1 + rng.below(200)
            fields["sd_rate_hz"] = fields["rate_hz"] + 1 + rng.below(L.RATE_MAX_HZ - fields["rate_hz"])
            fields["sd_width_pct"] = rng.below(91)
        try:
            out.append(E.parse_setting(fields))
        except msg.RequestError:
            continue
    assert len(out) == count, len(out)
    return out


def _corners():
    out = []
    for fields in (
        {},
        {"phase_us": L.PHASE_MIN_US, "rate_hz": L.RATE_MIN_HZ},  # the dimmest setting: lit only far up
        {"phase_us": L.PHASE_MAX_US, "rate_hz": L.RATE_MAX_HZ - 10},
        {"mode": "acupuncture", "phase_us": L.PHASE_MAX_US, "rate_hz": 1},
        {"waveform": "asymmetric", "asym_ratio": L.ASYM_RATIO_MAX, "phase_us": L.PHASE_MAX_US // 4, "rate_hz": 80},
        {"waveform": "asymmetric", "asym_ratio": 3, "phase_us": 150, "rate_hz": 100},
        {"mode": "burst", "burst_hz": 150, "train_ms": 250, "train_pulses": 20, "phase_us": 40},
        {"area_cm2": L.AREA_MIN_CM2}, {"area_cm2": L.AREA_MAX_CM2},
    ):
        out.append(E.parse_setting(fields))
    return out


def test_the_threshold_is_exact_for_every_preset_setting():
    found = [_exact_at_the_threshold(s) for s in _preset_settings()]
    assert len(found) >= 10
    conventional = E.parse_setting({"mode": "continuous", "rate_hz": 100, "phase_us": 100})
    assert E.indicator_threshold_ua(conventional) in found


def test_the_threshold_is_exact_for_a_spread_of_settings_and_the_corners():
    for s in _spread(60, 5) + _corners():
        _exact_at_the_threshold(s)


def test_the_threshold_splits_the_whole_amplitude_range():
    # monotonic: below it never lit, from it on always lit, over every amplitude a channel can hold
    for s in _corners()[:3] + _preset_settings()[:2]:
        t = E.indicator_threshold_ua(s)
        for amp in range(0, L.AMP_LIMIT_UA + 1, 97):
            assert _lit(s, amp) == (amp >= t), (E.describe(s), amp, t)
        for amp in range(max(0, t - 300), t + 300):
            assert _lit(s, amp) == (amp >= t), (E.describe(s), amp, t)


def test_the_default_setting_lights_at_10_ma_rms():
    s = E.parse_setting({})  # 200 us, 100 Hz: r.m.s. = amp * sqrt(2 * 200e-6 * 100) = amp / 5
    t = E.indicator_threshold_ua(s)
    assert 50000 < t <= 50005, t
    assert E.Envelope(s, t).rms_ua > L.INDICATOR_RMS_UA >= E.Envelope(s, t - 1).rms_ua
