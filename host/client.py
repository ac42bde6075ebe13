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

import math
import secrets
import threading
import time
from collections import deque
from contextlib import contextmanager

from firmware.protocols import frame
from firmware.protocols import messages as msg
from host.errors import (  # noqa: F401 (their home is host.errors; imported from here too)
    ArgumentError,
    CallbackError,
    ClientError,
    DeviceError,
    NoResponse,
    PortOpenError,
    ProtocolError,
    TransportError,
    VersionMismatch,
)
from host.keepalive import KeepalivePace

DEFAULT_TIMEOUT_S = 1.0
RETRIES = 1  # resends of an unanswered request, always with the same id
KEEP_EVENTS = 32
# log_fetch pages before the host gives up: a full log (192 KiB) is a few hundred pages of up to 640
# bytes; a device that never ends its log must not keep the host fetching forever
MAX_LOG_PAGES = 5000
# requests a device in patient mode accepts only with the clinician PIN (docs/protocol.md)
CLINICIAN_OPS = (
    msg.OP_SETTINGS, msg.OP_PROGRAM_PUT, msg.OP_PROGRAM_DELETE, msg.OP_LOG_ERASE, msg.OP_MAINTENANCE,
    msg.OP_START, msg.OP_SET_STIM, msg.OP_PIN,
)
_RESEND = object()  # marker: the device reported a damaged line, resend without waiting out the timeout
POLL_SLICE_S = 0.05  # poll() holds the request lock at most this long at a time (another thread's turn)
# requests still sent after hello() raised VersionMismatch: a new hello (after an update), and
# estop (a try to zero the output is never refused by the host)
_AFTER_MISMATCH_OPS = (msg.OP_HELLO, msg.OP_ESTOP)


class FairRLock:
    """A reentrant lock handed over first come, first served.

    threading.RLock lets the thread that releases it take it straight back, so a loop
    making request after request could keep a keepalive thread waiting until the lease
    ran out. Here a thread waiting for the lock gets it before the releasing thread
    gets it again. Reentrant: a callback may make a request while one is reading.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._owner = None
        self._count = 0
        self._queue = deque()  # tickets of the threads waiting, oldest first

    def acquire(self):
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._count += 1
                return True
            ticket = object()
            self._queue.append(ticket)
            try:
                while self._owner is not None or self._queue[0] is not ticket:
                    self._cond.wait()
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # (an interrupted wait: the next ticket may go now)
            self._owner, self._count = me, 1
            return True

    def release(self):
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a lock this thread does not hold")
            self._count -= 1
            if not self._count:
                self._owner = None
                self._cond.notify_all()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()


def check_timeout(timeout_s):
    """timeout_s as a float, or ValueError: a finite number of seconds greater than 0."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ValueError(
            "timeout_s must be a finite number of seconds greater than 0, e.g. 1.0 (tensctl --timeout "
            "takes 0.01..600); got %r" % (timeout_s,)
        )
    return float(timeout_s)


def _int_arg(name, value, unit):
    """value when it is an integer (not a bool), else ArgumentError naming name and unit."""
    if not msg.is_int(value):
        raise ArgumentError("%s must be an integer in %s, got %r" % (name, unit, value))
    return value


def _amp_list(value, name="amp_ua"):
    """Target µA per channel from channel 0, as a list of integers, else ArgumentError."""
    if not isinstance(value, (str, bytes, dict)) and not msg.is_int(value):
        try:
            values = list(value)
        except TypeError:
            values = None
        if values is not None and all(msg.is_int(item) for item in values):
            return values
    raise ArgumentError(
        "%s must be a list of integers in µA, one per channel from channel 0 (e.g. [5000, 0]: 5 mA on "
        "channel 0), got %r" % (name, value)
    )




