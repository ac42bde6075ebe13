"""sim.scenario.normalize: a bad scenario is a clear error, naming the step, before any run."""

import json

import pytest

from firmware.protocols import jsonenc
from sim import audit, faults
from sim.scenario import ScenarioError, ScenarioRun, normalize


def _error(scenario):
    with pytest.raises(ScenarioError) as info:
        normalize(scenario)
    return str(info.value)


def _with_steps(*steps, duration_s=10):
    return {"duration_s": duration_s, "steps": list(steps)}


def test_unknown_fault_names_step_fault_and_known_faults():
    text = _error(_with_steps({"at_s": 1, "send": {"op": "status"}}, {"at_s": 2, "fault": "electrode_of:0"}))
    assert "steps[1]" in text and "electrode_of:0" in text
    for name in faults.names():
        assert name in text


def test_unknown_fault_in_clear_step():
    text = _error(_with_steps({"at_s": 2, "clear": "gremlins"}))
    assert "steps[0].clear" in text and "gremlins" in text


def test_missing_at_s():
    text = _error(_with_steps({"at_s": 1, "fault": "electrode_off:0"}, {"send": {"op": "status"}}))
    assert "steps[1]" in text and "missing at_s" in text


def test_two_kinds_in_one_step():
    text = _error(_with_steps({"at_s": 1, "fault": "electrode_off:0", "send": {"op": "status"}}))
    assert "steps[0]" in text and "exactly one" in text
    assert "fault" in text and "send" in text


def test_no_kind_or_unknown_kind():
    assert "steps[0]" in _error(_with_steps({"at_s": 1}))
    text = _error(_with_steps({"at_s": 1, "explode": True}))
    assert "steps[0]" in text and "explode" in text


def test_at_s_beyond_duration():
    text = _error(_with_steps({"at_s": 99, "send": {"op": "status"}}, duration_s=10))
    assert "steps[0].at_s" in text and "99" in text and "10" in text


def test_at_s_negative_or_not_a_number():
    assert "steps[0].at_s" in _error(_with_steps({"at_s": -1, "fault": "electrode_off:0"}))
    assert "steps[0].at_s" in _error(_with_steps({"at_s": "1", "fault": "electrode_off:0"}))
    assert "steps[0].at_s" in _error(_with_steps({"at_s": True, "fault": "electrode_off:0"}))


def test_send_must_be_a_request():
    assert "steps[0].send" in _error(_with_steps({"at_s": 1, "send": "status"}))
    assert "steps[0].send" in _error(_with_steps({"at_s": 1, "send": {"id": 1}}))
    text = _error(_with_steps({"at_s": 1, "send": {"op": "set_amp", "amp_ua": 1.5}}))
    assert "steps[0].send" in text and "float" in text


def test_raw_must_be_a_string():
    assert "steps[0].raw" in _error(_with_steps({"at_s": 1, "raw": [1, 2]}))


def test_step_must_be_an_object():
    assert "steps[0]" in _error(_with_steps("at 1s: start"))


def test_top_level_errors():
    assert "duration_s" in _error({"steps": []})
    assert "duration_s" in _error({"duration_s": 0})
    assert "durations" in _error({"duration_s": 1, "durations": 2})
    assert "seed" in _error({"duration_s": 1, "seed": 1.5})
    assert "start_ms" in _error({"duration_s": 1, "start_ms": 1 << 30})
    assert "channels" in _error({"duration_s": 1, "channels": 3})
    assert "steps" in _error({"duration_s": 1, "steps": {}})
    assert _error([]) == "a scenario must be a JSON object"


def test_normalized_form_is_integers_and_sorted():
    normalized = normalize(
        {
            "duration_s": 2.5,
            "seed": 9,
            "steps": [
                {"at_s": 1.25, "send": {"op": "stop"}},
                {"at_s": 0.1, "fault": "electrode_off:0"},
                {"at_s": 1.25, "clear": "electrode_off:0"},
            ],
        }
    )
    assert normalized["duration_ms"] == 2500 and normalized["seed"] == 9 and normalized["start_ms"] == 0
    assert [s["at_ms"] for s in normalized["steps"]] == [100, 1250, 1250]
    assert "send" in normalized["steps"][1] and "clear" in normalized["steps"][2]  # stable order
    json.dumps(normalized)  # plain JSON, as MicroPython receives it


