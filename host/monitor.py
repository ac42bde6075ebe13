"""`tensctl monitor`: a live view of one device, with keys to steer a running session.

The view is drawn from the device's telemetry events (firmware/telemetry.py), so it
costs one request to start and none to keep up. A status request holds the session's
lease while the monitor runs: at least four times per lease as the device's own clock
counts it (a simulator may run many times faster than the wall clock), and at least once
a second. When telemetry stops (cable pulled, board reset) the monitor says so, reopens
the port and carries on once the device answers.

Device data is drawn as it comes: a field the monitor cannot read (a list where a number
belongs, a channel missing from a list) is shown as "?" and the monitor keeps running.

Layers: `MonitorState` holds what was seen (pure data, tested without a terminal);
`render` and `summary_line` draw it; `KEYS` maps keys to requests; `TerminalKeys`
reads keys from a terminal without echo; `Monitor.run` is the loop.
"""

import select
import sys
import time

from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from host.client import ClientError, DeviceError, NoResponse
from host.keepalive import KeepalivePace
from host.transport import TransportError
from host.units import (
    UNREADABLE,
    format_celsius,
    format_dose,
    format_duration_ms,
    format_ma,
    format_temperature,
    readable,
)

RECONNECT_EVERY_S = 1.0
EVENT_LINES = 4  # recent events shown under the table

STATE_STYLE = {"IDLE": "cyan", "RUNNING": "green", "PAUSED": "yellow", "FAULT": "bold red"}
_PAUSE_CAUSES = {"request": "on request", "lease_expired": "lease expired"}


def _at(values, index):
    """values[index] when values is a list that long, else None (shown as "?")."""
    if isinstance(values, list) and 0 <= index < len(values):
        return values[index]
    return None


def _dict(value):
    """value when it is a JSON object, else an empty one (its fields then show as "?")."""
    return value if isinstance(value, dict) else {}


def _names(values):
    """A list of fault names as text; "?" for anything but a list."""
    if not isinstance(values, list):
        return UNREADABLE
    return ", ".join(str(value) for value in values)


def prescribed_maxima(program):
    """Per channel of a program_get reply's program, its max_amp_ua; None for a channel not readable."""
    plans = _dict(program).get("channels") or []
    if not isinstance(plans, list):
        return []
    return [_plan_max(plan) for plan in plans]


def _plan_max(plan):
    """One channel plan's max_amp_ua (absent: 0, the channel unused); None when unreadable."""
    value = plan.get("max_amp_ua", 0) if isinstance(plan, dict) else None
    return value if readable(value) else None


def pause_cause(reason):
    """Why a session is PAUSED, in words: 'lease_expired' -> 'lease expired'."""
    if not isinstance(reason, str):
        return UNREADABLE
    return _PAUSE_CAUSES.get(reason, reason.replace("_", " "))


