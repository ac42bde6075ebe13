"""Program format: every preset is valid, and a bad program is refused naming the field path,
the value and the limit, the same way on the host and the device (one parser)."""

from firmware import envelope, presets
from firmware.program import PROGRAM_MAX_BYTES, parse_program
from firmware.protocols import jsonenc
from firmware.protocols import messages as msg
from tests.fw.portable import raises


def _program(**changes):
    base = {
        "name": "rx-1",
        "description": "test",
        "channels": [{"stim": {"mode": "continuous", "rate_hz": 100, "phase_us": 100}, "max_amp_ua": 30000}],
        "heat": {"level": "medium"},
        "phases": [
            {"name": "warm", "duration_s": 60, "tens": False},
            {"name": "both", "duration_s": 120},
            {"name": "cool", "duration_s": 30, "heat": False},
        ],
    }
    for key in changes:
        if changes[key] is None:
            del base[key]
        else:
            base[key] = changes[key]
    return base


def _refused(fields, code, words, **kwargs):
    exc = raises(msg.RequestError, parse_program, fields, **kwargs)
    assert exc.code == code, (exc.code, exc.message)
    for word in words:
        assert word in exc.message, (word, exc.message)
    return exc


def test_every_preset_is_valid_fits_a_frame_and_is_canonical():
    assert len(presets.PRESETS) >= 9
    seen = []
    for source in presets.PRESETS:
        program = parse_program(source)
        assert program.name not in seen
        seen.append(program.name)
        assert len(program.description) >= 40  # a therapist reads it
        assert len(jsonenc.encode(program.source)) <= PROGRAM_MAX_BYTES
        again = parse_program(program.source)  # canonical form parses to itself
        assert again.source == program.source
        assert 0 < program.session_ms <= 3600000
        for plan in program.channels:
            assert plan.amp_ua == 0  # the patient turns up from nothing
            assert plan.max_amp_ua == envelope.max_amp_ua(plan.setting)
    for name in ("conventional", "acupuncture-like", "burst", "mixed-frequency", "strength-duration",
                 "heat-low", "heat-medium", "heat-high", "heat-then-tens"):
        assert name in seen, name


def test_the_heat_then_tens_timeline():
    program = parse_program(presets.find("heat-then-tens"))
    assert [p.name for p in program.phases] == ["warm-up", "tens-and-heat", "cool-down"]
    assert [p.duration_ms for p in program.phases] == [600000, 1200000, 300000]
    assert [p.tens for p in program.phases] == [False, True, True]
    assert [p.heat for p in program.phases] == [True, True, False]
    assert program.session_ms == 2100000 and program.heat_target_mc == 40000
    assert program.phase_index_at(0) == 0 and program.phase_index_at(599999) == 0
    assert program.phase_index_at(600000) == 1 and program.phase_index_at(1800000) == 2
    assert program.phase_index_at(9999999) == 2
    assert program.heat_left_ms(0) == 1800000 and program.heat_left_ms(1) == 1200000 and program.heat_left_ms(2) == 0


def test_defaults_fill_in():
    program = parse_program(_program())
    assert program.session_ms == 210000
    assert [p.heat for p in program.phases] == [True, True, False]  # heat defaults to on when the program has heat
    assert [p.tens for p in program.phases] == [False, True, True]
    assert program.source["session_s"] == 210
    assert program.source["channels"][0]["amp_ua"] == 0


