"""`tensctl deploy`: build the firmware and copy what changed to a board with mpremote.

A board in normal mode runs its watchdog and ignores Ctrl-C (firmware/board_entry.py), so
mpremote cannot get a REPL there; deploying goes through maintenance mode:

 1. Build: host.build_firmware.build (what `make firmware` does): every firmware/*.py compiled
    by mpy-cross for armv6m into DIST/firmware/*.mpy; main.py (and a boot.py, if there is one)
    stay source.
 2. The files for the board, each with its size and sha256: DIST/firmware/main.py goes to
    /main.py (the board runs it by name), boot.py to /boot.py, every other file to its place
    under /firmware.
 3. Maintenance mode, over the protocol: hello and status. In normal mode, ask for
    `maintenance on` (IDLE only; the clinician PIN in patient mode): the board writes a
    one-shot marker and reboots into maintenance mode (no watchdog, Ctrl-C on). Wait until
    it answers again from a new boot (a gap in its answers, or a smaller uptime) with
    maintenance: true. A board that does not answer the protocol at all may already sit at
    its REPL (an earlier deploy that stopped half-way): mpremote tells in the next step.
 4. The board's files: `mpremote connect PORT resume exec LISTING` (its Ctrl-C ends the
    maintenance loop, which returns to the REPL with every output off; `resume` keeps mpremote
    from soft-resetting, which would run main.py again) prints one line: size and sha256 of
    /main.py, /boot.py and every file under /firmware (computed on the board with hashlib).
 5. The plan: copy every file that is missing or differs (sha256; a board without sha256
    gets every file), remove every file under /firmware the build does not have (a stale
    foo.py would shadow the new foo.mpy: MicroPython imports .py first) and then their empty
    folders, make the missing folders. /main.py is copied last, so a copy that stops half-way
    leaves the old entry point with whatever modules it had reached.
 6. One mpremote run applies it: `fs mkdir`, `fs rm`, `fs rmdir`, `fs cp --force`, chained
    with `+`.
 7. Verify: list again; every file must match the build and no stale one remain. Only then
    `mpremote ... reset` (a hard reset: the marker was consumed at the maintenance boot, so
    the board comes back in normal mode with its watchdog), and wait until it answers the
    protocol with maintenance: false.
A failure after step 4 leaves the board at its REPL with every output off; running deploy
again goes on from there.

--dry-run does steps 1 and 2 and prints the plan as far as it is known without the board:
every file with its size and sha256, and each step's command. Nothing is sent to the board
(the port is not even opened), so which files differ is known only from step 4 on.

The functions take their collaborators as arguments (the mpremote runner, the protocol
opener, sleep and clock): tests/test_deploy.py runs them against fakes and, end to end,
against a board emulated in the MicroPython unix port on a pty.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

from firmware.protocols.messages import E_LOCKED
from host import build_firmware

BOARD_TOP_FILES = ("main.py", "boot.py")  # kept as source, at the board's root
BOARD_PACKAGE = "firmware"
LISTING_MARK = "PWDEPLOY "
MPREMOTE_TIMEOUT_S = 120
LIST_TIMEOUT_S = 60
REBOOT_TIMEOUT_S = 20.0  # a reboot and USB re-enumeration take a few seconds
POLL_S = 0.25
PROBE_TIMEOUT_S = 0.5  # per protocol request while waiting for a reboot

# Run on the board (mpremote exec): size and sha256 of the deployed files, as one JSON line.
LISTING_SCRIPT = """\
import os, json
try:
    import hashlib
    _H = hashlib.sha256
except (ImportError, AttributeError):
    _H = None
def _sum(path):
    if _H is None:
        return None
    h = _H()
    buf = bytearray(512)
    view = memoryview(buf)
    with open(path, 'rb') as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return ''.join('%02x' % b for b in h.digest())
_files = {}
_dirs = []
def _walk(folder):
    for entry in os.ilistdir(folder):
        path = folder + '/' + entry[0]
        if entry[1] & 0x4000:
            _dirs.append(path)
            _walk(path)
        else:
            _files[path] = [os.stat(path)[6], _sum(path)]
for _top in ('main.py', 'boot.py'):
    try:
        _files[_top] = [os.stat(_top)[6], _sum(_top)]
    except OSError:
        pass
try:
    os.stat('firmware')
    _dirs.append('firmware')
    _walk('firmware')