class MonitorState:
    """What the monitor knows: the device's limits, its last telemetry, recent events."""

    def __init__(self, info=None):
        self.info = info or {}
        self.telemetry = None
        self.selected = 0  # the channel the arrow keys act on
        self.connected = False
        self.note = ""  # the monitor's own last message (a refused key, a reconnect)
        self.events = []  # recent event lines, newest last
        self.status = None  # the last status reply (program, phase: telemetry does not carry them)
        self.prescribed = None  # a running program's prescribed maximum per channel (µA), or None
        self.received = 0  # telemetry events received
        self.missed = 0  # gaps in their sequence numbers (lost on the way or dropped by the device)
        self.fresh = []  # telemetry events not drawn yet, in order; one after a gap carries "missed"
        self.last_reason = (None, None)  # (state, reason) of the last state event or status reply
        self._last_n = None

    @property
    def channels(self):
        """The device's channel count (hello); unreadable: as many as telemetry shows, at least 1."""
        count = self.info.get("channels", 2)
        if readable(count) and 1 <= count <= 64:
            return count
        amps = (self.telemetry or {}).get("amp_ua")
        return max(1, len(amps)) if isinstance(amps, list) else 1

    def on_event(self, event):
        kind = event.get("ev")
        if kind == "telemetry":
            n = event.get("n")
            if isinstance(n, int) and self._last_n is not None and n > self._last_n + 1:
                self.missed += n - self._last_n - 1
                event = dict(event, missed=n - self._last_n - 1)
            self._last_n = n if isinstance(n, int) else None
            self.telemetry = event
            self.fresh.append(event)
            self.received += 1
            return
        if kind == "state":
            self.last_reason = (event.get("state"), event.get("reason"))
            text = "state %s (%s)" % (event.get("state"), event.get("reason"))
            if event.get("faults"):
                text += ": %s" % event.get("fault_msg")
        elif kind == "heat":
            text = "heat %s" % event.get("state")
            if event.get("reason"):
                text += " (%s)" % event.get("reason")
            if event.get("fault"):
                text += ": %s" % event.get("fault_msg")
        else:
            text = "%s: %s" % (kind, event.get("msg", ""))
        self.events = (self.events + [text])[-EVENT_LINES:]

    def on_status(self, status, prescribed=None):
        """A status reply (asked for once a second, which also holds the lease) and, while a
        program runs, its prescribed maxima."""
        self.status = status
        self.prescribed = prescribed if status and status.get("program") else None
        if status:
            self.last_reason = (status.get("state"), status.get("reason"))

    @property
    def program(self):
        return (self.status or {}).get("program")

    @property
    def phase(self):
        return (self.status or {}).get("phase")

    def max_ua(self, ch):
        """The most channel ch may be set to now: the prescription, else the device limit (None: unreadable)."""
        if self.prescribed is not None:
            return self.prescribed[ch] if ch < len(self.prescribed) else 0
        limit = self.info.get("amp_limit_ua", 80000)
        return limit if readable(limit) else None

    def new_connection(self, info):
        self.info = info if isinstance(info, dict) else self.info
        self.connected = True
        self._last_n = None  # the device numbers its telemetry afresh

    def select_next(self, step):
        self.selected = (self.selected + step) % self.channels

    @property
    def state(self):
        """The telemetry's state name (None before any; "?" when it is not text)."""
        if not self.telemetry:
            return None
        name = self.telemetry.get("state")
        return name if isinstance(name, str) or name is None else UNREADABLE

    def state_text(self):
        """The state, with the cause when PAUSED: 'PAUSED (lease expired)'."""
        name = str(self.state)
        state, reason = self.last_reason
        if name == "PAUSED" and state == "PAUSED" and reason:
            return "%s (%s)" % (name, pause_cause(reason))
        return name


def _amp_bar(amp_ua, max_ua):
    total = max(1, max_ua) if readable(max_ua) else 1
    done = max(0, min(amp_ua, total)) if readable(amp_ua) else 0
    return ProgressBar(total=total, completed=done, width=30)


def _channel_count(t):
    """How many channel rows telemetry has: its amp_ua list's length (0 when it is not a list)."""
    amps = t.get("amp_ua")
    return len(amps) if isinstance(amps, list) else 0


def _heat_line(heat):
    """The heat line of the view; fields it cannot read show as "?"."""
    line = Text("heat %s" % heat.get("state", UNREADABLE))
    measured = heat.get("measured_mc")
    line.append("   pad %s" % (format_temperature(measured) if measured is not None else "no reading"))
    if heat.get("state") in ("heating", "holding"):
        line.append(" / target %s" % format_celsius(heat.get("target_mc", 0)))
    duty = heat.get("heater_duty_pct", 0)
    line.append("   heater %s %%" % (duty if readable(duty) else UNREADABLE))
    if "cem43_ms" in heat:
        line.append("   dose %s" % format_dose(heat["cem43_ms"]))
    return line


