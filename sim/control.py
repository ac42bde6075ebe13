"""The control side channel of a served simulated device (CPython side).

A served device's serial line carries the device protocol and nothing else, so
faults are injected through a second endpoint: a TCP socket on 127.0.0.1 (a free
port unless `tens-sim serve --control HOST:PORT` pins it) that takes JSON lines
and answers each with one JSON line:

    {"inject": "heater_stuck_on"}     inject a fault (names: `tens-sim faults`)
    {"clear": "heater_stuck_on"}      clear it
    {"clear_all": true}               clear every injected fault
    {"list": true}                    also list every fault with its description
    {"status": true}  (or {})         only report

    -> {"ok": true, "device_id": "pulsewarm-sim-0", "seed": 1, "active": ["heater_stuck_on"],
        "ticks_ms": 1073737824, "elapsed_ms": 1000, "url": "/dev/pts/7",
        "runtime": "cpython"}
    -> {"ok": false, "error": "unknown fault 'x'; known: ...", "known": [...], ...}

`sim.serve_loop.ServedDevice.control` answers the request on both runtimes (in
the MicroPython VM it arrives through a pipe of its own, see sim/launcher.py).

Finding the endpoint: every device `tens-sim serve` starts is written to a
registry folder (`registry_dir()`: $TENS_SIM_RUN_DIR, else
$XDG_RUNTIME_DIR/tens-sim, else <tmp>/tens-sim-<uid>), one small JSON file per
device mapping its URL to its control address; `tens-sim inject --port URL`
looks the URL up there (`resolve`). Files of servers that are gone are ignored
and removed.
"""

import json
import os
import socket
import socketserver
import tempfile
import threading

MAX_LINE = 4000  # bytes of one control request (the VM pipe takes a line whole below PIPE_BUF)
DEFAULT_TIMEOUT_S = 10.0
SHUTDOWN_POLL_S = 0.05  # how soon the server notices close(): a stopping `tens-sim serve` waits this long
PORT_MAX = 65535


class ControlError(Exception):
    pass


def parse_address(text, default_host="127.0.0.1"):
    """'HOST:PORT' or 'PORT' -> (host, port)."""
    text = str(text).strip()
    if text.startswith("tcp://"):
        text = text[len("tcp://"):]
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    try:
        port = int(port)
    except ValueError:
        raise ControlError("a control address is HOST:PORT or PORT, got %r" % text)
    if not 0 <= port <= PORT_MAX:
        raise ControlError("port %d is outside 0..%d in %r" % (port, PORT_MAX, text))
    return host or default_host, port


def format_address(host, port):
    return "%s:%d" % (host, port)


# ---- the server side -----------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return
            if not line:
                return
            if not line.strip():
                continue
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                reply = {"ok": False, "error": "control request longer than %d bytes" % MAX_LINE}
                self._send(reply)
                return
            try:
                request = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as err:
                reply = {"ok": False, "error": "not a JSON line: %s" % err}
            else:
                if not isinstance(request, dict):
                    kind = type(request).__name__
                    reply = {"ok": False, "error": "a control request is a JSON object, got %s" % kind}
                else:
                    try:
                        reply = self.server.answer(request)
                    except Exception as err:  # the device stopped, the VM did not answer...
                        reply = {"ok": False, "error": str(err) or type(err).__name__}
            if not self._send(reply):
                return

    def _send(self, reply):
        try:
            self.wfile.write((json.dumps(reply) + "\n").encode("utf-8"))
            self.wfile.flush()
        except OSError:
            return False
        return True


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, answer):
        self.answer = answer
        socketserver.ThreadingTCPServer.__init__(self, address, _Handler)


class ControlServer:
    """Serves `answer(request dict) -> reply dict` on a TCP socket, in a thread."""

    def __init__(self, answer, host="127.0.0.1", port=0):
        try:
            self._server = _TCPServer((host, port), answer)
        except OSError as err:
            raise ControlError("cannot open the control socket on %s: %s" % (format_address(host, port), err))
        self.host, self.port = self._server.server_address[:2]
        self.address = format_address(self.host, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True
        )
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


# ---- the client side -------------------------------------------------------------------


