"""`tensctl`: talk to a pulsewarm device (a board on USB, or the simulator).

Amplitudes are typed and shown in mA and sent to the device as integer µA.
`--json` prints exactly one JSON document on stdout, for success and failure
alike (integer units there: amp_ua, uptime_ms). With `--port sim` every
invocation starts its own embedded simulator, so nothing carries over from one
tensctl command to the next; serve one with `tens-sim serve` to keep state.

Every invocation opens the port and says `hello` (the version check); a hello
does not disturb a running session. `estop` is the exception: it is sent
first, without a hello, so no version question can hold it back. Options that wait (`start --wait`,
`stop --wait`, `resume --wait`) keep one connection while they poll.

Emergency stop: `tensctl estop` (output zero at once, no ramp).

Exit codes:
  0  ok
  1  the device replied with an error (e.g. start while a fault is latched, a
     setting outside the safety envelope), or left the expected state while
     --wait waited
  2  usage error (unknown option, bad amplitude, amplitude over the device limit,
     a bad setting: unreadable, or a value the device refuses as out of range or
     unknown in settings --set and stim --set)
  3  cannot open the port, lost the port, or no device found
  4  no response from the device, or it speaks another protocol version
  130  interrupted by Ctrl-C (with --json, one JSON document too)
"""

import json
import math
import os
import re
import sys
import time
from contextlib import contextmanager

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from firmware import limits as L
from firmware.heat import config as HEAT_CONFIG
from firmware.protocols import frame, jsondec
from firmware.protocols import messages as msg
from host import ports
from host.client import (
    DEFAULT_TIMEOUT_S,
    RETRIES,
    CallbackError,
    Client,
    ClientError,
    DeviceError,
    NoResponse,
    ProtocolError,
    VersionMismatch,
)
from host.monitor import pause_cause
from host.transport import TransportError, open_port
from host.units import (
    AmpParseError,
    CelsiusParseError,
    format_celsius,
    format_dose,
    format_duration_ms,
    format_ma,
    format_milli,
    format_temperature,
    parse_celsius,
    parse_ma,
)

EXIT_OK = 0
EXIT_DEVICE_ERROR = 1
EXIT_USAGE = 2
EXIT_PORT = 3
EXIT_NO_RESPONSE = 4
EXIT_INTERRUPTED = 130  # Ctrl-C (a running session was stopped first)

EPILOG = """\b
Emergency stop: tensctl estop  (output zero at once, no ramp)

\b
Exit codes:
  0  ok
  1  the device replied with an error (or left the expected state during --wait)
  2  usage error (bad option, bad amplitude, over the device limit, a bad setting:
     out of range or unknown in settings --set or stim --set)
  3  cannot open the port, lost it, or no device found
  4  no response from the device, or protocol version mismatch
  130  interrupted by Ctrl-C (monitor, run, start/resume --wait: a running session was stopped first;
       elsewhere a request in flight may have run; estop: NOT CONFIRMED)

\b
Ports: a device path (/dev/ttyACM0, COM3), socket://HOST:PORT
(tens-sim serve --listen), or sim (an embedded simulator per invocation;
sim:micropython runs it in the MicroPython VM)."""


class CliFailure(Exception):
    """Ends a command with a message, an exit code and a stable kind for --json."""

    def __init__(self, exit_code, kind, message, code=None, details=None, hint=None):
        Exception.__init__(self, message)
        self.exit_code = exit_code
        self.kind = kind
        self.message = message
        self.code = code
        self.details = details or {}  # extra fields for the --json error object
        self.hint = hint  # one more line for people: what to do about it
        # what did happen before the failure (fields, render(console)): shown first, so a
        # partial outcome (a session started, its heat refused) is never hidden behind the error
        self.partial = None


class Settings:
    def __init__(self, port, as_json, timeout_s, pin=None):
        self.port = port
        self.as_json = as_json
        self.timeout_s = timeout_s
        self.pin = pin  # the clinician PIN (patient mode), sent only with the requests that need it


# ---- output -----------------------------------------------------------------------


def _render_final(console, final):
    """The status a --wait ended on, when there was one."""
    if final is not None:
        console.print("Ramp done:")
        _render_status(console, final)


def _console():
    """Made per command so it writes to whatever sys.stdout is now (CliRunner swaps it).

    Piped output (no terminal, so no width to follow) gets 120 columns: the
    envelope table stays one row per figure instead of wrapping at 80.
    """
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=120)
    return console


def _emit_json(document):
    click.echo(json.dumps(document, sort_keys=True))


def _fail(settings_or_json, failure):
    as_json = settings_or_json.as_json if isinstance(settings_or_json, Settings) else bool(settings_or_json)
    partial = getattr(failure, "partial", None)
    if as_json:
        error = {"kind": failure.kind, "message": failure.message}
        if failure.code is not None:
            error["code"] = failure.code
        error.update(failure.details)
        if failure.hint:
            error["hint"] = failure.hint
        document = {"ok": False, "exit_code": failure.exit_code, "error": error}
        if partial is not None:
            for key, value in partial[0].items():
                document.setdefault(key, value)
        _emit_json(document)
    elif partial is not None:
        partial[1](_console())
    click.echo("Error: %s" % failure.message, err=True)
    if failure.hint:
        click.echo("Hint: %s" % failure.hint, err=True)
    sys.exit(failure.exit_code)


# An envelope refusal from the device: "phase_charge 28000 nC exceeds the limit 25000 nC at ..."
_ENVELOPE_TEXT = re.compile(r"^([a-z_]+) (-?\d+) (\S+) exceeds the limit (-?\d+) ")


# The device's refusals name protocol requests; people at a terminal are told the tensctl command.
_PROTOCOL_PHRASES = (
    ("send maintenance with on false, or restart", "tensctl maintenance off, or restart the device"),
    ("the programs request lists them", "tensctl program list lists them"),
    ("send clear_fault first", "tensctl clear-fault first"),
)


def _tensctl_words(text):
    for protocol, command in _PROTOCOL_PHRASES:
        text = text.replace(protocol, command)
    return text


def _device_failure(err, hint=None):
    """A DeviceError as a CliFailure (exit 1); an envelope refusal names its limit up front."""
    details = {}
    text = _tensctl_words(str(err))
    if err.code == msg.E_ENVELOPE:
        text = "device refused %s, outside the safety envelope: %s" % (err.op, err.message)
        found = _ENVELOPE_TEXT.match(err.message)
        if found:
            details = {
                "limit": found.group(1),
                "value": int(found.group(2)),
                "limit_value": int(found.group(4)),
                "unit": found.group(3),
            }
    return CliFailure(EXIT_DEVICE_ERROR, "device_error", text, err.code, details, hint)


def _is_bad_setting(err):
    """The device refused a setting's value as out of range or unknown (not the PIN's format):
    a usage error, exit 2. Other refusals (the envelope, the PIN, the flash) stay exit 1."""
    return err.code in (msg.E_OUT_OF_RANGE, msg.E_BAD_FIELD) and not err.message.startswith("pin ")


def _bad_setting(err):
    return CliFailure(EXIT_USAGE, "usage", "bad setting: %s" % err.message, err.code)


# ---- the device session ---------------------------------------------------------------


def _pick_port(settings):
    if settings.port:
        return settings.port
    boards = ports.find_boards()
    if not boards:
        raise CliFailure(
            EXIT_PORT,
            "no_device",
            "no pulsewarm board found (looked for USB VID:PID %04X:%04X). Connect one, name a port with "
            "--port URL (or TENSCTL_PORT), or try the simulator: tensctl --port sim status"
            % (ports.BOARD_VID, ports.BOARD_PID),
        )
    if len(boards) > 1:
        raise CliFailure(
            EXIT_PORT,
            "several_devices",
            "found %d pulsewarm boards (%s); choose one with --port"
            % (len(boards), ", ".join(board.device for board in boards)),
        )
    return boards[0].device


@contextmanager
def _session(settings, retries=RETRIES):
    """An open port with a client that has already said hello (version checked)."""
    url = _pick_port(settings)
    try:
        transport = open_port(url)
    except TransportError as err:
        raise CliFailure(EXIT_PORT, "port", err.message)
    try:
        client = Client(transport, timeout_s=settings.timeout_s, retries=retries, pin=settings.pin)
        client.hello()
        yield client
    finally:
        transport.close()


def ask_pin():
    """The clinician PIN from the terminal; Ctrl-C (or end of input) there is an interruption, exit 130."""
    try:
        return click.prompt("Clinician PIN", hide_input=True)
    except click.Abort:
        raise CliFailure(EXIT_INTERRUPTED, "interrupted",
                         "interrupted at the PIN prompt: no PIN given, so the locked request was not run")


