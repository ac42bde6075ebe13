"""The board entry (firmware/main.py, firmware/board_entry.py) and the USB serial driver
(firmware/drivers/rp2_serial.py), on CPython with fakes; the serial driver's write bound
also in the MicroPython VM over a pty nobody reads.

The device runs over the simulator's drivers (sim.board.SimBoard: the pulse output, the
output sense, the heater, storage and a serial line of two byte queues), wrapped so every
call that matters lands in one ordered log; `machine`, `micropython` and `time` are small
fakes: time.sleep_ms moves the simulated board's clock and physics.
"""

import os
import select
import subprocess
import sys
import time as pytime
import types
from pathlib import Path

import pytest

from firmware import board_entry as be
from firmware.drivers import rp2_pins
from firmware.drivers.rp2_serial import Rp2UsbSerial
from firmware.protocols import frame
from sim.board import SimBoard

ROOT = Path(__file__).resolve().parent.parent


# ---- fakes ----------------------------------------------------------------------------


class Reset(BaseException):
    """machine.reset(): never returns on the board; here it ends the run."""


class FakeMachine:
    def __init__(self, log, stop_levels=None):
        self.log = log
        self.pins = {}  # pin -> (mode, value)
        self.stop_levels = list(stop_levels or [])  # successive reads of the STOP pin (last repeats)
        self.resets = 0
        machine = self

        class Pin:
            IN = 0
            OUT = 1
            PULL_UP = 1

            def __init__(self, pin, mode=-1, pull=-1, value=None):
                self.pin = pin
                if mode == Pin.OUT:
                    machine.pins[pin] = ("out", value)
                    machine.log.append(("pin_low" if not value else "pin_high", pin))
                elif mode == Pin.IN:
                    machine.pins[pin] = ("in", None)

            def value(self, *args):
                if self.pin == rp2_pins.BUTTON_STOP and machine.stop_levels:
                    return machine.stop_levels.pop(0) if len(machine.stop_levels) > 1 else machine.stop_levels[0]
                return 1

        self.Pin = Pin

    def reset(self):
        self.resets += 1
        self.log.append(("reset",))
        raise Reset()

    def unique_id(self):
        return b"\x01\x02\x03\x04\xde\xad\xbe\xef"

    def all_low(self):
        return all(self.pins.get(pin) == ("out", 0) for pin in rp2_pins.OUTPUT_PINS)


class FakeMicropython:
    def __init__(self, log):
        self.log = log
        self.intr = []

    def kbd_intr(self, char):
        self.intr.append(char)
        self.log.append(("kbd_intr", char))


class FakeTime:
    """time over the simulated board: sleeping moves its clock and physics."""

    def __init__(self, sim, log):
        self.sim = sim
        self.log = log
        self.slept = []
        self.on_sleep = None  # optional callable(ms) run before the time passes

    def ticks_ms(self):
        return self.sim.clock.ticks_ms()

    def ticks_add(self, ticks, delta):
        return self.sim.clock.ticks_add(ticks, delta)

    def ticks_diff(self, end, start):
        return self.sim.clock.ticks_diff(end, start)

    def sleep_ms(self, ms):
        self.slept.append(ms)
        if self.on_sleep is not None:
            self.on_sleep(ms)
        self.sim.advance(ms)


class LoggedPulse:
    def __init__(self, inner, log):
        self.inner = inner
        self.log = log
        self.channels = inner.channels
        self.hw_max_amp_ua = inner.hw_max_amp_ua
        self.hw_max_phase_us = inner.hw_max_phase_us
        self.active = False  # fired since the last off()
        self.fired = 0

    def fire(self, *args):
        self.active = True
        self.fired += 1
        return self.inner.fire(*args)

    def off(self):
        self.active = False
        self.log.append(("pulse_off",))
        self.inner.off()


class LoggedHeater:
    def __init__(self, inner, log):
        self.inner = inner
        self.log = log

    def lease(self, duty_permille, lease_ms):
        self.inner.lease(duty_permille, lease_ms)

    def off(self):
        self.log.append(("heater_off",))
        self.inner.off()

    def on(self):
        return self.inner.on()


class FakeIndicator:
    def __init__(self, log):
        self.log = log
        self.calls = []
        self.lit = False
        self.fail = False

    def set(self, output_on, alarm):
        if self.fail:
            raise OSError(5, "indicator pin")
        self.calls.append((output_on, alarm))
        self.lit = output_on

    def off(self):
        self.lit = False
        self.log.append(("indicator_off",))


class FakeWatchdog:
    def __init__(self, log, fail_at=None):
        self.log = log
        self.feeds = 0
        self.fail_at = fail_at
        log.append(("watchdog_start",))

    def feed(self):
        self.feeds += 1
        if self.fail_at is not None and self.feeds >= self.fail_at:
            raise RuntimeError("injected failure in the loop")


class FakeButtons:
    def __init__(self):
        self.mask = 0
        self.stop_presses = 0  # presses too short for pressed() to see, latched by the edge

    def pressed(self):
        return self.mask

    def take_stop_press(self):
        pressed = self.stop_presses > 0
        self.stop_presses = 0
        return pressed


