"""`make bench`: measure the simulator and print one table.

Rows:
- simulated seconds per wall-clock second for a 30-minute single-channel
  session (start, ramp to 20 mA, hold, stop) with its 100 ms trace, and for a
  30-minute two-channel session with the pad held at 40 C, each runtime;
- firmware tick cost (two channels at 100 Hz, steady; and with the pad held at 40 C,
  which bounds how fast any simulated session can run), heap bytes allocated per
  steady tick, and fault latency from the first pulse into an open electrode to
  zero output, from `sim/bench_tick.py` run under each runtime;
- request round trip and 20 Hz telemetry over a pty (`sim/bench_link.py`);
- heat control against a bang-bang thermostat, fault detection latencies and false
  trips (`sim/bench_heat.py`);
- the firmware's peak live heap over a 30-minute two-channel session with heat, in the
  MicroPython VM with the Pico's heap (`sim/bench_memory.py`).
The best of a few repeats is reported: it is the least disturbed by other work
on the machine.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from firmware import limits as L
from sim import bench_heat, bench_link, bench_memory, launcher, runner
from sim.scenario import normalize

SESSION_S = 30 * 60


def session_scenario(duration_s=SESSION_S, amps_ua=(20000,), heat_level=None):
    """A device-timed session: start, ramp to amps_ua, hold (with the pad at heat_level), stop."""
    steps = [
        {"at_s": 0.1, "send": {"op": "hello"}},
        {"at_s": 0.5, "send": {"op": "start", "amp_ua": list(amps_ua), "lease_ms": 0}},
        {"at_s": duration_s - 10, "send": {"op": "stop"}},
    ]
    if heat_level is not None:
        steps.insert(2, {"at_s": 0.6, "send": {"op": "heat", "level": heat_level}})
    return normalize({"duration_s": duration_s, "seed": 7, "channels": len(amps_ua), "steps": steps})


def heat_session_scenario(duration_s=SESSION_S):
    """Two channels at 20 and 15 mA with the pad held at 40 C."""
    return session_scenario(duration_s, (20000, 15000), "medium")


def measure_session(runtime, repeats, scenario=None):
    scenario = scenario or session_scenario()
    best_s = None
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.jsonl")
        for _ in range(repeats):
            started = time.perf_counter()
            runner.run(scenario, trace, runtime)
            wall_s = time.perf_counter() - started
            best_s = wall_s if best_s is None else min(best_s, wall_s)
    return best_s


def tick_figures(runtime):
    script = os.path.join(launcher.project_root(), "sim", "bench_tick.py")
    if runtime == "micropython":
        command = [launcher.micropython_executable(), script]
        env = launcher.micropython_env()
    else:
        command = [sys.executable, script]
        env = dict(os.environ, PYTHONPATH=launcher.project_root())
    best = None
    for _ in range(3):
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        figures = json.loads(out)
        if best is None:
            best = figures
        for key in ("tick_us", "tick_heat_us", "status_reply_us"):  # each timing its least disturbed run
            best[key] = min(best[key], figures[key])
    return best


def main():
    rows = []
    for runtime in ("micropython", "cpython"):
        figures = tick_figures(runtime)
        rows.append(
            ("firmware tick, 2 ch at 100 Hz, %s" % runtime, "%.1f us / tick" % figures["tick_us"], "best of 3, 3000 ticks")
        )
        rows.append(
            (
                "firmware tick, 2 ch at 100 Hz + heat holding, %s" % runtime,
                "%.1f us / tick" % figures["tick_heat_us"],
                "drivers that do nothing: a simulated session can run at most %.0fx"
                % (L.TICK_MS * 1000 / figures["tick_heat_us"]),
            )
        )
        rows.append(
            (
                "status request through the link, %s" % runtime,
                "%.0f us / request" % figures["status_reply_us"],
                "decode, reply, JSON, CRC; the link stops at 20 ms of a tick (the board: tens of times slower)",
            )
        )
        if runtime == "micropython":
            rows.append(
                ("heap allocated per steady tick, micropython", "%.3f bytes" % figures["heap_bytes_per_tick"], "goal 0")
            )
            rows.append(
                (
                    "heap allocated per steady tick with heat, micropython",
                    "%.3f bytes" % figures["heap_heat_bytes_per_tick"],
                    "goal 0",
                )
            )
            for mode in ("continuous", "acupuncture", "burst"):
                rows.append(
                    (
                        "electrode off -> zero output, %s" % mode,
                        "%d tick(s)" % figures["latency_%s_ticks" % mode],
                        "from the first pulse into the open electrode; goal <= 1",
                    )
                )
    for runtime, repeats in (("cpython", 3), ("micropython", 2)):
        wall_s = measure_session(runtime, repeats)
        rows.append(
            (
                "30-min 1-channel session, %s" % runtime,
                "%.0f sim s / wall s" % (SESSION_S / wall_s),
                "%.2f s wall (best of %d)" % (wall_s, repeats),
            )
        )
    for runtime, repeats in (("cpython", 5), ("micropython", 2)):
        wall_s = measure_session(runtime, repeats, heat_session_scenario())
        goal = 500 if runtime == "cpython" else 100
        rows.append(
            (
                "30-min 2-channel session with heat, %s" % runtime,
                "%.0f sim s / wall s" % (SESSION_S / wall_s),
                "%.2f s wall (best of %d); goal >= %dx: %s"
                % (wall_s, repeats, goal, "met" if SESSION_S / wall_s >= goal else "NOT MET"),
            )
        )
    rows.extend(bench_link.rows())  # request round trip and telemetry over a pty, each runtime
    rows.extend(bench_heat.rows())  # heat control vs a bang-bang thermostat (cpython)
    rows.extend(bench_memory.rows())  # firmware peak live heap, 30-min session (micropython, the Pico's heap)
    widths = [max(len(row[i]) for row in rows + [("benchmark", "result", "detail")]) for i in range(3)]
    line = "  ".join("%-*s" % (widths[i], ("benchmark", "result", "detail")[i]) for i in range(3))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join("%-*s" % (widths[i], row[i]) for i in range(3)))


if __name__ == "__main__":
    main()
