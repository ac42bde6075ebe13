"""`tensctl` commands for programs, sessions and records: program list/show/validate/upload/
delete, run, log info/fetch/erase, pain, report and pin.

Programs are checked here with the firmware's own parser (firmware/program.py) before
they go to the device, which checks them again on receipt.
"""

import copy
import errno
import json
import os
import re
import stat
import sys
import tempfile
import time

import click
from rich.markup import escape
from rich.table import Table

from firmware import envelope
from firmware import limits as L
from firmware import presets
from firmware.lock import PIN_MAX_DIGITS, PIN_MIN_DIGITS
from firmware.program import parse_program
from firmware.protocols import jsondec
from firmware.protocols import messages as msg
from host.cli import (
    _FIGURES,
    _LIMITS,
    EXIT_DEVICE_ERROR,
    EXIT_USAGE,
    MILLIAMPS,
    CliFailure,
    FiniteFloatRange,
    _check_amp,
    _check_channel,
    _console,
    _emit_json,
    _fail,
    _run,
    cli,
    monitor_session,
    read_text_file,
)
from host.client import DeviceError
from host.units import format_celsius, format_duration_ms, format_ma


def _usage(settings, text):
    _fail(settings, CliFailure(EXIT_USAGE, "usage", text))


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    """object_pairs_hook: the device refuses an object with a key twice, so the host does too."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def load_json_text(text, where, strict_keys=True):
    """JSON text -> value; CliFailure(usage) naming `where` for bad JSON, a duplicated key, or
    nesting too deep for the parser (100 000 '[').

    strict_keys also reads the file as the device would: a duplicated key is refused, and a
    number with a fraction or exponent (60.0, 1e3) stays as written (jsondec.NonInteger), so
    a refusal quotes it as given."""
    try:
        if strict_keys:
            return json.loads(text, object_pairs_hook=_no_duplicates,
                              parse_float=jsondec.NonInteger, parse_constant=jsondec.NonInteger)
        return json.loads(text)
    except _DuplicateKey as err:
        raise CliFailure(EXIT_USAGE, "usage",
                         "%s has the key %s twice in one object: the device refuses duplicated keys" % (where, json.dumps(err.args[0])))
    except RecursionError:
        raise CliFailure(EXIT_USAGE, "usage", "%s is nested too deeply to be a program or a log" % where)
    except ValueError as err:
        raise CliFailure(EXIT_USAGE, "usage", "%s is not JSON: %s" % (where, err))


def _read_program_file(settings, path):
    """A program file as a dict; unreadable or non-JSON files are usage errors naming the place."""
    try:
        return load_json_text(read_text_file(path, "program file"), "program file %s" % path)
    except CliFailure as failure:
        _fail(settings, failure)


def _checked(settings, source, channels=L.CHANNELS, where="program"):
    try:
        return parse_program(source, channels)
    except msg.RequestError as err:
        _usage(settings, "%s refused (%s): %s" % (where, err.code, _limit_named(err.message, source)))


# a prescribed maximum above what the channel's stimulation allows; the firmware's own note on
# the limit (ASCII, its field names) is replaced by the therapist's words and units
_MAX_REFUSED = re.compile(r"^(channels\[(\d+)\]\.max_amp_ua: max_amp_ua \d+ exceeds the limit \d+)( \(.*\))?$")


def _binding_text(setting):
    """'the current density limit, 2.0 mA/cm² r.m.s.': the envelope limit that sets a setting's maximum."""
    name = envelope.binding_limit(setting)
    for label, _key, limit_name, show in _FIGURES:
        if limit_name == name:
            return "the %s limit, %s" % (label, show(_LIMITS[name]))
    return "the %s limit" % name.replace("_", " ")


def _limit_named(text, source):
    """A refused max_amp_ua with the envelope limit behind it named."""
    found = _MAX_REFUSED.match(text)
    if not found:
        return text
    try:
        setting = envelope.parse_setting(source["channels"][int(found.group(2))].get("stim", {}))
    except (LookupError, AttributeError, TypeError, msg.RequestError):
        return text
    area = ", at %d cm²" % setting.area_cm2 if envelope.binding_limit(setting).endswith("_density") else ""
    return "%s (set by %s%s)" % (found.group(1), _binding_text(setting), area)


