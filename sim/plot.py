"""Pictures of a simulated session: `tens-sim plot` (CPython only).

`plot_session(trace, out_path)` draws a trace (`tens-sim run --trace`) on one time axis:
a timeline strip (device state, faults the simulator injected, faults the firmware
latched), stimulation amplitude per channel in mA (target, commanded, delivered),
pad temperature in °C (true, measured, target) and heater duty in %. Device states
shade every panel; each latched fault is a red line through all of them. A null
measured temperature (no valid reading) is a gap; a sample with no neighbour is a dot.

`plot_waveform(pulses, out_path)` draws a few consecutive pulses of one channel from a
pulse file (`tens-sim run --pulses`, see `sim.pulses`) at microsecond resolution:
commanded current (phase 1 positive, interphase gap, phase 2 negative) against the
current the electrode-skin load model lets flow, one panel per pulse, up to four a row.

Drawn with matplotlib's Agg canvas on Figure objects (no pyplot, nothing shown on a
display), saved as PNG, PDF or SVG by the output path's extension (`output_path`). Bad
input raises PlotError naming the file and line.
"""

import math
import os
import warnings
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sim.pulses import PulseFileError, clip, json_line, parse_pulses, read_pulses, several_lines_one_document

DPI = 100
CHANNEL_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")
DELIVERED_COLORS = ("#0b3a66", "#8a3b00", "#145214", "#3d1f5c")  # darker shades: drawn over the commanded line
STATE_COLORS = {"IDLE": "#d9d9d9", "RUNNING": "#b7e1b5", "PAUSED": "#ffe08a", "FAULT": "#f4a6a6"}
STATE_SHADE_ALPHA = 0.35  # state shading behind the data panels
FAULT_COLOR = "#c62828"
INJECTED_COLOR = "#6a1b9a"
HEAT_ACTIVE = ("heating", "holding", "autotune")  # heat states in which the target applies
MINUTES_FROM_S = 600  # spans longer than this are drawn in minutes
LABEL_MAX = 40  # characters of fault text in the strip
MAX_WAVEFORM_PULSES = 8  # panels in a waveform picture
WAVEFORM_COLUMNS = 4  # panels per row at most; more pulses wrap into a second row
PANEL_W_IN, PANEL_H_IN = 3.6, 3.6  # one waveform panel, with its three-line title
OWN_SCALE_FROM = 3.0  # pulses whose peaks differ more than this factor get a y scale each
HALF = 0.22  # offset of the upper and lower label levels in a strip lane
OUTPUT_FORMATS = ("png", "pdf", "svg")  # by the -o path's extension; none: PNG, ".png" added
MAX_T_S = 10 ** 9  # a trace's t_s: about 31 years
MAX_VALUE = 2 ** 53  # any other number plotted: floats hold every integer up to here


class PlotError(Exception):
    """Input that cannot be plotted; the message names the file (and line)."""


# ---- reading ---------------------------------------------------------------------------------