class Rig:
    """A Board over simulated drivers and fake modules, with a host end on the serial line."""

    def __init__(self, stop_held=False, storage=None, watchdog_fail_at=None, seed=3):
        self.log = []
        self.sim = SimBoard(seed=seed)
        if storage is not None:
            self.sim.storage = storage
        self.machine = FakeMachine(self.log)
        self.micropython = FakeMicropython(self.log)
        self.time = FakeTime(self.sim, self.log)
        self.pulse = LoggedPulse(self.sim.pulse_out, self.log)
        self.heater = LoggedHeater(self.sim.heater, self.log)
        self.indicator = FakeIndicator(self.log)
        self.buttons = FakeButtons()
        self.watchdogs = []
        self.watchdog_fail_at = watchdog_fail_at
        self.drivers = be.Drivers(
            clock=self.sim.clock, pulse=self.pulse, sense=self.sim.sense, serial=self.sim.serial,
            storage=self.sim.storage, heater=self.heater, thermistor=self.sim.pad_thermistor, buttons=self.buttons,
            indicator=self.indicator, make_watchdog=self._make_watchdog, random_bytes=self.sim.random_bytes,
            device_id="pulsewarm-test",
        )
        self.board = be.Board(self.drivers, self.machine, self.micropython, self.time, stop_held)
        self.reader = frame.LineReader()
        self.inbox = []
        self.next_id = 1

    def _make_watchdog(self):
        dog = FakeWatchdog(self.log, self.watchdog_fail_at)
        self.watchdogs.append(dog)
        return dog

    # host side
    def send(self, op, **fields):
        message = {"id": self.next_id, "op": op}
        message.update(fields)
        self.next_id += 1
        self.sim.serial.host_write(frame.encode_frame(message))
        return message["id"]

    def receive(self):
        data = self.sim.serial.host_read()
        for line in self.reader.feed(data):
            if line is not None:
                self.inbox.append(frame.decode_line(line))

    def reply(self, request_id):
        self.receive()
        found = [m for m in self.inbox if m.get("id") == request_id and "ok" in m]
        assert found, "no reply to request %d in %r" % (request_id, self.inbox)
        return found[-1]

    def steps(self, count):
        for _ in range(count):
            outcome = self.board.step()
            self.sim.advance(be.TICK_MS)
            if outcome is not None:
                return outcome
        return None

    def run(self):
        """Board.run() until machine.reset() (Reset) or its return; the outcome or "reset"."""
        try:
            return self.board.run()
        except Reset:
            return "reset"

    def index(self, entry):
        return self.log.index(entry)


LIT_UA = 60000  # 12 mA r.m.s. with the default setting (200 us, 100 Hz): the indicator is lit


def _stop_after(rig, sleeps, exc=KeyboardInterrupt):
    """Make the loop's sleep raise exc after `sleeps` sleeps (a Ctrl-C, or a crash)."""
    count = [0]

    def on_sleep(ms):
        count[0] += 1
        if count[0] >= sleeps:
            raise exc()

    rig.time.on_sleep = on_sleep


def _start_session(rig, amp_ua=20000):
    request_id = rig.send("start", amp_ua=[amp_ua, 0], lease_ms=0, ramp_ms=1000)
    rig.steps(2)
    reply = rig.reply(request_id)
    assert reply["ok"] is True, reply
    rig.steps(150)  # ramped up
    assert rig.board.device.channels[0].amp_ua == amp_ua


# ---- main.py ----------------------------------------------------------------------------


def test_main_py_drives_every_output_low_and_turns_ctrl_c_off_before_importing_the_firmware(monkeypatch):
    import firmware

    log = []
    machine = FakeMachine(log)
    micropython = FakeMicropython(log)
    seen = {}

    fake_entry = types.ModuleType("firmware.board_entry")

    def fake_main():
        seen["all_low"] = machine.all_low()
        seen["intr"] = list(micropython.intr)
        log.append(("board_entry.main",))

    fake_entry.main = fake_main
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "micropython", micropython)
    monkeypatch.setitem(sys.modules, "firmware.board_entry", fake_entry)
    monkeypatch.setattr(firmware, "board_entry", fake_entry, raising=False)
    source = (ROOT / "firmware" / "main.py").read_text()
    exec(compile(source, "main.py", "exec"), {"__name__": "__main__"})
    assert seen == {"all_low": True, "intr": [-1]}
    pins = [entry[1] for entry in log if entry[0] == "pin_low"]
    assert sorted(pins) == sorted(rp2_pins.OUTPUT_PINS)
    assert log.index(("kbd_intr", -1)) > max(i for i, e in enumerate(log) if e[0] == "pin_low")
    assert log[-1] == ("board_entry.main",)
    # nothing heavy before the pins: main.py imports only machine and the pin map first
    head = source.split("for _pin in OUTPUT_PINS", 1)[0]
    imports = [line for line in head.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import machine", "from firmware.drivers.rp2_pins import OUTPUT_PINS"]


def test_boot_py_turns_ctrl_c_off_first_and_drives_every_output_low(monkeypatch):
    log = []
    machine = FakeMachine(log)
    micropython = FakeMicropython(log)
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "micropython", micropython)
    source = (ROOT / "firmware" / "boot.py").read_text()
    exec(compile(source, "boot.py", "exec"), {"__name__": "__main__"})
    assert log[0] == ("kbd_intr", -1)
    assert sorted(e[1] for e in log[1:]) == sorted(rp2_pins.OUTPUT_PINS) and machine.all_low()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == [  # nothing heavy, no loop: the REPL and a soft reset run this too
        "import micropython", "import machine  # noqa: E402",
        "from firmware.drivers.rp2_pins import OUTPUT_PINS  # noqa: E402",
    ]


# ---- boot ---------------------------------------------------------------------------------


def test_normal_boot_turns_outputs_off_before_the_watchdog_and_before_the_first_tick():
    rig = Rig()
    rig.board.boot()
    rig.steps(1)
    log = rig.log
    start = rig.index(("watchdog_start",))
    for off in (("pulse_off",), ("heater_off",), ("indicator_off",)):
        assert off in log[:start], (off, log)
    assert rig.board.watchdog is rig.watchdogs[0]
    assert rig.micropython.intr[-1] == -1  # 0x03 from the host is data
    assert rig.board.maintenance is False and rig.board.device.maintenance is False
    assert rig.pulse.active is False and not rig.heater.on()


def test_the_watchdog_is_fed_once_every_tick_after_the_tick():
    rig = Rig()
    rig.board.boot()
    rig.steps(25)
    assert rig.watchdogs[0].feeds == 25
    assert rig.board.device.ticks == 25


