"""The RP2040's watchdog (interfaces.py: Watchdog). Board only.

    wd = Rp2Watchdog()          # starts it: 1000 ms; it cannot be stopped or changed again
    wd.feed()                   # once per tick, after the tick's checks ran

WHY ABOUT 1 S. The device ticks every 10 ms and feeds once per tick, so 1 s is 100 missed
ticks: no healthy tick comes anywhere near it (a flash write of a session-log record takes
tens of ms), while a hang is still stopped well inside every hazard's time scale. Anything
longer than a few hundred ms (the boot scan of the program store and the session log reads
up to a few hundred KB of flash) must run before the watchdog starts or feed it between
chunks. Stimulation stops by itself within one
tick anyway (the PIO only fires pulses it is fed) and the heater within its 50 ms lease
(rp2_heater); the watchdog is the backstop for the cases those cannot see: a hang in C code
with the soft timer unable to run, a hard fault, a deadlock. A reset RP2040 leaves every pad
an input and the board's pull-downs turn every output stage off. Shorter would buy nothing
and risk resets of a healthy device during flash writes; the RP2040's maximum (8388 ms: a
24-bit counter that the RP2040-E1 erratum decrements twice per microsecond) would leave a hung
device unattended for 8 s.

The timeout is clamped to 1..WDT_MAX_MS (MicroPython raises ValueError beyond it). A build in
maintenance mode (main.py) does not construct this at all: once started the watchdog cannot be
stopped, and mpremote's deploy would be reset half-way.
"""

from machine import WDT

from firmware.compat import const

DEFAULT_TIMEOUT_MS = const(1000)
WDT_MAX_MS = const(8388)  # RP2040: 0x7fffff µs


class Rp2Watchdog:
    def __init__(self, timeout_ms: int = DEFAULT_TIMEOUT_MS):
        if timeout_ms < 1:
            timeout_ms = 1
        elif timeout_ms > WDT_MAX_MS:
            timeout_ms = WDT_MAX_MS
        self.timeout_ms = timeout_ms
        self._wdt = WDT(timeout=timeout_ms)

    def feed(self) -> None:
        self._wdt.feed()
