"""Fake `machine` and `rp2` modules, so the RP2040 drivers run on CPython in tests.

    board = board_fakes.install(monkeypatch)      # fresh fakes in sys.modules, drivers unloaded
    rp2_heater = board.load("firmware.drivers.rp2_heater")
    heater = rp2_heater.Rp2Heater()
    board.driven_high(9)                           # what the pin drives now
    board.fire_timers()                            # every armed machine.Timer expires now

A `Board` records what the hardware would do: each GPIO's mode, pull, output latch, external
input level and function (SIO or PWM), each PWM slice's frequency, duty and whether it runs,
ADC sources, timers, the watchdog, pin IRQs and the system clock (`board.sys_clk_hz`: what
machine.freq() returns, 125 MHz at first; machine.freq(hz) sets it, as a program on the board
could, and nothing rescales what was set up before). Behaviour follows the rp2 port where a
driver could get it wrong: Pin(..., value=v) sets the level before the mode; Pin.init(Pin.OUT)
takes a pin back from PWM to SIO; a PWM that is deinit()-ed holds its last output, so a pin left
in PWM function after a deinit counts as driven high whenever its duty was above 0 (the
pessimistic reading); Timer ids other than -1 raise ValueError; WDT rejects timeouts above
8388 ms; read_u16() returns a 12-bit code scaled to 16 bits ((v << 4) | (v >> 8)).

Failures are injected with `board.fail_pin(pin)` (every call on that pin raises OSError) and
`board.fail_adc(pin)`.
"""

import importlib
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIVER_DIR = ROOT / "firmware" / "drivers"

SIO = "sio"
PWM_FUNC = "pwm"
PIO_FUNC = "pio"


def driver_modules():
    """The board-only driver modules (rp2_pins is import-safe everywhere and stays loaded)."""
    return sorted(
        "firmware.drivers." + p.stem for p in DRIVER_DIR.glob("rp2_*.py") if p.stem != "rp2_pins"
    )


class PinState:
    def __init__(self, pin_id):
        self.id = pin_id
        self.mode = None  # None (reset: input), IN, OUT or OPEN_DRAIN
        self.pull = None
        self.latch = 0  # the output register
        self.external = None  # level applied from outside (None: the pull decides)
        self.function = SIO
        self.irq_handler = None
        self.irq_trigger = 0
        self.irq_hard = None
        self.writes = 0  # value writes (any)


class PwmState:
    def __init__(self, pin_id):
        self.pin = pin_id
        self.freq = 0
        self.duty_u16 = 0
        self.running = False
        self.created = 0


