"""USB serial on the board (interfaces.py: Serial) over MicroPython's stdin/stdout.

    serial = Rp2UsbSerial()             # sys.stdin / sys.stdout: the Pico's USB CDC
    count = serial.read_into(buf)       # 0..min(len(buf), max_read) bytes; 0 when none wait
    accepted = serial.write(data)       # 0..min(len(data), max_write); 0 when the host is not reading

The board's USB CDC is the REPL's serial line, so the protocol rides on sys.stdin.buffer and
sys.stdout.buffer. Neither call waits for the host:

READ. MicroPython's stdin read(n) waits until it has all n bytes, so bytes are taken one at a
time, each only after select.poll(0) says one is there (a 0 ms poll never waits), and at most
max_read (64) a call: Link calls read_into up to RX_CHUNKS_PER_TICK (8) times a tick, so a
tick reads at most 512 bytes whatever the host sends. One bytearray of one byte is reused:
reading allocates nothing.

WRITE. Before every chunk of at most `chunk` (64) bytes, poll(0) for POLLOUT on stdout; on the
rp2 port that is "the host is not connected, or the TinyUSB TX FIFO has room"
(mp_usbd_cdc_poll_interfaces). At most max_write (2048) bytes go out per call; the count
accepted is returned and Link keeps the rest for the next tick (and drops and counts it past
its own cap once the host stops reading). A host that has stopped reading fills the FIFO,
POLLOUT goes away, and write returns 0 at once on every later tick.

RESIDUAL BLOCKING (not measured on a board here; the bound comes from the port's source).
POLLOUT only promises room for one byte. If the FIFO has room for fewer bytes than the chunk,
the port's mp_usbd_cdc_tx_strn waits for room (recent ports copy what fits first, older ones
wait for the whole chunk), for at most MICROPY_HW_USB_CDC_TX_TIMEOUT (500 ms on rp2) without
progress; after a short write, or once the FIFO is full, POLLOUT is gone and this call stops
(older ports report a chunk cut short by that timeout as written: those bytes are lost, the
way a host that does not read loses them anyway). A host that reads does free
the FIFO within a USB frame (1 ms) or so; only a host that keeps the port open (DTR set) and
stops reading in the middle of a chunk costs one such wait, once: every later tick sees no
POLLOUT. That one tick runs late by up to 500 ms: the PIO then fires no pulse it was not fed
(stimulation stops, the safe direction), the heater's 50 ms lease runs out, and the 1 s
watchdog is not reached. A host that closes the port (DTR clear) never blocks a write: the
port then writes into the FIFO without waiting. The unix port over a pty behaves the same way
(Linux reports POLLOUT on a pty while the other side's buffer has room); tests/test_board_main.py
measures it there.

INTERRUPT CHARACTER. The rp2 USB stack takes micropython's interrupt character out of the
stream before it reaches stdin and raises KeyboardInterrupt. main (firmware/board_entry.py)
therefore runs with micropython.kbd_intr(-1) in normal mode, so a 0x03 byte is data here, and
with kbd_intr(3) only in maintenance mode, where Ctrl-C from mpremote must end the loop.

Portable: the streams and the select module can be given (CPython tests pass fakes), and the
same class runs in the MicroPython unix port over a pty.
"""

from firmware.compat import const

MAX_READ = const(64)  # bytes per read_into call
MAX_WRITE = const(2048)  # bytes per write call
WRITE_CHUNK = const(64)  # one full-speed USB packet
_POLLIN = const(1)
_POLLOUT = const(4)


class Rp2UsbSerial:
    def __init__(self, stdin=None, stdout=None, select_module=None, max_read=MAX_READ, max_write=MAX_WRITE,
                 chunk=WRITE_CHUNK):
        if stdin is None or stdout is None:
            import sys

            if stdin is None:
                stdin = sys.stdin
            if stdout is None:
                stdout = sys.stdout
        if select_module is None:
            import select as select_module
        self._in = getattr(stdin, "buffer", stdin)  # the byte stream (no newline translation)
        self._out = getattr(stdout, "buffer", stdout)
        self._rx_poll = select_module.poll()
        self._rx_poll.register(stdin, getattr(select_module, "POLLIN", _POLLIN))
        self._tx_poll = select_module.poll()
        self._tx_poll.register(stdout, getattr(select_module, "POLLOUT", _POLLOUT))
        self._pollin = getattr(select_module, "POLLIN", _POLLIN)
        self._pollout = getattr(select_module, "POLLOUT", _POLLOUT)
        self._one = bytearray(1)
        self._readinto = getattr(self._in, "readinto", None)
        self.max_read = max_read if max_read > 0 else 1
        self.max_write = max_write if max_write > 0 else 1
        self.chunk = chunk if chunk > 0 else 1
        self.hangup = False  # the other end went away (stdin at end of file: the unix port over a pty)
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.tx_refused = 0  # write calls that found no room at all (host not reading)

    def _ready(self, poller, flag):
        events = poller.poll(0)
        if not events:
            return False
        return bool(events[0][1] & flag)

    def read_into(self, buf):
        """Copy the bytes waiting now into buf, at most min(len(buf), max_read); never waits."""
        limit = len(buf)
        if limit > self.max_read:
            limit = self.max_read
        count = 0
        one = self._one
        while count < limit:
            if not self._ready(self._rx_poll, self._pollin):
                break
            if self._readinto is not None:
                got = self._readinto(one)
            else:
                data = self._in.read(1)
                got = len(data) if data else 0
                if got:
                    one[0] = data[0]
            if not got:
                self.hangup = True  # readable with nothing to read: end of file
                break
            buf[count] = one[0]
            count += 1
        self.rx_bytes += count
        return count

    def write(self, data):
        """Send what the host can take now, at most max_write bytes; returns the count accepted."""
        total = len(data)
        if total > self.max_write:
            total = self.max_write
        view = memoryview(data)
        sent = 0
        while sent < total:
            if not self._ready(self._tx_poll, self._pollout):
                break
            size = total - sent
            if size > self.chunk:
                size = self.chunk
            try:
                written = self._out.write(view[sent:sent + size])
            except OSError:
                break
            if written is None:  # some ports return nothing for a complete write
                written = size
            if written <= 0:
                break
            sent += written
            if written < size:  # a short write: no more room now
                break
        if sent == 0 and total:
            self.tx_refused += 1
        self.tx_bytes += sent
        return sent
