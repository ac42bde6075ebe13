"""Open the byte line to a device from a port URL.

One small interface (`write`, `read`, `close`, `url`) over three kinds of port,
so the client never cares which one it talks to:

    /dev/ttyACM0, COM3        a board on USB serial (pyserial)
    socket://HOST:PORT        a served simulator on TCP (pyserial URL handler)
    sim, sim:micropython      an embedded simulator this transport starts on a
                              pty and stops again on close()
"""

import select
import time

import serial

from host.errors import PortOpenError, TransportError  # noqa: F401 (their home is host.errors; imported from here too)

BAUDRATE = 115200  # ignored by USB CDC and ptys, but pyserial wants one
POLL_S = 0.02  # pyserial read timeout: how often read() looks at its deadline
MAX_READ_BYTES = 4096
SIM_SCHEME = "sim"


class Transport:
    """A pyserial port. `read()` waits for data up to a deadline, then drains."""

    def __init__(self, port, url):
        self._port = port
        self.url = url
        self.name = url  # how messages name this port
        self.closed = False

    def _check_open(self):
        if self.closed:
            raise TransportError(self.url, "the port %s is closed (close() was called)" % self.url)

    def _lost(self, doing, err):
        """The TransportError for a port that broke while doing ("reading", "writing")."""
        return TransportError(self.url, "lost the connection to %s while %s: %s" % (self.url, doing, err))

    def write(self, data):
        self._check_open()
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as err:
            raise self._lost("writing", err)

    def read(self, timeout_s):
        """Bytes that arrived within timeout_s (b"" if none): at least one, then all that wait.

        The pyserial timeout stays fixed at POLL_S (changing it reconfigures a
        tty every time); the deadline is kept here instead.
        """
        self._check_open()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                data = self._port.read(1)
                if data:
                    break
                if time.monotonic() >= deadline:
                    return b""
            data = bytearray(data)
            # in_waiting is exact on a tty; on a socket it is 1 while anything waits
            while len(data) < MAX_READ_BYTES:
                waiting = self._port.in_waiting
                if not waiting:
                    break
                data.extend(self._port.read(min(waiting, MAX_READ_BYTES - len(data))))
            return bytes(data)
        except (serial.SerialException, OSError) as err:
            raise self._lost("reading", err)

    def close(self):
        self.closed = True
        try:
            self._port.close()
        except (serial.SerialException, OSError):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# A served simulator turns a second host away at once (sim/launcher.py SocketFront), as a board's
# USB port takes one program at a time: a busy line that is not a frame, then it closes.
ONE_HOST_HINT = " (a served device talks to one host at a time: is another tensctl or monitor connected?)"
BUSY_TEXT = b"busy, another host is connected"  # in sim/launcher.py BUSY_LINE
_HEAD_BYTES = 256  # how much of what came before the first frame is kept, to spot BUSY_TEXT


class SocketTransport(Transport):
    """A socket:// port, opened with a zero pyserial timeout: one read takes all that has
    arrived (on a socket in_waiting is 1 while anything waits, so draining it byte by byte
    costs more than a fast simulator's telemetry leaves time for).

    A lost connection says why it can have been lost: closed before the device sent a
    single frame, it may be a served device turning a second host away (ONE_HOST_HINT);
    after frames came, the device closed the connection (it stopped or went away)."""

    def __init__(self, port, url):
        Transport.__init__(self, port, url)
        self.frames_seen = False  # has a frame start ('@') arrived on this connection?
        self._head = b""  # what arrived before the first frame (bounded)

    def _note(self, data):
        if not self.frames_seen:
            at = data.find(b"@")
            self.frames_seen = at >= 0
            self._head = (self._head + (data if at < 0 else data[:at]))[:_HEAD_BYTES]

    def _lost(self, doing, err):
        """The TransportError for a connection that broke while doing ("reading", "writing")."""
        if BUSY_TEXT in self._head:
            text = "the served device at %s is busy and turned this host away%s" % (self.url, ONE_HOST_HINT)
        elif not self.frames_seen:
            text = "lost the connection to %s while %s: %s; it was closed before the device sent anything%s" % (
                self.url, doing, err, ONE_HOST_HINT)
        else:
            text = ("lost the connection to %s while %s: %s; the device closed the connection "
                    "(it stopped, restarted or went away)" % (self.url, doing, err))
        return TransportError(self.url, text)

    def read(self, timeout_s):
        self._check_open()
        try:
            if not select.select([self._port], [], [], max(0.0, timeout_s))[0]:
                return b""
            data = self._port.read(MAX_READ_BYTES)
        except (serial.SerialException, OSError, ValueError) as err:
            raise self._lost("reading", err)
        self._note(data)
        return data


