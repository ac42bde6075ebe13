"""A phase without TENS really is one: the channels ramp down to zero within it, and the
next TENS phase brings the patient's amplitude back from zero (docs/programs.md, "The
timeline"; docs/safety.md, "A phase change jumps the amplitude").

Two layers: the parser refuses a program whose TENS-off phase after a TENS phase is shorter
than its ramp time, and the run cuts a channel still above zero when a TENS phase begins
(whatever kept it from reaching zero) before the patient's amplitude comes back.
Portable: runs under CPython and in the MicroPython VM (tests/mp_runner.py)."""

from firmware import limits as L
from firmware import presets
from firmware.program import parse_program
from firmware.protocols import messages as msg
from tests.fw.harness import Harness, ramp_ticks
from tests.fw.portable import Lcg, raises

STIM = {"mode": "continuous", "rate_hz": 20, "phase_us": 100}  # few pulses: the harness keeps every one
TICK_MS = L.TICK_MS


def _program(phases, ramp_ms=None, amps=(60000,), heat=None, interlock=None, name="rx-ramp"):
    """phases: (name, duration_s, tens) triples."""
    source = {"name": name, "description": "phase ramp test", "channels": [], "phases": []}
    for amp_ua in amps:
        source["channels"].append({"stim": STIM, "amp_ua": amp_ua, "max_amp_ua": 80000})
    for phase in phases:
        source["phases"].append({"name": phase[0], "duration_s": phase[1], "tens": phase[2]})
    if ramp_ms is not None:
        source["ramp_ms"] = ramp_ms
    if heat is not None:
        source["heat"] = {"level": heat}
    if interlock is not None:
        source["interlock"] = interlock
    return source


def _short_off_phases(source, ramp_ms):
    """The oracle: indices of the TENS-off phases that follow a TENS phase and are shorter than the ramp."""
    found = []
    phases = source["phases"]
    for i in range(1, len(phases)):
        if not phases[i]["tens"] and phases[i - 1]["tens"] and phases[i]["duration_s"] * 1000 < ramp_ms:
            found.append(i)
    return found


# ---- (a) the parser -------------------------------------------------------------------


def test_a_tens_off_phase_shorter_than_the_ramp_is_refused_naming_phase_length_ramp_and_field():
    # the audit's case: 30 s ramp, 60 mA, a 10 s phase without TENS between two TENS phases
    audit = _program([("tens", 10, True), ("rest", 10, False), ("again", 10, True)], ramp_ms=30000)
    exc = raises(msg.RequestError, parse_program, audit)
    assert exc.code == msg.E_OUT_OF_RANGE, (exc.code, exc.message)
    assert exc.message == (
        "phases[1].duration_s 10 s is shorter than the ramp time 30000 ms (ramp_ms): phase rest has no TENS "
        "after a TENS phase, so the channels must ramp down to zero within it; make duration_s at least 30 "
        "or ramp_ms at most 10000"
    ), exc.message
    # no ramp_ms: the default ramp time counts (the device passes its ramp_default_ms setting)
    plain = _program([("tens", 60, True), ("rest", 15, False)])
    exc = raises(msg.RequestError, parse_program, plain, ramp_default_ms=20000)
    assert exc.code == msg.E_OUT_OF_RANGE
    for word in ("phases[1].duration_s", "15 s", "20000 ms", "the program has no ramp_ms", "duration_s at least 20",
                 "ramp_ms at most 15000"):
        assert word in exc.message, (word, exc.message)
    assert parse_program(plain).phases[1].duration_ms == 15000  # with the 5 s default it fits
    # at a whole number of seconds above 10 s, the second after the limit
    exc = raises(msg.RequestError, parse_program, _program([("a", 10, True), ("b", 12, False)], ramp_ms=12001))
    assert "duration_s at least 13" in exc.message and "ramp_ms at most 12000" in exc.message, exc.message
    # the first such phase is named, wherever it is
    later = _program([("a", 10, True), ("b", 40, False), ("c", 10, True), ("d", 25, False)], ramp_ms=30000)
    assert "phases[3].duration_s 25 s" in raises(msg.RequestError, parse_program, later).message


