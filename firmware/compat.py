"""The few names that differ between MicroPython and CPython, in one place."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


try:
    from time import ticks_ms as _unused  # noqa: F401  (MicroPython only)

    IS_MICROPYTHON = True
except ImportError:
    IS_MICROPYTHON = False
