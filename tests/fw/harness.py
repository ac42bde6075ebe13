"""A Device over simulated drivers (sim.board.SimBoard), driven like a host would.

Every tick is checked against the safety invariants, so each device test also
checks them (portable: runs under CPython and MicroPython):

- outputs are zero (driver and channel) whenever the state after a tick is not RUNNING;
- no pulse is fired during a tick that began outside RUNNING or with a fault latched;
- no pulse and no channel amplitude above limits.AMP_LIMIT_UA;
- amplitude rises at most RAMP_UA_PER_TICK per tick, and falls by at most that or to zero.
"""

from firmware import limits
from firmware import supervisor as sup
from firmware.protocols import frame
from sim import faults
from sim.board import SimBoard

TICK_MS = 10


class Harness:
    def __init__(self, seed=1, start_ms=0, channels=1, serial=None):
        self.board = SimBoard(seed=seed, start_ms=start_ms, channels=channels)
        if serial is not None:
            self.board.serial = serial
        self.device = self.board.build_device()
        self.reader = frame.LineReader()
        self.inbox = []  # every decoded message from the device, in order
        self.raw = b""  # every byte from the device
        self.host_errors = 0  # damaged lines from the device (should stay 0)
        self.pulses = []  # (tick, ch, start_us, amp_ua, phase_us, gap_us, delivered_ua)
        self.board.pulse_out.recorder = self._record
        self.next_id = 1
        self.check_invariants = True

    # ---- host side -------------------------------------------------------------

    def send(self, op, fields=None, request_id=None):
        """Queue a request; returns its id."""
        if request_id is None:
            request_id = self.next_id
            self.next_id += 1
        message = {"id": request_id, "op": op}
        if fields:
            for key in fields:
                message[key] = fields[key]
        self.board.serial.host_write(frame.encode_frame(message))
        return request_id

    def send_message(self, message):
        self.board.serial.host_write(frame.encode_frame(message))

    def send_raw(self, data):
        self.board.serial.host_write(data)

    def request(self, op, fields=None, ticks=1, request_id=None):
        """Send, tick, return the one reply to it (fails if there is none or several)."""
        request_id = self.send(op, fields, request_id)
        start = len(self.inbox)
        self.tick(ticks)
        found = [m for m in self.inbox[start:] if m.get("id") == request_id and "ok" in m]
        assert len(found) == 1, "expected one reply to %s id %d, got %r" % (op, request_id, found)
        return found[0]

    def fault(self, name, active=True):
        faults.set_fault(self.board, name, active)

    def events(self, name=None, since=0):
        return [m for m in self.inbox[since:] if "ev" in m and (name is None or m["ev"] == name)]

    def replies(self, since=0):
        return [m for m in self.inbox[since:] if "ok" in m]

    # ---- time ---------------------------------------------------------------------

    def tick(self, count=1):
        for _ in range(count):
            self._tick_once()

    def tick_until(self, predicate, limit=10000):
        for n in range(limit):
            if predicate():
                return n
            self._tick_once()
        raise AssertionError("condition not reached in %d ticks" % limit)

    @property
    def state(self):
        return self.device.supervisor.state_name

    @property
    def faults(self):
        return list(self.device.supervisor.faults)

    def amps(self):
        return [c.amp_ua for c in self.device.channels]

    # ---- internals ------------------------------------------------------------------

    def _record(self, ch, start_us, amp_ua, phase_us, gap_us, delivered_ua):
        self.pulses.append((self.device.ticks, ch, start_us, amp_ua, phase_us, gap_us, delivered_ua))

    def _tick_once(self):
        device = self.device
        began = device.supervisor.state
        began_faulted = len(device.supervisor.faults) > 0
        amps_before = self.amps()
        pulses_before = len(self.pulses)
        device.tick()
        self._collect()
        if self.check_invariants:
            self._check(began, began_faulted, amps_before, pulses_before)
        self.board.clock.advance(TICK_MS)

    def _collect(self):
        data = self.board.serial.host_read()
        if not data:
            return
        self.raw += data
        for line in self.reader.feed(data):
            if line is None:
                self.host_errors += 1
                continue
            try:
                message = frame.decode_line(line)
            except frame.FrameError:
                self.host_errors += 1
                continue
            if message is not None:
                self.inbox.append(message)

    def _check(self, began, began_faulted, amps_before, pulses_before):
        device = self.device
        where = "tick %d (state %s, faults %s)" % (device.ticks, self.state, self.faults)
        new_pulses = self.pulses[pulses_before:]
        if began != sup.RUNNING or began_faulted:
            assert not new_pulses, "pulse fired in a tick that began outside RUNNING: " + where
        for pulse in new_pulses:
            assert 0 < pulse[3] <= limits.AMP_LIMIT_UA, "pulse amplitude %d: %s" % (pulse[3], where)
            assert pulse[4] == limits.PHASE_US and pulse[5] == limits.GAP_US, where
        if device.supervisor.state != sup.RUNNING:
            for ch in range(len(device.channels)):
                assert device.channels[ch].amp_ua == 0, "channel amplitude not zero: " + where
                assert self.board.pulse_out.last_commanded_ua[ch] == 0, "driver output not zero: " + where
        amps = self.amps()
        for ch in range(len(amps)):
            assert 0 <= amps[ch] <= limits.AMP_LIMIT_UA, where
            step = amps[ch] - amps_before[ch]
            assert step <= limits.RAMP_UA_PER_TICK, "rose by %d: %s" % (step, where)
            assert step >= -limits.RAMP_UA_PER_TICK or amps[ch] == 0, "fell by %d: %s" % (-step, where)