class Board:
    def __init__(self):
        self.pins = {}
        self.pwms = {}
        self.adc_sources = {}
        self.adc_reads = {}
        self.timers = []
        self.wdts = []
        self.failing_pins = set()
        self.failing_adcs = set()
        self.irq_disabled = 0
        self.state_machines = []
        self.sys_clk_hz = 125_000_000  # machine.freq(): the rp2 port's default
        self.machine = _make_machine(self)
        self.rp2 = _make_rp2(self)

    # ---- set-up and loading ----------------------------------------------------------------

    def load(self, name):
        """Import a driver module against these fakes."""
        return importlib.import_module(name)

    # ---- reading the hardware --------------------------------------------------------------

    def pin(self, pin_id):
        state = self.pins.get(pin_id)
        if state is None:
            state = self.pins[pin_id] = PinState(pin_id)
        return state

    def driven_high(self, pin_id):
        """Whether the pin drives its net high now (an input drives nothing: False)."""
        state = self.pins.get(pin_id)
        if state is None:
            return False
        if state.function == PWM_FUNC:
            pwm = self.pwms.get(pin_id)
            return pwm is not None and pwm.duty_u16 > 0  # running, or frozen at an unknown level
        if state.function != SIO:
            return False
        return state.mode == self.machine.Pin.OUT and state.latch == 1

    def level(self, pin_id):
        """What a read of the pin returns: the latch for an output, else the outside or the pull."""
        state = self.pin(pin_id)
        if state.mode == self.machine.Pin.OUT:
            return state.latch
        if state.external is not None:
            return state.external
        return 1 if state.pull == self.machine.Pin.PULL_UP else 0

    # ---- acting on the hardware ------------------------------------------------------------

    def set_input(self, pin_id, level):
        """Apply a level from outside (a button, a comparator); fires a configured IRQ on the edge."""
        state = self.pin(pin_id)
        before = self.level(pin_id)
        state.external = level
        after = self.level(pin_id)
        if state.irq_handler is not None and before != after:
            Pin = self.machine.Pin
            if (after == 0 and state.irq_trigger & Pin.IRQ_FALLING) or (after == 1 and state.irq_trigger & Pin.IRQ_RISING):
                state.irq_handler(Pin(pin_id))

    def set_adc(self, pin_id, source):
        """source: a 12-bit code, a list of codes (consumed in turn, the last repeats) or a callable."""
        self.adc_sources[pin_id] = list(source) if isinstance(source, (list, tuple)) else source

    def fail_pin(self, pin_id, failing=True):
        (self.failing_pins.add if failing else self.failing_pins.discard)(pin_id)

    def fail_adc(self, pin_id, failing=True):
        (self.failing_adcs.add if failing else self.failing_adcs.discard)(pin_id)

    def armed_timers(self):
        return [t for t in self.timers if t.armed]

    def fire_timers(self):
        """Every armed timer's period ends now: one-shots disarm, then their callbacks run."""
        fired = 0
        for timer in list(self.armed_timers()):
            timer.fire()
            fired += 1
        return fired

    # ---- used by the fakes -----------------------------------------------------------------

    def _check_pin(self, pin_id):
        if pin_id in self.failing_pins:
            raise OSError(5, "injected pin failure on GP%d" % pin_id)

    def _adc_read12(self, pin_id):
        if pin_id in self.failing_adcs:
            raise OSError(5, "injected ADC failure on GP%d" % pin_id)
        self.adc_reads[pin_id] = self.adc_reads.get(pin_id, 0) + 1
        source = self.adc_sources.get(pin_id, 0)
        if callable(source):
            value = source()
        elif isinstance(source, list):
            value = source.pop(0) if len(source) > 1 else source[0]
        else:
            value = source
        return max(0, min(4095, int(value)))


def _pin_id(board, dest):
    if isinstance(dest, board.machine.Pin):
        return dest.id
    if isinstance(dest, int):
        return dest
    raise TypeError("expected a Pin or a GPIO number, got %r" % (dest,))


