"""The board entry without the hardware: boot order, the tick loop, maintenance mode.

/main.py on the board (firmware/main.py) drives every output pin low, turns Ctrl-C off and
calls main() here (/boot.py, firmware/boot.py, drove the pins low once already). Everything
below takes its modules (machine, micropython, time) and its drivers as arguments, so the
same code runs on the board, on CPython with fakes (tests/test_board_main.py) and in the
MicroPython unix port (tests/test_deploy.py).
build_drivers() is the one place that names the RP2040 drivers.

BOOT SEQUENCE
  1. boot.py, then main.py: every pin of rp2_pins.OUTPUT_PINS an output at 0 (the pull-downs
     already hold the stages off; this makes it so whatever ran before) and
     micropython.kbd_intr(-1) (a 0x03 byte from the host is data, not Ctrl-C). MicroPython runs
     each of boot.py and main.py with Ctrl-C switched on again (pyexec enables it before it
     runs a file and disables it after), so boot.py's kbd_intr(-1) lasts only while boot.py
     runs; main.py turns it off again after its pin loop and main() once more. A 0x03 in
     main.py's first milliseconds (or a main.py that fails there: a broken deploy) ends in the
     REPL with every output low (boot.py drove them so) and no watchdog: safe, and a deploy
     can mend it.
  2. The STOP button, read straight from its pin (no driver: a broken driver set can still be
     rescued): held for BOOT_STOP_SAMPLES reads over ~20 ms means maintenance mode.
  3. build_drivers(): outputs first (pulse, heater, indicator: each starts off), then the rest.
  4. Board.boot(): a full crash log is rotated first (see LEAVING THE LOOP: before Device(),
     so a crash loop inside it still keeps its newest crash; before the watchdog). Then
     Device(...): its constructor turns the pulse output off and, through the heat
     controller, the heater; then pulse, heater and indicator off() once more here.
  5. The mode: maintenance when the one-shot marker (storage file MARKER) is there (it is
     removed at once) or STOP was held; normal otherwise.
       normal:       kbd_intr(-1) stays; the watchdog starts (Rp2Watchdog(timeout_ms=1000));
       maintenance:  no watchdog; kbd_intr(3), so Ctrl-C ends the loop; device.maintenance is
                     True, so no session and no heat can start.
  6. The loop, every TICK_MS: device.tick() (bounded serial reads happen inside it, through
     the driver's 0 ms polls), the STOP button (a press while a session is on is an emergency
     stop), the output indicator (lit above 10 mA r.m.s. or 10 mJ per pulse into 1 kohm, as
     status reports it: envelope.indicator_threshold_ua; a button or
     indicator driver that raises latches an internal fault, outputs off), a mode change asked
     over the protocol, then the watchdog is fed: a step that does not finish is not fed. Then
     time.sleep_ms until the next tick boundary. Late by up to RESYNC_MS, the next ticks run
     at once to catch up (the device counts session time in ticks); later than that, the schedule restarts from now (counted in late_resyncs) and,
     as after any interruption, the channels start again from zero and ramp up to their targets
     (the PIO fired nothing while the loop stood still).
  7. finally, whatever happened: Ctrl-C off, pulse off, heater off, indicator off, then every
     output pin driven low as a plain GPIO (which also takes the pins from the PIO and the PWM
     slices); each step on its own, a KeyboardInterrupt inside one included. Only after that
     anything slow: the crash log (a flash write), print, machine.reset().

LEAVING THE LOOP
  - Normal mode, any exception (and KeyboardInterrupt, which kbd_intr(-1) should make
    impossible): outputs off (finally), then the traceback appended to storage (CRASH_LOG),
    then machine.reset(). Should the reset itself fail, the watchdog, no longer fed, resets the
    board within a second. The crash log keeps the newest crashes: CRASH_LOG until it holds
    CRASH_FILE_MAX bytes, then (at the next boot, before the watchdog starts, or at once if it
    fills within one run) it is copied over CRASH_LOG_OLD and starts afresh: two files, about
    CRASH_LOG_MAX bytes together, the oldest crashes dropped.
  - Maintenance mode, Ctrl-C (mpremote) or any exception: outputs off, main() returns and the
    board's REPL runs, where mpremote gets its raw REPL. Nothing runs there: no watchdog is
    needed to keep an output off.
  - A mode change asked over the protocol: see below.

MAINTENANCE MODE
  The RP2040's watchdog cannot be stopped once started, so maintenance mode is a boot mode.
  `maintenance on` (IDLE only; the clinician PIN in patient mode; Device checks both) sets
  device.maintenance; the step after that tick writes the marker, keeps ticking (and feeding
  the watchdog) for SWITCH_GRACE_TICKS so the reply reaches the host, turns every output off
  and calls machine.reset(). The next boot consumes the marker and runs in maintenance mode.
  `maintenance off` during a maintenance boot reboots the same way with no marker: normal
  mode, watchdog on. The marker is one-shot: a crash, a power cycle or a deploy's reset after
  a maintenance boot comes back in normal mode. If the marker cannot be written the board
  still resets and comes back in normal mode; the host sees maintenance: false (host/deploy.py
  reports it). STOP held at power-up gives maintenance mode on every such boot; a stuck STOP
  button gives a device that refuses sessions with every output off, never one that runs
  without its watchdog and stimulates. While in maintenance mode the protocol still works
  (status, hello, maintenance off), and a 0x03 byte ends the loop: the protocol's frames are
  ASCII text and never contain one.
"""

