"""PulseOutput on the RP2040: one PIO state machine per TENS channel (board only).

Why a PIO program and not the CPU: the state machine times every phase to the
microsecond whatever the CPU is doing, and it fires *only the pulses fed to it*.
Each pulse is one word in its TX FIFO; the program's first instruction is a
blocking `pull`, executed with both gates low. A tick that stops feeding (a
crash, a hang, a long garbage collection) therefore stops stimulation as soon as
the few queued pulses have run out: at most one window (10 ms) placed LEAD_US (5 ms)
ahead of the tick that fed it.

The program (listing and timing in docs/hardware.md):
- writes the two gates of a channel's H-bridge with one `set pins` instruction
  per change, with constant patterns 0b01 / 0b10 / 0b00: the pattern 0b11 (both
  bridge sides on: a short through the stage) is not in the program at all;
- keeps both gates low for at least 3 us between phase A and phase B and for at
  least 2 ms after phase B (the rest also caps the rate at ~480 pulses/s per
  channel, whatever is fed);
- takes the phase width from a 10-bit field, so no phase lasts longer than
  1025 us whatever word reaches the FIFO, and runs phase B for the very same
  count as phase A (kept in ISR): with one amplitude reference per channel the
  two phases carry equal charge by construction.

FIFO word (one per pulse; 30 bits, a small int on MicroPython, so feeding a
pulse allocates nothing), taken least significant bits first (SHIFT_RIGHT):
    bits  0..11  W  wait: phase A starts 8*W + 14 us after the word is pulled (<= 32.8 ms)
    bits 12..21  N  width: each phase lasts N + 2 us          (2..1025 us)
    bits 22..29  G  gap: phase B starts G + 3 us after A ends  (3..258 us)
    bits 30..31     never read
A word is pulled when the previous pulse's rest ends (or at once when the state
machine was idle), so the driver keeps, per channel, the time the state machine
will next pull, and turns each pulse's start into a wait relative to it.

Amplitude: each channel's current source has one reference, a 100 kHz PWM into a
two-pole RC filter. It cannot change within a pulse, so the driver sets it per
pulse batch and the change takes effect between pulses (the filter settles in
about a millisecond; the tick ramps at most 0.8 mA per 10 ms, so a queued pulse
runs at most one ramp step off). For the same reason both phases run at amp1,
so this stage cannot make an asymmetric pulse (amp2 < amp1, phase2 > phase1): its
symmetric stand-in would carry more r.m.s. current than the envelope validated. The
driver says so (`asymmetric = False`: the device refuses asymmetric settings) and, as a
second layer, refuses any pulse whose phases differ.

Clock: MicroPython derives each state machine's divider from machine.freq() when it is set
up (clk_sys / SM_FREQ, in 1/256 steps), and nothing rescales a running one: a clock changed
later would scale every phase, gap and rest (and each pulse's charge) by old / new. So the
driver reads the clock once when it starts, refuses to start at one that cannot give an
exact 1 MHz (see MIN_CLK_HZ), and compares it once per tick per channel (the first fire() of
a tick, never per pulse) and before every re-arm: a changed clock turns everything off and
raises, and the device's tick latches that as an internal fault, outputs off.

Not imported in the MicroPython VM tests or by the host: it needs `rp2` and
`machine`. tests/test_rp2_pulse.py runs it over an emulated PIO.
"""

import time

import machine
import rp2

from firmware import limits as L
from firmware.clock import ticks_add, ticks_diff
from firmware.compat import const
from firmware.drivers import rp2_pins as P

# The PIO assembler's names (pull, out, jmp, x, y_dec, ...) exist only while @rp2.asm_pio
# runs the program function; this gives them to the type checker (tests/test_static_rp2.py
# sets always_true = TYPE_CHECKING). The board never runs the import.
TYPE_CHECKING = const(False)
if TYPE_CHECKING:
    from rp2.asm_pio import *  # noqa: F401,F403

