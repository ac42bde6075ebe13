"""A Device over simulated drivers (sim.board.SimBoard), driven like a host would.

Every tick is checked against the safety invariants of tests/fw/invariants.py
(the same checker that reads the audit lines of scenario runs), so each device
test also checks them (portable: runs under CPython and MicroPython):

- outputs (channel amplitude and driver) are zero whenever the state is not RUNNING,
  and no pulse fires in a tick that began outside RUNNING;
- amplitude and target never above the channel's max_amp_ua;
- the base amplitude rises by at most ramp_step_ua per tick and falls by at most
  that, except straight to zero (an interruption: the safe direction);
- every pulse: amp1 * phase1 == amp2 * phase2 (zero net charge), amp1 <= max_amp_ua,
  phase1 <= the setting's phase_us, gap and ratio as set, phase charge under the
  hard limit, and no more than one ramp step above the base amplitude before it;
- after any interruption (pause, fault, estop, electrode off, set_stim, start,
  resume, clear_fault, a refused pulse) amplitude is zero, so the next pulses start
  from the bottom of the ramp (a hello is not an interruption: see Device._op_hello);
- FAULT is latched until a successful clear_fault; r.m.s. over any 1 s under the hard limit.
"""

from firmware import limits
from firmware.protocols import frame
from sim import faults
from sim.board import SimBoard
from sim.audit import ReplyTracker, record, reply_entry
from tests.fw.invariants import InvariantChecker

TICK_MS = 10


class Harness:
    def __init__(self, seed=1, start_ms=0, channels=2, serial=None, pulse_lead_us=0):
        self.board = SimBoard(seed=seed, start_ms=start_ms, channels=channels, pulse_lead_us=pulse_lead_us)
        if serial is not None:
            self.board.serial = serial
        self.device = self.board.build_device()
        self.reader = frame.LineReader()
        self.inbox = []  # every decoded message from the device, in order
        self._raw = []  # every chunk of bytes from the device (see `raw`)
        self.host_errors = 0  # damaged lines from the device (should stay 0)
        # (tick, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us, delivered_ua)
        self.pulses = []
        self.board.pulse_out.recorder = self._record
        self.next_id = 1
        self.sent_ops = {}  # request id -> op of the last request sent with it
        self.tracker = ReplyTracker()  # which replies ran their request (not from the reply cache)
        self.check_invariants = True
        self.checker = InvariantChecker(channels)
        self.records = 0  # ticks recorded
        self.kept = None  # set to [] to keep every tick's record

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
        self.sent_ops[request_id] = op
        self.send_message(message)
        return request_id

    def send_message(self, message):
        data = frame.encode_frame(message)
        if "op" in message or ("ev" not in message and "ok" not in message):
            self.tracker.sent(message)  # a frame with an op is a request, whatever else it carries
        self.board.serial.host_write(data)

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

    def ok(self, op, fields=None, ticks=1):
        """A request that must succeed; returns the reply."""
        reply = self.request(op, fields, ticks)
        assert reply["ok"] is True, "%s %r failed: %r" % (op, fields, reply)
        return reply

    def fault(self, name, active=True):
        faults.set_fault(self.board, name, active)

    def events(self, name=None, since=0):
        return [m for m in self.inbox[since:] if "ev" in m and (name is None or m["ev"] == name)]

    def replies(self, since=0):
        return [m for m in self.inbox[since:] if "ok" in m]

    def forget(self):
        """Drop what was recorded so far (pulses, messages, raw bytes): long runs in the VM's
        small heap keep only what is new."""
        self.pulses = []
        self.inbox = []
        self._raw = []

    # ---- time ---------------------------------------------------------------------

    def tick(self, count=1):
        for _ in range(count):
            self._tick_once()

    def tick_until(self, predicate, limit=10000):
        """Tick until predicate() holds; returns the number of ticks it took."""
        for n in range(limit):
            if predicate():
                return n
            self._tick_once()
        raise AssertionError("condition not reached in %d ticks" % limit)

    @property
    def raw(self):
        """Every byte from the device so far. Kept as chunks: one growing buffer would need
        an ever larger contiguous block, which the VM's small, fragmented heap may not have."""
        if len(self._raw) > 1:
            self._raw = [b"".join(self._raw)]
        return self._raw[0] if self._raw else b""

    @property
    def state(self):
        return self.device.supervisor.state_name

    @property
    def faults(self):
        return list(self.device.supervisor.faults)

    def amps(self):
        return [c.amp_ua for c in self.device.channels]

    def ch(self, index):
        return self.device.channels[index]

    def pulses_on(self, ch, since=0):
        return [p for p in self.pulses[since:] if p[1] == ch]

    # ---- internals ------------------------------------------------------------------

    def _record(self, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us, delivered_ua):
        self.pulses.append((self.device.ticks, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us, delivered_ua))

    def _tick_once(self):
        pulses_before = len(self.pulses)
        inbox_before = len(self.inbox)
        self.device.tick()
        self._collect()
        record = self.audit_record(pulses_before, inbox_before)
        if self.check_invariants:
            self.checker.step(record)
        else:
            self.checker.prev = record
        self.records += 1
        if self.kept is not None:
            self.kept.append(record)
        self.board.advance(TICK_MS)

    def audit_record(self, pulses_before, inbox_before):
        """This tick as an audit record (sim/audit.py; checked by tests/fw/invariants.py)."""
        pulses = []
        for p in self.pulses[pulses_before:]:
            pulses.append([p[1], p[2], p[3], p[4], p[5], p[6], p[7]])
        replies = []
        for m in self.inbox[inbox_before:]:
            if "ok" in m:
                replies.append(reply_entry(self.tracker, m))
        return record(self.board.clock.elapsed_ms, self.device, self.board.pulse_out, pulses, replies)

    def _collect(self):
        data = self.board.serial.host_read()
        if not data:
            return
        self._raw.append(data)
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


def ramp_ticks(amp_ua, ramp_ms=limits.RAMP_DEFAULT_MS):
    """Ticks a ramp from zero to amp_ua takes with the step the channel computes."""
    from firmware.stim import ramp_step_for

    step = ramp_step_for(amp_ua, ramp_ms)
    return (amp_ua + step - 1) // step
