"""`make demo`: a short, accelerated therapy session against an embedded simulator.

It drives the device through the very client `tensctl` uses (hello, start,
amplitude up in 0.5 mA steps to 15 mA, hold, stop), paced by the device's own
simulated clock (status uptime), so a slow machine makes the demo slower but
never different. The session asks for the longest host lease the device allows:
at high speed a short pause of this process is many simulated seconds. Should
the lease still run out (a heavily loaded machine), the device pauses as it
would with a real host gone silent; the demo says so, resumes and counts it. A live rich view shows it while it runs; on a non-terminal
(CI logs) it prints one line per phase instead. Ends with a one-screen summary.
"""

import sys
import time

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

from firmware import limits as L
from host.cli import FiniteFloatRange
from host.client import Client, ClientError
from host.transport import TransportError, open_port
from host.units import format_ma

STEP_UA = 500
TOP_UA = 15000
STEP_EVERY_MS = 2000  # simulated time between amplitude steps
HOLD_MS = 20000  # simulated time at the top amplitude
POLL_S = 0.02  # wall time between status polls
WALL_LIMIT_S = 50.0  # give up (exit 1) rather than hang a CI job


class DemoError(Exception):
    pass


class Session:
    """The plan and what was seen: amplitudes, faults, states, timings (integers, µA and ms)."""

    def __init__(self, client, channel=0):
        self.client = client
        self.ch = channel
        self.phase = "connecting"
        self.step = 0
        self.steps = TOP_UA // STEP_UA
        self.t0_ms = None  # device uptime when stimulation started
        self.now_ms = 0  # simulated ms since start
        self.status = None
        self.peak_ua = 0
        self.faults_seen = []
        self.last_event = ""
        self.stopped_ms = None
        self.hold_from_ms = None
        self.lease_pauses = 0  # the device paused because this host was slower than the lease

    def on_event(self, event):
        if event.get("ev") == "state":
            self.last_event = "state -> %s" % event.get("state")
            for name in event.get("faults") or []:
                if name not in self.faults_seen:
                    self.faults_seen.append(name)
        else:
            self.last_event = "%s: %s" % (event.get("ev"), event.get("msg", ""))

    def poll(self):
        self.status = self.client.status()
        if self.t0_ms is not None:
            self.now_ms = self.status["uptime_ms"] - self.t0_ms
        channel = self.status["ch"][self.ch]
        self.peak_ua = max(self.peak_ua, channel["amp_ua"])
        for name in self.status.get("faults") or []:
            if name not in self.faults_seen:
                self.faults_seen.append(name)
        if self.status["state"] == "FAULT":
            raise DemoError("the device latched a fault: %s (%s)" % (", ".join(self.faults_seen), self.status.get("fault_msg")))

    def target_ua(self):
        return self.step * STEP_UA

    def advance(self):
        """Do whatever the plan says is due at the current simulated time; False when done."""
        if self.phase == "connecting":
            self.client.hello()
            self.poll()
            self.client.start([STEP_UA], lease_ms=L.LEASE_MAX_MS)
            self.step = 1
            self.poll()
            self.t0_ms = self.status["uptime_ms"]
            self.now_ms = 0
            self.phase = "ramping"
            return True
        self.poll()
        if self._interrupted():
            return True
        if self.phase == "ramping":
            due_step = 1 + self.now_ms // STEP_EVERY_MS
            if due_step > self.step and self.step < self.steps:
                self.step = min(due_step, self.steps)
                self.client.set_amp(self.ch, self.target_ua())
            if self.step >= self.steps and self.status["ch"][self.ch]["amp_ua"] >= TOP_UA:
                self.phase = "holding"
                self.hold_from_ms = self.now_ms
            return True
        if self.phase == "holding":
            if self.now_ms - self.hold_from_ms >= HOLD_MS:
                self.client.stop()
                self.phase = "ramping down"
                self.poll()  # the line for this phase shows the stop's target, not the status before it
            return True
        if self.phase == "ramping down":
            if self.status["state"] == "IDLE":
                self.phase = "stopped"
                self.stopped_ms = self.now_ms
                return False
            return True
        return False

    def _interrupted(self):
        """A state the plan did not make: resume a lease pause (the host is alive, only slow);
        anything else ends the demo with the device's own reason rather than waiting for it."""
        state = self.status["state"]
        reason = self.status.get("reason")
        if state == "PAUSED" and reason == "lease_expired":
            self.lease_pauses += 1
            self.last_event = "paused: no request within the %d ms lease (host too slow); resumed" % L.LEASE_MAX_MS
            self.client.resume()
            return True
        if state == "PAUSED" or (state == "IDLE" and self.phase != "ramping down"):
            raise DemoError("the device went %s (%s) during the %s phase" % (state, reason, self.phase))
        return False