SM_FREQ = const(1000000)  # one PIO cycle = 1 us; 125 MHz / 125 is an exact, jitter-free divider
# The lowest system clock the driver starts at. The PIO alone needs only a whole number of MHz
# (an integer divider, >= 1), but this device is supervised over USB, and the RP2040's USB
# controller needs clk_sys >= clk_usb (48 MHz); the amplitude PWM also counts clk_sys: at
# 100 kHz it has clk_sys / 100 kHz steps (1250 at 125 MHz, 480 at 48 MHz: 0.17 mA each).
MIN_CLK_HZ = const(48000000)
SM_IDS = (0, 1)  # PIO0 state machines 0 and 1: one per channel, both share one copy of the program
TX_FIFO_DEPTH = const(8)  # TX joined with the unused RX FIFO: 8 pulses per channel at most

HW_MAX_AMP_UA = const(80000)  # the reference's full scale (duty 65535) is 80 mA
DUTY_FULL = const(65535)


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


# duty = amp * DUTY_FULL // HW_MAX_AMP_UA, exactly, as amp * DUTY_NUM // DUTY_DEN: the fraction in
# lowest terms (13107 / 16000) keeps the product a small int on the board (|x| < 2^30): the plain
# amp * 65535 is a long int, allocated on every pulse, from 16385 uA up. Derived, not written out,
# so a changed full scale stays exact; a full scale whose reduced product leaves the small ints
# fails here, at import, not silently in the pulse path.
DUTY_NUM = DUTY_FULL // _gcd(DUTY_FULL, HW_MAX_AMP_UA)
DUTY_DEN = HW_MAX_AMP_UA // _gcd(DUTY_FULL, HW_MAX_AMP_UA)
if HW_MAX_AMP_UA * DUTY_NUM > 0x3FFFFFFF:
    raise ValueError("amp * DUTY_NUM leaves the small ints: change HW_MAX_AMP_UA or the duty formula")
HW_MAX_PHASE_US = const(1000)  # the driver's clamp; the program's own is 1025 us
PWM_FREQ = const(100000)

# Word fields and the program's fixed cycle counts (one cycle = 1 us)
WAIT_MAX = const(4095)  # 12 bits
WIDTH_SHIFT = const(12)
GAP_SHIFT = const(22)
START_US = const(14)  # pull -> phase A rises, with W = 0
WAIT_UNIT_US = const(8)
WIDTH_EXTRA_US = const(2)  # a phase lasts N + 2 us
GAP_EXTRA_US = const(3)  # the interphase gap lasts G + 3 us: also the dead time A -> B
REST_US = const(2053)  # B falls -> next pull (then START_US more before the next A)
PIO_MAX_PHASE_US = const(1025)  # 1023 + 2: the clamp the program applies to any word
PIO_MAX_GAP_US = const(258)  # 255 + 3
MIN_PHASE_US = const(2)

# Tick windows: fire() places a pulse `start_us` into "the next tick window"
TICK_US = L.TICK_MS * 1000
HALF_TICK_US = L.TICK_MS * 500
LEAD_US = const(5000)  # a window starts this long after the fire() that opened it (tick jitter, GC)
BATCH_GAP_US = const(1500)  # calls further apart than this are different ticks
MIN_SPACING_US = 1000000 // L.RATE_MAX_HZ  # no setting spaces two pulses closer (4 ms, 250 Hz)
STALE_MS = const(2500)  # a channel's timeline after this long without a call starts afresh

PULL_NOBLOCK = const(0x8080)  # `pull(noblock)`, encoded: drains one FIFO word per exec


