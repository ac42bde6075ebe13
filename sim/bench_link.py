"""`make bench` rows for the link: request round trip over a pty, and telemetry at 20 Hz.

- round trip: `keepalive` requests from host.client over a real pty to a served device
  running in real time, one at a time, each timed from write to reply; median and p99;
- telemetry: 20 events a second for 10 simulated minutes (served at SPEED x) during a
  two-channel session with heat, read by host.client; events received, events missing
  from the sequence, and what the device says it dropped.
"""

import statistics
import time

from host.client import Client
from host.transport import open_port
from sim.launcher import start_server

ROUND_TRIPS = 300
TELEMETRY_EVERY_MS = 50
TELEMETRY_SIM_S = 600
SPEED = 20  # simulated seconds per wall second for the telemetry run


def round_trip_ms(runtime, count=ROUND_TRIPS):
    """Sorted round-trip times in ms of `count` keepalive requests."""
    with start_server(runtime=runtime, speed=1, pty=True) as server:
        transport = open_port(server.url)
        try:
            client = Client(transport)
            client.hello()
            times = []
            for _ in range(count):
                started = time.perf_counter()
                client.keepalive()
                times.append((time.perf_counter() - started) * 1000.0)
        finally:
            transport.close()
    return sorted(times)


def telemetry_run(runtime, sim_s=TELEMETRY_SIM_S, speed=SPEED):
    """(received, missing from the sequence, dropped by the device, expected) over sim_s simulated s."""
    with start_server(runtime=runtime, speed=speed, pty=True) as server:
        transport = open_port(server.url)
        seen = []
        try:
            client = Client(transport, on_event=lambda e: seen.append(e) if e.get("ev") == "telemetry" else None)
            client.hello()
            client.start([12000, 8000], lease_ms=0, session_ms=sim_s * 1000 + 60000)
            client.heat(level="medium")
            client.telemetry(TELEMETRY_EVERY_MS)
            client.poll(sim_s / float(speed))
        finally:
            transport.close()
    numbers = [e["n"] for e in seen]
    missing = (numbers[-1] - numbers[0] + 1 - len(numbers)) if numbers else 0
    dropped = seen[-1]["dropped"] if seen else 0
    return len(seen), missing, dropped, sim_s * 1000 // TELEMETRY_EVERY_MS


def _percentile(sorted_values, fraction):
    return sorted_values[min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))]


def rows():
    out = []
    for runtime in ("cpython", "micropython"):
        times = round_trip_ms(runtime)
        median = statistics.median(times)
        p99 = _percentile(times, 0.99)
        out.append(("request round trip over a pty, %s" % runtime, "median %.2f ms, p99 %.2f ms" % (median, p99),
                    "%d keepalives, device in real time; goal median <= 2 ms: %s"
                    % (len(times), "met" if median <= 2.0 else "NOT MET")))
    for runtime in ("cpython", "micropython"):
        received, missing, dropped, expected = telemetry_run(runtime)
        out.append(("telemetry 20 Hz for 10 sim min, %s" % runtime,
                    "%d received, %d dropped" % (received, dropped),
                    "expected about %d; %d missing from the sequence; served at %dx; goal 0 drops: %s"
                    % (expected, missing, SPEED, "met" if dropped == 0 and missing == 0 else "NOT MET")))
    return out


if __name__ == "__main__":
    for row in rows():
        print("  ".join(row))
