"""`tens-sim`: serve simulated devices, inject faults into them, run scenarios, list faults."""

import json
import os
import signal
import sys
import time

import click

from sim import control, faults, launcher, runner
from sim.clock import NEAR_WRAP_MS
from sim.scenario import ScenarioError

RUNTIME = click.Choice(launcher.RUNTIMES)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Simulated pulsewarm device for the desktop and CI."""


def _speed_option(_ctx, _param, value):
    """--speed checked once, where it is parsed: finite, and 0 or inside the range the VM can pace."""
    try:
        return launcher.check_speed(value)
    except launcher.SimError as err:
        raise click.UsageError(str(err))


@cli.command()
@click.option("--listen", metavar="HOST:PORT",
              help="Serve on a TCP socket (open it as socket://HOST:PORT); with --devices N, "
                   "on PORT, PORT+1, ... PORT+N-1 (port 0: a free port each).")
@click.option("--pty", "use_pty", is_flag=True,
              help="Serve on a pseudo-terminal (one per device) and print its path (the default).")
@click.option("--devices", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Serve N independent devices: ids pulsewarm-sim-0..N-1, seeds SEED..SEED+N-1, "
                   "each on its own pty or port; one URL per line on stdout.")
@click.option("--speed", type=float, default=1.0, show_default=True, callback=_speed_option,
              help="Simulated seconds per wall second, %g to %g; 0 = as fast as possible."
                   % (launcher.SPEED_MIN, launcher.SPEED_MAX))
@click.option("--runtime", type=RUNTIME, default="cpython", show_default=True)
@click.option("--seed", type=click.IntRange(0, launcher.SEED_MAX), default=1, show_default=True,
              help="Noise seed (device i: SEED+i).")
@click.option("--start-ms", type=click.IntRange(0, (1 << 30) - 1), default=0,
              help="Start value of the 2^30 ms tick counter (every device).")
@click.option("--near-wrap", is_flag=True, help="Start the tick counter 5 s before its 2^30 ms wrap.")
@click.option("--device-id", default=None,
              help="Device id, 1 to %d printable ASCII characters without spaces [default: pulsewarm-sim-0; "
                   "with --devices N: ID-0..ID-(N-1), pulsewarm-sim-0..N-1 without --device-id]."
                   % launcher.DEVICE_ID_MAX_CHARS)
@click.option("--control", "control_at", metavar="HOST:PORT", default="127.0.0.1:0", show_default=True,
              help="Control socket for `tens-sim inject` (device i: PORT+i; port 0: a free port each).")
def serve(listen, use_pty, devices, speed, runtime, seed, start_ms, near_wrap, device_id, control_at):
    """Run simulated devices until interrupted (Ctrl-C or SIGTERM stops them all).

    Prints each device's URL on stdout, one a line, and on stderr its id,
    URL and control address. While it runs, `tens-sim inject NAME --port URL`
    injects and clears faults (see `tens-sim faults`).
    """
    if listen is not None and use_pty:
        raise click.UsageError("choose --listen or --pty, not both")
    start = NEAR_WRAP_MS if near_wrap else start_ms
    stop = _stop_once()
    signal.signal(signal.SIGTERM, stop)  # stops the devices already started, too
    signal.signal(signal.SIGINT, stop)
    try:
        servers = launcher.start_servers(
            devices, runtime=runtime, speed=speed, pty=listen is None, listen=listen, seed=seed,
            start_ms=start, device_id=device_id, control=control_at, register=True,
        )
    except launcher.OptionError as err:
        raise click.UsageError(str(err))
    except launcher.SimError as err:
        raise click.ClickException(str(err))
    try:
        for server in servers:
            click.echo(server.url)
        sys.stdout.flush()
        for index, server in enumerate(servers):
            click.echo(
                "%s  %s  control %s  seed %d" % (server.device_id, server.url, server.control_address, seed + index),
                err=True,
            )
        click.echo(
            "serving %d device%s (%s runtime, speed %s, clock from %d ms); Ctrl-C stops; "
            "faults: tens-sim inject NAME --port URL"
            % (len(servers), "" if len(servers) == 1 else "s", runtime, speed or "max", start),
            err=True,
        )
        while True:
            stopped = [server for server in servers if not server.alive()]
            if stopped:
                raise click.ClickException(stopped[0].stopped_message())
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        launcher.close_servers(servers)


def _end_runs(signum, _frame):
    """`run`'s SIGTERM and SIGINT handler: the runs in VMs and worker processes end with it (a
    SIGTERM used to end only this process, and they ran on, writing their traces); then SIGTERM
    exits with status 143, SIGINT as Ctrl-C does."""
    _ignore_further_signals()
    runner.stop_children()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def _stop_once():
    """The SIGTERM and SIGINT handler of `serve`. The first signal stops it (SIGTERM: exit status 0;
    SIGINT: KeyboardInterrupt, as Ctrl-C); later ones are ignored, so closing the devices runs to its
    end. `timeout` signals the process and then its process group, and Ctrl-C gets pressed twice: the
    second signal used to interrupt the close, and serve exited before every device was stopped and
    had left the registry."""
    stopping = []

    def stop(signum, _frame):
        if stopping:  # a signal that came before the lines below took effect: already stopping
            return
        stopping.append(signum)  # first: a signal handled while this one runs returns above
        _ignore_further_signals()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        sys.exit(0)

    return stop


def _ignore_further_signals():
    """Once stopping: SIGTERM and SIGINT are ignored from now on, through the interpreter's exit.
    A signal that arrived just before that is dropped by CPython with an "OSError: Signal N
    ignored due to race condition" traceback on stderr: here that is the intended outcome, so it
    is not printed; any other unraisable error still is."""
    hook = sys.unraisablehook

    def quiet(unraisable):
        value = unraisable.exc_value
        if isinstance(value, OSError) and "ignored due to race condition" in str(value):
            return
        hook(unraisable)

    sys.unraisablehook = quiet
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--clear", is_flag=True, help="Clear the named faults instead of injecting them.")
@click.option("--clear-all", is_flag=True, help="Clear every injected fault.")
@click.option("--port", "-p", envvar="TENSCTL_PORT", metavar="URL",
              help="The served device: its URL as `tens-sim serve` printed it (looked up in the control "
                   "registry), or its control address HOST:PORT as the registry has it. Default: $TENSCTL_PORT, "
                   "else the only device served on this machine.")
@click.option("--control", "control_address", metavar="HOST:PORT",
              help="The device's control socket (printed by `tens-sim serve`), instead of --port.")
@click.option("--json", "as_json", is_flag=True, help="Print the device's last reply as JSON.")
@click.pass_context
def inject(ctx, names, clear, clear_all, port, control_address, as_json):
    """Inject faults NAME... into a device `tens-sim serve` runs (--clear: clear them).

    Without NAME (and without --clear-all) it shows the faults injected now.
    The names are those of `tens-sim faults`, e.g. electrode_off:0,
    thermistor_open. A fault stays until cleared; what the firmware latched
    stays latched until the host clears it (tensctl clear-fault).
    """
    if clear and clear_all:
        raise click.UsageError("--clear and --clear-all cannot be combined: --clear NAME... clears those, "
                               "--clear-all clears every fault")
    if clear and not names:
        raise click.UsageError("--clear needs the NAMEs to clear (or use --clear-all)")
    if clear_all and names:
        raise click.UsageError("--clear-all takes no NAME")
    repeated = sorted(set(name for name in names if names.count(name) > 1))
    if repeated:
        raise click.BadParameter("%s given more than once; name each fault once" % ", ".join(repeated),
                                 param_hint="NAME")
    if control_address is not None and port is not None:
        if ctx.get_parameter_source("port") != click.core.ParameterSource.ENVIRONMENT:
            raise click.UsageError("give --port URL or --control HOST:PORT, not both")
        port = None  # --control chooses the device; $TENSCTL_PORT is for tensctl
    if port == "":
        raise click.BadParameter("the URL is empty; give the URL `tens-sim serve` printed", param_hint="--port")
    try:
        address, where = _control_endpoint(port, control_address)
        reply = _control_request(address, {"list": True})
        known = [fault["name"] for fault in reply.get("faults", [])]
        inactive = [name for name in names if clear and name not in (reply.get("active") or [])]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise click.BadParameter(
                "unknown fault %r; known: %s" % (unknown[0], ", ".join(known)), param_hint="NAME"
            )
        if clear_all:
            reply = _control_request(address, {"clear_all": True})
        for name in names:
            reply = _control_request(address, {"clear" if clear else "inject": name})
    except control.ControlError as err:
        raise click.ClickException(str(err))
    if as_json:
        reply.pop("faults", None)
        click.echo(json.dumps(reply, sort_keys=True))
        return
    done = ""
    if clear_all:
        done = "cleared every fault; "
    elif names:
        done = _inject_done(names, clear, inactive)
    click.echo(
        "%s (%s): %sactive faults: %s"
        % (reply.get("device_id"), reply.get("url", where), done, ", ".join(reply.get("active") or []) or "none")
    )


def _inject_done(names, clear, inactive):
    """What inject did, for its summary line: a clear of a fault that was not active changed nothing."""
    if not clear:
        return "injected %s; " % ", ".join(names)
    cleared = [name for name in names if name not in inactive]
    done = "cleared %s; " % ", ".join(cleared) if cleared else ""
    if inactive:
        done += "%s %s not active (nothing to clear); " % (", ".join(inactive), "was" if len(inactive) == 1 else "were")
    return done


def _control_endpoint(port, control_address):
    """(control address, what it was found from) for inject's --port/--control.

    Control requests never go to a served device's serial socket: an address the
    registry knows as one is refused with the right URL and control address."""
    if control_address is not None:
        try:
            control.parse_address(control_address)
        except control.ControlError as err:
            raise click.BadParameter(str(err), param_hint="--control")
        entry, kind = control.find_address(control_address)
        if kind == "serial":
            raise click.BadParameter(
                "%s is the serial socket of %s (%s), not its control socket; use --control %s or --port %s"
                % (control_address, entry.get("device_id"), entry.get("url"), entry.get("control"), entry.get("url")),
                param_hint="--control",
            )
        return control_address, control_address
    if port and "://" not in port and not port.startswith("/") and ":" in port:  # HOST:PORT
        entry, kind = control.find_address(port)
        if kind == "control":
            return port, entry.get("url", port)
        if kind == "serial":
            raise click.BadParameter(
                "%s is the serial socket of %s: use --port %s (its URL) or --control %s (its control address)"
                % (port, entry.get("device_id"), entry.get("url"), entry.get("control")),
                param_hint="--port",
            )
        raise control.ControlError(
            "no served simulated device has the control address %s (registry %s); for a serial socket "
            "use --port socket://%s, for a control socket outside the registry --control %s"
            % (port, control.registry_dir(), port, port)
        )
    entry = control.resolve(port or None)
    return entry["control"], entry["url"]


def _control_request(address, request):
    reply = control.request(address, request)
    if not reply.get("ok"):
        raise control.ControlError("%s: %s" % (reply.get("device_id") or address, reply.get("error") or "refused"))
    return reply


def _path_given(_ctx, param, value):
    """An output path option given as '' names no file: refused rather than ignored."""
    if value == "":
        raise click.BadParameter("the path is empty", param=param)
    return value


class BadScenario(click.ClickException):
    """A scenario file that is not valid: status 2, like bad options (a failed expectation is 1)."""

    exit_code = 2


@cli.command()
@click.argument("scenarios", nargs=-1, required=True, metavar="SCENARIO...", type=click.Path())
@click.option("--trace", "trace_path", type=click.Path(writable=True), callback=_path_given,
              help="Write the trace here (JSON lines, one per 100 ms). With several runs (scenarios, "
                   "folders, runtimes) or a PATH ending in /: a folder, one NAME.RUNTIME[.near-wrap].jsonl per run.")
@click.option("--runtime", "runtimes", type=RUNTIME, multiple=True,
              help="Runtime to run under: cpython (the default) or micropython; give it twice for both.")
@click.option("--check", is_flag=True,
              help="Check each scenario's expectations (its \"expect\" list): a PASS/FAIL line per expectation "
                   "on stdout; exit status 1 if any fails.")
@click.option("--near-wrap", is_flag=True, help="Start the tick counter 5 s before its 2^30 ms wrap.")
@click.option("--seed", type=click.IntRange(0, launcher.SEED_MAX), help="Noise seed instead of the scenario's own.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Runs at once; above 1 each run is its own process (use the machine's cores).")
@click.option("--pulses", "pulses_path", type=click.Path(dir_okay=False, writable=True), callback=_path_given,
              help="Also record every pulse fired here (JSON lines, one per pulse; cpython runtime); "
                   "draw them with `tens-sim plot --waveform`.")
def run(scenarios, trace_path, runtimes, check, near_wrap, seed, jobs, pulses_path):
    """Run SCENARIO... (JSON files or folders of them) as fast as possible.

    \b
    tens-sim run scenario.json --trace out.jsonl
    tens-sim run sim/scenarios --check --runtime cpython --runtime micropython -j 2
    tens-sim run sim/scenarios/fault_thermistor_open.json --check --near-wrap --seed 7

    With --check it prints one PASS/FAIL line per expectation and exits 1 if
    any failed (or a run did not complete); a scenario file that is not valid
    exits 2 before anything runs, so CI can tell the two apart. The same seed
    gives the same trace, byte for byte, under either runtime.
    """
    if trace_path is None and not check:
        raise click.UsageError("give --trace (write the trace), --check (check the expectations), or both")
    runtimes = tuple(runtimes) or ("cpython",)
    try:
        files = runner.scenario_files(scenarios)
        loaded = {}
        for path in files:
            loaded[path] = runner.load(path)  # every file checked before anything runs
    except ScenarioError as err:
        raise BadScenario(str(err))
    count = len(files) * len(runtimes)
    if pulses_path and (count != 1 or not trace_path):
        raise click.UsageError("--pulses records one run: one SCENARIO, one --runtime, and --trace")
    if pulses_path and runtimes != ("cpython",):
        raise click.UsageError("--pulses records on the cpython runtime only (the MicroPython VM has no channel "
                               "for pulses); drop --runtime %s" % runtimes[0])
    trace_dir = _trace_dir(trace_path, count)
    signal.signal(signal.SIGTERM, _end_runs)
    signal.signal(signal.SIGINT, _end_runs)
    jobs_list = runner.plan(files, runtimes, (near_wrap,), seed, trace_dir)
    for job in jobs_list:
        job.normalized = loaded[job.path]
        if trace_path and trace_dir is None:
            job.trace_path = trace_path
    _check_outputs(jobs_list, trace_dir, pulses_path, files)  # before any output file is opened
    if pulses_path:
        job = jobs_list[0]
        started = time.monotonic()
        try:
            from sim import pulses

            normalized = job.scenario()
            lines, pulse_count = pulses.run_scenario(normalized, job.trace_path, pulses_path, job.runtime)
            click.echo("%s: %d pulses" % (pulses_path, pulse_count), err=True)
        except (launcher.SimError, ScenarioError) as err:
            raise click.ClickException(str(err))
        except OSError as err:  # an output that failed mid-run, named
            raise click.ClickException("%s: %s" % (err.filename or pulses_path, err.strerror or err))
        _run_line(job.trace_path, lines, normalized["duration_ms"] / 1000.0, time.monotonic() - started, job.runtime)
        outcomes = []
        if check:
            outcome = runner.Outcome(job)
            with open(job.trace_path) as handle:
                outcome.results = runner.check(normalized, handle)
            outcomes = [outcome]
            for line in outcome.report():
                click.echo(line)
    else:

        def done(outcome):
            if outcome.error is None:
                _run_line(outcome.trace_path or outcome.job.label, outcome.lines, outcome.sim_s, outcome.wall_s,
                          outcome.job.runtime)
            if check or (outcome.error is not None and len(jobs_list) > 1):  # a single run's error: once, below
                for line in outcome.report():
                    click.echo(line)

        started = time.monotonic()
        outcomes = runner.run_jobs(jobs_list, workers=jobs, on_done=done)
        if not check and len(outcomes) == 1 and outcomes[0].error is not None:
            raise click.ClickException(outcomes[0].error)
        if len(outcomes) > 1:
            click.echo("%d runs in %.1f wall s" % (len(outcomes), time.monotonic() - started), err=True)
    failed = [o for o in outcomes if not o.ok]
    if check:
        expectations = sum(len(o.results) for o in outcomes)
        broken = sum(1 for o in outcomes for r in o.results if not r.ok)
        errors = sum(1 for o in outcomes if o.error is not None)
        click.echo(
            "%d run%s, %d expectation%s checked: %s"
            % (len(outcomes), "" if len(outcomes) == 1 else "s", expectations, "" if expectations == 1 else "s",
               "all passed" if not failed else "%d failed%s" % (broken, ", %d runs did not complete" % errors if errors else ""))
        )
    if failed:
        sys.exit(1)


def _trace_dir(trace_path, count):
    """The folder --trace names (several runs, an existing folder, or a path ending in /), else None:
    a single trace file."""
    if not trace_path:
        return None
    if count == 1 and not os.path.isdir(trace_path) and not trace_path.endswith(("/", os.sep)):
        return None
    if os.path.exists(trace_path) and not os.path.isdir(trace_path):
        raise click.UsageError(
            "--trace %s: %d runs write one trace file each into a folder, and %s is a file; name a folder"
            % (trace_path, count, trace_path)
        )
    return trace_path


def _output_problem(path):
    """Why `path` cannot be written, or None: checked before any output is opened (and truncated)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            return "%s is a file, not a folder" % folder
        return "the folder %s does not exist" % folder
    if os.path.isdir(path):
        return "it is a folder"
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        return "no permission to write there"
    return None


