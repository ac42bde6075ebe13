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