def _seconds(ms):
    return "%d.%d s" % (ms // 1000, (ms % 1000) // 100)


def live_view(session):
    status = session.status or {"state": "-", "ch": [{"amp_ua": 0, "target_ua": 0, "delivered_ua": 0}]}
    channel = status["ch"][session.ch]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", justify="right")
    table.add_column()
    state_style = {"RUNNING": "green", "IDLE": "cyan", "FAULT": "bold red"}.get(status["state"], "white")
    table.add_row("state", "[%s]%s[/]  (%s)" % (state_style, escape(status["state"]), session.phase))
    table.add_row("amplitude", ProgressBar(total=TOP_UA, completed=channel["amp_ua"], width=40))
    table.add_row(
        "",
        "%s of target %s  (step %d/%d)"
        % (format_ma(channel["amp_ua"]), format_ma(channel["target_ua"]), session.step, session.steps),
    )
    table.add_row("measured", format_ma(channel["delivered_ua"]))
    table.add_row("sim time", _seconds(max(session.now_ms, 0)))
    table.add_row("last event", escape(session.last_event or "-"))
    return Panel(table, title="pulsewarm demo (simulated device)", expand=False)


def summary(session, info, runtime, speed, wall_s):
    final = session.status or {}
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", justify="right")
    table.add_column()
    table.add_row("device", escape("%s (%s runtime, speed x%g)" % (info.get("device_id"), runtime, speed)))
    table.add_row("firmware", escape(str(info.get("fw"))))
    table.add_row("protocol", escape(str(info.get("proto"))))
    table.add_row("session", "%s simulated in %.1f s wall" % (_seconds(session.stopped_ms or 0), wall_s))
    table.add_row("peak amplitude", format_ma(session.peak_ua))
    table.add_row("faults", escape(", ".join(session.faults_seen)) if session.faults_seen else "none")
    table.add_row("final state", escape("%s, output %s" % (final.get("state"), format_ma(final["ch"][session.ch]["amp_ua"]))))
    pulses = final.get("ch", [{}])[session.ch].get("pulses")
    if pulses is not None:
        table.add_row("pulses", str(pulses))
    table.add_row("link", "%d resends, %d damaged lines" % (session.client.resends, session.client.rx_errors))
    if session.lease_pauses:
        table.add_row("lease pauses", "%d (this host was slower than the lease; resumed)" % session.lease_pauses)
    return Panel(table, title="session summary", expand=False)


def run(runtime="cpython", speed=20.0, console=None):
    """Run the demo session; returns the Session. Raises DemoError/ClientError/TransportError."""
    console = console or Console(highlight=False)
    started = time.monotonic()
    transport = open_port("sim:" + runtime, sim_speed=speed)
    try:
        session = Session(Client(transport))
        session.client.on_event = session.on_event
        if console.is_terminal:
            with Live(live_view(session), console=console, refresh_per_second=12) as live:
                while _tick(session, started):
                    live.update(live_view(session))
                live.update(live_view(session))
        else:
            logged = None
            while _tick(session, started):
                mark = (session.phase, session.step if session.step % 5 == 0 else None)
                if mark != logged and (mark[1] is not None or mark[0] != (logged or ("",))[0]):
                    logged = mark
                    console.print(_log_line(session), markup=False)
            console.print(_log_line(session), markup=False)
        wall_s = time.monotonic() - started
        console.print(summary(session, session.client.device, runtime, speed, wall_s))
        return session
    finally:
        transport.close()


def _log_line(session):
    channel = session.status["ch"][session.ch]
    return "[%s] %-8s amplitude %s of target %s, measured %s" % (
        _seconds(session.now_ms),
        session.phase,
        format_ma(channel["amp_ua"]),
        format_ma(channel["target_ua"]),
        format_ma(channel["delivered_ua"]),
    )


def _tick(session, started):
    if time.monotonic() - started > WALL_LIMIT_S:
        raise DemoError("the session took longer than %d s of wall time; is the machine overloaded?" % WALL_LIMIT_S)
    more = session.advance()
    if more:
        session.client.poll(POLL_S)
    return more


@click.command()
@click.option("--runtime", type=click.Choice(["cpython", "micropython"]), default="cpython", show_default=True)
@click.option("--speed", type=FiniteFloatRange(min=1, max=200), default=20.0, show_default=True,
              help="Simulated seconds per wall second.")
def main(runtime, speed):
    """Run a short accelerated session on an embedded simulated device."""
    try:
        run(runtime, speed)
    except (DemoError, ClientError, TransportError) as err:
        click.echo("demo failed: %s" % err, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
