"""Expectation values are checked against their field when a scenario loads (sim/expect.py).

A comparison with a misspelled value (`amp_ua > 5OOO`, `state == RUNING`, `faults has
no_laod:0`) is false on every row, so a `never` built on it would pass having checked nothing.
Each must be refused, naming the expectation and what was wrong; each correct spelling of
the same claim must load and, on a run where the claim is false, fail.
"""

import pytest

from sim import runner
from sim.scenario import ScenarioError, normalize

RUNNING_AT_8_MA = [
    {"at_s": 0.1, "send": {"op": "start", "amp_ua": [8000, 6000], "lease_ms": 0}},
    {"at_s": 7.0, "fault": "electrode_off:0"},
]

TYPOS = [
    ({"never": "amp_ua > 5OOO"}, "5OOO"),
    ({"never": "amp_ua > 5000 +"}, "5000 +"),
    ({"never": "state == RUNING"}, "RUNING"),
    ({"never": "faults has no_laod:0"}, "no_laod:0"),
    ({"never": "faults has no_load"}, "no_load:0"),  # the channel is part of the name: the error lists it
    ({"never": "sim_faults has electrode_of:0"}, "electrode_of:0"),
    ({"never": "heat.state == hold"}, "hold"),
    ({"always": "reason == sesion_end"}, "sesion_end"),
    ({"always": "ch[0].pulses < null"}, "null"),
    ({"always": "state < FAULT"}, "=="),
    ({"always": "amp_ua has 3"}, "has"),
    ({"always": "faults == no_load:0"}, "list"),
    ({"always": "state == heat.target_mc"}, "numbers"),
    ({"always": "heat.pad_true_mc <= state + 3"}, "numbers"),
    ({"always": {"state": "RUNING"}}, "RUNING"),
    ({"always": {"ch[0].amp_ua": "8000"}}, "number"),
]


def _scenario(*expectations):
    return {"duration_s": 9, "channels": 2, "steps": RUNNING_AT_8_MA, "expect": list(expectations)}


@pytest.mark.parametrize("expectation,named", TYPOS, ids=[repr(t[0]) for t in TYPOS])
def test_a_value_that_cannot_match_its_field_is_refused_when_the_scenario_loads(expectation, named):
    with pytest.raises(ScenarioError) as err:
        normalize(_scenario({"always": "in_envelope"}, expectation))
    text = str(err.value)
    assert text.startswith("expect[1]: ") and named in text, text


CORRECT = [
    ({"never": "amp_ua > 5000"}, True),
    ({"never": "state == RUNNING"}, True),
    ({"never": "faults has no_load:0"}, True),
    ({"never": "sim_faults has electrode_off:0"}, True),
    ({"never": {"state": "FAULT"}}, True),
    ({"never": "reason == no_load:0"}, True),
    ({"always": "heat.state == off"}, None),  # holds: no heat is asked for
    ({"always": "ch[0].amp_ua <= ch[1].amp_ua + 1000"}, True),
    ({"always": "ch[0].amp_ua <= ch[1].amp_ua + 3000"}, False),
]


@pytest.mark.parametrize("expectation,fails", CORRECT, ids=[repr(t[0]) for t in CORRECT])
def test_the_correct_spelling_loads_and_checks(expectation, fails, tmp_path):
    normalized = normalize(_scenario(expectation))
    trace = tmp_path / "t.jsonl"
    runner.run_here(normalized, str(trace))
    results = runner.check(normalized, trace.read_text().splitlines())
    (result,) = results
    assert result.ok is not fails, result.line()


def test_an_anchor_that_is_not_a_finite_time_is_refused_by_validate_itself():
    from sim import expect

    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(expect.ExpectError) as err:
            expect.validate([{"always": "no_fault", "from": value}], [], 9000, 2)
        assert "finite" in str(err.value), str(err.value)


def test_a_window_that_holds_no_row_fails_when_checked(tmp_path):
    """Ends known only from the trace, or between two rows: always and never passed having
    checked nothing. All three windowed kinds now fail alike."""
    after_fault = {"first": "state == FAULT"}  # 7.1 s: after the injection it is meant to precede
    expectations = [
        {"never": "state == FAULT", "from": after_fault, "until": "fault electrode_off:0"},
        {"always": "state == PAUSED", "from": after_fault, "until": "fault electrode_off:0"},
        {"eventually": "state == PAUSED", "from": after_fault, "until": "fault electrode_off:0"},
        {"always": "state == PAUSED", "from": 1.01, "until": 1.05},
        {"never": "state == RUNNING", "from": 1.01, "until": 1.05},
    ]
    normalized = normalize(_scenario(*expectations))
    trace = tmp_path / "t.jsonl"
    runner.run_here(normalized, str(trace))
    results = runner.check(normalized, trace.read_text().splitlines())
    window = 'from the first row with "state == FAULT" (t=7.1 s) to fault electrode_off:0'
    assert [r.failure for r in results] == ["no trace row " + window] * 3 + ["no trace row from 1.01 s to 1.05 s"] * 2


def test_within_ms_must_react_before_its_window_closes(tmp_path):
    """A reaction first seen after "until" held over no row: within_ms passed having checked
    nothing of what it promised. Now the reaction must come inside the window."""
    with pytest.raises(ScenarioError) as err:
        normalize(_scenario({"within_ms": 100, "after": "fault electrode_off:0", "that": "state == FAULT", "until": 5}))
    assert str(err.value) == (
        "expect[0]: its window is empty: until (5 s) must come after after (fault electrode_off:0, t=7.0 s)")
    expectations = [
        {"within_ms": 3000, "after": 6.0, "that": "state == FAULT", "until": 6.5},  # FAULT first at 7.1 s
        {"within_ms": 100, "after": {"first": "state == FAULT"}, "that": "state == FAULT", "until": 2},
        {"within_ms": 3000, "after": 6.0, "that": "state == FAULT", "until": 8.5},  # inside: passes
    ]
    normalized = normalize(_scenario(*expectations))
    trace = tmp_path / "t.jsonl"
    runner.run_here(normalized, str(trace))
    failures = [r.failure for r in runner.check(normalized, trace.read_text().splitlines())]
    assert failures[0] is not None and failures[0].startswith("not within 3000 ms of 6.0 s (t=6.0 s), before 6.5 s (t=6.5 s): at t=6.4 s"), failures[0]
    assert failures[1] is not None and failures[1].startswith("its window is empty"), failures[1]
    assert failures[2] is None
