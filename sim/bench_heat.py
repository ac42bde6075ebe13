"""`make bench` rows for heat control: the HeatController (PID) side by side with a
1 C-hysteresis bang-bang thermostat (sim/bangbang.py) on the simulator's pad.

The closed loop (`Loop`), one 10 ms tick at a time: controller.tick(now) -> LeasedHeater
(powered only inside an unexpired lease) -> PadPlant.step -> ThermistorModel.update ->
the controller's next read_raw().

Rows, all measured (python -m sim.bench_heat prints them):
- reference pad (PadPlant() defaults, at heater-off rest via settle(), room 22 C), levels
  high (42 C) and medium (40 C), one 40-minute session per controller, on the TRUE pad
  temperature: rise time to target - 0.1 C as a multiple of the full-power physical limit
  (plant.full_power_rise_ms from the same start); overshoot (and as measured by the
  controller); settling time (from then on within +-0.2 C until the end); steady r.m.s.
  error over minutes 30..40; the bang-bang / PID ratio of that error;
- fault detection (PID, high): each THERMAL_FAULTS fault injected while holding 15 min
  after the start, thermistor_detached also before the start and during the heat-up:
  time to the latched fault (named) and until the heater element gets no power; a
  fault that latches nothing within 5 min is reported with the pad's range instead;
- false trips: 200 randomized normal 6-minute sessions over the +-30 % plant family
  (random_spread; level/target changes, stop/restart, interlock hold-offs, cold or warm
  pad): any latched fault counts.
Goals of the issue, printed met / NOT MET from the measured numbers: overshoot <= 0.3 C,
steady r.m.s. error <= 0.1 C, rise time <= 1.2 x the full-power limit, >= 5 x lower steady
error than bang-bang, runaway and detached sensor detected within 20 s (applied to
heater_stuck_on, i.e. thermal runaway, and to every thermistor_detached row; the firmware's
own `runaway` fault is what a sensor off the pad while holding latches), zero false trips.
All runs go to a process pool (one worker per CPU) to keep the wall time short.
"""

import copy
import math
import multiprocessing
import os
import time

from firmware.clock import ticks_add, ticks_diff
from firmware.heat.config import HeatConfig
from firmware.heat.heat import HeatController
from firmware.protocols import messages
from sim.bangbang import BangBang
from sim.rng import Rng
from sim.thermal import THERMAL_FAULTS, PadPlant, random_spread
from sim.thermistor_model import ThermistorModel

PID = "PID"
BANG_BANG = "bang-bang"

TICK_MS = 10
SAMPLE_MS = 100  # the recorded series' resolution

# reference sessions
BENCH_LEVELS = ("high", "medium")
SESSION_MS = 40 * 60000
STEADY_FROM_MS = 30 * 60000  # steady r.m.s. window: minutes 30..40
RISE_BELOW_MC = 100  # rise time: first reaching target - 0.1 C
SETTLE_BAND_MC = 200  # settling: within target +- 0.2 C from then on

# fault injection
FAULT_LEVEL = "high"
HOLD_BEFORE_FAULT_MS = 15 * 60000
FAULT_WATCH_MS = 5 * 60000
POST_TRIP_MS = 10000  # keep simulating after a trip: does the element lose power?
DETACH_BEFORE_START_MS = 60000
DETACH_INTO_HEATUP_MS = 120000

# false-trip sessions
N_SESSIONS = 200
NORMAL_SESSION_MS = 6 * 60000
SESSION_SEED = 4000

# goals of the issue
GOAL_OVERSHOOT_MC = 300
GOAL_RMS_MC = 100
GOAL_RISE_RATIO = 1.2
GOAL_RMS_RATIO = 5.0
GOAL_DETECT_MS = 20000
GOAL_DETECT_FAULTS = ("heater_stuck_on", "thermistor_detached")  # "runaway and detached sensor"


# ---- metrics on a series of (t_ms, temp_mc) samples ------------------------------------------

def overshoot_mc(series, target_mc):
    """How far the series rose above target_mc at most (0 when it never did)."""
    return max(0, max(temp for _, temp in series) - target_mc)