def render(state):
    """The whole view as one rich renderable."""
    t = state.telemetry
    if t is None:
        return Panel(Text("waiting for telemetry..." if state.connected else "connecting..."), title="pulsewarm")
    name = state.state
    head = Text.from_markup("[%s]%s[/]" % (STATE_STYLE.get(name, "bold"), escape(state.state_text())))
    if t.get("session_left_ms"):
        head.append("   session left %s" % format_duration_ms(t["session_left_ms"]))
    if not state.connected:
        head.append("   DEVICE LOST: reconnecting...", style="bold red")
    if t.get("faults"):
        head.append("   faults: %s" % _names(t["faults"]), style="bold red")
    # the keys right under the state line: a short or narrow terminal crops the bottom, never this
    parts = [head, Text.assemble(("e: EMERGENCY STOP", "bold red"), ("  " + KEY_HINTS, "dim"))]
    if state.program:
        parts.append(Text("program %s   phase %s" % (state.program, state.phase or "-"), style="bold"))
    table = Table(box=None, pad_edge=False)
    max_title = "prescribed max" if state.prescribed is not None else "max"
    for title in ("ch", "amplitude", "", "target", max_title, "delivered"):
        table.add_column(title, justify="left" if title == "" else "right")
    for ch in range(_channel_count(t)):
        mark = ">" if ch == state.selected else " "
        max_ua = state.max_ua(ch)
        amp_ua = _at(t.get("amp_ua"), ch)
        table.add_row(
            "%s%d" % (mark, ch),
            format_ma(amp_ua),
            _amp_bar(amp_ua, max_ua),
            format_ma(_at(t.get("target_ua"), ch)),
            format_ma(max_ua) if state.prescribed is None or ch < len(state.prescribed) else "not used",
            format_ma(_at(t.get("delivered_ua"), ch)),
        )
    parts.append(table)
    heat = t.get("heat")
    if heat:
        parts.append(_heat_line(_dict(heat)))
    for text in state.events:
        parts.append(Text(text, style="dim"))
    if state.note:
        parts.append(Text(state.note, style="yellow"))
    if state.missed:
        parts.append(Text("telemetry missed: %d" % state.missed, style="dim"))
    return Panel(Group(*parts), title="pulsewarm %s" % state.info.get("device_id", ""))


# after "e: EMERGENCY STOP" (first, so a narrow terminal never hides it); short enough for 80 columns
KEY_HINTS = "space: stop  p: pause/resume  +/-: 0.5 mA  tab  q: quit"


def summary_line(state):
    """One plain line for logs (stdout not a terminal)."""
    t = state.telemetry
    if t is None:
        return "waiting for telemetry"
    amps = " ".join("ch%d %s/%s" % (ch, format_ma(_at(t.get("amp_ua"), ch)), format_ma(_at(t.get("target_ua"), ch)))
                    for ch in range(_channel_count(t)))
    line = "%s %s left %s" % (state.state_text(), amps, format_duration_ms(t.get("session_left_ms", 0)))
    if state.program:
        line += " program %s phase %s prescribed max %s" % (
            state.program, state.phase or "-",
            "/".join(format_ma(state.max_ua(ch)) for ch in range(_channel_count(t))))
    heat = _dict(t.get("heat"))
    if heat.get("measured_mc") is not None:
        line += " heat %s %s" % (heat.get("state", UNREADABLE), format_temperature(heat["measured_mc"]))
    if t.get("faults"):
        line += " faults %s" % _names(t["faults"]).replace(", ", ",")
    return line


# ---- keys -----------------------------------------------------------------------------------

def _amp(steps):
    def action(client, state):
        client.amp_step(state.selected, steps)
        return "channel %d %s 0.5 mA" % (state.selected, "up" if steps > 0 else "down")
    return action


def _pause_or_resume(client, state):
    if state.state == "PAUSED":
        client.resume()
        return "resumed (ramping up from zero)"
    client.pause()
    return "paused: output zero"


def _stop(client, state):
    client.stop()
    return "stopping: ramping down"


def _estop(client, state):
    client.estop()
    return "EMERGENCY STOP: output zero"


def _other_channel(client, state):
    state.select_next(1)
    return "channel %d selected" % state.selected


KEYS = {
    "up": _amp(1), "+": _amp(1), "k": _amp(1),
    "down": _amp(-1), "-": _amp(-1), "j": _amp(-1),
    "tab": _other_channel, "left": _other_channel, "right": _other_channel,
    "p": _pause_or_resume,
    " ": _stop,
    "e": _estop,
}
QUIT_KEYS = ("q",)
_ESCAPES = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left", "\t": "tab"}


def press(key, client, state):
    """Act on one key; returns the note to show. A refusal by the device is shown, not raised."""
    action = KEYS.get(key)
    if action is None:
        return ""
    try:
        return action(client, state)
    except DeviceError as err:
        return "refused: %s" % err.message