def _run(settings, action, retries=RETRIES, emit=True):
    """Run action(client) -> (json fields, render(console)); map failures to exit codes.

    emit=False: print nothing on success (the caller writes the outcome itself); failures
    are reported as usual (one JSON document with --json)."""
    try:
        try:
            with _session(settings, retries) as client:
                fields, render = action(client)
                port = client.transport.url
        except DeviceError as err:
            if err.code != msg.E_LOCKED or settings.pin is not None or settings.as_json or not sys.stdin.isatty():
                raise
            # patient mode: ask for the PIN once (a refused request changed nothing) and run again
            settings.pin = ask_pin()
            with _session(settings, retries) as client:
                fields, render = action(client)
                port = client.transport.url
    except CliFailure as failure:
        _fail(settings, failure)
    except DeviceError as err:
        _fail(settings, _device_failure(err))
    except TransportError as err:
        _fail(settings, CliFailure(EXIT_PORT, "port", err.message))
    except NoResponse as err:
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "no_response", str(err)))
    except VersionMismatch as err:
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "version_mismatch", str(err)))
    except ProtocolError as err:
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "protocol", str(err)))
    if not emit:
        return
    if settings.as_json:
        document = {"ok": True, "port": port}
        document.update(fields)
        _emit_json(document)
    else:
        render(_console())


def _check_channel(client, ch):
    channels = client.device.get("channels", 1)
    if ch < 0 or ch >= channels:
        raise CliFailure(
            EXIT_USAGE,
            "usage",
            "channel %d does not exist: this device has %d channel%s (0..%d)"
            % (ch, channels, "" if channels == 1 else "s", channels - 1),
        )


def _check_amp(client, amp_ua, text):
    limit_ua = client.device.get("amp_limit_ua")
    if isinstance(limit_ua, int) and amp_ua > limit_ua:
        raise CliFailure(
            EXIT_USAGE,
            "usage",
            "%s mA exceeds this device's amplitude limit of %s (%d µA)" % (text, format_ma(limit_ua), limit_ua),
        )


# ---- click plumbing -------------------------------------------------------------------


class MilliAmps(click.ParamType):
    """A decimal amount of mA, parsed exactly to integer µA (see host.units)."""

    name = "MA"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):  # already converted: (amp_ua, text)
            return value
        if str(value).strip().startswith("-"):
            self.fail("%r: an amplitude cannot be negative (0 mA up to the device limit)" % (value,), param, ctx)
        try:
            return parse_ma(value), str(value).strip()
        except AmpParseError as err:
            self.fail(str(err), param, ctx)


MILLIAMPS = MilliAmps()


class Celsius(click.ParamType):
    """A decimal temperature in °C, parsed exactly to integer milli-°C (see host.units); an
    unreadable one is refused with the range a heat target takes."""

    name = "C"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_celsius(value)
        except CelsiusParseError as err:
            self.fail("%s; a heat target is %s to %s" % (err, format_celsius(HEAT_TARGET_MIN_MC),
                                                         format_celsius(HEAT_CONFIG.HARD_MAX_TARGET_MC)), param, ctx)


CELSIUS = Celsius()
HEAT_TARGET_MIN_MC = HEAT_CONFIG.HeatConfig().min_target_mc  # 30 °C


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that refuses nan and inf: nan passes every comparison, so click's own
    range check lets it through (a timeout of nan, a duration that ends at once)."""

    def convert(self, value, param, ctx):
        number = click.FloatRange.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail("%r is not a finite number: expected one in the range %s" % (value, self._describe_range()),
                      param, ctx)
        return number


HEAT_LEVELS = ("low", "medium", "high")
INTERLOCKS = ("concurrent", "alternate")


def _repeated_options(command, ctx, args):
    """Single-valued options given more than once in args, as their first option string."""
    _opts, _rest, order = command.make_parser(ctx).parse_args(args=list(args))  # a copy: the parser eats it
    counts = {}
    for param in order:
        if isinstance(param, click.Option) and not (param.multiple or param.is_flag or param.count):
            counts[param] = counts.get(param, 0) + 1
    return [param.opts[0] for param, count in counts.items() if count > 1]


class _OnceEach:
    """Refuses a single-valued option given twice: click keeps the last one silently, and a
    dropped amplitude, limit or timeout must not pass unnoticed."""

    def parse_args(self, ctx, args):
        if not ctx.resilient_parsing:
            repeated = _repeated_options(self, ctx, args)
            if repeated:
                raise click.UsageError(
                    "%s given more than once: give %s once (a second value would silently replace the first)"
                    % (", ".join(repeated), "each" if len(repeated) > 1 else "it"), ctx)
        return super().parse_args(ctx, args)


class TensctlCommand(_OnceEach, click.Command):
    """Every tensctl command: single-valued options once each."""


def _interrupted(err):
    """A click.Abort that stands for Ctrl-C (click turns KeyboardInterrupt into one)."""
    return isinstance(err, KeyboardInterrupt) or isinstance(err.__cause__, KeyboardInterrupt)


INTERRUPTED_TEXT = ("interrupted by Ctrl-C; a request in flight may have run on the device: "
                    "check tensctl status (tensctl estop stops everything)")


class TensctlGroup(_OnceEach, click.Group):
    """Keeps `--json` true to its word for usage errors too: one JSON document on stdout."""

    command_class = TensctlCommand
    group_class = type  # subgroups (program, log, pin) are TensctlGroups too

    def parse_args(self, ctx, args):
        if ctx.parent is None:  # --version looks here: it runs before --json is set
            opts = self.make_parser(ctx).parse_args(args=list(args))[0]
            ctx.meta[JSON_META] = bool(opts.get("as_json"))
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return click.Group.main(self, args, prog_name, complete_var, standalone_mode, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = click.Group.main(self, argv, prog_name, complete_var, False, **extra)
        except click.ClickException as err:
            if "--json" in argv:
                _emit_json({"ok": False, "exit_code": err.exit_code, "error": {"kind": "usage", "message": err.format_message()}})
            err.show()
            sys.exit(err.exit_code)
        except (click.Abort, KeyboardInterrupt) as err:
            if not _interrupted(err):  # a declined confirmation, end of input at a prompt
                click.echo("Aborted!", err=True)
                sys.exit(1)
            _fail("--json" in argv, CliFailure(EXIT_INTERRUPTED, "interrupted", INTERRUPTED_TEXT))
        sys.exit(code if isinstance(code, int) else 0)


JSON_META = "tensctl.json"
VERSION_TEXT = "tensctl %(version)s, protocol " + msg.PROTO_VERSION


def _show_version(ctx, _param, value):
    """--version: one line, or one JSON document with --json."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    tensctl_version = version("pulsewarm")
    if ctx.meta.get(JSON_META):
        _emit_json({"ok": True, "tensctl": tensctl_version, "protocol": msg.PROTO_VERSION})
    else:
        click.echo(VERSION_TEXT % {"version": tensctl_version})
    ctx.exit()


@click.group(name="tensctl", cls=TensctlGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--port",
    envvar="TENSCTL_PORT",
    metavar="URL",
    help="Device path, socket://HOST:PORT, or sim. Default: the one board found by USB VID:PID 2E8A:0005.",
)
@click.option("--json", "as_json", is_flag=True,
              help="Print exactly one JSON document on stdout, errors too. monitor and run print JSON lines "
                   "instead: one document per line (run: the start, then every telemetry event).")
@click.option(
    "--timeout",
    type=FiniteFloatRange(min=0.01, max=600),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for each reply; an unanswered request is resent once.",
)
@click.option(
    "--pin",
    envvar="TENSCTL_PIN",
    metavar="PIN",
    help="Clinician PIN for a device in patient mode (better: TENSCTL_PIN, or type it when asked).",
)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version (tensctl and protocol) and exit.")
@click.pass_context
def cli(ctx, port, as_json, timeout, pin):
    """Control a pulsewarm TENS + heat device over USB serial, a socket, or the simulator.

    Emergency stop: tensctl estop (every output to zero at once, no ramp)."""
    ctx.obj = Settings(port, as_json, timeout, pin)


# ---- waiting on the device (one connection: no reconnect, no ramp restart) ------------

WAIT_POLL_S = 0.05  # wall time between status polls while waiting
WAIT_MARGIN_MS = 3000  # device time allowed beyond the ramp


