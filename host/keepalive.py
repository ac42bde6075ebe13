"""How often a host that holds a session's lease sends a request: KEEPALIVES_PER_LEASE per lease of
the DEVICE's time. A simulator served at --speed N runs its clock N times the wall clock, so the
pace is measured from the status replies' uptime_ms, not assumed. Used by `tensctl monitor`
(host.monitor) and by the client library's lease keeper (host.client.LeaseKeeper)."""

import time

from firmware import limits as L
from firmware.protocols import messages as msg
from host.errors import ProtocolError

KEEPALIVE_S = 1.0  # the longest wall time between status requests
KEEPALIVE_MIN_S = 0.02  # the shortest; also the pace while the device's clock rate is not yet known
KEEPALIVES_PER_LEASE = 4
RATE_MIN_WALL_S = 0.2  # wall time over which the device's clock rate is measured before it is used


UPTIME_MAX_MS = 2**63  # beyond this an uptime is no clock reading (and would overflow the rate)


def status_lease_ms(status):
    """A status reply's lease_ms (absent: 0, no lease), else ProtocolError naming the field."""
    value = status.get("lease_ms", 0)
    if msg.is_int(value) and (value == 0 or L.LEASE_MIN_MS <= value <= L.LEASE_MAX_MS):
        return value
    raise ProtocolError(
        "the device's status reply has lease_ms %s; the protocol wants 0 (no lease) or an integer "
        "%d..%d (ms)" % (msg.clip(repr(value)), L.LEASE_MIN_MS, L.LEASE_MAX_MS)
    )


class KeepalivePace:
    """Fed every status reply (note); says the device's clock rate and the wall time to the next request."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.lease_ms = 0
        self._first = self._last = None  # (wall s, device uptime ms) of status replies

    def restart(self):
        """A new connection: perhaps another device, or a restarted one."""
        self._first = self._last = None

    def note(self, status):
        """A status reply: its uptime_ms measures the clock rate, its lease_ms sets the pace."""
        self.lease_ms = status_lease_ms(status)
        if msg.is_int(status.get("uptime_ms")) and 0 <= status["uptime_ms"] <= UPTIME_MAX_MS:
            self._last = (self.clock(), status["uptime_ms"])
            self._first = self._first or self._last

    def device_rate(self):
        """Device milliseconds per wall millisecond; None until measured over RATE_MIN_WALL_S."""
        if self._first is None or self._last[0] - self._first[0] < RATE_MIN_WALL_S:
            return None
        wall_s = self._last[0] - self._first[0]
        return max(1e-3, (self._last[1] - self._first[1]) / 1000.0 / wall_s)

    def interval_s(self):
        """Wall seconds until the next request: KEEPALIVES_PER_LEASE per lease of device time,
        KEEPALIVE_MIN_S while the rate is unknown, KEEPALIVE_S without a lease."""
        if not self.lease_ms:
            return KEEPALIVE_S
        rate = self.device_rate()
        if rate is None:
            return KEEPALIVE_MIN_S
        return max(KEEPALIVE_MIN_S, min(KEEPALIVE_S, self.lease_ms / 1000.0 / rate / KEEPALIVES_PER_LEASE))