def rise_time_ms(series, level_mc):
    """When the series first reaches level_mc, interpolated between samples; None if never."""
    prev = None
    for t_ms, temp_mc in series:
        if temp_mc >= level_mc:
            if prev is None or prev[1] == temp_mc:
                return t_ms
            return prev[0] + (t_ms - prev[0]) * (level_mc - prev[1]) // (temp_mc - prev[1])
        prev = (t_ms, temp_mc)
    return None


def settling_time_ms(series, target_mc, band_mc, min_hold_ms=0):
    """The time from which the series stays within target +- band to its end (the first sample
    after the last one outside); None when it never does for at least min_hold_ms at the end."""
    last_out = -1
    for i in range(len(series)):
        if abs(series[i][1] - target_mc) > band_mc:
            last_out = i
    if last_out == len(series) - 1 or series[-1][0] - series[last_out + 1][0] < min_hold_ms:
        return None
    return series[last_out + 1][0]


def rms_error_mc(series, target_mc, from_ms, to_ms=None):
    """Root-mean-square of (temp - target) over samples with from_ms <= t (<= to_ms), milli-C."""
    errors = [temp - target_mc for t, temp in series if t >= from_ms and (to_ms is None or t <= to_ms)]
    if not errors:
        raise ValueError("no samples in %s..%s ms" % (from_ms, to_ms))
    return math.sqrt(sum(e * e for e in errors) / len(errors))


# ---- the closed loop -------------------------------------------------------------------------

class LeasedHeater:
    """The Heater driver (firmware/drivers/interfaces.py): powered only inside an unexpired lease."""

    def __init__(self):
        self.now = 0  # set by the loop before each controller tick
        self.until = 0
        self.duty_permille = 0

    def lease(self, duty_permille, lease_ms):
        self.duty_permille = duty_permille
        self.until = ticks_add(self.now, lease_ms)

    def off(self):
        self.duty_permille = 0

    def duty(self, now):
        return self.duty_permille if ticks_diff(self.until, now) > 0 else 0


class Loop:
    """Controller (PID = HeatController, or BANG_BANG) + LeasedHeater + PadPlant + ThermistorModel.

    t_ms counts from construction; `samples` (when a list) gets (t_ms, pad_mc, measured_mc) every
    SAMPLE_MS. fault / fault_t_ms: the first latched fault; off_t_ms: the first tick from the
    trip on in which the element got no power (None while it is still powered).
    """

    def __init__(self, kind=PID, plant=None, seed=1, tau_ms=3000, config=None):
        if plant is None:
            plant = PadPlant()
            plant.settle()
        self.kind = kind
        self.plant = plant
        self.therm = ThermistorModel(Rng(seed), plant, "pad", tau_ms=tau_ms)
        self.heater = LeasedHeater()
        if kind == PID:
            self.ctl = HeatController(self.heater, self.therm, config)
        else:
            self.ctl = BangBang(self.heater, self.therm)
        self.t_ms = 0
        self.now = 0  # firmware ticks (wrapping clock)
        self.samples = None
        self.fault = None
        self.fault_t_ms = None
        self.off_t_ms = None
        self.max_pad_mc = self.min_pad_mc = plant.pad_mc

    def measured_mc(self):
        if self.kind == PID:
            return self.ctl.pad.value_mc if self.ctl.pad.valid else None
        return self.ctl.measured_mc

    def set_target(self, spec):
        """spec: a level name ("low", "medium", "high") or a target in milli-C."""
        if isinstance(spec, str):
            spec = HeatConfig().level_mc(spec)
        self.ctl.set_target_mc(spec)

    def start(self, duration_ms=None):
        if self.kind == PID:
            self.ctl.start(self.now, duration_ms)
        else:
            self.ctl.start(self.now)

    def reset_extremes(self):
        self.max_pad_mc = self.min_pad_mc = self.plant.pad_mc

    def run(self, ms, stop_on_fault=True):
        """Simulate ms of 10 ms ticks (stops after the tripping tick when stop_on_fault)."""
        ctl, heater, plant, therm = self.ctl, self.heater, self.plant, self.therm
        end_ms = self.t_ms + ms
        while self.t_ms < end_ms:
            now = self.now
            heater.now = now
            found = ctl.tick(now)
            if found is not None and self.fault is None:
                self.fault = found
                self.fault_t_ms = self.t_ms
            plant.step(TICK_MS, heater.duty(now))
            therm.update(TICK_MS)
            if self.fault is not None and self.off_t_ms is None and plant.power_mw == 0:
                self.off_t_ms = self.t_ms
            self.t_ms += TICK_MS
            self.now = ticks_add(now, TICK_MS)
            pad_mc = plant.pad_mc
            if pad_mc > self.max_pad_mc:
                self.max_pad_mc = pad_mc
            elif pad_mc < self.min_pad_mc:
                self.min_pad_mc = pad_mc
            if self.samples is not None and self.t_ms % SAMPLE_MS == 0:
                self.samples.append((self.t_ms, pad_mc, self.measured_mc()))
            if found is not None and stop_on_fault:
                break
        return self.fault