def _check_output(path, option):
    problem = _output_problem(path)
    if problem:
        raise click.UsageError("%s %s: cannot write there: %s" % (option, path, problem))


def _creation_problem(path):
    """Why the file `path` cannot be created or written, or None. Tried for real, since neither
    os.access (as root) nor a folder's mode tells, e.g. in /proc; an existing file stays as it is."""
    existed = os.path.lexists(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666))
    except OSError as err:
        return err.strerror or str(err)
    if not existed:
        os.remove(path)
    return None


def _same_file(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def _trace_collision(jobs):
    """The first two jobs that would write the same trace file, or None."""
    seen = {}
    for job in jobs:
        if job.trace_path is None:
            continue
        key = os.path.realpath(job.trace_path)
        if key in seen:
            return seen[key], job
        seen[key] = job
    return None


def _check_outputs(jobs, trace_dir, pulses_path, inputs):
    """Every output can be written, none overwrites another or a scenario: checked before any run."""
    collision = _trace_collision(jobs)
    if collision:
        first, second = collision
        again = _same_file(first.path, second.path) and first.runtime == second.runtime
        raise click.UsageError(
            "--trace %s: %s and %s would both write %s; %s"
            % (trace_dir, first.label, second.label, second.trace_path,
               "the same run is asked for twice: give each SCENARIO and --runtime once" if again else
               "scenario files with the same name need separate --trace folders")
        )
    outputs = [("--trace", job.trace_path) for job in jobs if job.trace_path] + (
        [("--pulses", pulses_path)] if pulses_path else [])
    for option, path in outputs:
        for scenario in inputs:
            if _same_file(path, scenario):
                raise click.UsageError("%s %s would overwrite the scenario file %s" % (option, path, scenario))
    if pulses_path and _same_file(pulses_path, jobs[0].trace_path):
        raise click.UsageError("--pulses and --trace name the same file %s; give each its own" % pulses_path)
    if trace_dir is not None:
        try:
            os.makedirs(trace_dir, exist_ok=True)
        except OSError as err:
            raise click.UsageError("--trace %s: cannot make the folder: %s" % (trace_dir, err.strerror or err))
    for job in jobs:
        if job.trace_path:
            try:
                job.trace_path = runner.trace_target(job.trace_path)  # a link's file; never a device or pipe
            except launcher.SimError as err:
                raise click.UsageError("--trace %s" % err)
    outputs = [("--trace", job.trace_path) for job in jobs if job.trace_path] + (
        [("--pulses", pulses_path)] if pulses_path else [])
    for option, path in outputs:
        _check_output(path, option)
        created = path + runner.PARTIAL_SUFFIX if option == "--trace" else path  # a run renames TRACE.partial
        problem = _creation_problem(created)
        if problem:
            raise click.UsageError("%s %s: cannot create %s: %s" % (option, path, created, problem))


def _run_line(trace, lines, sim_s, wall_s, runtime):
    click.echo("%s: %d trace lines, %.1f simulated s in %.2f wall s (%s)" % (trace, lines, sim_s, wall_s, runtime), err=True)


@cli.command()
@click.argument("trace", required=False, type=click.Path())  # a folder: the reader says so (status 1)
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Write the picture here: PNG, PDF or SVG by its extension (.png, .pdf, .svg); "
                   "without one, PNG at PATH.png.")