def _make_machine(board):
    machine = types.ModuleType("machine")
    machine.__doc__ = "fake machine module (tests/board_fakes.py)"

    class Pin:
        IN = 0
        OUT = 1
        OPEN_DRAIN = 2
        PULL_UP = 1
        PULL_DOWN = 2
        IRQ_FALLING = 4
        IRQ_RISING = 8
        ALT_PWM = 4

        def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
            if not isinstance(id, int) or not 0 <= id <= 29:
                raise ValueError("invalid pin %r" % (id,))
            self.id = id
            board.pin(id)
            if mode != -1 or pull != -1 or value is not None:
                self.init(mode, pull, value=value)

        def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
            board._check_pin(self.id)
            state = board.pin(self.id)
            if value is not None:  # the rp2 port sets the level before the mode
                state.latch = 1 if value else 0
                state.writes += 1
            if mode != -1:
                if mode not in (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN):
                    raise ValueError("invalid pin mode %r" % (mode,))
                state.mode = mode
                state.function = SIO  # IN/OUT take the pin back from PWM or PIO
            if pull != -1:
                state.pull = pull

        def value(self, *args):
            board._check_pin(self.id)
            state = board.pin(self.id)
            if not args:
                return board.level(self.id)
            if len(args) > 1:
                raise TypeError("value() takes at most 1 argument")
            state.latch = 1 if args[0] else 0
            state.writes += 1
            return None

        __call__ = value

        def on(self):
            self.value(1)

        def off(self):
            self.value(0)

        high = on
        low = off

        def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, priority=1, wake=None, hard=False):
            state = board.pin(self.id)
            state.irq_handler = handler
            state.irq_trigger = trigger
            state.irq_hard = hard
            return None

        def __eq__(self, other):
            return isinstance(other, Pin) and other.id == self.id

        def __hash__(self):
            return hash(("Pin", self.id))

        def __repr__(self):
            return "Pin(GPIO%d)" % self.id

    class PWM:
        def __init__(self, dest, *, freq=None, duty_u16=None, duty_ns=None, invert=False):
            self.pin = _pin_id(board, dest)
            board._check_pin(self.pin)
            state = board.pwms.get(self.pin)
            if state is None:
                state = board.pwms[self.pin] = PwmState(self.pin)
            state.created += 1
            board.pin(self.pin).function = PWM_FUNC
            self.init(freq=freq, duty_u16=duty_u16)

        def init(self, *, freq=None, duty_u16=None, duty_ns=None, invert=False):
            state = board.pwms[self.pin]
            if freq is not None:
                self.freq(freq)
            if duty_u16 is not None:
                self.duty_u16(duty_u16)
            state.running = True

        def freq(self, *args):
            state = board.pwms[self.pin]
            if not args:
                return state.freq
            if not 8 <= args[0] <= 62_500_000:
                raise ValueError("freq out of range")
            state.freq = args[0]
            return None

        def duty_u16(self, *args):
            state = board.pwms[self.pin]
            if not args:
                return state.duty_u16
            if not 0 <= args[0] <= 65535:
                raise ValueError("duty_u16 out of range")
            state.duty_u16 = args[0]
            return None

        def deinit(self):
            board.pwms[self.pin].running = False  # the slice stops; the pin holds its last level

    class ADC:
        def __init__(self, id, *, sample_ns=None, atten=None):
            self.pin = _pin_id(board, id)
            if self.pin not in (26, 27, 28, 29):
                raise ValueError("Pin doesn't have ADC capabilities")

        def read_u16(self):
            code = board._adc_read12(self.pin)
            return (code << 4) | (code >> 8)

    class Timer:
        ONE_SHOT = 0
        PERIODIC = 1

        def __init__(self, id=-1, **kwargs):
            if id != -1:
                raise ValueError("Timer doesn't exist")
            self.armed = False
            self.mode = None
            self.period = None
            self.callback = None
            self.inits = 0
            board.timers.append(self)
            if kwargs:
                self.init(**kwargs)

        def init(self, *, mode=PERIODIC, period=None, freq=None, tick_hz=1000, callback=None, hard=None):
            if period is None and freq is None:
                raise ValueError("period or freq required")
            self.mode = mode
            self.period = period
            self.callback = callback
            self.armed = True
            self.inits += 1

        def deinit(self):
            self.armed = False

        def fire(self):
            if not self.armed:
                return
            if self.mode == Timer.ONE_SHOT:
                self.armed = False
            if self.callback is not None:
                self.callback(self)

    class WDT:
        def __init__(self, *, id=0, timeout=5000):
            if timeout > 8388:
                raise ValueError("timeout exceeds 8388 ms")
            self.timeout = timeout
            self.feeds = 0
            board.wdts.append(self)

        def feed(self):
            self.feeds += 1

    def disable_irq():
        board.irq_disabled += 1
        return board.irq_disabled

    def enable_irq(state):
        board.irq_disabled -= 1

    for name, obj in (("Pin", Pin), ("PWM", PWM), ("ADC", ADC), ("Timer", Timer), ("WDT", WDT)):
        setattr(machine, name, obj)
    machine.disable_irq = disable_irq
    machine.enable_irq = enable_irq
    def freq(*args):
        if not args:
            return board.sys_clk_hz
        board.sys_clk_hz = args[0]
        return None

    machine.freq = freq
    machine.reset = lambda: (_ for _ in ()).throw(SystemExit("machine.reset()"))
    machine.unique_id = lambda: b"\xe6\x61\x38\x52\x83\x45\x2b\x2c"
    return machine