def _heat_text(program):
    if program.get("heat") is None:
        return "no heat"
    heat = program["heat"]
    if "level" in heat:
        return heat["level"]
    return format_celsius(heat["target_mc"])


def _phases_text(program):
    return ", ".join(
        "%s %s%s" % (phase["name"], format_duration_ms(phase["duration_s"] * 1000),
                     "".join([" +TENS" if phase.get("tens") else "", " +heat" if phase.get("heat") else ""]))
        for phase in program.get("phases", [])
    )


# ---- programs -------------------------------------------------------------------------------


@cli.group()
def program():
    """Therapy programs: built-in presets and the programs stored on the device."""


@program.command("list")
@click.pass_obj
def program_list(settings):
    """List the presets and stored programs with their length, heat and description."""

    def action(client):
        listing = client.programs()
        rows = []
        for source, names in (("preset", listing.get("presets", [])), ("stored", listing.get("stored", []))):
            for name in names:
                rows.append((source, client.program_get(name)["program"]))

        def render(console):
            if listing.get("patient_mode"):
                console.print("Patient mode: only stored (prescribed) programs run.")
            table = Table(box=None, pad_edge=False)
            for title in ("program", "kind", "length", "heat", "description"):
                table.add_column(title)
            for source, item in rows:
                table.add_row(escape(item["name"]), source, format_duration_ms(item["session_s"] * 1000),
                              _heat_text(item), escape(item.get("description", "")))
            console.print(table)

        fields = dict(listing)
        fields["programs"] = [dict(item, kind=source) for source, item in rows]
        return fields, render

    _run(settings, action)


@program.command("show")
@click.argument("name")
@click.pass_obj
def program_show(settings, name):
    """Show one program in full (the JSON the device holds)."""

    def action(client):
        reply = client.program_get(name)
        item = reply["program"]

        def render(console):
            console.print("[bold]%s[/] (%s): %s" % (escape(item["name"]), "preset" if reply.get("preset") else "stored",
                                                   escape(item.get("description", ""))))
            console.print("Timeline: %s" % escape(_phases_text(item)))
            for index, plan in enumerate(item.get("channels", [])):
                console.print("Channel %d: %s, prescribed maximum %s" % (
                    index, escape(json.dumps(plan["stim"], sort_keys=True)), format_ma(plan["max_amp_ua"])))
            console.print("Heat: %s" % _heat_text(item))
            console.print_json(json.dumps(item, sort_keys=True))

        return reply, render

    _run(settings, action)


@program.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--channels", type=click.IntRange(1, L.CHANNELS), default=L.CHANNELS, show_default=True,
              help="Channels of the device it is meant for.")
@click.pass_obj
def program_validate(settings, path, channels):
    """Check a program file against the safety envelope without a device (exit 2 if refused)."""
    checked = _checked(settings, _read_program_file(settings, path), channels, "program file %s" % path)
    if presets.find(checked.name) is not None:
        _usage(settings, "program file %s refused: its name %s is a built-in preset's, and upload refuses that; "
                         "rename it (or upload it with --name NEW)" % (path, checked.name))
    if settings.as_json:
        click.echo(json.dumps({"ok": True, "program": checked.source}, sort_keys=True))
    else:
        click.echo("%s: valid, %s (%s)" % (checked.name, format_duration_ms(checked.session_ms), _phases_text(checked.source)))


def _max_changes(settings, texts, channels, program_name):
    """--max "20" (every channel) or "CH=MA": (µA, the text typed) per channel index.

    A prescribed maximum is never dropped: a channel given twice (CH=MA twice, or MA and CH=MA),
    a channel the program does not have, and any --max for a program without channels are
    usage errors."""
    out = {}
    for text in texts:
        ch_text, sep, ma_text = text.rpartition("=")
        chs = range(channels)
        if sep:
            if not ch_text.isdigit():  # no sign: -1 would name the last channel from the end
                _usage(settings, "--max expects MA or CH=MA with CH a channel number from 0, got %r" % text)
            chs = [int(ch_text)]
        if not chs:
            _usage(settings, "--max %s: program %s has no channels, so it has no maximum to prescribe" % (text, program_name))
        amp = MILLIAMPS.convert(ma_text, None, None)
        for ch in chs:
            if ch in out:
                _usage(settings, "--max gives channel %d twice (%s mA and %s mA): give one prescribed maximum per "
                                 "channel; nothing was uploaded" % (ch, out[ch][1], amp[1]))
            out[ch] = amp
    return out