def test_validation_happens_before_the_run():
    # a bad last step stops everything: nothing is emitted
    lines = []
    with pytest.raises(ScenarioError):
        ScenarioRun(normalize(_with_steps({"at_s": 1, "send": {"op": "start"}}, {"at_s": 9, "fault": "nope"})), lines.append)
    assert lines == []


def test_channel_faults_must_name_a_channel_of_the_scenario():
    text = _error(_with_steps({"at_s": 1, "fault": "electrode_off:2"}))
    assert "steps[0].fault" in text and "electrode_off:2" in text and "electrode_off:1" in text
    text = _error({"duration_s": 2, "channels": 1, "steps": [{"at_s": 1, "fault": "overcurrent:1"}]})
    assert "overcurrent:1" in text and "overcurrent:0" in text
    assert normalize({"duration_s": 2, "steps": [{"at_s": 1, "fault": "electrode_partial:1"}]})["channels"] == 2


def test_fault_names():
    thermal = ["ambient_step", "heater_open", "heater_stuck_on", "supply_sag", "thermistor_detached",
               "thermistor_open", "thermistor_short"]
    assert faults.names() == [
        "electrode_off:0", "electrode_off:1", "electrode_partial:0", "electrode_partial:1",
        "overcurrent:0", "overcurrent:1",
    ] + sorted(thermal + ["pulse_queue_full", "sense_adc_error"])
    assert faults.names(1) == ["electrode_off:0", "electrode_partial:0", "overcurrent:0"] + sorted(
        thermal + ["pulse_queue_full", "sense_adc_error"])
    for name in faults.names():
        assert faults.is_known(name) and faults.describe(name)
    for bad in ("electrode_off", "electrode_off:", "electrode_off:x", "electrode_off:-1", "lead_off", 3, None):
        assert not faults.is_known(bad)


def test_audit_leaves_the_trace_unchanged():
    scenario = normalize(
        {
            "duration_s": 3,
            "steps": [
                {"at_s": 0.1, "send": {"op": "start", "amp_ua": [9000, 4000], "lease_ms": 0, "ramp_ms": 1000}},
                {"at_s": 1.5, "send": {"op": "set_stim", "ch": 1, "stim": {"mode": "burst"}}},
                {"at_s": 2.0, "fault": "electrode_off:0"},
            ],
        }
    )
    plain = []
    ScenarioRun(scenario, plain.append).run()
    traced = []
    audit = []
    ScenarioRun(scenario, traced.append, audit.append).run()
    assert traced == plain
    assert len(audit) == 301 and all(line.startswith("[") for line in audit)
    records = [json.loads(line) for line in audit]
    assert records[0][0] == 0 and records[-1][0] == 3000
    assert any(r[4] for r in records) and records[-1][1] == "FAULT" and records[-1][2] == ["no_load:0"]
    assert ["start", True, -1] in records[10][5]  # the reply to the start, with its op
    for line in audit:  # the fast encoder writes exactly what the protocol's encoder would
        assert jsonenc.encode(json.loads(line)) == line


def test_audit_encoder_matches_jsonenc():
    records = [
        [0, "IDLE", [], [[0, 0, 80000, 10, 200, 50, 1, 0, 0]], [], [], []],
        [10, "RUNNING", [], [[0, 0, 80000, 10, 200, 50, 1, 0, 0]], [], [], ["holding", 1, 0]],
        [12340, "FAULT", ["no_load:1", "internal_error"], [[1, 2, 3, 4, 5, 6, 2, 8, 9], [0, 0, 0, 10, 20, 0, 4, 0, 0]],
         [[0, 9990, 62500, 400, 50, 31250, 800], [1, 0, 1, 20, 0, 0, 80]],
         [["clear_fault", True, -1], ["\u00e9\u2603 op", False, 1], ["", True, 0]], ["fault", 0, 1]],
    ]
    for record in records:
        assert audit.encode(record) == jsonenc.encode(record)


