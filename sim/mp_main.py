"""Entry point of a simulated device inside one `micropython` process.

    micropython sim/mp_main.py run SCENARIO.norm.json     trace lines on stdout
    micropython sim/mp_main.py runmany
        normalized scenarios on stdin, one JSON object a line; for each, its trace
        lines and one audit line per tick (sim.scenario.ScenarioRun audit) in run
        order, then a line "END"; "ERROR <text>" before END if the run raised
    micropython sim/mp_main.py serve SPEED_PERMILLE SEED START_MS CHANNELS DEVICE_ID
        stdin/stdout are the device's serial line; speed in thousandths of
        real time (1000 = real time), 0 = as fast as possible

The launcher (`sim.launcher`, CPython) validates and normalizes scenarios
first, so only integers reach this side.
"""

import select
import sys
import time

from firmware.protocols import jsondec
from sim.scenario import ScenarioRun
from sim.serve_loop import ServedDevice, TICK_MS


def _write(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush() if hasattr(sys.stdout.buffer, "flush") else None


def run_scenario(path):
    with open(path) as handle:
        normalized = jsondec.decode(handle.read(), 64)  # MicroPython's json splits astral characters
    out = sys.stdout

    def emit(line):
        out.write(line)
        out.write("\n")

    ScenarioRun(normalized, emit).run()


def run_many():
    """Many scenarios in one process (tests replay hypothesis-made sequences this way)."""
    out = sys.stdout

    def emit(line):
        out.write(line)
        out.write("\n")

    while True:
        text = sys.stdin.readline()
        if not text:
            return
        text = text.strip()
        if not text:
            continue
        try:
            normalized = jsondec.decode(text, 64)
            ScenarioRun(normalized, emit, emit).run()
        except Exception as exc:  # reported to the caller, then the next scenario
            out.write("ERROR %s: %s\n" % (type(exc).__name__, exc))
        out.write("END\n")
        if hasattr(out, "flush"):
            out.flush()


def serve(speed_permille, seed, start_ms, channels, device_id):
    served = ServedDevice(seed, start_ms, channels, device_id)
    stdin = sys.stdin.buffer
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    started = time.ticks_ms()
    sim_ms = 0
    while True:
        incoming = bytearray()
        while len(incoming) < 512:
            events = poller.poll(0)
            if not events:
                break
            if events[0][1] & select.POLLIN:
                byte = stdin.read(1)
                if not byte:
                    return  # host closed the line: the device powers down
                incoming.extend(byte)
            else:
                return  # hang-up without data
        out = served.step(incoming)
        if out:
            _write(out)
        sim_ms += TICK_MS
        if speed_permille > 0:
            wall_due = sim_ms * 1000 // speed_permille
            wait = wall_due - time.ticks_diff(time.ticks_ms(), started)
            if wait > 0:
                poller.poll(wait)


def main(argv):
    if len(argv) >= 3 and argv[1] == "run":
        run_scenario(argv[2])
    elif len(argv) >= 2 and argv[1] == "runmany":
        run_many()
    elif len(argv) >= 7 and argv[1] == "serve":
        serve(int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]), argv[6])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


main(sys.argv)
