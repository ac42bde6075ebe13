"""Composition root: the firmware core over one set of drivers, one tick at a time.

`tick()` runs every TICK_MS: sensors -> supervisor checks -> controllers and
outputs -> protocol I/O. One deterministic function, no threads, no asyncio:
the same inputs at the same ticks give the same outputs on every runtime,
which is what lets the simulator replay and compare runs.
"""

import firmware
from firmware import limits
from firmware import supervisor as sup
from firmware.clock import Elapsed
from firmware.compat import const
from firmware.output_check import OutputMonitor
from firmware.protocols import frame
from firmware.protocols import messages as msg
from firmware.stim import Channel

MAX_TX_BYTES = const(4096)  # pending output; beyond this new messages are dropped and counted
RX_CHUNK = const(64)
RX_CHUNKS_PER_TICK = const(8)  # bounds the bytes read per tick (512)
REPLY_CACHE = const(8)  # recent replies kept so a retried request id is not run twice


class Device:
    def __init__(self, clock, pulse_out, sense, serial, device_id="pulsewarm-0000"):
        pulse_out.off()  # outputs off at boot, before anything else
        self.clock = clock
        self.pulse_out = pulse_out
        self.sense = sense
        self.serial = serial
        self.device_id = device_id
        self.supervisor = sup.Supervisor()
        self.channels = [Channel(i) for i in range(pulse_out.channels)]
        self.monitors = [OutputMonitor(i) for i in range(pulse_out.channels)]
        self.sense_ua = [0] * pulse_out.channels
        self.uptime = Elapsed(clock.ticks_ms())
        self.ticks = 0
        self.rx_frames = 0
        self.rx_errors = 0
        self.tx_dropped = 0
        self._reader = frame.LineReader()
        self._rx_buf = bytearray(RX_CHUNK)
        self._rx_view = memoryview(self._rx_buf)
        self._tx = bytearray()
        self._reply_cache = []  # (request id, op, frame bytes), newest last
        self._seen_changes = 0
        self._ops = {
            msg.OP_HELLO: self._op_hello,
            msg.OP_STATUS: self._op_status,
            msg.OP_START: self._op_start,
            msg.OP_STOP: self._op_stop,
            msg.OP_SET_AMP: self._op_set_amp,
            msg.OP_CLEAR_FAULT: self._op_clear_fault,
        }

    # ---- the tick -------------------------------------------------------

    def tick(self):
        """One control period. Never raises: an exception turns outputs off and latches a fault.

        Control and protocol I/O are guarded separately, so a driver that keeps
        raising turns the outputs off on every tick while the host can still
        ask for status, hear about the fault and clear it.
        """
        try:
            self.uptime.update(self.clock.ticks_ms())
            self.ticks += 1
            self._check_outputs()
            self._control()
        except Exception as exc:
            self._fail_safe_exception(exc)
        try:
            self._receive()
        except Exception as exc:
            self._fail_safe_exception(exc)
        try:
            self._announce_state()
        except Exception as exc:
            self._fail_safe_exception(exc)
        self._flush()

    def _fail_safe_exception(self, exc):
        # bounded, ASCII: the text goes into status replies and state events
        self._fail_safe(sup.F_INTERNAL, "exception in tick: " + msg.clip("%s %s" % (type(exc).__name__, exc), 100))

    def _fail_safe(self, fault, message):
        self.pulse_out.off()
        for channel in self.channels:
            channel.interrupt()
        self.supervisor.trip(fault, message)

    def _check_outputs(self):
        for i in range(len(self.channels)):
            channel = self.channels[i]
            self.sense_ua[i] = 0  # a failed read must not leave an old value on show
            sensed_ua = self.sense.read_ua(i)
            self.sense_ua[i] = sensed_ua
            found = self.monitors[i].check(channel.fired_ua, sensed_ua)
            if found is not None:
                self._fail_safe(found[0], found[1])

    def _control(self):
        if not self.supervisor.running():
            self.pulse_out.off()
            for channel in self.channels:
                channel.off()
            return
        window_us = limits.TICK_MS * 1000
        for channel in self.channels:
            channel.ramp()
            channel.fire_window(self.pulse_out, window_us)

    # ---- protocol I/O -----------------------------------------------------

    def _receive(self):
        for _ in range(RX_CHUNKS_PER_TICK):
            count = self.serial.read_into(self._rx_buf)
            if count <= 0:
                return
            for line in self._reader.feed(self._rx_view[:count]):
                self._handle_line(line)

    def _handle_line(self, line):
        if line is None:
            self.rx_errors += 1
            self._send(
                msg.event(
                    msg.EV_RX_ERROR,
                    {"err": msg.E_LINE_TOO_LONG, "msg": "line dropped: longer than %d bytes" % frame.MAX_LINE_BYTES},
                )
            )
            return
        try:
            message = frame.decode_line(line)
        except frame.FrameError as err:
            self.rx_errors += 1
            self._send(msg.event(msg.EV_RX_ERROR, {"err": err.code, "msg": err.message}))
            return
        if message is None:
            return  # not a frame: banner, echo, noise
        if "ev" in message or "ok" in message:
            return  # an event or reply (our own output looped back): not a request
        self.rx_frames += 1
        self._handle_request(message)

    def _handle_request(self, message):
        try:
            request_id = msg.request_id_of(message)
        except msg.RequestError as err:
            self._send(msg.reply_error(None, err.code, err.message))
            return
        op = message.get("op")
        if op == msg.OP_HELLO:
            # A new host session: its ids say nothing about the previous session's.
            self._reply_cache = []
        for cached in self._reply_cache:
            if cached[0] == request_id and cached[1] == message:
                self._send_bytes(cached[2])  # a retry: answer again, do not run again
                return
        handler = self._ops.get(op) if isinstance(op, str) else None
        if handler is None:
            reply = msg.reply_error(
                request_id, msg.E_UNKNOWN_OP, "unknown op %s; known: %s" % (msg._show(op), ", ".join(msg.OPS))
            )
        else:
            try:
                reply = msg.reply_ok(request_id, handler(message))
            except msg.RequestError as err:
                reply = msg.reply_error(request_id, err.code, err.message)
        data = frame.encode_frame(reply)
        if op != msg.OP_HELLO:
            self._reply_cache.append((request_id, message, data))
            if len(self._reply_cache) > REPLY_CACHE:
                self._reply_cache.pop(0)
        self._send_bytes(data)

    def _send(self, message):
        self._send_bytes(frame.encode_frame(message))

    def _send_bytes(self, data):
        if len(self._tx) + len(data) > MAX_TX_BYTES:
            self.tx_dropped += 1
            return
        self._tx.extend(data)

    def _flush(self):
        if not self._tx:
            return
        try:
            written = self.serial.write(self._tx)
        except Exception:
            written = 0
        if written:
            self._tx = self._tx[written:]

    def _announce_state(self):
        if self.supervisor.changes != self._seen_changes:
            self._seen_changes = self.supervisor.changes
            self._send(
                msg.event(
                    msg.EV_STATE,
                    {
                        "state": self.supervisor.state_name,
                        "faults": list(self.supervisor.faults),
                        "fault_msg": self.supervisor.fault_msg,
                    },
                )
            )

    # ---- requests -----------------------------------------------------------

    def _op_hello(self, message):
        if "proto" in message:
            major, minor = msg.parse_version(message["proto"])
            if major not in msg.SUPPORTED_MAJORS:
                raise msg.RequestError(
                    msg.E_VERSION,
                    "host speaks protocol %d.%d; this device speaks %s (majors %s)"
                    % (major, minor, msg.PROTO_VERSION, list(msg.SUPPORTED_MAJORS)),
                )
        return {
            "proto": msg.PROTO_VERSION,
            "proto_majors": list(msg.SUPPORTED_MAJORS),
            "fw": firmware.FIRMWARE_VERSION,
            "device_id": self.device_id,
            "channels": len(self.channels),
            "amp_limit_ua": limits.AMP_LIMIT_UA,
            "tick_ms": limits.TICK_MS,
        }

    def status(self):
        channels = []
        for i in range(len(self.channels)):
            channel = self.channels[i]
            channels.append({"amp_ua": channel.amp_ua, "target_ua": channel.target_ua, "sense_ua": self.sense_ua[i]})
        return {
            "state": self.supervisor.state_name,
            "faults": list(self.supervisor.faults),
            "fault_msg": self.supervisor.fault_msg,
            "uptime_ms": self.uptime.total_ms,
            "ch": channels,
            "rx_errors": self.rx_errors,
            "tx_dropped": self.tx_dropped,
        }

    def _op_status(self, message):
        return self.status()

    def _op_start(self, message):
        targets = self._targets(message)
        self.supervisor.start()
        for i in range(len(targets)):
            self.channels[i].set_target(targets[i])
        return {"state": self.supervisor.state_name}

    def _targets(self, message):
        """Optional "amp_ua": one integer per channel, each checked against the limit."""
        values = message.get("amp_ua", None)
        if values is None:
            return []
        if not isinstance(values, list) or len(values) > len(self.channels):
            raise msg.RequestError(
                msg.E_BAD_FIELD, "amp_ua must be a list of at most %d integers (one per channel)" % len(self.channels)
            )
        for value in values:
            msg.int_field({"amp_ua": value}, "amp_ua", 0, limits.AMP_LIMIT_UA)
        return values

    def _op_stop(self, message):
        self.supervisor.stop()
        self.pulse_out.off()
        for i in range(len(self.channels)):
            self.channels[i].interrupt()
            self.monitors[i].reset()
        return {"state": self.supervisor.state_name}

    def _op_set_amp(self, message):
        ch = msg.int_field(message, "ch", 0, len(self.channels) - 1)
        amp_ua = msg.int_field(message, "amp_ua", 0, limits.AMP_LIMIT_UA)
        if self.supervisor.state == sup.FAULT:
            raise msg.RequestError(
                msg.E_BAD_STATE, "cannot set amplitude: fault %s latched; send clear_fault first" % self.supervisor.faults[0]
            )
        self.channels[ch].set_target(amp_ua)
        return {"ch": ch, "target_ua": self.channels[ch].target_ua}

    def _op_clear_fault(self, message):
        self.supervisor.clear()
        for monitor in self.monitors:
            monitor.reset()
        return {"state": self.supervisor.state_name}
