"""The safety invariants of one device tick, checked on a compact per-tick record.

One checker for every place the device runs under test: the in-process harness
(tests/fw/harness.py, CPython and the MicroPython VM), the hypothesis state
machine (through the harness) and the audit lines a scenario run writes under
either runtime (sim.scenario.ScenarioRun(..., audit=...), parsed in CPython).
Portable: plain lists, ints and asserts.

A record (built by sim/audit.py) describes the device *after* one tick (requests
of that tick handled): [t_ms, state, faults, chans, pulses, replies, heat].

The tick's own inputs are the previous record: states change only inside a
tick, so the state, amplitudes, ramp step and setting in force while the tick
ran its control step are those the previous record shows.
"""

from firmware import limits as L

TICK_US = L.TICK_MS * 1000
RMS_WINDOW_US = 1000000
SPACING_MIN_US = 1000000 // L.RATE_MAX_HZ  # two pulses of a channel never closer (250 Hz)
# Requests whose success is an interruption: output zero now, the next pulses ramp from zero.
# (A hello is not one: observers may connect to a running session; see Device._op_hello.)
INTERRUPTING = ("pause", "estop", "resume", "start", "clear_fault")
HEATING_STATES = ("heating", "holding", "autotune")

A_AMP = 0
A_TARGET = 1
A_MAX = 2
A_STEP = 3
A_PHASE = 4
A_GAP = 5
A_RATIO = 6
A_DRIVER = 7
A_REFUSED = 8


def boot_record(channels):
    """What a freshly built device looks like before its first tick."""
    chans = []
    for _ in range(channels):
        chans.append([0, 0, 0, 10, 0, 0, 1, 0, 0])
    return [0, "IDLE", [], chans, [], [], []]


