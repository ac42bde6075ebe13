"""Bad input to `tens-sim plot` and `tens-sim run --pulses` (sim/plot.py, sim/pulses.py).

A trace or pulse line that parses but cannot be drawn (NaN, Infinity, a 400-digit number,
a fault name that is not a string, a zero or negative width) is refused with the file, the
line, the field and the limit, exit status 1 and no traceback; so is JSON nested too deeply
for the decoder. A pulse file that cannot be written fails the run after it, and never
reaches the simulated device: the trace is the one a run without --pulses writes.
"""

import errno
import json
import os
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim import plot, pulses
from sim.cli import cli
from sim.launcher import SimError
from sim.scenario import ScenarioRun, normalize

LIBRARY = Path(__file__).resolve().parent.parent / "sim" / "scenarios"
DEEP = "[" * 1000 + "]" * 1000


def _trace_line(t_s=0.0, amp_ua=5000, faults=(), sim_faults=(), measured_mc=30000):
    return {"t_s": t_s, "state": "RUNNING", "faults": list(faults), "sim_faults": list(sim_faults),
            "ch": [{"amp_ua": amp_ua, "target_ua": 5000, "delivered_ua": 5000, "pulses": 10}],
            "heat": {"state": "heating", "target_mc": 40000, "pad_true_mc": 31000, "heater_duty_pct": 50,
                     "measured_mc": measured_mc}}


def _pulse(t_ms=0, **fields):
    record = {"t_ms": t_ms, "ch": 0, "start_us": 0, "amp1_ua": 10000, "phase1_us": 200, "gap_us": 50,
              "amp2_ua": 10000, "phase2_us": 200, "delivered_ua": 10000, "delivered2_ua": 10000}
    record.update(fields)
    return record


