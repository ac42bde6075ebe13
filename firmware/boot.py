"""Runs first at every boot, before main.py (and alone at a soft reset from the raw REPL).

Ctrl-C off at once (micropython.kbd_intr(-1)): a 0x03 byte from the host while the board boots
is data and cannot stop main.py half-way into the REPL; firmware/board_entry.py turns Ctrl-C
on again only in maintenance mode. Every output pin a plain GPIO output at 0, as main.py does
again: the earlier the better, whatever ran before the reset. Nothing else: the REPL, mpremote
and a soft reset all run this file too.

Kept as source (host/build_firmware.py KEEP_AS_SOURCE): the board runs boot.py by name.
"""

import micropython

micropython.kbd_intr(-1)

import machine  # noqa: E402
from firmware.drivers.rp2_pins import OUTPUT_PINS  # noqa: E402

for _pin in OUTPUT_PINS:
    try:
        machine.Pin(_pin, machine.Pin.OUT, value=0)
    except Exception:  # noqa: BLE001 - the other pins still go low
        pass
