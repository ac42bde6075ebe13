"""Stimulation settings and their safety envelope.

A `Setting` is a channel's waveform and timing (everything but amplitude),
checked field by field on receipt. Its envelope is computed for the reference
load and the electrode area at the worst corner of its whole modulation cycle:
modulation only ever lowers amplitude, width and rate below the setting's
values, and for strength-duration the widest pulse is taken at the highest
rate, so every pulse the engine can produce is dominated by that corner.
The check runs once, when a setting or amplitude is requested, never per tick.

Units: uA, us, Hz, ms, nC, uJ, cm2. Intermediate products exceed 2^30: this
path allocates long integers and is not the control hot path.
"""

from firmware import limits as L
from firmware.intmath import isqrt  # noqa: F401  (also used as module.isqrt)
from firmware.protocols import messages as msg

E_ENVELOPE = msg.E_ENVELOPE

MODES = ("continuous", "acupuncture", "burst", "modulated", "strength_duration")
WAVEFORMS = ("symmetric", "asymmetric")

# field -> (default, low, high); the mode decides which fields apply
_FIELDS = {
    "phase_us": (200, L.PHASE_MIN_US, L.PHASE_MAX_US),
    "gap_us": (50, 0, L.GAP_MAX_US),
    "asym_ratio": (2, 2, L.ASYM_RATIO_MAX),
    "rate_hz": (100, L.RATE_MIN_HZ, L.RATE_MAX_HZ),
    "burst_hz": (100, 50, 150),
    "train_ms": (500, 250, 2000),
    "train_pulses": (7, 2, 20),
    "mod_amp_pct": (0, 0, 100),
    "mod_amp_ms": (4000, 500, 60000),
    "mod_width_pct": (0, 0, 90),
    "mod_width_ms": (4000, 500, 60000),
    "mod_rate_pct": (0, 0, 90),
    "mod_rate_ms": (4000, 500, 60000),
    "sd_rate_hz": (150, L.RATE_MIN_HZ, L.RATE_MAX_HZ),
    "sd_width_pct": (50, 0, 90),
    "sd_period_ms": (6000, 500, 60000),
    "area_cm2": (L.AREA_DEFAULT_CM2, L.AREA_MIN_CM2, L.AREA_MAX_CM2),
}
_COMMON = ("phase_us", "gap_us", "asym_ratio", "area_cm2")
_MODE_FIELDS = {
    "continuous": ("rate_hz",),
    "acupuncture": ("rate_hz",),
    "burst": ("burst_hz", "train_ms", "train_pulses"),
    "modulated": ("rate_hz", "mod_amp_pct", "mod_amp_ms", "mod_width_pct", "mod_width_ms", "mod_rate_pct", "mod_rate_ms"),
    "strength_duration": ("rate_hz", "sd_rate_hz", "sd_width_pct", "sd_period_ms"),
}
ACUPUNCTURE_MAX_HZ = 10  # acupuncture-like TENS is 1-5 Hz clinically; above 10 Hz it is not
ACUPUNCTURE_DEFAULT_HZ = 2  # the mode's own default rate (the common default, 100 Hz, is not acupuncture-like)


class Setting:
    """A validated stimulation setting; build it with `parse_setting`."""

    def __init__(self):
        self.mode = "continuous"
        self.waveform = "symmetric"
        for name in _FIELDS:
            setattr(self, name, _FIELDS[name][0])

    @property
    def ratio(self):
        """Phase-2 to phase-1 width ratio: 1 for symmetric pulses."""
        return self.asym_ratio if self.waveform == "asymmetric" else 1

    def to_dict(self):
        out = {"mode": self.mode, "waveform": self.waveform}
        names = _COMMON + _MODE_FIELDS[self.mode]
        for name in names:
            if name == "asym_ratio" and self.waveform != "asymmetric":
                continue
            out[name] = getattr(self, name)
        return out