from firmware import envelope
from firmware import limits as L
from firmware import supervisor as sup
from firmware.compat import const
from firmware.drivers.rp2_pins import BUTTON_STOP, OUTPUT_PINS

TICK_MS = L.TICK_MS
SWITCH_GRACE_TICKS = const(20)  # 200 ms for the reply to a maintenance request to reach the host
RESYNC_MS = const(100)  # later than this, the tick schedule restarts from now
MARKER = "maintenance"  # storage file: the next boot is a maintenance boot (one-shot)
CRASH_LOG = "crash.log"  # the newest crashes
CRASH_LOG_OLD = "crash.old.log"  # the ones before them (crash.log, as it was when it filled)
CRASH_LOG_MAX = const(4096)  # both files together, give or take one entry each
CRASH_FILE_MAX = const(2048)  # CRASH_LOG_MAX // 2: crash.log is rotated once it holds this much
CRASH_TEXT_MAX = const(600)
CRASH_COPY_CHUNK = const(512)  # the rotation copies this much at a time (bounded heap)
BOOT_STOP_SAMPLES = const(5)
BOOT_STOP_GAP_MS = const(4)
STOP_MASK = const(4)  # Buttons.pressed() bit of STOP (rp2_buttons.BUTTON_STOP)
UP_MASK = const(1)  # rp2_buttons.BUTTON_UP
DOWN_MASK = const(2)  # rp2_buttons.BUTTON_DOWN
WATCHDOG_TIMEOUT_MS = const(1000)

# what a Board run ended with
INTERRUPTED = "interrupted"  # KeyboardInterrupt (mpremote's Ctrl-C in maintenance mode)
CRASHED = "crashed"  # an exception left the loop
TO_MAINTENANCE = "to_maintenance"  # reboot into maintenance mode (marker written)
TO_NORMAL = "to_normal"  # reboot into normal mode
BOOT_FAILED = "boot_failed"  # the drivers could not be built


class Drivers:
    """One set of drivers for a Board; make_watchdog() starts the watchdog (normal mode only)."""

    def __init__(self, clock, pulse, sense, serial, storage=None, heater=None, thermistor=None, buttons=None,
                 indicator=None, make_watchdog=None, random_bytes=None, device_id="pulsewarm-0000"):
        self.clock = clock
        self.pulse = pulse
        self.sense = sense
        self.serial = serial
        self.storage = storage
        self.heater = heater
        self.thermistor = thermistor
        self.buttons = buttons
        self.indicator = indicator
        self.make_watchdog = make_watchdog
        self.random_bytes = random_bytes
        self.device_id = device_id


