"""pulsewarm firmware: portable core that runs on the RP2040, CPython and the MicroPython VM."""

FIRMWARE_VERSION = "0.1.0"