except OSError:
    pass
print('PWDEPLOY ' + json.dumps({'files': _files, 'dirs': _dirs}))
"""


class DeployError(Exception):
    """Ends a deploy: a message, a stable kind, and a hint for people."""

    def __init__(self, kind, message, hint=None, exit_code=1):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


# ---- the files -----------------------------------------------------------------------------


class LocalFile:
    def __init__(self, board_path, local_path, data):
        self.board_path = board_path
        self.local_path = local_path
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()

    def as_dict(self):
        return {"path": self.board_path, "local": self.local_path, "size": self.size, "sha256": self.sha256}


def project_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def board_path_for(dist_relative):
    """dist-relative path (firmware/x.mpy) -> the board's path (firmware/x.mpy; main.py at the root)."""
    parts = dist_relative.replace(os.sep, "/").split("/")
    if len(parts) == 2 and parts[0] == BOARD_PACKAGE and parts[1] in BOARD_TOP_FILES:
        return parts[1]
    return "/".join(parts)


def build(root, dist_dir, builder=None):
    """Compile into dist_dir; returns the board's files (LocalFile), main.py last."""
    if builder is None:
        builder = build_firmware.build
    try:
        built = builder(root, dist_dir)
    except build_firmware.OutputError as exc:  # a folder it may not replace, or one it cannot write
        raise DeployError("dist", "nothing was built: %s" % exc, exit_code=2)
    except SystemExit as exc:  # build_firmware reports mpy-cross errors this way
        raise DeployError("build", "the firmware does not build: %s" % exc, exit_code=1)
    files = []
    for _source, target in built:
        relative = os.path.relpath(target, dist_dir)
        with open(target, "rb") as handle:
            data = handle.read()
        files.append(LocalFile(board_path_for(relative), target, data))
    return order_files(files)


def order_files(files):
    """The package first (sorted), then boot.py, then main.py: the entry point last."""
    rank = {"boot.py": 1, "main.py": 2}
    return sorted(files, key=lambda f: (rank.get(f.board_path, 0), f.board_path))


def _parents(path):
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class Plan:
    """What one deploy does on the board, from the build and the board's listing."""

    def __init__(self, files, remote=None):
        self.files = files
        self.remote = remote  # {"files": {path: [size, sha256|None]}, "dirs": [path]} or None (unknown)
        self.copy = []
        self.same = []
        self.remove = []
        self.rmdirs = []
        self.mkdirs = []
        self.warnings = []
        if remote is None:
            self.copy = list(files)  # unknown until the board's listing: each file is copied if it differs
            self.mkdirs = []
            return
        board_files = remote.get("files", {})
        board_dirs = set(remote.get("dirs", []))
        wanted_dirs = set()
        for local in files:
            wanted_dirs.update(_parents(local.board_path))
            there = board_files.get(local.board_path)
            if there is not None and there[1] is not None and there[1] == local.sha256:
                self.same.append(local)
            else:
                self.copy.append(local)
        local_paths = set(f.board_path for f in files)
        for path in sorted(board_files):
            if path.startswith(BOARD_PACKAGE + "/") and path not in local_paths:
                self.remove.append(path)
            elif path in BOARD_TOP_FILES and path not in local_paths:
                self.warnings.append("the board has /%s, which this build does not: left as it is" % path)
        for folder in sorted(board_dirs, key=lambda d: (-d.count("/"), d)):  # deepest first
            if folder.startswith(BOARD_PACKAGE + "/") and folder not in wanted_dirs:
                self.rmdirs.append(folder)
        needed = set()
        for local in self.copy:
            needed.update(_parents(local.board_path))
        self.mkdirs = sorted((d for d in needed if d not in board_dirs), key=lambda d: (d.count("/"), d))

    @property
    def known(self):
        return self.remote is not None

    @property
    def empty(self):
        return self.known and not (self.copy or self.remove or self.rmdirs or self.mkdirs)

    def fs_args(self):
        """mpremote arguments (after `connect PORT resume`) that apply the plan, chained with +."""
        commands = []
        for folder in self.mkdirs:
            commands.append(["fs", "mkdir", ":" + folder])
        for path in self.remove:
            commands.append(["fs", "rm", ":" + path])
        for folder in self.rmdirs:
            commands.append(["fs", "rmdir", ":" + folder])
        for local in self.copy:
            commands.append(["fs", "cp", "--force", local.local_path, ":" + local.board_path])
        args = []
        for command in commands:
            if args:
                args.append("+")
            args.extend(command)
        return args

    def as_dict(self):
        return {
            "known": self.known,
            "copy": [f.board_path for f in self.copy],
            "up_to_date": [f.board_path for f in self.same],
            "remove": list(self.remove),
            "rmdir": list(self.rmdirs),
            "mkdir": list(self.mkdirs),
            "warnings": list(self.warnings),
        }