@program.command("upload")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", "preset_name", metavar="NAME", help="Start from a built-in preset instead of a file.")
@click.option("--name", "new_name", metavar="NAME", help="Store it under this name (required with --preset).")
@click.option("--max", "maxima", multiple=True, metavar="[CH=]MA",
              help="Prescribed maximum amplitude, for every channel or one (repeatable, each channel once).")
@click.pass_obj
def program_upload(settings, path, preset_name, new_name, maxima):
    """Upload a program (clinician): from a JSON file, or a preset with a prescribed maximum.

    \b
    tensctl program upload my-program.json
    tensctl program upload --preset heat-then-tens --name rx-back --max 25"""
    if (path is None) == (preset_name is None):
        _usage(settings, "give a program file or --preset NAME (one of them)")
    if path is not None:
        source = _read_program_file(settings, path)
    else:
        source = presets.find(preset_name)
        if source is None:
            _usage(settings, "no preset named %s; presets: %s" % (preset_name, ", ".join(presets.names())))
        if not new_name:
            _usage(settings, "--preset needs --name: a stored program may not take a preset's name")
    source = copy.deepcopy(source)  # a copy to change
    if new_name:
        source["name"] = new_name
    if not isinstance(source, dict):
        _usage(settings, "a program file holds one JSON object")
    checked = _checked(settings, source, where="program")
    for ch, (amp_ua, text) in _max_changes(settings, maxima, len(checked.channels), checked.name).items():
        if ch >= len(checked.channels):
            _usage(settings, "--max for channel %d: program %s has %d channel(s)" % (ch, checked.name, len(checked.channels)))
        setting = checked.channels[ch].setting
        top_ua = envelope.max_amp_ua(setting)
        if amp_ua > top_ua:
            _usage(settings, "--max %s mA for channel %d exceeds the limit %s, the most its stimulation allows "
                             "(set by %s)" % (text, ch, format_ma(top_ua), _binding_text(setting)))
        checked.source["channels"][ch]["max_amp_ua"] = amp_ua
    final = _checked(settings, checked.source, where="program")

    def action(client):
        _checked(settings, final.source, client.device.get("channels", L.CHANNELS), "program for this device")
        reply = client.program_put(final.source)
        return reply, lambda console: console.print(
            "Stored program [bold]%s[/] (%s); %d program(s) on the device"
            % (escape(reply["name"]), format_duration_ms(reply["session_s"] * 1000), reply["stored"]))

    _run(settings, action)


@program.command("delete")
@click.argument("name")
@click.pass_obj
def program_delete(settings, name):
    """Delete a stored program (clinician)."""

    def action(client):
        try:
            reply = client.program_delete(name)
        except DeviceError as err:
            if err.code == msg.E_NOT_FOUND and presets.find(name) is not None:
                raise CliFailure(EXIT_DEVICE_ERROR, "device_error",
                                 "%s is a built-in preset: presets cannot be deleted, only stored programs" % name,
                                 err.code, hint="tensctl program list shows the stored programs")
            raise
        return reply, lambda console: console.print("Deleted %s; %d program(s) left" % (escape(name), reply["stored"]))

    _run(settings, action)


# ---- run ------------------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--amp", "amps", multiple=True, type=MILLIAMPS, metavar="MA",
              help="Starting amplitude per channel, in order (repeat: --amp 10 --amp 12). Default: the program's.")
@click.option("--lease", "lease_s", type=click.IntRange(1, 30), default=5, show_default=True,
              help="The session pauses unless this host is heard from this often (the live view keeps it).")
@click.option("--every", "every_ms", type=click.IntRange(50, 60000), default=200, show_default=True,
              help="Telemetry interval of the live view in ms.")
@click.option("--duration", "duration_s", type=FiniteFloatRange(min=0.1), default=None,
              help="Leave the live view after this many seconds (the session goes on until its lease runs out).")
