"""The device's end of the serial protocol: bytes in, requests out, replies back.

Reading is bounded per tick, writing never waits, and recent replies are kept so
a host that retries a request after a lost reply (the same id, the same payload
bytes) gets the answer again instead of a second run. `estop`, `stop` and `pause`
always run: re-running them is safe, answering them from the cache is not.

Flow control: a line is handled only while the output queue has room for its
answer and the tick's own events (TX_RESERVE); otherwise it waits for the next
tick, when the host has taken the queued output. So a host that reads loses
nothing, however many requests it sends at once. A host that has stopped
reading cannot hold requests back (an `estop` must always run): once a flush
moves nothing, lines are handled again and output beyond MAX_TX_BYTES is
dropped and counted. Nor can a host that reads, but slower than telemetry comes:
telemetry (send_optional) never takes the room kept for answers.

Time: with a clock (the device's), lines are handled only while the tick has spent less than
HANDLE_BUDGET_MS on them; the rest wait for the next tick. On the board a status reply costs
milliseconds (its JSON and CRC in Python), so a burst of requests in one tick could otherwise hold
the tick past the 50 ms heater lease. At least one line is handled per tick, so every line is
answered in turn. In the simulator the clock stands still inside a tick: no line ever waits for it.
"""

from firmware.clock import ticks_diff
from firmware.compat import const
from firmware.protocols import frame
from firmware.protocols import messages as msg

MAX_TX_BYTES = const(6144)
TX_RESERVE = const(2560)  # one reply of MAX_LINE_BYTES plus the tick's state, heat and telemetry events
RX_CHUNK = const(64)
RX_CHUNKS_PER_TICK = const(8)  # bounds the bytes read per tick (512)
REPLY_CACHE = const(8)
# rx_error events per tick: a noisy line can hold hundreds of damaged frames in one tick's 512
# bytes, and each event is a JSON encode and a CRC: the tick must stay far inside the heater lease
# and the watchdog. Every error is still counted (status `rx_errors`); only the events are capped.
RX_ERROR_EVENTS_PER_TICK = const(4)
# Requests that always run, never answered from the reply cache: running one again is harmless
# and safe, while a cached "ok" for one that did not run could leave the output on. They run
# even without a valid id (the reply then carries id null): a stop is never refused.
NEVER_CACHED = (msg.OP_ESTOP, msg.OP_STOP, msg.OP_PAUSE)
# Milliseconds of one tick that handling lines may take before the rest wait for the next tick:
# with the tick's own work, well inside the heater lease (50 ms) and the watchdog (1 s).
HANDLE_BUDGET_MS = const(20)


