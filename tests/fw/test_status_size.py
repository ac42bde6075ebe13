"""The status reply and the events fit in one frame, in the worst case the device can reach.

The link cannot send a frame over frame.MAX_LINE_BYTES (1024 bytes): a status reply that
grew past it became an `internal` error, so a host could not read status exactly when it
most needed it (faults latched with long messages, both channels in strength_duration,
heat, a program with the longest names). Each test builds its worst case through the
device: requests, injected hardware faults, and the firmware's one fault path
(Device._fail_safe) for the faults no simulated hardware reaches together. Counters and
the uptime are put at the largest values they are designed for (fast-forwarded, as
test_safety does with the session timer), the clock runs across the 2^30 ms wrap, and
every frame is measured as the link sent it: each must leave MARGIN_BYTES free.
Portable: runs in the VM too.
"""

from firmware.clock import TICKS_MAX
from firmware.device import clip_json
from firmware.protocols import frame, jsonenc
from firmware.protocols import messages as msg
from tests.fw.harness import Harness
from tests.fw.portable import Lcg

MARGIN_BYTES = 40  # free in every frame: room for a later field (a heater-side reading takes 24)
BUDGET_BYTES = frame.MAX_LINE_BYTES - MARGIN_BYTES
UPTIME_MAX_MS = (1 << 30) * 1000 - 1  # Elapsed counts 2^30 s (34 years): 13 digits
COUNTER_MAX = (1 << 31) - 1  # rx_errors, tx_dropped, telemetry dropped: 10 digits
NEAR_THE_WRAP_MS = TICKS_MAX + 1 - 3000  # the clock wraps 3 s into the test
# the widest strength-duration setting: the longest mode name, every number at its widest
SD_STIM = {"mode": "strength_duration", "waveform": "asymmetric", "asym_ratio": 4, "area_cm2": 200, "phase_us": 400,
           "rate_hz": 1, "sd_rate_hz": 250, "sd_width_pct": 90, "sd_period_ms": 60000}
LONG_NAME = "n" * 24  # program.NAME_MAX
LONG_PHASE = '"\\' * 12  # program.PHASE_NAME_MAX printable characters, each escaped to two bytes
# every fault name the firmware latches, in a 2-channel device
ALL_FAULTS = ("no_load:0", "no_load:1", "overcurrent:0", "overcurrent:1", "envelope_breach:0", "envelope_breach:1",
              "internal_error", "heat_slow", "runaway", "stuck_on", "over_temp", "sensor_open", "sensor_short",
              "sensor_frozen", "sensor_jump", "sensor_mismatch", "lease_expired")
# longer than any message the firmware writes (the longest, heat's, are under 300), and all of it escaped
WORST_MSG = '"\\' * 150 + "\u00e9" * 20


def largest_numbers(h):
    d = h.device
    d.uptime.total_ms = UPTIME_MAX_MS - 60000  # a minute of ticks to go, still 13 digits
    d.link.rx_errors = COUNTER_MAX
    d.link.tx_dropped = COUNTER_MAX
    d.telemetry.dropped = COUNTER_MAX


def lines(h):
    """Every frame the device sent since the last forget(), as sent (newline included)."""
    return [line + b"\n" for line in h.raw.split(b"\n") if line.startswith(b"@")]


def status_frame(h, request_id):
    """A status request with a 10-digit id: the reply as decoded, and its frame's size in bytes."""
    h.forget()
    h.send("status", request_id=request_id)
    h.tick(1)
    key = b'"id":%d,' % request_id
    found = [line for line in lines(h) if key in line]
    assert len(found) == 1, "one reply to status id %d, got %r" % (request_id, found)
    reply = frame.decode_line(found[0][:-1])
    assert reply["ok"] is True, "status must be readable, got %r" % reply
    return reply, len(found[0])


def assert_fits(what, size):
    assert size <= BUDGET_BYTES, "%s: %d bytes, over %d (MAX_LINE_BYTES %d less a margin of %d)" % (
        what, size, BUDGET_BYTES, frame.MAX_LINE_BYTES, MARGIN_BYTES)


def assert_events_fit(h):
    """Every event sent since the last forget() fits too; returns the largest size per event kind."""
    largest = {}
    for line in lines(h):
        message = frame.decode_line(line[:-1])
        if "ev" in message:
            assert_fits("%s event" % message["ev"], len(line))
            largest[message["ev"]] = max(largest.get(message["ev"], 0), len(line))
    return largest


def widest_program(h):
    """Both channels at the widest strength-duration setting and its largest amplitude, heat at
    the hard cap, the longest program and phase names; RUNNING with the longest lease."""
    h.ok("set_stim", {"ch": 0, "stim": SD_STIM})
    top_ua = h.ok("get_stim", {"ch": 0})["max_amp_ua"]
    channel = {"stim": SD_STIM, "max_amp_ua": top_ua}
    program = {"name": LONG_NAME, "description": "d" * 200, "channels": [channel, channel],
               "heat": {"target_mc": 43000}, "ramp_ms": 1000, "phases": [{"name": LONG_PHASE, "duration_s": 3600}]}
    h.ok("program_put", {"program": program}, ticks=3)  # over 512 bytes: read over two ticks
    h.ok("start", {"program": LONG_NAME, "lease_ms": 30000, "amp_ua": [top_ua, top_ua]})
    h.ok("telemetry", {"every_ms": 50})
    return top_ua