# ---- expectations ("expect", sim/expect.py): checked when the file loads --------------------------------


def _expecting(*expectations, steps=None):
    return {
        "duration_s": 10,
        "steps": steps if steps is not None else [{"at_s": 1, "fault": "thermistor_open"}],
        "expect": list(expectations),
    }


def test_unknown_predicate_names_the_index_and_the_allowed_names():
    from sim import expect

    text = _error(_expecting({"always": "no_fault"}, {"always": "heater_of"}))
    assert text.startswith("expect[1]: ") and "heater_of" in text
    for name in expect.PREDICATES:
        assert name in text
    for op in ("==", "<=", "has"):
        assert op in text


def test_unknown_kind_or_key_names_the_allowed_ones():
    text = _error(_expecting({"alwayz": "no_fault"}))
    assert text.startswith("expect[0]: ") and "alwayz" in text
    for kind in ("always", "never", "eventually", "within_ms", "at_end", "reply", "event"):
        assert kind in text
    text = _error(_expecting({"at_end": "no_fault", "from": 1}))
    assert text.startswith("expect[0]: ") and "'from'" in text
    assert "expect[0]" in _error(_expecting({"always": "no_fault", "never": "no_fault"}))
    assert "expect[0]" in _error(_expecting("no_fault"))
    assert "expect" in _error({"duration_s": 1, "expect": {"always": "no_fault"}})


def test_unknown_field_names_the_fields():
    text = _error(_expecting({"always": "no_fault"}, {"always": "amps <= 3"}))
    assert text.startswith("expect[1]: ") and "'amps'" in text
    for field in ("state", "ch[*].amp_ua", "heat.pad_true_mc", "reason"):
        assert field in text
    assert "expect[0]" in _error(_expecting({"always": {"heat.pad": 3}}))
    text = _error(_expecting({"always": "ch[2].amp_ua == 0"}))
    assert "expect[0]" in text and "channel 2" in text
    assert "expect[0]" in _error(_expecting({"always": "heat.target_mc <= amp_ua"}))  # every-channel needs one on the left
    assert "expect[0]" in _error(_expecting({"always": []}))
    assert "expect[0]" in _error(_expecting({"always": 3}))


def test_anchors_must_name_a_step_of_the_scenario():
    text = _error(_expecting({"within_ms": 100, "after": "fault thermistor_short", "that": "heater_off"}))
    assert text.startswith("expect[0]: ") and "thermistor_short" in text and "fault thermistor_open" in text
    assert "expect[0]" in _error(_expecting({"always": "no_fault", "from": "send start"}))
    assert "expect[0]" in _error(_expecting({"always": "no_fault", "until": 11}))  # past the end
    assert "expect[0]" in _error(_expecting({"always": "no_fault", "from": "sometime"}))
    assert "expect[0]" in _error(_expecting({"within_ms": 100, "that": "heater_off"}))  # no "after"
    assert "expect[0]" in _error(_expecting({"within_ms": 1.5, "after": "start", "that": "heater_off"}))
    assert "expect[0]" in _error(_expecting({"reply": "start"}))
    assert "expect[0]" in _error(_expecting({"reply": {"op": "start"}, "count": -1}))
    assert "expect[0]" in _error(_expecting({"always": "no_fault", "name": 3}))


