"""Differential testing of heat: one scenario, two runtimes, byte-identical traces and audits.

tests/scenarios/heat_differential.json (8 simulated minutes, from 60 s before the
2^30 ms tick wrap, the pad starting at ambient) runs heat through the device: a heat
request outside a session, a heat-only session under the `alternate` interlock with
stimulation holding the heater off, pause/resume, reaching and holding the target, a
target change, an open thermistor, stimulation with heat, a heater switch stuck on and
an emergency stop. The per-tick audit lines go through the shared invariant checker
(the heater switch on only while a session runs with heat on and nothing latched;
never with a pulse under `alternate`) under both runtimes.
"""

import json

import pytest

from firmware import limits
from sim.scenario import TRACE_EVERY_MS, normalize
from tests.audit import check_block, cpython_block, micropython_blocks
from tests.test_micropython_vm import ROOT

SCENARIO = ROOT / "tests" / "scenarios" / "heat_differential.json"
HEAT_FIELDS = ["cem43_min", "heater_duty_pct", "measured_mc", "pad_true_mc", "state", "target_mc"]


def _load():
    return normalize(json.loads(SCENARIO.read_text()))


@pytest.fixture(scope="module")
def blocks():
    scenario = _load()
    return cpython_block(scenario), micropython_blocks([scenario])[0]


@pytest.fixture(scope="module")
def rows(blocks):
    return [json.loads(line) for line in blocks[0] if line.startswith("{")]


def _received(rows):
    return [(r["t_s"], m) for r in rows for m in r["rx"]]


@pytest.mark.micropython
def test_both_runtimes_agree_and_hold_every_invariant(blocks):
    cp, mp = blocks
    assert cp == mp, "the heat audit (or trace) differs between the runtimes"
    ticks, pulses, trace_rows = check_block(cp, 2, "heat differential")
    assert ticks == _load()["duration_ms"] // limits.TICK_MS + 1 and pulses > 500
    assert trace_rows == _load()["duration_ms"] // TRACE_EVERY_MS + 1


def test_every_row_carries_the_heat_fields(rows):
    for r in rows:
        assert sorted(r["heat"]) == HEAT_FIELDS, r["heat"]
        assert 15000 < r["heat"]["pad_true_mc"] < 45000


def test_heat_reaches_and_holds_the_target_without_overshoot(rows):
    holding = [r for r in rows if r["heat"]["state"] == "holding" and r["heat"]["target_mc"] == 42000]
    assert holding, "never held the 42 C target"
    during = [r for r in rows if r["t_s"] < 330]
    assert max(r["heat"]["pad_true_mc"] for r in during) <= 42000 + 300  # overshoot <= 0.3 C


def test_alternate_interlock_held_the_heater_off_while_stimulating(rows):
    stimulating = [r for r in rows if r["t_s"] < 330 and any(c["amp_ua"] for c in r["ch"])]
    assert stimulating, "the scenario never stimulated under the alternate interlock"
    assert all(r["heat"]["heater_duty_pct"] == 0 for r in stimulating)
    paused = [r for r in rows if r["state"] == "PAUSED"]
    assert paused and all(r["heat"]["heater_duty_pct"] == 0 for r in paused)


def test_refusals_and_faults_are_named(rows):
    received = _received(rows)
    errors = [m for _, m in received if m.get("ok") is False]
    assert any(m["err"] == "bad_state" and "start one first" in m["msg"] for m in errors)
    assert any(m["err"] == "out_of_range" and "43000" in m["msg"] for m in errors)
    assert any(m["err"] == "bad_field" and "not both" in m["msg"] for m in errors)
    latched = [m["faults"] for _, m in received if m.get("ev") == "state" and m["state"] == "FAULT"]
    assert ["sensor_open"] in latched and ["stuck_on"] in latched


def test_a_stuck_heater_is_caught_while_the_pad_is_below_43_c(rows):
    injected = next(r["t_s"] for r in rows if "heater_stuck_on" in r["sim_faults"])
    caught = next(r for r in rows if r["faults"] == ["stuck_on"])
    assert caught["t_s"] - injected <= 60, (injected, caught["t_s"])
    assert caught["heat"]["pad_true_mc"] < 43000


def test_clearing_after_repair_works_and_the_estop_ends_heat(rows):
    received = _received(rows)
    cleared = [t for t, m in received if m.get("ev") == "state" and m["reason"] == "clear_fault"]
    assert len(cleared) == 2
    last = rows[-1]
    assert last["state"] == "IDLE" and last["heat"]["state"] == "off" and last["heat"]["heater_duty_pct"] == 0