def _seconds_text(ms):
    """3000 -> '3 s', 2500 -> '2.5 s'."""
    return "%d s" % (ms // 1000) if ms % 1000 == 0 else format_milli(ms, "s")


def _ramped(status):
    return all(channel.get("amp_ua") == channel.get("target_ua") for channel in status.get("ch") or [])




def _fault_msg_text(text):
    """A fault message as status gives it; one the device shortened to fit its reply (it then ends
    in "...": whole in the state event) ends at a whole word with an ellipsis instead."""
    text = str(text or "")
    if not text.endswith("..."):
        return text
    return text[:-3].rsplit(" ", 1)[0] + " …"


def _faults_text(status):
    """The fault names status lists, and how many more latched (status lists the first few)."""
    text = ", ".join(str(name) for name in status.get("faults") or [])
    more = status.get("faults_more")
    if isinstance(more, int) and more > 0:
        text += " and %d more" % more
    return text


def _state_text(status):
    text = str(status.get("state"))
    if status.get("faults"):
        text += " (%s: %s)" % (_faults_text(status), _fault_msg_text(status.get("fault_msg")))
    elif status.get("reason"):
        text += " (reason: %s)" % status["reason"]
    return text


def _wait(client, what, done, keep_states, budget_ms):
    """Poll status until done(status); returns it.

    Fails (exit 1) when the device leaves keep_states first (a fault, a pause,
    the session timer) or when done() does not hold within budget_ms of the
    device's own time (its uptime), so a slow machine waits longer, never less.
    """
    status = client.status()
    first_ms = status.get("uptime_ms", 0)
    wall_deadline = time.monotonic() + 10 + budget_ms / 100.0  # only if the device clock stalls
    while not done(status):
        if status.get("state") not in keep_states:
            raise CliFailure(
                EXIT_DEVICE_ERROR, "wait", "stopped waiting for %s: the device is %s" % (what, _state_text(status))
            )
        waited_ms = status.get("uptime_ms", 0) - first_ms
        if waited_ms > budget_ms or time.monotonic() > wall_deadline:
            raise CliFailure(
                EXIT_DEVICE_ERROR,
                "wait",
                "%s did not finish within %s of device time; the device is %s"
                % (what, _seconds_text(waited_ms), _state_text(status)),
            )
        client.poll(WAIT_POLL_S)
        status = client.status()
    return status


def _wait_ramped(client, budget_ms):
    return _wait(client, "the ramp up", lambda s: s.get("state") == "RUNNING" and _ramped(s), ("RUNNING",), budget_ms)


def _wait_stopped(client):
    return _wait(
        client,
        "the ramp down",
        lambda s: s.get("state") == "IDLE",
        ("RUNNING",),
        L.RAMP_MAX_MS + WAIT_MARGIN_MS,
    )


# ---- commands -------------------------------------------------------------------------


@cli.command()
@click.pass_obj
def info(settings):
    """Device identity, firmware and protocol version, limits."""

    def action(client):
        device = client.device

        def render(console):
            table = Table(show_header=False, box=None, pad_edge=False)
            table.add_column(style="bold")
            table.add_column()
            table.add_row("Device", escape(str(device.get("device_id"))))
            table.add_row("Firmware", escape(str(device.get("fw"))))
            table.add_row("Protocol", "%s (host speaks %s)" % (escape(str(device.get("proto"))), msg.PROTO_VERSION))
            table.add_row("Channels", str(device.get("channels")))
            table.add_row("Amplitude limit", format_ma(device.get("amp_limit_ua", 0)))
            if "amp_step_ua" in device:
                table.add_row("Amplitude step", format_ma(device["amp_step_ua"]))
            if "lease_ms" in device:
                lease_ms = device["lease_ms"]
                table.add_row("Default lease", _seconds_text(lease_ms) if lease_ms else "none (the device times sessions alone)")
            if "session_max_ms" in device:
                table.add_row("Longest session", "%d min" % (device["session_max_ms"] // 60000))
            table.add_row("Tick", "%s ms" % device.get("tick_ms"))
            table.add_row("Port", escape(client.port_name))
            console.print(table)

        return dict(device), render

    _run(settings, action)


_STATE_STYLE = {"IDLE": "cyan", "RUNNING": "green", "PAUSED": "yellow", "FAULT": "bold red"}
_REASONS = {
    "request": "paused on request",
    "lease_expired": "paused: the host lease expired (no request in time)",
    "session_end": "the session timer ran out",
    "estop": "emergency stop",
    "stop": "stopped",
    "clear_fault": "fault cleared",
}


def _render_status(console, status):
    state = str(status.get("state"))
    line = "[%s]%s[/]" % (_STATE_STYLE.get(state, "bold"), escape(state))
    if status.get("stopping"):
        line += " [yellow](stopping: ramping down to zero)[/]"
    elif state in ("PAUSED", "IDLE") and status.get("reason") and status.get("reason") != "start":
        reason = str(status["reason"])
        line += " (%s)" % escape(_REASONS.get(reason, reason))
    faults = status.get("faults") or []
    if faults:
        line += "  faults: [red]%s[/]" % escape(_faults_text(status))
        if status.get("fault_msg"):
            line += " (%s)" % escape(_fault_msg_text(status["fault_msg"]))
    else:
        line += "  faults: none"
    uptime_ms = int(status.get("uptime_ms", 0))
    line += "  uptime: %d.%03d s" % (uptime_ms // 1000, uptime_ms % 1000)
    console.print(line)
    if status.get("maintenance"):
        console.print("[bold yellow]maintenance mode: on[/] (no session or heat starts; tensctl maintenance off)")
    if status.get("program"):
        console.print("program: [bold]%s[/]  phase: [bold]%s[/]"
                      % (escape(str(status["program"])), escape(str(status.get("phase") or "-"))))
    if state in ("RUNNING", "PAUSED"):
        session = "session left: %s" % format_duration_ms(status.get("session_left_ms", 0))
        lease_ms = status.get("lease_ms", 0)
        if lease_ms:
            session += "  lease: %s (pauses without a request that often)" % _seconds_text(lease_ms)
        else:
            session += "  lease: none (the device times the session)"
        console.print(session)
    heat = status.get("heat")
    if heat:
        console.print(_heat_text(heat, status))
    table = Table(box=None, pad_edge=False)
    prescribed = status.get("prescribed_max_ua")  # a running program's maxima (added by the status command)
    max_title = "prescribed max" if prescribed is not None else "max"
    for title in ("ch", "mode", "amplitude", "target", max_title, "delivered", "phase", "rate"):
        table.add_column(title, justify="left" if title == "mode" else "right")
    channels = status.get("ch") or []
    show_indicator = any("indicator" in channel for channel in channels)
    if show_indicator:
        table.add_column("indicator")
    for index, channel in enumerate(channels):
        phase_us = channel.get("phase_us", 0)
        rate_hz = channel.get("rate_hz", 0)
        row = [
            str(index),
            escape(str(channel.get("mode", "-"))),
            format_ma(channel.get("amp_ua", 0)),
            format_ma(channel.get("target_ua", 0)),
            _max_text(channel, prescribed, index),
            format_ma(channel.get("delivered_ua", 0)),
            "%d µs" % phase_us if phase_us else "-",
            "%d Hz" % rate_hz if rate_hz else "-",
        ]
        if show_indicator:
            row.append("[bold yellow]lit[/]" if channel.get("indicator") else "")
        table.add_row(*row)
    console.print(table)


def _max_text(channel, prescribed, index):
    """The channel's max amplitude: a running program's prescribed maximum when there is one."""
    if prescribed is not None:
        if index >= len(prescribed):
            return "not used"
        return format_ma(min(prescribed[index], channel.get("max_amp_ua", prescribed[index])))
    return format_ma(channel["max_amp_ua"]) if "max_amp_ua" in channel else "-"


def _prescribed_max(client, status):
    """Per channel, the prescribed maximum of the program this session runs (None without one)."""
    name = status.get("program")
    if not name:
        return None
    try:
        program = client.program_get(name).get("program") or {}
    except DeviceError:
        return None
    return [int(plan.get("max_amp_ua", 0)) for plan in program.get("channels") or []]


# why heat last stopped (heat status `reason`): none of these is a latched fault
_HEAT_REASONS = {
    "stop": "last heat ended: turned off",
    "session_end": "last heat ended with its session (session timer)",
    "estop": "last heat ended by an emergency stop",
    "timer": "last heat ended: its timer ran out",
    "dose_cap": "last heat ended: thermal dose cap reached",
    "fault": "last heat ended by a fault, since cleared",
    "autotune_done": "autotune done",
    "autotune_failed": "autotune failed",
}


def _held_off_text(status):
    """Why the session holds heat off, from the device's state: paused (and why), or a channel
    stimulating under the alternate interlock."""
    state = status.get("state")
    if state == "PAUSED":
        reason = status.get("reason")
        return "paused, %s" % pause_cause(reason) if reason else "paused"
    if state == "RUNNING" and status.get("interlock") == "alternate":
        return "a channel stimulates, interlock alternate"
    return "by the session"


def _heat_text(heat, status=None):
    """One line: heat state and target, pad temperature, heater duty, dose, time left.

    status: the device's status (state, reason, interlock), to say why heat is held off."""
    status = status or {}
    interlock = status.get("interlock")
    state = str(heat.get("state"))
    style = {"heating": "yellow", "holding": "green", "fault": "bold red"}.get(state, "cyan")
    line = "heat: [%s]%s[/]" % (style, escape(state))
    if state in ("heating", "holding", "autotune"):
        line += " to %s" % format_celsius(heat.get("target_mc", 0))
        if heat.get("level"):
            line += " (%s)" % escape(str(heat["level"]))
        line += ", %s left" % format_duration_ms(heat.get("time_left_ms", 0))
        if heat.get("allowed") is False:
            line += " [yellow](held off: %s)[/]" % escape(_held_off_text(status))
    elif state == "fault":
        if heat.get("fault"):
            line += " (%s)" % escape(str(heat["fault"]))
    elif heat.get("reason"):
        reason = str(heat["reason"])
        line += " (%s)" % escape(_HEAT_REASONS.get(reason, "last heat ended: " + reason))
    measured_mc = heat.get("measured_mc")
    line += "  pad: %s" % (format_temperature(measured_mc) if measured_mc is not None else "no reading")
    line += "  heater: %d %%" % heat.get("heater_duty_pct", 0)
    line += "  dose: %s" % format_dose(heat.get("cem43_ms", 0))
    if interlock:
        line += "  interlock: %s" % escape(str(interlock))
    return line


@cli.command()
@click.pass_obj
def status(settings):
    """State, faults, session time left, and per channel: mode, amplitude, target,
    max, delivered current, phase width and rate."""

    def action(client):
        reply = client.status()
        prescribed = _prescribed_max(client, reply)
        if prescribed is not None:
            reply["prescribed_max_ua"] = prescribed
        return reply, lambda console: _render_status(console, reply)

    _run(settings, action)


HEAT_LEVEL_MC = dict(HEAT_CONFIG.LEVELS)


def _device_settings(client):
    """The device's settings (session, ramp and lease defaults, heat cap), or {} if it cannot say."""
    try:
        return dict(client.settings().get("settings") or {})
    except DeviceError:
        return {}


def _duration_text(ms):
    """1800000 -> '30 min', 90000 -> '1:30 min'."""
    return "%d min" % (ms // 60000) if ms % 60000 == 0 else "%s min" % format_duration_ms(ms)


def _targets_text(status, given):
    """Every channel's target as the device holds it; channels not set by this command say so."""
    parts = []
    for index, channel in enumerate(status.get("ch") or []):
        target_ua = channel.get("target_ua", 0)
        text = "channel %d %s" % (index, format_ma(target_ua))
        if index not in given and target_ua:
            text += " [bold yellow](kept from before: tensctl amp %d 0 to zero it)[/]" % index
        parts.append(text)
    return ", ".join(parts)


def _stop_after_interrupt(client):
    """Ctrl-C while waiting on a running session: stop it (ramping down) the way monitor and run do."""
    click.echo("Ctrl-C: stopping stimulation (ramping down) before exit...", err=True)
    try:
        client.stop()
        deadline = time.monotonic() + L.RAMP_MAX_MS / 1000.0 + 2.0
        status = client.status()
        while status.get("state") == "RUNNING" and time.monotonic() < deadline:
            client.poll(0.1)
            status = client.status()
    except (ClientError, TransportError, KeyboardInterrupt) as err:
        return CliFailure(
            EXIT_INTERRUPTED, "interrupted",
            "interrupted by Ctrl-C and the stop was not confirmed (%s): the session may still be RUNNING; "
            "use tensctl estop" % (str(err) or "interrupted again"),
        )
    if status.get("state") == "RUNNING":
        return CliFailure(EXIT_INTERRUPTED, "interrupted",
                          "interrupted by Ctrl-C: the stop was sent but the session is still RUNNING "
                          "(ramping down); check tensctl status, or tensctl estop")
    return CliFailure(EXIT_INTERRUPTED, "interrupted",
                      "interrupted by Ctrl-C: stimulation stopped (ramped down to zero), the device is %s"
                      % status.get("state"))


def _started_text(status, lease_ms, session_ms):
    """'channel 0 at 10.0 mA, channel 1 at 0.0 mA; no lease, auto-off after 30 min': what a start set going."""
    targets = ", ".join("channel %d at %s" % (index, format_ma(channel.get("target_ua", 0)))
                        for index, channel in enumerate(status.get("ch") or []))
    lease = "lease %s" % _seconds_text(lease_ms) if lease_ms else "no lease"
    timer = "auto-off after %s" % _duration_text(session_ms) if isinstance(session_ms, int) else "the device's timer"
    return "%s; %s, %s" % (targets or "no channel targets", lease, timer)


def _lost_after_start(err, fields, render_started, started_text):
    """The link failed during start --wait: the session WAS started and may still run; say so first."""
    if isinstance(err, TransportError):
        exit_code, kind, cause = EXIT_PORT, "port", err.message
    else:
        exit_code, kind, cause = EXIT_NO_RESPONSE, "no_response", str(err)
    failure = CliFailure(
        exit_code, kind,
        "the session WAS STARTED (%s) and may still be running: %s while waiting for the ramp" % (started_text, cause),
        details={"started": True},
        hint="reconnect and check tensctl status; tensctl stop ends it, tensctl estop at once",
    )
    failure.partial = (fields, render_started)
    return failure


def _wait_ramped_or_stop(client, budget_ms):
    """_wait_ramped; Ctrl-C stops the session before the command ends (exit 130)."""
    try:
        return _wait_ramped(client, budget_ms)
    except KeyboardInterrupt:
        raise _stop_after_interrupt(client)


@cli.command()
@click.option("--amp", "amp", type=MILLIAMPS, metavar="MA", help="Target amplitude in mA, e.g. 12.5 (ramps up from zero).")
@click.option("--ch", type=click.IntRange(min=0), default=0, show_default=True, help="Channel the --amp applies to.")
@click.option("--minutes", type=click.IntRange(1, 60), default=None,
              help="Session length; the device stops by itself after it (default: its session_default_ms setting).")
@click.option("--lease", "lease_s", type=click.IntRange(0, 30), default=None,
              help="Keepalive lease in seconds: pause unless a request arrives this often. 0: the session runs on "
                   "the device's own timer. Default: the device's lease_default_ms setting (tensctl settings).")
@click.option("--ramp", "ramp_s", type=click.IntRange(1, 30), default=None,
              help="Soft start: seconds from zero to the target (default: the device's ramp_default_ms setting).")
@click.option("--interlock", type=click.Choice(INTERLOCKS), default=None,
              help="Heat with stimulation: concurrent or alternate (never heat while a channel stimulates). "
                   "Default: the device's interlock_default setting.")
@click.option("--heat", "heat_level", type=click.Choice(HEAT_LEVELS), default=None,
              help="Also turn heat on at this level (38 / 40 / 42 °C). A level above the device's heat cap, and "
                   "heat in patient mode (it comes only with a prescribed program), are refused before anything "
                   "starts; if the device refuses the heat after the session started, "
                   "stimulation keeps running without heat, both are reported and the exit code is 1.")
@click.option("--wait", is_flag=True,
              help="Stay connected until every channel has ramped to its target (Ctrl-C stops the session, exit 130).")
@click.pass_obj
def start(settings, amp, ch, minutes, lease_s, ramp_s, interlock, heat_level, wait):
    """Start a session: stimulation (always ramps up from zero), and heat with --heat.

    Channels without --amp keep the target they have on the device (tensctl amp);
    the message lists every channel's target, the ramp time, auto-off and lease
    as the device will run them."""
    if amp is None and ch != 0:
        _fail(settings, CliFailure(EXIT_USAGE, "usage", "--ch needs --amp (the target for that channel)"))

    def action(client):
        targets = None
        given = ()
        if amp is not None:
            amp_ua, text = amp
            _check_channel(client, ch)
            _check_amp(client, amp_ua, text)
            targets = [0] * (ch + 1)
            given = (ch,)
            if ch > 0:  # keep the other channels' targets as they are
                for index, channel in enumerate(client.status().get("ch", [])[:ch]):
                    targets[index] = channel.get("target_ua", 0)
            targets[ch] = amp_ua
        device_settings = _device_settings(client)
        if heat_level is not None:
            if client.programs().get("patient_mode"):
                raise CliFailure(
                    EXIT_DEVICE_ERROR, "heat_locked",
                    "nothing started: in patient mode heat comes only with a prescribed program that has heat",
                    msg.E_LOCKED, hint="start without --heat, or tensctl run a stored program with heat",
                )
            cap_mc = device_settings.get("heat_max_target_mc")
            level_mc = HEAT_LEVEL_MC[heat_level]
            if isinstance(cap_mc, int) and level_mc > cap_mc:
                raise CliFailure(
                    EXIT_DEVICE_ERROR, "heat_cap",
                    "nothing started: heat %s (%s) is above this device's heat cap %s (heat_max_target_mc)"
                    % (heat_level, format_celsius(level_mc), format_celsius(cap_mc)),
                    hint="choose a lower --heat level, or start without --heat",
                )
        ramp_ms = ramp_s * 1000 if ramp_s else None
        reply = client.start(
            targets, lease_ms=lease_s * 1000 if lease_s is not None else None,
            session_ms=minutes * 60000 if minutes else None, ramp_ms=ramp_ms, interlock=interlock,
        )
        started = client.status()
        run_ramp_ms = ramp_ms or device_settings.get("ramp_default_ms")
        session_ms = minutes * 60000 if minutes else device_settings.get("session_default_ms")
        if not isinstance(session_ms, int):  # rounded up from the time left just after the start
            session_ms = -(-int(started.get("session_left_ms", 0)) // 1000) * 1000
        lease_ms = int(started.get("lease_ms", 0))
        fields = {"state": reply.get("state"), "targets_ua": [c.get("target_ua", 0) for c in started.get("ch") or []],
                  "session_ms": session_ms, "lease_ms": lease_ms, "ramp_ms": run_ramp_ms}
        if amp is not None:
            fields.update({"ch": ch, "target_ua": amp[0]})

        def render_started(console):
            text = "Started: [green]%s[/]; targets: %s" % (escape(str(reply.get("state"))), _targets_text(started, given))
            if isinstance(run_ramp_ms, int):
                text += " (ramps up from zero over %s)" % _seconds_text(run_ramp_ms)
            else:
                text += " (ramps up from zero over the device's default ramp time)"
            console.print(text)
            if lease_ms:
                lease_text = "pauses unless a request arrives every %s (%s)" % (
                    _seconds_text(lease_ms),
                    "--lease" if lease_s is not None else "the device's lease_default_ms; --lease 0 for none")
            else:
                lease_text = "no host lease"
            console.print("Auto-off after %s; %s" % (_duration_text(session_ms), lease_text))

        heat_reply = None
        if heat_level is not None:
            try:
                heat_reply = client.heat(level=heat_level)
            except DeviceError as err:
                failure = _device_failure(
                    err, hint="stimulation is running without heat: tensctl heat LEVEL to try again, "
                              "tensctl stop to end the session")
                failure.kind = "heat_refused"
                failure.message = "HEAT REFUSED (the session is RUNNING without heat): %s" % failure.message
                failure.partial = (fields, render_started)
                raise failure
            fields["heat"] = heat_reply
        final = None
        if wait:
            try:
                final = _wait_ramped_or_stop(client, (ramp_ms or run_ramp_ms or L.RAMP_MAX_MS) + WAIT_MARGIN_MS)
            except (TransportError, NoResponse) as err:
                raise _lost_after_start(err, fields, render_started, _started_text(started, lease_ms, session_ms))
            fields["status"] = final

        def render(console):
            render_started(console)
            if heat_reply is not None:
                console.print(_heat_text(heat_reply, started))
            _render_final(console, final)

        return fields, render

    _run(settings, action)


@cli.command()
@click.option("--wait", is_flag=True, help="Stay connected until the ramp down has ended (IDLE).")
@click.pass_obj
def stop(settings, wait):
    """Stop stimulation: the device ramps every output down to zero, then goes IDLE.

    For an emergency stop (zero at once, no ramp) use `tensctl estop`."""

    def action(client):
        reply = client.stop()
        fields = dict(reply)
        final = None
        if wait and reply.get("stopping"):
            final = _wait_stopped(client)
            fields["status"] = final

        def render(console):
            if final is not None:
                console.print("Stopped: %s (ramped down to zero)" % escape(str(final.get("state"))))
            elif reply.get("stopping"):
                console.print("Stopping: %s, ramping down to zero, then IDLE" % escape(str(reply.get("state"))))
            else:
                console.print("Stopped: %s (outputs off)" % escape(str(reply.get("state"))))

        return fields, render

    _run(settings, action)


ESTOP_RETRIES = 3
ESTOP_NOT_CONFIRMED = "EMERGENCY STOP NOT CONFIRMED: "
ESTOP_HINT = "the output may still be on: remove the electrodes, press the device's stop button or cut its power"


@cli.command(short_help="EMERGENCY STOP: output zero at once, no ramp.")
@click.pass_obj
def estop(settings):
    """EMERGENCY STOP: every output to zero at once, no ramp.

    All targets go to zero and the device goes IDLE (a latched fault stays
    latched). Sent first, before any version check, with extra retries; when
    no confirmation comes back it says EMERGENCY STOP NOT CONFIRMED and exits
    non-zero. A normal stop ramps down: `tensctl stop`."""

    def not_confirmed(exit_code, kind, text, code=None):
        _fail(settings, CliFailure(exit_code, kind, ESTOP_NOT_CONFIRMED + text, code, hint=ESTOP_HINT))

    try:
        url = _pick_port(settings)
    except CliFailure as failure:
        not_confirmed(failure.exit_code, failure.kind, failure.message)
    interrupted = "interrupted by Ctrl-C before the device confirmed it"
    try:
        transport = open_port(url)
    except TransportError as err:
        not_confirmed(EXIT_PORT, "port", err.message)
    except KeyboardInterrupt:
        not_confirmed(EXIT_INTERRUPTED, "interrupted", interrupted)
    try:
        # no hello first: an emergency stop must not wait on (or fail with) the version check
        client = Client(transport, timeout_s=settings.timeout_s, retries=ESTOP_RETRIES, pin=settings.pin)
        reply = client.estop()
    except DeviceError as err:
        not_confirmed(EXIT_DEVICE_ERROR, "device_error", "the device refused it: %s (%s)" % (err.message, err.code),
                      err.code)
    except NoResponse as err:
        not_confirmed(EXIT_NO_RESPONSE, "no_response", str(err))
    except TransportError as err:
        not_confirmed(EXIT_PORT, "port", err.message)
    except ProtocolError as err:
        not_confirmed(EXIT_NO_RESPONSE, "protocol", str(err))
    except KeyboardInterrupt:
        not_confirmed(EXIT_INTERRUPTED, "interrupted", interrupted)
    finally:
        transport.close()
    if settings.as_json:
        document = {"ok": True, "port": url}
        document.update(reply)
        _emit_json(document)
        return
    state = str(reply.get("state"))
    text = "[bold red]EMERGENCY STOP[/]: output zero, targets zero, state %s" % escape(state)
    if state == "FAULT":
        text += " (the fault stays latched: clear-fault once its cause is gone)"
    _console().print(text)


@cli.command()
@click.pass_obj
def pause(settings):
    """Pause: output zero at once, targets kept; `resume` ramps up again from zero."""

    def action(client):
        reply = client.pause()

        def render(console):
            if reply.get("state") == "IDLE":  # a stop was ramping down: the pause completed it
                console.print("Stopped: IDLE (a stop was ramping down; output zero now, the session has ended)")
            else:
                console.print(
                    "Paused: %s (output zero, targets kept; resume ramps up from zero)" % escape(str(reply.get("state")))
                )

        return reply, render

    _run(settings, action)


@cli.command()
@click.option("--wait", is_flag=True, help="Stay connected until every channel has ramped to its target.")
@click.pass_obj
def resume(settings, wait):
    """Resume a paused session: output ramps up from zero to the targets."""

    def action(client):
        reply = client.resume()
        fields = dict(reply)
        final = None
        if wait:
            final = _wait_ramped_or_stop(client, L.RAMP_MAX_MS + WAIT_MARGIN_MS)
            fields["status"] = final

        def render(console):
            console.print("Resumed: %s (ramps up from zero)" % escape(str(reply.get("state"))))
            _render_final(console, final)

        return fields, render

    _run(settings, action)


@cli.command()
@click.pass_obj
def keepalive(settings):
    """Renew the host keepalive lease (any request does; this one does nothing else)."""

    def action(client):
        reply = client.keepalive()
        return reply, lambda console: console.print("Lease renewed: %s" % escape(str(reply.get("state"))))

    _run(settings, action)


@cli.command(context_settings={"ignore_unknown_options": True})  # `amp 0 -1`: a bad amplitude, not an option
@click.argument("ch", type=click.IntRange(min=0))
@click.argument("ma", type=MILLIAMPS)
@click.pass_obj
def amp(settings, ch, ma):
    """Set channel CH's target amplitude to MA milliamps (the output ramps to it)."""

    def action(client):
        amp_ua, text = ma
        _check_channel(client, ch)
        _check_amp(client, amp_ua, text)
        reply = client.set_amp(ch, amp_ua)
        target_ua = reply.get("target_ua", amp_ua)
        return reply, lambda console: console.print("Channel %d target: %s" % (reply.get("ch", ch), format_ma(target_ua)))

    _run(settings, action)


@cli.command()
@click.argument("level", type=click.Choice(HEAT_LEVELS + ("off",)), required=False)
@click.option("--target", "target_mc", type=CELSIUS, metavar="C",
              help="Explicit target in °C, e.g. 41.5 (30 to 43; instead of LEVEL).")
@click.option("--minutes", type=click.IntRange(1, 120), default=None,
              help="Heat for this long from now (default 30; heat also ends with the session).")
@click.pass_obj
def heat(settings, level, target_mc, minutes):
    """Heat on at LEVEL (low 38, medium 40, high 42 °C) or --target, or `off`. Needs a running session."""
    if level is not None and target_mc is not None:
        _fail(settings, CliFailure(EXIT_USAGE, "usage", "give LEVEL or --target, not both"))
    if level is None and target_mc is None and minutes is None:
        _fail(settings, CliFailure(EXIT_USAGE, "usage", "say what heat should do: LEVEL, off, --target C or --minutes N"))
    if level == "off" and (target_mc is not None or minutes is not None):
        _fail(settings, CliFailure(EXIT_USAGE, "usage", "`heat off` takes no --target or --minutes"))

    if target_mc is not None and not HEAT_TARGET_MIN_MC <= target_mc <= HEAT_CONFIG.HARD_MAX_TARGET_MC:
        _fail(settings, CliFailure(
            EXIT_USAGE, "usage", "heat target %s is outside %s..%s (the pad's range; above %s is unsafe for skin)"
            % (format_celsius(target_mc), format_celsius(HEAT_TARGET_MIN_MC),
               format_celsius(HEAT_CONFIG.HARD_MAX_TARGET_MC), format_celsius(HEAT_CONFIG.HARD_MAX_TARGET_MC))))

    def action(client):
        if level == "off":
            reply = client.heat(off=True)
            return reply, lambda console: console.print(_heat_text(reply))
        wanted_mc = target_mc if target_mc is not None else HEAT_LEVEL_MC.get(level)
        if wanted_mc is not None:
            cap_mc = _device_settings(client).get("heat_max_target_mc")
            if isinstance(cap_mc, int) and wanted_mc > cap_mc:
                raise CliFailure(
                    EXIT_DEVICE_ERROR, "heat_cap",
                    "heat %s is above this device's heat cap %s (its heat_max_target_mc setting)"
                    % ("level %s (%s)" % (level, format_celsius(wanted_mc)) if level else format_celsius(wanted_mc),
                       format_celsius(cap_mc)),
                )
        try:
            reply = client.heat(level=level, target_mc=target_mc, minutes=minutes)
        except DeviceError as err:
            if err.code == msg.E_BAD_STATE and "PAUSED" in err.message:
                raise CliFailure(
                    EXIT_DEVICE_ERROR, "device_error",
                    "the session is PAUSED: heat starts only while it runs; tensctl resume first, then heat",
                    err.code,
                )
            raise
        session = client.status() if reply.get("allowed") is False else None  # why heat is held off
        return reply, lambda console: console.print(_heat_text(reply, session))

    _run(settings, action)


@cli.command()
@click.argument("switch", type=click.Choice(["on", "off"]))
@click.pass_obj
def maintenance(settings, switch):
    """Maintenance mode on (from IDLE) or off: no session starts while it is on (for deploying).

    On the board, `on` restarts it into maintenance mode: no watchdog, Ctrl-C reaches the
    REPL, so mpremote (tensctl deploy) can copy files; `off` restarts it normally."""

    def action(client):
        reply = client.maintenance(switch == "on")
        return reply, lambda console: console.print(
            "Maintenance mode: %s" % ("[yellow]on[/] (start and heat refused)" if reply.get("maintenance") else "off"))

    _run(settings, action)


def _setting_change(text):
    """NAME=VALUE -> (name, value): integers as integers, anything else as text."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter("expected NAME=VALUE, e.g. ramp_default_ms=3000, got %r" % text)
    value = value.strip()
    return name.strip(), int(value) if re.fullmatch(r"-?\d+", value) else value


def _setting_changes(texts):
    """Every --set NAME=VALUE as {name: value}; a name given twice is refused (not the last kept)."""
    parsed = {}
    for text in texts:
        name, value = _setting_change(text)
        if name in parsed:
            raise click.BadParameter("--set %s given twice (%s and %s): give each setting once; nothing was changed"
                                     % (name, parsed[name], value))
        parsed[name] = value
    return parsed


@cli.command()
@click.option("--set", "changes", multiple=True, metavar="NAME=VALUE",
              help="Change a setting (repeat for several; all are checked before any applies).")
@click.pass_obj
def settings(settings, changes):
    """Show the device settings with their limits, or change them with --set NAME=VALUE.

    \b
    session_default_ms, ramp_default_ms, lease_default_ms (0: no lease),
    interlock_default (concurrent | alternate), heat_max_target_mc (<= 43000),
    heat_minutes_default. Kept on the device across restarts."""
    try:
        parsed = _setting_changes(changes)
    except click.BadParameter as err:
        _fail(settings, CliFailure(EXIT_USAGE, "usage", err.message))

    def action(client):
        try:
            reply = client.settings(parsed or None)
        except DeviceError as err:
            if _is_bad_setting(err):
                raise _bad_setting(err)
            raise  # a locked device asks for the PIN (see _run)

        def render(console):
            table = Table(box=None, pad_edge=False)
            for title in ("setting", "value", "limits"):
                table.add_column(title)
            for name in sorted(reply.get("settings", {})):
                limits = reply.get("limits", {}).get(name, [])
                if any(isinstance(item, str) for item in limits):
                    shown = " | ".join(str(item) for item in limits)
                else:
                    shown = "%s..%s" % tuple(limits) if len(limits) == 2 else ""
                if name == "lease_default_ms":
                    shown = "0 (no lease) or " + shown
                changed = " (changed)" if name in parsed else ""
                table.add_row(name, "%s%s" % (reply["settings"][name], changed), shown)
            console.print(table)

        return reply, render

    _run(settings, action)


@cli.command()
@click.option("--every", "every_ms", type=click.IntRange(50, 60000), default=200, show_default=True,
              help="Telemetry interval in ms (50 = 20 updates a second).")
@click.option("--duration", "duration_s", type=FiniteFloatRange(min=0.1), default=None,
              help="End after this many seconds, leaving the session as it is (default: until q or Ctrl-C).")
@click.option("--reconnect", "reconnect_s", type=FiniteFloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to keep trying when the device is lost before giving up (exit 3).")
@click.pass_obj
def monitor(settings, every_ms, duration_s, reconnect_s):
    """Live view: state, amplitude per channel, heat, time left, faults; keys steer the session.

    \b
    Keys: up/down (or +/-) amplitude of the marked channel by 0.5 mA, tab other channel,
    p pause/resume, space stop (ramp down), e EMERGENCY STOP, q quit (session left as it is).
    Ctrl-C stops a running session (ramping down) before it exits.
    With --json: every telemetry event received, one per line (JSON lines), in order; a line
    after a gap in the device's sequence number n carries "missed": how many never arrived.
    Without a terminal: one line a second. Keepalives hold the session's lease (several
    per lease, however fast the device's clock runs). A lost device is reconnected."""
    monitor_session(settings, every_ms, duration_s, reconnect_s)


def monitor_session(settings, every_ms, duration_s, reconnect_s, first=None):
    """The live view (shared by monitor and run); exits the process on failure or Ctrl-C.

    first(client), if given, runs once on the first connection before telemetry starts: `run`
    starts its program there, so no reconnect (slow on a socket) eats into a short lease."""
    from host import monitor as mon

    url = _pick_port_or_fail(settings)
    pending = [first] if first is not None else []

    def connect(on_event):
        transport = open_port(url)
        try:
            client = Client(transport, timeout_s=settings.timeout_s, on_event=on_event)
            client.hello()
            while pending:
                pending.pop()(client)
        except BaseException:
            transport.close()
            raise
        return client, transport.close

    console = _console()
    last_line = [0.0]

    def draw_json(state):
        for event in state.fresh:
            click.echo(json.dumps(event, sort_keys=True))

    def draw_lines(state):
        if time.monotonic() - last_line[0] >= 1.0 or not state.connected:
            last_line[0] = time.monotonic()
            console.print(escape(mon.summary_line(state) if state.connected else "device lost: reconnecting"))

    keys = mon.TerminalKeys() if sys.stdin.isatty() and not settings.as_json else mon.NoKeys()
    live = None
    if settings.as_json:
        draw = draw_json
    elif console.is_terminal:
        from rich.live import Live

        live = Live(console=console, auto_refresh=False)

        def draw(state):
            live.update(mon.render(state), refresh=True)
    else:
        draw = draw_lines
    session = mon.Monitor(connect, every_ms, draw, keys, reconnect_s=reconnect_s)
    try:
        with keys:
            if live is not None:
                live.start()
            try:
                session.run(duration_s)
            finally:
                if live is not None:
                    live.stop()
    except KeyboardInterrupt:
        click.echo("Ctrl-C: stopping stimulation (ramping down) before exit...", err=True)
        try:
            stopped = session.stop_session(L.RAMP_MAX_MS / 1000.0 + 2.0)
        except ClientError as err:  # any failed stop (a broken reply too): output zero another way
            click.echo("Could not stop the session: %s. %s" % (err, _estop_after_failed_stop(session.client)),
                       err=True)
            session.close()
            sys.exit(EXIT_INTERRUPTED)
        click.echo("Stopped: output ramped down to zero." if stopped else "Nothing was running.", err=True)
        session.close()
        sys.exit(EXIT_INTERRUPTED)
    except CliFailure as failure:
        session.close()
        _fail(settings, failure)
    except DeviceError as err:
        session.close()
        _fail(settings, _device_failure(err))
    except mon.DeviceLost as err:
        session.close()
        _fail(settings, CliFailure(EXIT_PORT, "device_lost", str(err)))
    except TransportError as err:
        session.close()
        _fail(settings, CliFailure(EXIT_PORT, "port", err.message))
    except NoResponse as err:
        session.close()
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "no_response", str(err)))
    except VersionMismatch as err:
        session.close()
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "version_mismatch", str(err)))
    except ProtocolError as err:
        session.close()
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "protocol", str(err)))
    session.close()


