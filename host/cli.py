"""`tensctl`: talk to a pulsewarm device (a board on USB, or the simulator).

Amplitudes are typed and shown in mA and sent to the device as integer µA.
`--json` prints exactly one JSON document on stdout, for success and failure
alike (integer units there: amp_ua, uptime_ms). With `--port sim` every
invocation starts its own embedded simulator, so nothing carries over from one
tensctl command to the next; serve one with `tens-sim serve` to keep state.

Exit codes:
  0  ok
  1  the device replied with an error (e.g. start while a fault is latched)
  2  usage error (unknown option, bad amplitude, amplitude over the device limit)
  3  cannot open the port, lost the port, or no device found
  4  no response from the device, or it speaks another protocol version
"""

import json
import sys
from contextlib import contextmanager

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from firmware.protocols import messages as msg
from host import ports
from host.client import DEFAULT_TIMEOUT_S, Client, DeviceError, NoResponse, ProtocolError, VersionMismatch
from host.transport import TransportError, open_port
from host.units import AmpParseError, format_ma, parse_ma

EXIT_OK = 0
EXIT_DEVICE_ERROR = 1
EXIT_USAGE = 2
EXIT_PORT = 3
EXIT_NO_RESPONSE = 4

EPILOG = """\b
Exit codes:
  0  ok
  1  the device replied with an error
  2  usage error (bad option, bad amplitude, over the device limit)
  3  cannot open the port, lost it, or no device found
  4  no response from the device, or protocol version mismatch

\b
Ports: a device path (/dev/ttyACM0, COM3), socket://HOST:PORT
(tens-sim serve --listen), or sim (an embedded simulator per invocation;
sim:micropython runs it in the MicroPython VM)."""


class CliFailure(Exception):
    """Ends a command with a message, an exit code and a stable kind for --json."""

    def __init__(self, exit_code, kind, message, code=None):
        Exception.__init__(self, message)
        self.exit_code = exit_code
        self.kind = kind
        self.message = message
        self.code = code


class Settings:
    def __init__(self, port, as_json, timeout_s):
        self.port = port
        self.as_json = as_json
        self.timeout_s = timeout_s


# ---- output -----------------------------------------------------------------------


def _console():
    """Made per command so it writes to whatever sys.stdout is now (CliRunner swaps it)."""
    return Console(highlight=False, soft_wrap=True)


def _emit_json(document):
    click.echo(json.dumps(document, sort_keys=True))


def _fail(settings_or_json, failure):
    as_json = settings_or_json.as_json if isinstance(settings_or_json, Settings) else bool(settings_or_json)
    if as_json:
        error = {"kind": failure.kind, "message": failure.message}
        if failure.code is not None:
            error["code"] = failure.code
        _emit_json({"ok": False, "exit_code": failure.exit_code, "error": error})
    click.echo("Error: %s" % failure.message, err=True)
    sys.exit(failure.exit_code)


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
def _session(settings):
    """An open port with a client that has already said hello (version checked)."""
    url = _pick_port(settings)
    try:
        transport = open_port(url)
    except TransportError as err:
        raise CliFailure(EXIT_PORT, "port", err.message)
    try:
        client = Client(transport, timeout_s=settings.timeout_s)
        client.hello()
        yield client
    finally:
        transport.close()


def _run(settings, action):
    """Run action(client) -> (json fields, render(console)); map failures to exit codes."""
    try:
        with _session(settings) as client:
            fields, render = action(client)
            port = client.transport.url
    except CliFailure as failure:
        _fail(settings, failure)
    except DeviceError as err:
        _fail(settings, CliFailure(EXIT_DEVICE_ERROR, "device_error", str(err), err.code))
    except TransportError as err:
        _fail(settings, CliFailure(EXIT_PORT, "port", err.message))
    except NoResponse as err:
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "no_response", str(err)))
    except VersionMismatch as err:
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "version_mismatch", str(err)))
    except ProtocolError as err:
        _fail(settings, CliFailure(EXIT_NO_RESPONSE, "protocol", str(err)))
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
        try:
            return parse_ma(value), str(value).strip()
        except AmpParseError as err:
            self.fail(str(err), param, ctx)


MILLIAMPS = MilliAmps()


class TensctlGroup(click.Group):
    """Keeps `--json` true to its word for usage errors too: one JSON document on stdout."""

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
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(name="tensctl", cls=TensctlGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--port",
    envvar="TENSCTL_PORT",
    metavar="URL",
    help="Device path, socket://HOST:PORT, or sim. Default: the one board found by USB VID:PID 2E8A:0005.",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.01, max=600),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for each reply; an unanswered request is resent once.",
)
@click.version_option(package_name="pulsewarm", message="tensctl %(version)s, protocol " + msg.PROTO_VERSION)
@click.pass_context
def cli(ctx, port, as_json, timeout):
    """Control a pulsewarm TENS + heat device over USB serial, a socket, or the simulator."""
    ctx.obj = Settings(port, as_json, timeout)


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
            table.add_row("Tick", "%s ms" % device.get("tick_ms"))
            table.add_row("Port", escape(client.port_name))
            console.print(table)

        return dict(device), render

    _run(settings, action)