def mismatches(files, remote):
    """After a copy: board paths that still differ from the build, or stale ones under /firmware."""
    plan = Plan(files, remote)
    return [f.board_path for f in plan.copy] + plan.remove


# ---- mpremote ----------------------------------------------------------------------------------


class Mpremote:
    """Runs `python -m mpremote connect PORT resume ...` (the mpremote of this environment)."""

    def __init__(self, port, run=subprocess.run, python=None):
        self.port = port
        self._run = run
        self.python = python or sys.executable
        self.calls = []  # every argument list run, for the report

    def command(self, args):
        return [self.python, "-m", "mpremote", "connect", self.port, "resume"] + list(args)

    @staticmethod
    def shown(args, port):
        """The command as a person would type it."""
        return " ".join(_quote(a) for a in ["mpremote", "connect", port, "resume"] + list(args))

    def run(self, args, timeout_s=MPREMOTE_TIMEOUT_S):
        command = self.command(args)
        self.calls.append(command)
        try:
            result = self._run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DeployError(
                "mpremote", "mpremote did not finish within %d s on %s" % (timeout_s, self.port),
                hint=STUCK_HINT,
            )
        except OSError as exc:
            raise DeployError("mpremote", "cannot run mpremote: %s" % exc, hint="pip install mpremote")
        if result.returncode != 0:
            text = (result.stderr or "").strip() or (result.stdout or "").strip()
            if "raw repl" in text.lower():
                raise DeployError(
                    "no_repl",
                    "mpremote could not get a REPL on %s: the board is not in maintenance mode" % self.port,
                    hint=MAINTENANCE_HINT,
                )
            raise DeployError("mpremote", "mpremote failed on %s: %s" % (self.port, _last_lines(text)), hint=STUCK_HINT)
        return result.stdout or ""

    def listing(self):
        out = self.run(["exec", LISTING_SCRIPT], timeout_s=LIST_TIMEOUT_S)
        for line in out.splitlines():
            if line.startswith(LISTING_MARK):
                try:
                    return json.loads(line[len(LISTING_MARK):])
                except ValueError:
                    break
        raise DeployError("mpremote", "the board's file listing was unreadable: %s" % _last_lines(out), hint=STUCK_HINT)


MAINTENANCE_HINT = (
    "tensctl deploy asks the board for maintenance mode over the protocol first; a board that neither "
    "answers it nor gives a REPL can be started in maintenance mode by holding STOP while plugging it in"
)
STUCK_HINT = (
    "the board stays at its REPL with every output off; run tensctl deploy again, or power-cycle it to "
    "start the firmware it has"
)


def _quote(arg):
    if arg and all(c.isalnum() or c in "-_./:=+@%" for c in arg):
        return arg
    if "\n" in arg:
        return "'<script: %d lines>'" % (arg.count("\n") + 1)
    return "'" + arg.replace("'", "'\\''") + "'"


def _last_lines(text, count=3):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return " | ".join(lines[-count:]) if lines else "(no output)"


# ---- the protocol side: into maintenance mode and back ------------------------------------------