def test_valid_expectations_are_kept_as_written():
    expectations = [
        {"name": "open latched", "within_ms": 100, "after": "fault thermistor_open",
         "that": [{"state": "FAULT", "faults": ["sensor_open"]}, "heater_off"]},
        {"always": "heat.pad_true_mc <= heat.target_mc + 300", "from": {"first": "heat.state == holding"}, "until": "end"},
        {"eventually": "faults has sensor_open", "from": 0.5},
        {"at_end": {"state": "FAULT", "reason": "sensor_open"}},
        {"reply": {"op": "start", "ok": True}, "count": 1},
        {"event": {"ev": "state", "state": "FAULT", "msg_contains": "open"}},
        {"never": "ch[1].pulses > 0"},
    ]
    normalized = normalize(_expecting(*expectations))
    assert normalized["expect"] == expectations
    assert normalize({"duration_s": 1})["expect"] == []
    json.dumps(normalized)


def test_runner_load_names_the_file(tmp_path):
    from sim import runner

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_expecting({"always": "no_fault"}, {"within_ms": 100, "after": "clear x", "that": "no_fault"})))
    with pytest.raises(ScenarioError) as info:
        runner.load(str(path))
    assert str(info.value).startswith("%s: expect[1]: " % path)


NAN, INF = float("nan"), float("inf")


def test_nan_times_are_refused_by_their_path():
    """NaN compares false with every bound: it reached int() and a ValueError traceback."""
    assert _error({"duration_s": NAN}) == "duration_s is NaN; it must be a number of seconds in 0.01..604800"
    text = _error(_with_steps({"at_s": NAN, "send": {"op": "status"}}))
    assert text.startswith("steps[0].at_s is NaN")
    assert "outside" in _error({"duration_s": INF})  # as before


@pytest.mark.parametrize("value, shown", [(NAN, "NaN"), (INF, "inf"), (-INF, "-inf")])
def test_non_finite_numbers_in_expectations_are_refused_by_their_path(value, shown):
    text = _error(_expecting({"always": "no_fault", "from": value}))
    assert text == "expect[0].from is %s; a scenario's numbers must be finite" % shown
    text = _error(_expecting({"always": {"heat.pad_true_mc": {"<=": value}}}))
    assert text.startswith("expect[0].always.heat.pad_true_mc.<= is %s" % shown)


def test_runner_load_refuses_nan_in_the_file(tmp_path):
    from sim import runner

    path = tmp_path / "nan.json"
    path.write_text('{"duration_s": 2, "expect": [{"never": "ch[0].pulses > 0", "until": NaN}]}')
    with pytest.raises(ScenarioError, match=r"nan.json: expect\[0\].until is NaN"):
        runner.load(str(path))


# ---- every mistake at once, and what the loader used to let through ------------------------------------


EMPTY_WINDOWS = [
    ({"never": "state == FAULT", "from": 8, "until": 2}, "until (2 s) must come after from (8 s)"),
    ({"always": "state == PAUSED", "from": 5, "until": 5}, "until (5 s) must come after from (5 s)"),
    ({"never": "state == FAULT", "from": "clear electrode_off:1", "until": "fault electrode_off:1"},
     "until (fault electrode_off:1, t=5.0 s) must come after from (clear electrode_off:1, t=8.0 s)"),
    ({"eventually": "state == FAULT", "until": "start"}, "until (start, t=0.0 s) must come after from (start, t=0.0 s)"),
]


@pytest.mark.parametrize("expectation, says", EMPTY_WINDOWS, ids=[repr(e[0]) for e in EMPTY_WINDOWS])
def test_a_window_known_to_be_empty_at_load_is_refused(expectation, says):
    """An always or never over no row passed having checked nothing."""
    steps = [{"at_s": 5, "fault": "electrode_off:1"}, {"at_s": 8, "clear": "electrode_off:1"}]
    text = _error(_expecting({"always": "in_envelope"}, expectation, steps=steps))
    assert text == "expect[1]: its window is empty: " + says
    # the last row is a window of its own: from the end to the end holds it
    assert normalize(_expecting({"always": "no_fault", "from": "end"}, {"never": "no_fault", "from": 10, "until": 10},
                                steps=steps))


