"""An emulator of the RP2040's PIO, and fake `rp2` / `machine` modules on top of it.

Lets board-only drivers (firmware/drivers/rp2_*.py) run under CPython, with their
PIO programs executed instruction by instruction as the chip would:

- `asm_pio` / `asm_pio_encode`: MicroPython's PIO assembler DSL (same names, same
  two-pass assembly with the function's globals swapped for the DSL's, same
  program object layout), assembling to the 16-bit encodings of the RP2040
  datasheet, section 3.4. Written from the datasheet, checked in the tests
  against encodings the datasheet and the Pico SDK print.
- `Board`: GPIO (function select, SIO, pad pull-downs, PWM duty), two PIO blocks of
  four state machines and 32 instruction words each, one clock. A state machine
  cycle decodes the word at PC and does what section 3.4 says: jmp (all eight
  conditions), wait (gpio/pin/irq), in, out (pins, x, y, null, pindirs, pc, isr,
  exec), push/pull (block/noblock, iffull/ifempty), mov (invert, bit-reverse,
  status), irq (set/wait/clear, rel), set; delay and side-set (optional, pindirs);
  wrap; autopush/autopull (section 3.5.4's pseudocode); FIFOs of 4, or 8 joined;
  EXEC via the INSTR register, OUT EXEC and MOV EXEC; program placement and JMP
  relocation as the SDK's `pio_add_program` does them.
- `rp2_module(board)` / `machine_module(board)`: what `import rp2` / `import machine`
  give on the board, as far as the drivers use them, backed by that board.
  `load_board_module(board, name, path)` executes a driver file against them.

Time: one unit is one state machine clock (every state machine of a board runs at
the board's one frequency; 1 MHz gives microseconds). An instruction executed in
cycle t drives its pins from time t + 1; the CPU (the test) acts between cycles,
at `board.time`, and its pin writes take effect at once.

Speed: when no running program can observe another (no wait, irq, pin reads, exec,
autopush/autopull, disjoint output pins), each state machine runs its share of a
`run()` alone, skipping provably idle stretches exactly: a blocking pull on an empty
FIFO (nothing can fill it during `run()`), delay cycles, and `jmp x--`/`jmp y--`
loops onto themselves. `Board(fast=False)` steps every cycle of every machine in
lockstep; the tests check both give identical traces.

Not modelled (raise or assert rather than guess): clock dividers other than the
board's one frequency, OUT_STICKY / INLINE_OUT_EN, input synchronisers (pins are
read as they stand), reserved encodings (raise `ReservedEncoding`). A `put()` into
a full FIFO, or a `get()` from an empty one, raises `WouldBlock` (on the board they
wait: a driver must never let that happen).
"""

import array
import sys
import types

M32 = 0xFFFFFFFF
TICKS_MAX = (1 << 30) - 1
SYS_CLK_HZ = 125000000


# ==== the assembler ===========================================================================

IN_LOW, IN_HIGH, OUT_LOW, OUT_HIGH = 0, 1, 2, 3
SHIFT_LEFT, SHIFT_RIGHT = 0, 1
JOIN_NONE, JOIN_TX, JOIN_RX = 0, 1, 2

PROG_DATA, PROG_OFFSET_PIO0, PROG_OFFSET_PIO1 = 0, 1, 2
PROG_EXECCTRL, PROG_SHIFTCTRL, PROG_OUT_PINS, PROG_SET_PINS, PROG_SIDESET_PINS = 3, 4, 5, 6, 7


class PIOASMError(Exception):
    pass