@rp2.asm_pio(
    set_init=[rp2.PIO.OUT_LOW, rp2.PIO.OUT_LOW],
    out_shiftdir=rp2.PIO.SHIFT_RIGHT,
    autopull=False,
    fifo_join=rp2.PIO.JOIN_TX,
)
def pulse_program():
    # Literals only: asm_pio runs this with the module's globals swapped for the assembler's.
    wrap_target()
    pull(block)  # 0: one word per pulse; stalls here, gates low, until the tick feeds one
    out(y, 12)  # 1: W
    label("wait")
    jmp(y_dec, "wait")[7]  # 2: 8 * (W + 1) cycles
    out(x, 10)  # 3: N, 10 bits: the width clamp
    mov(isr, x)  # 4: keep N for phase B
    out(y, 8)  # 5: G
    set(pins, 0b01)  # 6: phase A (side A); both gates in one write
    label("phase_a")
    jmp(x_dec, "phase_a")  # 7
    set(pins, 0b00)  # 8: both off
    label("gap")
    jmp(y_dec, "gap")  # 9
    mov(x, isr)  # 10: phase B counts what phase A counted
    set(pins, 0b10)  # 11: phase B (side B)
    label("phase_b")
    jmp(x_dec, "phase_b")  # 12
    set(pins, 0b00)  # 13: both off
    set(x, 1)  # 14: rest: 2 x (32 x 32 + 2) cycles
    label("rest")
    set(y, 31)  # 15
    label("rest_inner")
    jmp(y_dec, "rest_inner")[31]  # 16
    jmp(x_dec, "rest")  # 17
    wrap()


def pulse_word(wait, width_us, gap_us):
    """The FIFO word for one pulse; arguments already within the fields' ranges."""
    return wait | (width_us - WIDTH_EXTRA_US) << WIDTH_SHIFT | (gap_us - GAP_EXTRA_US) << GAP_SHIFT


def pulse_cycles(wait, width_us, gap_us):
    """Cycles from the pull of a word to the pull of the next one."""
    return START_US + WAIT_UNIT_US * wait + 2 * width_us + gap_us + REST_US


