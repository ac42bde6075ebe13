"""`tens-sim plot` and pulse recording (sim/plot.py, sim/pulses.py).

A short real scenario (stimulation on both channels, one asymmetric; heat; a
half-detached electrode that latches no_load) is run once under CPython with
its pulses recorded; the tests draw it and check the pictures are real PNGs of
the expected size, that the pulse file has one line per pulse the board fired
and leaves the trace unchanged, that --from-s/--to-s choose what is drawn, and
that bad input names the file and the line.
"""

import json
import math
import struct

import pytest
from click.testing import CliRunner

from sim import plot, pulses
from sim.cli import cli
from sim.scenario import ScenarioRun, normalize

SCENARIO = {
    "duration_s": 8,
    "seed": 5,
    "channels": 2,
    "steps": [
        {"at_s": 0.1, "send": {"op": "hello", "proto": "0.2"}},
        {"at_s": 0.2, "send": {"op": "set_stim", "ch": 1,
                               "stim": {"phase_us": 200, "rate_hz": 100, "waveform": "asymmetric", "asym_ratio": 2}}},
        {"at_s": 0.3, "send": {"op": "start", "amp_ua": [10000, 8000], "lease_ms": 0, "ramp_ms": 1000}},
        {"at_s": 0.4, "send": {"op": "heat", "level": "low"}},
        {"at_s": 5.0, "fault": "electrode_partial:0"},
        {"at_s": 6.0, "clear": "electrode_partial:0"},
    ],
}


