"""Pulse records: one JSON line per pulse the simulated output stage fired (CPython only).

`tens-sim run SCENARIO --trace T --pulses P` writes them; `tens-sim plot --waveform P`
draws a few of them at microsecond resolution. Each line, keys in this order:

| key | meaning |
| --- | --- |
| `t_ms` | simulated time of the tick that fired the pulse, ms since the start of the run |
| `ch` | channel |
| `start_us` | start of the pulse within that tick's window, µs (the pulse starts at t_ms * 1000 + start_us) |
| `amp1_ua`, `phase1_us` | phase 1 (positive) as fired: current and width, after the driver's clamps |
| `gap_us` | interphase gap |
| `amp2_ua`, `phase2_us` | phase 2 (negative, charge-balancing): current and width |
| `delivered_ua` | current that flowed at the end of phase 1 (the electrode-skin load model; the sense ADC reads it) |
| `delivered2_ua` | current the same load model gives for phase 2 (the board's model computes phase 1 only; this is |
|                 | worked out on a copy of the load, so recording changes nothing in the run) |

Recording hooks `SimPulseOutput.recorder` and chains any recorder already there (the
audit's), so the trace is byte-identical with and without `--pulses`. A failing write
never reaches the device: the recorder keeps the error and `run_scenario` reports it.

Reading checks every field against LIMITS (integers only): anything the simulator can
write passes, and nothing passes that the waveform picture cannot draw.
"""

import json
from contextlib import contextmanager

from sim.board import HW_MAX_AMP_UA, HW_MAX_PHASE_US
from sim.models import ElectrodeLoad

FIELDS = (
    "t_ms", "ch", "start_us", "amp1_ua", "phase1_us", "gap_us", "amp2_ua", "phase2_us", "delivered_ua", "delivered2_ua",
)
REQUIRED = FIELDS[:-1]  # delivered2_ua is optional when reading (files written by hand or older tools)
MAX_T_MS = 10 ** 12  # about 31 years of simulated time
_AMP = (0, HW_MAX_AMP_UA, "the output stage's clamp")
_DELIVERED = (0, 2 * HW_MAX_AMP_UA, "twice the stage's clamp: an output fault delivers more than commanded")
_PHASE = (1, HW_MAX_PHASE_US, "the output stage's clamp")
# field -> (lowest, highest, why the highest): what a pulse record may hold
LIMITS = {
    "t_ms": (0, MAX_T_MS, "about 31 years"),
    "ch": (0, 255, "a channel number"),
    "start_us": (0, 1000000, "a second"),
    "amp1_ua": _AMP,
    "phase1_us": _PHASE,
    "gap_us": (0, HW_MAX_PHASE_US, "the longest phase"),
    "amp2_ua": _AMP,
    "phase2_us": _PHASE,
    "delivered_ua": _DELIVERED,
    "delivered2_ua": _DELIVERED,
}


class PulseFileError(Exception):
    """A pulse file that cannot be read; the message names the file (and line)."""


class PulseRecorder:
    """Callable for `SimPulseOutput.recorder`: writes one line per fired pulse to `out` (a text file)."""

    def __init__(self, board, out):
        self._board = board
        self._out = out
        self._chained = board.pulse_out.recorder
        self._shadow = [ElectrodeLoad() for _ in board.loads]  # phase 2 is driven on a copy of the load
        self.count = 0
        self.error = None  # the first exception writing raised; nothing is written after it

    def __call__(self, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us, delivered_ua):
        if self._chained is not None:
            self._chained(ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us, delivered_ua)
        if self.error is not None:
            return
        try:  # this runs inside the firmware's fire(): an exception would latch a fault there
            self._out.write(
                '{"t_ms":%d,"ch":%d,"start_us":%d,"amp1_ua":%d,"phase1_us":%d,"gap_us":%d,'
                '"amp2_ua":%d,"phase2_us":%d,"delivered_ua":%d,"delivered2_ua":%d}\n'
                % (
                    self._board.clock.elapsed_ms, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us,
                    delivered_ua, self._phase2_delivered(ch, amp2_ua, phase2_us),
                )
            )
        except Exception as err:  # noqa: BLE001 - kept, and reported once the run is over
            self.error = err
            return
        self.count += 1

    def _phase2_delivered(self, ch, amp2_ua, phase2_us):
        load = self._board.loads[ch]
        shadow = self._shadow[ch]
        shadow.series_ohm = load.series_ohm
        shadow.parallel_ohm = load.parallel_ohm
        shadow.capacitance_nf = load.capacitance_nf
        shadow.compliance_mv = load.compliance_mv
        driven = amp2_ua
        if self._board.pulse_out.overshoot[ch]:  # the injected stage fault, as SimPulseOutput applies it
            driven = amp2_ua + amp2_ua // 2 + 5000
        return shadow.drive(driven, phase2_us)

    def detach(self):
        self._board.pulse_out.recorder = self._chained