class _Emitter:
    """One program being assembled: pass 0 collects labels, pass 1 emits words."""

    def __init__(self, out_init=None, set_init=None, sideset_init=None, side_pindir=False,
                 in_shiftdir=SHIFT_LEFT, out_shiftdir=SHIFT_LEFT, autopush=False, autopull=False,
                 push_thresh=32, pull_thresh=32, fifo_join=JOIN_NONE):
        execctrl = int(side_pindir) << 29
        shiftctrl = ((fifo_join << 30) | ((pull_thresh & 0x1F) << 25) | ((push_thresh & 0x1F) << 20)
                     | (out_shiftdir << 19) | (in_shiftdir << 18) | (int(autopull) << 17) | (int(autopush) << 16))
        self.prog = [array.array("H"), -1, -1, execctrl, shiftctrl, out_init, set_init, sideset_init]
        self.labels = {}
        self.wrap_used = False
        if sideset_init is None:
            self.sideset_count = 0
        elif isinstance(sideset_init, int):
            self.sideset_count = 1
        else:
            self.sideset_count = len(sideset_init)
        self.sideset_opt = False
        self.delay_max = 31
        self.pass_ = 0
        self.num_instr = 0
        self.num_sideset = 0

    def start_pass(self, pass_):
        if pass_ == 1:
            if not self.wrap_used and self.num_instr:
                self.wrap()
            self.delay_max = 31
            if self.sideset_count:
                # side-set on some instructions only: one more bit, the enable
                self.sideset_opt = self.num_sideset != self.num_instr
                if self.sideset_opt:
                    self.prog[PROG_EXECCTRL] |= 1 << 30
                    self.sideset_count += 1
                self.delay_max >>= self.sideset_count
        self.pass_ = pass_
        self.num_instr = 0
        self.num_sideset = 0

    # instruction modifiers: `instr[delay]` and `instr.side(value)`
    def __getitem__(self, delay):
        if self.pass_ > 0:
            if not 0 <= delay <= self.delay_max:
                raise PIOASMError("delay too large")
            self.prog[PROG_DATA][-1] |= delay << 8
        return self

    def side(self, value):
        self.num_sideset += 1
        if self.pass_ > 0:
            if self.sideset_count == 0:
                raise PIOASMError("no sideset")
            if value >= 1 << (self.sideset_count - self.sideset_opt):
                raise PIOASMError("sideset too large")
            self.prog[PROG_DATA][-1] |= (int(self.sideset_opt) << 12) | (value << (13 - self.sideset_count))
        return self

    # directives
    def wrap_target(self):
        self.prog[PROG_EXECCTRL] |= self.num_instr << 7

    def wrap(self):
        if not self.num_instr:
            raise PIOASMError("wrap before any instruction")
        self.prog[PROG_EXECCTRL] |= (self.num_instr - 1) << 12
        self.wrap_used = True

    def label(self, name):
        if self.pass_ == 0:
            if name in self.labels:
                raise PIOASMError("duplicate label {}".format(name))
            self.labels[name] = self.num_instr

    # instructions
    def word(self, instr, label=None):
        self.num_instr += 1
        if self.num_instr > 32:
            raise PIOASMError("more than 32 instructions")
        if self.pass_ > 0:
            address = 0
            if label is not None:
                if label not in self.labels:
                    raise PIOASMError("unknown label {}".format(label))
                address = self.labels[label]
            self.prog[PROG_DATA].append(instr | address)
        return self

    def nop(self):
        return self.word(0xA042)  # mov y, y

    def jmp(self, cond, label=None):
        if label is None:
            label, cond = cond, 0
        return self.word(cond << 5, label)

    def wait(self, polarity, src, index):
        if src == 6:  # the name `pin` (6, shared with jmp's condition)
            src = 1
        elif src != 0:  # the name `irq` (the irq instruction function itself)
            src = 2
        return self.word(0x2000 | polarity << 7 | src << 5 | index)

    def in_(self, src, count):
        if not 0 < count <= 32:
            raise PIOASMError("invalid bit count {}".format(count))
        return self.word(0x4000 | src << 5 | (count & 0x1F))

    def out(self, dest, count):
        if dest == 8:  # exec
            dest = 7
        if not 0 < count <= 32:
            raise PIOASMError("invalid bit count {}".format(count))
        return self.word(0x6000 | dest << 5 | (count & 0x1F))

    def push(self, value=0, value2=0):
        value |= value2
        if not value & 1:
            value |= 0x20  # block unless noblock
        return self.word(0x8000 | (value & 0x60))

    def pull(self, value=0, value2=0):
        value |= value2
        if not value & 1:
            value |= 0x20
        return self.word(0x8080 | (value & 0x60))

    def mov(self, dest, src):
        if dest == 8:  # exec
            dest = 4
        return self.word(0xA000 | dest << 5 | src)

    def irq(self, mod, index=None):
        if index is None:
            index, mod = mod, 0
        return self.word(0xC000 | (mod & 0x60) | index)

    def set(self, dest, data):
        return self.word(0xE000 | dest << 5 | data)


_DSL_NAMES = {
    "gpio": 0, "pins": 0, "x": 1, "y": 2, "null": 3, "pindirs": 4, "pc": 5, "status": 5,
    "isr": 6, "osr": 7, "exec": 8,
    "invert": lambda v: v | 0x08, "reverse": lambda v: v | 0x10,
    "not_x": 1, "x_dec": 2, "not_y": 3, "y_dec": 4, "x_not_y": 5, "pin": 6, "not_osre": 7,
    "noblock": 0x01, "block": 0x21, "iffull": 0x40, "ifempty": 0x40, "clear": 0x40,
    "rel": lambda v: v | 0x10,
}
_DIRECTIVES = ("wrap_target", "wrap", "label")
_INSTRUCTIONS = ("word", "nop", "jmp", "wait", "in_", "out", "push", "pull", "mov", "irq", "set")


def asm_pio(**kw):
    """rp2.asm_pio: runs the decorated function twice with its globals replaced by the DSL."""
    emit = _Emitter(**kw)

    def decorate(func):
        gl = func.__globals__
        saved = gl.copy()
        gl.clear()
        try:
            gl.update(_DSL_NAMES)
            for name in _DIRECTIVES + _INSTRUCTIONS:
                gl[name] = getattr(emit, name)
            emit.start_pass(0)
            func()
            emit.start_pass(1)
            func()
        finally:
            gl.clear()
            gl.update(saved)
        return emit.prog

    return decorate


def asm_pio_encode(instr, sideset_count, sideset_opt=False):
    """rp2.asm_pio_encode: one instruction from source text (sideset_count includes the enable bit)."""
    emit = _Emitter()
    emit.sideset_count = sideset_count
    emit.sideset_opt = bool(sideset_opt)
    emit.delay_max = 31 >> (sideset_count + int(bool(sideset_opt)))
    emit.pass_ = 1
    names = dict(_DSL_NAMES)
    for name in _INSTRUCTIONS:
        names[name] = getattr(emit, name)
    names["jmp"] = None  # as on the board: no labels in a single instruction
    exec(instr, names)
    if len(emit.prog[PROG_DATA]) != 1:
        raise PIOASMError("expecting exactly 1 instruction")
    return emit.prog[PROG_DATA][0]


_JMP_COND = ("", "!x", "x--", "!y", "y--", "x!=y", "pin", "!osre")
_SRC = ("pins", "x", "y", "null", "?", "status", "isr", "osr")
_OUT_DEST = ("pins", "x", "y", "null", "pindirs", "pc", "isr", "exec")
_MOV_DEST = ("pins", "x", "y", "?", "exec", "pc", "isr", "osr")
_SET_DEST = ("pins", "x", "y", "?", "pindirs", "?", "?", "?")