def parse_setting(fields):
    """Check a request's `stim` object field by field; RequestError names field, value and limit."""
    if not isinstance(fields, dict):
        raise msg.RequestError(msg.E_BAD_FIELD, "stim must be an object of setting fields")
    setting = Setting()
    mode = fields.get("mode", "continuous")
    if mode not in MODES:
        raise msg.RequestError(msg.E_BAD_FIELD, "mode %s is not one of %s" % (msg._show(mode), ", ".join(MODES)))
    setting.mode = mode
    if mode == "acupuncture":
        setting.rate_hz = ACUPUNCTURE_DEFAULT_HZ
    waveform = fields.get("waveform", "symmetric")
    if waveform not in WAVEFORMS:
        raise msg.RequestError(
            msg.E_BAD_FIELD, "waveform %s is not one of %s" % (msg._show(waveform), ", ".join(WAVEFORMS))
        )
    setting.waveform = waveform
    allowed = _COMMON + _MODE_FIELDS[mode]
    for name in fields:
        if name in ("mode", "waveform"):
            continue
        if name not in allowed:
            raise msg.RequestError(
                msg.E_BAD_FIELD,
                "field %s does not apply to mode %s; it takes: %s" % (msg._show(name), mode, ", ".join(allowed)),
            )
        spec = _FIELDS[name]
        setattr(setting, name, msg.int_field(fields, name, spec[1], spec[2]))
    if "asym_ratio" in fields and waveform != "asymmetric":
        # a ratio with symmetric pulses is a setting that says two things: refuse, don't guess
        raise msg.RequestError(msg.E_BAD_FIELD, "asym_ratio applies only to waveform asymmetric, not %s" % waveform)
    _check_consistency(setting)
    return setting