def read_trace(path):
    """Parse a trace file (JSON lines) into rows; PlotError names the file and line of a problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise PlotError("%s: cannot read: %s" % (path, err.strerror or err))
    except UnicodeDecodeError:
        raise PlotError("%s: not a trace (not UTF-8 text)" % path)
    try:
        return parse_trace(text.splitlines(), str(path))
    except PlotError:
        if several_lines_one_document(text):  # a scenario given for its trace, most likely
            raise PlotError("%s: one JSON document over several lines, not a trace (that has one JSON "
                            "object a line, as `tens-sim run --trace` writes it)" % path)
        raise


def parse_trace(lines, source="<trace>"):
    """Rows from trace lines (strings, or dicts already parsed). Blank lines are skipped."""
    rows = []
    previous = None  # (t_s, line number) of the last row
    for number, line in enumerate(lines, 1):
        if isinstance(line, dict):
            row = line
        else:
            if not line.strip():
                continue
            row = json_line(line, source, number, PlotError)
        problem = _trace_problem(row)
        if problem:
            raise PlotError("%s:%d: not a trace line: %s" % (source, number, problem))
        _check_forward(row["t_s"], number, previous, source)
        previous = (row["t_s"], number)
        rows.append(row)
    if not rows:
        raise PlotError("%s: empty: no trace lines" % source)
    return rows


def _check_forward(t_s, number, previous, source):
    """A trace runs forward in time: a row at or before the one above it (two traces
    pasted together, lines reordered) would fold the time axis back and overprint it."""
    if previous is not None and not t_s > previous[0]:
        raise PlotError("%s:%d: t_s %g is not after %g on line %d; t_s must increase line by line"
                        % (source, number, t_s, previous[0], previous[1]))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _trace_problem(row):
    """What makes `row` no trace line, or None. Every number drawn must be one the plot can
    scale (finite, within MAX_VALUE; t_s from 0 to MAX_T_S) and every fault name a string."""
    if not isinstance(row, dict):
        return "expected a JSON object"
    if not _is_number(row.get("t_s")):
        return "t_s missing or not a number"
    if not 0 <= row["t_s"] <= MAX_T_S:  # also false for NaN and ±Infinity
        return "t_s %s out of range: must be a finite number of seconds from 0 to %d" % (clip(row["t_s"]), MAX_T_S)
    if not isinstance(row.get("state"), str):
        return "state missing or not a string"
    for key in ("faults", "sim_faults"):
        names = row.get(key, [])
        if not isinstance(names, list):
            return "faults / sim_faults must be lists"
        for index, name in enumerate(names):
            if not isinstance(name, str):
                return "%s[%d] is %s, not a fault name (a string)" % (key, index, clip(name))
    channels = row.get("ch")
    if not isinstance(channels, list):
        return "ch missing or not a list"
    for index, channel in enumerate(channels):
        if not isinstance(channel, dict):
            return "ch[%d] is not an object" % index
        for key in ("amp_ua", "target_ua", "delivered_ua"):
            if not _is_number(channel.get(key)):
                return "ch[%d].%s missing or not a number" % (index, key)
            problem = _value_problem("ch[%d].%s" % (index, key), channel[key])
            if problem:
                return problem
    heat = row.get("heat")
    if heat is not None:
        if not isinstance(heat, dict):
            return "heat is not an object"
        for key in ("target_mc", "pad_true_mc", "heater_duty_pct"):
            if not _is_number(heat.get(key)):
                return "heat.%s missing or not a number" % key
            problem = _value_problem("heat." + key, heat[key])
            if problem:
                return problem
        if heat.get("measured_mc") is not None:
            if not _is_number(heat["measured_mc"]):
                return "heat.measured_mc is not a number or null"
            return _value_problem("heat.measured_mc", heat["measured_mc"])
    return None


def _value_problem(name, value):
    if -MAX_VALUE <= value <= MAX_VALUE:  # also false for NaN and ±Infinity
        return None
    return "%s %s out of range: must be a finite number from -2**53 to 2**53" % (name, clip(value))


def check_window(from_s=None, to_s=None):
    """PlotError unless from_s/to_s (None: open) are finite seconds with to_s after from_s."""
    for option, value in (("--from-s", from_s), ("--to-s", to_s)):
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise PlotError("%s must be a finite number of seconds, not %s" % (option, value))
    if from_s is not None and to_s is not None and to_s <= from_s:
        raise PlotError("--to-s (%g) must be after --from-s (%g)" % (to_s, from_s))


def _rows_in_range(rows, from_s, to_s, source):
    check_window(from_s, to_s)
    kept = [
        row for row in rows
        if (from_s is None or row["t_s"] >= from_s) and (to_s is None or row["t_s"] <= to_s)
    ]
    if not kept:
        raise PlotError(
            "%s: no trace lines from %s to %s (the trace covers %g to %g s)"
            % (source, _fmt_s(from_s, "the start"), _fmt_s(to_s, "the end"), rows[0]["t_s"], rows[-1]["t_s"])
        )
    return kept


def _fmt_s(value, default):
    return default if value is None else "%g s" % value


# ---- figure helpers --------------------------------------------------------------------------


def _figure(width_in, height_in, **subplots):
    """A figure on the Agg canvas with constrained layout (labels do not overlap)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(**subplots, squeeze=False)
    return fig, axes


