"""The three buttons, debounced (interfaces.py: Buttons). Board only.

    buttons = Rp2Buttons()              # UP, DOWN, STOP: inputs with pull-ups, pressed reads 0
    mask = buttons.pressed()            # once per tick: BUTTON_UP | BUTTON_DOWN | BUTTON_STOP bits
    buttons.raw()                       # undebounced, e.g. STOP held at power-up (maintenance mode)

Debounce by integration over polls: a button's reported state changes only after the new
level was read on DEBOUNCE_POLLS consecutive calls (3 polls of the 10 ms tick = 30 ms; contact
bounce lasts a few ms). A bounce shorter than that resets the count and is never reported; a
held button is reported from the third poll on and for as long as it is held. Each button is
debounced on its own, so a bouncing UP does not delay STOP. pressed() reads three pins and
does a few integer operations: no waiting, no allocation.
"""

from machine import Pin

from firmware.compat import const
from firmware.drivers import rp2_pins

BUTTON_UP = const(1)
BUTTON_DOWN = const(2)
BUTTON_STOP = const(4)
DEBOUNCE_POLLS = const(3)
DEBOUNCE_POLLS_MAX = const(100)  # one second of ticks


class Rp2Buttons:
    def __init__(self, pins: tuple = (rp2_pins.BUTTON_UP, rp2_pins.BUTTON_DOWN, rp2_pins.BUTTON_STOP),
                 polls: int = DEBOUNCE_POLLS):
        # bit i of the mask is pins[i]: with the default order BUTTON_UP, BUTTON_DOWN, BUTTON_STOP
        self._pins = [Pin(pin, Pin.IN, Pin.PULL_UP) for pin in pins]
        if polls < 1:
            polls = 1
        elif polls > DEBOUNCE_POLLS_MAX:
            polls = DEBOUNCE_POLLS_MAX
        self.polls = polls
        self._count = bytearray(len(pins))  # consecutive polls that differed from the reported state
        self._state = 0  # the debounced mask

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
        count = self._count
        bit = 1
        for i in range(len(count)):
            if changed & bit:
                n = count[i] + 1
                if n >= self.polls:
                    self._state ^= bit
                    n = 0
                count[i] = n
            else:
                count[i] = 0
            bit <<= 1
        return self._state
