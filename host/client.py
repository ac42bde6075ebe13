"""Request/reply client for the pulsewarm protocol, over any transport.

The device answers each request once, by id, and caches recent replies: a
request repeated with the same id is answered again but not run again. So
the client can safely resend a request whose reply it did not see (lost,
damaged, or late) without starting a session twice. Everything else on the
line is either an event (passed to a callback and kept) or not a frame at all
(a MicroPython banner, a traceback: ignored).

Framing and message checks come from `firmware.protocols`, the same code the
device runs, so the two ends cannot drift apart.
"""

import secrets
import time
from collections import deque

from firmware.protocols import frame
from firmware.protocols import messages as msg

DEFAULT_TIMEOUT_S = 1.0
RETRIES = 1  # resends of an unanswered request, always with the same id
KEEP_EVENTS = 32
# requests a device in patient mode accepts only with the clinician PIN (docs/protocol.md)
CLINICIAN_OPS = (
    msg.OP_SETTINGS, msg.OP_PROGRAM_PUT, msg.OP_PROGRAM_DELETE, msg.OP_LOG_ERASE, msg.OP_MAINTENANCE,
    msg.OP_START, msg.OP_SET_STIM, msg.OP_PIN,
)
_RESEND = object()  # marker: the device reported a damaged line, resend without waiting out the timeout


class ClientError(Exception):
    """Base of the errors a device conversation can end in."""


class DeviceError(ClientError):
    """The device answered with an error reply: `code` is stable, `message` is for people."""

    def __init__(self, op, code, message):
        ClientError.__init__(self, "device refused %s: %s (%s)" % (op, message, code))
        self.op = op
        self.code = code
        self.message = message


class NoResponse(ClientError):
    """No reply within the timeout, even after resending."""

    def __init__(self, port, op, request_id, waited_s, attempts):
        text = "no reply from %s to %s (request id %d): waited %s s" % (port, op, request_id, _seconds(waited_s))
        if attempts > 1:
            text += " over %d attempts with the same id" % attempts
        text += "; is a pulsewarm device on that port, and no other program using it?"
        ClientError.__init__(self, text)
        self.port = port
        self.op = op
        self.waited_s = waited_s


class VersionMismatch(ClientError):
    """The device speaks another major protocol version than this host."""

    def __init__(self, text, host_version, device_version):
        ClientError.__init__(self, text)
        self.host_version = host_version
        self.device_version = device_version


class ProtocolError(ClientError):
    """The device answered, but not the way the protocol says it must."""


def _seconds(value):
    return ("%.3f" % value).rstrip("0").rstrip(".")


