"""docs/hardware.md stays in step with the code it describes.

- The pin map table lists every pin constant of firmware/drivers/rp2_pins.py with its GPIO
  number, and no GPIO the code does not name (the second gate of each channel is written
  `CHn_GATE_BASE + 1`, as the code derives it).
- The PIO listing's instruction words are the ones the driver's program assembles to.
- What the doc says about the outputs matches the code: which pins `OUTPUT_PINS` holds, which
  outputs have an external pull-down (the table, the prose and the backstop table agree), the
  indicator's rule (limits.py), the supported board, the level shifters, the flashing steps.
"""

import re
from pathlib import Path

from firmware import limits
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
    return [(gpio, name) for gpio, name, _ in table_cells()]


def table_cells():
    """[(gpio, constant, [cells])] of the doc's pin map table."""
    text = DOC.read_text()
    section = text.split("## Pin map", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*GP(\d+)\s*\|\s*`([^`]+)`\s*\|", line)
        if m:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.append((int(m.group(1)), m.group(2), cells))
    return rows


def gpio_list(text):
    """{gpio} of a list such as 'GP2-GP10, GP14, GP15'."""
    found = set()
    for first, last in re.findall(r"GP(\d+)(?:-GP(\d+))?", text):
        found.update(range(int(first), int(last or first) + 1))
    return found


STAGE_PINS = set(range(2, 11))  # gates, references, rail switch, heater switches: the hazards


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


def test_the_doc_says_which_pins_output_pins_holds():
    text = DOC.read_text()
    m = re.search(r"`OUTPUT_PINS` lists every output that leaves the Pico \(([^)]*)\)", text)
    assert m, "docs/hardware.md must say which pins OUTPUT_PINS holds"
    assert gpio_list(m.group(1)) == set(rp2_pins.OUTPUT_PINS)
    assert rp2_pins.LED_STATUS not in rp2_pins.OUTPUT_PINS  # and the doc says why GP25 is not


def test_pull_downs_agree_between_the_pin_table_the_prose_and_the_backstops():
    text = DOC.read_text()
    outputs = set(rp2_pins.OUTPUT_PINS) | {rp2_pins.LED_STATUS}
    with_pull_down = set()
    for gpio, name, cells in table_cells():
        undriven = cells[-1]
        if gpio not in outputs:
            continue
        if "100 kΩ pull-down" in undriven:
            with_pull_down.add(gpio)
        else:
            assert "no external pull-down" in undriven, (gpio, name, undriven)
    assert with_pull_down == STAGE_PINS
    backstop = [line for line in text.splitlines() if line.startswith("| Active-high enables")]
    assert len(backstop) == 1
    assert gpio_list(backstop[0].split("|")[1]) & outputs == STAGE_PINS
    prose = text.split("## Pin map", 1)[1].split("| GPIO |", 1)[0]
    assert "Every output is active-high and has" not in prose  # the old, untrue claim
    m = re.search(r"Every output that can switch a\s+stage on \((GP\d+-GP\d+)", prose)
    assert m and gpio_list(m.group(1)) == STAGE_PINS
    m = re.search(r"The indicator outputs \(([^)]*)\) have no external pull-down", prose)
    assert m and gpio_list(m.group(1)) == outputs - STAGE_PINS


def test_the_output_indicator_rule_is_the_codes_everywhere_the_doc_states_it():
    assert (limits.INDICATOR_RMS_UA, limits.INDICATOR_ENERGY_UJ, limits.INDICATOR_LOAD_OHM) == (10000, 10000, 1000)
    lines = DOC.read_text().splitlines()
    stated = [i for i, line in enumerate(lines) if "10 mA r.m.s." in line]
    assert len(stated) >= 4
    for i in stated:
        near = " ".join(lines[i:i + 2])
        assert "10 mJ per pulse into 1 kΩ" in near, lines[i]


def test_the_supported_board_is_the_plain_pico_with_a_warning_about_the_w():
    head = DOC.read_text().split("## Driver interfaces", 1)[0]
    assert "plain Raspberry Pi Pico (RP2040" in head
    assert "Pico W" in head and "GP25" in head and "chip select" in head
    assert "Pico class board" not in head


def test_high_side_switches_are_drawn_with_level_shifters():
    text = DOC.read_text()
    assert "GP10 ─► high-side P-MOSFET" not in text  # a GPIO straight on a P-MOSFET gate
    shifting = text.split("### Gate drive and level shifting", 1)[1].split("\n### ", 1)[0]
    for needle in ("`HEATER_SUPPLY_ENABLE` GP10", "`OUTPUT_ENABLE` GP8", "Q1 and Q3", "bootstrap", "pull-up"):
        assert needle in shifting, needle


def test_bring_up_asks_only_for_currents_the_rail_can_drive():
    text = DOC.read_text()
    step = text.split("5. **Current.**", 1)[1].split("\n6. ", 1)[0]
    assert "80 mA into each load" not in text
    assert "2 kΩ" in step and "compliance" in step and "160 V" in step and "delivered_ua" in step


def test_the_flashing_steps_cover_micropython_the_layout_and_the_rescue():
    section = DOC.read_text().split("## Boot, maintenance mode and deploying", 1)[1].split("\n## ", 1)[0]
    for needle in ("BOOTSEL", "RPI_PICO", ".uf2", "/main.py", "/boot.py", "/firmware/", "mpremote connect",
                   "blank board", "hold STOP while plugging it in", "flash_nuke.uf2"):
        assert needle in section, needle
    flat = " ".join(section.split())
    assert "before anything else is imported" not in flat  # Ctrl-C: boot.py's setting does not carry over
    assert "switches Ctrl-C on again before it runs each file" in flat
    makefile = (ROOT / "Makefile").read_text()
    stubs = re.search(r"micropython-rp2-rpi-pico-stubs==(\d+\.\d+)", makefile).group(1)
    assert ("rp2 stubs of %s" % stubs) in flat, stubs  # the version named is the one checked against


def test_the_pio_clock_assumption_is_stated():
    pio = DOC.read_text().split("## The PIO pulse program", 1)[1].split("### FIFO word", 1)[0]
    assert "125 MHz / 125" not in pio
    assert "machine.freq()" in pio and "assumes the default clock" in pio


def test_the_readme_board_section_names_the_board_the_flashing_and_the_rescue():
    readme = (ROOT / "README.md").read_text()
    section = " ".join(readme.split("## On a board", 1)[1].split("\n## ", 1)[0].split())
    for needle in ("plain Raspberry Pi Pico (RP2040)", "Pico W", "BOOTSEL", "RPI_PICO", "tensctl deploy",
                   "blank board", "/main.py", "/boot.py", "/firmware/", "hold STOP while plugging it in"):
        assert needle in section, needle