def test_tens_off_phases_with_nothing_to_ramp_down_or_time_enough_are_accepted():
    ok = (
        _program([("a", 10, True), ("b", 30, False), ("c", 10, True)], ramp_ms=30000),  # exactly the ramp time
        _program([("warm", 10, False), ("tens", 10, True)], ramp_ms=30000),  # first phase: output starts at zero
        _program([("a", 10, True), ("b", 30, False), ("c", 10, False)], ramp_ms=30000),  # after an off phase
        _program([("heat", 10, False), ("more", 10, False)], ramp_ms=30000, amps=(), heat="low"),  # no channels
        _program([("a", 10, True), ("b", 10, False)], ramp_ms=10000),
        _program([("a", 10, True), ("b", 10, False)]),  # the default 5 s
    )
    for source in ok:
        program = parse_program(source)
        assert parse_program(program.source).source == program.source
    for source in presets.PRESETS:  # every built-in preset still parses, at the longest ramp too
        parse_program(source)
        parse_program(source, ramp_default_ms=L.RAMP_MAX_MS)


def test_program_put_and_the_start_of_a_stored_program_refuse_it_on_the_device():
    h = Harness()
    audit = _program([("tens", 10, True), ("rest", 10, False), ("again", 10, True)], ramp_ms=30000)
    reply = h.request("program_put", {"program": audit}, ticks=3)
    assert reply["ok"] is False and reply["err"] == msg.E_OUT_OF_RANGE, reply
    assert "phases[1].duration_s 10 s" in reply["msg"] and "ramp_ms" in reply["msg"], reply
    assert h.ok("programs")["stored"] == []
    h.device.clinic.store.put(audit)  # stored before this check existed: checked again at start
    reply = h.request("start", {"program": "rx-ramp", "lease_ms": 0})
    assert reply["ok"] is False and reply["err"] == msg.E_OUT_OF_RANGE, reply
    assert "phase rest" in reply["msg"] and "ramp_ms at most 10000" in reply["msg"], reply
    assert h.state == "IDLE" and h.amps() == [0, 0]


def test_a_program_without_ramp_ms_is_checked_against_the_devices_own_ramp_default():
    """It runs with the ramp_default_ms setting, so that is the ramp its TENS-off phases must hold."""
    h = Harness()
    plain = _program([("tens", 10, True), ("rest", 10, False), ("again", 10, True)])
    assert h.ok("program_put", {"program": plain})["ok"] is True  # 10 s >= the 5 s default
    h.ok("settings", {"set": {"ramp_default_ms": 20000}})
    reply = h.request("start", {"program": "rx-ramp", "lease_ms": 0})
    assert reply["ok"] is False and reply["err"] == msg.E_OUT_OF_RANGE, reply
    assert "ramp time 20000 ms" in reply["msg"] and "phase rest" in reply["msg"], reply
    assert h.state == "IDLE" and h.amps() == [0, 0]
    h.ok("program_delete", {"name": "rx-ramp"})
    reply = h.request("program_put", {"program": plain}, ticks=3)
    assert reply["ok"] is False and reply["err"] == msg.E_OUT_OF_RANGE and "20000 ms" in reply["msg"], reply
    h.ok("settings", {"set": {"ramp_default_ms": 10000}})  # 10 s ramp, 10 s phase: enough
    assert h.ok("program_put", {"program": plain})["ok"] is True
    assert h.ok("start", {"program": "rx-ramp", "lease_ms": 0})["state"] == "RUNNING"


# ---- the run of any valid program ---------------------------------------------------------