def device_id_from(unique_id):
    """'pulsewarm-' and the last four bytes of the RP2040's flash unique id, in hex."""
    tail = unique_id[-4:]
    return "pulsewarm-" + "".join("%02x" % b for b in tail)


def build_drivers(machine):
    """The RP2040 drivers: the only place that names them. Outputs are built first."""
    import os

    from firmware.drivers.rp2_adc import Rp2OutputSense, Rp2Thermistor
    from firmware.drivers.rp2_buttons import Rp2Buttons
    from firmware.drivers.rp2_clock import Rp2Clock
    from firmware.drivers.rp2_heater import Rp2Heater
    from firmware.drivers.rp2_indicator import Rp2Indicator
    from firmware.drivers.rp2_pulse import Rp2PulseOutput
    from firmware.drivers.rp2_serial import Rp2UsbSerial
    from firmware.drivers.rp2_storage import Rp2Storage
    from firmware.drivers.rp2_watchdog import Rp2Watchdog

    pulse = Rp2PulseOutput()
    heater = Rp2Heater()
    indicator = Rp2Indicator()
    clock = Rp2Clock()

    def make_watchdog():
        return Rp2Watchdog(timeout_ms=WATCHDOG_TIMEOUT_MS)

    return Drivers(
        clock=clock,
        pulse=pulse,
        sense=Rp2OutputSense(),
        serial=Rp2UsbSerial(),
        storage=Rp2Storage(root="/data"),
        heater=heater,
        thermistor=Rp2Thermistor(),
        buttons=Rp2Buttons(clock=clock),
        indicator=indicator,
        make_watchdog=make_watchdog,
        random_bytes=os.urandom,
        device_id=device_id_from(machine.unique_id()),
    )


def pins_low(machine, pins=OUTPUT_PINS):
    """Every output pin a plain GPIO output at 0; each pin on its own (one failing pin stops none,
    nor does a Ctrl-C landing half-way: this runs on the way out, where one may still come)."""
    for pin in pins:
        try:
            machine.Pin(pin, machine.Pin.OUT, value=0)
        except (Exception, KeyboardInterrupt):  # noqa: BLE001 - the others still go low
            pass


def stop_held_at_boot(machine, time, pin=BUTTON_STOP):
    """STOP held now: its pin (pull-up, pressed reads 0) low on every one of BOOT_STOP_SAMPLES reads."""
    try:
        stop = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        for i in range(BOOT_STOP_SAMPLES):
            if i:
                time.sleep_ms(BOOT_STOP_GAP_MS)
            if stop.value() != 0:
                return False
        return True
    except Exception:  # noqa: BLE001 - an unreadable button is a button not held
        return False


def exception_text(exc):
    """A traceback as text on MicroPython (sys.print_exception), a one-line summary elsewhere."""
    import sys

    printer = getattr(sys, "print_exception", None)
    if printer is not None:
        try:
            import io

            out = io.StringIO()
            printer(exc, out)
            return out.getvalue()
        except Exception:  # noqa: BLE001
            pass
    return "%s: %s\n" % (type(exc).__name__, exc)


