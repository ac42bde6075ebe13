"""The scenario library (sim/scenarios): every fault and every preset program, each with the
safety claims it states in its "expect" list, checked under both runtimes and with the
virtual clock started 5 s before the 2^30 ms tick wrap.

The whole library runs once per module (the `library` fixture): every file x {cpython,
micropython} x {clock from 0, clock near the wrap}, two runs at a time (the CI machine has
two cores), each run its own process, the longest first. The traces are kept so the
runtimes and the clock starts can be compared byte for byte: nothing in a trace may depend
on either. The lists of faults and presets come from sim/faults.py and firmware/presets.py,
so a new fault or preset without a scenario fails here.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from firmware import presets
from sim import expect, faults, runner
from sim.clock import NEAR_WRAP_MS
from sim.scenario import ScenarioError
from tests.test_micropython_vm import ROOT

LIBRARY = ROOT / "sim" / "scenarios"
FILES = sorted(p.name for p in LIBRARY.glob("*.json"))
RUNTIMES = ("cpython", "micropython")
# Each pass over the library costs ~32 CPU s under cpython and ~58 under micropython (the file:
# ~195 CPU s, ~105 s on two idle cores); if CI time gets tight, ("cpython",) here saves ~58 s of
# CPU and still runs every scenario near the wrap.
NEAR_WRAP_RUNTIMES = ("cpython", "micropython")
WORKERS = 2  # the CI machine's cores


def _runs():
    """(runtime, near_wrap) of every run of each scenario."""
    return [(runtime, False) for runtime in RUNTIMES] + [(runtime, True) for runtime in NEAR_WRAP_RUNTIMES]


def _fault_kinds():
    return sorted(faults.CHANNEL_FAULTS) + sorted(faults.DEVICE_FAULTS)


def _raw(name):
    return json.loads((LIBRARY / name).read_text())


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """{(file, runtime, near_wrap): Outcome} for the whole library, traces kept."""
    trace_dir = tmp_path_factory.mktemp("library")
    outcomes = {}
    started = time.monotonic()
    jobs = runner.plan([str(LIBRARY)], RUNTIMES, (False,), trace_dir=str(trace_dir))
    jobs += runner.plan([str(LIBRARY)], NEAR_WRAP_RUNTIMES, (True,), trace_dir=str(trace_dir))
    for outcome in runner.run_jobs(jobs, workers=WORKERS):
        outcomes[(os.path.basename(outcome.job.path), outcome.job.runtime, outcome.job.near_wrap)] = outcome
    wall_s = time.monotonic() - started
    sys.stderr.write(
        "\nscenario library: %d runs, %.0f simulated s, %.1f wall s\n"
        % (len(outcomes), sum(o.sim_s for o in outcomes.values()), wall_s)
    )
    return outcomes


# ---- the library is complete --------------------------------------------------------------------


def test_the_library_has_scenarios():
    assert len(FILES) >= len(_fault_kinds()) + len(presets.names())


@pytest.mark.parametrize("name", FILES)
def test_every_scenario_is_valid_and_states_expectations(name):
    normalized = runner.load(str(LIBRARY / name))
    raw = _raw(name)
    assert normalized["expect"], "%s states no expectation" % name
    assert isinstance(raw.get("description"), str) and len(raw["description"]) > 40, "%s: describe its claim" % name
    for index, item in enumerate(raw["expect"]):
        assert isinstance(item.get("name"), str) and item["name"], "%s expect[%d]: give it a name" % (name, index)
    assert normalized["start_ms"] == 0, "%s: the library runs from 0 and near the wrap (--near-wrap)" % name
    assert normalized["duration_ms"] > 5000, "%s: near the wrap a run must cross it (5 s in)" % name


def test_every_fault_has_a_scenario():
    injected = {}
    for name in FILES:
        for step in runner.load(str(LIBRARY / name))["steps"]:
            if "fault" in step:
                injected.setdefault(step["fault"].partition(":")[0], []).append(name)
    missing = [kind for kind in _fault_kinds() if kind not in injected]
    assert not missing, "faults without a scenario in sim/scenarios: %s" % missing
    for kind in _fault_kinds():  # one file per fault kind, named after it, injecting it
        assert "fault_%s.json" % kind in injected[kind], "sim/scenarios/fault_%s.json should inject %s" % (kind, kind)


def test_every_preset_has_a_scenario():
    started = {}
    for name in FILES:
        for step in runner.load(str(LIBRARY / name))["steps"]:
            request = step.get("send", {})
            if request.get("op") == "start" and "program" in request:
                started.setdefault(request["program"], []).append(name)
    missing = [preset for preset in presets.names() if preset not in started]
    assert not missing, "presets without a scenario in sim/scenarios: %s" % missing
    for preset in presets.names():
        assert "preset_%s.json" % preset in started[preset], "sim/scenarios/preset_%s.json should start it" % preset


# ---- the library passes, under both runtimes and near the wrap -------------------------------------


@pytest.mark.micropython
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", FILES)
def test_every_expectation_holds_on_both_runtimes_and_near_the_wrap(library, name):
    lines = []
    for runtime, wrap in _runs():
        outcome = library[(name, runtime, wrap)]
        if not outcome.ok:
            lines.extend(line for line in outcome.report() if not line.startswith("PASS"))
        assert outcome.job.scenario()["start_ms"] == (NEAR_WRAP_MS if wrap else 0)
    assert not lines, "\n".join(lines)
    assert all(r.ok for r in library[(name, "cpython", False)].results)


@pytest.mark.micropython
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", FILES)
def test_traces_are_byte_identical_across_runtimes_and_clock_starts(library, name):
    reference = library[(name, "cpython", False)]
    expected = open(reference.trace_path, "rb").read()
    assert expected.count(b"\n") == reference.lines > 0
    for runtime, wrap in _runs():
        other = library[(name, runtime, wrap)]
        got = open(other.trace_path, "rb").read()
        if got != expected:
            a, b = expected.splitlines(), got.splitlines()
            first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            pytest.fail(
                "%s: %s differs from cpython (clock from 0) first at trace line %d:\n%s\n%s"
                % (name, other.job.label, first + 1, a[first][:300] if first < len(a) else "<end>",
                   b[first][:300] if first < len(b) else "<end>"),
                pytrace=False,
            )


# ---- failures are named; seeds reproduce ------------------------------------------------------------


@pytest.mark.micropython
@pytest.mark.timeout(900)
def test_a_broken_expectation_fails_naming_it_and_where(library):
    name = "fault_thermistor_open.json"
    normalized = runner.load(str(LIBRARY / name))
    broken = dict(normalized)
    broken["expect"] = list(normalized["expect"]) + [
        {"name": "latched the wrong fault", "within_ms": 100, "after": "fault thermistor_open",
         "that": {"faults": ["sensor_short"]}},
        {"name": "pad never above 24 C", "always": "heat.pad_true_mc <= 24000"},
    ]
    with open(library[(name, NEAR_WRAP_RUNTIMES[-1], True)].trace_path) as handle:
        results = runner.check(broken, handle)
    failed = [r for r in results if not r.ok]
    assert [r.index for r in failed] == [len(normalized["expect"]), len(normalized["expect"]) + 1]
    first, second = failed[0].line(), failed[1].line()
    assert first.startswith("FAIL expect[%d] latched the wrong fault: " % failed[0].index), first
    assert "not within 100 ms of fault thermistor_open (t=30.0 s)" in first and "trace line 302" in first, first
    assert 'faults=["sensor_open"] (want ["sensor_short"])' in first, first
    assert second.startswith("FAIL expect[%d] pad never above 24 C: failed at t=" % failed[1].index), second
    assert "trace line" in second and "heat.pad_true_mc=" in second, second


def _trace(normalized, runtime, path):
    runner.run(normalized, str(path), runtime)
    return path.read_bytes()


@pytest.mark.micropython
def test_the_same_seed_gives_the_same_trace(tmp_path):
    base = runner.load(str(LIBRARY / "fault_thermistor_open.json"))
    seven = runner.variant(base, seed=7)
    first = _trace(seven, "cpython", tmp_path / "a.jsonl")
    assert first == _trace(seven, "cpython", tmp_path / "b.jsonl")
    assert first == _trace(seven, "micropython", tmp_path / "c.jsonl")
    assert first == _trace(runner.variant(base, seed=7, near_wrap=True), "cpython", tmp_path / "d.jsonl")
    other = _trace(runner.variant(base, seed=8), "cpython", tmp_path / "e.jsonl")
    assert other != first  # the noise follows the seed ...
    assert all(r.ok for r in runner.check(runner.variant(base, seed=8), other.decode().splitlines()))  # ... the claims hold


# ---- the expectation checker itself --------------------------------------------------------------------


def _check(expectations, steps=None, duration_s=3):
    scenario = {
        "duration_s": duration_s,
        "steps": steps if steps is not None else [
            {"at_s": 0.2, "send": {"op": "start", "amp_ua": [10000, 0], "lease_ms": 0, "ramp_ms": 1000}},
            {"at_s": 2.0, "fault": "electrode_off:0"},
        ],
        "expect": expectations,
    }
    from sim.scenario import ScenarioRun, normalize

    normalized = normalize(scenario)
    lines = []
    ScenarioRun(normalized, lines.append).run()
    return [r.line() for r in runner.check(normalized, lines)]


def test_each_kind_passes_and_fails_as_documented():
    lines = _check([
        {"within_ms": 100, "after": "fault electrode_off:0", "that": {"state": "FAULT", "faults": ["no_load:0"]}},
        {"within_ms": 0, "after": "fault electrode_off:0", "that": {"state": "FAULT"}},
        {"never": "state == FAULT"},
        {"never": "state == FAULT", "until": "fault electrode_off:0"},
        {"always": "ch[0].amp_ua <= 10000"},
        {"always": "amp_ua < 10000"},
        {"eventually": "ch[0].amp_ua == 10000", "from": "send start"},
        {"eventually": "ch[0].amp_ua == 10000", "from": {"first": "state == FAULT"}},
        {"at_end": {"faults": ["no_load:0"], "reason": "no_load:0"}},
        {"reply": {"op": "start", "ok": True, "state": "RUNNING"}, "count": 1},
        {"reply": {"op": "stop"}},
        {"event": {"ev": "state", "state": "FAULT", "msg_contains": "electrode off?"}},
        {"always": "no_pulse_outside_running"},
        {"within_ms": 100, "after": {"first": "faults has no_load:0"}, "that": "no_output"},
    ])
    verdicts = [line.split(" ", 1)[0] for line in lines]
    assert verdicts == ["PASS", "FAIL", "FAIL", "PASS", "PASS", "FAIL", "PASS", "FAIL", "PASS", "PASS", "FAIL", "PASS",
                        "PASS", "PASS"], "\n".join(lines)
    assert "not within 0 ms of fault electrode_off:0 (t=2.0 s): at t=2.0 s (trace line 21)" in lines[1]
    assert "held at t=2.1 s (trace line 22): state FAULT" in lines[2]
    assert "failed at t=" in lines[5] and "ch[0].amp_ua=10000" in lines[5]
    assert "never held from the first row with" in lines[7]
    assert "no reply matched (none of its kind in the trace)" in lines[10]


def test_within_ms_must_keep_holding_until_its_end():
    steps = [{"at_s": 0.2, "send": {"op": "start", "amp_ua": [10000, 0], "lease_ms": 0, "ramp_ms": 1000}},
             {"at_s": 1.0, "fault": "pulse_queue_full"}, {"at_s": 2.0, "clear": "pulse_queue_full"}]
    lines = _check([
        {"within_ms": 100, "after": "fault pulse_queue_full", "that": "no_output"},
        {"within_ms": 100, "after": "fault pulse_queue_full", "that": "no_output", "until": "clear pulse_queue_full"},
    ], steps)
    assert lines[0].startswith("FAIL") and "held from t=1.1 s" in lines[0] and "but failed at t=2." in lines[0], lines[0]
    assert lines[1].startswith("PASS"), lines[1]


# ---- the command line: one run of it ------------------------------------------------------------------


@pytest.mark.micropython
def test_cli_checks_scenarios_prints_a_line_per_expectation_and_fails_on_a_broken_one(tmp_path):
    good = LIBRARY / "fault_electrode_partial.json"
    raw = _raw(good.name)
    raw["expect"].append({"name": "deliberately wrong", "at_end": {"state": "IDLE"}})
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(raw))
    traces = tmp_path / "traces"
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(good), str(bad), "--check", "--runtime", "cpython",
         "--runtime", "micropython", "--near-wrap", "--seed", "3", "-j", "2", "--trace", str(traces)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    count = len(raw["expect"])
    assert len([line for line in out if line.startswith(("PASS ", "FAIL "))]) == 4 * count - 2, proc.stdout
    assert sum(1 for line in out if line.startswith("FAIL ")) == 2, proc.stdout  # the broken one, both runtimes
    for runtime in ("cpython", "micropython"):
        assert any(line.startswith("FAIL %s [%s, near wrap]: expect[%d] deliberately wrong: failed at the end, t=9.0 s "
                                   "(trace line 91)" % (bad, runtime, count - 1)) for line in out), proc.stdout
    assert out[-1] == "4 runs, %d expectations checked: 2 failed" % (4 * count - 2), proc.stdout
    names = sorted(os.listdir(traces))
    assert names == ["broken.cpython.near-wrap.jsonl", "broken.micropython.near-wrap.jsonl",
                     "fault_electrode_partial.cpython.near-wrap.jsonl", "fault_electrode_partial.micropython.near-wrap.jsonl"]
    assert (traces / names[0]).read_bytes() == (traces / names[1]).read_bytes()


def test_cli_refuses_a_bad_expectation_before_running(tmp_path):
    raw = _raw("fault_electrode_off.json")
    raw["expect"][2] = {"always": "heater_of"}
    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ScenarioError) as info:
        runner.load(str(bad))
    text = str(info.value)
    assert text.startswith(str(bad) + ": expect[2]: ") and "heater_of" in text
    for predicate in expect.PREDICATES:
        assert predicate in text