def _estop_after_failed_stop(client):
    """After a stop that failed: try an emergency stop; what to tell the user."""
    if client is None:
        return "No connection to send an emergency stop on: use tensctl estop."
    try:
        client.estop()
    except CallbackError as err:  # the view's callback raised: the estop itself may have gone through
        if err.error is not None:
            return "The emergency stop was NOT confirmed either (%s): use tensctl estop." % err.error
    except ClientError as err:
        return "The emergency stop was NOT confirmed either (%s): use tensctl estop." % err
    return "Emergency stop sent and confirmed: output zero."


def _pick_port_or_fail(settings):
    try:
        return _pick_port(settings)
    except CliFailure as failure:
        _fail(settings, failure)


def _step_command(name, sign, verb):
    @cli.command(name, help="%s channel CH's target by --steps steps of 0.5 mA (the output ramps to it)." % verb)
    @click.argument("ch", type=click.IntRange(min=0))
    @click.option("--steps", type=click.IntRange(1, L.AMP_STEPS_MAX), default=1, show_default=True,
                  help="How many 0.5 mA steps (at most %d per call)." % L.AMP_STEPS_MAX)
    @click.pass_obj
    def command(settings, ch, steps):
        def action(client):
            _check_channel(client, ch)
            reply = client.amp_step(ch, sign * steps)
            step_ua = client.device.get("amp_step_ua", L.AMP_STEP_UA)

            def render(console):
                console.print(
                    "Channel %d target: %s (%s %d × %s)"
                    % (reply.get("ch", ch), format_ma(reply.get("target_ua", 0)), name, steps, format_ma(step_ua))
                )

            return reply, render

        _run(settings, action)

    return command