# ---- reference sessions ----------------------------------------------------------------------

def reference_run(kind, level, session_ms=SESSION_MS, steady_from_ms=STEADY_FROM_MS):
    """One session from rest on the reference pad; the metrics as a dict (temperatures in mC)."""
    loop = Loop(kind)
    target_mc = HeatConfig().level_mc(level)
    start_mc = loop.plant.pad_mc
    limit_ms = loop.plant.full_power_rise_ms(start_mc, target_mc - RISE_BELOW_MC)
    loop.set_target(level)
    loop.samples = []
    loop.start(session_ms + 60000)  # the auto-off timer must not end the session
    loop.run(session_ms)
    pad = [(t, p) for t, p, _ in loop.samples]
    measured = [(t, m) for t, _, m in loop.samples]
    return {
        "kind": kind,
        "level": level,
        "target_mc": target_mc,
        "start_mc": start_mc,
        "session_ms": session_ms,
        "steady_from_ms": steady_from_ms,
        "limit_ms": limit_ms,
        "rise_ms": rise_time_ms(pad, target_mc - RISE_BELOW_MC),
        "overshoot_mc": overshoot_mc(pad, target_mc),
        "overshoot_measured_mc": overshoot_mc(measured, target_mc),
        "settle_ms": settling_time_ms(pad, target_mc, SETTLE_BAND_MC, session_ms - steady_from_ms),
        "rms_mc": rms_error_mc(pad, target_mc, steady_from_ms),
        "rms_measured_mc": rms_error_mc(measured, target_mc, steady_from_ms),
        "fault": loop.fault,
    }


# ---- fault detection -------------------------------------------------------------------------

def _watch(loop, name, when, t0_ms, watch_ms=FAULT_WATCH_MS):
    """Run until a trip (then POST_TRIP_MS more) or watch_ms; what happened, times from t0_ms."""
    loop.run(watch_ms - (loop.t_ms - t0_ms))
    pad_at_trip_mc = loop.plant.pad_mc
    if loop.fault is not None:
        loop.run(POST_TRIP_MS, stop_on_fault=False)
    return {
        "name": name,
        "when": when,
        "target_mc": loop.ctl.target_mc,
        "watch_ms": watch_ms,
        "fault": loop.fault,
        "fault_msg": loop.ctl.fault_msg,
        "latency_ms": None if loop.fault is None else loop.fault_t_ms - t0_ms,
        "off_ms": None if loop.off_t_ms is None else max(0, loop.off_t_ms - t0_ms),
        "pad_at_trip_mc": pad_at_trip_mc,
        "max_pad_mc": loop.max_pad_mc,
        "min_pad_mc": loop.min_pad_mc,
        "end_pad_mc": loop.plant.pad_mc,
    }


def _inject(loop, name):
    THERMAL_FAULTS[name][1](loop.plant, loop.therm, True)
    loop.reset_extremes()
    return loop.t_ms