class Rp2PulseOutput:
    """The PulseOutput interface (firmware/drivers/interfaces.py) over PIO state machines."""

    def __init__(self, ticks_us=None, ticks_ms=None, sm_ids=SM_IDS):
        # The clock every PIO time is derived from: checked before anything is claimed, kept
        # for the per-tick comparison (a small int on the board: comparing allocates nothing).
        clk_hz = machine.freq()
        if clk_hz < MIN_CLK_HZ:
            rule = "below %d Hz (USB needs clk_sys >= 48 MHz)" % MIN_CLK_HZ
        elif clk_hz % SM_FREQ:
            rule = "not a whole number of MHz (the PIO divider would get a fraction)"
        else:
            rule = None
        if rule is not None:
            raise ValueError("pulse output refused: machine.freq() is %d Hz, %s; leave machine.freq() "
                             "at its default (125000000 on the Pico) or set a whole number of MHz from 48 MHz"
                             % (clk_hz, rule))
        self._clk_hz = clk_hz
        self._ticks_us = ticks_us if ticks_us is not None else time.ticks_us
        self._ticks_ms = ticks_ms if ticks_ms is not None else time.ticks_ms
        n = len(P.GATE_BASES)
        self.channels = n
        self.hw_max_amp_ua = HW_MAX_AMP_UA
        self.hw_max_phase_us = HW_MAX_PHASE_US
        self.asymmetric = False  # one amplitude reference per channel: phase B mirrors phase A
        self.refused = [0] * n  # fire() calls refused, per channel (FIFO full, or slipped)
        self.slipped = [0] * n  # of those, the pulses whose place in time could not be kept
        self.off_errors = 0  # steps of off() that raised (each step is tried regardless)
        # OUTPUT_ENABLE first, low: nothing can reach the electrodes while the rest is set up.
        self._enable = machine.Pin(P.OUTPUT_ENABLE, machine.Pin.OUT, value=0)
        self._gates = []
        self._pwms = []
        self._sms = []
        for ch in range(n):
            base = P.GATE_BASES[ch]
            self._gates.append((machine.Pin(base, machine.Pin.OUT, value=0), machine.Pin(base + 1, machine.Pin.OUT, value=0)))
            pwm = machine.PWM(machine.Pin(P.AMP_PWMS[ch]))
            pwm.freq(PWM_FREQ)
            pwm.duty_u16(0)
            self._pwms.append(pwm)
            # Loads the program (an error here surfaces at boot, not in the first pulse).
            self._sms.append(rp2.StateMachine(sm_ids[ch], pulse_program, freq=SM_FREQ, set_base=self._gates[ch][0]))
        self._parked = [True] * n
        self._duty = [0] * n
        # Per channel timeline, in ticks_us (valid while _timeline[ch], for STALE_MS):
        self._timeline = [False] * n
        self._window = [0] * n  # start of the window the last call belonged to
        self._last_us = [0] * n  # when fire() was last called
        self._last_ms = [0] * n  # (the same in ticks_ms: keeps every us difference unambiguous)
        self._last_rel = [0] * n  # and with which start_us
        self._busy = [False] * n  # a pulse was queued on this timeline
        self._free = [0] * n  # when the state machine pulls its next word
        self._last_target = [0] * n  # where the last queued pulse was placed
        self.off()

    # ---- feeding ---------------------------------------------------------------------------

    def fire(self, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us):
        """Queue one pulse; False, at once (never a wait), when the FIFO is full or the
        pulse cannot start where its window puts it (see _window_for).

        Phase B is phase A's mirror: a pulse with amp2/phase2 unlike amp1/phase1 is refused.
        """
        if ch < 0 or ch >= self.channels:
            return False
        if amp2_ua != amp1_ua or phase2_us != phase1_us:
            self.refused[ch] += 1
            return False  # an asymmetric pulse: this stage would deliver it symmetric (see module doc)
        sm = self._sms[ch]
        if sm.tx_fifo() >= TX_FIFO_DEPTH:  # put() would block the tick until the PIO pulled a word
            self.refused[ch] += 1
            return False
        # The second layer of clamps (the envelope is the first, the program's fields the third).
        amp = amp1_ua
        if amp > HW_MAX_AMP_UA:
            amp = HW_MAX_AMP_UA
        if amp < 0:
            amp = 0
        width = phase1_us
        if width > HW_MAX_PHASE_US:
            width = HW_MAX_PHASE_US
        if width < MIN_PHASE_US:
            width = MIN_PHASE_US
        gap = gap_us
        if gap > PIO_MAX_GAP_US:
            gap = PIO_MAX_GAP_US
        if gap < GAP_EXTRA_US:
            gap = GAP_EXTRA_US
        if start_us < 0:
            start_us = 0
        now = self._ticks_us()
        window = self._window_for(ch, now, self._ticks_ms(), start_us)
        target = ticks_add(window, start_us)
        pull_at = now  # idle: the state machine pulls the word as soon as it is put
        if self._busy[ch]:
            if ticks_diff(self._free[ch], now) > 0:
                pull_at = self._free[ch]  # busy: it pulls the word when the last pulse's rest ends
            if ticks_diff(target, self._last_target[ch]) < MIN_SPACING_US:
                return self._slip(ch)  # on top of the last pulse: this window overlaps its window
        due = ticks_diff(target, pull_at) - START_US
        if due < -(WAIT_UNIT_US // 2):
            return self._slip(ch)  # too late to start where it belongs
        wait = 0
        if due > 0:
            wait = (due + WAIT_UNIT_US // 2) // WAIT_UNIT_US
            if wait > WAIT_MAX:
                return self._slip(ch)  # further ahead than one word can wait: not this window's pulse
        duty = amp * DUTY_NUM // DUTY_DEN  # == amp * 65535 // HW_MAX_AMP_UA, in small ints
        word = pulse_word(wait, width, gap)  # before the rail is enabled: a bad argument raises with it off
        try:
            if self._parked[ch]:
                self._arm(ch)
            if duty != self._duty[ch]:
                self._pwms[ch].duty_u16(duty)
                self._duty[ch] = duty
            sm.put(word)
        except Exception:
            self.off()  # never leave the rail enabled and the reference set for a pulse not queued
            raise
        self._busy[ch] = True
        self._free[ch] = ticks_add(pull_at, pulse_cycles(wait, width, gap))
        self._last_target[ch] = target
        return True

    def _slip(self, ch):
        """Refuse a pulse whose place in time cannot be kept: pulses are dropped, never
        squeezed together (the caller takes the refusal as an interruption)."""
        self.slipped[ch] += 1
        self.refused[ch] += 1
        return False

    def _window_for(self, ch, now, now_ms, start_us):
        """Start (ticks_us) of the window a fire() call at `now` belongs to.

        The calls of one tick come back to back (nothing between them allocates, so no
        garbage collection runs there) with rising start_us; a call BATCH_GAP_US after
        the last, or one that does not rise, is the next tick. Its window is the last
        one moved on by the whole ticks elapsed, rounded: pulse trains keep their
        spacing from window to window, and a tick up to half a tick late (LEAD_US)
        changes nothing. A later tick is taken for the next one (its pulses come a
        window late, never early); the tick after it, or a tick catching up back to
        back, then gets a window overlapping the last one: whatever would crowd the
        pulses already queued is refused (see _slip). A new window (a tick's first call)
        first compares machine.freq() with the clock the driver started at (_check_clock).
        """
        if self._timeline[ch] and ticks_diff(now_ms, self._last_ms[ch]) < STALE_MS:
            window = self._window[ch]
            if ticks_diff(now, self._last_us[ch]) >= BATCH_GAP_US or start_us <= self._last_rel[ch]:
                self._check_clock()  # a new tick: the clock, once per tick and channel
                ticks = (ticks_diff(now, window) + LEAD_US + HALF_TICK_US) // TICK_US
                if ticks >= 1:
                    window = ticks_add(window, ticks * TICK_US)
                else:
                    window = ticks_add(now, LEAD_US)
        else:
            self._check_clock()
            window = ticks_add(now, LEAD_US)
            self._busy[ch] = False
        self._timeline[ch] = True
        self._window[ch] = window
        self._last_us[ch] = now
        self._last_ms[ch] = now_ms
        self._last_rel[ch] = start_us
        return window

    def _arm(self, ch):
        """Hand the gates back to a freshly initialised state machine, then enable the rail.

        init() stops the machine, empties its FIFOs, points it at the program's
        first instruction and drives both gates low from the PIO (set_init). It also recomputes
        the divider from the clock now: a changed clock is refused first, not silently taken.
        """
        self._check_clock()
        sm = self._sms[ch]
        sm.init(pulse_program, freq=SM_FREQ, set_base=self._gates[ch][0])
        sm.active(1)
        self._parked[ch] = False
        self._enable.value(1)

    def _check_clock(self):
        """machine.freq() must still be the clock the driver started with; if not, everything off,
        then raise (the tick turns that into an internal fault). Short: the fault text keeps ~85 characters."""
        clk_hz = machine.freq()
        if clk_hz == self._clk_hz:
            return
        self.off()
        raise RuntimeError("machine.freq() %d Hz, was %d: PIO timing would scale by the ratio" % (clk_hz, self._clk_hz))

    # ---- stopping --------------------------------------------------------------------------

    def off(self):
        """Everything off now. Idempotent, cheap, and it never raises: every step is
        tried even if another fails (it runs from exception handlers)."""
        try:
            self._enable.value(0)  # the rail first: no current can flow, whatever the gates do
        except Exception:
            self.off_errors += 1
        for ch in range(self.channels):
            # The gates back to plain GPIO outputs, low: a stopped state machine
            # would otherwise keep driving whatever it last wrote (mid-phase: high).
            for pin in self._gates[ch]:
                try:
                    pin.init(machine.Pin.OUT, value=0)
                except Exception:
                    self.off_errors += 1
            sm = self._sms[ch]
            try:
                sm.active(0)
            except Exception:
                self.off_errors += 1
            try:
                sm.restart()  # back to the first instruction, shift counters and delay cleared
                for _ in range(TX_FIFO_DEPTH):  # drop queued pulses (bounded: never a wait)
                    if not sm.tx_fifo():
                        break
                    sm.exec(PULL_NOBLOCK)
            except Exception:
                self.off_errors += 1
            try:
                self._pwms[ch].duty_u16(0)
            except Exception:
                self.off_errors += 1
            self._duty[ch] = 0
            self._parked[ch] = True
            self._timeline[ch] = False
            self._busy[ch] = False
        try:
            self._enable.value(0)  # again, in case a step above raised before the first took
        except Exception:
            self.off_errors += 1
