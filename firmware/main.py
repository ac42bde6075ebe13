"""The board's entry point: /main.py on the Pico (host/deploy.py copies firmware/main.py there).

First, before any other import: every output pin a plain GPIO output at 0, then Ctrl-C off
(micropython.kbd_intr(-1)), so a 0x03 byte from the host while the board boots is data and
cannot drop it into the REPL. Then firmware/board_entry.py does the rest: the drivers, the
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