def test_refusals_name_path_value_and_limit():
    channel = {"stim": {"mode": "continuous", "rate_hz": 100, "phase_us": 100}}
    cases = (
        (_program(name="Bad Name"), msg.E_BAD_FIELD, ("name", "a-z")),
        (_program(name="--help"), msg.E_BAD_FIELD, ("name", "'--help'", "a letter or digit first")),
        (_program(name="_x"), msg.E_BAD_FIELD, ("name", "a letter or digit first")),
        (_program(name="x" * 25), msg.E_OUT_OF_RANGE, ("name", "25", "24")),
        (_program(description="d" * 241), msg.E_OUT_OF_RANGE, ("description", "241", "240")),
        (_program(colour="red"), msg.E_BAD_FIELD, ("colour", "allowed")),
        (_program(channels=[{"stim": {"rate_hz": 400}}]), msg.E_OUT_OF_RANGE, ("channels[0].stim", "rate_hz", "400", "250")),
        (_program(channels=[{"stim": {}, "max_amp_ua": 90000}]), msg.E_OUT_OF_RANGE,
         ("channels[0].max_amp_ua", "90000", "80000", "the peak_current limit")),
        (_program(channels=[{"stim": {"phase_us": 400}, "max_amp_ua": 70000}]), msg.E_OUT_OF_RANGE,
         ("channels[0].max_amp_ua", "70000", "62500", "the phase_charge limit at", "400 us")),
        (_program(channels=[{"stim": {"area_cm2": 1}, "max_amp_ua": 20000}]), msg.E_OUT_OF_RANGE,
         ("channels[0].max_amp_ua", "20000", "10000", "the current_density limit at", "1 cm2")),
        (_program(channels=[{"stim": {}, "max_amp_ua": 1000, "amp_ua": 2000}]), msg.E_OUT_OF_RANGE,
         ("channels[0].amp_ua", "2000", "1000", "the channel's max_amp_ua")),
        (_program(channels=[channel, channel, channel]), msg.E_BAD_FIELD, ("channels", "at most 2")),
        (_program(heat={"level": "scorching"}), msg.E_BAD_FIELD, ("heat.level", "scorching", "low")),
        (_program(heat={"target_mc": 45000}), msg.E_OUT_OF_RANGE, ("heat.target_mc", "45000", "43000")),
        (_program(heat={"target_mc": 20000}), msg.E_OUT_OF_RANGE, ("heat.target_mc", "20000", "30000")),
        (_program(phases=[]), msg.E_BAD_FIELD, ("phases", "1 to 8")),
        (_program(phases=[{"name": "a", "duration_s": 5}]), msg.E_OUT_OF_RANGE, ("phases[0].duration_s", "5", "10")),
        (_program(phases=[{"name": "a", "duration_s": 2000}, {"name": "b", "duration_s": 2000}]), msg.E_OUT_OF_RANGE,
         ("phases", "4000", "3600")),
        (_program(heat=None, phases=[{"name": "a", "duration_s": 60, "heat": True}]), msg.E_BAD_FIELD,
         ("phases[0].heat", "no heat")),
        (_program(session_s=100), msg.E_OUT_OF_RANGE, ("session_s", "100", "210")),
        (_program(interlock="sometimes"), msg.E_BAD_FIELD, ("interlock", "sometimes")),
        (_program(channels=[], heat=None, phases=[{"name": "a", "duration_s": 60, "tens": False}]), msg.E_BAD_FIELD,
         ("nothing to run",)),
        (_program(description="caf\u00e9"), msg.E_BAD_FIELD, ("description", "printable ASCII")),
        (_program(phases=[{"name": "a", "duration_s": 60, "tens": "yes"}]), msg.E_BAD_FIELD, ("phases[0].tens", "true or false")),
        ([1, 2], msg.E_BAD_FIELD, ("program must be an object",)),
    )
    for fields, code, words in cases:
        _refused(fields, code, words)


def test_a_device_with_one_channel_or_a_lower_heat_cap_refuses_more():
    _refused(presets.find("conventional"), msg.E_BAD_FIELD, ("channels", "at most 1"), channels=1)
    _refused(presets.find("heat-high"), msg.E_OUT_OF_RANGE, ("42000", "41000", "heat cap"), max_target_mc=41000)
    assert parse_program(presets.find("heat-low"), max_target_mc=41000).heat_target_mc == 38000


def test_the_encoded_size_is_bounded():
    stim = {"mode": "modulated", "rate_hz": 100, "mod_amp_pct": 10, "mod_width_pct": 10, "mod_rate_pct": 10}
    phases = []
    for i in range(8):
        phases.append({"name": "phase-with-a-long-name%d" % i, "duration_s": 60})
    big = _program(description="d" * 240, channels=[{"stim": stim}, {"stim": stim}], phases=phases)
    _refused(big, msg.E_OUT_OF_RANGE, ("bytes encoded", str(PROGRAM_MAX_BYTES)))