# ---- a running session ---------------------------------------------------------------------------


def test_status_of_a_running_program_at_its_widest_fits():
    h = Harness(start_ms=NEAR_THE_WRAP_MS)
    top_ua = widest_program(h)
    h.tick_until(lambda: h.amps() == [top_ua, top_ua], 300)
    h.ok("telemetry", {"every_ms": 60000})  # the widest interval figure; events checked below at 50 ms
    largest_numbers(h)
    reply, size = status_frame(h, msg.MAX_REQUEST_ID)
    assert_fits("status while a program runs", size)
    assert reply["program"] == LONG_NAME and reply["phase"] == LONG_PHASE and reply["state"] == "RUNNING"
    assert reply["ch"][1]["mode"] == "strength_duration" and reply["ch"][1]["amp_ua"] == top_ua
    assert reply["heat"]["state"] == "heating" and reply["uptime_ms"] > UPTIME_MAX_MS - 60000
    h.ok("telemetry", {"every_ms": 50})
    largest_numbers(h)
    h.forget()
    h.tick(20)
    assert "telemetry" in assert_events_fit(h)


# ---- faults --------------------------------------------------------------------------------------


def test_status_with_the_faults_the_hardware_can_cause_fits_and_keeps_them_whole():
    h = Harness(start_ms=NEAR_THE_WRAP_MS)
    top_ua = widest_program(h)
    h.tick_until(lambda: h.amps() == [top_ua, top_ua], 300)
    h.forget()
    h.fault("electrode_off:0")
    h.fault("electrode_off:1")
    h.tick(3)
    h.fault("sense_adc_error")  # a driver raising: internal_error on top
    h.tick(2)
    h.fault("sense_adc_error", False)
    h.fault("thermistor_open")
    h.tick(20)
    assert h.state == "FAULT" and len(h.faults) >= 3, h.faults
    events = assert_events_fit(h)
    assert "state" in events and "heat" in events, events
    first_msg = h.device.supervisor.fault_msg
    reply, size = status_frame(h, msg.MAX_REQUEST_ID)
    assert_fits("status with %d faults" % len(h.faults), size)
    assert reply["faults"] == h.faults and "faults_more" not in reply, reply  # few faults: all listed
    assert reply["fault_msg"] == first_msg, reply  # a message of usual length: whole
    largest_numbers(h)  # 34 years of uptime, 10-digit counters: the message may have to give way
    reply, size = status_frame(h, msg.MAX_REQUEST_ID - 1)
    assert_fits("status with %d faults and the largest numbers" % len(h.faults), size)
    assert reply["faults"] == h.faults and "faults_more" not in reply, reply
    text = reply["fault_msg"]
    assert text == first_msg or (text.endswith("...") and first_msg.startswith(text[:-3])), (text, first_msg)
    assert len(text) >= 60, "the message keeps its most telling part: %r" % text


def test_status_with_every_fault_latched_and_the_longest_messages_fits_and_says_what_it_left_out():
    h = Harness(start_ms=NEAR_THE_WRAP_MS)
    top_ua = widest_program(h)
    h.tick_until(lambda: h.amps() == [top_ua, top_ua], 300)
    h.forget()
    for name in ALL_FAULTS:
        h.device._fail_safe(name, WORST_MSG)  # the path every fault takes
        h.tick(1)  # each in its own tick: a state event for each
    assert h.faults == list(ALL_FAULTS)
    largest_numbers(h)
    h.tick(10)  # a telemetry event with every fault
    events = assert_events_fit(h)
    assert "state" in events and "telemetry" in events, events
    state = h.events("state")[-1]
    assert state["faults"] == list(ALL_FAULTS), state  # the state event lists them all
    reply, size = status_frame(h, msg.MAX_REQUEST_ID)
    assert_fits("status with %d faults" % len(ALL_FAULTS), size)
    shown = reply["faults"]
    assert shown and shown == list(ALL_FAULTS[: len(shown)]), reply  # the first ones, in latch order
    assert reply["faults_more"] == len(ALL_FAULTS) - len(shown), reply
    text = reply["fault_msg"]
    assert text.endswith("...") and len(text) >= 20, "a shortened message says so: %r" % text
    assert WORST_MSG.startswith(text[:-3]), text


# ---- the clipping itself ---------------------------------------------------------------------------


def test_clip_json_keeps_a_text_within_its_bytes_as_sent_and_says_when_it_cut():
    """Quotes and backslashes take two bytes on the wire, non-ASCII characters more: the bound is
    on the bytes sent, so a message of quotes cannot double its share of the frame."""
    rng = Lcg(7)
    alphabet = 'ab "\\\u00e9\u20ac\U0001f600x.'
    for _ in range(300):
        text = "".join([alphabet[rng.below(len(alphabet))] for _ in range(rng.below(200))])
        for limit in (0, 2, 3, 4, 5, 17, 60, 120, 400):
            out = clip_json(text, limit)
            sent = len(jsonenc.encode(out)) - 2
            assert sent <= limit, (text, limit, out, sent)
            if out != msg.clip(text, 10000) and limit >= 3:  # cut (not only escaped): it says so
                assert out.endswith("..."), (text, limit, out)
    assert clip_json("plain", 120) == "plain"
    assert clip_json('say "hi"', 10) == 'say "hi"'  # 10 bytes as sent: fits exactly
    assert clip_json('say "hi"', 9) == 'say "...'