def _check_consistency(s):
    if s.mode == "acupuncture" and s.rate_hz > ACUPUNCTURE_MAX_HZ:
        raise msg.RequestError(
            msg.E_OUT_OF_RANGE, "rate_hz %d exceeds the limit %d for acupuncture-like mode" % (s.rate_hz, ACUPUNCTURE_MAX_HZ)
        )
    if s.mode == "strength_duration" and s.sd_rate_hz <= s.rate_hz:
        raise msg.RequestError(
            msg.E_OUT_OF_RANGE, "sd_rate_hz %d must exceed rate_hz %d (rate rises as width falls)" % (s.sd_rate_hz, s.rate_hz)
        )
    if min_phase_us(s) < L.PHASE_MIN_US:
        raise msg.RequestError(
            msg.E_OUT_OF_RANGE,
            "narrowest phase %d us is below the minimum %d us; lower the width depth" % (min_phase_us(s), L.PHASE_MIN_US),
        )
    if min_rate_hz(s) < L.RATE_MIN_HZ:
        raise msg.RequestError(
            msg.E_OUT_OF_RANGE, "slowest rate %d Hz is below the minimum %d Hz; lower mod_rate_pct" % (min_rate_hz(s), L.RATE_MIN_HZ)
        )
    pulse_us = pulse_duration_us(s, s.phase_us)
    period_us = shortest_period_us(s)
    if pulse_us >= period_us:
        raise msg.RequestError(
            msg.E_OUT_OF_RANGE,
            "pulse of %d us (phases and gap) does not fit the %d us period; narrow it or lower the rate" % (pulse_us, period_us),
        )
    if s.mode == "burst":
        # n whole periods: the next train starts at least one burst period after the last
        # pulse of this one, so no two pulses come closer than the burst rate allows
        train_us = s.train_pulses * (1000000 // s.burst_hz)
        if train_us > s.train_ms * 1000:
            raise msg.RequestError(
                msg.E_OUT_OF_RANGE,
                "a train of %d pulses lasts %d us, longer than train_ms %d" % (s.train_pulses, train_us, s.train_ms),
            )


def min_phase_us(s):
    if s.mode == "modulated":
        return s.phase_us - s.phase_us * s.mod_width_pct // 100
    if s.mode == "strength_duration":
        return s.phase_us - s.phase_us * s.sd_width_pct // 100
    return s.phase_us


def min_rate_hz(s):
    if s.mode == "modulated":
        return s.rate_hz - s.rate_hz * s.mod_rate_pct // 100
    return s.rate_hz if s.mode != "burst" else 1


def max_rate_hz(s):
    if s.mode == "burst":
        return s.burst_hz
    if s.mode == "strength_duration":
        return s.sd_rate_hz
    return s.rate_hz


def shortest_period_us(s):
    return 1000000 // max_rate_hz(s)


def pulse_duration_us(s, phase_us):
    return phase_us + s.gap_us + phase_us * s.ratio


def pulses_per_s(s):
    """The most pulses any 1 s window of the cycle can hold."""
    if s.mode == "burst":
        return s.train_pulses * (1000 // s.train_ms + 1)
    period_us = shortest_period_us(s)
    return (1000000 + period_us - 1) // period_us


def phase_amps(s, amp_ua):
    """(phase-1 uA, phase-2 uA): equal charge in both phases, exactly, in integers."""
    ratio = s.ratio
    amp2 = amp_ua // ratio
    return amp2 * ratio, amp2


def _ceil_div(a, b):
    return -(-a // b)


def _ceil_sqrt(n):
    r = isqrt(n)
    return r + 1 if r * r < n else r


class Envelope:
    """The figures of one setting at one amplitude, at the cycle's worst corner."""

    def __init__(self, s, amp_ua):
        amp1, amp2 = phase_amps(s, amp_ua)
        phase1 = s.phase_us
        phase2 = phase1 * s.ratio
        i2t = amp1 * amp1 * phase1 + amp2 * amp2 * phase2  # uA^2.us per pulse
        pps = pulses_per_s(s)
        # Every figure is rounded up (never below the exact value): a pulse may then reach
        # each limit but not pass it by a fraction of a unit.
        self.peak_ua = amp1
        self.phase_charge_nc = _ceil_div(amp1 * phase1, 1000)
        net_pc = amp1 * phase1 - amp2 * phase2
        self.net_charge_nc = _ceil_div(net_pc, 1000) if net_pc >= 0 else -_ceil_div(-net_pc, 1000)  # away from 0
        self.pulses_per_s = pps
        # amplitude modulation: the engine's largest step from one tick to the next (its integer
        # triangle, then depth, then amplitude, each rounded: a bound, not the mean slope), per
        # second: never faster than the steepest ramp (no way round the soft start's bound)
        if s.mode == "modulated" and s.mod_amp_pct:
            tri_step = _ceil_div(L.TICK_MS * 1000, s.mod_amp_ms // 2)  # triangle permille per tick
            depth_step = _ceil_div(s.mod_amp_pct * tri_step, 100)  # depth permille per tick
            self.mod_amp_slope_ua_s = _ceil_div(amp_ua * depth_step, 1000) * (1000 // L.TICK_MS)
        else:
            self.mod_amp_slope_ua_s = 0
        self.rms_ua = _ceil_sqrt(_ceil_div(i2t * pps, 1000000))
        self.energy_uj = _ceil_div(L.REFERENCE_LOAD_OHM * i2t, 1000000000000)
        self.current_density_ua_cm2 = _ceil_div(self.rms_ua, s.area_cm2)
        self.power_density_uw_cm2 = _ceil_div(L.REFERENCE_LOAD_OHM * i2t * pps, 1000000000000 * s.area_cm2)
        energy_1k_uj = L.INDICATOR_LOAD_OHM * i2t // 1000000000000
        self.indicator = self.rms_ua > L.INDICATOR_RMS_UA or energy_1k_uj > L.INDICATOR_ENERGY_UJ

    def to_dict(self):
        return {
            "peak_ua": self.peak_ua,
            "rms_ua": self.rms_ua,
            "phase_charge_nc": self.phase_charge_nc,
            "net_charge_nc": self.net_charge_nc,
            "energy_uj": self.energy_uj,
            "current_density_ua_cm2": self.current_density_ua_cm2,
            "power_density_uw_cm2": self.power_density_uw_cm2,
            "pulses_per_s": self.pulses_per_s,
            "mod_amp_slope_ua_s": self.mod_amp_slope_ua_s,
            "indicator": self.indicator,
        }

    def limit_checks(self):
        """(limit name, this envelope's figure, limit, unit) for every limit, in checking order."""
        return (
            ("peak_current", self.peak_ua, L.AMP_LIMIT_UA, "uA"),
            ("net_charge", abs(self.net_charge_nc), 0, "nC"),
            ("phase_charge", self.phase_charge_nc, L.PHASE_CHARGE_LIMIT_NC, "nC"),
            ("rms_current", self.rms_ua, L.RMS_LIMIT_UA, "uA"),
            ("energy_per_pulse", self.energy_uj, L.ENERGY_LIMIT_UJ, "uJ"),
            ("current_density", self.current_density_ua_cm2, L.CURRENT_DENSITY_LIMIT_UA_CM2, "uA/cm2"),
            ("power_density", self.power_density_uw_cm2, L.POWER_DENSITY_LIMIT_UW_CM2, "uW/cm2"),
            ("mod_amp_slope", self.mod_amp_slope_ua_s, L.MOD_AMP_SLOPE_LIMIT_UA_S, "uA/s"),
        )

    def violation(self):
        """None, or (limit name, value, limit, unit) of the first limit broken."""
        for check in self.limit_checks():
            if check[1] > check[2]:
                return check
        return None


def check(s, amp_ua):
    """Raise RequestError (code `envelope`) naming the limit, the value and the limit."""
    found = Envelope(s, amp_ua).violation()
    if found is not None:
        raise msg.RequestError(
            E_ENVELOPE,
            "%s %d %s exceeds the limit %d %s at %d uA (%s)" % (found[0], found[1], found[3], found[2], found[3], amp_ua, describe(s)),
        )


def max_amp_ua(s):
    """The largest amplitude this setting allows under every limit (binary search on `check`)."""
    low = 0
    high = L.AMP_LIMIT_UA
    while low < high:
        mid = (low + high + 1) // 2
        if Envelope(s, mid).violation() is None:
            low = mid
        else:
            high = mid - 1
    return low


def binding_limit(s):
    """The name of the limit that sets max_amp_ua (for messages)."""
    top = max_amp_ua(s)
    if top >= L.AMP_LIMIT_UA:
        return "peak_current"
    found = Envelope(s, top + 1).violation()
    return found[0] if found else "peak_current"


def describe(s):
    return "%s %s, %d us, %d Hz max, %d cm2" % (s.mode, s.waveform, s.phase_us, max_rate_hz(s), s.area_cm2)


def indicator_threshold_ua(s):
    """The lowest amplitude at which Envelope(s, amp).indicator is True.

    The indicator only rises with amplitude (phase_amps, i2t, rms and energy never fall as
    amp_ua grows), so `amp_ua >= indicator_threshold_ua(s)` is Envelope(s, amp_ua).indicator
    for every amp_ua >= 0, and a caller that checks it every tick computes this once per
    setting (a binary search like max_amp_ua: long ints, not the hot path) and then compares
    two small ints.
    """
    high = L.AMP_LIMIT_UA
    while not Envelope(s, high).indicator:  # every setting lights somewhere: rms grows with amp
        high = high * 2
    low = 0  # Envelope(s, 0).indicator is False: no current, no r.m.s., no energy
    while high - low > 1:
        mid = (low + high) // 2
        if Envelope(s, mid).indicator:
            high = mid
        else:
            low = mid
    return high