def _plot(args, tmp_path):
    """`tens-sim plot ARGS -o ...`: the result, after checking no traceback (nor warning) reached the user."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's UserWarning of a zero-width pulse fails the command
        result = CliRunner().invoke(cli, ["plot"] + args + ["-o", str(tmp_path / "out.png")])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    return result


# (what the line holds, as JSON text; the start of what the error says after "not a trace line: ")
BAD_TRACE_NUMBERS = [
    ('"t_s": NaN', "t_s NaN out of range: must be a finite number of seconds from 0 to 1000000000"),
    ('"t_s": Infinity', "t_s Infinity out of range"),
    ('"t_s": -0.1', "t_s -0.1 out of range"),
    ('"t_s": 1' + "0" * 400, "t_s 1000"),
    ('"ch": [{"amp_ua": Infinity, "target_ua": 0, "delivered_ua": 0}]',
     "ch[0].amp_ua Infinity out of range: must be a finite number from -2**53 to 2**53"),
    ('"ch": [{"amp_ua": 1%s, "target_ua": 0, "delivered_ua": 0}]' % ("0" * 400), "ch[0].amp_ua 1000"),
    ('"ch": [{"amp_ua": 0, "target_ua": -Infinity, "delivered_ua": 0}]', "ch[0].target_ua -Infinity"),
    ('"heat": {"target_mc": 0, "pad_true_mc": 0, "heater_duty_pct": NaN}', "heat.heater_duty_pct NaN"),
    ('"heat": {"target_mc": 0, "pad_true_mc": 0, "heater_duty_pct": 0, "measured_mc": 1e400}',
     "heat.measured_mc Infinity"),
    ('"faults": [1]', "faults[0] is 1, not a fault name (a string)"),
    ('"sim_faults": [{"a": 1}]', 'sim_faults[0] is {"a": 1}, not a fault name (a string)'),
]


@pytest.mark.parametrize("content, message", BAD_TRACE_NUMBERS)
def test_a_trace_line_that_cannot_be_drawn_is_refused(tmp_path, content, message):
    """These lines used to pass the check and then crash the drawing with a traceback
    (Axis limits cannot be NaN or Inf, OverflowError, TypeError joining fault names)."""
    replaced = content.split(":")[0].strip('"')
    rest = {key: value for key, value in _trace_line(0.1).items() if key != replaced}
    line = "{%s, %s" % (content, json.dumps(rest)[1:])  # NaN, 1e400 and such as the file has them
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps(_trace_line(0.0)) + "\n" + line + "\n")
    result = _plot([str(trace)], tmp_path)
    assert result.exit_code == 1, result.output
    assert "Error: %s:2: not a trace line: %s" % (trace, message) in result.output
    assert len(result.output.strip().splitlines()) == 1  # one line, however long the number
    assert not (tmp_path / "out.png").exists()


def test_a_trace_at_the_limits_still_draws_without_warnings(tmp_path):
    lines = [_trace_line(plot.MAX_T_S - 0.1, amp_ua=-2 ** 53), _trace_line(plot.MAX_T_S, amp_ua=2 ** 53,
                                                                            measured_mc=None, faults=["x"])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot.plot_session(lines, tmp_path / "edge.png").exists()
        assert plot.plot_session([_trace_line(0.0)], tmp_path / "zero.png").exists()


# (field, bad value as JSON text, the start of what the error says after "not a pulse record: ")
BAD_PULSE_FIELDS = [
    ("delivered2_ua", '"x"', 'delivered2_ua not an integer: "x"'),
    ("delivered2_ua", "1e400", "delivered2_ua not an integer: Infinity"),
    ("amp1_ua", "1" + "0" * 400, "amp1_ua 1000"),
    ("amp1_ua", "-1", "amp1_ua -1 out of range: must be 0 to 100000 (the output stage's clamp)"),
    ("amp2_ua", "100001", "amp2_ua 100001 out of range: must be 0 to 100000"),
    ("delivered_ua", "200001", "delivered_ua 200001 out of range: must be 0 to 200000 (twice the stage's clamp"),
    ("delivered2_ua", "-5", "delivered2_ua -5 out of range: must be 0 to 200000"),
    ("phase1_us", "0", "phase1_us 0 out of range: must be 1 to 2000 (the output stage's clamp)"),
    ("phase2_us", "-200", "phase2_us -200 out of range: must be 1 to 2000"),
    ("gap_us", "-1", "gap_us -1 out of range: must be 0 to 2000"),
    ("t_ms", "-10", "t_ms -10 out of range: must be 0 to 1000000000000"),
    ("ch", "-1", "ch -1 out of range: must be 0 to 255"),
    ("start_us", "-3", "start_us -3 out of range: must be 0 to 1000000"),
]


@pytest.mark.parametrize("field, value, message", BAD_PULSE_FIELDS)
def test_a_pulse_record_out_of_range_is_refused(tmp_path, field, value, message):
    """These records used to pass (delivered2_ua was never checked, nor any range) and then
    crashed the drawing, or drew a negative width, or printed matplotlib warnings."""
    bad = json.dumps(dict(_pulse(10), **{field: 12345})).replace("12345", value)
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(_pulse(0)) + "\n" + bad + "\n")
    result = _plot(["--waveform", str(path), "--count", "2"], tmp_path)
    assert result.exit_code == 1, result.output
    assert "Error: %s:2: not a pulse record: %s" % (path, message) in result.output
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(plot.PlotError, match="^<pulses>:2: not a pulse record: " + field):  # parsed records alike
        plot.plot_waveform([_pulse(0), json.loads(bad)], tmp_path / "w.png")


def test_pulses_at_the_limits_still_draw_without_warnings(tmp_path):
    low = {key: pulses.LIMITS[key][0] for key in pulses.FIELDS}
    high = {key: pulses.LIMITS[key][1] for key in pulses.FIELDS}
    records = [dict(low, t_ms=0), dict(high, t_ms=10, ch=0), dict(low, t_ms=20, amp1_ua=1)]
    del records[2]["delivered2_ua"]  # optional
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot.plot_waveform(records, tmp_path / "edge.png").exists()


@pytest.mark.parametrize("name", ["fault_overcurrent", "fault_electrode_off", "preset_burst"])
def test_pulse_files_the_simulator_writes_still_draw(tmp_path, name):
    trace, pulse_file = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    result = CliRunner().invoke(cli, ["run", str(LIBRARY / (name + ".json")), "--trace", str(trace),
                                      "--pulses", str(pulse_file)])
    assert result.exit_code == 0, result.output
    records = pulses.read_pulses(pulse_file)
    for channel in sorted({record["ch"] for record in records}):
        result = _plot(["--waveform", str(pulse_file), "--channel", str(channel), "--count", "8"], tmp_path)
        assert result.exit_code == 0, result.output
    assert _plot([str(trace)], tmp_path).exit_code == 0


@pytest.mark.parametrize("waveform", [False, True])
def test_json_nested_too_deeply_is_named(tmp_path, waveform):
    """json.loads raises RecursionError (not ValueError) on 1000 levels of [ ]: a traceback."""
    path = tmp_path / "deep.jsonl"
    for text in (DEEP + "\n", DEEP[:1000] + "\n" + DEEP[1000:] + "\n"):  # one line; one document over two
        path.write_text(text)
        result = _plot((["--waveform"] if waveform else []) + [str(path)], tmp_path)
        assert result.exit_code == 1, result.output
        assert "Error: %s:1: not valid JSON: nested too deeply" % path in result.output


class FailingFile:
    """A text file whose writes fail after `good` lines (a full disk), and whose close fails too."""

    def __init__(self, good):
        self.good, self.lines = good, []

    def write(self, text):
        if len(self.lines) >= self.good:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.lines.append(text)

    def close(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


SHORT_RUN = {"duration_s": 2, "seed": 3, "channels": 1, "steps": [
    {"at_s": 0.1, "send": {"op": "hello", "proto": "0.2"}},
    {"at_s": 0.2, "send": {"op": "start", "amp_ua": [10000], "lease_ms": 0, "ramp_ms": 1000}},
]}


def test_a_failing_pulse_write_never_reaches_the_device():
    """The recorder runs inside the firmware's fire(): its OSError used to latch a fault there."""
    plain = []
    ScenarioRun(normalize(SHORT_RUN), plain.append).run()
    lines = []
    run = ScenarioRun(normalize(SHORT_RUN), lines.append)
    out = FailingFile(good=5)
    recorder = pulses.PulseRecorder(run.board, out)
    run.board.pulse_out.recorder = recorder
    run.run()
    assert lines == plain
    assert isinstance(recorder.error, OSError) and recorder.count == len(out.lines) == 5
    assert sum(run.board.pulse_out.pulse_count) > 5  # the run went on firing