def output_path(out_path):
    """(the path written, its format) for an output path: .png, .pdf or .svg; without an
    extension a PNG at PATH.png (as matplotlib names it). PlotError for any other extension."""
    text = str(out_path)
    path = Path(text)
    if not text.strip() or text.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise PlotError("'%s': no file name; name the picture file, ending in .png, .pdf or .svg" % text)
    extension = path.suffix[1:].lower()
    if not extension:
        return path.with_name(path.name + ".png"), "png"
    if extension not in OUTPUT_FORMATS:
        names = ["." + name for name in OUTPUT_FORMATS]
        raise PlotError("%s: cannot draw a .%s picture; the output path must end in %s or %s"
                        % (out_path, extension, ", ".join(names[:-1]), names[-1]))
    return path, extension


def _save(fig, out_path):
    out_path, out_format = output_path(out_path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            fig.savefig(out_path, dpi=DPI, format=out_format)
    except OSError as err:
        raise PlotError("%s: cannot write: %s" % (out_path, err.strerror or err))
    return out_path


def _spans(times, values, end):
    """[(start, stop, value)] runs of equal values over sample times; the last run ends at `end`."""
    spans = []
    for index, value in enumerate(values):
        if spans and spans[-1][2] == value:
            continue
        if spans:
            spans[-1][1] = times[index]
        spans.append([times[index], end, value])
    return [tuple(span) for span in spans]


def _short(text):
    return text if len(text) <= LABEL_MAX else text[: LABEL_MAX - 1] + "…"


# ---- session ---------------------------------------------------------------------------------


def plot_session(trace, out_path, from_s=None, to_s=None, title=None):
    """Draw a session trace to a PNG (or PDF, SVG: `output_path`); returns the path written.

    `trace` is a trace file's path, or its lines (strings or parsed dicts). `from_s`/`to_s`
    keep the rows from/to those simulated seconds.
    """
    output_path(out_path)  # a bad extension fails before the drawing, not after
    return _save(session_figure(trace, from_s, to_s, title), out_path)


def session_figure(trace, from_s=None, to_s=None, title=None):
    """The Figure plot_session saves (for tests and callers that want to add to it)."""
    if isinstance(trace, (str, Path)):
        source = str(trace)
        rows = read_trace(trace)
    else:
        source = "<trace>"
        rows = parse_trace(trace, source)
    rows = _rows_in_range(rows, from_s, to_s, source)

    t_s = [float(row["t_s"]) for row in rows]
    span_s = t_s[-1] - t_s[0]
    minutes = span_s > MINUTES_FROM_S
    scale = 60.0 if minutes else 1.0
    unit = "min" if minutes else "s"
    xs = [t / scale for t in t_s]
    step = (t_s[1] - t_s[0]) if len(t_s) > 1 else 0.1
    x_start, x_end = _x_window(xs, step / scale, from_s, to_s, scale)
    has_heat = any(row.get("heat") is not None for row in rows)
    channels = max(len(row["ch"]) for row in rows)

    ratios = [1.4, 3] + ([3, 1.6] if has_heat else [])
    fig, axes = _figure(12, 8.6 if has_heat else 5.2, nrows=len(ratios), ncols=1, sharex=True,
                        gridspec_kw={"height_ratios": ratios})
    axes = list(axes[:, 0])
    strip, amp_ax = axes[0], axes[1]
    data_axes = axes[1:]

    fig.suptitle(title or "Simulated session: %s" % Path(source).name, fontsize=13, parse_math=False)

    states = _spans(xs, [row["state"] for row in rows], x_end)
    fault_onsets = _timeline(strip, rows, xs, x_end, states)
    for ax in data_axes:
        for start, stop, state in states:
            ax.axvspan(start, stop, color=STATE_COLORS.get(state, "white"), alpha=STATE_SHADE_ALPHA, lw=0, zorder=0)
        for x, _ in fault_onsets:
            ax.axvline(x, color=FAULT_COLOR, lw=1.2, alpha=0.85, zorder=1)

    _amplitude_panel(amp_ax, rows, xs, x_end, channels)
    if has_heat:
        _temperature_panel(axes[2], rows, xs, x_end)
        _duty_panel(axes[3], rows, xs, x_end)

    axes[-1].set_xlim(x_start, x_end)
    axes[-1].set_xlabel("simulated time (%s)" % unit)
    for ax in data_axes:
        ax.grid(True, axis="y", color="0.85", lw=0.6)
        ax.margins(x=0)
    fig.align_ylabels(axes)
    return fig


def _x_window(xs, step, from_s, to_s, scale):
    """(left, right) of the time axis: the rows kept, the last one standing for the step that
    follows it, but never past --to-s. A window that ends on its only row starts at --from-s
    (or a step before that row), so the axis never has zero width."""
    left, right = xs[0], xs[-1] + step
    if to_s is not None:
        right = min(right, to_s / scale)
    if right <= left:
        left = from_s / scale if from_s is not None else right - step
    return left, right


def _finite(values):
    return [value for value in values if value is not None and math.isfinite(value)]


def _lone(ys):
    """Indices of finite values with no finite neighbour: a line through them would draw nothing."""
    finite = [value is not None and math.isfinite(value) for value in ys]
    return [
        index for index, ok in enumerate(finite)
        if ok and not (index > 0 and finite[index - 1]) and not (index + 1 < len(ys) and finite[index + 1])
    ]


def _line(ax, xs, ys, x_end=None, **style):
    """ax.plot that keeps every sample visible. With `x_end`, a step line (steps-post) whose last
    value holds to x_end (each row stands for the time up to the next); samples with no finite
    neighbour (a single row, one reading between gaps) also get a dot. NaN draws a gap."""
    xs, ys = list(xs), list(ys)
    if x_end is not None:
        style["drawstyle"] = "steps-post"
        if xs and x_end > xs[-1]:
            xs, ys = xs + [x_end], ys + [ys[-1]]
    line, = ax.plot(xs, ys, **style)
    lone = [index for index in _lone(ys) if index < len(xs)]
    if lone:
        ax.plot([xs[index] for index in lone], [ys[index] for index in lone], ls="none", marker="o",
                markersize=max(4.0, style.get("lw", 1.0) * 2.5), color=line.get_color(), clip_on=False,
                zorder=line.get_zorder(), label="_lone")
    return line


def _legend(ax, **options):
    """A legend of the labelled lines that draw something (at least one finite point)."""
    handles = [
        line for line in ax.get_lines()
        if not line.get_label().startswith("_") and _finite(list(map(float, line.get_ydata())))
    ]
    if handles:
        ax.legend(handles=handles, **options)


def _note(ax, text, color="0.35"):
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=color,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})


