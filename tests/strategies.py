"""Hypothesis strategies shared by the CPython property tests: settings, amplitudes, requests.

`settings()` draws the `stim` object of a set_stim request that parse_setting
accepts (every mode, both waveforms, any subset of the mode's fields, in range
and consistent); `any_stim()` adds invalid ones (out of range, wrong type, a
field of another mode, an unknown mode). `requests()` draws protocol requests,
valid and invalid, for the state machine and the generated scenarios.
"""

from hypothesis import strategies as st

from firmware import envelope as E
from firmware import limits as L
from firmware.protocols import messages as msg


def _fields_of(mode):
    return E._COMMON + E._MODE_FIELDS[mode]


def _valid(fields):
    try:
        E.parse_setting(fields)
    except msg.RequestError:
        return False
    return True


@st.composite
def _setting_fields(draw):
    mode = draw(st.sampled_from(E.MODES))
    waveform = draw(st.sampled_from(E.WAVEFORMS))
    fields = {"mode": mode, "waveform": waveform}
    for name in _fields_of(mode):
        if name == "asym_ratio" and waveform != "asymmetric":
            continue
        if not draw(st.booleans()):
            continue  # the default
        low, high = E._FIELDS[name][1], E._FIELDS[name][2]
        if mode == "acupuncture" and name == "rate_hz":
            high = E.ACUPUNCTURE_MAX_HZ
        if name in ("rate_hz", "sd_rate_hz", "burst_hz", "phase_us", "area_cm2"):
            # the edges bind the envelope most often: draw them more
            value = draw(st.one_of(st.integers(low, high), st.sampled_from([low, high])))
        else:
            value = draw(st.integers(low, high))
        fields[name] = value
    if mode == "strength_duration":
        rate = fields.get("rate_hz", E._FIELDS["rate_hz"][0])
        sd_rate = fields.get("sd_rate_hz", E._FIELDS["sd_rate_hz"][0])
        if sd_rate <= rate:
            if rate >= L.RATE_MAX_HZ:
                rate = L.RATE_MAX_HZ - 1
                fields["rate_hz"] = rate
            fields["sd_rate_hz"] = draw(st.integers(rate + 1, L.RATE_MAX_HZ))
    return fields


_SETTINGS = _setting_fields().filter(_valid)


def settings():
    """A valid `stim` object (dict)."""
    return _SETTINGS


def parsed_settings():
    return _SETTINGS.map(E.parse_setting)


_bad_values = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([-1, 0, 401, 251, 10**12, "200", True, None, [1], {"a": 1}]),  # no floats: not sendable
)


@st.composite
def any_stim(draw):
    """A `stim` object that may or may not be valid (or not an object at all)."""
    kind = draw(st.integers(0, 9))
    if kind < 6:
        return draw(_SETTINGS)
    if kind == 6:
        return draw(st.sampled_from(["continuous", 3, None, [], {"mode": "turbo"}, {"waveform": "square"}]))
    fields = draw(_setting_fields())
    name = draw(st.sampled_from(sorted(E._FIELDS)))
    fields[name] = draw(_bad_values)
    return fields


_AMPLITUDES = st.one_of(
    st.integers(min_value=0, max_value=L.AMP_LIMIT_UA),
    st.sampled_from([0, 1, L.AMP_STEP_UA, L.SENSE_MIN_CHECK_UA - 1, L.SENSE_MIN_CHECK_UA, 62502, 62503,
                     L.AMP_LIMIT_UA, L.AMP_LIMIT_UA + 1, -1]),
    st.integers(),
)


def amplitudes():
    """Any integer amplitude, the edges of the limits more often."""
    return _AMPLITUDES


def _maybe(strategy):
    return st.one_of(st.none(), strategy)


_GOOD_AMPS = st.lists(st.integers(0, 30000), min_size=1, max_size=2)
_START_AMPS = st.one_of(_GOOD_AMPS, _GOOD_AMPS, _GOOD_AMPS, st.none(), st.lists(_AMPLITUDES, max_size=3))
_LEASES = st.one_of(st.just(0), st.just(0), st.none(), st.integers(L.LEASE_MIN_MS, L.LEASE_MAX_MS),
                    st.sampled_from([1, 499, 30001, -5]))
_SESSIONS = st.one_of(st.none(), st.none(), st.none(), st.integers(1000, 20000),
                      st.sampled_from([999, L.SESSION_MAX_MS, L.SESSION_MAX_MS + 1]))
_RAMPS = st.one_of(st.none(), st.none(), st.integers(L.RAMP_MIN_MS, L.RAMP_MAX_MS), st.sampled_from([999, 30001]))


@st.composite
def start_request(draw):
    fields = {"op": "start"}
    amps = draw(_START_AMPS)
    if amps is not None:
        fields["amp_ua"] = amps
    lease = draw(_LEASES)
    if lease is not None:
        fields["lease_ms"] = lease
    session = draw(_SESSIONS)
    if session is not None:
        fields["session_ms"] = session
    ramp = draw(_RAMPS)
    if ramp is not None:
        fields["ramp_ms"] = ramp
    interlock = draw(_INTERLOCKS)
    if interlock is not None:
        fields["interlock"] = interlock
    return fields


_INTERLOCKS = st.one_of(st.none(), st.none(), st.sampled_from(["concurrent", "alternate"]),
                        st.sampled_from(["both", 1, None]))
_HEAT_TARGETS = st.one_of(st.integers(30000, 43000), st.sampled_from([29999, 43001, 45000, "40000", [40000], True]))