@pytest.mark.parametrize("how", ["marker", "stop_button"])
def test_maintenance_boot_has_no_watchdog_and_ctrl_c_on(how):
    rig = Rig(stop_held=(how == "stop_button"))
    if how == "marker":
        rig.sim.storage.append(be.MARKER, b"1")
    rig.board.boot()
    rig.steps(10)
    assert rig.watchdogs == [] and rig.board.watchdog is None
    assert rig.micropython.intr[-1] == 3
    assert rig.board.maintenance is True and rig.board.boot_reason == how
    assert rig.board.device.maintenance is True  # no session, no heat
    assert rig.sim.storage.size(be.MARKER) == 0  # one-shot
    request_id = rig.send("start", amp_ua=[5000, 0], lease_ms=0)
    rig.steps(2)
    reply = rig.reply(request_id)
    assert reply["ok"] is False and "maintenance" in reply["msg"]


def test_the_marker_is_one_shot_the_boot_after_a_maintenance_boot_is_normal():
    rig = Rig()
    rig.sim.storage.append(be.MARKER, b"1")
    rig.board.boot()
    assert rig.board.maintenance is True
    again = Rig(storage=rig.sim.storage)
    again.board.boot()
    assert again.board.maintenance is False and len(again.watchdogs) == 1


def test_an_unreadable_marker_means_a_normal_boot_with_the_watchdog():
    class BrokenStorage(type(SimBoard().storage)):
        def size(self, name):
            raise OSError(5, "flash")

    rig = Rig(storage=BrokenStorage())
    rig.board.boot()
    assert rig.board.maintenance is False and len(rig.watchdogs) == 1


def test_stop_held_at_boot_reads_the_pin_and_ignores_a_bounce():
    log = []
    assert be.stop_held_at_boot(FakeMachine(log, stop_levels=[0]), types.SimpleNamespace(sleep_ms=lambda ms: None))
    assert not be.stop_held_at_boot(FakeMachine(log, stop_levels=[1]), types.SimpleNamespace(sleep_ms=lambda ms: None))
    bounce = FakeMachine(log, stop_levels=[0, 0, 1, 0, 0])
    assert not be.stop_held_at_boot(bounce, types.SimpleNamespace(sleep_ms=lambda ms: None))


def test_main_with_stop_held_runs_maintenance_mode_and_returns_to_the_repl_on_ctrl_c():
    rig = Rig()
    machine = FakeMachine(rig.log, stop_levels=[0])
    _stop_after(rig, 30)
    outcome = be.main(build=lambda m: rig.drivers, machine=machine, micropython=rig.micropython, time=rig.time)
    assert outcome == be.INTERRUPTED
    assert machine.resets == 0 and rig.watchdogs == []
    assert rig.micropython.intr == [-1, 3, -1]  # off first, on once maintenance mode is decided, off on the way out
    assert machine.all_low() and rig.pulse.active is False


def test_main_normal_boot_ctrl_c_cannot_leave_to_the_repl_it_resets():
    rig = Rig()
    machine = FakeMachine(rig.log, stop_levels=[1])
    _stop_after(rig, 30)
    with pytest.raises(Reset):
        be.main(build=lambda m: rig.drivers, machine=machine, micropython=rig.micropython, time=rig.time)
    assert machine.resets == 1 and rig.watchdogs[0].feeds == 30
    assert rig.micropython.intr == [-1, -1, -1]


def test_drivers_that_cannot_start_leave_every_pin_low_and_reset_or_stay_at_the_repl_with_stop_held():
    def broken(machine):
        raise OSError(5, "PIO")

    log = []
    machine = FakeMachine(log, stop_levels=[1])
    with pytest.raises(Reset):
        be.main(build=broken, machine=machine, micropython=FakeMicropython(log), time=types.SimpleNamespace(sleep_ms=lambda ms: None))
    assert machine.all_low()
    rescue = FakeMachine(log, stop_levels=[0])
    outcome = be.main(build=broken, machine=rescue, micropython=FakeMicropython(log), time=types.SimpleNamespace(sleep_ms=lambda ms: None))
    assert outcome == be.BOOT_FAILED and rescue.resets == 0 and rescue.all_low()


# ---- the loop -----------------------------------------------------------------------------


def test_an_exception_in_the_loop_turns_every_output_off_logs_it_and_resets():
    rig = Rig(watchdog_fail_at=400)
    rig.send("start", amp_ua=[LIT_UA, 0], lease_ms=0, ramp_ms=1000)
    rig.send("heat", level="low", minutes=5)
    seen = {}

    def on_sleep(ms):  # just before the failure: the outputs are on
        feeds = rig.watchdogs[0].feeds if rig.watchdogs else 0
        if feeds == 399:
            seen["pulse"] = rig.pulse.active
            seen["amp"] = rig.board.device.channels[0].amp_ua
            seen["lit"] = rig.indicator.lit

    rig.time.on_sleep = on_sleep
    assert rig.run() == "reset"
    assert seen == {"pulse": True, "amp": LIT_UA, "lit": True}
    reset_at = rig.index(("reset",))
    tail = rig.log[:reset_at]
    for off in (("pulse_off",), ("heater_off",), ("indicator_off",)):
        assert off in tail[-20:], (off, tail[-20:])
    assert rig.pulse.active is False and not rig.heater.on() and rig.indicator.lit is False
    assert rig.machine.all_low()
    crash = rig.sim.storage.read(be.CRASH_LOG, 0, 4096)
    assert b"RuntimeError" in crash and b"injected failure" in crash


class WatchedStorage(type(SimBoard().storage)):
    """Storage that notes, at every append, what the outputs were doing at that moment."""

    def __init__(self):
        type(SimBoard().storage).__init__(self)
        self.rig = None
        self.appends = []  # (name, pulse active, heater on, indicator lit, every output pin low)

    def append(self, name, data):
        rig = self.rig
        self.appends.append((name, rig.pulse.active, rig.heater.on(), rig.indicator.lit, rig.machine.all_low()))
        return type(SimBoard().storage).append(self, name, data)


