"""An HTML report of the device's session log, for the patient and their clinician.

`write_report(records, out_dir)` writes out_dir/index.html and the PNG charts it
shows; the page needs nothing else (no scripts, no web fonts, inline CSS). All
text that came from the device (program names, stop reasons, fault names and
messages) is HTML-escaped, and kept out of matplotlib's mathtext parser.

Times are shown in UTC: the device logs unix seconds and has no time zone.
Sessions logged while the device did not know the time are listed in their own
table and left out of the charts over dates (they cannot be placed on them), but
they count in the totals.

Charts are drawn with matplotlib's Agg canvas on Figure objects (no pyplot):
nothing is shown on a display and no global pyplot state is left behind in the
tensctl process.
"""

import bisect
import html
import math
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import (
    DAILY,
    HOURLY,
    AutoDateLocator,
    DateFormatter,
    DayLocator,
    date2num,
    num2date,
)
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from host.session_records import encodable, parse
from host.units import format_ma

DEFAULT_TITLE = "pulsewarm therapy report"
DPI = 100
CHANNEL_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")
CONTINUOUS_WEEKS_MAX = 156  # beyond this span (a clock set wrong?), show only the weeks with sessions
PLOT_TEXT_MAX = 40  # device text in a chart title is cut to this many characters

# How a stop reason reads in the table; others are shown as the device wrote them.
STOP_REASONS = {
    "session_end": "completed",
    "stop": "stopped by user",
    "estop": "emergency stop",
    "fault": "stopped by a fault",
    "lease_expired": "stopped: host link lost (lease expired)",
}
NORMAL_ENDS = ("session_end", "stop")  # the two ways a session ends as intended


# ---- numbers ---------------------------------------------------------------------------------


@dataclass
class Summary:
    """The figures at the top of the page (integer units; None when the log cannot say)."""

    sessions: int
    complete: int
    undated: int
    total_run_ms: int
    first_unix_s: object
    last_unix_s: object
    pain_pairs: int  # sessions scored both before and after
    mean_pain_before: object  # over those sessions
    mean_pain_after: object
    mean_pain_change: object  # after - before: negative means less pain after the session
    faults: int  # fault records, in sessions or not


def _mean(values):
    return sum(values) / len(values) if values else None


def summarize(log):
    """Summary of a parsed log (host.session_records.parse)."""
    sessions = log.sessions
    dated = [s.unix_s for s in sessions if s.unix_s is not None]
    paired = [s for s in sessions if s.pain_change is not None]
    return Summary(
        sessions=len(sessions),
        complete=sum(1 for s in sessions if s.complete),
        undated=sum(1 for s in sessions if s.unix_s is None),
        total_run_ms=sum(s.run_ms for s in sessions),
        first_unix_s=min(dated, default=None),
        last_unix_s=max(dated, default=None),
        pain_pairs=len(paired),
        mean_pain_before=_mean([s.pain_before for s in paired]),
        mean_pain_after=_mean([s.pain_after for s in paired]),
        mean_pain_change=_mean([s.pain_change for s in paired]),
        faults=len(log.loose_faults) + sum(len(s.faults) for s in sessions),
    )


# ---- text --------------------------------------------------------------------------------------


def _e(value):
    """Escaped for HTML text and attributes: everything on the page that is not our own markup."""
    return encodable(html.escape("" if value is None else str(value), quote=True))


def _utc(unix_s):
    return datetime.fromtimestamp(unix_s, tz=timezone.utc)


def format_time(unix_s):
    """1709577000 -> '2024-03-04 18:30' (UTC); None -> 'unknown'."""
    return "unknown" if unix_s is None else _utc(unix_s).strftime("%Y-%m-%d %H:%M")


def format_minutes(ms):
    """2100000 -> '35.0' (minutes, one decimal)."""
    return "%.1f" % (ms / 60000)


def format_cem43(cem43_ms):
    """Thermal dose in CEM43 minutes, two decimals; None -> '–' (no stop record to say)."""
    return "–" if cem43_ms is None else "%.2f" % (cem43_ms / 60000)


def _score(value):
    return "–" if value is None else "%.1f" % value


