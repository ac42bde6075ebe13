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


# ---- channels: never fails on any one channel, the other kinds need every channel ------------------

TWELVE_AND_NINE_MA = [{"at_s": 0.1, "send": {"op": "start", "amp_ua": [12000, 9000], "lease_ms": 0, "ramp_ms": 1000}}]


def _failures(tmp_path, *expectations, steps=TWELVE_AND_NINE_MA):
    normalized = normalize({"duration_s": 3, "channels": 2, "steps": steps, "expect": list(expectations)})
    trace = tmp_path / "t.jsonl"
    runner.run_here(normalized, str(trace))
    return [r.failure for r in runner.check(normalized, trace.read_text().splitlines())]


def test_never_fails_when_one_channel_breaks_the_claim_and_names_it(tmp_path):
    """A "never above 10 mA" passed while channel 0 ran at 12 mA: it failed only when both did."""
    failures = _failures(
        tmp_path,
        {"never": "amp_ua > 10000"},
        {"never": "ch[*].amp_ua > 10000"},
        {"never": {"ch[*].target_ua": 9000}},
        {"never": ["state == RUNNING", "amp_ua > 8500"], "from": 2},
        {"never": "ch[1].amp_ua > 10000"},  # one channel named: unchanged
        {"never": ["amp_ua > 10000", "target_ua < 10000"]},  # one channel at a time: none has both
        {"never": "amp_ua > target_ua"},
    )
    above = "held on ch[0] at t=1.0 s (trace line 11): ch[0].amp_ua=10800; row: state RUNNING"
    assert failures[0] is not None and failures[0].startswith(above), failures[0]
    assert failures[1] is not None and failures[1].startswith(above), failures[1]
    assert failures[2] is not None and failures[2].startswith(
        "held on ch[1] at t=0.1 s (trace line 2): ch[1].target_ua=9000;"), failures[2]
    assert failures[3] is not None and failures[3].startswith(
        'held on ch[0] and ch[1] at t=2.0 s (trace line 21): state="RUNNING", ch[0].amp_ua=12000, ch[1].amp_ua=9000;')
    assert failures[4:] == [None, None, None]


def test_the_other_kinds_still_need_every_channel_they_name(tmp_path):
    failures = _failures(
        tmp_path,
        {"eventually": "amp_ua > 10000"},  # only channel 0 gets there
        {"always": "amp_ua <= 10000"},
        {"at_end": "amp_ua >= 9000"},
        {"within_ms": 2000, "after": "send start", "that": "amp_ua >= 9000"},
        {"never": "amp_ua > 10000", "from": {"first": "amp_ua > 8500"}},  # both above 8.5 mA: 1.1 s
        {"never": "no_output", "from": 0.2},  # a predicate is a claim about the whole row
    )
    assert failures[0] is not None and failures[0].startswith("never held from start to end"), failures[0]
    assert "ch[1].amp_ua=9000" in failures[0], failures[0]
    assert failures[1] is not None and "ch[0].amp_ua=10800" in failures[1] and "ch[1]" not in failures[1]
    assert failures[2:4] == [None, None]
    assert failures[4] is not None and failures[4].startswith("held on ch[0] at t=1.1 s"), failures[4]
    assert failures[5] is None


def test_a_count_mismatch_reads_as_english(tmp_path):
    failures = _failures(
        tmp_path,
        {"reply": {"op": "start"}, "count": 2},
        {"reply": {"op": "stop"}, "count": 1},
        {"event": {"ev": "state"}, "count": 3},
        {"event": {"ev": "state"}, "count": 0},
    )
    assert failures[0].startswith("1 matching reply, expected 2 (at t=0.1 s"), failures[0]  # was "1 matching replys"
    assert failures[1] == "0 matching replies, expected 1"
    assert failures[2].startswith("1 matching event, expected 3 (at t=0.1 s"), failures[2]
    assert failures[3].startswith("1 matching event, expected 0"), failures[3]