def disassemble(word, sideset_count=0, sideset_opt=False):
    """Datasheet syntax for one instruction word (for failure messages)."""
    op = word >> 13
    arg1 = (word >> 5) & 7
    low = word & 0x1F
    if op == 0:
        text = "jmp %s%s" % (_JMP_COND[arg1] + ", " if arg1 else "", low)
    elif op == 1:
        text = "wait %d %s %d" % ((word >> 7) & 1, ("gpio", "pin", "irq", "?")[(word >> 5) & 3], low)
    elif op == 2:
        text = "in %s, %d" % (_SRC[arg1], low or 32)
    elif op == 3:
        text = "out %s, %d" % (_OUT_DEST[arg1], low or 32)
    elif op == 4:
        name = "pull" if word & 0x80 else "push"
        cond = (" ifempty" if word & 0x80 else " iffull") if word & 0x40 else ""
        text = name + cond + (" block" if word & 0x20 else " noblock")
    elif op == 5:
        text = "mov %s, %s%s" % (_MOV_DEST[arg1], ("", "~", "::", "?")[(word >> 3) & 3], _SRC[word & 7])
        if word & 0xFFFF == 0xA042:
            text = "nop"
    elif op == 6:
        text = "irq %s%d" % (("set ", "wait ", "clear ", "clear ")[(word >> 5) & 3], low)
    else:
        text = "set %s, %d" % (_SET_DEST[arg1], low)
    field = (word >> 8) & 0x1F
    delay_bits = 5 - sideset_count
    if sideset_count:
        side = field >> delay_bits
        if not sideset_opt:
            text += " side %d" % side
        elif side >> (sideset_count - 1):
            text += " side %d" % (side & ((1 << (sideset_count - 1)) - 1))
    delay = field & ((1 << delay_bits) - 1)
    if delay:
        text += " [%d]" % delay
    return text


# ==== the chip ================================================================================

class WouldBlock(Exception):
    """A put() into a full TX FIFO or a get() from an empty RX FIFO: the board would wait here."""


class ReservedEncoding(Exception):
    pass


FUNC_PWM, FUNC_SIO, FUNC_PIO0, FUNC_PIO1, FUNC_NULL = 4, 5, 6, 7, 31
NUM_GPIO = 30


def _mask(bits):
    return M32 if bits >= 32 else (1 << bits) - 1


def _pin_mask(base, count):
    mask = 0
    for i in range(count):
        mask |= 1 << ((base + i) & 31)
    return mask


def _spread(value, base, count):
    """Value bits 0..count-1 placed on pins base.. (wrapping at 32), as the PIO's pin mapping does."""
    out = 0
    for i in range(count):
        if value >> i & 1:
            out |= 1 << ((base + i) & 31)
    return out


def _bitrev32(v):
    return int("{:032b}".format(v & M32)[::-1], 2)


class Gpio:
    """Function select, SIO output, pads (reset: input with pull-down), PWM duty per pin.

    `log` lists every change of a pin's level: (time, pin, level, source), where
    source is ("pio", pio, sm, pc, word) for an instruction's write and ("cpu", what)
    for the CPU's. A PWM pin's level is 1 while its duty is above zero.
    """

    def __init__(self, board):
        self.board = board
        self.func = [FUNC_NULL] * NUM_GPIO
        self.sio_out = [0] * NUM_GPIO
        self.sio_oe = [0] * NUM_GPIO
        self.pull = [-1] * NUM_GPIO  # -1 down (the reset state), +1 up, 0 none
        self.pwm_duty = [0] * NUM_GPIO
        self.pwm_freq = [0] * NUM_GPIO
        self.level = [0] * NUM_GPIO
        self.log = []

    def _compute(self, pin):
        func = self.func[pin]
        if func == FUNC_SIO and self.sio_oe[pin]:
            return self.sio_out[pin]
        if func in (FUNC_PIO0, FUNC_PIO1):
            pio = self.board.pios[func - FUNC_PIO0]
            if pio.pin_dir >> pin & 1:
                return pio.pin_out >> pin & 1
        if func == FUNC_PWM:
            return 1 if self.pwm_duty[pin] > 0 else 0
        return 1 if self.pull[pin] > 0 else 0

    def update(self, pin, when, source):
        if pin >= NUM_GPIO:
            return
        level = self._compute(pin)
        if level != self.level[pin]:
            self.level[pin] = level
            self.log.append((when, pin, level, source))

    def set_function(self, pin, func, source):
        self.func[pin] = func
        self.update(pin, self.board.time, source)

    def read_all(self):
        value = 0
        for pin in range(NUM_GPIO):
            value |= self.level[pin] << pin
        return value


class Pio:
    """One PIO block: 32 instruction words, 4 state machines, 8 IRQ flags, the pin output/dir registers."""

    def __init__(self, board, index):
        self.board = board
        self.index = index
        self.instr = [0] * 32
        self.used = 0  # instruction memory mask
        self.loaded = {}  # id(program data) -> offset
        self.pin_out = 0
        self.pin_dir = 0
        self.irq_flags = 0
        self.sms = [StateMachineEmu(self, i) for i in range(4)]

    def add_program(self, words):
        """Placement and relocation as pico-sdk's pio_add_program: the highest free offset; JMPs relocated."""
        n = len(words)
        prog_mask = (1 << n) - 1
        for offset in range(32 - n, -1, -1):
            if not self.used & (prog_mask << offset):
                break
        else:
            raise OSError(12, "ENOMEM: no room in PIO instruction memory")
        for i, w in enumerate(words):
            self.instr[offset + i] = (w + offset) & 0xFFFF if w >> 13 == 0 else w
        self.used |= prog_mask << offset
        return offset

    def write_pins(self, sm, kind, base, count, value, when, source):
        if count <= 0:
            return
        mask = _pin_mask(base, count)
        bits = _spread(value, base, count)
        self.board.writes.append((when, self.index, sm.index if sm is not None else -1, kind, mask, bits, source))
        if kind == "pindirs":
            self.pin_dir = (self.pin_dir & ~mask) | bits
        else:
            self.pin_out = (self.pin_out & ~mask) | bits
        func = FUNC_PIO0 + self.index
        gpio = self.board.gpio
        for pin in range(NUM_GPIO):
            if mask >> pin & 1 and gpio.func[pin] == func:
                gpio.update(pin, when, source)