def _stop_text(session):
    if not session.complete:
        return "no stop record (incomplete)"
    if session.stop_reason is None:
        return "stopped (reason not logged)"
    return STOP_REASONS.get(session.stop_reason, session.stop_reason)


def _sid_text(session):
    return "(no number)" if session.sid is None else str(session.sid)


def _ch(values, ch):
    """values[ch], or None when the list is shorter (channels differ between records)."""
    return values[ch] if ch < len(values) else None


def _ma_number(amp_ua):
    """12500 -> '12.5': the mA figure for a column whose header already says mA (exact, no float)."""
    return format_ma(amp_ua).replace(" mA", "")


def _plural(count, noun):
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")


def _pain_text(session):
    if session.pain_before is None and session.pain_after is None:
        return "–"
    before = "?" if session.pain_before is None else str(session.pain_before)
    after = "?" if session.pain_after is None else str(session.pain_after)
    return "%s → %s" % (before, after)


def _fault_text(fault):
    names = ", ".join(fault.faults) or "(no fault names)"
    return names + (": " + fault.msg if fault.msg else "")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plot_text(value):
    """Device text fit for a chart: no control characters, cut to PLOT_TEXT_MAX (drawn with parse_math=False)."""
    text = encodable(_CONTROL.sub(" ", str(value)))
    return text if len(text) <= PLOT_TEXT_MAX else text[: PLOT_TEXT_MAX - 1] + "…"


# ---- charts ----------------------------------------------------------------------------------


def _figure(width_in, height_in, rows=1, sharex=False):
    """A figure on the Agg canvas with constrained layout (labels do not overlap)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig, path):
    """Write the PNG; a glyph the font lacks (device text can be any Unicode) is drawn as a box, not warned about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(path, dpi=DPI)
    return path.name


def _no_data(ax, text):
    """An empty chart says why it is empty instead of showing bare axes."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _day(unix_s):
    return _utc(unix_s).date()


def _weeks(dated):
    """[(monday, [sessions])] for every week from the first to the last (empty weeks included, unless
    the span is absurdly long: then only weeks with sessions)."""
    by_week = {}
    for session in dated:
        day = _day(session.unix_s)
        by_week.setdefault(day - timedelta(days=day.weekday()), []).append(session)
    mondays = sorted(by_week)
    if mondays and (mondays[-1] - mondays[0]).days // 7 < CONTINUOUS_WEEKS_MAX:
        count = (mondays[-1] - mondays[0]).days // 7 + 1
        mondays = [mondays[0] + timedelta(weeks=n) for n in range(count)]
    return [(monday, by_week.get(monday, [])) for monday in mondays]


def _week_axis(ax, mondays):
    """Week labels '4 Mar' (with the year on the first and at a new year), at most ~12 shown."""
    step = max(1, math.ceil(len(mondays) / 12))
    ticks, labels, year = [], [], None
    for n in range(0, len(mondays), step):
        monday = mondays[n]
        label = "%d %s" % (monday.day, monday.strftime("%b"))
        if monday.year != year:
            label += "\n%d" % monday.year
            year = monday.year
        ticks.append(n)
        labels.append(label)
    ax.set_xticks(ticks, labels)
    ax.set_xlim(-0.6, len(mondays) - 0.4)
    gaps = any((later - earlier).days != 7 for earlier, later in zip(mondays, mondays[1:]))
    ax.set_xlabel("Week starting Monday (UTC)" + ("; weeks without sessions left out" if gaps else ""))


def _plot_sessions_per_week(weeks, path):
    fig, (ax,) = _figure(8, 3.6)
    ax.set_title("Sessions per week")
    if not weeks:
        _no_data(ax, "no sessions with a known date")
        return _save(fig, path)
    xs = range(len(weeks))
    normal = [sum(1 for s in sessions if s.stop_reason in NORMAL_ENDS) for _, sessions in weeks]
    other = [len(sessions) - n for (_, sessions), n in zip(weeks, normal)]
    bars = ax.bar(xs, normal, color="tab:blue", label="ended normally (completed or stopped by user)")
    if any(other):
        label = "cut short (fault, e-stop, no stop record…)"
        bars = ax.bar(xs, other, bottom=normal, color="tab:orange", label=label)
    if len(weeks) <= 16:
        ax.bar_label(bars, labels=[str(n + o) if n + o else "" for n, o in zip(normal, other)], padding=2)
    ax.set_ylabel("Sessions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(n + o for n, o in zip(normal, other)) * 1.25 + 0.5)
    _week_axis(ax, [monday for monday, _ in weeks])
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _save(fig, path)


def _plot_minutes_per_week(weeks, path):
    fig, (ax,) = _figure(8, 3.6)
    ax.set_title("Therapy time per week")
    if not weeks:
        _no_data(ax, "no sessions with a known date")
        return _save(fig, path)
    minutes = [sum(s.run_ms for s in sessions) / 60000 for _, sessions in weeks]
    bars = ax.bar(range(len(weeks)), minutes, color="tab:blue")
    if len(weeks) <= 16:
        ax.bar_label(bars, labels=["%d" % round(m) if m else "" for m in minutes], padding=2)
    ax.set_ylabel("Minutes")
    ax.set_ylim(0, max(max(minutes) * 1.2, 1))
    _week_axis(ax, [monday for monday, _ in weeks])
    return _save(fig, path)


def _day_month(x, _pos=None):
    """A matplotlib date number as '4 Mar' (strftime's %-d is not portable)."""
    day = num2date(x, tz=timezone.utc)
    return "%d %s" % (day.day, day.strftime("%b"))


DAY_TICKS_MAX = 8  # day ticks on a date axis, at most
DAY_AXIS_SPAN_MAX = 120  # days; longer spans get month ticks


# the dates matplotlib can draw end with year 9999: an axis padded past it fails at save
_DATE_NUM_MAX = date2num(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc))