def _draws_nothing(ax):
    return not any(_finite(list(map(float, line.get_ydata()))) for line in ax.get_lines())


NO_DATA = "no data in this window"


def _timeline(ax, rows, xs, x_end, states):
    """The strip on top: state, injected faults and latched faults as labelled bars. Returns fault onsets."""
    lanes = (("state", 2), ("injected", 1), ("latched fault", 0))
    for start, stop, state in states:
        ax.broken_barh([(start, stop - start)], (1.58, 0.84), color=STATE_COLORS.get(state, "white"), lw=0)
    _lane_labels(ax, states, 2.0, xs[0], x_end, "0.15")

    injected = _spans(xs, [", ".join(row.get("sim_faults", [])) for row in rows], x_end)
    injected = [span for span in injected if span[2]]
    for start, stop, _ in injected:
        ax.broken_barh([(start, stop - start)], (0.58, 0.84), color=INJECTED_COLOR, alpha=0.3, lw=0)
    _lane_labels(ax, injected, 1.0, xs[0], x_end, INJECTED_COLOR, always=True)

    latched = _spans(xs, [", ".join(row.get("faults", [])) for row in rows], x_end)
    latched = [span for span in latched if span[2]]
    for start, stop, _ in latched:
        ax.broken_barh([(start, stop - start)], (-0.42, 0.84), color=FAULT_COLOR, alpha=0.3, lw=0)
    _lane_labels(ax, latched, 0.0, xs[0], x_end, FAULT_COLOR, always=True)

    onsets = []
    previous = set(rows[0].get("faults", []))  # latched before the window: no onset line at its edge
    for x, row in zip(xs, rows):
        now = set(row.get("faults", []))
        new = [name for name in row.get("faults", []) if name not in previous]
        if new:
            onsets.append((x, ", ".join(new)))
        previous = now
    for x, _ in onsets:
        ax.axvline(x, color=FAULT_COLOR, lw=1.2, alpha=0.85)

    ax.set_ylim(-0.5, 2.5)
    ax.set_yticks([lane for _, lane in lanes], [name for name, _ in lanes], fontsize=9)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    shown = {state for _, _, state in states}
    handles = [Patch(color=STATE_COLORS[name], label=name) for name in STATE_COLORS if name in shown]
    if injected:
        handles.append(Patch(color=INJECTED_COLOR, alpha=0.3, label="fault injected (sim)"))
    if latched:
        handles.append(Line2D([], [], color=FAULT_COLOR, lw=1.2, label="fault latched (firmware)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.15), fontsize=8, frameon=False,
              title="state / faults", title_fontsize=8, alignment="left")
    return onsets


def _lane_labels(ax, spans, y, x_start, x_end, color, always=False):
    """Names on their bars, left-aligned at the start of each.

    When two labels in a lane would run into each other (faults come in clusters: injected,
    then latched a tick later), the lane's labels take an upper and a lower line. State names
    are left off bands too short for them (`always` False): the colour and the legend say which.
    """
    width = x_end - x_start
    placed = []  # (x, align, left, right, text)
    for start, stop, name in spans:
        text = _short(name)
        # rough text width in x units: fontsize 8 on the 12 in figure's ~8.7 in wide axes
        text_w = width * 0.0085 * (len(text) + 1)
        if not always and stop - start < text_w:
            continue
        x, align = start + width * 0.003, "left"
        if x + text_w > x_end:  # would be cut off at the right edge: end it there instead
            x, align = x_end - width * 0.003, "right"
        left = x if align == "left" else x - text_w
        placed.append((x, align, left, left + text_w, text))
    crowded = any(later[2] < earlier[3] for earlier, later in zip(placed, placed[1:]))
    ends = {HALF: -math.inf, -HALF: -math.inf}
    for x, align, left, right, text in placed:
        offset = 0.0
        if crowded:
            free = [level for level in (HALF, -HALF) if ends[level] <= left]
            offset = free[0] if free else min(ends, key=ends.get)
            ends[offset] = right
        ax.text(x, y + offset, text, fontsize=8, va="center", ha=align, color=color, clip_on=True,
                parse_math=False)


def _amplitude_panel(ax, rows, xs, x_end, channels):
    for ch in range(channels):
        color = CHANNEL_COLORS[ch % len(CHANNEL_COLORS)]

        def series(key, rows=rows, ch=ch):
            return [row["ch"][ch][key] / 1000.0 if ch < len(row["ch"]) else math.nan for row in rows]

        delivered = [  # a gap where no pulse fired in the row (burst trains, low rates)
            row["ch"][ch]["delivered_ua"] / 1000.0
            if ch < len(row["ch"]) and row["ch"][ch].get("pulses", 1) else math.nan
            for row in rows
        ]
        _line(ax, xs, series("target_ua"), x_end, color=color, lw=1.0, ls="--", label="ch%d target" % ch)
        _line(ax, xs, series("amp_ua"), x_end, color=color, lw=1.8, label="ch%d commanded" % ch)
        _line(ax, xs, delivered, color=DELIVERED_COLORS[ch % len(DELIVERED_COLORS)], lw=0.9, marker=".",
              markersize=2.5, label="ch%d delivered (last pulse of each 100 ms)" % ch, zorder=3)
    if _draws_nothing(ax):
        _note(ax, NO_DATA)
    elif not any(row["ch"][ch][key] for row in rows for ch in range(len(row["ch"])) for key in ("amp_ua", "target_ua")):
        _note(ax, "no stimulation")
    ax.set_ylabel("amplitude (mA)")
    peak = max([row["ch"][ch][key] for row in rows for ch in range(len(row["ch"]))
                for key in ("amp_ua", "target_ua", "delivered_ua")] + [1000])
    ax.set_ylim(0, peak / 1000.0 * 1.08)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


def _temperature_panel(ax, rows, xs, x_end):
    def celsius(value):  # null or missing (no valid reading, e.g. a latched sensor fault): NaN, a gap
        return value / 1000.0 if _is_number(value) else math.nan

    heat = [row.get("heat") or {} for row in rows]
    true = [celsius(h.get("pad_true_mc")) for h in heat]
    measured = [celsius(h.get("measured_mc")) for h in heat]
    target = [celsius(h.get("target_mc")) if h.get("state") in HEAT_ACTIVE else math.nan for h in heat]
    unread = [row for row, h in zip(rows, heat) if h and not _is_number(h.get("measured_mc"))]
    _line(ax, xs, target, x_end, color="black", lw=1.2, ls="--", label="target (while heating)")
    _line(ax, xs, true, color="tab:red", lw=2.2, label="pad true (model, skin face)")
    _line(ax, xs, measured, color="tab:blue", lw=1.0,
          label="measured (firmware, filtered)" + ("\ngap: no valid reading" if unread else ""))
    if _draws_nothing(ax):
        _note(ax, NO_DATA)
    elif unread and not _finite(measured):
        _note(ax, "measured: no valid reading in this window", color="tab:blue")
    ax.margins(y=0.12)  # a lone reading on the axis range's edge stays clear of the frame
    ax.set_ylabel("temperature (°C)")
    _legend(ax, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


def _duty_panel(ax, rows, xs, x_end):
    duty = [(row.get("heat") or {}).get("heater_duty_pct", math.nan) for row in rows]
    line = _line(ax, xs, duty, x_end, color="tab:red", lw=1.0, label="heater duty")
    ax.fill_between(line.get_xdata(), line.get_ydata(), step="post", color="tab:red", alpha=0.18, lw=0)
    if _draws_nothing(ax):
        _note(ax, NO_DATA)
    elif not any(_finite(duty)):
        _note(ax, "heater off throughout")
    ax.set_ylabel("heater duty (%)")
    ax.set_ylim(0, 105)
    ax.set_yticks([0, 50, 100])
    _legend(ax, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


# ---- waveform --------------------------------------------------------------------------------


def select_pulses(records, channel=0, count=3, from_s=None, to_s=None, source="<pulses>"):
    """`count` consecutive pulses of `channel` from `from_s` on (up to `to_s`)."""
    check_window(from_s, to_s)
    on_channel = [record for record in records if record["ch"] == channel]
    if not on_channel:
        present = sorted({record["ch"] for record in records})
        raise PlotError("%s: no pulses on channel %d (pulses on channel %s)"
                        % (source, channel, ", ".join(str(ch) for ch in present)))
    chosen = []
    for record in on_channel:
        t_us = _pulse_us(record)
        if from_s is not None and t_us < from_s * 1e6:
            continue
        if to_s is not None and t_us > to_s * 1e6:
            break
        chosen.append(record)
        if len(chosen) >= count:
            break
    if not chosen:
        raise PlotError(
            "%s: no pulses on channel %d from %s to %s (channel %d fires from %.3f to %.3f s)"
            % (source, channel, _fmt_s(from_s, "the start"), _fmt_s(to_s, "the end"), channel,
               _pulse_us(on_channel[0]) / 1e6, _pulse_us(on_channel[-1]) / 1e6)
        )
    return chosen


def _pulse_us(record):
    return record["t_ms"] * 1000 + record["start_us"]


def _shape(phase1_us, gap_us, phase2_us, amp1_ma, amp2_ma):
    """x (µs), y (mA) of a biphasic pulse as a closed step outline from 0 to 0."""
    p2_start = phase1_us + gap_us
    end = p2_start + phase2_us
    xs = [0, 0, phase1_us, phase1_us, p2_start, p2_start, end, end]
    ys = [0, amp1_ma, amp1_ma, 0, 0, -amp2_ma, -amp2_ma, 0]
    return xs, ys


def plot_waveform(pulses, out_path, count=3, channel=0, from_s=None, to_s=None, title=None):
    """Draw `count` consecutive pulses of `channel` at µs resolution; returns the path written.

    `pulses` is a pulse file's path, or pulse records (dicts as in `sim.pulses`) or their lines.
    `from_s`/`to_s`: the first pulse at or after from_s, none after to_s.
    """
    output_path(out_path)  # a bad extension fails before the drawing, not after
    return _save(waveform_figure(pulses, count, channel, from_s, to_s, title), out_path)


def waveform_grid(count):
    """(rows, columns) for `count` panels: at most WAVEFORM_COLUMNS a row, rows filled evenly."""
    rows = -(-count // WAVEFORM_COLUMNS)
    return rows, -(-count // rows)


def _pulse_peak(record):
    return max(record["amp1_ua"], record["amp2_ua"], record["delivered_ua"], record.get("delivered2_ua") or 0) / 1000.0


def waveform_figure(pulses, count=3, channel=0, from_s=None, to_s=None, title=None):
    """The Figure plot_waveform saves: one panel per pulse, up to WAVEFORM_COLUMNS a row."""
    if not 1 <= count <= MAX_WAVEFORM_PULSES:
        raise PlotError("--count must be 1 to %d (one panel per pulse)" % MAX_WAVEFORM_PULSES)
    try:
        if isinstance(pulses, (str, Path)):
            source = str(pulses)
            records = read_pulses(pulses)
        else:
            source = "<pulses>"
            records = parse_pulses(list(pulses), source)
    except PulseFileError as err:
        raise PlotError(str(err))
    chosen = select_pulses(records, channel, count, from_s, to_s, source)

    nrows, ncols = waveform_grid(len(chosen))
    fig, grid = _figure(max(PANEL_W_IN * ncols + 1.2, 6.4), PANEL_H_IN * nrows + 1.2, nrows=nrows, ncols=ncols)
    cells = [ax for row in grid for ax in row]
    for spare in cells[len(chosen):]:
        spare.remove()
    axes = cells[:len(chosen)]
    color = CHANNEL_COLORS[channel % len(CHANNEL_COLORS)]
    longest = max(r["phase1_us"] + r["gap_us"] + r["phase2_us"] for r in chosen)
    peaks = [max(_pulse_peak(r), 0.001) for r in chosen]
    own_scale = max(peaks) > OWN_SCALE_FROM * min(peaks)  # a shared scale would flatten the small ones
    first_us = _pulse_us(chosen[0])
    for index, (ax, record) in enumerate(zip(axes, chosen)):
        peak = peaks[index] if own_scale else max(peaks)
        amp1, amp2 = record["amp1_ua"] / 1000.0, record["amp2_ua"] / 1000.0
        p1, gap, p2 = record["phase1_us"], record["gap_us"], record["phase2_us"]
        xs, ys = _shape(p1, gap, p2, amp1, amp2)
        ax.fill(xs, ys, color=color, alpha=0.18, lw=0)
        ax.plot(xs, ys, color=color, lw=2.2, label="commanded")
        d1 = record["delivered_ua"] / 1000.0
        d2 = record.get("delivered2_ua")
        dx, dy = _shape(p1, gap, p2, d1, math.nan if d2 is None else d2 / 1000.0)
        ax.plot(dx, dy, color="black", lw=1.3, ls=(0, (4, 2)), label="delivered (load model, end of phase)")
        ax.axhline(0, color="0.5", lw=0.8)
        # widths over/under each phase (clear of both lines); the current inside a lobe tall enough for it
        tall1, tall2 = amp1 >= peak * 0.25, amp2 >= peak * 0.25
        _dimension(ax, 0, p1, max(amp1, d1), peak,
                   "%d µs" % p1 + ("" if tall1 else ", " + _ma(amp1, "%+.2f")), above=True)
        _dimension(ax, p1 + gap, p1 + gap + p2, -max(amp2, 0 if d2 is None else d2 / 1000.0), peak,
                   "%d µs" % p2 + ("" if tall2 else ", " + _ma(-amp2, "%+.2f")), above=False)
        ax.annotate("gap %d µs" % gap, xy=(p1 + gap / 2.0, 0), xytext=(p1 + gap / 2.0 + longest * 0.06, peak * 0.22),
                    fontsize=8, color="0.25", arrowprops={"arrowstyle": "->", "color": "0.4", "lw": 0.8})
        if tall1:
            ax.text(p1 / 2.0, amp1 / 2.0, _ma(amp1, _lobe_format(amp1)), ha="center", va="center", fontsize=8)
        if tall2:
            ax.text(p1 + gap + p2 / 2.0, -amp2 / 2.0, _ma(-amp2, _lobe_format(amp2)), ha="center", va="center",
                    fontsize=8)
        offset_ms = (_pulse_us(record) - first_us) / 1000.0
        verdict = _verdict(record)
        ax.set_title(
            "pulse %d at t = %.4f s%s\ndelivered %s / %s%s"
            % (index + 1, _pulse_us(record) / 1e6, "" if index == 0 else " (+%s)" % _after(offset_ms), _ma(d1),
               "–" if d2 is None else _ma(-d2 / 1000.0), "\n" + verdict if verdict else ""),
            fontsize=9,
        )
        ax.set_xlabel("time from pulse start (µs)")
        ax.set_xlim(-longest * 0.08, longest * 1.12)  # one time scale: widths compare across panels
        ax.set_ylim(-peak * 1.35, peak * 1.35)
        ax.grid(True, color="0.9", lw=0.6)
    for ax in grid[:, 0]:
        if ax in axes:
            ax.set_ylabel("current (mA)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    kind = "symmetric" if all(r["amp1_ua"] == r["amp2_ua"] and r["phase1_us"] == r["phase2_us"] for r in chosen) \
        else "asymmetric"
    heading = title or "Channel %d pulses (%s biphasic): %s" % (channel, kind, Path(source).name)
    if own_scale:
        heading += "\neach panel has its own current scale (peaks %s to %s)" % (_ma(min(peaks)), _ma(max(peaks)))
    if len(chosen) < count:
        heading += "\n%d of the %d pulses asked for: no more on channel %d in this window" % (len(chosen), count, channel)
    fig.suptitle(heading, fontsize=12, parse_math=False)
    return fig


def _after(ms):
    return "%.2f ms" % ms if ms < 1000 else "%.3f s" % (ms / 1000.0)


def _ma(value_ma, fmt="%.2f"):
    """mA with a real minus sign, as on the axes."""
    return (fmt % value_ma).replace("-", "\u2212") + " mA"


def _lobe_format(value_ma):
    """One decimal from 1 mA up, two below it (a 0.02 mA pulse is not "+0.0 mA")."""
    return "%+.1f" if abs(value_ma) >= 1 else "%+.2f"


def _verdict(record):
    """How the delivered current compares with the commanded one (phase 1)."""
    if record["delivered_ua"] < record["amp1_ua"]:
        return "below commanded: compliance limit"
    if record["delivered_ua"] > record["amp1_ua"]:
        return "MORE than commanded: output fault"
    return ""


def _dimension(ax, x0, x1, amp, peak, text, above):
    """A width arrow over (or under) a phase, with its width in µs."""
    y = amp + (peak * 0.12 if above else -peak * 0.12)
    ax.annotate("", xy=(x0, y), xytext=(x1, y), arrowprops={"arrowstyle": "<->", "color": "0.3", "lw": 0.8})
    ax.text((x0 + x1) / 2.0, y + (peak * 0.04 if above else -peak * 0.04), text, ha="center",
            va="bottom" if above else "top", fontsize=8, color="0.25")