class SimTransport(Transport):
    """A pty to an embedded simulator that this transport started and owns."""

    def __init__(self, port, server, url):
        Transport.__init__(self, port, url)
        self.server = server
        self.pty_path = server.url
        self.name = "%s (pty %s)" % (url, server.url)

    def read(self, timeout_s):
        if not self.server.alive():
            detail = self.server.errors().strip()
            raise TransportError(
                self.url, "the embedded simulator stopped" + (":\n" + detail if detail else "")
            )
        return Transport.read(self, timeout_s)

    def close(self):
        Transport.close(self)
        self.server.close()


def _open_serial(url, path_for_errors=None):
    name = path_for_errors or url
    try:
        if url.lower().startswith(SOCKET_SCHEME):
            port = serial.serial_for_url(url, baudrate=BAUDRATE, timeout=0, write_timeout=2)
        elif "://" in url:
            port = serial.serial_for_url(url, baudrate=BAUDRATE, timeout=POLL_S, write_timeout=2)
        else:
            port = serial.Serial(url, BAUDRATE, timeout=POLL_S, write_timeout=2)
    except (serial.SerialException, OSError, ValueError) as err:
        raise PortOpenError(url, "cannot open port %s: %s" % (name, err))
    return port


def parse_sim_url(url):
    """'sim' -> 'cpython', 'sim:micropython' -> 'micropython', anything else -> None."""
    if url == SIM_SCHEME:
        return "cpython"
    if url.startswith(SIM_SCHEME + ":") and "://" not in url:
        return url[len(SIM_SCHEME) + 1 :]
    return None


SOCKET_SCHEME = "socket://"


def check_socket_url(url):
    """socket://HOST:PORT: (host, port), or PortOpenError saying what is wrong (port 1..65535)."""
    rest = url[len(SOCKET_SCHEME):]
    address, _, _options = rest.partition("?")
    address = address.rstrip("/")
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]
    if not sep or not host:
        raise PortOpenError(url, "bad port URL %s: expected socket://HOST:PORT, e.g. socket://127.0.0.1:7777" % url)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise PortOpenError(
            url, "bad port URL %s: the TCP port must be a number from 1 to 65535, got %r" % (url, port_text)
        )
    return host, int(port_text)


def open_port(url, sim_speed=1.0):
    """Open a port URL (see the module docstring); raises PortOpenError naming the URL."""
    if not url:
        raise PortOpenError(url, "no port given")
    if url.lower().startswith(SOCKET_SCHEME):
        check_socket_url(url)
    runtime = parse_sim_url(url)
    if runtime is not None:
        return _open_sim(url, runtime, sim_speed)
    port = _open_serial(url)
    try:
        port.reset_input_buffer()  # drop what a previous session left unread
    except (serial.SerialException, OSError):
        pass
    if url.lower().startswith(SOCKET_SCHEME):
        return SocketTransport(port, url)
    return Transport(port, url)


def _open_sim(url, runtime, speed):
    from sim import launcher  # only the sim scheme needs the simulator

    try:
        server = launcher.start_server(runtime=runtime, speed=speed, pty=True)
    except launcher.SimError as err:
        raise PortOpenError(url, "cannot start the embedded simulator for %s: %s" % (url, err))
    try:
        port = _open_serial(server.url, "%s (pty %s)" % (url, server.url))
    except BaseException:
        server.close()
        raise
    return SimTransport(port, server, url)