def _date_xlim(ax, low, high):
    """Set a date axis's limits, clamped to the last date matplotlib can draw."""
    ax.set_xlim(min(low, _DATE_NUM_MAX - 1 / 24.0), min(high, _DATE_NUM_MAX))


def _midnight(day):
    return date2num(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


def _date_axis(ax, dated):
    """A date axis that never repeats a label: sessions of one day get times of day (HH:MM) and the
    date in the axis label; a few days to months get one tick per day (or every few days) at
    midnight, '4 Mar'; longer spans month ticks. The year(s) go in the axis label when there is one."""
    days = sorted({_day(s.unix_s) for s in dated})
    if not days:
        return
    first, last = days[0], days[-1]
    if first == last:
        times = [date2num(_utc(s.unix_s)) for s in dated]
        low, high = min(times), max(times)
        pad = max((high - low) * 0.1, 1 / 48.0)  # at least half an hour each side
        _date_xlim(ax, low - pad, high + pad)
        ax.xaxis.set_major_locator(AutoDateLocator(minticks=3, maxticks=8, tz=timezone.utc))
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=timezone.utc))
        ax.set_xlabel("Time (UTC) on %d %s %d" % (first.day, first.strftime("%b"), first.year))
        return
    _date_xlim(ax, _midnight(first) - 0.25, _midnight(last) + 1.25)
    span = (last - first).days + 1
    if span <= DAY_AXIS_SPAN_MAX:
        locator = DayLocator(interval=max(1, math.ceil(span / DAY_TICKS_MAX)), tz=timezone.utc)
    else:
        locator = AutoDateLocator(minticks=3, maxticks=9, tz=timezone.utc)
        locator.intervald[DAILY] = [1, 2, 4, 7, 14]  # never below a day
        locator.intervald[HOURLY] = []
    ax.xaxis.set_major_locator(locator)
    if first.year == last.year:
        ax.xaxis.set_major_formatter(FuncFormatter(_day_month))
        ax.set_xlabel("Date (UTC, %d)" % first.year)
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(_day_month_year))
        ax.set_xlabel("Date (UTC)")


def _day_month_year(x, _pos=None):
    day = num2date(x, tz=timezone.utc)
    return "%d %s\n%d" % (day.day, day.strftime("%b"), day.year)


