"""`tens-sim`: serve a simulated device, run scenarios, list faults."""

import signal
import sys
import time

import click

from sim import faults, launcher, runner
from sim.clock import NEAR_WRAP_MS
from sim.scenario import ScenarioError

RUNTIME = click.Choice(launcher.RUNTIMES)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Simulated pulsewarm device for the desktop and CI."""


@cli.command()
@click.option("--listen", metavar="HOST:PORT", help="Serve on a TCP socket (open it as socket://HOST:PORT).")
@click.option("--pty", "use_pty", is_flag=True, help="Serve on a pseudo-terminal and print its path (the default).")
@click.option("--speed", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Simulated seconds per wall second; 0 = as fast as possible.")
@click.option("--runtime", type=RUNTIME, default="cpython", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--start-ms", type=click.IntRange(0, (1 << 30) - 1), default=0,
              help="Start value of the 2^30 ms tick counter.")
@click.option("--near-wrap", is_flag=True, help="Start the tick counter 5 s before its 2^30 ms wrap.")
@click.option("--device-id", default="pulsewarm-sim-0", show_default=True)
def serve(listen, use_pty, speed, runtime, seed, start_ms, near_wrap, device_id):
    """Run a simulated device until interrupted."""
    if listen and use_pty:
        raise click.UsageError("choose --listen or --pty, not both")
    try:
        server = launcher.start_server(
            runtime=runtime, speed=speed, pty=not listen, listen=listen, seed=seed,
            start_ms=NEAR_WRAP_MS if near_wrap else start_ms, device_id=device_id,
        )
    except launcher.SimError as err:
        raise click.ClickException(str(err))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo(server.url, err=False)
    click.echo("serving %s (%s runtime, speed %s); Ctrl-C stops" % (device_id, runtime, speed or "max"), err=True)
    sys.stdout.flush()
    try:
        while server.alive():
            time.sleep(0.2)
        raise click.ClickException("the simulated device stopped:\n" + server.errors())
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@cli.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--trace", "trace_path", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Write the trace here (JSON lines, one per 100 ms).")
@click.option("--runtime", type=RUNTIME, default="cpython", show_default=True)
def run(scenario, trace_path, runtime):
    """Run SCENARIO (JSON) as fast as possible and write its trace."""
    try:
        normalized = runner.load(scenario)
    except ScenarioError as err:
        raise click.ClickException(str(err))
    started = time.monotonic()
    try:
        lines = runner.run(normalized, trace_path, runtime)
    except launcher.SimError as err:
        raise click.ClickException(str(err))
    wall_s = time.monotonic() - started
    click.echo(
        "%s: %d trace lines, %.1f simulated s in %.2f wall s (%s)"
        % (trace_path, lines, normalized["duration_ms"] / 1000.0, wall_s, runtime),
        err=True,
    )


@cli.command("faults")
def list_faults():
    """List the faults the simulator can inject."""
    for name in faults.names():
        click.echo("%-20s %s" % (name, faults.describe(name)))


def main():
    cli()


if __name__ == "__main__":
    main()
