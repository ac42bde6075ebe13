"""`tensctl deploy`: build the firmware and copy what changed to a board (host/deploy.py).

Registered on the tensctl group by importing this module (host/cli.py does, as for
cli_records). Progress goes to stderr as it happens; stdout gets the summary, or with
--json exactly one JSON document.
"""

import os
import sys

import click
from rich.markup import escape
from rich.table import Table

from host import deploy as dep
from host import ports
from host.cli import EXIT_USAGE, CliFailure, _console, _emit_json, _fail, _pick_port, ask_pin, cli
from host.transport import parse_sim_url


def _find_board():
    boards = ports.find_boards()
    return boards[0].device if len(boards) == 1 else None


def _render_dry_run(console, report):
    console.print("Dry run: nothing was sent to the board.")
    table = Table(box=None, pad_edge=False)
    for column in ("board path", "bytes", "sha256", "from"):
        table.add_column(column)
    for local in report.files:
        table.add_row(escape(local.board_path), str(local.size), local.sha256[:16], escape(os.path.relpath(local.local_path)))
    console.print(table)
    console.print("%d files, %d bytes. Each is copied only if the board's sha256 differs (known once the board lists "
                  "its files); files under /firmware the build does not have are removed." % (
                      len(report.files), sum(f.size for f in report.files)))
    console.print("Steps:")
    for number, step in enumerate(report.steps, 1):
        console.print("  %d. %s" % (number, escape(step["text"])))


def _render_done(console, report):
    plan = report.plan
    if plan is not None:
        for path in plan.copy:
            console.print("copied   %s" % escape(path.board_path))
        for path in plan.remove:
            console.print("removed  %s" % escape(path))
        console.print("%d copied, %d removed, %d up to date" % (len(plan.copy), len(plan.remove), len(plan.same)))
    after = report.device_after or {}
    console.print("Deployed: %s runs firmware %s in normal mode." % (escape(str(after.get("device_id", "the board"))),
                                                                    escape(str(after.get("fw", "?")))))


@cli.command()
@click.option("--port", "port", metavar="URL",
              help="The board's serial port (overrides tensctl --port). Default: the one board found by USB VID:PID.")
@click.option("--dry-run", is_flag=True, help="Build and print what would be done; nothing is sent to the board.")
@click.option("--dist", "dist_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Build into DIR (default: dist/ in the project, as make firmware).")
@click.pass_obj
def deploy(settings, port, dry_run, dist_dir):
    """Build the firmware and copy what changed to a board with mpremote, then reset it.

    \b
    1. make firmware: .mpy for armv6m (main.py stays source) into dist/
    2. ask the board for maintenance mode over the protocol (IDLE only; the
       clinician PIN in patient mode): it reboots without its watchdog, with
       Ctrl-C on, so mpremote can reach its REPL
    3. compare sha256 on the board, copy what differs (main.py last), remove
       files under /firmware that the build does not have
    4. check every file again, hard-reset the board into normal mode and wait
       until it answers
    A board that cannot be reached over the protocol: hold STOP while
    plugging it in (maintenance mode), then deploy."""
    port = port or settings.port
    if port and parse_sim_url(port) is not None:
        _fail(settings, CliFailure(EXIT_USAGE, "usage", "deploy needs a board on a serial port, not the simulator (%s)" % port))
    root = dep.project_root()
    dist_dir = os.path.abspath(dist_dir or os.path.join(root, "dist"))

    def progress(text):
        if not settings.as_json:
            click.echo(text, err=True)

    try:
        if dry_run:
            report = dep.dry_run(port, root, dist_dir)
        else:
            found_by_usb = not port
            if not port:
                port = _pick_port(settings)  # exits 3 when there is no board, or several
            while True:
                protocol = dep.Protocol(port, pin=settings.pin, find_port=_find_board if found_by_usb else None)
                try:
                    report = dep.deploy(port, root, dist_dir, protocol, dep.Mpremote(port), progress=progress)
                    break
                except dep.DeployError as err:
                    # patient mode: ask for the PIN once (the refused request changed nothing), then again
                    if err.kind != "locked" or settings.pin is not None or settings.as_json or not sys.stdin.isatty():
                        raise
                    settings.pin = ask_pin()
    except CliFailure as failure:
        _fail(settings, failure)
    except dep.DeployError as err:
        _fail(settings, CliFailure(err.exit_code, err.kind, err.message, hint=err.hint))
    if settings.as_json:
        document = {"ok": True}
        document.update(report.as_dict())
        _emit_json(document)
    elif dry_run:
        _render_dry_run(_console(), report)
    else:
        _render_done(_console(), report)