def _plot_amplitude_used(dated, path):
    fig, (ax,) = _figure(8, 3.6)
    ax.set_title("Highest amplitude per session")
    channels = max((len(s.max_amp_ua) for s in dated), default=0)
    drawn = False
    for ch in range(channels):
        points = [(_utc(s.unix_s), _ch(s.max_amp_ua, ch) / 1000) for s in dated if _ch(s.max_amp_ua, ch) is not None]
        if points:
            xs, ys = zip(*points)
            color = CHANNEL_COLORS[ch % len(CHANNEL_COLORS)]
            ax.plot(date2num(xs), ys, marker="o", markersize=4, linewidth=1, color=color, label="ch %d" % ch)
            drawn = True
    if not drawn:
        _no_data(ax, "no amplitudes logged for sessions with a known date")
        return _save(fig, path)
    _mark_cut_short(ax, dated)
    ax.set_ylabel("Amplitude (mA)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    _date_axis(ax, dated)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    return _save(fig, path)


def _mark_cut_short(ax, dated):
    """A ring around each channel's point of a session that did not end normally: explains a dip."""
    points = [
        (_utc(s.unix_s), amp_ua / 1000)
        for s in dated
        if s.stop_reason not in NORMAL_ENDS
        for amp_ua in s.max_amp_ua
        if amp_ua is not None
    ]
    if points:
        xs, ys = zip(*points)
        ax.scatter(date2num(xs), ys, s=90, facecolors="none", edgecolors="black", label="cut short", zorder=3)


def _plot_pain_trend(dated, path):
    fig, (ax,) = _figure(8, 3.6)
    ax.set_title("Pain before and after each session")
    scored = [s for s in dated if s.pain_before is not None or s.pain_after is not None]
    if not scored:
        _no_data(ax, "no pain scores for sessions with a known date")
        return _save(fig, path)
    for s in scored:
        if s.pain_change is not None:
            x = date2num(_utc(s.unix_s))
            ax.plot([x, x], [s.pain_before, s.pain_after], color="0.75", linewidth=1, zorder=1)
    kinds = (("pain_before", "tab:red", "o", "before"), ("pain_after", "tab:green", "s", "after"))
    for attr, color, marker, label in kinds:
        points = [(_utc(s.unix_s), getattr(s, attr)) for s in scored if getattr(s, attr) is not None]
        if points:
            xs, ys = zip(*points)
            ax.scatter(date2num(xs), ys, color=color, marker=marker, s=22, label=label, zorder=2)
    ax.set_ylabel("Pain score (0–10)")
    ax.set_ylim(-0.5, 10.5)
    ax.set_yticks(range(0, 11, 2))
    ax.grid(axis="y", alpha=0.3)
    _date_axis(ax, dated)
    ax.legend(loc="best", fontsize=9, framealpha=0.9, ncols=2)
    return _save(fig, path)


def _running_minutes(session, points):
    """A function: device uptime (ms) of a record -> minutes of the session's running time, the time
    axis of the session chart (None when outside the session).

    Phase and heat records carry only the uptime; points are the (up_ms, run_ms) pairs the log does
    give, with the start at running time 0. Between two points the running time is spread evenly
    over the uptime: exact when the session was not paused in between, else off by less than the
    running time between the two (a minute of samples). Before the first point and after the last,
    running time goes on with the uptime (uptime restarts at power-on, but a session never outlives
    a power cycle).
    """
    if session.start_up_ms is not None:
        points = points + [(session.start_up_ms, 0)]
    points = sorted(points)

    def minutes(up_ms):
        if up_ms is None or not points:
            return None
        i = bisect.bisect_right(points, (up_ms, math.inf))
        if i == 0:
            run_ms = points[0][1] - (points[0][0] - up_ms)
        elif i == len(points):
            run_ms = points[-1][1] + (up_ms - points[-1][0])
        else:
            (up0, run0), (up1, run1) = points[i - 1], points[i]
            run_ms = run0 + (run1 - run0) * (up_ms - up0) / (up1 - up0)
        return run_ms / 60000 if 0 <= run_ms <= session.run_ms else None

    return minutes


def _phase_marks(session, minutes):
    """[(minute, name)] for the phases that can be placed in time."""
    marks = []
    for phase in session.phases:
        minute = minutes(phase.up_ms)
        if minute is not None:
            marks.append((minute, phase.name if phase.name is not None else "phase %s" % phase.index))
    return marks


def _target_steps(session, timed, minutes, end_min):
    """The heat target as steps [(minute, °C or nan)], or None when there is no heat record or one
    cannot be placed in time (then the samples' targets are drawn as points).

    Each heat record and each sample's own target (null while heat is off) holds until the next, so
    the line ends where the samples say heat is off even without a heat record: heat that ends by its
    timer or by a program phase left none in older logs. A record holds over a sample of the same time.
    """
    changes = [(minutes(change.up_ms), change.target_mc) for change in session.heat_changes]
    if not changes or any(minute is None for minute, _ in changes):
        return None
    steps = sorted([(s.run_ms / 60000, s.target_mc) for s in timed] + changes, key=lambda step: step[0])
    steps.append((end_min, steps[-1][1]))
    return [(minute, math.nan if mc is None else mc / 1000) for minute, mc in steps]


def _session_figure():
    """Fixed margins (the content is always the same shape): about twice as fast as constrained layout,
    which matters with one figure per session."""
    fig = Figure(figsize=(8, 5.2))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.1, right=0.975, top=0.83, bottom=0.095, hspace=0.08)
    amp_ax, temp_ax = fig.subplots(2, 1, sharex=True)
    for ax in (amp_ax, temp_ax):
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))  # short labels: 39.2, not 39.25
    return fig, amp_ax, temp_ax


