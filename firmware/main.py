"""The board's entry point: /main.py on the Pico (host/deploy.py copies firmware/main.py there).

First, before any other import: every output pin a plain GPIO output at 0, then Ctrl-C off
(micropython.kbd_intr(-1)), so a 0x03 byte from the host from then on is data and cannot drop
the board into the REPL. boot.py turned Ctrl-C off too, but MicroPython switches it on again
before it runs this file, so it is on for this file's first few lines (the pins loop): a 0x03
there ends in the REPL with every output low (boot.py and the loop) and no watchdog, which is
safe. Then firmware/board_entry.py does the rest: the drivers, the
device, the watchdog, the tick loop, `finally` every output off, and maintenance mode (a
protocol request, or STOP held at power-up: no watchdog, Ctrl-C on, so mpremote can deploy).
Its docstring has the whole boot sequence.

Kept as source (host/build_firmware.py KEEP_AS_SOURCE): the board runs main.py by name.
"""

import machine
from firmware.drivers.rp2_pins import OUTPUT_PINS

for _pin in OUTPUT_PINS:
    try:
        machine.Pin(_pin, machine.Pin.OUT, value=0)
    except Exception:  # noqa: BLE001 - the other pins still go low
        pass

import micropython  # noqa: E402

micropython.kbd_intr(-1)

from firmware import board_entry  # noqa: E402

board_entry.main()