up = _step_command("up", 1, "Raise")
down = _step_command("down", -1, "Lower")


# ---- stimulation settings ----------------------------------------------------------------

_FIELD_UNITS = (("_us", "µs"), ("_hz", "Hz"), ("_ms", "ms"), ("_pct", "%"), ("_cm2", "cm²"))

# (label, envelope key, limit name, format(value) -> text)
_FIGURES = (
    ("peak current", "peak_ua", "peak_current", lambda v: format_milli(v, "mA")),
    ("r.m.s. current", "rms_ua", "rms_current", lambda v: format_milli(v, "mA r.m.s.")),
    ("phase charge", "phase_charge_nc", "phase_charge", lambda v: format_milli(v, "µC")),
    ("net charge", "net_charge_nc", "net_charge", lambda v: format_milli(v, "µC")),
    ("energy per pulse (500 Ω)", "energy_uj", "energy_per_pulse", lambda v: format_milli(v, "mJ")),
    ("current density", "current_density_ua_cm2", "current_density", lambda v: format_milli(v, "mA/cm² r.m.s.")),
    ("power density", "power_density_uw_cm2", "power_density", lambda v: format_milli(v, "mW/cm²")),
    ("amplitude modulation slope", "mod_amp_slope_ua_s", "mod_amp_slope", lambda v: format_milli(v, "mA/s")),
)
# The envelope's limits (firmware/limits.py; docs/protocol.md lists them too).
_LIMITS = {
    "peak_current": L.AMP_LIMIT_UA,
    "rms_current": L.RMS_LIMIT_UA,
    "phase_charge": L.PHASE_CHARGE_LIMIT_NC,
    "net_charge": 0,
    "energy_per_pulse": L.ENERGY_LIMIT_UJ,
    "current_density": L.CURRENT_DENSITY_LIMIT_UA_CM2,
    "power_density": L.POWER_DENSITY_LIMIT_UW_CM2,
    "mod_amp_slope": L.MOD_AMP_SLOPE_LIMIT_UA_S,
}