def _plot_session(session, path):
    """Amplitude and pad temperature over the session's running time (pauses left out), phases marked."""
    fig, amp_ax, temp_ax = _session_figure()
    title = "Session %s · %s" % (_sid_text(session), format_time(session.unix_s))
    if session.unix_s is not None:
        title += " UTC"
    if session.program is not None:
        title += " · " + _plot_text(session.program)
    fig.suptitle(title, y=0.985, parse_math=False)
    subtitle = "%s min, %s" % (format_minutes(session.run_ms), _plot_text(_stop_text(session)))
    fig.text(0.5, 0.915, subtitle, ha="center", va="center", fontsize=10, color="0.25", parse_math=False)
    timed = sorted((s for s in session.samples if s.run_ms is not None), key=lambda s: s.run_ms)
    end_min = max([session.run_ms / 60000] + [s.run_ms / 60000 for s in timed])
    minutes = _running_minutes(session, session.clock_points)
    marks = _phase_marks(session, minutes)
    _draw_session_amplitude(amp_ax, session, timed, minutes, marks)
    _draw_session_temperature(temp_ax, timed, _target_steps(session, timed, minutes, end_min))
    temp_ax.set_xlim(0, max(end_min, 1) * 1.015)  # a little room so the last sample's marker is not cut
    temp_ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 5, 10], integer=True))
    temp_ax.set_xlabel("Time into session (min)")
    _draw_phases(amp_ax, temp_ax, marks, max(end_min, 1))
    return _save(fig, path)


def _amplitude_line(points, changes, stop_min):
    """The vertices of a channel's amplitude line through its samples [(minute, mA)], and the indexes
    of the samples among them.

    The output changes in steps (a ramp takes seconds), so each sample's value holds until a change,
    drawn: at the stop when the next point is the stop's; else at the last record before the next
    sample that changes the output (changes: minutes of phase starts and amplitude changes; one
    written with a sample takes effect after it); else at the next sample.
    """
    line, sampled = [points[0]], [0]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y1 != y0:
            at = x1 if x1 == stop_min else max((m for m in changes if x0 <= m < x1), default=x1)
            line += [(at, y0), (at, y1)]
        sampled.append(len(line))
        line.append((x1, y1))
    return line, sampled