class Protocol:
    """Opens the port and talks to the firmware: hello, status, maintenance. open_client(url,
    timeout_s) returns (client, transport) with hello done; tests pass a fake."""

    def __init__(self, port, pin=None, open_client=None, sleep=time.sleep, clock=time.monotonic, find_port=None):
        self.port = port
        self.pin = pin
        self._open = open_client or _open_client
        self.sleep = sleep
        self.clock = clock
        self.find_port = find_port  # called again after a reboot when the port was found by VID:PID

    def status(self, timeout_s=1.0, retries=1):
        """(hello reply, status reply); raises the client's errors."""
        client, transport = self._open(self.port, timeout_s, retries, self.pin)
        try:
            return client.device, client.status()
        finally:
            transport.close()

    def request_maintenance(self):
        """Ask for maintenance mode; returns the status before (for its uptime)."""
        client, transport = self._open(self.port, 1.0, 1, self.pin)
        try:
            before = client.status()
            client.maintenance(True)
            return before
        finally:
            transport.close()

    def wait_for_boot(self, maintenance, before_uptime_ms=None, any_answer=False, timeout_s=REBOOT_TIMEOUT_S):
        """Poll until a new boot answers; returns (hello, status). maintenance: what it must say.

        A boot is new after a gap in the answers (the port went away, or nothing answered), or
        when its uptime is below before_uptime_ms; with any_answer, every answer is new (the
        board was at its REPL, which does not speak the protocol)."""
        from host.client import ClientError
        from host.transport import TransportError

        deadline = self.clock() + timeout_s
        gap = False
        last = None
        while self.clock() < deadline:
            if self.find_port is not None:
                found = self.find_port()
                if found:
                    self.port = found
            try:
                hello, status = self.status(PROBE_TIMEOUT_S, 0)
            except (TransportError, ClientError, OSError):
                gap = True  # rebooting: the port is gone, or nothing answers yet
                self.sleep(POLL_S)
                continue
            last = status
            fresh = gap or any_answer or (before_uptime_ms is not None and status.get("uptime_ms", 0) < before_uptime_ms)
            if fresh:
                if bool(status.get("maintenance")) != maintenance:
                    if maintenance:
                        raise DeployError(
                            "maintenance",
                            "the board rebooted in normal mode, not in maintenance mode (it could not keep "
                            "the maintenance marker)",
                            hint="hold STOP while plugging the board in: that starts maintenance mode",
                        )
                    raise DeployError(
                        "reboot", "the board came back in maintenance mode after the reset",
                        hint="is STOP held (or stuck)? Release it and power-cycle the board",
                    )
                return hello, status
            self.sleep(POLL_S)
        if last is not None:
            raise DeployError(
                "reboot", "the board on %s answers, but did not reboot within %d s" % (self.port, timeout_s),
                exit_code=4,
            )
        raise DeployError(
            "reboot", "no answer from %s within %d s of the reboot" % (self.port, timeout_s), exit_code=4,
            hint="the port may have a new name after the reboot: see tensctl ports",
        )


def _open_client(url, timeout_s, retries, pin):
    from host.client import Client
    from host.transport import open_port

    transport = open_port(url)
    try:
        client = Client(transport, timeout_s=timeout_s, retries=retries, pin=pin)
        client.hello()
    except BaseException:
        transport.close()
        raise
    return client, transport


# ---- the whole deploy ------------------------------------------------------------------------


class Report:
    def __init__(self, port, dry_run, dist_dir):
        self.port = port
        self.dry_run = dry_run
        self.dist_dir = dist_dir
        self.files = []
        self.plan = None
        self.steps = []  # {"step": name, "text": what happened}
        self.device_before = None
        self.device_after = None
        self.entered_maintenance = False

    def step(self, name, text, progress=None):
        self.steps.append({"step": name, "text": text})
        if progress is not None:
            progress(text)

    def as_dict(self):
        document = {
            "dry_run": self.dry_run,
            "port": self.port,
            "dist": self.dist_dir,
            "files": [f.as_dict() for f in self.files],
            "bytes": sum(f.size for f in self.files),
            "plan": self.plan.as_dict() if self.plan is not None else None,
            "steps": self.steps,
            "rebooted_into_maintenance": self.entered_maintenance,
        }
        if self.device_before is not None:
            document["device_before"] = self.device_before
        if self.device_after is not None:
            document["device_after"] = self.device_after
        return document


def dry_run(port, root, dist_dir, builder=None):
    """Build and describe; nothing goes to the board."""
    report = Report(port, True, dist_dir)
    report.files = build(root, dist_dir, builder)
    report.plan = Plan(report.files)
    shown_port = port or "PORT"
    report.step("build", "built %d files (%d bytes) into %s" % (len(report.files), sum(f.size for f in report.files), dist_dir))
    report.step(
        "maintenance",
        "ask %s over the protocol for maintenance mode (tensctl maintenance on) unless it is in it; it "
        "reboots without its watchdog, with Ctrl-C on" % shown_port,
    )
    report.step("list", "read size and sha256 of the board's files: " + Mpremote.shown(["exec", LISTING_SCRIPT], shown_port))
    report.step(
        "copy",
        "copy each of the %d files whose sha256 differs (main.py last), remove files under /firmware the build "
        "does not have: %s" % (len(report.files), Mpremote.shown(["fs", "cp", "--force", "LOCAL", ":PATH", "+", "..."], shown_port)),
    )
    report.step("verify", "list again: every file must match the build")
    report.step("reset", "hard reset into normal mode, wait for it to answer: " + Mpremote.shown(["reset"], shown_port))
    return report


