"""Programs, property-tested: the parser refuses cleanly whatever it is given, what it accepts
stays inside the envelope and the prescription, and a device running any accepted program
never stimulates above the prescribed maximum or heats outside a heat phase."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import envelope as E
from firmware import limits as L
from firmware.heat.config import LEVELS
from firmware.program import PROGRAM_MAX_BYTES, parse_program
from firmware.protocols import jsonenc
from firmware.protocols import messages as msg
from tests.fw.harness import Harness
from tests.strategies import settings as stim_settings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
FIELD_NAMES = ("name", "description", "channels", "heat", "phases", "session_s", "interlock", "ramp_ms", "stim",
               "amp_ua", "max_amp_ua", "duration_s", "tens", "level", "target_mc")


@st.composite
def program_like(draw):
    """Objects shaped like programs, with any values in any fields."""
    fields = {}
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=8, unique=True)):
        fields[name] = draw(json_values)
    if draw(st.booleans()):
        fields["phases"] = draw(st.lists(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=4), max_size=3))
    return fields


@st.composite
def valid_programs(draw):
    channels = []
    for _ in range(draw(st.integers(0, L.CHANNELS))):
        stim = draw(stim_settings())
        top_ua = E.max_amp_ua(E.parse_setting(stim))
        max_amp_ua = draw(st.integers(0, top_ua))
        channels.append({"stim": stim, "max_amp_ua": max_amp_ua, "amp_ua": draw(st.integers(0, max_amp_ua))})
    program = {"name": "p-%d" % draw(st.integers(0, 99)), "channels": channels}
    has_heat = draw(st.booleans()) or not channels
    if has_heat:
        program["heat"] = draw(st.sampled_from([{"level": pair[0]} for pair in LEVELS])
                               | st.integers(30000, 43000).map(lambda mc: {"target_mc": mc}))
    phases = []
    for i in range(draw(st.integers(1, 3))):
        phases.append({"name": "ph%d" % i, "duration_s": draw(st.integers(10, 12)),
                       "tens": bool(channels) and draw(st.booleans()), "heat": has_heat and draw(st.booleans())})
    program["phases"] = phases
    return program


@settings(max_examples=400, deadline=None)
@given(program_like())
def test_the_parser_refuses_anything_with_a_request_error_and_never_raises_otherwise(fields):
    try:
        program = parse_program(fields)
    except msg.RequestError as err:
        assert err.code in (msg.E_BAD_FIELD, msg.E_OUT_OF_RANGE, msg.E_ENVELOPE), err.code
        assert err.message and len(err.message) < 400
        return
    assert len(jsonenc.encode(program.source)) <= PROGRAM_MAX_BYTES


@settings(max_examples=200, deadline=None)
@given(valid_programs())
def test_accepted_programs_stay_in_the_envelope_and_round_trip(source):
    try:
        program = parse_program(source)
    except msg.RequestError as err:
        assert err.code == msg.E_OUT_OF_RANGE and "bytes encoded" in err.message  # only the size may refuse
        return
    assert parse_program(json.loads(json.dumps(program.source))).source == program.source
    for plan in program.channels:
        assert plan.max_amp_ua <= E.max_amp_ua(plan.setting)
        assert E.Envelope(plan.setting, plan.max_amp_ua).violation() is None
        assert plan.amp_ua <= plan.max_amp_ua
    assert 0 < program.session_ms <= L.SESSION_MAX_MS


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_programs(), st.lists(st.tuples(st.integers(0, L.CHANNELS - 1), st.integers(-10, 10)), max_size=12))
def test_a_running_program_never_exceeds_its_prescription_or_heats_outside_heat_phases(source, steps):
    """Amplitude requests at random moments; every tick checked against the program."""
    try:
        program = parse_program(source)
    except msg.RequestError:
        return
    h = Harness()
    h.ok("program_put", {"program": program.source}, ticks=3)  # a long request takes two ticks to arrive
    h.ok("start", {"program": program.name, "lease_ms": 0})
    total_ticks = (program.session_ms + L.RAMP_DEFAULT_MS) // L.TICK_MS + 100  # the run, then the ramp down
    every = max(1, total_ticks // (len(steps) + 1))
    for tick in range(total_ticks):
        if steps and tick % every == every - 1:
            ch, count = steps.pop()
            h.send("amp_step", {"ch": ch, "steps": count})
        h.tick()
        device = h.device
        if device.program is None:
            continue
        phase = device.run.phase
        for i, channel in enumerate(device.channels):
            top_ua = program.channels[i].max_amp_ua if i < len(program.channels) else 0
            assert channel.amp_ua <= top_ua and channel.target_ua <= top_ua, (i, channel.amp_ua, top_ua)
            if not phase.tens:
                assert channel.target_ua == 0
        if not phase.heat:
            assert not h.board.heater.on()
    assert h.state == "IDLE"
    stops = [r for r in h.device.recorder.log.read(1, 100000)[0] if r["ev"] == "stop"]
    assert stops and stops[-1]["reason"] == "session_end"