@st.composite
def heat_request(draw):
    """A heat request: on at a level or a target (valid or not), or off."""
    fields = {"op": "heat"}
    kind = draw(st.sampled_from(["level", "level", "target_mc", "target_mc", "off", "both", "none"]))
    if kind == "off":
        fields["off"] = draw(st.sampled_from([True, True, False, 1]))
        return fields
    if kind in ("level", "both"):
        fields["level"] = draw(st.sampled_from(["low", "medium", "high", "high", "scalding", 3]))
    if kind in ("target_mc", "both"):
        fields["target_mc"] = draw(_HEAT_TARGETS)
    minutes = draw(st.one_of(st.none(), st.none(), st.integers(1, 120), st.sampled_from([0, 121, -1])))
    if minutes is not None:
        fields["minutes"] = minutes
    return fields


channels = st.one_of(st.integers(0, 1), st.integers(0, 1), st.integers(0, 1), st.sampled_from([-1, 2, "0"]))


def requests():
    """One protocol request (without id), valid or not."""
    return _REQUESTS


_SET_AMP = st.builds(lambda ch, amp: {"op": "set_amp", "ch": ch, "amp_ua": amp}, channels, _AMPLITUDES)
_SET_STIM = st.builds(lambda ch, stim: {"op": "set_stim", "ch": ch, "stim": stim}, channels, any_stim())
_START = start_request()
_RESUME = st.just({"op": "resume"})
_CLEAR = st.just({"op": "clear_fault"})
_KEEPALIVE = st.just({"op": "keepalive"})
_AMP_STEP = st.builds(lambda ch, steps: {"op": "amp_step", "ch": ch, "steps": steps}, channels, st.integers(-12, 12))
# every op, the ones that (re)start stimulation more often than those that end it
_REQUESTS = st.one_of(
    _START, _START, _START, _START,
    st.just({"op": "stop"}),
    st.just({"op": "estop"}),
    st.just({"op": "pause"}),
    _RESUME, _RESUME,
    _KEEPALIVE, _KEEPALIVE,
    st.just({"op": "status"}),
    st.sampled_from([{"op": "hello"}, {"op": "hello", "proto": msg.PROTO_VERSION}, {"op": "hello", "proto": "9.0"}]),
    _CLEAR, _CLEAR,
    st.just({"op": "explode"}),
    _SET_AMP, _SET_AMP, _SET_AMP,
    _AMP_STEP, _AMP_STEP,
    _SET_STIM, _SET_STIM, _SET_STIM,
    st.builds(lambda ch: {"op": "get_stim", "ch": ch}, channels),
    heat_request(), heat_request(),
    st.builds(lambda every: {"op": "telemetry", "every_ms": every},
              st.one_of(st.sampled_from([0, 50, 49, 60001, "50"]), st.integers(50, 5000))),
)


garbage = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=120),
    st.sampled_from(["@{\"id\":1,\"op\":\"status\"}*0000\n", "@[1,2]*507D\n", "\n\n@", "@" + "x" * 600 + "\n"]),
)


# ---- programs (program_put), for the machine aimed at stops (tests/test_device_stateful_stop.py) --------

_PROGRAM_NAMES = st.one_of(
    st.sampled_from(["rx", "rx-back", "n" * 24, "a_very-long_program_name"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=24),
    st.sampled_from(["conventional", "", "Upper", "n" * 25]),  # a preset's name, and names refused
)
_PHASE_NAMES = st.one_of(
    st.sampled_from(["warm-up", "tens", "rest", '"\\' * 12, "p" * 24]),  # the longest, escaped to 48 bytes
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24),
)
# at least PHASE_MIN_S (10 s); around the ramp times a TENS-off phase must leave room for
_PHASE_SECONDS = st.one_of(st.sampled_from([10, 10, 11, 15, 29, 30, 31]), st.integers(10, 120))
_PROGRAM_STIM = st.sampled_from([
    {"mode": "continuous", "rate_hz": 100, "phase_us": 100},
    {"mode": "acupuncture", "rate_hz": 2, "phase_us": 200},
    {"mode": "burst", "burst_hz": 100, "train_ms": 500, "train_pulses": 7, "phase_us": 200},
])


@st.composite
def programs(draw):
    """The `program` of a program_put request: mostly valid (a few channels, heat or not, phases
    with and without TENS, ramp times longer and shorter than those phases), sometimes not."""
    program = {"name": draw(_PROGRAM_NAMES)}
    channels = []
    for _ in range(draw(st.integers(0, 2))):
        channel = {"stim": draw(_PROGRAM_STIM)}
        if draw(st.booleans()):
            channel["max_amp_ua"] = draw(st.sampled_from([10000, 20000, 30000]))
        if draw(st.booleans()):
            channel["amp_ua"] = draw(st.sampled_from([0, 4000, 8000]))
        channels.append(channel)
    if channels:
        program["channels"] = channels
    heat = draw(st.sampled_from([None, None, {"level": "low"}, {"level": "high"}, {"target_mc": 39500}]))
    if heat is not None:
        program["heat"] = heat
    phases = []
    for _ in range(draw(st.integers(1, 3))):
        phase = {"name": draw(_PHASE_NAMES), "duration_s": draw(_PHASE_SECONDS)}
        phase["tens"] = bool(channels) and draw(st.booleans())
        if heat is not None:
            phase["heat"] = draw(st.booleans())
        phases.append(phase)
    program["phases"] = phases
    ramp_ms = draw(st.sampled_from([None, None, L.RAMP_MIN_MS, 10000, 15000, L.RAMP_MAX_MS]))
    if ramp_ms is not None:
        program["ramp_ms"] = ramp_ms
    return program