def _field_text(name, value):
    for suffix, unit in _FIELD_UNITS:
        if name.endswith(suffix):
            return "%s %s" % (value, unit) if unit != "%" else "%s %%" % value
    return str(value)


def _render_stim(console, reply):
    ch = reply.get("ch")
    setting = dict(reply.get("stim") or {})
    mode = setting.pop("mode", "?")
    waveform = setting.pop("waveform", "?")
    console.print("[bold]Channel %s[/]: %s, %s biphasic" % (ch, escape(str(mode)), escape(str(waveform))))
    if setting:
        grid = Table.grid(padding=(0, 2))
        names = sorted(setting)
        per_row = 3
        for _ in range(per_row):
            grid.add_column(style="dim")
            grid.add_column()
        for first in range(0, len(names), per_row):
            cells = []
            for name in names[first : first + per_row]:
                cells += [escape(name), escape(_field_text(name, setting[name]))]
            grid.add_row(*cells)
        console.print(grid)
    binding = reply.get("binding_limit")
    console.print(
        "Max amplitude: [bold]%s[/] (set by the %s limit)"
        % (format_ma(reply.get("max_amp_ua", 0)), escape(str(binding).replace("_", " ")))
    )
    at_target = reply.get("envelope") or {}
    at_max = reply.get("envelope_at_max")
    table = Table(box=None, pad_edge=False)
    table.add_column("envelope")
    table.add_column("at target %s" % format_ma(at_target.get("peak_ua", 0)), justify="right")
    if at_max is not None:
        table.add_column("at max %s" % format_ma(at_max.get("peak_ua", 0)), justify="right")
    table.add_column("limit", justify="right")
    for label, key, limit_name, show in _FIGURES:
        row = [label, show(at_target.get(key, 0))]
        if at_max is not None:
            row.append(show(at_max.get(key, 0)))
        row.append(show(_LIMITS[limit_name]))
        if limit_name == binding:
            row = ["[bold]%s[/]" % cell for cell in row]
            row[0] += " [bold](binding)[/]"
        table.add_row(*row)
    pps = [str(at_target.get("pulses_per_s", "-"))] + ([str(at_max.get("pulses_per_s", "-"))] if at_max is not None else [])
    table.add_row("pulses in 1 s (at most)", *pps, "")
    lit = ["lit" if at_target.get("indicator") else "off"]
    if at_max is not None:
        lit.append("lit" if at_max.get("indicator") else "off")
    table.add_row("output indicator", *lit, "lit > 10 mA r.m.s. / 10 mJ")
    console.print(table)