def _seq_seen(record, seen):
    """Whether record's seq was fetched before (and note it); a record without one counts as new."""
    seq = record.get("seq")
    if not msg.is_int(seq):
        return False
    if seq in seen:
        return True
    seen.add(seq)
    return False


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

    on_event: optional callable(event dict), called for every event as it is read (in
    whichever thread is reading). If it raises, the request that was reading still runs
    to its end, then raises CallbackError (see request()).
    first_id: the first request id (random by default, see `_random_first_id`).
    clock: seconds as a float, for timeouts (tests pass a simulated one).

    Threads: one Client may be shared between threads. Requests are serialized by a lock
    (reentrant, so a callback may make a request): they run one at a time, each waiting
    for its own reply. poll() takes the lock for at most POLL_SLICE_S at a time.
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
        self.timeout_s = timeout_s  # checked: see the property
        if not msg.is_int(retries) or retries < 0:
            raise ValueError("retries must be an integer 0 or more (resends of an unanswered request), got %r"
                             % (retries,))
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
        self._lock = FairRLock()  # one request at a time, first come first served; reentrant (callbacks)
        self._depth = 0  # requests and polls in progress in the lock's holder (>1: made from a callback)
        self._callback_errors = []  # what on_event raised during the outermost request or poll slice
        self._waiting = []  # ids of requests waiting for their replies (outer ones, when a callback asks)
        self._early = {}  # replies to those outer requests, read by a request made from a callback
        self._mismatch = None  # what hello()'s VersionMismatch said, in short: later requests are refused
        self._mismatch_version = None

    @property
    def timeout_s(self):
        """Seconds to wait for each reply before resending (a finite number > 0)."""
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value):
        self._timeout_s = check_timeout(value)

    @property
    def port_name(self):
        """How messages name the port (the URL; with the pty path for an embedded simulator)."""
        return getattr(self.transport, "name", None) or getattr(self.transport, "url", "?")

    # ---- the request/reply loop ------------------------------------------------

    def _take_id(self):
        with self._lock:
            request_id = self._next_id
            self._next_id = request_id + 1 if request_id < msg.MAX_REQUEST_ID else 1
            return request_id

    def request(self, op, **fields):
        """Send one request; return the reply's fields (without id and ok).

        Raises DeviceError for an error reply, ProtocolError for a reply that breaks the
        protocol, NoResponse when no reply came within timeout_s after the first send and
        after each resend (the request may have run all the same), TransportError when
        the line broke. When on_event raised meanwhile, the request still completes, then
        CallbackError is raised instead, carrying the outcome (.reply, .error).
        """
        with self._lock:
            self._refuse_after_mismatch(op)
            self._depth += 1
            try:
                result, reply, error = self._exchange(op, fields)
            except BaseException as exc:
                self._note_callback_errors(exc)
                raise
            finally:
                self._depth -= 1
            self._raise_callback_errors(op, result if error is None else reply, error)
            if error is not None:
                raise error
            return result

    def _exchange(self, op, fields):
        """(reply fields, reply, None) on success, else (None, reply or None, the ClientError)."""
        request_id = self._take_id()
        if self.pin is not None and op in CLINICIAN_OPS and "pin" not in fields:
            fields["pin"] = self.pin
        data = frame.encode_frame(msg.request(request_id, op, fields))
        attempts = 1 + self.retries
        reply = None
        damaged_before = self.rx_errors
        self._waiting.append(request_id)
        try:
            for attempt in range(attempts):
                if attempt:
                    self.resends += 1
                self.transport.write(data)
                reply = self._await_reply(request_id, may_resend=attempt + 1 < attempts)
                if reply is not None and reply is not _RESEND:
                    break
                reply = None
        finally:
            self._waiting.remove(request_id)
            self._early.pop(request_id, None)
        if reply is None:
            return None, None, NoResponse(self.port_name, op, request_id, self.timeout_s * attempts, attempts,
                                          damaged=self.rx_errors - damaged_before)
        error = self._reply_error(op, reply)
        if error is not None:
            return None, reply, error
        return {key: value for key, value in reply.items() if key not in ("id", "ok")}, reply, None

    def _reply_error(self, op, reply):
        """None for an ok reply; DeviceError for an error reply; ProtocolError for anything else."""
        ok = reply.get("ok")
        if ok is True:
            return None
        if ok is False:
            code, text = reply.get("err"), reply.get("msg")
            if isinstance(code, str) and code and isinstance(text, str):
                return DeviceError(op, code, text)
            return ProtocolError(
                "the device at %s answered %s with an error reply without an error code and message "
                "(the protocol wants err and msg strings; got err=%s, msg=%s): %s"
                % (self.port_name, op, msg.clip(repr(code), 40), msg.clip(repr(text), 80), msg.clip(repr(reply)))
            )
        what = "without an ok field" if "ok" not in reply else "with ok=%s" % msg.clip(repr(ok), 40)
        return ProtocolError(
            "the device at %s answered %s %s (the protocol wants ok true or false): %s"
            % (self.port_name, op, what, msg.clip(repr(reply)))
        )

    def _await_reply(self, request_id, may_resend):
        """The reply to request_id, None on timeout, or _RESEND when the device saw a damaged line."""
        deadline = self.clock() + self.timeout_s
        while True:
            found = self._early.pop(request_id, None)  # read by a request a callback made meanwhile
            if found is not None:
                return found
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            for message in self._read_messages(remaining):
                if "ev" in message:
                    if message.get("ev") == msg.EV_RX_ERROR and may_resend and found is None:
                        found = _RESEND  # our request may be the damaged line: resend now
                    continue
                if "op" in message:
                    continue  # a request, not a reply (a line that echoes what we send)
                reply_id = message.get("id")
                if reply_id == request_id:
                    if found is None or found is _RESEND:
                        found = message
                elif reply_id is None and message.get("ok") is False and found is None:
                    found = message  # the device could not read our id at all
                elif reply_id in self._waiting:
                    self._early[reply_id] = message  # an outer request's: it takes it when we return
                # other ids: late replies to earlier requests; ignore
            if found is None:
                found = self._early.pop(request_id, None)
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
        """Keep the event and pass it to on_event; what the callback raises is kept for later."""
        self.events.append(event)
        if event.get("ev") == msg.EV_STATE:
            self.last_state = event
        callback = self.on_event
        if callback is not None:
            try:
                callback(event)
            except Exception as exc:  # noqa: BLE001 - raised as CallbackError once the request is done
                self._callback_errors.append(exc)

    def _raise_callback_errors(self, op, reply=None, error=None, events=None):
        """After the outermost request or poll slice: CallbackError if on_event raised meanwhile."""
        if self._depth or not self._callback_errors:
            return
        errors, self._callback_errors = self._callback_errors, []
        raise CallbackError(op, errors, reply=reply, error=error, events=events) from errors[0]

    def _note_callback_errors(self, exc):
        """A request or poll that ends in an exception of its own (a broken line): that one goes
        on; what on_event raised meanwhile is noted on it, not raised."""
        if self._depth == 1 and self._callback_errors:
            errors, self._callback_errors = self._callback_errors, []
            exc.add_note("meanwhile the on_event callback raised: %s" % "; ".join(
                "%s: %s" % (type(err).__name__, err) for err in errors))

    def poll(self, timeout_s):
        """Read for up to timeout_s seconds without a request, dispatching events; returns them.

        If on_event raised, CallbackError comes once the read it happened in is dispatched
        (every event of it went to the callback and into self.events; .events has those poll read).
        """
        deadline = self.clock() + timeout_s
        events = []
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return events
            with self._lock:  # per slice: a thread waiting to send a request goes in between
                self._depth += 1
                try:
                    messages = self._read_messages(min(remaining, POLL_SLICE_S))
                except BaseException as exc:
                    self._note_callback_errors(exc)
                    raise
                finally:
                    self._depth -= 1
                events.extend(m for m in messages if "ev" in m)
                self._raise_callback_errors("poll", events=events)

    # ---- operations ---------------------------------------------------------------

    def _refuse_after_mismatch(self, op):
        if self._mismatch is not None and op not in _AFTER_MISMATCH_OPS:
            raise VersionMismatch(
                "not sending %s to the device at %s: it speaks another protocol version (hello said: %s). "
                "Only hello and estop are still sent on this Client."
                % (op, self.port_name, self._mismatch), self.proto_version, self._mismatch_version,
            )

    def _mismatched(self, err, short):
        self._mismatch, self._mismatch_version = short, err.device_version
        return err

    def hello(self):
        """Introduce ourselves and check the device speaks our major protocol version; returns its info."""
        callback_error = None
        try:
            # the host's clock dates the device's session records
            reply = self.request(msg.OP_HELLO, proto=self.proto_version, unix_s=int(time.time()))
        except CallbackError as err:
            if err.error is not None:
                raise
            callback_error, reply = err, err.reply  # check the version first, then raise it
        except DeviceError as err:
            if err.code != msg.E_VERSION:
                raise
            raise self._mismatched(VersionMismatch(
                "protocol version mismatch: this host speaks %s (majors %s); the device at %s refused it: %s"
                % (self.proto_version, list(self.supported_majors), self.port_name, err.message),
                self.proto_version,
                None,
            ), "it refused ours, %s: %s" % (self.proto_version, err.message))
        device_version = reply.get("proto")
        try:
            major, _minor = msg.parse_version(device_version)
        except msg.RequestError:
            raise ProtocolError(
                "the device at %s answered hello without a valid protocol version (proto=%r)"
                % (self.port_name, device_version)
            )
        if major not in self.supported_majors:
            raise self._mismatched(VersionMismatch(
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
            ), "it speaks %s, this host %s" % (device_version, self.proto_version))
        self._mismatch = None
        self.device = reply
        if callback_error is not None:
            raise callback_error
        return reply

    def info(self):
        """The device's identity and limits (the hello reply); says hello if not done yet."""
        if self.device is None:
            self.hello()
        return self.device

    def status(self):
        """State, faults, lease_ms, uptime_ms (device time) and per-channel figures in µA."""
        return self.request(msg.OP_STATUS)

    def start(self, amp_ua=None, lease_ms=None, session_ms=None, ramp_ms=None, interlock=None):
        """Start stimulation (IDLE -> RUNNING). amp_ua: None (targets as they are) or a list of
        target µA per channel from channel 0, integers.

        lease_ms: the host keepalive lease in ms of device time (device default when None; 0
        for a session the device times alone); session_ms: auto-off in ms; ramp_ms: soft start
        in ms; interlock: "concurrent" or "alternate" (never heat while stimulating).
        """
        fields = {}
        for name, value in (("lease_ms", lease_ms), ("session_ms", session_ms), ("ramp_ms", ramp_ms)):
            if value is not None:
                fields[name] = _int_arg(name, value, "ms")
        if interlock is not None:
            fields["interlock"] = interlock
        if amp_ua is not None:
            fields["amp_ua"] = _amp_list(amp_ua)
        return self.request(msg.OP_START, **fields)

    def stop(self):
        """Normal stop: the device ramps down, then goes IDLE (a no-op in IDLE and FAULT)."""
        return self.request(msg.OP_STOP)

    def estop(self):
        """Emergency stop: output zero at once, no ramp, targets zero, IDLE (FAULT stays FAULT)."""
        return self.request(msg.OP_ESTOP)

    def pause(self):
        """RUNNING -> PAUSED: output zero at once, targets kept."""
        return self.request(msg.OP_PAUSE)

    def resume(self):
        """PAUSED -> RUNNING: the output ramps up again from zero."""
        return self.request(msg.OP_RESUME)

    def keepalive(self):
        """Renew the host lease (any request does); nothing else."""
        return self.request(msg.OP_KEEPALIVE)

    def amp_step(self, ch, steps):
        """Move channel ch's target by steps (an integer, -10..10) of 0.5 mA, never below zero."""
        return self.request(msg.OP_AMP_STEP, ch=_int_arg("ch", ch, "channels (0 is the first)"),
                            steps=_int_arg("steps", steps, "steps of 0.5 mA"))

    def set_stim(self, ch, stim):
        """Set channel ch's stimulation (a dict: docs/protocol.md); checked against the envelope."""
        return self.request(msg.OP_SET_STIM, ch=_int_arg("ch", ch, "channels (0 is the first)"), stim=stim)

    def get_stim(self, ch):
        """Channel ch's stimulation setting, its maximum amplitude in µA and the envelope figures."""
        return self.request(msg.OP_GET_STIM, ch=_int_arg("ch", ch, "channels (0 is the first)"))

    def set_amp(self, ch, amp_ua):
        """Set channel ch's target to amp_ua, an integer in µA; the output ramps to it."""
        return self.request(msg.OP_SET_AMP, ch=_int_arg("ch", ch, "channels (0 is the first)"),
                            amp_ua=_int_arg("amp_ua", amp_ua, "µA (e.g. 5000 for 5 mA)"))

    def clear_fault(self):
        """FAULT -> IDLE, once the cause is gone."""
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
        """Ask for a telemetry event every every_ms ms of device time (0: none, else 50..60000);
        they arrive through on_event / poll."""
        return self.request(msg.OP_TELEMETRY, every_ms=_int_arg("every_ms", every_ms, "ms"))

    def heat(self, level=None, target_mc=None, minutes=None, off=False):
        """Heat on at a level (low/medium/high) or a target in milli-°C, for `minutes`; or off."""
        if off:
            return self.request(msg.OP_HEAT, off=True)
        fields = {}
        if level is not None:
            fields["level"] = level
        if target_mc is not None:
            fields["target_mc"] = _int_arg("target_mc", target_mc, "milli-°C (e.g. 40000 for 40 °C)")
        if minutes is not None:
            fields["minutes"] = _int_arg("minutes", minutes, "minutes")
        return self.request(msg.OP_HEAT, **fields)

    def programs(self):
        """Names of the built-in presets and of the programs stored on the device."""
        return self.request(msg.OP_PROGRAMS)

    def program_get(self, name):
        """One program by name, in canonical form (amplitudes in µA, durations in s)."""
        return self.request(msg.OP_PROGRAM_GET, name=name)

    def program_put(self, program):
        """Upload a program (a dict, checked by firmware.program.parse_program first)."""
        return self.request(msg.OP_PROGRAM_PUT, program=program)

    def program_delete(self, name):
        """Remove a stored program by name."""
        return self.request(msg.OP_PROGRAM_DELETE, name=name)

    def start_program(self, name, amp_ua=None, lease_ms=None):
        """Start program `name`; amp_ua: target µA per channel (a list of integers); lease_ms in ms."""
        fields = {"program": name}
        if amp_ua is not None:
            fields["amp_ua"] = _amp_list(amp_ua)
        if lease_ms is not None:
            fields["lease_ms"] = _int_arg("lease_ms", lease_ms, "ms")
        return self.request(msg.OP_START, **fields)

    def log_info(self):
        """What the session log holds and how full it is."""
        return self.request(msg.OP_LOG_INFO)

    def log_records(self, from_seq=1):
        """Every record from from_seq on, fetched page by page (each page one frame)."""
        records = []
        seen = set()  # seq numbers fetched: a page that only repeats them is not progress
        next_seq = _int_arg("from_seq", from_seq, "record numbers")
        for _page in range(MAX_LOG_PAGES):
            reply = self.request(msg.OP_LOG_FETCH, from_seq=next_seq)
            page = self._log_page(reply)
            fresh = [record for record in page if not _seq_seen(record, seen)]
            records.extend(page)  # nothing the device sent is dropped, repeats included
            if not page:
                return records
            if "next_seq" not in reply:
                raise self._log_error("a page of records without next_seq (the record number to ask for next)",
                                      reply)
            following = reply["next_seq"]
            if not msg.is_int(following) or following < 1:
                raise self._log_error("next_seq must be an integer record number 1 or more, got %s"
                                      % msg.clip(repr(following)), reply)
            if following <= next_seq:
                return records  # the device says there is no more
            if not fresh:
                raise self._log_error("a page that only repeats records already fetched (next_seq %d)"
                                      % following, reply)
            next_seq = following
        raise ProtocolError(
            "log_fetch from the device at %s did not end after %d pages (%d records; the log holds far fewer): "
            "the device keeps sending records" % (self.port_name, MAX_LOG_PAGES, len(records))
        )

    def _log_page(self, reply):
        """The reply's records: a list of records (JSON objects), else ProtocolError naming records."""
        page = reply.get("records")
        if page is None:
            return []
        if not isinstance(page, list) or not all(isinstance(record, dict) for record in page):
            raise self._log_error("records must be a list of records (JSON objects), got %s"
                                  % msg.clip(repr(page)), reply)
        return page

    def _log_error(self, what, reply):
        return ProtocolError("the device at %s answered log_fetch with %s: %s"
                             % (self.port_name, what, msg.clip(repr(reply), 120)))

    def log_erase(self):
        """Erase the session log (outside a session)."""
        return self.request(msg.OP_LOG_ERASE)

    def pain(self, score, when):
        """Record a pain score (an integer 0..10) "before" or "after" a session in the session log."""
        return self.request(msg.OP_PAIN, score=_int_arg("score", score, "points 0..10"), when=when)

    def pin_status(self):
        """Whether a clinician PIN is set (patient mode)."""
        return self.request(msg.OP_PIN)

    def pin_set(self, new_pin):
        """Set the clinician PIN (or change it: self.pin holds the current one)."""
        return self.request(msg.OP_PIN, new=new_pin)

    def pin_remove(self):
        """Remove the clinician PIN (self.pin holds the current one)."""
        return self.request(msg.OP_PIN, remove=True)

    # ---- a session as a context manager -----------------------------------------------

    @contextmanager
    def session(self, amp_ua=None, lease_ms=None, session_ms=None, ramp_ms=None, interlock=None,
                program=None, keep_lease=False):
        """Start a session; on leaving the block stop it (ramping down), or estop it when the block raised.

        `with client.session(amp_ua=[5000, 0], lease_ms=3000) as started:` yields the start
        reply. The arguments are start()'s (with program: start_program(program, amp_ua,
        lease_ms)). When the block raises (Ctrl-C included), estop is sent (output zero at
        once) before the exception propagates; if the estop is not confirmed, a note on the
        exception says so. If start() itself ends in anything but a refusal (a DeviceError: it
        did not run) or an argument error (nothing was sent), estop is sent too before that
        error propagates: NoResponse, a broken reply, a lost port or a Ctrl-C while the reply
        was awaited all leave a start that may have run. If the normal stop on leaving the block
        is not confirmed, estop is sent and the stop's error propagates.
        keep_lease=True: a LeaseKeeper holds the lease meanwhile (see there).
        """
        keeper = LeaseKeeper(self) if keep_lease else None  # made first: no import between start and its first request
        try:
            if program is not None:
                if session_ms is not None or ramp_ms is not None or interlock is not None:
                    raise ArgumentError("a program session takes amp_ua and lease_ms only "
                                        "(session_ms, ramp_ms and interlock come from the program)")
                started = self.start_program(program, amp_ua, lease_ms)
            else:
                started = self.start(amp_ua, lease_ms, session_ms, ramp_ms, interlock)
        except ArgumentError:
            raise  # nothing was sent
        except DeviceError as err:
            if err.code == "internal":  # the device says the request may have run
                self._estop_after(err)
            raise  # any other refusal: the start did not run
        except BaseException as err:  # the start may have run: NoResponse, ProtocolError, a lost port, Ctrl-C
            self._estop_after(err)
            raise
        try:
            if keeper is not None:
                keeper.start()
            yield started
        except BaseException as exc:  # the block (or the keeper's start) raised: output zero at once
            self._end_session_after(exc, keeper)
            raise
        try:
            if keeper is not None:
                keeper.stop()  # a Ctrl-C during this join must not skip the stop: it estops instead
            self.stop()
        except BaseException as err:  # the stop may not have happened: output zero another way
            self._end_session_after(err, keeper)
            raise
        if keeper is not None and keeper.error is not None:
            raise keeper.error

    def _end_session_after(self, exc, keeper):
        """estop because exc ended a session; the keeper is told to stop first, joined only after."""
        if keeper is not None:
            keeper.stop(wait=False)
        self._estop_after(exc)
        if keeper is not None:
            keeper.stop()

    def _estop_after(self, exc):
        """estop because exc ended a session; a failed estop is noted on exc, not raised over it."""
        try:
            self.estop()
        except CallbackError as err:
            if err.error is not None:
                exc.add_note("the emergency stop after it was NOT confirmed: %s; use tensctl estop" % err.error)
        except ClientError as err:
            exc.add_note("the emergency stop after it was NOT confirmed: %s; use tensctl estop" % err)

    def close(self):
        """Close the port (an embedded simulator stops with it)."""
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LeaseKeeper:
    """A thread that holds a session's keepalive lease: it sends status requests paced exactly as
    `tensctl monitor` paces its own (host.keepalive: KEEPALIVES_PER_LEASE per lease of
    DEVICE time, measured from status uptime_ms, so a simulator at --speed N gets N times
    more; at least once a second).

    It proves that this process is alive, not that your loop is: where your loop can hang,
    call keepalive() from the loop instead. Usually made by client.session(keep_lease=True).
    `error`: the ClientError that ended it (it stops on the first), or a CallbackError it met.
    """

    def __init__(self, client):
        self.client = client
        self.error = None
        self.sent = 0  # status requests sent
        self._pace = KeepalivePace()  # fed by our status replies
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pulsewarm-lease-keeper", daemon=True)

    def start(self):
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def interval_s(self):
        """Wall seconds until the next status request."""
        return self._pace.interval_s()

    def _keepalive(self):
        """One status request: it holds the lease, and its reply paces the next."""
        self._pace.note(self.client.status())

    def _run(self):
        while not self._stop.is_set():
            try:
                self._keepalive()
            except CallbackError as err:
                self.error = self.error or err
                if err.error is not None:
                    return
            except ClientError as err:
                self.error = err
                return
            except Exception as err:  # noqa: BLE001 - a bug in the pacing: say so, never die silently
                self.error = ClientError("lease keeper stopped: %s: %s" % (type(err).__name__, err))
                self.error.__cause__ = err
                return
            self.sent += 1
            self._stop.wait(self.interval_s())

    def stop(self, wait=True):
        """Stop sending (wait: until the thread has ended)."""
        self._stop.set()
        if wait and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