class Link:
    def __init__(self, serial, ops, clock=None):
        self.serial = serial
        self.clock = clock  # ticks_ms() for the time budget; None: no budget (tests of the link alone)
        self.ops = ops  # op name -> handler(message) -> reply fields; raises RequestError
        self.rx_frames = 0
        self.rx_errors = 0
        self.tx_dropped = 0
        self.deferred_ticks = 0  # ticks that left lines waiting for room in the output queue
        self.budget_ticks = 0  # ticks that left lines waiting because the time budget was spent
        self._started_ms = 0  # when this tick's receive() began
        self.host_stalled = False  # the last flush moved nothing: the host is not reading
        self.on_request = None  # called with each request that has a valid id and a known op
        self._reader = frame.LineReader(crlf=True)  # a 1024-byte request may end in CRLF
        self._rx_buf = bytearray(RX_CHUNK)
        self._rx_view = memoryview(self._rx_buf)
        self._rx_error_events = 0  # rx_error events sent this tick
        self._handled = 0  # lines handled this tick
        self._tx = bytearray()
        self._unread = 0  # bytes the host had not taken at the last flush
        self._lines = []  # complete lines read but not handled yet (waiting for output room)
        self._reply_cache = []  # (request id, request payload bytes, reply frame bytes), newest last

    def receive(self):
        self._rx_error_events = 0
        if self.clock is not None:
            self._started_ms = self.clock.ticks_ms()
        self._handled = 0
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
            if self._handled and self.clock is not None and (
                ticks_diff(self.clock.ticks_ms(), self._started_ms) >= HANDLE_BUDGET_MS
            ):
                self.budget_ticks += 1
                return False
            self._handled += 1
            self._handle_line(lines.pop(0))
        return True

    @property
    def waiting_lines(self):
        return len(self._lines)

    def _handle_line(self, line):
        if line is None:
            self._rx_error(msg.E_LINE_TOO_LONG, "line dropped: longer than %d bytes" % frame.MAX_LINE_BYTES)
            return
        try:
            found = frame.decode_frame(line)
        except frame.FrameError as err:
            self._rx_error(err.code, err.message)
            return
        if found is None:
            return  # not a frame: banner, echo, noise
        message = found[0]
        if "op" not in message and ("ev" in message or "ok" in message):
            # An event or reply (our own output looped back: none carries an `op`): not a
            # request, no answer, no lease renewed. A frame with an `op` is a request whatever
            # else it carries: an estop must never be lost, and `ok`/`ev` in it are refused like
            # any field its op does not take (estop, stop and pause act anyway).
            return
        self.rx_frames += 1
        self._handle_request(message, found[1])

    def _rx_error(self, code, text):
        """Count a damaged line; report it while this tick's rx_error events are under the cap."""
        self.rx_errors += 1
        if self._rx_error_events < RX_ERROR_EVENTS_PER_TICK:
            self._rx_error_events += 1
            self.send(msg.event(msg.EV_RX_ERROR, {"err": code, "msg": text}))

    def _handle_request(self, message, payload):
        op = message.get("op")
        handler = self.ops.get(op) if isinstance(op, str) else None
        try:
            request_id = msg.request_id_of(message)
        except msg.RequestError as err:
            if handler is None or op not in NEVER_CACHED:
                self.send(msg.reply_error(None, err.code, err.message))
                return
            request_id = None  # a stop is never refused, not for its id either: it acts, replying to id null
        if op != msg.OP_HELLO and op not in NEVER_CACHED:
            for cached in self._reply_cache:
                # The same id and the same bytes: a retry. Equal decoded dicts are not enough
                # (true == 1, key order, escapes): a different request must run.
                if cached[0] == request_id and cached[1] == payload:
                    if handler is not None and self.on_request is not None:
                        self.on_request(op)  # a retry is a valid request too: it renews the lease
                    self._send_bytes(cached[2])  # answer again, do not run again
                    return
        if handler is None:
            reply = msg.reply_error(
                request_id, msg.E_UNKNOWN_OP, "unknown op %s; known: %s" % (msg._show(op), ", ".join(msg.OPS))
            )
        else:
            if self.on_request is not None:
                self.on_request(op)
            try:
                msg.check_fields(op, message)
                reply = msg.reply_ok(request_id, handler(message))
            except msg.RequestError as err:
                reply = msg.reply_error(request_id, err.code, err.message)
            except Exception as err:
                # A firmware bug: the request still gets its one reply (not cached: a retry runs
                # again), then the exception goes on to the tick, which fails safe.
                self.send(msg.reply_error(request_id, msg.E_INTERNAL, msg.clip("%s %s" % (type(err).__name__, err), 80)))
                raise
            if op == msg.OP_HELLO and reply["ok"] is True:
                # A new host session: its ids say nothing about the last one's. Only an accepted
                # hello: a refused request changes nothing, the cache included.
                self._reply_cache = []
        try:
            data = frame.encode_frame(reply)
        except ValueError as err:  # a reply that cannot be framed: say so, never drop the request silently
            data = frame.encode_frame(msg.reply_error(request_id, msg.E_INTERNAL, msg.clip(str(err), 80)))
        if op != msg.OP_HELLO and op not in NEVER_CACHED:
            self._reply_cache.append((request_id, payload, data))
            if len(self._reply_cache) > REPLY_CACHE:
                self._reply_cache.pop(0)
        self._send_bytes(data)

    def send(self, message):
        """Queue a message; False when it was dropped (the host is not reading)."""
        return self._send_bytes(frame.encode_frame(message))

    def send_optional(self, message):
        """Queue a message the host can do without (telemetry), unless what the host left unread
        at the last flush would then take the room kept for answers (TX_RESERVE). Events that
        come faster than a slow host reads would otherwise keep that room taken, and every
        request, an estop's too, would wait for it for ever. A host that reads everything loses
        none. False when it was left out (counted in tx_dropped)."""
        data = frame.encode_frame(message)
        if self._unread + len(data) + TX_RESERVE > MAX_TX_BYTES:
            self.tx_dropped += 1
            return False
        return self._send_bytes(data)  # and the queue's own bound, as for any message

    def _send_bytes(self, data):
        if len(self._tx) + len(data) > MAX_TX_BYTES:
            self.tx_dropped += 1
            return False
        self._tx.extend(data)
        return True

    def flush(self):
        if not self._tx:
            self._unread = 0
            return
        try:
            written = self.serial.write(self._tx)
        except Exception:
            written = 0
        if written:
            self._tx = self._tx[written:]
        self.host_stalled = not written
        self._unread = len(self._tx)