def test_every_mistake_is_reported_each_on_its_line_naming_its_place():
    lone = [
        _error({"duration_s": 5, "steps": [{"at_s": 6, "send": {"op": "hello"}}]}),
        _error({"duration_s": 5, "steps": [{"at_s": 1, "send": {"op": "hello"}}, {"at_s": 1, "fault": "leadoff"}]}),
        _error({"duration_s": 5, "expect": [{"always": "state == RUNING"}]}),
    ]
    text = _error({"duration_s": 5, "steps": [{"at_s": 6, "send": {"op": "hello"}}, {"at_s": 1, "fault": "leadoff"}],
                   "expect": [{"always": "state == RUNING"}]})
    assert text.split("\n") == ["3 mistakes:"] + ["  " + line for line in lone]  # each as it reads alone
    assert lone[0].startswith("steps[0].at_s") and lone[1].startswith("steps[1].fault")
    assert lone[2].startswith("expect[0]: ")
    text = _error({"duration_s": 0, "seed": -1, "colour": "red", "steps": [{"at_s": 1}, "later"],
                   "expect": [{"always": "no_fault"}, {"alwayz": "no_fault"}, {"never": "heater_of"}]})
    lines = text.split("\n")
    assert lines[0] == "7 mistakes:"
    places = ["unknown key 'colour'", "duration_s is 0", "seed is -1", "steps[0]", "steps[1]", "expect[1]: ", "expect[2]: "]
    assert [line[2:].startswith(place) for line, place in zip(lines[1:], places)] == [True] * 7, text
    from sim import expect

    with pytest.raises(expect.ExpectError) as info:
        expect.validate([{"alwayz": "no_fault"}, {"always": "no_fault"}, {"never": "heater_of"}], [], 10000, 2)
    assert [line[:10] for line in str(info.value).split("\n")] == ["expect[0]:", "expect[2]:"]


def test_runner_load_names_the_file_above_every_mistake(tmp_path):
    from sim import runner

    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"duration_s": 5, "channels": 3, "steps": [{"at_s": 6, "clear": "gremlins"}]}))
    with pytest.raises(ScenarioError) as info:
        runner.load(str(path))
    lines = str(info.value).split("\n")
    assert lines[0] == "%s: 2 mistakes:" % path
    assert lines[1] == "  channels is 3, outside 1..2"
    assert lines[2].startswith("  steps[0].at_s is 6, outside 0..5")


def test_runner_load_refuses_a_key_given_twice_in_the_file(tmp_path):
    from sim import runner

    path = tmp_path / "twice.json"
    path.write_text('{"duration_s": 5, "steps": [{"at_s": 1, "send": {"op": "hello", "op": "start"}}], "duration_s": 9}')
    with pytest.raises(ScenarioError) as info:
        runner.load(str(path))
    text = str(info.value)
    assert text.startswith("%s: 2 mistakes:" % path), text
    assert "the scenario has the key 'duration_s' twice" in text and "steps[0].send has the key 'op' twice" in text


@pytest.mark.parametrize("description", [5, None, True, ["a", "list of lines"], {"text": "x"}, "x" * 2001])
def test_description_must_be_a_string_of_bounded_length(description):
    text = _error({"duration_s": 1, "description": description})
    assert text.startswith("description ") and ("string" in text or "at most 2000" in text), text
    assert len(text) < 120
    assert normalize({"duration_s": 1, "description": "x" * 2000})


def test_a_key_given_twice_is_refused_by_its_place():
    """JSON keeps the last of two equal keys: the first duration_s, step time or request field was
    silently dropped."""
    from sim.scenario import json_object

    text = ('{"duration_s": 5, "duration_s": 6, "steps": [{"at_s": 1, "send": {"op": "stop", "op": "start"}}],'
            ' "expect": [{"never": "no_fault", "name": "a", "name": "b"}]}')
    assert _error(json.loads(text, object_pairs_hook=json_object)).split("\n") == [
        "3 mistakes:",
        "  the scenario has the key 'duration_s' twice; only the last would count",
        "  steps[0].send has the key 'op' twice; only the last would count",
        "  expect[0] has the key 'name' twice; only the last would count",
    ]
    plain = json.loads('{"duration_s": 5, "steps": [{"at_s": 1, "send": {"op": "stop"}}]}', object_pairs_hook=json_object)
    assert type(plain) is dict and normalize(plain)["steps"] == [{"at_ms": 1000, "send": {"op": "stop"}}]


