"""Entry point of a simulated device inside one `micropython` process.

    micropython sim/mp_main.py run SCENARIO.norm.json     trace lines on stdout
    micropython sim/mp_main.py runmany
        normalized scenarios on stdin, one JSON object a line; for each, its trace
        lines and one audit line per tick (sim.scenario.ScenarioRun audit) in run
        order, then a line "END"; "ERROR <text>" before END if the run raised
    micropython sim/mp_main.py serve SPEED_MILLIONTHS SEED START_MS CHANNELS DEVICE_ID [CONTROL_FD REPLY_FD]
        stdin/stdout are the device's serial line; speed in millionths of
        real time (1000000 = real time), 0 = as fast as possible; control
        requests (fault injection) arrive on the inherited pipe CONTROL_FD as
        lines "SEQ JSON" and are answered on REPLY_FD as "SEQ JSON"

The launcher (`sim.launcher`, CPython) validates and normalizes scenarios
first, so only integers reach this side.
"""

import select
import sys
import time

from firmware.protocols import jsondec, jsonenc
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


SPEED_UNITS_PER_1 = 1000000  # the launcher passes the speed in millionths (sim.launcher.SPEED_UNITS_PER_1)
CONTROL_PER_TICK = 4  # control requests answered before each tick at most: the device always moves on


def _control_line(served, line, replies):
    """Answer one control line "SEQ JSON" from the launcher with "SEQ JSON" on the reply pipe."""
    text = line.decode().strip()
    space = text.find(" ")
    if space <= 0:
        return  # not from the launcher (it always numbers its requests): nothing to answer
    try:
        seq = int(text[:space])
    except ValueError:
        return
    try:
        request = jsondec.decode(text[space + 1 :], 8)
        reply = served.control(request)
        encoded = jsonenc.encode(reply)
    except Exception as exc:  # a malformed request must not stop the device
        encoded = jsonenc.encode({"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})
    replies.write(("%d %s\n" % (seq, encoded)).encode())


def serve(speed_millionths, seed, start_ms, channels, device_id, control_fd=None, reply_fd=None):
    """The serial line is stdin/stdout, bytes as they are. Control requests (fault
    injection, sim/control.py) come on their own pipe, control_fd, one line
    "SEQ JSON" each, and are answered on reply_fd with "SEQ JSON"; both are fds
    the launcher passed to this process (opened through /dev/fd)."""
    served = ServedDevice(seed, start_ms, channels, device_id)
    stdin = sys.stdin.buffer
    serial_poll = select.poll()  # the serial line only
    serial_poll.register(sys.stdin, select.POLLIN)
    wake_poll = select.poll()  # whatever should end a wait early: serial input or a control request
    wake_poll.register(sys.stdin, select.POLLIN)
    control = replies = control_poll = None
    if control_fd is not None:
        control = open("/dev/fd/%d" % control_fd, "rb")
        replies = open("/dev/fd/%d" % reply_fd, "wb")
        control_poll = select.poll()
        control_poll.register(control, select.POLLIN)
        wake_poll.register(control, select.POLLIN)
    started = time.ticks_ms()
    sim_ms = 0
    while True:
        incoming = bytearray()
        while len(incoming) < 512:
            events = serial_poll.poll(0)
            if not events:
                break
            if events[0][1] & select.POLLIN:
                byte = stdin.read(1)
                if not byte:
                    return  # host closed the line: the device powers down
                incoming.extend(byte)
            else:
                return  # hang-up without data
        answered = 0
        while control is not None and answered < CONTROL_PER_TICK:
            answered += 1
            events = control_poll.poll(0)
            if not events:
                break
            line = control.readline() if events[0][1] & select.POLLIN else b""
            if not line:  # the launcher closed the control pipe: the device runs on without it
                wake_poll.unregister(control)
                control = None
                break
            try:
                _control_line(served, line, replies)
            except OSError:  # the launcher stopped reading replies: run on without control
                wake_poll.unregister(control)
                control = None
        out = served.step(incoming)
        if out:
            _write(out)
        sim_ms += TICK_MS
        if speed_millionths > 0:
            wall_due = sim_ms * SPEED_UNITS_PER_1 // speed_millionths
            wait = wall_due - time.ticks_diff(time.ticks_ms(), started)
            if wait > 0:
                wake_poll.poll(wait)


def main(argv):
    if len(argv) >= 3 and argv[1] == "run":
        run_scenario(argv[2])
    elif len(argv) >= 2 and argv[1] == "runmany":
        run_many()
    elif len(argv) >= 9 and argv[1] == "serve":
        serve(int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]), argv[6], int(argv[7]), int(argv[8]))
    elif len(argv) >= 7 and argv[1] == "serve":
        serve(int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]), argv[6])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


main(sys.argv)
