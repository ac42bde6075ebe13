"""The state machine's properties under the MicroPython VM.

Hypothesis runs in CPython, so the state machine of tests/test_device_stateful.py
writes each sequence it generates down as a scenario file (sim.scenario format:
send / raw / fault / clear steps at their times, two channels, the machine's clock
steps as the gaps between them). Those scenarios are replayed through the
simulated device inside one `micropython` process (`sim/mp_main.py runmany`) and
in process under CPython, each writing one audit line per tick (sim/audit.py).
The same invariant checker (tests/fw/invariants.py) reads both runtimes' audit
lines, every 100 ms trace row is checked for pulses outside the envelope, the
two runtimes must agree byte for byte, and the CPython replay must reproduce the
machine's own run tick for tick (so the scenario is the sequence hypothesis made).
"""

import json

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from sim.scenario import normalize
from tests.audit import check_block, cpython_block, micropython_blocks_in_background
from tests.test_device_stateful import CHANNELS, SETTINGS, DeviceMachine

SEQUENCES = 56


def generate(count):
    """Run the state machine for `count` examples; return [(normalized scenario, harness records)]."""
    runs = []

    class RecordingMachine(DeviceMachine):
        def __init__(self):
            super().__init__()
            self.h.kept = []

        def teardown(self):
            if len(self.h.kept) >= 2:  # a scenario lasts at least 10 ms: two ticks
                runs.append((normalize(self.scenario()), self.h.kept))

    run_state_machine_as_test(RecordingMachine, settings=settings(SETTINGS, max_examples=count))
    return runs


@pytest.fixture(scope="module")
def replays():
    runs = generate(SEQUENCES)
    generated = [run[0] for run in runs]
    running = micropython_blocks_in_background(generated)
    cpython = [cpython_block(n) for n in generated]
    micropython = running.result()
    return runs, cpython, micropython


def test_enough_sequences(replays):
    runs, cpython, _ = replays
    assert len(runs) >= 50
    ops = set()
    kinds = set()
    for normalized, _ in runs:
        for step in normalized["steps"]:
            kinds.update(k for k in step if k != "at_ms")
            if "send" in step:
                ops.add(step["send"]["op"])
    assert kinds == {"send", "raw", "fault", "clear"}
    assert {"start", "stop", "estop", "pause", "resume", "set_amp", "amp_step", "set_stim", "clear_fault",
            "keepalive", "hello"} <= ops


def test_scenarios_replay_the_machines_runs_exactly(replays):
    runs, cpython, _ = replays
    for index, ((normalized, records), lines) in enumerate(zip(runs, cpython)):
        audit = [json.loads(line) for line in lines if line.startswith("[")]
        assert len(audit) == len(records), index
        for tick in range(len(records)):
            assert audit[tick] == records[tick], "sequence %d, tick %d:\nscenario: %s\nmachine:  %s" % (
                index, tick, audit[tick], records[tick])


@pytest.mark.parametrize("runtime", ["cpython", pytest.param("micropython", marks=pytest.mark.micropython)])
def test_invariants_hold_on_every_tick(replays, runtime):
    runs, cpython, micropython = replays
    blocks = cpython if runtime == "cpython" else micropython
    ticks = pulses = 0
    states = set()
    for index, ((normalized, _), lines) in enumerate(zip(runs, blocks)):
        label = "%s sequence %d (%s)" % (runtime, index, json.dumps(normalized)[:2000])
        t, p, rows = check_block(lines, CHANNELS, label)
        assert t == normalized["duration_ms"] // 10 + 1 and rows == normalized["duration_ms"] // 100 + 1, label
        ticks += t
        pulses += p
        for line in lines:
            if line.startswith("{"):
                states.add(json.loads(line)["state"])
    assert pulses > ticks // 5, "the sequences hardly stimulate: %d pulses in %d ticks" % (pulses, ticks)
    assert states == {"IDLE", "RUNNING", "PAUSED", "FAULT"}, states


@pytest.mark.micropython
def test_runtimes_agree_byte_for_byte(replays):
    runs, cpython, micropython = replays
    for index in range(len(runs)):
        cp, mp = cpython[index], micropython[index]
        if cp == mp:
            continue
        for number in range(min(len(cp), len(mp))):
            if cp[number] != mp[number]:
                pytest.fail(
                    "sequence %d differs first at line %d:\ncpython:     %s\nmicropython: %s\nscenario: %s"
                    % (index, number + 1, cp[number], mp[number], json.dumps(runs[index][0])[:3000]),
                    pytrace=False,
                )
        pytest.fail("sequence %d: %d lines under cpython, %d under micropython" % (index, len(cp), len(mp)))