def test_a_crash_is_logged_only_after_every_output_is_off():
    """The crash log is a flash write (tens of ms or more): the rail, the reference and the
    heater must not stay as the crash left them while it is written."""
    storage = WatchedStorage()
    rig = Rig(storage=storage, watchdog_fail_at=400)
    storage.rig = rig
    rig.send("start", amp_ua=[LIT_UA, 0], lease_ms=0, ramp_ms=1000)
    rig.send("heat", level="low", minutes=5)
    seen = {}

    def on_sleep(ms):
        if rig.watchdogs and rig.watchdogs[0].feeds == 399:  # the last tick before the failure
            seen["pulse"] = rig.pulse.active
            seen["heater"] = rig.heater.on()

    rig.time.on_sleep = on_sleep
    assert rig.run() == "reset"
    assert seen == {"pulse": True, "heater": True}  # the crash came with both outputs on
    writes = [entry for entry in storage.appends if entry[0] == be.CRASH_LOG]
    assert writes, storage.appends
    for _name, pulse, heater, lit, all_low in writes:
        assert (pulse, heater, lit, all_low) == (False, False, False, True), writes
    assert b"injected failure" in rig.sim.storage.read(be.CRASH_LOG, 0, 4096)


def test_a_crash_at_boot_is_logged_only_after_every_output_is_off(monkeypatch):
    import firmware.device

    class Broken:
        def __init__(self, *args, **kwargs):
            raise MemoryError("injected at boot")

    storage = WatchedStorage()
    rig = Rig(storage=storage)
    storage.rig = rig
    rig.pulse.active = True  # as a driver left it
    monkeypatch.setattr(firmware.device, "Device", Broken)
    assert rig.run() == "reset"
    writes = [entry for entry in storage.appends if entry[0] == be.CRASH_LOG]
    assert writes and all(entry[1:] == (False, False, False, True) for entry in writes), writes


def test_a_crash_whose_text_cannot_be_made_still_resets_with_outputs_off():
    class Unprintable(Exception):
        def __str__(self):
            raise ValueError("no text")

    rig = Rig()
    _stop_after(rig, 5, Unprintable)
    assert rig.run() == "reset"  # not the REPL: the log never raises
    assert rig.machine.all_low() and rig.pulse.active is False


def _crash_files(storage):
    return [storage.read(name, 0, 1 << 16) for name in (be.CRASH_LOG_OLD, be.CRASH_LOG)]


def test_the_crash_log_is_bounded():
    rig = Rig()
    rig.board.boot()
    for _ in range(100):
        rig.board.log(RuntimeError("x" * 500))
    total = sum(len(data) for data in _crash_files(rig.sim.storage))
    assert be.CRASH_FILE_MAX <= total <= 2 * (be.CRASH_FILE_MAX + be.CRASH_TEXT_MAX + 40)
    assert 2 * be.CRASH_FILE_MAX == be.CRASH_LOG_MAX


def test_the_crash_log_keeps_the_newest_crashes_in_two_files():
    storage = SimBoard().storage
    for i in range(60):  # a crash on every boot: each one logged, then the board resets
        rig = Rig(storage=storage)
        rig.board.boot()
        rig.board.log(RuntimeError("crash number %03d " % i + "x" * 300))
        total = sum(len(data) for data in _crash_files(storage))
        assert total <= 2 * (be.CRASH_FILE_MAX + be.CRASH_TEXT_MAX + 40), (i, total)
    old, new = _crash_files(storage)
    assert b"crash number 059" in new  # the newest is kept, in crash.log
    assert b"crash number 058" in new + old
    numbers = [int(part[:3]) for part in (old + new).split(b"crash number ")[1:]]
    assert numbers == sorted(numbers) and numbers[-1] == 59  # the older file holds the older ones
    assert len(numbers) >= be.CRASH_FILE_MAX // 400


def test_a_crash_loop_at_boot_keeps_the_newest_crash_too(monkeypatch):
    import firmware.device

    count = [0]

    class Broken:
        def __init__(self, *args, **kwargs):
            count[0] += 1
            raise RuntimeError("boot crash %03d " % count[0] + "y" * 400)

    monkeypatch.setattr(firmware.device, "Device", Broken)
    storage = SimBoard().storage
    for _ in range(40):
        assert Rig(storage=storage).run() == "reset"
    old, new = _crash_files(storage)
    assert b"boot crash 040" in new


def test_a_full_crash_log_within_one_run_still_keeps_the_newest():
    rig = Rig()
    rig.board.boot()
    for i in range(30):
        rig.board.log(RuntimeError("entry %03d " % i + "z" * 300))
    old, new = _crash_files(rig.sim.storage)
    assert b"entry 029" in new
    while rig.sim.storage.size(be.CRASH_LOG) < be.CRASH_FILE_MAX:
        rig.board.log(RuntimeError("filler " + "f" * 300))
    before = _crash_files(rig.sim.storage)
    rig.board.log(RuntimeError("from inside the loop"), rotate=False)  # no 2 KB copy during a tick
    assert _crash_files(rig.sim.storage) == before


def test_a_rotation_on_the_way_out_feeds_the_watchdog_through_the_copy():
    """On the way out the loop no longer feeds the watchdog: a reset half-way through the copy
    would lose the older crashes and the one being logged."""
    rig = Rig()
    rig.board.boot()
    dog = rig.board.watchdog
    assert dog is not None
    while rig.sim.storage.size(be.CRASH_LOG) < be.CRASH_FILE_MAX:
        rig.board.log(RuntimeError("filler " + "f" * 300), rotate=False)
    chunks = (rig.sim.storage.size(be.CRASH_LOG) + be.CRASH_COPY_CHUNK - 1) // be.CRASH_COPY_CHUNK
    before = dog.feeds
    rig.board.log(RuntimeError("the newest"))  # as run() logs it on the way out: rotates first
    assert dog.feeds - before >= chunks, (dog.feeds - before, chunks)
    assert b"the newest" in rig.sim.storage.read(be.CRASH_LOG, 0, 1 << 16)