@click.option("--waveform", "pulses_path", metavar="PULSES", type=click.Path(),
              help="Draw a few pulses from this pulse file (`tens-sim run --pulses`) at microsecond "
                   "resolution instead of a trace.")
@click.option("--channel", type=click.IntRange(min=0), metavar="N",
              help="--waveform: the channel to draw.  [default: 0]")
@click.option("--count", type=click.IntRange(1, 8), metavar="N",
              help="--waveform: consecutive pulses to draw.  [default: 3]")
@click.option("--from-s", type=float, metavar="S", help="Start at this simulated second (--waveform: the first "
              "pulse at or after it).")
@click.option("--to-s", type=float, metavar="S", help="End at this simulated second.")
def plot(trace, out_path, pulses_path, channel, count, from_s, to_s):
    """Draw TRACE (`tens-sim run --trace`) as a PNG (or PDF, SVG), or pulses with --waveform.

    \b
    tens-sim plot TRACE.jsonl -o session.png [--from-s S] [--to-s S]
    tens-sim plot --waveform PULSES.jsonl -o pulses.png [--channel N] [--count N] [--from-s S]

    The session picture shares one time axis: device state, injected and
    latched faults; amplitude per channel (target, commanded, delivered, mA);
    pad temperature (true, measured, target, °C); heater duty (%). The
    waveform picture shows each pulse's commanded current (phase 1, gap,
    phase 2) against the current the load model lets flow, in µs.
    """
    from sim import plot as plot_mod

    if bool(trace) == bool(pulses_path):
        raise click.UsageError("give a TRACE to draw a session, or --waveform PULSES to draw pulses (one of them)")
    if not pulses_path and (channel is not None or count is not None):
        raise click.UsageError("--channel and --count go with --waveform PULSES")
    try:
        plot_mod.check_window(from_s, to_s)
    except plot_mod.PlotError as err:
        raise click.UsageError(str(err))
    try:
        written, _ = plot_mod.output_path(out_path)
    except plot_mod.PlotError as err:
        raise click.UsageError("-o %s" % err)
    _check_output(str(written), "-o")
    source = pulses_path or trace
    if os.path.exists(source) and _same_file(str(written), source):
        raise click.UsageError("-o %s would overwrite its own input %s; write the picture elsewhere" % (written, source))
    problem = _creation_problem(str(written))  # as `run` checks its outputs: before anything is read
    if problem:
        raise click.UsageError("-o %s: cannot create %s: %s" % (out_path, written, problem))
    try:
        if pulses_path:
            written = plot_mod.plot_waveform(pulses_path, out_path, count=3 if count is None else count,
                                             channel=channel or 0, from_s=from_s, to_s=to_s)
        else:
            written = plot_mod.plot_session(trace, out_path, from_s=from_s, to_s=to_s)
    except plot_mod.PlotError as err:
        raise click.ClickException(str(err))
    click.echo("wrote %s" % written, err=True)


@cli.command("faults")
@click.option("--channels", type=click.IntRange(1, 2), default=2, show_default=True,
              help="List the channel faults of this many channels.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line: name, description.")
def list_faults(channels, as_json):
    """List every fault the simulator can inject, with what it models.

    Inject them into a served device with `tens-sim inject NAME`, or from a
    scenario step ("fault": NAME / "clear": NAME).
    """
    for name, description in faults.catalog(channels):
        if as_json:
            click.echo(json.dumps({"name": name, "description": description}))
        else:
            click.echo("%-20s %s" % (name, description))


def main():
    cli()


if __name__ == "__main__":
    main()
