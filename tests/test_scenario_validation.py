"""sim.scenario.normalize: a bad scenario is a clear error, naming the step, before any run."""

import json

import pytest

from sim import faults
from sim.scenario import ScenarioError, ScenarioRun, normalize


def _error(scenario):
    with pytest.raises(ScenarioError) as info:
        normalize(scenario)
    return str(info.value)


def _with_steps(*steps, duration_s=10):
    return {"duration_s": duration_s, "steps": list(steps)}


def test_unknown_fault_names_step_fault_and_known_faults():
    text = _error(_with_steps({"at_s": 1, "send": {"op": "status"}}, {"at_s": 2, "fault": "lead_of"}))
    assert "steps[1]" in text and "lead_of" in text
    for name in faults.names():
        assert name in text


def test_unknown_fault_in_clear_step():
    text = _error(_with_steps({"at_s": 2, "clear": "gremlins"}))
    assert "steps[0].clear" in text and "gremlins" in text


def test_missing_at_s():
    text = _error(_with_steps({"at_s": 1, "fault": "lead_off"}, {"send": {"op": "status"}}))
    assert "steps[1]" in text and "missing at_s" in text


def test_two_kinds_in_one_step():
    text = _error(_with_steps({"at_s": 1, "fault": "lead_off", "send": {"op": "status"}}))
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
    assert "steps[0].at_s" in _error(_with_steps({"at_s": -1, "fault": "lead_off"}))
    assert "steps[0].at_s" in _error(_with_steps({"at_s": "1", "fault": "lead_off"}))
    assert "steps[0].at_s" in _error(_with_steps({"at_s": True, "fault": "lead_off"}))


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
                {"at_s": 0.1, "fault": "lead_off"},
                {"at_s": 1.25, "clear": "lead_off"},
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