def _shortened(duration_s):
    """The scenario cut to its first duration_s seconds (the fault steps fall away)."""
    steps = [step for step in SCENARIO["steps"] if step["at_s"] <= duration_s]
    return dict(SCENARIO, duration_s=duration_s, steps=steps)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(trace path, pulse path, ScenarioRun) of the scenario run with its pulses recorded."""
    out = tmp_path_factory.mktemp("plot")
    trace_path, pulse_path = out / "trace.jsonl", out / "pulses.jsonl"
    lines = []
    scenario = ScenarioRun(normalize(SCENARIO), lines.append)
    with pulses.recording(scenario.board, pulse_path) as recorder:
        scenario.run()
    trace_path.write_text("".join(line + "\n" for line in lines))
    assert recorder.count > 0
    return trace_path, pulse_path, scenario


def test_pulse_file_has_one_line_per_fired_pulse(recorded):
    _, pulse_path, scenario = recorded
    records = pulses.read_pulses(pulse_path)
    fired = scenario.board.pulse_out.pulse_count
    assert len(pulse_path.read_text().splitlines()) == len(records) == sum(fired)
    for ch in range(len(fired)):
        assert sum(1 for r in records if r["ch"] == ch) == fired[ch]
    first = records[0]
    assert list(first) == list(pulses.FIELDS)
    # channel 1 is asymmetric 2:1 and balanced; every pulse starts inside its 10 ms tick
    for record in records:
        assert 0 <= record["start_us"] < 10000 and record["t_ms"] % 10 == 0
        assert record["amp1_ua"] * record["phase1_us"] == record["amp2_ua"] * record["phase2_us"]
        if record["ch"] == 1:
            assert record["phase2_us"] == 2 * record["phase1_us"] == 400
    # the half-detached electrode (5..6 s) limits what flows on channel 0, in both phases
    partial = [r for r in records if r["ch"] == 0 and r["t_ms"] >= 5000]
    assert partial and all(r["delivered_ua"] < r["amp1_ua"] // 2 for r in partial)
    assert all(0 < r["delivered2_ua"] < r["amp2_ua"] for r in partial)
    steady = [r for r in records if r["ch"] == 0 and 2500 <= r["t_ms"] < 5000]
    assert steady and all(r["delivered_ua"] == r["amp1_ua"] == 10000 for r in steady)


def test_recording_leaves_the_trace_unchanged(recorded):
    trace_path, _, _ = recorded
    plain = []
    ScenarioRun(normalize(SCENARIO), plain.append).run()
    assert trace_path.read_text().splitlines() == plain


def test_recording_chains_an_existing_recorder(tmp_path):
    scenario = ScenarioRun(normalize(_shortened(1.5)), lambda line: None)
    seen = []
    scenario.board.pulse_out.recorder = lambda *pulse: seen.append(pulse)
    before = scenario.board.pulse_out.recorder
    with pulses.recording(scenario.board, tmp_path / "p.jsonl") as recorder:
        scenario.run()
    assert seen and len(seen) == recorder.count == sum(scenario.board.pulse_out.pulse_count)
    assert scenario.board.pulse_out.recorder is before  # detached afterwards


def test_session_png(recorded, tmp_path):
    trace_path, _, _ = recorded
    out = plot.plot_session(trace_path, tmp_path / "session.png")
    assert out.stat().st_size > 30000
    assert _png_size(out) == (1200, 860)


def test_session_figure_content(recorded):
    trace_path, _, _ = recorded
    fig = plot.session_figure(trace_path)
    strip, amp, temp, duty = fig.axes[:4]
    assert amp.get_ylabel() == "amplitude (mA)"
    assert temp.get_ylabel() == "temperature (°C)"
    assert duty.get_ylabel() == "heater duty (%)"
    assert duty.get_xlabel() == "simulated time (s)"
    texts = [t.get_text() for t in strip.texts]
    assert "no_load:0" in texts and "electrode_partial:0" in texts
    assert max(amp.get_ylim()) >= 10.0  # 10 mA on channel 0
    labels = [line.get_label() for line in amp.get_lines()]
    assert "ch1 commanded" in labels and "ch0 delivered (last pulse of each 100 ms)" in labels


def test_session_respects_from_and_to(recorded, tmp_path):
    trace_path, _, _ = recorded
    fig = plot.session_figure(trace_path, from_s=3.0, to_s=5.5)
    left, right = fig.axes[1].get_xlim()
    assert left == pytest.approx(3.0) and right == pytest.approx(5.5)  # never past --to-s
    left, right = plot.session_figure(trace_path, from_s=3.0).axes[1].get_xlim()
    assert right == pytest.approx(8.1)  # to the end: the last row (8.0 s) stands for 100 ms
    for line in fig.axes[1].get_lines():
        xs = [x for x in line.get_xdata()]
        assert xs and min(xs) >= 3.0 and max(xs) <= 5.5
    expected = r"trace\.jsonl: no trace lines from 20 s to the end \(the trace covers 0 to 8 s\)"
    with pytest.raises(plot.PlotError, match=expected):
        plot.session_figure(trace_path, from_s=20)
    with pytest.raises(plot.PlotError, match="must be after"):
        plot.session_figure(trace_path, from_s=4, to_s=2)


def test_waveform_png_from_recorded_pulses(recorded, tmp_path):
    _, pulse_path, _ = recorded
    out = plot.plot_waveform(pulse_path, tmp_path / "wave.png", count=3, channel=1, from_s=3.0)
    assert out.stat().st_size > 20000
    width, height = _png_size(out)
    assert (width, height) == (1200, 480)
    fig = plot.waveform_figure(pulse_path, count=2, channel=1, from_s=3.0)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("pulse 1 at t = 3.0000 s") and titles[1].startswith("pulse 2 at t = 3.0100 s")
    assert "asymmetric" in fig._suptitle.get_text()
    assert fig.axes[0].get_xlabel() == "time from pulse start (µs)"
    assert fig.axes[0].get_ylabel() == "current (mA)"
    # the delivered line of a limited pulse lies below the commanded one
    limited = plot.waveform_figure(pulse_path, count=1, channel=0, from_s=5.0)
    commanded, delivered = [line for line in limited.axes[0].get_lines() if line.get_label() in
                            ("commanded", "delivered (load model, end of phase)")]
    assert max(delivered.get_ydata()) < max(commanded.get_ydata()) / 2
    assert "compliance" in limited.axes[0].get_title()


def test_waveform_selection_errors(recorded):
    _, pulse_path, _ = recorded
    with pytest.raises(plot.PlotError, match=r"pulses\.jsonl: no pulses on channel 5 \(pulses on channel 0, 1\)"):
        plot.waveform_figure(pulse_path, channel=5)
    with pytest.raises(plot.PlotError, match=r"no pulses on channel 0 from 7 s to the end"):
        plot.waveform_figure(pulse_path, channel=0, from_s=7)
    with pytest.raises(plot.PlotError, match="--count"):
        plot.waveform_figure(pulse_path, count=0)


def test_a_waveform_with_fewer_pulses_than_asked_says_so(recorded):
    _, pulse_path, _ = recorded
    fig = plot.waveform_figure(pulse_path, count=5, channel=1, from_s=3.0, to_s=3.025)  # 100 Hz: 3 pulses
    assert len(fig.axes) == 3
    assert "3 of the 5 pulses asked for: no more on channel 1 in this window" in fig._suptitle.get_text()
    assert "asked for" not in plot.waveform_figure(pulse_path, count=3, channel=1, from_s=3.0)._suptitle.get_text()


def test_bad_traces_name_the_file_and_line(recorded, tmp_path):
    trace_path, _, _ = recorded
    good = trace_path.read_text().splitlines()
    cases = {
        "garbled.jsonl": (good[:3] + [good[3][:40]] + good[4:], r"garbled\.jsonl:4: not valid JSON"),
        "notrace.jsonl": (good[:1] + ['{"t_s": 0.1, "state": "IDLE"}'],
                          r"notrace\.jsonl:2: not a trace line: ch missing"),
        "array.jsonl": (["[1, 2]"], r"array\.jsonl:1: not a trace line: expected a JSON object"),
        "empty.jsonl": ([], r"empty\.jsonl: empty: no trace lines"),
        "blank.jsonl": (["", "  "], r"blank\.jsonl: empty: no trace lines"),
    }
    for name, (lines, message) in cases.items():
        path = tmp_path / name
        path.write_text("".join(line + "\n" for line in lines))
        with pytest.raises(plot.PlotError, match=message):
            plot.plot_session(path, tmp_path / "out.png")
    with pytest.raises(plot.PlotError, match=r"missing\.jsonl: cannot read: No such file"):
        plot.plot_session(tmp_path / "missing.jsonl", tmp_path / "out.png")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(plot.PlotError, match=r"binary\.jsonl: not a trace \(not UTF-8 text\)"):
        plot.plot_session(tmp_path / "binary.jsonl", tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_bad_pulse_files_name_the_file_and_line(recorded, tmp_path):
    trace_path, pulse_path, _ = recorded
    good = pulse_path.read_text().splitlines()
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text("\n".join(good[:5] + ["{oops"] + good[5:]) + "\n")
    with pytest.raises(plot.PlotError, match=r"garbled\.jsonl:6: not valid JSON"):
        plot.plot_waveform(garbled, tmp_path / "w.png")
    wrong = tmp_path / "wrong.jsonl"
    record = json.loads(good[0])
    record["amp1_ua"] = "lots"
    wrong.write_text(good[0] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(plot.PlotError, match=r"wrong\.jsonl:2: not a pulse record: amp1_ua not an integer"):
        plot.plot_waveform(wrong, tmp_path / "w.png")
    # a trace given where pulses belong
    with pytest.raises(plot.PlotError, match=r"trace\.jsonl:1: not a pulse record: t_ms missing"):
        plot.plot_waveform(trace_path, tmp_path / "w.png")


def test_a_scenario_given_to_plot_is_named_as_such(tmp_path):
    """`tens-sim plot my.json` said "my.json:1: not valid JSON: Expecting property name ..." of a
    valid JSON file: the scenario (one document over several lines) instead of its trace."""
    scenario = tmp_path / "my.json"
    scenario.write_text(json.dumps(SCENARIO, indent=2))
    for args, what in ((["plot", str(scenario)], "a trace"), (["plot", "--waveform", str(scenario)], "a pulse file")):
        result = CliRunner().invoke(cli, args + ["-o", str(tmp_path / "x.png")])
        assert result.exit_code == 1, result.output
        assert "Error: %s: one JSON document over several lines, not %s (" % (scenario, what) in result.output
        assert "not valid JSON" not in result.output
    assert not (tmp_path / "x.png").exists()


def test_cli_plot(recorded, tmp_path):
    trace_path, pulse_path, _ = recorded
    runner = CliRunner()
    out = tmp_path / "cli.png"
    result = runner.invoke(cli, ["plot", str(trace_path), "-o", str(out), "--from-s", "1", "--to-s", "7"])
    assert result.exit_code == 0, result.output
    assert _png_size(out) == (1200, 860)
    wave = tmp_path / "wave.png"
    result = runner.invoke(cli, ["plot", "--waveform", str(pulse_path), "-o", str(wave), "--channel", "1",
                                 "--count", "1", "--from-s", "2"])
    assert result.exit_code == 0, result.output
    assert _png_size(wave) == (640, 480)  # one pulse: one panel, wide enough for the title

    bad = tmp_path / "bad.jsonl"
    bad.write_text(trace_path.read_text().splitlines()[0] + "\nnot json\n")
    result = runner.invoke(cli, ["plot", str(bad), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "bad.jsonl:2: not valid JSON" in result.output
    result = runner.invoke(cli, ["plot", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "--waveform PULSES" in result.output
    result = runner.invoke(cli, ["plot", str(trace_path), "--waveform", str(pulse_path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["plot", str(trace_path), "--channel", "1", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "go with --waveform" in result.output


def test_cli_run_with_pulses(tmp_path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_shortened(2)))
    trace, pulse_file = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--trace", str(trace), "--pulses", str(pulse_file)])
    assert result.exit_code == 0, result.output
    plain = []
    run = ScenarioRun(normalize(_shortened(2)), plain.append)
    run.run()
    assert trace.read_text().splitlines() == plain
    assert len(pulse_file.read_text().splitlines()) == sum(run.board.pulse_out.pulse_count)
    assert "%s: %d pulses" % (pulse_file, sum(run.board.pulse_out.pulse_count)) in result.output
    result = CliRunner().invoke(
        cli, ["run", str(scenario), "--trace", str(trace), "--pulses", str(pulse_file), "--runtime", "micropython"]
    )
    assert result.exit_code == 2 and "cpython runtime only" in result.output  # a usage error


# ---- hand-made traces and pulses -------------------------------------------------------------


def _row(t_s, state="RUNNING", heat_state="heating", measured_mc=30000, faults=(), channels=1, **heat):
    """One trace line as the firmware writes it (a dict), with a heat object."""
    row = {
        "t_s": t_s, "state": state, "faults": list(faults), "sim_faults": [],
        "ch": [{"amp_ua": 5000, "target_ua": 5000, "delivered_ua": 5000, "pulses": 10}] * channels,
        "heat": dict({"state": heat_state, "target_mc": 40000, "pad_true_mc": 31000, "heater_duty_pct": 50,
                      "measured_mc": measured_mc}, **heat),
    }
    if measured_mc is Ellipsis:  # the key left out
        del row["heat"]["measured_mc"]
    return row


def _pulse(index, amp_ua, delivered_ua):
    return {"t_ms": 10 * index, "ch": 0, "start_us": 0, "amp1_ua": amp_ua, "phase1_us": 200, "gap_us": 50,
            "amp2_ua": amp_ua, "phase2_us": 200, "delivered_ua": delivered_ua, "delivered2_ua": delivered_ua}


def _drawn(ax):
    """The labelled lines of a panel: {label: line}."""
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def _legend_labels(ax):
    legend = ax.get_legend()
    return [] if legend is None else [text.get_text() for text in legend.get_texts()]


def test_cli_plot_refuses_bad_output_and_window_as_usage_errors(recorded, tmp_path):
    trace_path, pulse_path, _ = recorded
    runner = CliRunner()
    out = str(tmp_path / "x.png")
    cases = [
        (["plot", str(trace_path), "-o", ""], "Error: -o '': no file name; name the picture file, ending in .png"),
        (["plot", str(trace_path), "-o", str(tmp_path / "sub") + "/"], "no file name"),
        (["plot", str(trace_path), "-o", out, "--from-s", "nan"],
         "Error: --from-s must be a finite number of seconds, not nan"),
        (["plot", str(trace_path), "-o", out, "--to-s", "inf"],
         "Error: --to-s must be a finite number of seconds, not inf"),
        (["plot", str(trace_path), "-o", out, "--from-s", "8", "--to-s", "2"],
         "Error: --to-s (2) must be after --from-s (8)"),
        (["plot", "--waveform", str(pulse_path), "-o", out, "--from-s", "-inf"],
         "Error: --from-s must be a finite number of seconds, not -inf"),
        (["plot", "--waveform", str(pulse_path), "-o", out, "--from-s", "3", "--to-s", "3"],
         "Error: --to-s (3) must be after --from-s (3)"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and message in errors[0], (args, result.output)
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(plot.PlotError, match="no file name"):
        plot.output_path("")
    with pytest.raises(plot.PlotError, match=r"--from-s must be a finite number of seconds, not nan"):
        plot.session_figure(trace_path, from_s=float("nan"))
    with pytest.raises(plot.PlotError, match=r"--to-s must be a finite number of seconds, not inf"):
        plot.waveform_figure(pulse_path, to_s=float("inf"))


def test_waveform_layout_is_readable_for_every_count(tmp_path):
    # a 20 mA pulse, then a ramp from 0.2 mA, every one limited by the load (a compliance note each)
    records = [_pulse(0, 20000, 2400)] + [_pulse(i, 200 * i, 100 * i) for i in range(1, 8)]
    for count in range(1, plot.MAX_WAVEFORM_PULSES + 1):
        fig = plot.waveform_figure(records, count=count)
        width_px, height_px = fig.get_size_inches() * plot.DPI
        assert width_px <= 1600 and height_px <= 900, (count, width_px, height_px)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        axes = fig.axes
        assert len(axes) == count
        titles = [ax.title.get_window_extent(renderer) for ax in axes]
        for index, title in enumerate(titles):
            assert "compliance" in axes[index].get_title()
            assert 0 <= title.x0 and title.x1 <= width_px, (count, index)
            for other in range(len(axes)):
                if other != index:
                    assert not title.overlaps(titles[other]), (count, index, other)
                    assert not title.overlaps(axes[other].get_window_extent(renderer)), (count, index, other)
        if count > 1:  # 20 mA next to 0.2 mA: each its own scale, and the title says so
            assert axes[0].get_ylim()[1] >= 20 and axes[1].get_ylim()[1] < 0.5
            assert "each panel has its own current scale" in fig._suptitle.get_text()
    assert plot.waveform_grid(8) == (2, 4) and plot.waveform_grid(5) == (2, 3) and plot.waveform_grid(4) == (1, 4)
    out = plot.plot_waveform(records, tmp_path / "eight.png", count=8)
    assert _png_size(out) == (1560, 840)
    # pulses of one size share one scale, and no note
    same = plot.waveform_figure([_pulse(i, 10000, 10000) for i in range(5)], count=5)
    assert len({ax.get_ylim() for ax in same.axes}) == 1
    assert "own current scale" not in same._suptitle.get_text()


def test_narrow_window_draws_its_single_row_inside_the_window(recorded):
    trace_path, _, _ = recorded
    fig = plot.session_figure(trace_path, from_s=5, to_s=5.05)  # one row: t = 5.0 s
    strip, amp, temp, duty = fig.axes[:4]
    for ax in (strip, amp, temp, duty):
        assert ax.get_xlim() == pytest.approx((5.0, 5.05))
    for label in ("pad true (model, skin face)", "measured (firmware, filtered)"):
        # a single reading has no neighbour to draw a line to: it is a dot
        dots = [line for line in temp.get_lines() if line.get_marker() == "o"
                and line.get_color() == _drawn(temp)[label].get_color()]
        assert dots and list(dots[0].get_xdata()) == [5.0]
    # a step value holds for its row, up to the window's end
    assert list(_drawn(amp)["ch0 commanded"].get_xdata()) == pytest.approx([5.0, 5.05])
    assert list(_drawn(duty)["heater duty"].get_xdata()) == pytest.approx([5.0, 5.05])
    # a window ending on its only row still has a width
    fig = plot.session_figure(trace_path, from_s=4.95, to_s=5.0)
    assert fig.axes[1].get_xlim() == pytest.approx((4.95, 5.0))


def test_a_panel_with_nothing_to_draw_says_so():
    rows = [dict(_row(t / 10.0), ch=[]) for t in range(5)]  # no channels at all
    amp = plot.session_figure(rows).axes[1]
    notes = [text.get_text() for text in amp.texts]
    assert notes == ["no data in this window"]


def test_null_measured_temperature_is_a_gap(tmp_path):
    measured = [30000, 30100, None, None, 30400, None, None, 30700, 30800]
    rows = [_row(i / 10.0, measured_mc=value) for i, value in enumerate(measured)]
    rows[5] = _row(0.5, measured_mc=Ellipsis)  # the key missing: no reading either
    trace = tmp_path / "nulls.jsonl"
    trace.write_text("".join(json.dumps(row) + "\n" for row in rows))
    temp = plot.session_figure(trace).axes[2]
    line = [line for label, line in _drawn(temp).items() if label.startswith("measured")][0]
    ys = list(line.get_ydata())
    assert ys[:2] == [30.0, 30.1] and ys[4] == 30.4 and ys[7:] == [30.7, 30.8]
    for index in (2, 3, 5, 6):  # not 0, not the last reading carried on: NaN, which breaks the line
        assert math.isnan(ys[index])
    # the one reading between gaps is drawn as a dot, not lost
    dots = [dot for dot in temp.get_lines() if dot.get_marker() == "o" and dot.get_color() == line.get_color()]
    assert dots and list(dots[0].get_xdata()) == [0.4] and list(dots[0].get_ydata()) == [30.4]
    assert "measured (firmware, filtered)\ngap: no valid reading" in _legend_labels(temp)
    # every reading null: no measured line, and the panel says so
    blind = plot.session_figure([_row(i / 10.0, measured_mc=None, heat_state="fault") for i in range(5)]).axes[2]
    assert not [label for label in _legend_labels(blind) if label.startswith("measured")]
    assert "measured: no valid reading in this window" in [text.get_text() for text in blind.texts]
    plot.plot_session(trace, tmp_path / "nulls.png")  # and it draws


def test_legends_list_only_what_is_drawn():
    idle = [_row(i / 10.0, state="RUNNING", heat_state="off") for i in range(5)]
    fig = plot.session_figure(idle)
    strip, temp = fig.axes[0], fig.axes[2]
    assert _legend_labels(temp) == ["pad true (model, skin face)", "measured (firmware, filtered)"]
    assert _legend_labels(strip) == ["RUNNING"]  # no other state, no injected or latched fault
    heating = [_row(i / 10.0, heat_state="heating", faults=["sensor_open"] if i > 2 else []) for i in range(5)]
    fig = plot.session_figure(heating)
    assert "target (while heating)" in _legend_labels(fig.axes[2])
    assert _legend_labels(fig.axes[0]) == ["RUNNING", "fault latched (firmware)"]