def _make_rp2(board):
    """A minimal rp2: PIO constants, asm_pio (records its options, returns the program function)
    and StateMachine (records its set-up, the system clock at each set-up, and every word put
    into the TX FIFO)."""
    rp2 = types.ModuleType("rp2")
    rp2.__doc__ = "fake rp2 module (tests/board_fakes.py)"

    class PIO:
        IN_LOW = 0
        IN_HIGH = 1
        OUT_LOW = 2
        OUT_HIGH = 3
        SHIFT_LEFT = 0
        SHIFT_RIGHT = 1
        JOIN_NONE = 0
        JOIN_TX = 1
        JOIN_RX = 2
        IRQ_SM0 = 0x100

        def __init__(self, id):
            self.id = id

        def remove_program(self, program=None):
            pass

    def asm_pio(**options):
        def wrap(program):
            program.asm_pio_options = options
            return program

        return wrap

    class StateMachine:
        TX_FIFO_DEPTH = 4

        def __init__(self, id, program=None, freq=-1, **kwargs):
            self.id = id
            self.program = program
            self.freq = freq
            self.options = kwargs
            self.clk_hz = board.sys_clk_hz  # the system clock its divider was computed from
            self.inits = 0  # init() calls after the constructor
            self.running = False
            self.fifo = []
            self.words = []
            self.execs = []
            board.state_machines.append(self)
            for key in ("out_base", "set_base", "sideset_base"):
                base = kwargs.get(key)
                if base is not None:
                    board.pin(_pin_id(board, base)).function = PIO_FUNC

        def init(self, program=None, freq=-1, **kwargs):
            self.program = program
            self.freq = freq
            self.options = kwargs
            self.clk_hz = board.sys_clk_hz
            self.inits += 1

        def active(self, *args):
            if not args:
                return self.running
            self.running = bool(args[0])
            return None

        def restart(self):
            self.fifo = []

        def exec(self, instr):
            self.execs.append(instr)

        def put(self, value, shift=0):
            words = list(value) if isinstance(value, (list, tuple, bytes, bytearray)) else [value]
            for word in words:
                self.fifo.append(word >> shift)
                self.words.append(word >> shift)

        def tx_fifo(self):
            return len(self.fifo)

        def rx_fifo(self):
            return 0

        def drain(self):
            """Test helper: the state machine consumed every queued word."""
            self.fifo = []

    rp2.PIO = PIO
    rp2.asm_pio = asm_pio
    rp2.StateMachine = StateMachine
    return rp2


class FakeTime:
    """MicroPython's ticks functions over a settable `now` (ms), with the rp2 port's 2^30 ring."""

    def __init__(self, now=0):
        from firmware.clock import ticks_add, ticks_diff

        self.now = now
        self.ticks_add = ticks_add
        self.ticks_diff = ticks_diff

    def ticks_ms(self):
        return self.now


def install(monkeypatch):
    """Fresh fake `machine` and `rp2` in sys.modules and the board-only drivers unloaded, so the
    next import binds them to these fakes. Undone with monkeypatch (see unload() for the rest)."""
    board = Board()
    monkeypatch.setitem(sys.modules, "machine", board.machine)
    monkeypatch.setitem(sys.modules, "rp2", board.rp2)
    unload()
    return board


def unload():
    """Forget every board-only driver module (they hold references to whichever fakes loaded them)."""
    import firmware.drivers as package

    for name in driver_modules():
        sys.modules.pop(name, None)
        attr = name.rsplit(".", 1)[1]
        if hasattr(package, attr):
            delattr(package, attr)