def fault_runs(hold_ms=HOLD_BEFORE_FAULT_MS):
    """Every thermal fault while holding (15 min after a start from rest), plus a sensor
    detached before the start and during the heat-up. A list of dicts (see _watch)."""
    base = Loop(PID)
    base.set_target(FAULT_LEVEL)
    base.start(60 * 60000)
    if base.run(hold_ms) is not None or base.ctl.state != "holding":
        raise RuntimeError("reference session not holding before the faults: %s %s" % (base.ctl.state, base.fault))
    results = []
    for name in THERMAL_FAULTS:
        loop = copy.deepcopy(base)
        results.append(_watch(loop, name, "holding", _inject(loop, name)))

    loop = Loop(PID)  # detached while the pad is at rest, heat started a minute later
    loop.set_target(FAULT_LEVEL)
    _inject(loop, "thermistor_detached")
    loop.run(DETACH_BEFORE_START_MS)
    if loop.fault is None:
        loop.start()
        results.append(_watch(loop, "thermistor_detached", "before start", loop.t_ms))
    else:
        results.append(_watch(loop, "thermistor_detached", "before start", 0))

    loop = Loop(PID)
    loop.set_target(FAULT_LEVEL)
    loop.start()
    loop.run(DETACH_INTO_HEATUP_MS)
    results.append(_watch(loop, "thermistor_detached", "heating up", _inject(loop, "thermistor_detached")))
    return results


# ---- false trips over the plant family -------------------------------------------------------

def _between(rng, low, high):
    return low + rng.below(high - low + 1)


def _random_target(rng):
    if rng.below(4) == 0:
        return _between(rng, 360, 430) * 100  # an explicit target, 36..43 C
    return ("low", "medium", "high")[rng.below(3)]


def _hold_state(plant, temp_mc):
    """Put the plant at the steady state of the duty that holds the pad near temp_mc."""
    low, high = 0, 1000
    while low < high:
        mid = (low + high) // 2
        if plant.steady_state_mc(mid) < temp_mc:
            low = mid + 1
        else:
            high = mid
    plant.set_state(*plant.steady_state(low))