def test_run_scenario_reports_a_pulse_file_that_fails_to_close(tmp_path, monkeypatch):
    """The last lines are flushed at close: that error, too, fails the run after it."""
    monkeypatch.setattr(pulses, "open", lambda *args, **kwargs: FailingFile(good=10 ** 9), raising=False)
    trace = tmp_path / "t.jsonl"
    with pytest.raises(SimError, match=r"^p\.jsonl: cannot write the pulse file: No space left on device$"):
        pulses.run_scenario(normalize(SHORT_RUN), str(trace), "p.jsonl")
    plain = []
    ScenarioRun(normalize(SHORT_RUN), plain.append).run()
    assert trace.read_text().splitlines() == plain


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_run_with_pulses_to_a_full_device_fails_and_keeps_the_trace(tmp_path):
    """`--pulses /dev/full` exited 0 and its trace had a fault the firmware latched from the
    recorder's OSError. (/dev/full is opened and written in place, never renamed.)"""
    scenario = str(LIBRARY / "preset_burst.json")
    trace, plain = tmp_path / "t.jsonl", tmp_path / "plain.jsonl"
    result = CliRunner().invoke(cli, ["run", scenario, "--trace", str(trace), "--pulses", "/dev/full"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert "Error: /dev/full: cannot write the pulse file: No space left on device" in result.output
    assert "Traceback" not in result.output
    assert CliRunner().invoke(cli, ["run", scenario, "--trace", str(plain)]).exit_code == 0
    assert trace.read_bytes() == plain.read_bytes()