def test_rotation_that_fails_half_way_still_makes_room_for_the_newest():
    class FailingCopy(type(SimBoard().storage)):
        def append(self, name, data):
            if name == be.CRASH_LOG_OLD:
                raise OSError(28, "no space")
            return type(SimBoard().storage).append(self, name, data)

    storage = FailingCopy()
    storage.append(be.CRASH_LOG, b"old crash\n" * (be.CRASH_FILE_MAX // 10 + 1))
    rig = Rig(storage=storage)
    rig.board.boot()
    rig.board.log(RuntimeError("the newest"))
    assert b"the newest" in storage.read(be.CRASH_LOG, 0, 1 << 16)


def test_ctrl_c_in_maintenance_mode_leaves_outputs_off_and_returns_without_reset():
    rig = Rig(stop_held=True)
    _stop_after(rig, 20)
    assert rig.run() == be.INTERRUPTED
    assert rig.machine.resets == 0 and rig.machine.all_low()
    tail = rig.log[-20:]
    assert ("pulse_off",) in tail and ("heater_off",) in tail and ("indicator_off",) in tail


def test_a_second_ctrl_c_while_the_outputs_go_off_stops_none_of_them():
    """mpremote may send Ctrl-C more than once: one landing inside the way out must not leave
    the heater or a pin as it was (off() catches Exception; KeyboardInterrupt is not one)."""
    rig = Rig(stop_held=True)
    state = {"sleeps": 0, "armed": False}

    def on_sleep(ms):
        state["sleeps"] += 1
        if state["sleeps"] >= 20:
            state["armed"] = True  # the first Ctrl-C ends the loop; the next lands in off()
            raise KeyboardInterrupt()

    rig.time.on_sleep = on_sleep
    real_off = rig.pulse.off

    def off():
        real_off()
        if state["armed"]:
            state["armed"] = False
            raise KeyboardInterrupt()

    rig.pulse.off = off
    try:
        outcome = rig.run()
    except KeyboardInterrupt:  # (pytest would take it as its own Ctrl-C)
        outcome = "escaped half-way"
    assert outcome == be.INTERRUPTED
    tail = rig.log[-20:]
    assert ("heater_off",) in tail and ("indicator_off",) in tail, tail
    assert rig.machine.all_low()
    assert rig.micropython.intr[-1] == -1  # no further Ctrl-C on the way out


def test_a_maintenance_request_writes_the_marker_answers_and_resets_into_maintenance_mode():
    rig = Rig()
    request_id = rig.send("maintenance", on=True)
    ticks = []

    def on_sleep(ms):
        ticks.append(rig.board.ticks)
        if len(ticks) > 200:
            raise AssertionError("no reset after a maintenance request")

    rig.time.on_sleep = on_sleep
    assert rig.run() == "reset"
    assert rig.reply(request_id)["ok"] is True and rig.reply(request_id)["maintenance"] is True
    assert rig.sim.storage.size(be.MARKER) > 0
    assert rig.board.ticks >= be.SWITCH_GRACE_TICKS  # ticked on, so the reply went out first
    assert rig.watchdogs[0].feeds == rig.board.ticks  # and the watchdog was fed meanwhile
    assert rig.machine.all_low() and rig.pulse.active is False
    # the next boot: maintenance mode, then `maintenance off` reboots into normal mode
    nxt = Rig(storage=rig.sim.storage)
    nxt.board.boot()
    assert nxt.board.maintenance is True and nxt.watchdogs == [] and nxt.micropython.intr[-1] == 3
    request_id = nxt.send("maintenance", on=False)
    assert nxt.steps(be.SWITCH_GRACE_TICKS + 5) == be.TO_NORMAL
    assert nxt.reply(request_id)["maintenance"] is False
    assert nxt.sim.storage.size(be.MARKER) == 0
    last = Rig(storage=nxt.sim.storage)
    last.board.boot()
    assert last.board.maintenance is False and len(last.watchdogs) == 1


def test_a_maintenance_request_taken_back_before_the_reboot_cancels_it():
    rig = Rig()
    rig.board.boot()
    rig.send("maintenance", on=True)
    assert rig.steps(3) is None and rig.sim.storage.size(be.MARKER) > 0
    rig.send("maintenance", on=False)
    assert rig.steps(be.SWITCH_GRACE_TICKS * 2) is None
    assert rig.sim.storage.size(be.MARKER) == 0


def test_maintenance_is_refused_while_a_session_runs_and_nothing_reboots():
    rig = Rig()
    rig.board.boot()
    _start_session(rig)
    request_id = rig.send("maintenance", on=True)
    assert rig.steps(be.SWITCH_GRACE_TICKS * 2) is None
    assert rig.reply(request_id)["ok"] is False
    assert rig.pulse.active is True and rig.sim.storage.size(be.MARKER) == 0


def test_the_stop_button_is_an_emergency_stop_and_a_stop_held_through_boot_is_no_press():
    rig = Rig()
    rig.buttons.mask = be.STOP_MASK  # held while booting
    rig.board.boot()
    rig.steps(3)
    rig.buttons.mask = 0
    rig.steps(1)  # let go (seen at the next poll)
    _start_session(rig)
    rig.buttons.mask = be.STOP_MASK
    rig.steps(1)
    device = rig.board.device
    assert device.supervisor.state_name == "IDLE" and device.channels[0].amp_ua == 0
    assert device.supervisor.reason == "estop"


def test_while_stop_is_held_no_session_starts_or_resumes_and_one_started_is_stopped():
    rig = Rig()
    rig.board.boot()
    rig.steps(3)
    _start_session(rig)
    rig.buttons.mask = be.STOP_MASK
    rig.steps(5)  # the patient keeps holding it
    request_id = rig.send("start", amp_ua=[20000, 0], lease_ms=0, ramp_ms=1000)
    rig.steps(2)
    reply = rig.reply(request_id)
    assert reply["ok"] is False and "STOP button is held" in reply["msg"], reply
    device = rig.board.device
    assert device.supervisor.state_name == "IDLE" and device.channels[0].amp_ua == 0
    device.supervisor.start()  # a session that got past the check (started in the tick STOP went down)
    rig.steps(1)
    assert device.supervisor.state_name == "IDLE" and device.supervisor.reason == "estop"
    rig.buttons.mask = 0
    rig.steps(1)
    _start_session(rig)  # let go: sessions start again


def test_a_stop_press_too_short_for_the_debounce_still_stops():
    """The edge latch: a press between two polls, or inside a slow tick, is an emergency stop."""
    rig = Rig()
    rig.board.boot()
    rig.steps(3)
    _start_session(rig)
    rig.buttons.stop_presses = 1  # went down and up again between two polls
    rig.steps(1)
    device = rig.board.device
    assert device.supervisor.state_name == "IDLE" and device.supervisor.reason == "estop"
    assert device.channels[0].amp_ua == 0


def test_a_maintenance_boot_runs_no_session_even_after_maintenance_off():
    """No watchdog in a maintenance boot: a session waits for the reboot into normal mode, and
    `maintenance on` before it (which cancels the reboot) cannot open a window either."""
    rig = Rig(stop_held=True)
    rig.board.boot()
    assert rig.board.watchdog is None and rig.board.device.unguarded
    rig.steps(3)
    for _ in range(3):
        off = rig.send("maintenance", on=False)
        rig.steps(2)
        assert rig.reply(off)["ok"] is True
        request_id = rig.send("start", amp_ua=[20000, 0], lease_ms=0, ramp_ms=1000)
        rig.steps(2)
        reply = rig.reply(request_id)
        assert reply["ok"] is False and "without the watchdog" in reply["msg"], reply
        on = rig.send("maintenance", on=True)
        rig.steps(2)
        assert rig.reply(on)["ok"] is True
    assert rig.board.device.supervisor.state_name == "IDLE"


def test_the_up_and_down_buttons_step_the_stimulating_channels_once_per_press():
    rig = Rig()
    rig.board.boot()
    rig.steps(3)
    rig.buttons.mask = be.UP_MASK  # pressed while IDLE: nothing to step
    rig.steps(3)
    rig.buttons.mask = 0
    rig.steps(1)
    assert [c.target_ua for c in rig.board.device.channels] == [0, 0]
    _start_session(rig, amp_ua=20000)
    rig.buttons.mask = be.UP_MASK  # held for many ticks: one press, one step
    rig.steps(20)
    device = rig.board.device
    assert [c.target_ua for c in device.channels] == [20500, 0]  # channel 1 is not in use: left off
    rig.buttons.mask = 0
    rig.steps(1)
    for _ in range(3):
        rig.buttons.mask = be.DOWN_MASK
        rig.steps(1)
        rig.buttons.mask = 0
        rig.steps(1)
    assert device.channels[0].target_ua == 19000
    rig.buttons.mask = be.UP_MASK | be.STOP_MASK  # STOP wins: no step, an emergency stop
    rig.steps(1)
    assert device.supervisor.state_name == "IDLE" and device.channels[0].target_ua == 0


def test_the_indicator_follows_the_output_every_tick_and_alarms_on_a_fault():
    rig = Rig()
    rig.board.boot()
    rig.steps(5)
    assert rig.indicator.calls == [(False, False)] * 5
    _start_session(rig, amp_ua=20000)  # 4 mA r.m.s. at 200 us, 100 Hz: not lit
    assert rig.indicator.calls[-1] == (False, False)
    request_id = rig.send("set_amp", ch=0, amp_ua=LIT_UA)
    rig.steps(100)
    assert rig.reply(request_id)["ok"] is True
    assert rig.board.device.channels[0].amp_ua == LIT_UA
    assert rig.indicator.calls[-1] == (True, False)
    status_id = rig.send("status")
    rig.steps(1)
    assert rig.reply(status_id)["ch"][0]["indicator"] is True  # the same rule as status
    rig.sim.sense.broken = True  # the output-sense ADC fails: a latched fault
    rig.steps(2)
    assert rig.indicator.calls[-1] == (False, True)


def test_the_indicator_builds_no_envelope_per_ramp_tick_and_stays_exact(monkeypatch):
    """Envelope(setting, amp) computes long ints on the board (i2t and the like, from 1.64 mA):
    the indicator, checked every step, compares the amplitude with a threshold found once per
    setting, never rebuilding an Envelope as the amplitude ramps."""
    from firmware import envelope

    real = envelope.Envelope
    built = [0]

    class Counted(real):
        def __init__(self, s, amp_ua):
            built[0] += 1
            real.__init__(self, s, amp_ua)

    rig = Rig()
    rig.board.boot()
    board = rig.board
    real_indicate = board._indicate
    per_step = []  # Envelopes built inside the indicator path, per step

    def indicate():
        before = built[0]
        real_indicate()
        per_step.append(built[0] - before)

    board._indicate = indicate
    monkeypatch.setattr(envelope, "Envelope", Counted)
    request_id = rig.send("start", amp_ua=[LIT_UA, 0], lease_ms=0, ramp_ms=8000)
    amps = []
    wrong = []
    for _ in range(900):
        rig.steps(1)
        channel = board.device.channels[0]
        amps.append(channel.amp_ua)
        expected = channel.amp_ua > 0 and real(channel.setting, channel.amp_ua).indicator  # (not counted)
        if rig.indicator.calls[-1][0] != bool(expected):
            wrong.append((channel.amp_ua, rig.indicator.calls[-1], expected))
    assert rig.reply(request_id)["ok"] is True
    changes = len([1 for a, b in zip(amps, amps[1:]) if a != b and b > 0])
    assert changes >= 400 and amps[-1] == LIT_UA  # ramped up tick by tick
    assert not wrong, wrong[:5]  # off below the threshold, lit from it on (the ramp crosses it)
    assert rig.indicator.calls[-1] == (True, False)
    steps_building = [n for n in per_step if n]
    assert len(steps_building) <= 1, (len(steps_building), changes)  # the setting's threshold, once
    assert sum(per_step) <= 40, sum(per_step)  # one binary search: ~log2(80000) Envelopes


def test_an_indicator_that_fails_latches_a_fault_instead_of_rebooting():
    rig = Rig()
    rig.board.boot()
    _start_session(rig)
    rig.indicator.fail = True
    assert rig.steps(3) is None
    device = rig.board.device
    assert device.supervisor.state_name == "FAULT" and rig.pulse.active is False


def test_a_button_driver_that_fails_leaves_the_indicator_working():
    """The buttons and the indicator shared one try: a button driver raising every tick latched
    the fault and zeroed the output, but the indicator was never set again, so the output LED
    stayed lit and the fault alarm never sounded."""
    rig = Rig()
    rig.board.boot()
    _start_session(rig, amp_ua=LIT_UA)
    rig.steps(100)
    assert rig.indicator.calls[-1] == (True, False)

    def broken():
        raise OSError(5, "button pin")

    rig.buttons.pressed = broken
    before = len(rig.indicator.calls)
    rig.steps(5)
    assert rig.board.device.supervisor.state_name == "FAULT"
    assert len(rig.indicator.calls) - before == 5  # set every step, as before the failure
    assert rig.indicator.calls[-1] == (False, True)  # output off, alarm on


def test_ticks_keep_their_period_and_a_late_loop_resynchronises():
    rig = Rig()
    rig.board.boot()
    tick_ms = []
    real_tick = rig.board.device.tick

    def tick():
        real_tick()
        rig.sim.advance(tick_ms.pop(0) if tick_ms else 3)  # the tick itself takes this long

    rig.board.device.tick = tick
    _stop_after(rig, 10, RuntimeError)
    with pytest.raises(RuntimeError):
        rig.board.loop()
    assert rig.time.slept == [7] * 10  # the rest of each 10 ms tick
    # a little late (30 ms over three ticks): the next ticks run at once and catch up
    rig.time.slept.clear()
    tick_ms[:] = [20, 20, 20]
    _stop_after(rig, 5, RuntimeError)
    before = rig.board.ticks
    with pytest.raises(RuntimeError):
        rig.board.loop()
    ticks = rig.board.ticks - before
    assert rig.board.late_resyncs == 0 and ticks > 5  # some ticks ran back to back
    assert 60 + 3 * (ticks - 3) + sum(rig.time.slept) == 10 * ticks  # and the schedule is kept
    # far too late (one tick of 500 ms): the schedule restarts from now instead of 50 ticks at once
    rig.time.slept.clear()
    tick_ms[:] = [500]
    _stop_after(rig, 3, RuntimeError)
    steps_before = rig.board.ticks
    with pytest.raises(RuntimeError):
        rig.board.loop()
    assert rig.board.late_resyncs == 1
    assert rig.board.ticks - steps_before == 4  # the slow tick, the next at once, then one a period
    assert rig.time.slept == [7, 7, 7]


def test_after_a_stall_a_running_session_ramps_up_from_zero_again():
    rig = Rig()
    rig.board.boot()
    _start_session(rig, amp_ua=20000)
    real_tick = rig.board.device.tick
    stall = [300]

    def tick():
        real_tick()
        rig.sim.advance(stall.pop() if stall else 0)

    rig.board.device.tick = tick
    amps = []

    def on_sleep(ms):
        amps.append(rig.board.device.channels[0].amp_ua)
        if len(amps) >= 40:
            raise RuntimeError()

    rig.time.on_sleep = on_sleep
    with pytest.raises(RuntimeError):
        rig.board.loop()
    device = rig.board.device
    assert rig.board.late_resyncs == 1 and device.supervisor.state_name == "RUNNING"
    assert amps[0] < 2000  # from zero, one ramp step up
    assert amps == sorted(amps) and amps[-1] > amps[0]  # ramping back up to the target
    assert device.channels[0].target_ua == 20000


# ---- build_drivers against the fake machine/rp2 modules -----------------------------------------


def test_build_drivers_builds_the_rp2040_set_against_board_fakes(monkeypatch):
    if not (ROOT / "firmware" / "drivers" / "rp2_pulse.py").exists():
        pytest.skip("firmware/drivers/rp2_pulse.py is not written yet")
    from tests import board_fakes

    hw = board_fakes.install(monkeypatch)
    read_end, write_end = os.pipe()
    stdin = os.fdopen(read_end, "rb", buffering=0)
    stdout = os.fdopen(write_end, "wb", buffering=0)
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    fake_time = board_fakes.FakeTime(now=1000)
    for name in ("ticks_ms", "ticks_add", "ticks_diff"):  # MicroPython's time, on CPython's
        monkeypatch.setattr(pytime, name, getattr(fake_time, name), raising=False)
    monkeypatch.setattr(pytime, "ticks_us", lambda: fake_time.now * 1000, raising=False)
    try:
        drivers = be.build_drivers(hw.machine)
    finally:
        monkeypatch.undo()
        stdin.close()
        stdout.close()
        board_fakes.unload()
    assert drivers.device_id == "pulsewarm-83452b2c"
    for name in ("clock", "pulse", "sense", "serial", "storage", "heater", "thermistor", "buttons", "indicator"):
        assert getattr(drivers, name) is not None, name
    assert hw.wdts == []  # the watchdog starts only when asked (normal mode)
    assert not any(hw.driven_high(pin) for pin in rp2_pins.OUTPUT_PINS)


# ---- the USB serial driver ------------------------------------------------------------------------


class FakeStream:
    def __init__(self, data=b"", room=None, short=None):
        self.data = bytearray(data)
        self.out = bytearray()
        self.room = room  # bytes the "FIFO" takes in all (None: unlimited)
        self.short = short  # a write takes at most this many bytes
        self.reads = []

    def readinto(self, buf):
        self.reads.append(len(buf))
        if not self.data:
            return 0
        buf[0] = self.data.pop(0)
        return 1

    def write(self, data):
        size = len(data)
        if self.short is not None:
            size = min(size, self.short)
        if self.room is not None:
            size = min(size, self.room - len(self.out))
        self.out.extend(bytes(data[:size]))
        return size


class FakeSelect:
    POLLIN = 1
    POLLOUT = 4

    class _Poll:
        def __init__(self):
            self.entries = []
            self.polls = []

        def register(self, obj, flags):
            self.entries.append((obj, flags))

        def poll(self, timeout):
            self.polls.append(timeout)
            obj, flags = self.entries[0]
            if flags & 1 and obj.data:
                return [(obj, 1)]
            if flags & 4 and (obj.room is None or len(obj.out) < obj.room):
                return [(obj, 4)]
            return []

    def poll(self):
        return FakeSelect._Poll()


def test_serial_reads_are_bounded_byte_by_byte_and_never_wait():
    stdin = FakeStream(b"x" * 5000)
    serial = Rp2UsbSerial(stdin=stdin, stdout=FakeStream(), select_module=FakeSelect())
    buf = bytearray(1000)
    assert serial.read_into(buf) == 64  # max_read, whatever the buffer
    assert set(stdin.reads) == {1}  # one byte per read: stdin.read(n) would wait for all n
    small = bytearray(10)
    assert serial.read_into(small) == 10
    assert all(timeout == 0 for timeout in serial._rx_poll.polls)
    total = 0
    while True:
        count = serial.read_into(buf)
        if not count:
            break
        assert count <= 64
        total += count
    assert total == 5000 - 74 and serial.read_into(buf) == 0


def test_serial_writes_only_what_the_host_can_take():
    out = FakeStream(room=300)
    serial = Rp2UsbSerial(stdin=FakeStream(), stdout=out, select_module=FakeSelect())
    assert serial.write(b"a" * 100) == 100
    assert serial.write(b"b" * 1000) == 200  # the "FIFO" is full now
    assert serial.write(b"c" * 10) == 0 and serial.tx_refused == 1
    assert all(timeout == 0 for timeout in serial._tx_poll.polls)
    big = FakeStream()
    serial = Rp2UsbSerial(stdin=FakeStream(), stdout=big, select_module=FakeSelect())
    assert serial.write(b"d" * 10000) == 2048  # max_write a call; Link keeps the rest
    short = FakeStream(short=10)
    serial = Rp2UsbSerial(stdin=FakeStream(), stdout=short, select_module=FakeSelect())
    assert serial.write(b"e" * 100) == 10  # a short write ends the call


def test_serial_over_real_pipes_reads_bounded_and_never_blocks_on_a_full_pipe():
    to_device_r, to_device_w = os.pipe()
    from_device_r, from_device_w = os.pipe()
    stdin = os.fdopen(to_device_r, "rb", buffering=0)
    stdout = os.fdopen(from_device_w, "wb", buffering=0)
    try:
        serial = Rp2UsbSerial(stdin=stdin, stdout=stdout, select_module=select)
        os.write(to_device_w, b"y" * 3000)
        buf = bytearray(64)
        per_tick = [serial.read_into(buf) for _ in range(8)]  # what Link reads in one tick
        assert per_tick == [64] * 8
        started = pytime.monotonic()
        accepted = []
        for _ in range(100):  # nobody reads the other end: the pipe fills, writes come back 0
            accepted.append(serial.write(b"z" * 6000))
        assert pytime.monotonic() - started < 2.0
        assert accepted[0] == 2048 and accepted[-1] == 0
    finally:
        for handle in (stdin, stdout):
            handle.close()
        for fd in (to_device_w, from_device_r):
            os.close(fd)


MP_WRITE_PROBE = r"""
import sys, time, termios
termios.setraw(0)
from firmware.drivers.rp2_serial import Rp2UsbSerial
s = Rp2UsbSerial()
worst = 0
total = 0
zeros = 0
for i in range(300):
    t0 = time.ticks_ms()
    n = s.write(b"w" * 6000)
    dt = time.ticks_diff(time.ticks_ms(), t0)
    if dt > worst:
        worst = dt
    total += n
    if n == 0:
        zeros += 1
sys.stderr.write("RESULT %d %d %d\n" % (worst, total, zeros))
"""


def test_serial_write_never_waits_on_a_pty_nobody_reads_in_the_micropython_vm(tmp_path):
    from sim.launcher import SimError, micropython_executable

    try:
        exe = micropython_executable()
    except SimError as err:
        pytest.skip(str(err))
    import pty

    master, slave = pty.openpty()
    script = tmp_path / "probe.py"
    script.write_text(MP_WRITE_PROBE)
    env = dict(os.environ, MICROPYPATH=str(ROOT))
    try:
        proc = subprocess.run(
            [exe, str(script)], stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=env, timeout=30,
        )
    finally:
        os.close(slave)
        os.close(master)
    line = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("RESULT")]
    assert line, proc.stderr
    worst_ms, total, zeros = (int(v) for v in line[0].split()[1:])
    assert worst_ms < 50  # no write waits for the host
    assert zeros > 200  # once the pty's buffer is full, nothing more is taken
    assert 0 < total < 300 * 2048


def test_an_output_that_failed_to_turn_off_ends_the_loop_and_resets_the_chip():
    """A step of off() that raised may have left an output on: the loop does not go on (nor
    feed the watchdog); run() turns everything off again, logs it and resets."""
    rig = Rig()
    rig.send("start", amp_ua=[LIT_UA, 0], lease_ms=0, ramp_ms=1000)
    fed = {}

    def on_sleep(ms):
        dog = rig.watchdogs[0] if rig.watchdogs else None
        if dog is not None and dog.feeds == 200:
            rig.pulse.off_errors = 1  # the rail pin raised while off() drove it low
            fed["at"] = dog.feeds

    rig.time.on_sleep = on_sleep
    assert rig.run() == "reset"
    assert rig.watchdogs[0].feeds == fed["at"]  # never fed again once it was seen
    assert b"turning an output off failed" in rig.sim.storage.read(be.CRASH_LOG, 0, 4096)