class TerminalKeys:
    """Keys from a terminal, one at a time, without echo or waiting for Enter (POSIX)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin
        self._saved = None

    def __enter__(self):
        import termios
        import tty

        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)  # keys arrive at once; Ctrl-C still raises KeyboardInterrupt
        return self

    def __exit__(self, *exc):
        import termios

        termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
        return False

    def read(self, timeout_s):
        """The next key name, or None after timeout_s."""
        fd = self.stream.fileno()
        if not select.select([fd], [], [], timeout_s)[0]:
            return None
        import os

        data = os.read(fd, 8).decode("utf-8", "replace")
        return _ESCAPES.get(data, data[:1])


class NoKeys:
    """Stands in for TerminalKeys when stdin is not a terminal: waits, returns no key."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, timeout_s):
        time.sleep(timeout_s)
        return None


# ---- the loop --------------------------------------------------------------------------------

class DeviceLost(Exception):
    """No telemetry and no answer for longer than the reconnect budget."""


class Monitor:
    """connect() -> (client, close): an open client that has said hello and asked for telemetry."""

    def __init__(self, connect, every_ms, draw, keys, clock=time.monotonic, reconnect_s=30.0):
        self.connect = connect
        self.every_ms = every_ms
        self.draw = draw  # draw(state) after every change
        self.keys = keys
        self.clock = clock
        self.reconnect_s = reconnect_s
        self.state = MonitorState()
        self.client = None
        self._close = None
        self.lost_after_s = max(2.0, 4 * every_ms / 1000.0)
        self.reconnects = 0
        self.pace = KeepalivePace(clock)

    def _open(self):
        self.client, self._close = self.connect(self.state.on_event)
        self.pace.restart()  # perhaps another device, or a restarted one
        self.client.telemetry(self.every_ms)
        self.state.new_connection(self.client.device)
        self._refresh_status()  # program and phase from the first line on
        self._heard = self.clock()

    def _draw(self):
        self.draw(self.state)
        self.state.fresh = []

    def keepalive_s(self):
        """Wall seconds between status requests (host.keepalive)."""
        return self.pace.interval_s()

    def _drop(self):
        self.state.connected = False
        if self._close is not None:
            try:
                self._close()
            except Exception:  # noqa: BLE001 - the port is already gone
                pass
        self.client = None
        self._close = None

    def _reconnect(self):
        self._draw()
        deadline = self.clock() + self.reconnect_s
        while self.clock() < deadline:
            try:
                self._open()
            except (TransportError, NoResponse, ClientError, OSError):
                time.sleep(RECONNECT_EVERY_S)
                continue
            self.reconnects += 1
            self.state.note = "reconnected: monitoring again"
            return
        raise DeviceLost("no answer from the device for %.0f s" % self.reconnect_s)

    def run(self, duration_s=None):
        """Until q, duration_s, or Ctrl-C (KeyboardInterrupt propagates: the caller stops the session)."""
        self._open()
        self._draw()
        started = last_keepalive = self.clock()
        while duration_s is None or self.clock() - started < duration_s:
            try:
                self.client.poll(0.01)
                if self.state.fresh:
                    self._heard = self.clock()
                    self._draw()
                if self.clock() - last_keepalive >= self.keepalive_s():
                    last_keepalive = self.clock()
                    self._refresh_status()  # any request holds the lease; status also says program and phase
                key = self.keys.read(0.01)
                if key in QUIT_KEYS:
                    return
                if key is not None:
                    self.state.note = press(key, self.client, self.state)
                    self._draw()
                if self.clock() - self._heard > self.lost_after_s:
                    raise NoResponse(self.client.port_name, "telemetry", 0, self.lost_after_s, 1)
            except (TransportError, NoResponse, OSError):
                self._drop()
                self._reconnect()

    def _refresh_status(self):
        status = self.client.status()
        self.pace.note(status)
        name = status.get("program")
        prescribed = self.state.prescribed if name and name == self.state.program else None
        if name and prescribed is None:
            try:
                prescribed = prescribed_maxima(self.client.program_get(name).get("program"))
            except DeviceError:
                prescribed = None
        self.state.on_status(status, prescribed)

    def stop_session(self, wait_s):
        """After Ctrl-C: a running or paused session is stopped (ramping down); True when it is."""
        if self.client is None or self.state.state not in ("RUNNING", "PAUSED"):
            return False
        self.client.stop()
        deadline = self.clock() + wait_s
        while self.clock() < deadline:
            if self.client.status().get("state") != "RUNNING":
                return True
            time.sleep(0.1)
        return True

    def close(self):
        self._drop()