def _run_checked(h, program, ramp_ms):
    """Run a started program to its end; at every tick, the phase rules:
    - a TENS-off phase: no output from its start + the ramp time, and none in its last tick;
    - a TENS phase after a TENS-off phase: its ramp starts from zero (at most one ramp step in
      each of its first two ticks, then the ramp's steps)."""
    starts = []
    end_ms = 0
    for phase in program.phases:
        starts.append(end_ms)
        end_ms += phase.duration_ms
    starts.append(end_ms)
    checked_off = 0
    checked_on = 0
    for n in range(program.session_ms // TICK_MS + 10):
        if n % 500 == 0:
            h.forget()  # the VM's heap: keep only this stretch's pulses
        before = len(h.pulses)
        h.tick()
        device = h.device
        if device.run is None or device.stopping or h.state != "RUNNING":
            continue
        run_ms = device.session_run_ms
        index = program.phase_index_at(run_ms)
        phase = program.phases[index]
        start_ms = starts[index]
        where = "program %s, phase %s, %d ms in, amps %s" % (program.name, phase.name, run_ms, h.amps())
        if not phase.tens and (run_ms >= start_ms + ramp_ms or run_ms + TICK_MS == starts[index + 1]):
            assert h.amps() == [0] * len(h.amps()) and len(h.pulses) == before, "output in a TENS-off phase: " + where
            checked_off += 1
        if phase.tens and index > 0 and not program.phases[index - 1].tens and run_ms < start_ms + 2 * TICK_MS:
            for channel in device.channels:
                assert channel.amp_ua <= channel.ramp_step_ua, "TENS came back above zero: " + where
            checked_on += 1
    return checked_off, checked_on


def _generated(rng, n):
    ramps = (None, 1000, 5000, 12000, 20000, 30000)
    durations = (10, 12, 20, 30)
    ramp_ms = ramps[rng.below(len(ramps))]
    phases = []
    for i in range(2 + rng.below(3)):
        tens = i % 2 == 0 if rng.below(3) else rng.below(2) == 0
        phases.append(("p%d" % i, durations[rng.below(len(durations))], tens))
    amps = []
    for _ in range(1 + rng.below(2)):
        amps.append((1 + rng.below(80)) * 1000)
    heat = ("low", None)[rng.below(2)]
    interlock = ("alternate", "concurrent", None)[rng.below(3)] if heat else None
    return _program(phases, ramp_ms, amps, heat, interlock, name="rx-gen%d" % n)


def _cases():
    yield _program([("tens", 10, True), ("rest", 10, False), ("again", 10, True)], ramp_ms=30000)  # the audit's
    yield _program([("tens", 10, True), ("rest", 30, False), ("again", 10, True)], ramp_ms=30000, amps=(60000, 80000))
    yield _program([("tens", 20, True), ("rest", 10, False), ("again", 10, True)], ramp_ms=10000, amps=(80000,))
    yield _program([("rest", 10, False), ("tens", 10, True), ("off", 12, False), ("on", 10, True)], ramp_ms=12000,
                   amps=(30000, 5000), heat="low", interlock="alternate")
    rng = Lcg(2024)
    for n in range(10):
        yield _generated(rng, n)


def test_in_any_valid_program_the_output_is_zero_through_each_tens_off_phase_and_tens_restarts_from_zero():
    ran = 0
    refused = 0
    checked_off = 0
    checked_on = 0
    for source in _cases():
        ramp_ms = source.get("ramp_ms", L.RAMP_DEFAULT_MS)
        expect_refused = _short_off_phases(source, ramp_ms)
        try:
            program = parse_program(source)
        except msg.RequestError as exc:
            assert expect_refused, ("refused though no TENS-off phase is short", exc.message, source)
            assert ("phases[%d].duration_s" % expect_refused[0]) in exc.message, exc.message
            refused += 1
            continue
        h = Harness()
        h.ok("program_put", {"program": program.source}, ticks=3)  # a long request takes more than one tick
        h.ok("start", {"program": program.name, "lease_ms": 0})
        counts = _run_checked(h, program, ramp_ms)
        assert not expect_refused, ("accepted a TENS-off phase shorter than the ramp", expect_refused, source)
        checked_off += counts[0]
        checked_on += counts[1]
        ran += 1
    assert ran >= 5 and refused >= 2 and checked_off > 1000 and checked_on >= 4, (ran, refused, checked_off, checked_on)


# ---- (b) the cut at a TENS phase's start ---------------------------------------------------


def _started_bypassing_validation(h, source, phase_s):
    """Start `source` with some phases shortened past what the parser allows (a program from
    before the check, or any other way a channel is still ramping down at a TENS phase)."""
    program = parse_program(source)
    for index in phase_s:
        program.session_ms += phase_s[index] * 1000 - program.phases[index].duration_ms
        program.phases[index].duration_ms = phase_s[index] * 1000
    h.device.clinic.load_program = lambda name: program
    h.ok("start", {"program": program.name, "lease_ms": 0})
    return program


def test_a_tens_phase_cuts_a_channel_still_ramping_down_to_zero_before_the_patients_amplitude_returns():
    h = Harness()
    source = _program([("tens", 10, True), ("rest", 30, False), ("again", 40, True)], ramp_ms=30000,
                      amps=(60000, 30000), heat="low", interlock="alternate")
    _started_bypassing_validation(h, source, {1: 10})
    h.tick(999)
    assert h.amps() == [19980, 9990], h.amps()  # a third of the ramp up
    h.tick(1000)  # `rest`, to its last tick: still ramping down, not at zero
    assert h.device.run.phase.name == "rest" and h.amps() == [9980, 0], h.amps()  # ch 1 got there, ch 0 not
    before = len(h.pulses)
    h.tick()  # `again` begins: cut to zero
    assert h.device.run.phase.name == "again" and h.amps() == [0, 0], h.amps()
    h.tick()  # the patient's amplitude comes back, from zero
    assert [c.target_ua for c in h.device.channels] == [60000, 30000]
    assert h.amps()[0] <= h.ch(0).ramp_step_ua and h.amps()[1] <= h.ch(1).ramp_step_ua, h.amps()
    for pulse in h.pulses[before:]:
        assert pulse[3] <= h.ch(pulse[1]).ramp_step_ua, pulse  # no pulse from what was left of the ramp-down
    ticks = h.tick_until(lambda: h.amps()[0] == 60000, limit=4000)
    assert ticks + 1 == ramp_ticks(60000, 30000), ticks  # a whole ramp from zero
    assert h.state == "RUNNING"


def test_a_request_in_the_tick_of_the_cut_is_the_amplitude_that_returns():
    h = Harness()
    source = _program([("tens", 10, True), ("rest", 30, False), ("again", 40, True)], ramp_ms=30000)
    _started_bypassing_validation(h, source, {1: 10})
    h.tick(1999)
    assert h.amps()[0] > 0
    h.send("set_amp", {"ch": 0, "amp_ua": 4000})  # handled in the tick `again` begins, after the cut
    h.tick(2)
    assert h.ch(0).target_ua == 4000 and 0 < h.amps()[0] <= h.ch(0).ramp_step_ua, (h.ch(0).target_ua, h.amps())
    h.tick(3000)
    assert h.amps()[0] == 4000


def test_a_step_in_the_tick_of_the_cut_starts_from_the_patients_amplitude_not_from_zero():
    """The channels' targets are zero in that tick: a step (a request or the board's buttons)
    must start from the amplitude that is about to come back, even while paused there."""
    for how in ("request", "button", "paused"):
        h = Harness()
        source = _program([("tens", 10, True), ("rest", 30, False), ("again", 40, True)], ramp_ms=30000)
        _started_bypassing_validation(h, source, {1: 10})
        h.tick(1999)
        if how == "request":
            h.send("amp_step", {"ch": 0, "steps": 1})  # handled in the tick `again` begins
            h.tick()
        elif how == "button":
            h.tick()  # `again` begins: the targets are still zero
            assert h.device.run.phase.name == "again" and h.ch(0).target_ua == 0
            assert h.device.button_step(-2) == 1  # a step down is not skipped for a zero target
        else:
            h.send("pause")
            h.tick()
            assert h.state == "PAUSED" and h.ch(0).target_ua == 0
            reply = h.request("amp_step", {"ch": 0, "steps": 1})
            assert reply["ok"] is True and reply["target_ua"] == 60500, reply
            h.ok("resume")
        h.tick(2)
        expected = 59000 if how == "button" else 60500
        assert h.ch(0).target_ua == expected, (how, h.ch(0).target_ua)
        for _ in range(7):  # a whole 30 s ramp, before the program's end
            h.forget()  # the VM's heap: keep only this stretch's pulses
            h.tick(500)
        assert h.amps()[0] == expected, (how, h.amps())


def test_without_a_cut_tens_comes_back_from_zero_at_the_ramp_it_announced():
    # a TENS-off phase long enough: nothing to cut; the ramp up starts from zero, the step it
    # takes shown a tick before it moves (the harness's invariants check every tick)
    h = Harness()
    source = _program([("tens", 10, True), ("rest", 40, False), ("again", 40, True)], ramp_ms=30000)
    h.ok("program_put", {"program": source}, ticks=3)
    h.ok("start", {"program": "rx-ramp", "lease_ms": 0})
    h.tick(4999)
    assert h.amps() == [0, 0] and h.device.run.phase.name == "rest"
    h.tick(2)
    assert h.ch(0).target_ua == 60000 and h.amps()[0] <= h.ch(0).ramp_step_ua
    ticks = h.tick_until(lambda: h.amps()[0] == 60000, limit=4000)
    assert ticks + 1 == ramp_ticks(60000, 30000), ticks
