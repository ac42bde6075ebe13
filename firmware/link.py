"""The device's end of the serial protocol: bytes in, requests out, replies back.

Reading is bounded per tick, writing never waits, and recent replies are kept so
a host that retries a request after a lost reply gets the answer again instead
of a second run.

Flow control: a line is handled only while the output queue has room for its
answer and the tick's own events (TX_RESERVE); otherwise it waits for the next
tick, when the host has taken the queued output. So a host that reads loses
nothing, however many requests it sends at once. A host that has stopped
reading cannot hold requests back (an `estop` must always run): once a flush
moves nothing, lines are handled again and output beyond MAX_TX_BYTES is
dropped and counted.
"""

from firmware.compat import const
from firmware.protocols import frame
from firmware.protocols import messages as msg

MAX_TX_BYTES = const(6144)
TX_RESERVE = const(2560)  # one reply of MAX_LINE_BYTES plus the tick's state, heat and telemetry events
RX_CHUNK = const(64)
RX_CHUNKS_PER_TICK = const(8)  # bounds the bytes read per tick (512)
REPLY_CACHE = const(8)


class Link:
    def __init__(self, serial, ops):
        self.serial = serial
        self.ops = ops  # op name -> handler(message) -> reply fields; raises RequestError
        self.rx_frames = 0
        self.rx_errors = 0
        self.tx_dropped = 0
        self.deferred_ticks = 0  # ticks that left lines waiting for room in the output queue
        self.host_stalled = False  # the last flush moved nothing: the host is not reading
        self.on_request = None  # called with each request that has a valid id and a known op
        self._reader = frame.LineReader()
        self._rx_buf = bytearray(RX_CHUNK)
        self._rx_view = memoryview(self._rx_buf)
        self._tx = bytearray()
        self._lines = []  # complete lines read but not handled yet (waiting for output room)
        self._reply_cache = []  # (request id, request, frame bytes), newest last

    def receive(self):
        if not self._handle_lines():
            return
        for _ in range(RX_CHUNKS_PER_TICK):
            count = self.serial.read_into(self._rx_buf)
            if count <= 0:
                return
            self._lines = self._reader.feed(self._rx_view[:count])
            if not self._handle_lines():
                return

    def _handle_lines(self):
        """Handle waiting lines while there is room for their answers; False when some still wait."""
        lines = self._lines
        while lines:
            if MAX_TX_BYTES - len(self._tx) < TX_RESERVE and not self.host_stalled:
                self.deferred_ticks += 1
                return False
            self._handle_line(lines.pop(0))
        return True

    @property
    def waiting_lines(self):
        return len(self._lines)

    def _handle_line(self, line):
        if line is None:
            self.rx_errors += 1
            self.send(
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
            self.send(msg.event(msg.EV_RX_ERROR, {"err": err.code, "msg": err.message}))
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
            self.send(msg.reply_error(None, err.code, err.message))
            return
        op = message.get("op")
        if op == msg.OP_HELLO:
            self._reply_cache = []  # a new host session: its ids say nothing about the last one's
        for cached in self._reply_cache:
            if cached[0] == request_id and cached[1] == message:
                self._send_bytes(cached[2])  # a retry: answer again, do not run again
                return
        handler = self.ops.get(op) if isinstance(op, str) else None
        if handler is None:
            reply = msg.reply_error(
                request_id, msg.E_UNKNOWN_OP, "unknown op %s; known: %s" % (msg._show(op), ", ".join(msg.OPS))
            )
        else:
            if self.on_request is not None:
                self.on_request(op)
            try:
                reply = msg.reply_ok(request_id, handler(message))
            except msg.RequestError as err:
                reply = msg.reply_error(request_id, err.code, err.message)
        try:
            data = frame.encode_frame(reply)
        except ValueError as err:  # a reply that cannot be framed: say so, never drop the request silently
            data = frame.encode_frame(msg.reply_error(request_id, msg.E_INTERNAL, msg.clip(str(err), 80)))
        if op != msg.OP_HELLO:
            self._reply_cache.append((request_id, message, data))
            if len(self._reply_cache) > REPLY_CACHE:
                self._reply_cache.pop(0)
        self._send_bytes(data)

    def send(self, message):
        """Queue a message; False when it was dropped (the host is not reading)."""
        return self._send_bytes(frame.encode_frame(message))

    def _send_bytes(self, data):
        if len(self._tx) + len(data) > MAX_TX_BYTES:
            self.tx_dropped += 1
            return False
        self._tx.extend(data)
        return True

    def flush(self):
        if not self._tx:
            return
        try:
            written = self.serial.write(self._tx)
        except Exception:
            written = 0
        if written:
            self._tx = self._tx[written:]
        self.host_stalled = not written