class InvariantChecker:
    def __init__(self, channels):
        self.prev = boot_record(channels)
        self.first = True
        self.ticks = 0
        self.pulses = 0
        # r.m.s. over a sliding 1 s per channel: a queue of (time_us, i2t) and its sum
        self._win = []
        self._win_head = []
        self._win_sum = []
        self._last_pulse_us = []  # per channel: when its last pulse started (time_us), or None
        self._last_pulse_amp = []  # per channel: the phase-1 current of its last pulse, or None
        self._last_pulse_ms = []  # per channel: the tick (t_ms) of its last pulse
        for _ in range(channels):
            self._last_pulse_us.append(None)
            self._last_pulse_amp.append(None)
            self._last_pulse_ms.append(0)
            self._win.append([])
            self._win_head.append(0)
            self._win_sum.append(0)
        self.rms_sq_limit = L.RMS_LIMIT_UA * L.RMS_LIMIT_UA * RMS_WINDOW_US

    def step(self, record):
        """Check one tick's record against the previous one; AssertionError names the breach."""
        prev = self.prev
        t_ms = record[0]
        state = record[1]
        faults = record[2]
        chans = record[3]
        pulses = record[4]
        replies = record[5]
        where = "t=%d ms, state %s -> %s, faults %s" % (t_ms, prev[1], state, faults)
        began = prev[1]
        pchans = prev[3]
        cleared = False
        interrupted_all = False
        for reply in replies:
            if reply[1] is True and reply[0] == "clear_fault":
                cleared = True
            if reply[1] is True and reply[0] in INTERRUPTING:
                interrupted_all = True

        # -- supervisor: FAULT iff faults latched; latched until a successful clear_fault
        assert (state == "FAULT") == (len(faults) > 0), "FAULT state and fault list disagree: " + where
        if not cleared:
            for name in prev[2]:
                assert name in faults, "fault %s unlatched without clear_fault: %s" % (name, where)
            if began == "FAULT":
                assert state == "FAULT", "left FAULT without clear_fault: " + where
        else:
            assert state in ("IDLE", "FAULT"), "clear_fault must leave the device IDLE: " + where

        # -- pulses: only in RUNNING, inside the envelope in force, balanced, from the ramp
        if began != "RUNNING":
            assert not pulses, "%d pulse(s) in a tick that began in %s: %s" % (len(pulses), began, where)
        for pulse in pulses:
            ch = pulse[0]
            p = pchans[ch]
            start_us = pulse[1]
            amp1 = pulse[2]
            phase1 = pulse[3]
            gap = pulse[4]
            amp2 = pulse[5]
            phase2 = pulse[6]
            what = "ch %d pulse %s (max %d, step %d, base %d, phase %d): %s" % (
                ch, pulse[1:], p[A_MAX], p[A_STEP], p[A_AMP], p[A_PHASE], where)
            assert 0 <= start_us < TICK_US, "pulse outside the tick window: " + what
            assert 0 <= amp1 <= p[A_MAX] and amp1 <= L.AMP_LIMIT_UA, "pulse above the channel's maximum: " + what
            assert L.PHASE_MIN_US <= phase1 <= p[A_PHASE], "phase outside the setting: " + what
            assert gap == p[A_GAP], "gap differs from the setting: " + what
            assert phase2 == phase1 * p[A_RATIO] and amp2 * p[A_RATIO] == amp1, "phase 2 not the setting's ratio: " + what
            assert amp1 * phase1 == amp2 * phase2, "net charge not zero: " + what
            assert amp1 * phase1 <= L.PHASE_CHARGE_LIMIT_NC * 1000, "phase charge above the hard limit: " + what
            # the base amplitude moves at most one ramp step per tick (from zero after any interruption)
            assert amp1 <= p[A_AMP] + p[A_STEP], "pulse above the ramp: " + what
            at_us = t_ms * 1000 + start_us
            last_us = self._last_pulse_us[ch]
            # the highest rate any setting allows, across ticks and every restart of a train too
            assert last_us is None or at_us - last_us >= SPACING_MIN_US, (
                "pulse %d us after the last, closer than %d us: %s" % (at_us - last_us, SPACING_MIN_US, what))
            self._last_pulse_us[ch] = at_us
            # what fires (ramp and modulation together) never rises faster than the steepest ramp
            last_amp1 = self._last_pulse_amp[ch]
            if last_amp1 is not None:
                ticks = (t_ms - self._last_pulse_ms[ch]) // L.TICK_MS
                assert amp1 - last_amp1 <= L.RAMP_MAX_UA_PER_TICK * (ticks if ticks > 1 else 1), (
                    "fired amplitude rose %d uA in %d tick(s), steeper than the steepest ramp: %s"
                    % (amp1 - last_amp1, ticks, what))
            self._last_pulse_amp[ch] = amp1
            self._last_pulse_ms[ch] = t_ms
            self._rms(ch, at_us, amp1 * amp1 * phase1 + amp2 * amp2 * phase2, what)
        self.pulses += len(pulses)

        # -- amplitudes
        for ch in range(len(chans)):
            c = chans[ch]
            p = pchans[ch]
            what = "ch %d %s -> %s: %s" % (ch, p, c, where)
            amp = c[A_AMP]
            assert 0 <= amp <= c[A_MAX] and c[A_MAX] <= L.AMP_LIMIT_UA, "amplitude above the channel's maximum: " + what
            assert 0 <= c[A_TARGET] <= c[A_MAX], "target above the channel's maximum: " + what
            assert 10 <= c[A_STEP] <= L.RAMP_MAX_UA_PER_TICK, "ramp step out of bounds: " + what
            if not self.first:
                rise = amp - p[A_AMP]
                assert rise <= p[A_STEP], "amplitude rose by %d > step %d: %s" % (rise, p[A_STEP], what)
                assert -rise <= p[A_STEP] or amp == 0, "amplitude fell by %d > step %d, not to 0: %s" % (-rise, p[A_STEP], what)
            if state != "RUNNING":
                assert amp == 0, "amplitude not zero outside RUNNING: " + what
                assert c[A_DRIVER] == 0, "driver output not zero outside RUNNING: " + what
            if interrupted_all:
                assert amp == 0, "amplitude not back to zero after an interruption %s: %s" % (replies, what)
            if c[A_REFUSED] != p[A_REFUSED]:
                assert amp == 0, "a refused pulse did not restart the ramp: " + what
        for reply in replies:
            if reply[1] is True and reply[0] == "set_stim" and 0 <= reply[2] < len(chans):
                assert chans[reply[2]][A_AMP] == 0, "set_stim did not restart ch %d from zero: %s" % (reply[2], where)
        if record[6]:
            self._heat(record[6], state, faults, chans, pulses, where)
        self.prev = record
        self.first = False
        self.ticks += 1

    def _heat(self, heat, state, faults, chans, pulses, where):
        """The heater switch is on only while a session RUNS with heat on and nothing latched;
        under the `alternate` interlock, never in a tick with a pulse or a channel's target."""
        heat_state = heat[0]
        heater_on = heat[1]
        where = "heat %s, heater %s: %s" % (heat_state, "on" if heater_on else "off", where)
        if heat_state == "fault":
            assert state == "FAULT", "heat fault latched but the device is not in FAULT: " + where
        if not heater_on:
            return
        assert state == "RUNNING" and not faults, "heater on outside RUNNING or with a fault latched: " + where
        assert heat_state in HEATING_STATES, "heater on while heat is not on: " + where
        if heat[2]:
            assert not pulses, "alternate interlock: heater on in a tick with pulses: " + where
            for c in chans:
                assert c[A_AMP] == 0 and c[A_TARGET] == 0, "alternate interlock: heater on with a channel on: " + where

    def _rms(self, ch, t_us, i2t, what):
        win = self._win[ch]
        head = self._win_head[ch]
        total = self._win_sum[ch] + i2t
        win.append((t_us, i2t))
        while win[head][0] <= t_us - RMS_WINDOW_US:
            total -= win[head][1]
            head += 1
        if head > 256:
            del win[:head]
            head = 0
        self._win_head[ch] = head
        self._win_sum[ch] = total
        assert total <= self.rms_sq_limit, "r.m.s. current over 1 s above %d uA (%d uA^2.us): %s" % (
            L.RMS_LIMIT_UA, total, what)


def check_records(records, channels):
    """Check a list of records in order; returns the checker (ticks, pulses counted)."""
    checker = InvariantChecker(channels)
    for record in records:
        checker.step(record)
    return checker