def _draw_session_amplitude(ax, session, timed, minutes, phase_marks):
    """Each channel's sampled output as steps, ending at the stop with the output off."""
    stop_min = None if session.stop_run_ms is None else session.stop_run_ms / 60000
    channels = max((len(s.amp_ua) for s in timed), default=0)
    drawn = False
    for ch in range(channels):
        points = [(s.run_ms / 60000, _ch(s.amp_ua, ch) / 1000) for s in timed if _ch(s.amp_ua, ch) is not None]
        if not points:
            continue
        if stop_min is not None and stop_min >= points[-1][0]:  # the output is off once stopped
            points.append((stop_min, 0))
        changes = [minute for minute, _ in phase_marks]
        changes += [minutes(change.up_ms) for change in session.amp_changes if change.ch == ch]
        line, sampled = _amplitude_line(points, [m for m in changes if m is not None], stop_min)
        xs, ys = zip(*line)
        color = CHANNEL_COLORS[ch % len(CHANNEL_COLORS)]
        ax.plot(xs, ys, marker=".", markevery=sampled, linewidth=1.2, color=color, label="ch %d" % ch)
        drawn = True
    ax.set_ylabel("Amplitude (mA)")
    if not drawn:
        ax.text(0.5, 0.5, "no amplitude samples", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_yticks([])
        return
    ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1) * 1.1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8, ncols=channels, framealpha=0.9)


def _draw_session_temperature(ax, timed, target_steps):
    measured = [(s.run_ms / 60000, s.temp_mc / 1000) for s in timed if s.temp_mc is not None]
    if target_steps is None:
        target_steps = [(s.run_ms / 60000, s.target_mc / 1000 if s.target_mc is not None else math.nan) for s in timed]
        style = {"marker": "x", "markersize": 4}  # sampled targets: only their points are known
    else:
        style = {"drawstyle": "steps-post"}
    has_target = any(not math.isnan(t) for _, t in target_steps)
    ax.set_ylabel("Pad temperature (°C)")
    if not measured and not has_target:
        ax.text(0.5, 0.5, "no pad temperature logged", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_yticks([])
        return
    if measured:
        xs, ys = zip(*measured)
        ax.plot(xs, ys, marker=".", linewidth=1.2, color="tab:red", label="measured")
    if has_target:
        xs, ys = zip(*target_steps)
        ax.plot(xs, ys, linestyle="--", linewidth=1.2, color="0.35", label="target", **style)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + (high - low) * 0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8, ncols=2, framealpha=0.9)


def _draw_phases(amp_ax, temp_ax, marks, end_min):
    """Dotted lines at phase starts on both panels, names along the top edge (outside the data, so they
    never cover a curve or a legend); a name too close to the previous one is left off."""
    ticks, labels = [], []
    for minute, name in marks:
        for ax in (amp_ax, temp_ax):
            ax.axvline(minute, color="0.6", linestyle=":", linewidth=1)
        if not ticks or minute - ticks[-1] >= end_min * 0.12:
            ticks.append(minute)
            labels.append(_plot_text(name)[:16].replace("$", r"\$"))  # tick labels cannot opt out of mathtext
    if ticks:
        top = amp_ax.secondary_xaxis("top")
        top.set_xticks(ticks)
        top.set_xticklabels(labels, fontsize=8, color="0.3", ha="left")
        top.tick_params(length=3, pad=2)