@click.pass_obj
def run(settings, name, amps, lease_s, every_ms, duration_s):
    """Start program NAME and watch it live (keys as in monitor; Ctrl-C stops it, ramping down)."""

    def start(client):  # on the live view's own connection: the lease is held from the start on
        targets = None
        if amps:
            for ch, (amp_ua, text) in enumerate(amps):  # checked here, as start does: exit 2, nothing started
                _check_channel(client, ch)
                _check_amp(client, amp_ua, text)
            targets = [amp[0] for amp in amps]
        reply = client.start_program(name, targets, lease_s * 1000)
        if settings.as_json:
            _emit_json(dict(reply, ok=True, port=client.transport.url))
        else:
            _console().print("Started program [bold]%s[/]" % escape(name))

    monitor_session(settings, every_ms, duration_s, 30.0, first=start)


# ---- the session log ------------------------------------------------------------------------


@cli.group()
def log():
    """The device's session log: sessions, amplitudes, heat, faults and pain scores."""


@log.command("info")
@click.pass_obj
def log_info(settings):
    """How many records the log holds and how much of its flash it uses."""

    def action(client):
        reply = client.log_info()

        def render(console):
            console.print("Records %s..%s (%d), %d of %d bytes; device clock %s" % (
                reply.get("first_seq"), reply.get("last_seq"), reply.get("records", 0), reply.get("bytes", 0),
                reply.get("capacity_bytes", 0), "set" if reply.get("clock_set") else "not set (no host since boot)"))

        return reply, render

    _run(settings, action)


@log.command("fetch")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default: standard output): replaced whole once the log is fetched, "
                   "through a symlink, keeping its permissions; a FIFO, a device or a read-only file is refused.")
@click.option("--from", "from_seq", type=click.IntRange(min=0), default=1, show_default=True,
              help="First record number to fetch.")
