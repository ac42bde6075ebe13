"""Device-level protocol fuzz: 10 000 seeded random frames into a simulated Device.

The generator, the driver and the checks live in tests/fuzz_frames.py (also the
`make fuzz` CLI, which runs a million frames). One run is shared by the tests
below; each asserts one group of checks, so one finding does not hide the others.
A failure names the seed and the frame index; replay it with
`python -m tests.fuzz_frames --seed SEED --frames INDEX+1` and show the frames
with `--show INDEX`.
"""

import pytest

from firmware.protocols import messages as msg
from sim.board import SimBoard
from tests import fuzz_frames as F

FRAMES = 20000  # enough for every op to succeed a few times and heat to start (a stop refuses it)
SEED = F.DEFAULT_SEED


@pytest.fixture(scope="module")
def run():
    return F.run_fuzz(FRAMES, SEED)


def _report(res, group):
    failures = res.failed(group)
    counts = {name: res.failure_counts[name] for name in F.CHECK_GROUPS[group] if res.failure_counts[name]}
    lines = ["%d failed check(s) %s; first ones:" % (sum(counts.values()), counts)]
    lines += ["  %r" % f for f in failures[:5]]
    lines.append("replay: python -m tests.fuzz_frames --seed %d --frames INDEX+1; --show INDEX prints the frames" % SEED)
    return "\n".join(lines)


def _clean(res, group):
    return not any(res.failure_counts[name] for name in F.CHECK_GROUPS[group])


def test_a_tick_never_raises_nor_latches_internal_error(run):
    assert _clean(run, "a"), _report(run, "a")


def test_b_every_device_line_is_a_clean_frame(run):
    assert _clean(run, "b"), _report(run, "b")


def test_c_every_request_is_answered_once_with_its_id_ok_and_a_known_code(run):
    assert _clean(run, "c"), _report(run, "c")


def test_d_state_is_consistent_and_garbage_never_starts_output(run):
    assert _clean(run, "d"), _report(run, "d")


def test_e_output_is_bounded_never_stalls_and_nothing_is_dropped(run):
    assert _clean(run, "e"), _report(run, "e")


def test_the_mix_covers_the_protocol(run):
    print(run.summary())
    assert run.frames == FRAMES
    for kind, _ in F.KINDS:
        assert run.kinds[kind] >= 100, (kind, run.kinds)
    # replies: plenty of successes, and error replies of many codes
    assert run.replies["ok"] >= 1000, run.replies
    for code in (msg.E_BAD_REQUEST, msg.E_UNKNOWN_OP, msg.E_BAD_FIELD, msg.E_OUT_OF_RANGE, msg.E_BAD_STATE):
        assert run.replies[code] >= 100, (code, run.replies)
    assert run.replies[msg.E_VERSION] >= 3, run.replies
    assert run.replies[msg.E_ENVELOPE] >= 1, run.replies  # most amplitudes the mix sends are inside the envelope
    # every op was accepted at least a few times (pause and resume need the right state first), except
    # clear_fault: protocol input alone never latches a fault on nominal simulated hardware, so it is
    # only ever refused (bad_state); faults are the stateful machine's job (test_device_stateful.py)
    for op in msg.OPS:
        if op != msg.OP_CLEAR_FAULT:
            assert run.ok_by_op[op] >= 3, (op, run.ok_by_op)
    assert not run.faults, run.faults
    # every rx_error code, many times
    for code in F.RX_CODES:
        assert run.rx_errors[code] >= 100, (code, run.rx_errors)
    assert run.ignored_lines >= 300  # noise lines and echoed device frames
    # the fuzz reaches the states that matter, so (d) is checked where it bites
    assert run.entered_running >= 10 and run.heat_started >= 3, (run.entered_running, run.heat_started)
    assert run.events[msg.EV_STATE] >= 50 and run.events[msg.EV_HEAT] >= 5, run.events


def test_a_run_is_deterministic_so_a_seed_replays_it():
    a = F.run_fuzz(400, 7)
    b = F.run_fuzz(400, 7)
    assert (a.bytes, a.ticks, a.replies, a.rx_errors, a.failure_counts) == (b.bytes, b.ticks, b.replies, b.rx_errors, b.failure_counts)
    assert [(f.check, f.frame_index) for f in a.failures] == [(f.check, f.frame_index) for f in b.failures]
    # --show regenerates the frames without a device
    shown = F.show(7, 17)
    assert [i for i, _, _ in shown] == list(range(16, 32))


# ---- the checks have teeth: a planted bug is caught --------------------------------------------


def _device():
    board = SimBoard(seed=1)
    return board, board.build_device()


def test_a_lost_reply_is_caught():
    board, device = _device()
    handle = device.link._handle_request
    calls = [0]

    def lossy(message):
        calls[0] += 1
        if calls[0] % 40 == 0:
            return  # a request the firmware forgets to answer
        handle(message)

    device.link._handle_request = lossy
    res = F.run_fuzz(600, 3, device=device, board=board)
    assert res.failure_counts["reply_missing"] >= 1, res.summary()


def test_a_raising_handler_is_caught():
    board, device = _device()
    real = device.link.ops[msg.OP_KEEPALIVE]
    calls = [0]

    def broken(message):
        calls[0] += 1
        if calls[0] == 5:
            raise KeyError("planted")
        return real(message)

    device.link.ops[msg.OP_KEEPALIVE] = broken
    res = F.run_fuzz(1500, 3, device=device, board=board)
    assert res.failure_counts["internal_error"] >= 1, res.summary()


def test_output_outside_running_is_caught():
    board, device = _device()
    real = device._outputs_off

    def leaky():
        real()
        device.channels[0].amp_ua = 500  # "forgets" to zero a channel

    device._outputs_off = leaky
    res = F.run_fuzz(200, 3, device=device, board=board)
    assert res.failure_counts["output_outside_running"] >= 1, res.summary()


class _Scripted:
    """A FrameGen stand-in that sends the given (kind, bytes) frames in order."""

    def __init__(self, frames):
        self.frames = list(frames)

    def next(self):
        return self.frames.pop(0)


def test_the_model_reads_a_full_length_crlf_line_as_the_device_does():
    """A line of exactly MAX_LINE_BYTES before its CRLF is a request to the device (its reader
    takes CRLF lines); the model counted the \\r and owed line_too_long instead: seed 20261127
    failed at frame 149595 (a 29-byte truncated frame, then a 997-byte one ending in CRLF)."""
    head = b'@{"steps":7,"op":"amp_step","'  # truncated: no newline, the next frame joins its line
    body = b'{"id":39867971,"op":"status","pad":"%s"}'
    pad = F.MAX - len(head) - len(body % b"") - len(b"@*0000")
    payload = body % (b"x" * pad)
    line = b"@" + payload + b"*%04X\r\n" % F._crc(payload)
    assert len(head) + len(line) - 2 == F.MAX  # the line's bytes before CRLF: exactly the limit
    board, device = _device()
    fuzzer = F.Fuzzer(3, device=device, board=board)
    fuzzer.gen = _Scripted([("truncated", head), ("json_edge", line)])
    res = fuzzer.run(2)
    assert not res.failure_counts, res.summary()
    assert res.replies["bad_field"] == 1, res.summary()  # answered: `pad` is not a status field
