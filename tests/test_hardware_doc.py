"""docs/hardware.md stays in step with the code it describes.

- The pin map table lists every pin constant of firmware/drivers/rp2_pins.py with its GPIO
  number, and no GPIO the code does not name (the second gate of each channel is written
  `CHn_GATE_BASE + 1`, as the code derives it).
- The PIO listing's instruction words are the ones the driver's program assembles to.
"""

import re
from pathlib import Path

from firmware.drivers import rp2_pins
from tests import pio_emulator as emu

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "hardware.md"
DRIVER = ROOT / "firmware" / "drivers" / "rp2_pulse.py"


def pin_constants():
    """{name: gpio} for every single-pin constant, plus the derived second gates."""
    pins = {}
    for name in dir(rp2_pins):
        value = getattr(rp2_pins, name)
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool):
            pins[name] = value
    for base_name in ("CH0_GATE_BASE", "CH1_GATE_BASE"):
        pins[base_name + " + 1"] = pins[base_name] + 1
    return pins


def table_rows():
    """[(gpio, constant)] of the doc's pin map table."""
    text = DOC.read_text()
    section = text.split("## Pin map", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*GP(\d+)\s*\|\s*`([^`]+)`\s*\|", line)
        if m:
            rows.append((int(m.group(1)), m.group(2)))
    return rows


def test_every_pin_constant_is_in_the_table_with_its_gpio():
    rows = table_rows()
    by_name = {name: gpio for gpio, name in rows}
    for name, gpio in pin_constants().items():
        assert name in by_name, "%s (GP%d) is missing from the pin map in docs/hardware.md" % (name, gpio)
        assert by_name[name] == gpio, "docs/hardware.md says %s is GP%d, rp2_pins.py says GP%d" % (
            name, by_name[name], gpio)


def test_the_table_names_no_pin_the_code_does_not():
    pins = pin_constants()
    rows = table_rows()
    assert len(rows) == len(set(gpio for gpio, _ in rows)), "a GPIO appears twice in the pin map"
    for gpio, name in rows:
        assert pins.get(name) == gpio, "docs/hardware.md lists GP%d as %s: not in rp2_pins.py" % (gpio, name)


def test_the_pio_listing_is_the_assembled_program():
    board = emu.Board()
    module = emu.load_board_module(board, "rp2_pulse", str(DRIVER))
    words = list(module.pulse_program[emu.PROG_DATA])
    text = DOC.read_text()
    listing = text.split("### Listing", 1)[1].split("```", 2)[1]
    doc_words = []
    for line in listing.splitlines():
        m = re.match(r"\s*(\d+)\s+0x([0-9a-f]{4})\s+(.*?)\s*(;.*)?$", line)
        if m:
            index, word, source = int(m.group(1)), int(m.group(2), 16), m.group(3)
            assert index == len(doc_words)
            assert source == emu.disassemble(word), "line %d: %r is not %r" % (index, source, emu.disassemble(word))
            doc_words.append(word)
    assert doc_words == words