def attach(board, path):
    """Record every pulse `board` fires to `path` (JSON lines). Returns a closer: call it once the run ends.

    Neither recording nor closing raises a write error (closing flushes the last lines): it is
    kept in the recorder's `error` for the caller to report once the run is over.
    """
    out = open(path, "w", newline="\n")
    recorder = PulseRecorder(board, out)
    board.pulse_out.recorder = recorder

    def close():
        recorder.detach()
        try:
            out.close()
        except OSError as err:
            if recorder.error is None:
                recorder.error = err
        return recorder.count

    close.recorder = recorder
    return close


@contextmanager
def recording(board, path):
    """`with recording(board, path): ...` records the pulses fired inside; a None path records nothing.
    A write error does not raise: check the recorder's `error` afterwards (`run_scenario` does)."""
    if path is None:
        yield None
        return
    close = attach(board, path)
    try:
        yield close.recorder
    finally:
        close()


def run_scenario(normalized, trace_path, pulses_path, runtime="cpython"):
    """Run a normalized scenario under CPython, writing its trace and its pulse file.

    Returns (trace lines, pulses). The trace is the one `sim.runner.run` writes. Pulses are
    recorded on the CPython runtime only: the MicroPython VM has no pulse channel out. A pulse
    file that could not be written is a SimError after the run (whose trace is complete).
    """
    from sim import runner
    from sim.launcher import SimError

    if runtime != "cpython":
        raise SimError("--pulses records on the cpython runtime only (the micropython VM writes the trace alone)")
    recorders = []

    @contextmanager
    def record(board):
        try:
            close = attach(board, pulses_path)
        except OSError as err:
            raise runner.write_error(pulses_path, "pulse file", err)
        recorders.append(close.recorder)
        try:
            yield
        finally:
            close()

    count = runner.run_here(normalized, trace_path, record)
    if recorders[0].error is not None:
        raise runner.write_error(pulses_path, "pulse file", recorders[0].error)
    return count, recorders[0].count


def read_pulses(path):
    """Parse a pulse file into a list of dicts; PulseFileError names the file and line of any problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise PulseFileError("%s: cannot read: %s" % (path, err.strerror or err))
    except UnicodeDecodeError:
        raise PulseFileError("%s: not a pulse file (not UTF-8 text)" % path)
    try:
        return parse_pulses(text.splitlines(), path)
    except PulseFileError:
        if several_lines_one_document(text):
            raise PulseFileError("%s: one JSON document over several lines, not a pulse file (that has one "
                                 "JSON object a line, as `tens-sim run --pulses` writes it)" % path)
        raise


def several_lines_one_document(text):
    """Whether `text` is a single JSON object or array spread over several lines (a scenario,
    say): valid JSON, but not JSON lines, whose first line alone would be "not valid JSON"."""
    if len([line for line in text.splitlines() if line.strip()]) < 2:
        return False
    try:
        return isinstance(json.loads(text), (dict, list))
    except (ValueError, RecursionError):
        return False


def json_line(line, source, number, error):
    """json.loads of one line; `error` (an exception class) names the file and line if it is not JSON."""
    try:
        return json.loads(line)
    except ValueError as err:
        raise error("%s:%d: not valid JSON: %s" % (source, number, err))
    except RecursionError:  # the decoder recurses once per level of [ or {
        raise error("%s:%d: not valid JSON: nested too deeply" % (source, number))


def clip(value, width=40):
    """`value` as JSON spells it (NaN, Infinity), shortened: a 400-digit number would hide the message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= width else "%s… (%d characters)" % (text[: width - 1], len(text))


def parse_pulses(lines, source="<pulses>"):
    """Pulse records from a pulse file's lines (strings, or dicts already parsed, checked alike);
    PulseFileError names the line and field of a problem. Blank lines are skipped."""
    records = []
    for number, line in enumerate(lines, 1):
        if isinstance(line, dict):
            record = line
        elif not line.strip():
            continue
        else:
            record = json_line(line, source, number, PulseFileError)
        if not isinstance(record, dict):
            raise PulseFileError("%s:%d: not a pulse record: expected a JSON object" % (source, number))
        problem = _pulse_problem(record)
        if problem:
            raise PulseFileError("%s:%d: not a pulse record: %s" % (source, number, problem))
        records.append(record)
    if not records:
        raise PulseFileError("%s: empty: no pulse records" % source)
    return records


def _pulse_problem(record):
    for key in FIELDS:
        if key not in record:
            if key in REQUIRED:
                return "%s missing" % key
            continue
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, int):
            return "%s not an integer: %s" % (key, clip(value))
        low, high, why = LIMITS[key]
        if not low <= value <= high:
            return "%s %s out of range: must be %d to %d (%s)" % (key, clip(value), low, high, why)
    return None