def request(address, message, timeout_s=DEFAULT_TIMEOUT_S):
    """Send one request to a control address ('HOST:PORT'); return the reply dict."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.sendall((json.dumps(message) + "\n").encode("utf-8"))
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except socket.timeout:
        raise ControlError("the control socket %s did not answer within %g s" % (address, timeout_s))
    except OSError as err:
        raise ControlError("cannot reach the control socket %s: %s" % (address, err))
    try:
        reply = json.loads(data.decode("utf-8"))
    except ValueError:
        raise ControlError("the control socket %s answered something that is not JSON: %r" % (address, data[:200]))
    if not isinstance(reply, dict):
        raise ControlError("the control socket %s answered %r" % (address, reply))
    return reply


# ---- the registry: device URL -> control address ---------------------------------------


def registry_dir():
    explicit = os.environ.get("TENS_SIM_RUN_DIR")
    if explicit:
        return explicit
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isdir(runtime_dir):
        return os.path.join(runtime_dir, "tens-sim")
    return os.path.join(tempfile.gettempdir(), "tens-sim-%d" % os.getuid())


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def register(url, control_address, device_id, runtime):
    """Write this device's registry entry; returns its path (pass it to `unregister`)."""
    folder = registry_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    port = parse_address(control_address)[1]
    path = os.path.join(folder, "control-%d-%d.json" % (os.getpid(), port))
    entry = {"url": url, "control": control_address, "device_id": device_id, "runtime": runtime, "pid": os.getpid()}
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(entry, handle)
    os.replace(temporary, path)  # readers never see half a file
    return path


def unregister(path):
    try:
        os.remove(path)
    except OSError:
        pass


def entries():
    """The live registry entries (dicts with url, control, device_id, runtime, pid)."""
    folder = registry_dir()
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for name in names:
        if not (name.startswith("control-") and name.endswith(".json")):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(entry, dict) or not _pid_alive(entry.get("pid")):
            unregister(path)  # its server is gone
            continue
        found.append(entry)
    found.sort(key=lambda e: (str(e.get("device_id")), str(e.get("url"))))
    return found


def _url_key(url):
    """A comparable form of a device URL: ('socket', port, host) or ('path', realpath)."""
    text = str(url).strip()
    if text.startswith("socket://"):
        rest = text[len("socket://"):].split("?", 1)[0].rstrip("/")
        host, _, port = rest.rpartition(":")
        try:
            port = int(port)
        except ValueError:
            return ("text", text)
        try:
            host = socket.gethostbyname(host or "127.0.0.1")
        except OSError:
            pass
        if host in ("0.0.0.0", "127.0.0.1"):
            host = "127.0.0.1"  # a server on all interfaces is reached on the loopback too
        return ("socket", port, host)
    if text.startswith("/"):
        return ("path", os.path.realpath(text))
    return ("text", text)


def find_address(address):
    """(entry, "control" or "serial") for the live registry entry whose control address or
    serial socket is HOST:PORT `address`; (None, None) when no served device has it."""
    key = _url_key("socket://" + str(address).strip())
    if key[0] != "socket":
        return None, None
    for entry in entries():
        if _url_key("socket://" + str(entry.get("control", ""))) == key:
            return entry, "control"
        if _url_key(entry.get("url", "")) == key:
            return entry, "serial"
    return None, None


def resolve(url=None):
    """The registry entry of the device served at `url`, or of the only one served when url is None."""
    live = entries()
    if url is None:
        if len(live) == 1:
            return live[0]
        if not live:
            raise ControlError(
                "no served simulated device found (registry %s); start one with `tens-sim serve`, or pass "
                "--port URL or --control HOST:PORT" % registry_dir()
            )
        raise ControlError(
            "%d simulated devices are served; choose one with --port: %s"
            % (len(live), ", ".join("%s (%s)" % (e.get("url"), e.get("device_id")) for e in live))
        )
    key = _url_key(url)
    for entry in live:
        if entry.get("url") == url or _url_key(entry.get("url", "")) == key:
            return entry
    served = ", ".join(str(e.get("url")) for e in live) or "none"
    raise ControlError(
        "no served simulated device at %s (served now: %s); `tens-sim inject` reaches devices started by "
        "`tens-sim serve` on this machine (registry %s), or pass --control HOST:PORT" % (url, served, registry_dir())
    )