class Board:
    """A device over one driver set, booted and run by the rules in the module docstring."""

    def __init__(self, drivers, machine, micropython, time, stop_held=False):
        self.drivers = drivers
        self.machine = machine
        self.micropython = micropython
        self.time = time
        self.stop_held = stop_held
        self.device = None
        self.watchdog = None
        self.maintenance = False
        self.boot_reason = None  # maintenance mode: "marker" or "stop_button"
        self.ticks = 0
        self.late_resyncs = 0
        self._off_errors_seen = 0  # steps of the output drivers' off() that raised, so far
        self.crash = None  # the text of the exception that ended the loop
        self._switch_to = None  # True/False: rebooting into that mode after the grace ticks
        self._grace = 0
        self._buttons_down = 0  # the mask of the last poll: a press is a new bit
        self._ind_setting = []  # per channel: the setting whose indicator threshold is known ...
        self._ind_threshold = []  # ... and that threshold (uA): lit at amp_ua >= it

    # ---- boot -----------------------------------------------------------------------

    def boot(self):
        from firmware.device import Device

        self._rotate_crash_log()  # first: a crash loop in Device() must still keep its newest crash
        d = self.drivers
        self.device = Device(
            d.clock, d.pulse, d.sense, d.serial, d.device_id, heater=d.heater, thermistor=d.thermistor,
            storage=d.storage, random_bytes=d.random_bytes,
        )
        self.outputs_off()
        count = len(self.device.channels)
        self._ind_setting = [None] * count
        self._ind_threshold = [0] * count
        marker = self._take_marker()
        if marker or self.stop_held:
            self.maintenance = True
            self.boot_reason = "marker" if marker else "stop_button"
            self.device.maintenance = True
            self.device.unguarded = True  # until the reboot: no session without the watchdog
            self.micropython.kbd_intr(3)
        else:
            self.micropython.kbd_intr(-1)
            self.watchdog = d.make_watchdog() if d.make_watchdog is not None else None

    def _take_marker(self):
        storage = self.drivers.storage
        if storage is None:
            return False
        try:
            found = storage.size(MARKER) > 0
            if found:
                storage.remove(MARKER)  # one-shot: the next boot is a normal one
            return found
        except Exception:  # noqa: BLE001 - an unreadable marker is no marker: normal mode, watchdog on
            return False

    # ---- the loop ---------------------------------------------------------------------

    def _booted(self):
        device = self.device
        if device is None:
            raise RuntimeError("the board loop runs only after boot()")
        return device

    def step(self):
        """One tick; returns TO_MAINTENANCE / TO_NORMAL when the board must reboot, else None."""
        device = self._booted()
        device.tick()
        self.ticks += 1
        # A button or indicator driver that fails: outputs off and a latched fault the host can
        # read, not a reboot loop. Each on its own: a broken button must not take the output LED
        # and the fault alarm with it.
        try:
            self._stop_button()
        except Exception as exc:  # noqa: BLE001
            device.fail_safe(exc)
        try:
            self._indicate()
        except Exception as exc:  # noqa: BLE001
            device.fail_safe(exc)
        outcome = self._mode_switch()
        self._check_outputs_went_off()
        if self.watchdog is not None:
            self.watchdog.feed()
        return outcome

    def _check_outputs_went_off(self):
        """A step of an output driver's off() that raised may have left that output on, and a
        loop that cannot turn its outputs off must not go on (nor feed the watchdog): it ends
        here, and run() turns everything off again, logs it and resets the chip (a reset chip
        leaves every pad an input, held off by the pull-downs)."""
        errors = 0
        for driver in (self.drivers.pulse, self.drivers.heater):
            errors += getattr(driver, "off_errors", 0)
        if errors != self._off_errors_seen:
            self._off_errors_seen = errors
            raise RuntimeError("turning an output off failed (%d step(s) of off() raised): resetting" % errors)

    def loop(self):
        time = self.time
        deadline = time.ticks_ms()
        while True:
            outcome = self.step()
            if outcome is not None:
                return outcome
            deadline = time.ticks_add(deadline, TICK_MS)
            wait = time.ticks_diff(deadline, time.ticks_ms())
            if wait > 0:
                time.sleep_ms(wait)
            elif wait < -RESYNC_MS:
                self.late_resyncs += 1
                deadline = time.ticks_ms()
                self._after_stall()

    def _after_stall(self):
        """The loop stood still for over RESYNC_MS, so the PIO ran dry and no pulse fired: an
        interruption, and after an interruption stimulation ramps up from zero again (targets kept)."""
        try:
            self._booted().interrupt_outputs()
        except Exception as exc:  # noqa: BLE001
            self._booted().fail_safe(exc)

    def _stop_button(self):
        buttons = self.drivers.buttons
        if buttons is None:
            return
        mask = buttons.pressed()
        down = bool(mask & STOP_MASK)
        device = self._booted()
        device.stop_held = down  # no start or resume while it is held
        # a press since the last step (latched by its edge: a short one, or one inside a slow
        # tick, counts) or STOP still held: a session on is stopped, again if need be
        if buttons.take_stop_press() or down:
            if device.supervisor.state != sup.IDLE and device.supervisor.state != sup.FAULT:
                device.emergency_stop()  # the patient's stop: output zero now, no ramp
        steps = 0
        if mask & UP_MASK and not self._buttons_down & UP_MASK:
            steps = 1
        elif mask & DOWN_MASK and not self._buttons_down & DOWN_MASK:
            steps = -1
        self._buttons_down = mask
        if steps and not down:
            self._booted().button_step(steps)  # one 0.5 mA step per press, through every request check

    def _indicate(self):
        indicator = self.drivers.indicator
        if indicator is None:
            return
        device = self._booted()
        try:
            output_on = self._output_on(device)
            alarm = device.supervisor.state == sup.FAULT
        except Exception:  # noqa: BLE001 - never hide an output: lit, and the alarm sounds
            output_on = True
            alarm = True
        indicator.set(output_on, alarm)  # every tick: the driver counts calls for its blink patterns

    def _output_on(self, device):
        """Any channel above the indicator threshold (10 mA r.m.s. or 10 mJ into 1 kohm), as status says.

        Runs every step, ramps included: the lowest lit amplitude of a channel's setting is
        computed once when the setting changes (envelope.indicator_threshold_ua: the same
        rule as Envelope(setting, amp).indicator, whose products are long ints on the board),
        and each step compares two small ints.
        """
        on = False
        channels = device.channels
        for i in range(len(channels)):
            channel = channels[i]
            amp_ua = channel.amp_ua
            if amp_ua <= 0:
                continue
            setting = channel.setting
            if setting is not self._ind_setting[i]:
                self._ind_threshold[i] = envelope.indicator_threshold_ua(setting)
                self._ind_setting[i] = setting
            if amp_ua >= self._ind_threshold[i]:
                on = True
        return on

    def _mode_switch(self):
        wanted = bool(self._booted().maintenance)
        if self._switch_to is None:
            if wanted == self.maintenance:
                return None
            self._switch_to = wanted
            self._grace = SWITCH_GRACE_TICKS
            if wanted:
                self._write_marker()
            return None
        if wanted != self._switch_to:  # asked back before the reboot: stay as we are
            self._switch_to = None
            self._remove_marker()
            return None
        self._grace -= 1
        if self._grace > 0:
            return None
        return TO_MAINTENANCE if self._switch_to else TO_NORMAL

    def _write_marker(self):
        storage = self.drivers.storage
        if storage is None:
            return
        try:
            storage.remove(MARKER)
            storage.append(MARKER, b"1")
        except Exception as exc:  # noqa: BLE001 - the reboot comes back in normal mode; the host sees it
            self.log(exc, rotate=False)  # inside the loop: one append at most, never a rotation

    def _remove_marker(self):
        storage = self.drivers.storage
        if storage is None:
            return
        try:
            storage.remove(MARKER)
        except Exception:  # noqa: BLE001
            pass

    # ---- the way out --------------------------------------------------------------------

    def outputs_off(self, pins=False):
        """Pulse, heater and indicator off, each on its own; with pins, every output pin low as well.
        A KeyboardInterrupt inside one part (a second Ctrl-C from mpremote in maintenance mode)
        stops none of the others."""
        d = self.drivers
        for part in (d.pulse, d.heater, d.indicator):
            if part is None:
                continue
            try:
                part.off()
            except (Exception, KeyboardInterrupt):  # noqa: BLE001 - the others still go off
                pass
        if pins:
            pins_low(self.machine)

    def _no_ctrl_c(self):
        try:
            self.micropython.kbd_intr(-1)
        except (Exception, KeyboardInterrupt):  # noqa: BLE001 - the outputs go off regardless
            pass

    def log(self, exc, rotate=True):
        """Append the exception to the crash log; never raises. A flash write: every caller on
        the way out turns the outputs off first (run()). Bounded: crash.log is rotated into
        crash.old.log once it holds CRASH_FILE_MAX bytes (normally at the next boot, see
        _rotate_crash_log; here only with rotate, on the way out), so the newest crash is kept
        and the oldest dropped. Without rotate (inside the loop) a full crash.log takes nothing."""
        try:
            text = exception_text(exc)
        except Exception:  # noqa: BLE001 - an exception whose text cannot be made
            text = "(unprintable exception)\n"
        self.crash = text
        storage = self.drivers.storage
        if storage is None:
            return
        try:
            if storage.size(CRASH_LOG) >= CRASH_FILE_MAX:  # full within one run
                if not rotate:
                    return
                self._rotate_crash_log()
            storage.append(CRASH_LOG, ("tick %d: %s" % (self.ticks, text[:CRASH_TEXT_MAX])).encode())
        except Exception:  # noqa: BLE001
            pass

    def _feed_watchdog(self):
        try:
            if self.watchdog is not None:
                self.watchdog.feed()
        except Exception:  # noqa: BLE001 - the copy goes on; at worst the watchdog resets
            pass

    def _rotate_crash_log(self):
        """crash.log full (CRASH_FILE_MAX bytes or more): copy it over crash.old.log, a chunk at a
        time, then start crash.log afresh. Bounded (at most CRASH_FILE_MAX + one entry copied);
        never raises. A reset half-way leaves crash.log whole, and the next call starts over. If
        the copy fails crash.log is emptied all the same: the newest crashes matter most."""
        storage = self.drivers.storage
        if storage is None:
            return
        try:
            size = storage.size(CRASH_LOG)
        except Exception:  # noqa: BLE001 - unreadable: leave it
            return
        if size < CRASH_FILE_MAX:
            return
        try:
            storage.remove(CRASH_LOG_OLD)
            offset = 0
            while offset < size:
                data = storage.read(CRASH_LOG, offset, CRASH_COPY_CHUNK)
                if not data:
                    break
                storage.append(CRASH_LOG_OLD, data)
                offset += len(data)
                self._feed_watchdog()  # a bounded copy on the way out: no reset half-way through it
        except Exception:  # noqa: BLE001 - crash.old.log may be partial; crash.log goes anyway
            pass
        try:
            storage.remove(CRASH_LOG)
        except Exception:  # noqa: BLE001
            pass

    def run(self):
        """Boot and loop until the end; returns only in maintenance mode (or with a machine that
        does not reset: the tests' fakes). The outcome is one of the names above.

        Outputs off first, then anything slow: the crash log is a flash write (tens of ms, more
        when littlefs must erase), and the rail, the amplitude reference and the heater must not
        stay as the crash left them meanwhile."""
        outcome = CRASHED
        failure = None
        try:
            self.boot()
            outcome = self.loop()
        except KeyboardInterrupt:
            outcome = INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - whatever it was, outputs off below, then the log
            outcome = CRASHED
            failure = exc
        finally:
            self._no_ctrl_c()  # no further Ctrl-C on the way out (the REPL has its own)
            self.outputs_off(pins=True)
        if failure is not None:
            self.log(failure)
            failure = None
        if (self.maintenance or self.stop_held) and outcome in (INTERRUPTED, CRASHED):
            if outcome == CRASHED and self.crash:
                print(self.crash)  # maintenance mode: someone at the REPL reads it
            return outcome
        self.machine.reset()
        return outcome


def main(build=None, machine=None, micropython=None, time=None):
    """The board's main: main.py calls main(); the tests pass fakes."""
    if machine is None:
        import machine
    if micropython is None:
        import micropython
    if time is None:
        import time
    if build is None:
        build = build_drivers
    micropython.kbd_intr(-1)
    try:
        stop_held = stop_held_at_boot(machine, time)
        try:
            drivers = build(machine)
        except Exception as exc:  # noqa: BLE001 - a driver that cannot start: outputs off, and
            pins_low(machine)
            if stop_held:  # the rescue boot: stay at the REPL, where a deploy can mend it
                print(exception_text(exc))
                return BOOT_FAILED
            machine.reset()
            return BOOT_FAILED
    except KeyboardInterrupt:  # Ctrl-C is only enabled in maintenance mode (Board.boot)
        pins_low(machine)
        return INTERRUPTED
    return Board(drivers, machine, micropython, time, stop_held).run()