def deploy(port, root, dist_dir, protocol, mpremote, builder=None, progress=None):
    """Build, enter maintenance mode, copy what changed, verify, reset. Returns a Report."""
    from host.client import ClientError, DeviceError, VersionMismatch
    from host.transport import TransportError

    report = Report(port, False, dist_dir)
    report.files = build(root, dist_dir, builder)
    report.step("build", "built %d files (%d bytes) into %s" % (len(report.files), sum(f.size for f in report.files), dist_dir), progress)

    # 3. maintenance mode
    try:
        hello, status = protocol.status()
    except (TransportError, OSError) as exc:
        raise DeployError("port", "cannot open %s: %s" % (port, getattr(exc, "message", exc)), exit_code=3)
    except VersionMismatch as exc:
        raise DeployError(
            "version_mismatch", "the board speaks another protocol version, so it cannot be asked for "
            "maintenance mode: %s" % exc, exit_code=4, hint=MAINTENANCE_HINT,
        )
    except ClientError:
        hello, status = None, None  # no protocol answer: perhaps at its REPL already; mpremote tells
    if status is None:
        report.step("maintenance", "no answer to the protocol on %s: trying its REPL" % port, progress)
    elif status.get("maintenance"):
        report.device_before = _device_fields(hello, status)
        report.step("maintenance", "the board is in maintenance mode", progress)
    else:
        report.device_before = _device_fields(hello, status)
        try:
            before = protocol.request_maintenance()
        except DeviceError as exc:
            raise DeployError(
                "locked" if exc.code == E_LOCKED else "maintenance",
                "the board refused maintenance mode: %s" % exc.message, exit_code=1,
                hint="stop the session first (tensctl stop); in patient mode give the clinician PIN (--pin)",
            )
        report.step("maintenance", "asked for maintenance mode: the board reboots into it", progress)
        protocol.wait_for_boot(True, before.get("uptime_ms"))
        if getattr(mpremote, "port", None) is not None:
            mpremote.port = protocol.port  # found again by USB VID:PID after the reboot: it may have a new name
        report.entered_maintenance = True
        report.step("maintenance", "the board is back, in maintenance mode", progress)

    # 4. the board's files, 5. the plan
    remote = mpremote.listing()
    report.plan = Plan(report.files, remote)
    plan = report.plan
    report.step(
        "list", "the board has %d of the %d files as built; %d to copy, %d to remove"
        % (len(plan.same), len(report.files), len(plan.copy), len(plan.remove)), progress,
    )
    for warning in plan.warnings:
        report.step("warning", warning, progress)

    # 6. apply, 7. verify
    if not plan.empty:
        mpremote.run(plan.fs_args())
        report.step("copy", "copied %d files, removed %d" % (len(plan.copy), len(plan.remove)), progress)
        left = mismatches(report.files, mpremote.listing())
        if left:
            raise DeployError(
                "verify", "after the copy, the board's files still differ from the build: %s" % ", ".join(left),
                hint=STUCK_HINT,
            )
        report.step("verify", "every file on the board matches the build", progress)
    else:
        report.step("copy", "nothing to copy: the board has this build", progress)
    mpremote.run(["reset"])
    report.step("reset", "reset the board", progress)
    hello, status = protocol.wait_for_boot(False, any_answer=True)  # the REPL does not answer the protocol
    report.device_after = _device_fields(hello, status)
    report.step(
        "reset", "the board runs firmware %s in normal mode (%s)" % (hello.get("fw"), hello.get("device_id")), progress,
    )
    return report


def _device_fields(hello, status):
    fields = {}
    if hello:
        for key in ("fw", "device_id", "proto"):
            if key in hello:
                fields[key] = hello[key]
    if status:
        for key in ("state", "maintenance", "uptime_ms"):
            if key in status:
                fields[key] = status[key]
    return fields