TEXT_FILE_MAX_BYTES = 64 * 1024  # a setting or a program is under 1 KB as JSON; this leaves room for whitespace


def read_text_file(source, what, max_bytes=TEXT_FILE_MAX_BYTES):
    """A small text file (or - for stdin) as str, read at most max_bytes (+1 to tell) into memory.

    CliFailure(usage) naming the file and the limit when it cannot be read, is larger than
    max_bytes (a device, /dev/zero, a wrong file), or is not UTF-8 text.
    """
    try:
        if source == "-":
            data = sys.stdin.buffer.read(max_bytes + 1) if hasattr(sys.stdin, "buffer") else sys.stdin.read(max_bytes + 1)
        else:
            with open(source, "rb") as handle:
                data = handle.read(max_bytes + 1)
    except OSError as err:
        raise CliFailure(EXIT_USAGE, "usage", "cannot read %s %s: %s" % (what, source, err.strerror or err))
    if len(data) > max_bytes:
        raise CliFailure(
            EXIT_USAGE, "usage", "%s %s is larger than %s: not what it should be (the limit is %d bytes)"
            % (what, source, _size_text(max_bytes), max_bytes),
        )
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CliFailure(
            EXIT_USAGE, "usage", "%s %s is not UTF-8 text (byte 0x%02x at offset %d): a JSON file is expected"
            % (what, source, data[err.start], err.start),
        )