def normal_session(index, session_ms=NORMAL_SESSION_MS):
    """One randomized normal session (seeded by index): a random member of the +-30 % family in a
    room at 18..26 C, sensor lag 1..6 s, the pad at rest or (half of them) still warm from an
    earlier session; a random level or target, and at random times a target change (1/2), a
    stop and restart after 5..120 s (2/5), an interlock hold-off of 10..60 s (1/4)."""
    rng = Rng(SESSION_SEED + index)
    plant, pct = random_spread(rng, 30, ambient_mc=_between(rng, 18000, 26000))
    plant.settle()
    warm = rng.below(2) == 1
    if warm:  # an earlier session held 36..42 C, then a pause of 0.5..10 min
        _hold_state(plant, _between(rng, 36000, 42000))
        plant.step(_between(rng, 30000, 600000), 0)
    loop = Loop(PID, plant, seed=index + 1, tau_ms=_between(rng, 1000, 6000))
    loop.set_target(_random_target(rng))
    events = []
    if rng.below(2):
        events.append((_between(rng, session_ms // 3, 2 * session_ms // 3), "target", _random_target(rng)))
    if rng.below(5) < 2:
        t_ms = _between(rng, session_ms // 4, 3 * session_ms // 4) // TICK_MS * TICK_MS
        events.append((t_ms, "stop", None))
        events.append((t_ms + _between(rng, 500, 12000) * TICK_MS, "start", None))
    if rng.below(4) == 0:
        t_ms = _between(rng, session_ms // 4, 3 * session_ms // 4) // TICK_MS * TICK_MS
        events.append((t_ms, "allow", False))
        events.append((t_ms + _between(rng, 1000, 6000) * TICK_MS, "allow", True))
    events.sort(key=lambda event: event[0])
    refused = []
    loop.start()
    for t_ms, what, arg in events:
        if t_ms >= session_ms or loop.run(t_ms - loop.t_ms) is not None:
            break
        try:
            if what == "target":
                loop.set_target(arg)
            elif what == "stop":
                loop.ctl.stop()
            elif what == "start":
                loop.start()
            else:
                loop.ctl.set_allowed(arg)
        except messages.RequestError as err:  # e.g. a restart at the dose cap: not a fault
            refused.append(err.message)
    if loop.fault is None:
        loop.run(session_ms - loop.t_ms)
    return {
        "index": index,
        "warm": warm,
        "events": [event[1] for event in events],
        "refused": refused,
        "fault": loop.fault,
        "fault_msg": loop.ctl.fault_msg if loop.fault else "",
        "pct": pct,
    }


# ---- the table -------------------------------------------------------------------------------

def _c(mc, digits=2):
    return "%.*f C" % (digits, mc / 1000.0)


def _s(ms):
    if ms is None:
        return "never"
    return "%d ms" % ms if ms < 1000 else "%.1f s" % (ms / 1000.0)


def _goal(ok, text):
    return "goal %s: %s" % (text, "met" if ok else "NOT MET")


def _x(ratio):
    return "n/a" if ratio is None else "%.2f x" % ratio


def _ratio(a, b):
    return None if a is None or not b else a / b


def _reference_rows(level, pid, bang):
    name = "heat %s %s" % (level, _c(pid["target_mc"], 0))
    target = pid["target_mc"]
    limit = pid["limit_ms"]
    rise_pid, rise_bang = _ratio(pid["rise_ms"], limit), _ratio(bang["rise_ms"], limit)
    rms_ratio = _ratio(bang["rms_mc"], pid["rms_mc"])
    window = "min %d..%d" % (pid["steady_from_ms"] // 60000, pid["session_ms"] // 60000)
    return [
        (
            name + ": rise time / full-power limit",
            "PID %s, bang-bang %s" % (_x(rise_pid), _x(rise_bang)),
            "to %s (true pad) from rest %s: PID %s, bang-bang %s, full power %s; %s"
            % (_c(target - RISE_BELOW_MC), _c(pid["start_mc"]), _s(pid["rise_ms"]), _s(bang["rise_ms"]), _s(limit),
               _goal(rise_pid is not None and rise_pid <= GOAL_RISE_RATIO, "PID <= %.1f x" % GOAL_RISE_RATIO)),
        ),
        (
            name + ": overshoot",
            "PID %s, bang-bang %s" % (_c(pid["overshoot_mc"]), _c(bang["overshoot_mc"])),
            "true pad; as measured: PID %s, bang-bang %s; %s"
            % (_c(pid["overshoot_measured_mc"]), _c(bang["overshoot_measured_mc"]),
               _goal(pid["overshoot_mc"] <= GOAL_OVERSHOOT_MC, "PID <= %s" % _c(GOAL_OVERSHOOT_MC, 1))),
        ),
        (
            name + ": settling into +-%s" % _c(SETTLE_BAND_MC, 1),
            "PID %s, bang-bang %s" % (_s(pid["settle_ms"]), _s(bang["settle_ms"])),
            "time from the start after which the true pad stays within %s..%s to the end of the %d-min "
            "session (never: not for the last %d min)"
            % (_c(target - SETTLE_BAND_MC, 1), _c(target + SETTLE_BAND_MC, 1), pid["session_ms"] // 60000,
               (pid["session_ms"] - pid["steady_from_ms"]) // 60000),
        ),
        (
            name + ": steady r.m.s. error, " + window,
            "PID %s, bang-bang %s" % (_c(pid["rms_mc"], 3), _c(bang["rms_mc"], 3)),
            "true pad; as measured: PID %s, bang-bang %s; %s"
            % (_c(pid["rms_measured_mc"], 3), _c(bang["rms_measured_mc"], 3),
               _goal(pid["rms_mc"] <= GOAL_RMS_MC, "PID <= %s" % _c(GOAL_RMS_MC, 1))),
        ),
        (
            name + ": steady r.m.s. error bang-bang / PID",
            "n/a" if rms_ratio is None else "%.0f x" % rms_ratio,
            "%s (faults in the sessions: PID %s, bang-bang %s)"
            % (_goal(rms_ratio is not None and rms_ratio >= GOAL_RMS_RATIO,
                     ">= %.0f x lower with PID" % GOAL_RMS_RATIO),
               pid["fault"] or "none", bang["fault"] or "none"),
        ),
    ]


def _fault_row(r):
    label = "heat fault %s, %s" % (r["name"], r["when"])
    since = "after the start" if r["when"] == "before start" else "after injection"
    if r["fault"] is None:
        settled = abs(r["end_pad_mc"] - r["target_mc"]) <= SETTLE_BAND_MC
        result = "absorbed, no trip" if settled else "no trip, pad off target"
        detail = "watched %d min: true pad %s..%s, at the end %s" % (
            r["watch_ms"] // 60000, _c(r["min_pad_mc"]), _c(r["max_pad_mc"]), _c(r["end_pad_mc"]))
        if r["name"] in GOAL_DETECT_FAULTS:
            detail += "; " + _goal(False, "detected <= %s" % _s(GOAL_DETECT_MS))
        return (label, result, detail)
    result = "%s after %s" % (r["fault"], _s(r["latency_ms"]))
    if r["when"] == "before start":
        result += " of heating"
    if r["off_ms"] is None:
        off = "element still powered %s after the trip (stuck switch: only the pad's thermal cutoff stops it)" % _s(
            POST_TRIP_MS)
    else:
        off = "heater unpowered %s %s" % (_s(r["off_ms"]), since)
    detail = "%s; true pad %s at the trip, max %s" % (off, _c(r["pad_at_trip_mc"]), _c(r["max_pad_mc"]))
    if r["when"] == "before start":
        detail += "; sensor detached %s before the start" % _s(DETACH_BEFORE_START_MS)
    if r["name"] in GOAL_DETECT_FAULTS:
        detail += "; " + _goal(r["latency_ms"] <= GOAL_DETECT_MS, "<= %s" % _s(GOAL_DETECT_MS))
    return (label, result, detail)


def _false_trip_row(sessions):
    trips = [s for s in sessions if s["fault"] is not None]
    n = len(sessions)
    counts = {}
    for s in sessions:
        for what in s["events"]:
            counts[what] = counts.get(what, 0) + 1
    detail = (
        "%d-min sessions (%.1f h simulated), +-30 %% plant family, room 18..26 C, sensor lag 1..6 s; "
        "%d warm starts, %d target changes, %d stop/restarts, %d hold-offs"
        % (NORMAL_SESSION_MS // 60000, n * NORMAL_SESSION_MS / 3600000.0, sum(1 for s in sessions if s["warm"]),
           counts.get("target", 0), counts.get("stop", 0), counts.get("allow", 0) // 2)
    )
    refused = sum(len(s["refused"]) for s in sessions)
    if refused:
        detail += ", %d requests refused" % refused
    detail += "; " + _goal(not trips, "0")
    for s in trips[:3]:
        detail += "; session %d: %s (%s)" % (s["index"], s["fault"], s["fault_msg"])
    return ("heat false trips, normal sessions", "%d of %d sessions" % (len(trips), n), detail)


def _job(job):
    if job[0] == "reference":
        return reference_run(job[1], job[2])
    if job[0] == "faults":
        return fault_runs()
    return normal_session(job[1])


def rows(workers=None, n_sessions=N_SESSIONS):
    """The heat rows: [(benchmark, result, detail)]. workers: processes (None: one per CPU)."""
    started = time.perf_counter()
    if workers is None:
        workers = os.cpu_count() or 1
    jobs = [("faults",)]  # the longest first, so the pool stays balanced
    for level in BENCH_LEVELS:
        jobs += [("reference", PID, level), ("reference", BANG_BANG, level)]
    jobs += [("session", i) for i in range(n_sessions)]
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            results = pool.map(_job, jobs, chunksize=1)
    else:
        results = [_job(job) for job in jobs]
    faults = results[0]
    refs = results[1 : 1 + 2 * len(BENCH_LEVELS)]
    out = []
    for i, level in enumerate(BENCH_LEVELS):
        out += _reference_rows(level, refs[2 * i], refs[2 * i + 1])
    out += [_fault_row(r) for r in faults]
    out.append(_false_trip_row(results[1 + 2 * len(BENCH_LEVELS) :]))
    out.append(
        ("heat bench wall time", "%.0f s" % (time.perf_counter() - started),
         "cpython, %d worker process(es), 10 ms ticks" % workers)
    )
    return out


def print_table(table):
    header = ("benchmark", "result", "detail")
    widths = [max(len(row[i]) for row in table + [header]) for i in range(3)]
    print("  ".join("%-*s" % (widths[i], header[i]) for i in range(3)))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join("%-*s" % (widths[i], row[i]) for i in range(3)).rstrip())


if __name__ == "__main__":
    print_table(rows())