@pytest.mark.parametrize("rid", [0, -1, 2147483648, True, 1.0, "7", None])
def test_a_send_id_the_device_refuses_is_refused(rid):
    text = _error(_with_steps({"at_s": 1, "send": {"op": "status", "id": rid}}))
    assert text.startswith("steps[0].send.id is %r; " % rid) and "integer 1..2147483647" in text, text
    for good in (1, 2147483647):
        assert normalize(_with_steps({"at_s": 1, "send": {"op": "status", "id": good}}))


def test_a_clear_without_the_fault_injected_is_refused():
    text = _error(_with_steps({"at_s": 1, "send": {"op": "status"}}, {"at_s": 2, "clear": "heater_open"}))
    assert text == "steps[1].clear: 'heater_open' is not injected at 2.0 s; no earlier step injects it"
    # the fault later in time: the file order does not count, the run order does
    text = _error(_with_steps({"at_s": 3, "fault": "heater_open"}, {"at_s": 2, "clear": "heater_open"}))
    assert text == "steps[1].clear: 'heater_open' is not injected at 2.0 s; no earlier step injects it"
    text = _error(_with_steps({"at_s": 2, "clear": "heater_open"}, {"at_s": 2, "fault": "heater_open"}))
    assert text.startswith("steps[0].clear: 'heater_open' is not injected at 2.0 s")  # same time: file order
    text = _error(_with_steps({"at_s": 1, "fault": "heater_open"}, {"at_s": 2, "clear": "heater_open"},
                              {"at_s": 3, "clear": "heater_open"}))
    assert text == "steps[2].clear: 'heater_open' is not injected at 3.0 s; an earlier step cleared it"
    assert normalize(_with_steps({"at_s": 2, "fault": "heater_open"}, {"at_s": 2, "clear": "heater_open"},
                                 {"at_s": 3, "fault": "heater_open"}, {"at_s": 4, "clear": "heater_open"}))


def test_a_channel_the_scenario_lacks_names_the_channels_it_has():
    text = _error(_expecting({"never": "ch[2].amp_ua > 0"}))
    assert text == "expect[0]: ch[2].amp_ua: channel 2 does not exist: the scenario has channels 0..1"
    text = _error(dict(_expecting({"always": {"ch[1].pulses": 0}}), channels=1))
    assert text == "expect[0]: ch[1].pulses: channel 1 does not exist: the scenario has channel 0 only"


def test_the_values_of_reason_are_listed_once_each():
    """lease_expired is both a pause reason and a heat fault: it was listed twice."""
    text = _error(_expecting({"always": "reason == banana"}))
    values = text.split("; values: ", 1)[1].split(", ")
    assert "lease_expired" in values and "no_load:1" in values and "session_end" in values
    assert sorted(values) == sorted(set(values)), values


def test_an_anchor_error_says_steps_with_mistakes_are_not_listed():
    """With an invalid step, "its steps" lists the valid ones only: say so, or the invalid
    step the anchor names seems missing from the file."""
    text = _error(_expecting({"within_ms": 100, "after": "send hello", "that": "no_output"},
                             steps=[{"at_s": 1, "fault": "thermistor_open"}, {"at_s": 11, "send": {"op": "hello"}}]))
    lines = text.split("\n")
    assert lines[0] == "2 mistakes:" and lines[1].startswith("  steps[1].at_s is 11")
    assert lines[2] == ("  expect[0]: anchor 'send hello': no such step in the scenario; its steps: "
                        "fault thermistor_open (steps with an invalid field, if any, are not listed)")