class StateMachineEmu:
    """One state machine, its registers and FIFOs, executing one clock per `cycle()`."""

    def __init__(self, pio, index):
        self.pio = pio
        self.index = index
        self.enabled = False
        self.clkdiv = (1, 0)
        self.freq = None
        self.pc = 0
        self.x = self.y = 0
        self.isr = self.osr = 0
        self.isr_count = 0
        self.osr_count = 32  # empty
        self.delay = 0
        self.pending = None  # an instruction from INSTR / OUT EXEC / MOV EXEC, run instead of a fetch
        self._exec_next = None
        self.irq_waiting = False
        self.stalled = False
        self.tx = []
        self.rx = []
        self.max_tx = 0  # the highest TX level ever seen (never above the depth)
        self.rx_dropped = 0
        self.execctrl = 0x1F << 12  # wrap 0..31
        self.shiftctrl = (1 << 19) | (1 << 18)  # SDK defaults: both shift right, thresholds 32
        self.pinctrl = 5 << 26  # SDK default: set_count 5
        self.cycles = 0  # cycles executed while enabled

    # ---- configuration fields ----
    @property
    def wrap_top(self):
        return (self.execctrl >> 12) & 0x1F

    @property
    def wrap_bottom(self):
        return (self.execctrl >> 7) & 0x1F

    def tx_depth(self):
        if self.shiftctrl >> 31 & 1:
            return 0
        return 8 if self.shiftctrl >> 30 & 1 else 4

    def rx_depth(self):
        if self.shiftctrl >> 30 & 1:
            return 0
        return 8 if self.shiftctrl >> 31 & 1 else 4

    def _pull_thresh(self):
        return ((self.shiftctrl >> 25) & 0x1F) or 32

    def _push_thresh(self):
        return ((self.shiftctrl >> 20) & 0x1F) or 32

    def _autopull(self):
        return self.shiftctrl >> 17 & 1

    def _autopush(self):
        return self.shiftctrl >> 16 & 1

    def out_pins(self):
        return self.pinctrl & 0x1F, (self.pinctrl >> 20) & 0x3F

    def set_pins(self):
        return (self.pinctrl >> 5) & 0x1F, (self.pinctrl >> 26) & 0x7

    def sideset(self):
        return (self.pinctrl >> 10) & 0x1F, (self.pinctrl >> 29) & 0x7

    def in_base(self):
        return (self.pinctrl >> 15) & 0x1F

    # ---- CPU side ----
    def restart(self):
        """CTRL.SM_RESTART: shift counters, ISR, delay, IRQ wait and a stalled EXEC instruction cleared.

        The output shift counter is set to 32 (the OSR empty): an autopull program starts by
        pulling, as programs like ws2812 rely on. X, Y, OSR and the PC are left as they are."""
        self.isr = 0
        self.isr_count = 0
        self.osr_count = 32
        self.delay = 0
        self.pending = None
        self.irq_waiting = False
        self.stalled = False

    def clear_fifos(self):
        self.tx = []
        self.rx = []

    def put(self, value):
        if len(self.tx) >= self.tx_depth():
            raise WouldBlock("put() into a full TX FIFO (%d words): the board would wait here" % len(self.tx))
        self.tx.append(value & M32)
        if len(self.tx) > self.max_tx:
            self.max_tx = len(self.tx)

    def get(self):
        if not self.rx:
            raise WouldBlock("get() from an empty RX FIFO")
        return self.rx.pop(0)

    def exec_instr(self, word):
        """A write to SMx_INSTR: runs at once on a stopped machine, else instead of the next fetch."""
        self.pending = word & 0xFFFF
        if not self.enabled:
            self._step(self.pio.board.time - 1)

    # ---- the clock ----
    def _field(self, word):
        """(delay, side-set value or None, side-set bit count) of an instruction."""
        base, count = self.sideset()
        field = (word >> 8) & 0x1F
        delay_bits = 5 - count
        delay = field & ((1 << delay_bits) - 1)
        if not count:
            return delay, None, 0
        side = field >> delay_bits
        if self.execctrl >> 30 & 1:  # optional side-set: the top bit enables it
            if not side >> (count - 1):
                return delay, None, 0
            return delay, side & ((1 << (count - 1)) - 1), count - 1
        return delay, side, count

    def cycle(self, t):
        if not self.enabled:
            return
        self.cycles += 1
        if self.delay:
            self.delay -= 1
            self._background_pull()
            return
        self._step(t)

    def _step(self, t):
        from_exec = self.pending is not None
        word = self.pending if from_exec else self.pio.instr[self.pc]
        when = t + 1
        source = ("pio", self.pio.index, self.index, self.pc, word)
        delay, side, side_bits = self._field(word)
        if side is not None:
            base, _ = self.sideset()
            kind = "pindirs" if self.execctrl >> 29 & 1 else "pins"
            self.pio.write_pins(self, kind, base, side_bits, side, when, source)
        self._exec_next = None
        result = self._execute(word, when, source)
        op = word >> 13
        if result is None:  # stalled: the same instruction again next cycle, no delay
            self.stalled = True
            if op != 3:
                self._background_pull()
            return
        self.stalled = False
        if from_exec:
            self.pending = None
        if self._exec_next is not None:
            self.pending = self._exec_next  # OUT/MOV EXEC: the word runs next cycle; this one's delay is ignored
        else:
            self.delay = delay
        if result >= 0:
            self.pc = result
        elif not from_exec:
            self.pc = self.wrap_bottom if self.pc == self.wrap_top else (self.pc + 1) & 31
        if op != 3:
            self._background_pull()

    def _background_pull(self):
        # Section 3.5.4.2: on non-OUT cycles an empty OSR refills from a non-empty FIFO.
        if self._autopull() and self.osr_count >= self._pull_thresh() and self.tx:
            self.osr = self.tx.pop(0)
            self.osr_count = 0

    def _read_source(self, src):
        if src == 0:  # pins, through the IN mapping (rotated so in_base is bit 0)
            levels = self.pio.board.gpio.read_all()
            base = self.in_base()
            return ((levels >> base) | (levels << (32 - base))) & M32 if base else levels
        if src == 1:
            return self.x
        if src == 2:
            return self.y
        if src == 3:
            return 0
        if src == 6:
            return self.isr
        if src == 7:
            return self.osr
        raise ReservedEncoding("source %d" % src)

    def _irq_index(self, index):
        if index & 0x08:
            raise ReservedEncoding("irq index bit 3")
        if index & 0x10:  # rel: the state machine's number added modulo 4 to the two low bits
            return (index & 0x04) | ((index + self.index) & 0x03)
        return index & 0x07

    def _execute(self, word, when, source):
        """One instruction. Returns None (stalled), -1 (next) or a jump target."""
        op = word >> 13
        arg = (word >> 5) & 7
        low = word & 0x1F
        if op == 0:  # JMP
            if arg == 0:
                take = True
            elif arg == 1:
                take = self.x == 0
            elif arg == 2:
                take = self.x != 0
                self.x = (self.x - 1) & M32
            elif arg == 3:
                take = self.y == 0
            elif arg == 4:
                take = self.y != 0
                self.y = (self.y - 1) & M32
            elif arg == 5:
                take = self.x != self.y
            elif arg == 6:
                take = self.pio.board.gpio.level[(self.execctrl >> 24) & 0x1F] == 1
            else:
                take = self.osr_count < self._pull_thresh()
            return low if take else -1
        if op == 1:  # WAIT
            polarity = (word >> 7) & 1
            src = (word >> 5) & 3
            if src == 0:
                return -1 if self.pio.board.gpio.level[low] == polarity else None
            if src == 1:
                return -1 if self.pio.board.gpio.level[(self.in_base() + low) & 31] == polarity else None
            if src == 2:
                bit = 1 << self._irq_index(low)
                if polarity:
                    if self.pio.irq_flags & bit:
                        self.pio.irq_flags &= ~bit  # waiting for a 1 clears the flag
                        return -1
                    return None
                return -1 if not self.pio.irq_flags & bit else None
            raise ReservedEncoding("wait source 3")
        if op == 2:  # IN
            if arg in (4, 5):
                raise ReservedEncoding("in source %d" % arg)
            count = low or 32
            reaches = self._autopush() and min(32, self.isr_count + count) >= self._push_thresh()
            if reaches and len(self.rx) >= self.rx_depth():
                return None
            data = self._read_source(arg) & _mask(count)
            if self.shiftctrl >> 18 & 1:  # right
                self.isr = ((self.isr >> count) | (data << (32 - count))) & M32 if count < 32 else data
            else:
                self.isr = ((self.isr << count) | data) & M32 if count < 32 else data
            self.isr_count = min(32, self.isr_count + count)
            if reaches:
                self.rx.append(self.isr)
                self.isr = 0
                self.isr_count = 0
            return -1
        if op == 3:  # OUT
            thresh = self._pull_thresh()
            if self._autopull() and self.osr_count >= thresh:
                if self.tx:
                    self.osr = self.tx.pop(0)
                    self.osr_count = 0
                return None  # an empty OSR is refilled and OUT on different cycles
            count = low or 32
            if self.shiftctrl >> 19 & 1:  # right
                data = self.osr & _mask(count)
                self.osr = self.osr >> count if count < 32 else 0
            else:
                data = (self.osr >> (32 - count)) & _mask(count)
                self.osr = (self.osr << count) & M32 if count < 32 else 0
            self.osr_count = min(32, self.osr_count + count)
            result = -1
            if arg == 0:
                base, n = self.out_pins()
                self.pio.write_pins(self, "pins", base, n, data, when, source)
            elif arg == 1:
                self.x = data
            elif arg == 2:
                self.y = data
            elif arg == 4:
                base, n = self.out_pins()
                self.pio.write_pins(self, "pindirs", base, n, data, when, source)
            elif arg == 5:
                result = data & 0x1F
            elif arg == 6:
                self.isr = data
                self.isr_count = count
            elif arg == 7:
                self._exec_next = data & 0xFFFF
            if self._autopull() and self.osr_count >= thresh and self.tx:
                self.osr = self.tx.pop(0)
                self.osr_count = 0
            return result
        if op == 4:
            if word & 0x1F:
                raise ReservedEncoding("push/pull low bits")
            conditional = (word >> 6) & 1
            block = (word >> 5) & 1
            if not word & 0x80:  # PUSH
                if conditional and self.isr_count < self._push_thresh():
                    return -1
                if len(self.rx) >= self.rx_depth():
                    if block:
                        return None
                    self.rx_dropped += 1
                else:
                    self.rx.append(self.isr)
                self.isr = 0
                self.isr_count = 0
                return -1
            # PULL
            if self._autopull() and self.osr_count < self._pull_thresh():
                return -1  # with autopull a PULL on a full OSR is a no-op (a fence)
            if conditional and self.osr_count < self._pull_thresh():
                return -1
            if self.tx:
                self.osr = self.tx.pop(0)
            elif block:
                return None
            else:
                self.osr = self.x  # noblock on an empty FIFO: OSR <- X
            self.osr_count = 0
            return -1
        if op == 5:  # MOV
            operation = (word >> 3) & 3
            src = word & 7
            if src == 5:  # STATUS: all ones when the selected FIFO's level is below N
                level = len(self.rx) if self.execctrl >> 4 & 1 else len(self.tx)
                value = M32 if level < (self.execctrl & 0xF) else 0
            else:
                value = self._read_source(src)
            if operation == 1:
                value = ~value & M32
            elif operation == 2:
                value = _bitrev32(value)
            elif operation == 3:
                raise ReservedEncoding("mov operation 3")
            if arg == 0:
                base, n = self.out_pins()
                self.pio.write_pins(self, "pins", base, n, value, when, source)
            elif arg == 1:
                self.x = value
            elif arg == 2:
                self.y = value
            elif arg == 4:
                self._exec_next = value & 0xFFFF
            elif arg == 5:
                return value & 0x1F
            elif arg == 6:
                self.isr = value
                self.isr_count = 0
            elif arg == 7:
                self.osr = value
                self.osr_count = 0
            else:
                raise ReservedEncoding("mov destination 3")
            return -1
        if op == 6:  # IRQ
            if word & 0x80:
                raise ReservedEncoding("irq bit 7")
            bit = 1 << self._irq_index(low)
            if word & 0x40:  # clear
                self.pio.irq_flags &= ~bit
                return -1
            if not self.irq_waiting:
                self.pio.irq_flags |= bit
                if not word & 0x20:
                    return -1
                self.irq_waiting = True
                return None
            if self.pio.irq_flags & bit:
                return None
            self.irq_waiting = False
            return -1
        # SET
        if arg == 0:
            base, n = self.set_pins()
            self.pio.write_pins(self, "pins", base, n, low, when, source)
        elif arg == 1:
            self.x = low
        elif arg == 2:
            self.y = low
        elif arg == 4:
            base, n = self.set_pins()
            self.pio.write_pins(self, "pindirs", base, n, low, when, source)
        else:
            raise ReservedEncoding("set destination %d" % arg)
        return -1

    # ---- running alone, with exact skips ----
    def run_alone(self, t0, t1):
        t = t0
        while t < t1:
            if not self.enabled:
                return
            if self.delay:
                skip = min(self.delay, t1 - t)
                self.delay -= skip
                self.cycles += skip
                t += skip
                continue
            word = self.pending if self.pending is not None else self.pio.instr[self.pc]
            delay, side, _ = self._field(word)
            if side is None:
                if word >> 13 == 4 and word & 0xA0 == 0xA0 and not self.tx:
                    # a blocking pull on an empty FIFO: nothing refills it before run() returns
                    if not (word & 0x40 and self.osr_count < self._pull_thresh()):
                        self.stalled = True
                        self.cycles += t1 - t
                        return
                if self.pending is None and word >> 13 == 0 and word & 0x1F == self.pc:
                    cond = (word >> 5) & 7
                    if cond in (2, 4):  # jmp x--/y-- onto itself: k taken turns cost k * (1 + delay)
                        per = 1 + delay
                        reg = self.x if cond == 2 else self.y
                        k = min(reg, (t1 - t) // per)
                        if k > 0:
                            if cond == 2:
                                self.x -= k
                            else:
                                self.y -= k
                            self.cycles += k * per
                            t += k * per
                            continue
            self.cycle(t)
            t += 1

    def observable(self):
        """Whether this machine's program could see or affect another machine within a run()."""
        if self._autopull() or self._autopush() or self.pending is not None:
            return True
        for word in self.pio.instr:
            op = word >> 13
            arg = (word >> 5) & 7
            if op in (1, 6):
                return True
            if op == 0 and arg == 6:
                return True
            if op == 2 and arg == 0:
                return True
            if op == 3 and arg == 7:
                return True
            if op == 5 and (word & 7 == 0 or arg == 4):
                return True
        return False

    def output_mask(self):
        out_base, out_n = self.out_pins()
        set_base, set_n = self.set_pins()
        side_base, side_n = self.sideset()
        return _pin_mask(out_base, out_n) | _pin_mask(set_base, set_n) | _pin_mask(side_base, side_n)


class Board:
    """GPIO + two PIO blocks + one clock. `run(cycles)` advances every enabled state machine."""

    def __init__(self, freq_hz=1000000, us_base=0, fast=True, sys_clk_hz=SYS_CLK_HZ):
        self.freq_hz = freq_hz
        self.sys_clk_hz = sys_clk_hz
        self.us_base = us_base
        self.fast = fast
        self.time = 0
        self.writes = []  # every PIO pin/pindir write: (time, pio, sm, kind, mask, bits, source)
        self.cpu_calls = []  # (time, what) for CPU-side register accesses of interest
        self.gpio = Gpio(self)
        self.pios = [Pio(self, 0), Pio(self, 1)]
        self.state_machines = [sm for pio in self.pios for sm in pio.sms]

    def ticks_us(self):
        return (self.us_base + self.time * 1000000 // self.freq_hz) & TICKS_MAX

    def ticks_ms(self):
        return ((self.us_base + self.time * 1000000 // self.freq_hz) // 1000) & TICKS_MAX

    def run(self, cycles):
        end = self.time + cycles
        running = [sm for sm in self.state_machines if sm.enabled]
        if running:
            independent = self.fast
            if independent:
                seen = 0
                for sm in running:
                    mask = sm.output_mask()
                    if sm.observable() or seen & mask:
                        independent = False
                        break
                    seen |= mask
            start_w, start_g = len(self.writes), len(self.gpio.log)
            if independent:
                for sm in running:
                    sm.run_alone(self.time, end)
                # each machine's events are in time order; merge them (stable: same-time order kept)
                self.writes[start_w:] = sorted(self.writes[start_w:], key=lambda e: e[0])
                self.gpio.log[start_g:] = sorted(self.gpio.log[start_g:], key=lambda e: e[0])
            else:
                for t in range(self.time, end):
                    for sm in running:  # a higher-numbered machine's write lands last: it wins
                        sm.cycle(t)
        self.time = end

    def level(self, pin):
        return self.gpio.level[pin]

    def changes(self, pins, since=0):
        """[(time, value)] of the pins' combined level (pins[0] is bit 0), one entry per time it changed."""
        index = {pin: i for i, pin in enumerate(pins)}
        value = 0
        for when, pin, level, _ in self.gpio.log:
            if when < since and pin in index:
                value = (value & ~(1 << index[pin])) | (level << index[pin])
        out = []
        for when, pin, level, _ in self.gpio.log:
            if when < since or pin not in index:
                continue
            value = (value & ~(1 << index[pin])) | (level << index[pin])
            if out and out[-1][0] == when:
                out[-1] = (when, value)
            else:
                out.append((when, value))
        return out


# ==== fake modules ============================================================================

def _pin_number(pin):
    return pin if isinstance(pin, int) else pin.id


def machine_module(board):
    """`machine` as the rp2 port has it, as far as drivers use it: Pin, PWM, freq."""
    gpio = board.gpio

    class Pin:
        IN, OUT, OPEN_DRAIN, ALT = 0, 1, 2, 3
        PULL_UP, PULL_DOWN = 1, 2

        def __init__(self, id, mode=-1, pull=-1, *, value=None, alt=-1):
            if not 0 <= id < NUM_GPIO:
                raise ValueError("invalid pin")
            self.id = id
            if mode != -1 or pull != -1 or value is not None:
                self.init(mode, pull, value=value, alt=alt)

        def init(self, mode=-1, pull=-1, *, value=None, alt=-1):
            pin = self.id
            source = ("cpu", "Pin(%d).init" % pin)
            if pull != -1:
                gpio.pull[pin] = {None: 0, 0: 0, Pin.PULL_UP: 1, Pin.PULL_DOWN: -1}[pull]
            if value is not None:
                gpio.sio_out[pin] = 1 if value else 0
            if mode == Pin.OUT:
                gpio.sio_oe[pin] = 1
                gpio.func[pin] = FUNC_SIO
            elif mode == Pin.IN:
                gpio.sio_oe[pin] = 0
                gpio.func[pin] = FUNC_SIO
            elif mode != -1:
                raise NotImplementedError("Pin mode %r" % mode)
            gpio.update(pin, board.time, source)

        def value(self, v=None):
            if v is None:
                return gpio.level[self.id]
            gpio.sio_out[self.id] = 1 if v else 0
            gpio.update(self.id, board.time, ("cpu", "Pin(%d).value" % self.id))
            return None

        __call__ = value

        def on(self):
            self.value(1)

        def off(self):
            self.value(0)

        high = on
        low = off

    class PWM:
        def __init__(self, dest, *, freq=None, duty_u16=None):
            self.pin = _pin_number(dest)
            gpio.func[self.pin] = FUNC_PWM
            gpio.update(self.pin, board.time, ("cpu", "PWM(%d)" % self.pin))
            if freq is not None:
                self.freq(freq)
            if duty_u16 is not None:
                self.duty_u16(duty_u16)

        def freq(self, value=None):
            if value is None:
                return gpio.pwm_freq[self.pin]
            if not 8 <= value <= board.sys_clk_hz // 2:
                raise ValueError("freq out of range")
            gpio.pwm_freq[self.pin] = value
            return None

        def duty_u16(self, value=None):
            if value is None:
                return gpio.pwm_duty[self.pin]
            if not 0 <= value <= 65535:
                raise ValueError("duty out of range")
            gpio.pwm_duty[self.pin] = value
            gpio.update(self.pin, board.time, ("cpu", "PWM(%d).duty_u16" % self.pin))
            return None

        def deinit(self):
            self.duty_u16(0)

    module = types.ModuleType("machine")
    module.Pin = Pin
    module.PWM = PWM
    module.freq = lambda *a: board.sys_clk_hz
    module.board = board
    return module


def rp2_module(board):
    """`rp2` as MicroPython has it: asm_pio, asm_pio_encode, PIO, StateMachine (see ports/rp2/rp2_pio.c)."""

    class PIO:
        IN_LOW, IN_HIGH, OUT_LOW, OUT_HIGH = 0, 1, 2, 3
        SHIFT_LEFT, SHIFT_RIGHT = 0, 1
        JOIN_NONE, JOIN_TX, JOIN_RX = 0, 1, 2
        IRQ_SM0, IRQ_SM1, IRQ_SM2, IRQ_SM3 = 0x100, 0x200, 0x400, 0x800

        def __init__(self, index):
            self.pio = board.pios[index]

        def add_program(self, prog):
            _load(self.pio, prog)

        def state_machine(self, index, *args, **kw):
            return StateMachine(self.pio.index * 4 + index, *args, **kw)

    def _load(pio, prog):
        key = id(prog[PROG_DATA])
        if key not in pio.loaded:
            pio.loaded[key] = pio.add_program(list(prog[PROG_DATA]))
        prog[PROG_OFFSET_PIO0 + pio.index] = pio.loaded[key]
        return pio.loaded[key]

    def _init_pins(pio, emu, prog_pins, base, source):
        """asm_pio_init_gpio: the program's *_init values and directions, then the pins to the PIO."""
        if prog_pins is None:
            count, dirs, vals = 0, 0, 0
        elif isinstance(prog_pins, int):
            count, dirs, vals = 1, prog_pins >> 1, prog_pins & 1
        else:
            count, dirs, vals = len(prog_pins), 0, 0
            for i, v in enumerate(prog_pins):
                dirs |= (v >> 1) << i
                vals |= (v & 1) << i
        if base is None:
            return None
        pin = _pin_number(base)
        when = board.time
        pio.write_pins(emu, "pins", pin, count, vals, when, source)
        pio.write_pins(emu, "pindirs", pin, count, dirs, when, source)
        for i in range(count):
            board.gpio.set_function(pin + i, FUNC_PIO0 + pio.index, source)
        return pin, count

    class StateMachine:
        _objects = {}

        def __new__(cls, id, *args, **kw):
            if not 0 <= id < 8:
                raise ValueError("invalid StateMachine")
            obj = cls._objects.get(id)
            if obj is None:
                obj = object.__new__(cls)
                obj.id = id
                obj.emu = board.pios[id // 4].sms[id % 4]
                obj.initial_pc = 0
                cls._objects[id] = obj
            return obj

        def __init__(self, id, *args, **kw):
            if args or kw:
                self.init(*args, **kw)

        def init(self, prog, freq=-1, *, in_base=None, out_base=None, set_base=None, jmp_pin=None,
                 sideset_base=None, in_shiftdir=None, out_shiftdir=None, push_thresh=None, pull_thresh=None):
            emu = self.emu
            pio = emu.pio
            offset = _load(pio, prog)
            self.initial_pc = offset
            if freq < 0:
                emu.clkdiv = (1, 0)
            else:
                div256 = (board.sys_clk_hz * 256 + freq // 2) // freq
                if not 256 <= div256 < 65536 * 256:
                    raise ValueError("freq out of range")
                emu.clkdiv = (div256 // 256, div256 % 256)
            actual = board.sys_clk_hz * 256 // (emu.clkdiv[0] * 256 + emu.clkdiv[1])
            if actual != board.freq_hz:
                raise NotImplementedError("the emulator runs every state machine at %d Hz, not %d" % (board.freq_hz, actual))
            emu.freq = actual
            # pio_sm_init: stop, clear the FIFOs, restart, jump to the program's start
            emu.enabled = False
            emu.clear_fifos()
            emu.restart()
            emu.pc = offset
            execctrl = prog[PROG_EXECCTRL] & M32
            execctrl += (offset << 12) + (offset << 7)
            emu.execctrl = execctrl
            shiftctrl = prog[PROG_SHIFTCTRL] & M32
            if in_shiftdir is not None:
                shiftctrl = (shiftctrl & ~(1 << 18)) | (in_shiftdir << 18)
            if out_shiftdir is not None:
                shiftctrl = (shiftctrl & ~(1 << 19)) | (out_shiftdir << 19)
            if push_thresh is not None:
                shiftctrl = (shiftctrl & ~(0x1F << 20)) | ((push_thresh & 0x1F) << 20)
            if pull_thresh is not None:
                shiftctrl = (shiftctrl & ~(0x1F << 25)) | ((pull_thresh & 0x1F) << 25)
            emu.shiftctrl = shiftctrl
            pinctrl = 0
            if in_base is not None:
                pinctrl |= _pin_number(in_base) << 15
            out_count = _count(prog[PROG_OUT_PINS])
            if out_base is not None:
                pinctrl |= _pin_number(out_base) | out_count << 20
            set_count = _count(prog[PROG_SET_PINS])
            if set_base is not None:
                pinctrl |= _pin_number(set_base) << 5 | set_count << 26
            if jmp_pin is not None:
                emu.execctrl = (emu.execctrl & ~(0x1F << 24)) | (_pin_number(jmp_pin) << 24)
            side_count = _count(prog[PROG_SIDESET_PINS])
            if sideset_base is not None:
                if emu.execctrl >> 30 & 1:
                    side_count += 1
                pinctrl |= _pin_number(sideset_base) << 10 | side_count << 29
            emu.pinctrl = pinctrl
            source = ("cpu", "StateMachine(%d).init" % self.id)
            _init_pins(pio, emu, prog[PROG_OUT_PINS], out_base, source)
            _init_pins(pio, emu, prog[PROG_SET_PINS], set_base, source)
            _init_pins(pio, emu, prog[PROG_SIDESET_PINS], sideset_base, source)
            board.cpu_calls.append((board.time, "init", self.id))

        def active(self, value=None):
            if value is not None:
                self.emu.enabled = bool(value)
                board.cpu_calls.append((board.time, "active", self.id, bool(value)))
            return self.emu.enabled

        def restart(self):
            self.emu.restart()
            self.emu.exec_instr(self.initial_pc)  # pio_encode_jmp(initial_pc) == the address itself
            board.cpu_calls.append((board.time, "restart", self.id))

        def exec(self, instr):
            if not isinstance(instr, int):
                base_count = (self.emu.pinctrl >> 29) & 7
                instr = asm_pio_encode(instr, base_count, self.emu.execctrl >> 30 & 1)
            self.emu.exec_instr(instr)

        def put(self, value, shift=0):
            if not isinstance(value, int):
                raise NotImplementedError("put() of a buffer")
            self.emu.put((value & M32) << shift)

        def get(self, buf=None, shift=0):
            if buf is not None:
                raise NotImplementedError("get() into a buffer")
            return self.emu.get() >> shift

        def tx_fifo(self):
            return len(self.emu.tx)

        def rx_fifo(self):
            return len(self.emu.rx)

    module = types.ModuleType("rp2")
    module.PIO = PIO
    module.StateMachine = StateMachine
    module.asm_pio = asm_pio
    module.asm_pio_encode = asm_pio_encode
    module.PIOASMError = PIOASMError
    module.board = board
    return module


def _count(prog_pins):
    if prog_pins is None:
        return 0
    if isinstance(prog_pins, int):
        return 1
    return len(prog_pins)


_CODE_CACHE = {}


def load_board_module(board, name, path):
    """Execute a board-only module (it imports `rp2` / `machine`) against this board's fakes.

    The module object is new each time and is not left in sys.modules, nor are the
    fakes: tests of different boards cannot see each other.
    """
    code = _CODE_CACHE.get(path)
    if code is None:
        with open(path) as f:
            code = compile(f.read(), path, "exec")
        _CODE_CACHE[path] = code
    fakes = {"rp2": rp2_module(board), "machine": machine_module(board)}
    saved = {key: sys.modules.get(key) for key in fakes}
    module = types.ModuleType(name)
    module.__file__ = path
    try:
        sys.modules.update(fakes)
        exec(code, module.__dict__)
    finally:
        for key, old in saved.items():
            if old is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = old
    return module
