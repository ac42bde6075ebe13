"""Runs first at every boot, before main.py (and alone at a soft reset from the raw REPL).

Ctrl-C off at once (micropython.kbd_intr(-1)), so a 0x03 byte from the host cannot stop this
file before the pins are low. It lasts only while this file runs: MicroPython switches Ctrl-C
on again before it runs main.py (pyexec does so for every file it runs), so main.py turns it
off again itself, and firmware/board_entry.py turns it on only in maintenance mode. Every
output pin a plain GPIO output at 0, as main.py does again: the earlier the better, whatever
ran before the reset, and it covers main.py's first milliseconds, when a 0x03 could still
drop main.py into the REPL. Nothing else: the REPL, mpremote and a soft reset all run this
file too.

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