@click.pass_obj
def log_fetch(settings, fmt, output, from_seq):
    """Fetch the session log as JSON or CSV (one row per record)."""
    from host import session_records

    holder = {}

    def action(client):
        holder["records"] = client.log_records(from_seq)
        return {"records": holder["records"]}, lambda console: None

    if settings.as_json and output is None:
        _run(settings, action)  # the JSON document carries the records
        return
    writer = session_records.to_csv if fmt == "csv" else session_records.to_json
    if output is None:
        _run(settings, action, emit=False)
        writer(holder["records"], sys.stdout)
        return
    # the file is written next to its final place first: a path that cannot be written fails here,
    # before anything is fetched, and the old file stays whole until the new one is complete
    handle, temp_path, real_path = _open_beside(settings, output)
    try:
        try:
            _run(settings, action, emit=False)
        except SystemExit:
            handle.close()
            os.unlink(temp_path)
            raise
        records = holder["records"]
        try:
            with handle:
                writer(records, handle)
            os.replace(temp_path, real_path)  # a symlink at output stays one, to the new file
        except OSError as err:
            _rescue_failure(settings, records, "cannot write %s: %s" % (output, err.strerror or err))
    finally:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
    if settings.as_json:
        click.echo(json.dumps({"ok": True, "output": output, "records": len(records)}, sort_keys=True))
    else:
        click.echo("Wrote %d records to %s" % (len(records), output), err=True)


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _file_kind(mode):
    """What a non-regular file is, in words for the error message."""
    for test, kind in _FILE_KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def _new_file_mode():
    """The permission bits open() gives a new file: 0666 minus the umask (read only by setting it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _output_target(output):
    """(the real path to write, symlinks followed; the permission bits it ends with).

    The new content is renamed over the real path, so what stands there is checked first:
    CliFailure(usage) naming output when it is not a regular file (a FIFO, a device, a folder)
    or is read-only; an existing file keeps its permission bits."""
    real_path = os.path.realpath(output)
    shown = output if real_path == os.path.abspath(output) else "%s (-> %s)" % (output, real_path)
    try:
        mode = os.stat(real_path).st_mode
    except FileNotFoundError:
        return real_path, _new_file_mode()
    except OSError as err:
        raise CliFailure(EXIT_USAGE, "usage", "cannot write %s: %s (nothing was fetched)" % (shown, err.strerror or err))
    if not stat.S_ISREG(mode):
        raise CliFailure(EXIT_USAGE, "usage", "cannot write %s: it is %s, not a regular file; give a file path "
                                              "(nothing was fetched)" % (shown, _file_kind(mode)))
    if not mode & 0o222 or not os.access(real_path, os.W_OK):
        raise CliFailure(EXIT_USAGE, "usage", "cannot write %s: it is read-only (mode %04o); nothing was fetched"
                                              % (shown, stat.S_IMODE(mode)))
    return real_path, stat.S_IMODE(mode)


def _open_beside(settings, output):
    """(a new temporary text file beside output's real path, its path, the real path): the file
    is renamed over the real path once complete. Usage error naming output if impossible."""
    try:
        real_path, mode = _output_target(output)
    except CliFailure as failure:
        _fail(settings, failure)
    folder = os.path.dirname(real_path)
    try:
        fd, temp_path = tempfile.mkstemp(prefix=".tensctl-", suffix=".part", dir=folder)
    except OSError as err:
        _usage(settings, "cannot write %s: %s (nothing was fetched)" % (output, _cannot_create_text(folder, err)))
    try:
        os.chmod(temp_path, mode)
    except OSError:
        pass  # the file system keeps its own modes (a FAT stick): the log is written all the same
    return os.fdopen(fd, "w", encoding="utf-8", newline=""), temp_path, real_path


def _cannot_create_text(folder, err):
    """Why no file can be made in folder: ENOENT for an existing folder means it takes no new files (/proc)."""
    if err.errno == errno.ENOENT and os.path.isdir(folder):
        return "its folder %s does not let new files be made there (the file is written beside its " \
               "final place, then renamed)" % folder
    return "cannot make a file in %s: %s" % (folder, err.strerror or err)


def _rescue_failure(settings, records, text):
    """Writing failed after the records were fetched: keep them in a file in the temp folder, say where."""
    from host import session_records

    try:
        fd, rescue = tempfile.mkstemp(prefix="tensctl-log-%d-" % int(time.time()), suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            session_records.to_json(records, handle)
        kept = "the %d fetched records are kept in %s" % (len(records), rescue)
    except OSError as err:
        kept = "the fetched records could not be kept either (%s)" % (err.strerror or err)
    _fail(settings, CliFailure(EXIT_USAGE, "usage", "%s; %s" % (text, kept)))


@log.command("erase")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (required with --json).")
@click.pass_obj
def log_erase(settings, yes):
    """Erase the session log (clinician). Fetch it first: erased records are gone."""
    if not yes:
        if settings.as_json:  # no prompt to answer: erasing needs the --yes said up front
            _usage(settings, "log erase erases every record of the session log: add --yes to confirm it "
                             "(--json asks nothing); nothing was erased")
        click.confirm("Erase every record of the session log?", abort=True)

    def action(client):
        reply = client.log_erase()
        return reply, lambda console: console.print("Session log erased; records continue from %s" % reply.get("last_seq"))

    _run(settings, action)


class PainScore(click.ParamType):
    """A whole number 0..10."""

    name = "SCORE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if not text.isdigit() or int(text) > 10:
            self.fail("%r: a pain score is a whole number from 0 (none) to 10 (worst imaginable)" % (value,), param, ctx)
        return int(text)


@cli.command(context_settings={"ignore_unknown_options": True})  # `pain -1`: a bad score, not an option
@click.argument("score", type=PainScore())
@click.option("--before", is_flag=True, help="Before the session.")
@click.option("--after", is_flag=True, help="After the session.")
@click.pass_obj
def pain(settings, score, before, after):
    """Record a pain score, 0 (none) to 10 (worst imaginable), before or after a session
    (--before or --after, exactly one)."""
    if before and after:
        _usage(settings, "--before and --after exclude each other: a score is either before or after the session")
    if not before and not after:
        _usage(settings, "say --before or --after the session")
    when = "before" if before else "after"

    def action(client):
        reply = client.pain(score, when)
        return reply, lambda console: console.print("Pain %d/10 %s the session recorded (#%d)" % (score, when, reply["seq"]))

    _run(settings, action)


@cli.command()
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Folder for index.html and the plots.")
@click.option("--input", "input_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Build from a log saved by `tensctl log fetch` (JSON) instead of the device.")
@click.option("--title", default=None, help="Title of the report (e.g. the patient's initials).")
@click.pass_obj
def report(settings, out_dir, input_path, title):
    """Write an HTML report with plots: sessions and minutes per week, amplitude, pain, faults."""
    from host import report as report_module

    if input_path is not None:
        try:
            records = load_json_text(read_text_file(input_path, "log file", REPORT_INPUT_MAX_BYTES),
                                     "log file %s" % input_path, strict_keys=False)
        except CliFailure as failure:
            _fail(settings, failure)
        if isinstance(records, dict):
            records = records.get("records")
        if not isinstance(records, list):
            _usage(settings, "%s holds no list of records" % input_path)
        _check_out_dir(settings, out_dir)
        try:
            path = report_module.write_report(records, out_dir, title=title)
        except OSError as err:
            _usage(settings, "cannot write the report to %s: %s" % (out_dir, err.strerror or err))
        _emit_done(settings, path, len(records))
        return
    _check_out_dir(settings, out_dir)  # before fetching: a folder that cannot be written fails now
    holder = {}

    def action(client):
        holder["records"] = client.log_records(1)
        return {}, lambda console: None

    _run(settings, action, emit=False)
    records = holder["records"]
    try:
        path = report_module.write_report(records, out_dir, title=title)
    except OSError as err:
        _rescue_failure(settings, records, "cannot write the report to %s: %s" % (out_dir, err.strerror or err))
    _emit_done(settings, path, len(records))


REPORT_INPUT_MAX_BYTES = 256 * 1024 * 1024  # a saved log; read no more than this into memory


def _check_out_dir(settings, out_dir):
    """Create the report folder and prove a file can be written in it; usage error naming it if not."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tensctl-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        _usage(settings, "cannot write the report to %s: %s (nothing was fetched)" % (out_dir, err.strerror or err))


def _emit_done(settings, path, count):
    if settings.as_json:
        click.echo(json.dumps({"ok": True, "report": str(path), "records": count}, sort_keys=True))
    else:
        click.echo("Report: %s (%d records)" % (path, count))


# ---- the clinician PIN ----------------------------------------------------------------------


@cli.group()
def pin():
    """The clinician PIN: with one set the device is in patient mode."""


@pin.command("status")
@click.pass_obj
def pin_status(settings):
    """Whether a PIN is set, and any wait after wrong PINs."""

    def action(client):
        reply = client.pin_status()
        return reply, lambda console: console.print(
            "Patient mode (PIN set)" if reply.get("pin_set") else "Open (no PIN): every request allowed",
            "" if not reply.get("wait_s") else "; wrong PINs: wait %d s" % reply["wait_s"])

    _run(settings, action)


@pin.command("set")
@click.option("--new", "new_pin", default=None, metavar="PIN", help="The new PIN (4-8 digits); asked for when left out.")
@click.pass_obj
def pin_set(settings, new_pin):
    """Set or change the clinician PIN (changing needs the current one: --pin or TENSCTL_PIN)."""
    where = "--new"
    if new_pin is None:
        if settings.as_json or not sys.stdin.isatty():
            _usage(settings, "give --new PIN (no terminal to ask on)")
        new_pin = click.prompt("New clinician PIN (4-8 digits)", hide_input=True, confirmation_prompt=True)
        where = "the new PIN"
    if not (PIN_MIN_DIGITS <= len(new_pin) <= PIN_MAX_DIGITS and new_pin.isascii() and new_pin.isdigit()):
        _usage(settings, "%s must be %d to %d digits (0-9); the PIN was not changed" % (where, PIN_MIN_DIGITS, PIN_MAX_DIGITS))

    def action(client):
        reply = client.pin_set(new_pin)
        return reply, lambda console: console.print("Clinician PIN set: the device is in patient mode")

    _run(settings, action)


@pin.command("remove")
@click.pass_obj
def pin_remove(settings):
    """Remove the PIN (needs it): the device is open again."""

    def action(client):
        reply = client.pin_remove()
        return reply, lambda console: console.print("Clinician PIN removed: the device is open")

    _run(settings, action)