# ---- the page ----------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td { overflow-wrap: anywhere; max-width: 22em; }
tr.short td { background: #fff4e5; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.summary dt { font-weight: 600; }
dl.summary dd { margin: 0; }
img { max-width: 100%; height: auto; }
.note { color: #555; }
figure { margin: 1em 0 2em; }
"""


def _table(headers, rows, numeric=(), row_classes=None):
    """An HTML table; cells are already-escaped HTML. numeric: indexes of right-aligned columns."""
    out = ["<table>", "<tr>" + "".join("<th>%s</th>" % h for h in headers) + "</tr>"]
    for n, row in enumerate(rows):
        css = (row_classes or {}).get(n)
        cells = "".join(
            '<td class="num">%s</td>' % cell if i in numeric else "<td>%s</td>" % cell for i, cell in enumerate(row)
        )
        out.append(('<tr class="%s">' % css if css else "<tr>") + cells + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _session_rows(sessions, channels, plots):
    headers = ["Session", "Date (UTC)", "Program", "Minutes", "End"]
    headers += ["Max ch %d (mA)" % ch for ch in range(channels)]
    headers += ["Thermal dose (CEM43 min)", "Pain before → after", "Faults"]
    rows, classes = [], {}
    for n, s in enumerate(sessions):
        peaks = s.max_amp_ua
        sid = _e(_sid_text(s))
        link = '<a href="#%s">%s</a>' % (_e(plots[id(s)]), sid) if id(s) in plots else sid
        row = [link, _e(format_time(s.unix_s)), _e(s.program if s.program is not None else "–")]
        row += [_e(format_minutes(s.run_ms)), _e(_stop_text(s))]
        row += [_e("–" if _ch(peaks, ch) is None else _ma_number(peaks[ch])) for ch in range(channels)]
        row += [_e(format_cem43(s.cem43_ms)), _e(_pain_text(s)), "<br>".join(_e(_fault_text(f)) for f in s.faults)]
        rows.append(row)
        if s.stop_reason not in NORMAL_ENDS:
            classes[n] = "short"
    numeric = {3} | {5 + ch for ch in range(channels)} | {5 + channels}
    return _table(headers, rows, numeric, classes)


def _summary_html(summary):
    total_ms = summary.total_run_ms
    items = [
        (
            "Sessions",
            "%d (%d with a stop record, %d without)"
            % (summary.sessions, summary.complete, summary.sessions - summary.complete),
        ),
        (
            "Total time",
            "%s min (%d h %02d min)"
            % (format_minutes(total_ms), total_ms // 3600000, total_ms // 60000 % 60),
        ),
    ]
    if summary.first_unix_s is None:
        items.append(("Date range", "unknown (the device did not know the time)"))
    else:
        items.append(("Date range", "%s to %s (UTC)" % (_day(summary.first_unix_s), _day(summary.last_unix_s))))
    if summary.pain_pairs:
        items.append(
            (
                "Pain (0–10)",
                "mean %s before, %s after; mean change %s (over %s scored before and after; "
                "negative means less pain after the session)"
                % (
                    _score(summary.mean_pain_before),
                    _score(summary.mean_pain_after),
                    "%+.1f" % summary.mean_pain_change,
                    _plural(summary.pain_pairs, "session"),
                ),
            )
        )
    else:
        items.append(("Pain (0–10)", "no session scored both before and after"))
    items.append(("Faults", str(summary.faults)))
    if summary.undated:
        undated = _plural(summary.undated, "session")
        items.append(("Unknown time", "%s: listed separately, not in the charts over dates" % undated))
    return '<dl class="summary">\n%s\n</dl>' % "\n".join("<dt>%s</dt><dd>%s</dd>" % (_e(k), _e(v)) for k, v in items)


def _notes_html(log):
    """What the log could not tell, said plainly rather than silently left out."""
    notes = []
    if log.erased:
        notes.append("The log was erased on the device; only records written after that are here.")
    if log.unknown_kinds:
        kinds = ", ".join("%s ×%d" % (kind, n) for kind, n in sorted(log.unknown_kinds.items()))
        skipped = _plural(sum(log.unknown_kinds.values()), "record")
        notes.append("Skipped %s of kinds this tool does not know: %s." % (skipped, kinds))
    if log.malformed:
        notes.append("Skipped %s." % _plural(log.malformed, "malformed record"))
    if log.loose_pain:
        notes.append("%s could not be matched to a session." % _plural(len(log.loose_pain), "pain score"))
    if any(s.sid is None for s in log.sessions):
        notes.append(
            "Some sessions have no number: the device could not write their start record; "
            "their records are grouped by their place in the log."
        )
    if any(s.sid is not None and not s.has_start for s in log.sessions):
        notes.append("Some sessions lost their start record (rotated out of the log): program and start time unknown.")
    if not notes:
        return ""
    return "<ul class=\"note\">\n%s\n</ul>" % "\n".join("<li>%s</li>" % _e(note) for note in notes)


def _faults_html(log):
    faults = [(f, "– (outside a session)") for f in log.loose_faults]
    faults += [(f, _sid_text(s)) for s in log.sessions for f in s.faults]
    if not faults:
        return "<p>No faults logged.</p>"
    faults.sort(key=lambda pair: pair[0].seq if type(pair[0].seq) is int else -1)  # log order; bool is no seq
    rows = [
        [
            _e(format_time(f.unix_s)),
            _e(session),
            _e(", ".join(f.faults) or "–"),
            _e(f.msg if f.msg is not None else ""),
        ]
        for f, session in faults
    ]
    return _table(["Time (UTC)", "Session", "Faults", "Message"], rows)


def _page(title, body):
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n<h1>%s</h1>\n%s\n</body>\n</html>\n"
        % (_e(title), CSS, _e(title), body)
    )


def _img(name, alt):
    return '<figure><img src="%s" alt="%s" loading="lazy"></figure>' % (_e(name), _e(alt))


def _chart(plot, data, path, alt):
    """plot(data, path) as an <img>; a chart matplotlib cannot draw (odd device data) becomes a note
    saying so, so the rest of the report is still written. A file that cannot be written still raises."""
    try:
        return _img(plot(data, path), alt)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - matplotlib's errors are of many kinds; the report goes on
        return '<p class="note">Chart not drawn (%s): %s: %s</p>' % (_e(alt), _e(type(err).__name__), _e(str(err)[:200]))


def _session_plot_names(sessions):
    """{id(session): 'session-<sid>'}; a sid seen twice (reused after an erase) gets '-2', '-3';
    sessions without a number are 'session-unnumbered', '-2', ... in log order."""
    names, used = {}, set()
    for s in sessions:
        base = name = "session-%s" % ("unnumbered" if s.sid is None else s.sid)
        n = 1
        while name in used:
            n += 1
            name = "%s-%d" % (base, n)
        used.add(name)
        names[id(s)] = name
    return names


def write_report(records, out_dir, title=None):
    """Write out_dir/index.html and its PNGs from the session-log records; return the index.html path.

    out_dir is created if needed; files of an earlier report there are overwritten,
    others are left alone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = title or DEFAULT_TITLE
    log = parse(records)
    index = out / "index.html"
    if not log.sessions:
        body = "<p>No sessions in this log.</p>\n" + _notes_html(log) + "\n<h2>Faults</h2>\n" + _faults_html(log)
        index.write_text(_page(title, body), encoding="utf-8")
        return index
    index.write_text(_page(title, _report_body(log, out)), encoding="utf-8")
    return index


def _report_body(log, out):
    summary = summarize(log)
    dated = sorted((s for s in log.sessions if s.unix_s is not None), key=lambda s: s.unix_s)
    undated = [s for s in log.sessions if s.unix_s is None]
    channels = max((len(s.max_amp_ua) for s in log.sessions), default=0)
    plots = _session_plot_names(log.sessions)
    weeks = _weeks(dated)
    parts = [_summary_html(summary), _notes_html(log), "<h2>Sessions</h2>"]
    parts.append(_session_rows(dated, channels, plots) if dated else "<p>No session with a known date.</p>")
    if undated:
        parts.append("<h2>Sessions with unknown time</h2>")
        parts.append(
            '<p class="note">The device did not know the time when these were logged, so they are not in the '
            "weekly, amplitude and pain charts; they do count in the totals above.</p>"
        )
        parts.append(_session_rows(undated, channels, plots))
    parts += ["<h2>Faults</h2>", _faults_html(log), "<h2>Charts</h2>"]
    if undated:
        left_out = _plural(len(undated), "session")
        parts.append('<p class="note">Charts over dates leave out the %s with unknown time.</p>' % left_out)
    parts.append(_chart(_plot_sessions_per_week, weeks, out / "sessions_per_week.png", "Sessions per week"))
    parts.append(_chart(_plot_minutes_per_week, weeks, out / "minutes_per_week.png", "Minutes of therapy per week"))
    parts.append(_chart(_plot_amplitude_used, dated, out / "amplitude_used.png", "Highest amplitude per session, mA"))
    parts.append(_chart(_plot_pain_trend, dated, out / "pain_trend.png", "Pain before and after each session"))
    parts.append("<h2>Each session</h2>")
    for s in dated + undated:
        name = plots[id(s)]
        heading = "Session %s · %s" % (_sid_text(s), format_time(s.unix_s))
        parts.append('<h3 id="%s">%s</h3>' % (_e(name), _e(heading)))
        parts.append(_chart(_plot_session, s, out / (name + ".png"), "Amplitude and pad temperature, " + heading))
    return "\n".join(part for part in parts if part)