def _random_first_id():
    """A fresh id range per session.

    The device's reply cache outlives a host session: a second `tensctl` run
    that starts counting at 1 again would get the cached replies meant for the
    first one (a `start` answered from cache, never run). Starting each session
    at a random point of the 31-bit id space makes that practically impossible.
    """
    return 1 + secrets.randbelow(msg.MAX_REQUEST_ID // 2)


class Client:
    """One host conversation with one device, one request at a time.

    on_event: optional callable(event dict), called for every event as it is read.
    first_id: the first request id (random by default, see `_random_first_id`).
    clock: seconds as a float, for timeouts (tests pass a simulated one).
    """

    proto_version = msg.PROTO_VERSION
    supported_majors = msg.SUPPORTED_MAJORS

    def __init__(
        self,
        transport,
        timeout_s=DEFAULT_TIMEOUT_S,
        retries=RETRIES,
        on_event=None,
        first_id=None,
        clock=time.monotonic,
        keep_events=KEEP_EVENTS,
        pin=None,
    ):
        self.transport = transport
        self.pin = pin  # the clinician PIN, sent only with the requests that need it
        self.timeout_s = timeout_s
        self.retries = retries
        self.on_event = on_event
        self.clock = clock
        self.events = deque(maxlen=keep_events)  # the most recent events, oldest first
        self.last_state = None  # the last "state" event
        self.device = None  # the hello reply, once hello() succeeded
        self.rx_errors = 0  # damaged lines from the device (dropped)
        self.resends = 0
        self._next_id = first_id if first_id is not None else _random_first_id()
        self._reader = frame.LineReader()

    @property
    def port_name(self):
        return getattr(self.transport, "name", None) or getattr(self.transport, "url", "?")

    # ---- the request/reply loop ------------------------------------------------

    def _take_id(self):
        request_id = self._next_id
        self._next_id = request_id + 1 if request_id < msg.MAX_REQUEST_ID else 1
        return request_id

    def request(self, op, **fields):
        """Send one request; return the reply's fields (without id and ok).

        Raises DeviceError for an error reply, NoResponse when no reply came
        within timeout_s after the first send and after each resend.
        """
        request_id = self._take_id()
        if self.pin is not None and op in CLINICIAN_OPS and "pin" not in fields:
            fields["pin"] = self.pin
        data = frame.encode_frame(msg.request(request_id, op, fields))
        attempts = 1 + self.retries
        reply = None
        for attempt in range(attempts):
            if attempt:
                self.resends += 1
            self.transport.write(data)
            reply = self._await_reply(request_id, may_resend=attempt + 1 < attempts)
            if reply is not None and reply is not _RESEND:
                break
            reply = None
        if reply is None:
            raise NoResponse(self.port_name, op, request_id, self.timeout_s * attempts, attempts)
        if reply.get("ok") is True:
            return {key: value for key, value in reply.items() if key not in ("id", "ok")}
        raise DeviceError(op, str(reply.get("err") or "unknown"), str(reply.get("msg") or ""))

    def _await_reply(self, request_id, may_resend):
        """The reply to request_id, None on timeout, or _RESEND when the device saw a damaged line."""
        deadline = self.clock() + self.timeout_s
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            found = None
            for message in self._read_messages(remaining):
                if "ev" in message:
                    if message.get("ev") == msg.EV_RX_ERROR and may_resend and found is None:
                        found = _RESEND  # our request may be the damaged line: resend now
                    continue
                reply_id = message.get("id")
                if reply_id == request_id and "ok" in message:
                    found = message
                elif reply_id is None and message.get("ok") is False and found is None:
                    found = message  # the device could not read our id at all
                # other ids: late replies to earlier requests; ignore
            if found is not None:
                return found

    def _read_messages(self, timeout_s):
        """Messages decoded from what arrived within timeout_s; events are dispatched here."""
        out = []
        for line in self._reader.feed(self.transport.read(timeout_s)):
            if line is None:
                self.rx_errors += 1
                continue
            try:
                message = frame.decode_line(line)
            except frame.FrameError:
                self.rx_errors += 1
                continue
            if message is None:
                continue  # not a frame: banner, traceback, noise
            if "ev" in message:
                self._dispatch_event(message)
            out.append(message)
        return out

    def _dispatch_event(self, event):
        self.events.append(event)
        if event.get("ev") == msg.EV_STATE:
            self.last_state = event
        if self.on_event is not None:
            self.on_event(event)

    def poll(self, timeout_s):
        """Read for up to timeout_s without a request, dispatching events; returns them."""
        deadline = self.clock() + timeout_s
        events = []
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return events
            events.extend(m for m in self._read_messages(remaining) if "ev" in m)

    # ---- operations ---------------------------------------------------------------

    def hello(self):
        """Introduce ourselves and check the device speaks our major protocol version."""
        try:
            # the host's clock dates the device's session records
            reply = self.request(msg.OP_HELLO, proto=self.proto_version, unix_s=int(time.time()))
        except DeviceError as err:
            if err.code != msg.E_VERSION:
                raise
            raise VersionMismatch(
                "protocol version mismatch: this host speaks %s (majors %s); the device at %s refused it: %s"
                % (self.proto_version, list(self.supported_majors), self.port_name, err.message),
                self.proto_version,
                None,
            )
        device_version = reply.get("proto")
        try:
            major, _minor = msg.parse_version(device_version)
        except msg.RequestError:
            raise ProtocolError(
                "the device at %s answered hello without a valid protocol version (proto=%r)"
                % (self.port_name, device_version)
            )
        if major not in self.supported_majors:
            raise VersionMismatch(
                "protocol version mismatch: the device at %s speaks %s (majors %s); this host speaks %s (majors %s). "
                "Update whichever side is older." % (
                    self.port_name,
                    device_version,
                    reply.get("proto_majors", [major]),
                    self.proto_version,
                    list(self.supported_majors),
                ),
                self.proto_version,
                device_version,
            )
        self.device = reply
        return reply

    def info(self):
        """The device's identity and limits (the hello reply); says hello if not done yet."""
        if self.device is None:
            self.hello()
        return self.device

    def status(self):
        return self.request(msg.OP_STATUS)

    def start(self, amp_ua=None, lease_ms=None, session_ms=None, ramp_ms=None, interlock=None):
        """Start stimulation. amp_ua: None (targets as they are) or target µA per channel from channel 0.

        lease_ms: the host keepalive lease (device default when None; 0 for a
        session the device times alone); session_ms: auto-off; ramp_ms: soft start;
        interlock: "concurrent" or "alternate" (never heat while stimulating).
        """
        fields = {}
        for name, value in (("lease_ms", lease_ms), ("session_ms", session_ms), ("ramp_ms", ramp_ms),
                            ("interlock", interlock)):
            if value is not None:
                fields[name] = value
        if amp_ua is not None:
            amp_ua = list(amp_ua)
            if not all(msg.is_int(value) for value in amp_ua):
                raise TypeError("amp_ua must be integers in µA, got %r" % (amp_ua,))
            fields["amp_ua"] = amp_ua
        return self.request(msg.OP_START, **fields)

    def stop(self):
        """Normal stop: the device ramps down, then goes IDLE."""
        return self.request(msg.OP_STOP)

    def estop(self):
        """Emergency stop: output zero at once, no ramp."""
        return self.request(msg.OP_ESTOP)

    def pause(self):
        return self.request(msg.OP_PAUSE)

    def resume(self):
        return self.request(msg.OP_RESUME)

    def keepalive(self):
        return self.request(msg.OP_KEEPALIVE)

    def amp_step(self, ch, steps):
        return self.request(msg.OP_AMP_STEP, ch=ch, steps=steps)

    def set_stim(self, ch, stim):
        return self.request(msg.OP_SET_STIM, ch=ch, stim=stim)

    def get_stim(self, ch):
        return self.request(msg.OP_GET_STIM, ch=ch)

    def set_amp(self, ch, amp_ua):
        return self.request(msg.OP_SET_AMP, ch=ch, amp_ua=amp_ua)

    def clear_fault(self):
        return self.request(msg.OP_CLEAR_FAULT)

    def settings(self, changes=None):
        """The device settings and their limits; with changes (a dict), set them first (all or nothing)."""
        if changes:
            return self.request(msg.OP_SETTINGS, set=changes)
        return self.request(msg.OP_SETTINGS)

    def maintenance(self, on):
        """Enter (from IDLE) or leave maintenance mode."""
        return self.request(msg.OP_MAINTENANCE, on=bool(on))

    def telemetry(self, every_ms):
        """Ask for a telemetry event every every_ms (0: none); they arrive through on_event / poll."""
        return self.request(msg.OP_TELEMETRY, every_ms=every_ms)

    def heat(self, level=None, target_mc=None, minutes=None, off=False):
        """Heat on at a level (low/medium/high) or a target in milli-°C, for `minutes`; or off."""
        if off:
            return self.request(msg.OP_HEAT, off=True)
        fields = {}
        for name, value in (("level", level), ("target_mc", target_mc), ("minutes", minutes)):
            if value is not None:
                fields[name] = value
        return self.request(msg.OP_HEAT, **fields)

    def programs(self):
        """Names of the built-in presets and of the programs stored on the device."""
        return self.request(msg.OP_PROGRAMS)

    def program_get(self, name):
        return self.request(msg.OP_PROGRAM_GET, name=name)

    def program_put(self, program):
        """Upload a program (a dict, checked by firmware.program.parse_program first)."""
        return self.request(msg.OP_PROGRAM_PUT, program=program)

    def program_delete(self, name):
        return self.request(msg.OP_PROGRAM_DELETE, name=name)

    def start_program(self, name, amp_ua=None, lease_ms=None):
        fields = {"program": name}
        if amp_ua is not None:
            fields["amp_ua"] = list(amp_ua)
        if lease_ms is not None:
            fields["lease_ms"] = lease_ms
        return self.request(msg.OP_START, **fields)

    def log_info(self):
        return self.request(msg.OP_LOG_INFO)

    def log_records(self, from_seq=1):
        """Every record from from_seq on, fetched page by page (each page one frame)."""
        records = []
        next_seq = from_seq
        while True:
            reply = self.request(msg.OP_LOG_FETCH, from_seq=next_seq)
            page = reply.get("records") or []
            records.extend(page)
            if not page or reply.get("next_seq", next_seq) <= next_seq:
                return records
            next_seq = reply["next_seq"]

    def log_erase(self):
        return self.request(msg.OP_LOG_ERASE)

    def pain(self, score, when):
        return self.request(msg.OP_PAIN, score=score, when=when)

    def pin_status(self):
        return self.request(msg.OP_PIN)

    def pin_set(self, new_pin):
        """Set the clinician PIN (or change it: self.pin holds the current one)."""
        return self.request(msg.OP_PIN, new=new_pin)

    def pin_remove(self):
        return self.request(msg.OP_PIN, remove=True)

    def close(self):
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