_STATE_STYLE = {"IDLE": "cyan", "RUNNING": "green", "FAULT": "bold red"}


def _render_status(console, status):
    state = str(status.get("state"))
    line = "[%s]%s[/]" % (_STATE_STYLE.get(state, "bold"), escape(state))
    faults = status.get("faults") or []
    if faults:
        line += "  faults: [red]%s[/]" % escape(", ".join(faults))
        if status.get("fault_msg"):
            line += " (%s)" % escape(str(status["fault_msg"]))
    else:
        line += "  faults: none"
    uptime_ms = int(status.get("uptime_ms", 0))
    line += "  uptime: %d.%03d s" % (uptime_ms // 1000, uptime_ms % 1000)
    console.print(line)
    table = Table(box=None, pad_edge=False)
    table.add_column("ch", justify="right")
    table.add_column("amplitude", justify="right")
    table.add_column("target", justify="right")
    table.add_column("measured", justify="right")
    for index, channel in enumerate(status.get("ch") or []):
        table.add_row(
            str(index),
            format_ma(channel.get("amp_ua", 0)),
            format_ma(channel.get("target_ua", 0)),
            format_ma(channel.get("delivered_ua", 0)),
        )
    console.print(table)


@cli.command()
@click.pass_obj
def status(settings):
    """State, faults, uptime and per-channel amplitude, target and measured current."""

    def action(client):
        reply = client.status()
        return reply, lambda console: _render_status(console, reply)

    _run(settings, action)


@cli.command()
@click.option("--amp", "amp", type=MILLIAMPS, metavar="MA", help="Target amplitude in mA, e.g. 12.5 (ramps up from zero).")
@click.option("--ch", type=click.IntRange(min=0), default=0, show_default=True, help="Channel the --amp applies to.")
@click.option("--minutes", type=click.IntRange(1, 60), default=None, help="Session length; the device stops by itself after it (default 30).")
@click.option("--lease", "lease_s", type=click.IntRange(0, 30), default=0, show_default=True,
              help="Keepalive lease in seconds: pause unless a request arrives this often. 0: the session runs on the device's own timer.")
@click.pass_obj
def start(settings, amp, ch, minutes, lease_s):
    """Start stimulation (always ramps up from zero)."""
    if amp is None and ch != 0:
        _fail(settings, CliFailure(EXIT_USAGE, "usage", "--ch needs --amp (the target for that channel)"))

    def action(client):
        targets = None
        if amp is not None:
            amp_ua, text = amp
            _check_channel(client, ch)
            _check_amp(client, amp_ua, text)
            targets = [0] * (ch + 1)
            if ch > 0:  # keep the other channels' targets as they are
                for index, channel in enumerate(client.status().get("ch", [])[:ch]):
                    targets[index] = channel.get("target_ua", 0)
            targets[ch] = amp_ua
        reply = client.start(
            targets, lease_ms=lease_s * 1000, session_ms=minutes * 60000 if minutes else None
        )
        fields = {"state": reply.get("state")}
        if amp is not None:
            fields.update({"ch": ch, "target_ua": amp[0]})

        def render(console):
            text = "Started: [green]%s[/]" % escape(str(reply.get("state")))
            if amp is not None:
                text += ", channel %d target %s (ramps up from zero)" % (ch, format_ma(amp[0]))
            console.print(text)

        return fields, render

    _run(settings, action)


@cli.command()
@click.pass_obj
def stop(settings):
    """Stop stimulation: the device ramps every output down to zero, then goes IDLE."""

    def action(client):
        reply = client.stop()
        return reply, lambda console: console.print(
            "Stopping: %s (%s)" % (escape(str(reply.get("state"))), "ramping down" if reply.get("stopping") else "outputs off")
        )

    _run(settings, action)


@cli.command()
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


@cli.command("clear-fault")
@click.pass_obj
def clear_fault(settings):
    """Clear a latched fault (the device goes to IDLE, never straight back to stimulation)."""

    def action(client):
        reply = client.clear_fault()
        return reply, lambda console: console.print("Fault cleared: %s" % escape(str(reply.get("state"))))

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


def main(args=None):
    """Console-script entry point (`tensctl`)."""
    cli.main(args=args, prog_name="tensctl")


if __name__ == "__main__":
    main()
