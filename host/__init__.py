"""Host tools for pulsewarm: the serial client library, `tensctl` and the demo.

Runs on CPython only. It imports `firmware.protocols` itself, so the host and
the device frame and check messages with the very same code.
"""
