"""The three buttons, debounced (interfaces.py: Buttons). Board only.

    buttons = Rp2Buttons(clock=clock)   # UP, DOWN, STOP: inputs with pull-ups, pressed reads 0
    mask = buttons.pressed()            # once per tick: BUTTON_UP | BUTTON_DOWN | BUTTON_STOP bits
    buttons.take_stop_press()           # True once after STOP went down (latched by its edge)
    buttons.raw()                       # undebounced, e.g. STOP held at power-up (maintenance mode)

Debounce by integration over polls: a button's reported state changes only after the new
level was read on DEBOUNCE_POLLS consecutive calls that span DEBOUNCE_MS on the clock (3 polls
of the 10 ms tick; contact bounce lasts a few ms; the time, because a late loop catches up
with ticks back to back, and three reads within microseconds are no debounce). A bounce
shorter than that resets the count and is never reported; a held button is reported from the
third poll on and for as long as it is held. Each button is debounced on its own, so a
bouncing UP does not delay STOP. pressed() reads three pins and does a few integer
operations: no waiting, no allocation.

STOP is also latched by its falling edge (a pin interrupt): a press shorter than the
debounce, one that falls inside a slow tick, or a worn contact that never reads down three
polls in a row still stops. A glitch may stop a session too: the safe direction.
"""

from machine import Pin

from firmware.clock import ticks_diff
from firmware.compat import const
from firmware.drivers import rp2_pins

BUTTON_UP = const(1)
BUTTON_DOWN = const(2)
BUTTON_STOP = const(4)
DEBOUNCE_POLLS = const(3)
DEBOUNCE_POLLS_MAX = const(100)  # one second of ticks
DEBOUNCE_MS = const(20)  # from the first to the last of the 3 polls at the 10 ms tick
STOP_INDEX = const(2)  # STOP's place in the default pins (bit BUTTON_STOP)


class Rp2Buttons:
    def __init__(self, pins: tuple = (rp2_pins.BUTTON_UP, rp2_pins.BUTTON_DOWN, rp2_pins.BUTTON_STOP),
                 polls: int = DEBOUNCE_POLLS, clock=None, stop_index: int = STOP_INDEX):
        # bit i of the mask is pins[i]: with the default order BUTTON_UP, BUTTON_DOWN, BUTTON_STOP
        self._pins = [Pin(pin, Pin.IN, Pin.PULL_UP) for pin in pins]
        if polls < 1:
            polls = 1
        elif polls > DEBOUNCE_POLLS_MAX:
            polls = DEBOUNCE_POLLS_MAX
        self.polls = polls
        self._clock = clock  # ticks_ms(); None: polls alone (no time span asked)
        self._count = bytearray(len(pins))  # consecutive polls that differed from the reported state
        self._since = [0] * len(pins)  # tick of the first of those polls
        self._state = 0  # the debounced mask
        self._stop_pressed = False
        if 0 <= stop_index < len(pins):
            self._pins[stop_index].irq(handler=self._on_stop_edge, trigger=Pin.IRQ_FALLING)

    def _on_stop_edge(self, pin):
        self._stop_pressed = True  # nothing else in an interrupt: no allocation, nothing to fail

    def take_stop_press(self) -> bool:
        """True once after STOP went down since the last call, however briefly."""
        pressed = self._stop_pressed
        self._stop_pressed = False
        return pressed

    def raw(self) -> int:
        """The mask as the pins read now (active low), not debounced."""
        mask = 0
        bit = 1
        for pin in self._pins:
            if pin.value() == 0:
                mask |= bit
            bit <<= 1
        return mask

    def pressed(self) -> int:
        """Debounced mask of the buttons held now. Call once per tick."""
        changed = self.raw() ^ self._state
        clock = self._clock
        now = clock.ticks_ms() if clock is not None else 0
        count = self._count
        since = self._since
        bit = 1
        for i in range(len(count)):
            if changed & bit:
                n = count[i] + 1
                if n == 1:
                    since[i] = now
                if n >= self.polls and (clock is None or ticks_diff(now, since[i]) >= DEBOUNCE_MS):
                    self._state ^= bit
                    n = 0
                elif n > self.polls:
                    n = self.polls  # reads with no time between them: wait for the time, not more reads
                count[i] = n
            else:
                count[i] = 0
            bit <<= 1
        return self._state
