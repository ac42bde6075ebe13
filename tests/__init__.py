"""pulsewarm test suite (a package, so `tests.fw.*` imports the same way under pytest and MicroPython)."""