def _size_text(size):
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor and size % factor == 0:
            return "%d %s" % (size // factor, unit)
    return "%d bytes" % size


def _inline_json(source):
    """--set text meant as JSON itself: an object, or any JSON value that names no file ('[]', '5')."""
    text = source.strip()
    if text.startswith("{"):
        return True
    if source == "-" or os.path.exists(source):
        return False
    try:
        jsondec.decode(text)
    except (jsondec.JsonError, ValueError):
        return False
    return True


def _json_kind(value):
    """'a JSON array', 'a JSON number'...: what a decoded value is, in JSON's words."""
    for kinds, name in (((list,), "array"), ((str,), "string"), ((bool,), "boolean"),
                        ((int, float, jsondec.NonInteger), "number")):
        if isinstance(value, kinds):
            return "a JSON " + name
    return "JSON null" if value is None else "not a JSON object"


def _load_setting(text, ch):
    """A stim object from inline JSON, a file, or - (stdin); CliFailure(usage) when it is not one."""
    source = str(text)
    if _inline_json(source):
        body, where = source, "the --set JSON"
    elif source == "-":
        body, where = read_text_file("-", "the setting on"), "the setting on stdin"
    else:
        try:
            body = read_text_file(source, "the setting file")
        except CliFailure as failure:
            failure.message += " (give a file, - for stdin, or a JSON object)"
            raise
        where = "setting file %s" % source
    try:
        setting = jsondec.decode(body.strip())
    except jsondec.JsonError as err:
        raise CliFailure(EXIT_USAGE, "usage", "%s is not valid JSON: %s" % (where, err))
    if not isinstance(setting, dict):
        raise CliFailure(
            EXIT_USAGE, "usage", '%s must be a JSON object of setting fields, not %s: e.g. '
            '{"mode": "burst", "phase_us": 200} (or a file holding one, or - for stdin)' % (where, _json_kind(setting))
        )
    for name, value in setting.items():
        if isinstance(value, jsondec.NonInteger):
            raise CliFailure(
                EXIT_USAGE, "usage",
                "%s: %s is %s; the device takes whole numbers (µs, Hz, ms, %%, cm²)" % (where, name, value.text),
            )
    try:
        frame.encode_frame(msg.request(msg.MAX_REQUEST_ID, msg.OP_SET_STIM, {"ch": ch, "stim": setting}))
    except ValueError as err:
        raise CliFailure(EXIT_USAGE, "usage", "%s cannot be sent: %s" % (where, err))
    return setting


@cli.command()
@click.argument("ch", type=click.IntRange(min=0))
@click.option("--set", "source", metavar="FILE_OR_JSON",
              help='Apply a setting: a JSON object (\'{"mode": "burst"}\'), a file holding one, or - for stdin. '
                   "Fields left out take their defaults; while RUNNING the channel restarts from zero.")
@click.pass_obj
def stim(settings, ch, source):
    """Show channel CH's stimulation setting, its max amplitude, the limit that sets it,
    and the safety-envelope figures (mA, mA r.m.s., µC, mJ, mA/cm², mW/cm²).

    With --set, validate and apply a new setting first; the device refuses one
    outside the envelope at the channel's target and names the limit."""
    setting = None
    if source is not None:
        try:
            setting = _load_setting(source, ch)
        except CliFailure as failure:
            _fail(settings, failure)

    def action(client):
        _check_channel(client, ch)
        if setting is None:
            reply = client.get_stim(ch)
        else:
            try:
                reply = client.set_stim(ch, setting)
            except DeviceError as err:
                if _is_bad_setting(err):
                    raise _bad_setting(err)
                hint = None
                if err.code == msg.E_ENVELOPE:
                    hint = (
                        "the envelope is checked at channel %d's target amplitude: lower it (tensctl amp %d MA) "
                        "or choose a gentler setting; tensctl stim %d shows the figures" % (ch, ch, ch)
                    )
                raise _device_failure(err, hint)

        def render(console):
            if setting is not None:
                console.print("Setting applied to channel %d." % ch)
            _render_stim(console, reply)

        return reply, render

    _run(settings, action)


CLEAR_WATCH_MS = 300  # device time watched after a clear: a fault whose cause is still there latches again


def _watch_after_clear(client):
    """Status after CLEAR_WATCH_MS of device time (or ~2 s of wall time), or at once on a new FAULT."""
    status = client.status()
    first_ms = status.get("uptime_ms", 0)
    wall_deadline = time.monotonic() + 2.0
    while status.get("state") != "FAULT" and status.get("uptime_ms", 0) - first_ms < CLEAR_WATCH_MS:
        if time.monotonic() > wall_deadline:
            break
        client.poll(WAIT_POLL_S)
        status = client.status()
    return status


@cli.command("clear-fault")
@click.pass_obj
def clear_fault(settings):
    """Clear a latched fault (the device goes to IDLE, never straight back to stimulation).

    Watches the device for a moment afterwards: a fault whose cause is still there
    latches again at once, and that is reported (exit 1), not "Fault cleared"."""

    def action(client):
        reply = client.clear_fault()
        status = _watch_after_clear(client)
        if status.get("state") == "FAULT":
            faults = _faults_text(status) or "?"
            raise CliFailure(
                EXIT_DEVICE_ERROR, "fault_relatched",
                "fault latched again: %s (%s): its cause is still there" % (faults, status.get("fault_msg") or ""),
                details={"faults": status.get("faults") or []},
                hint="find and remove the cause (electrodes, pad sensor, cable), then clear-fault again",
            )
        fields = dict(reply)
        fields["status"] = status
        return fields, lambda console: console.print("Fault cleared: %s" % escape(str(status.get("state"))))

    _run(settings, action)


@cli.command("ports")
@click.option("--all", "show_all", is_flag=True, help="List every serial port, not only pulsewarm boards.")
@click.pass_obj
def list_ports_command(settings, show_all):
    """List serial ports that look like a pulsewarm board (USB VID:PID 2E8A:0005)."""
    found = ports.all_ports() if show_all else ports.find_boards()
    if settings.as_json:
        _emit_json({"ok": True, "ports": [info.as_dict() for info in found]})
        return
    console = _console()
    if not found:
        what = "serial ports" if show_all else "pulsewarm boards (USB VID:PID 2E8A:0005)"
        console.print("No %s found. Try the simulator: tensctl --port sim status" % what)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("device", "VID:PID", "serial number", "description", "board"):
        table.add_column(column)
    for info in found:
        table.add_row(
            escape(info.device),
            info.vid_pid or "-",
            escape(info.serial_number or "-"),
            escape(info.description or "-"),
            "yes" if info.is_board else "",
        )
    console.print(table)


from host import cli_records  # noqa: E402,F401  (programs, run, log, pain, report, pin: registered on import)
from host import cli_deploy  # noqa: E402,F401  (deploy: registered on import)


def main(args=None):
    """Console-script entry point (`tensctl`)."""
    cli.main(args=args, prog_name="tensctl")


if __name__ == "__main__":
    # python -m host.cli runs this file as __main__, a second copy of the module: the commands of
    # cli_records and cli_deploy are registered on the imported host.cli, so run that one
    from host.cli import main as tensctl_main

    tensctl_main()
