"""A realistic synthetic session log for the report tests (and for looking at the report).

Six weeks of a patient using a heat-then-TENS program on most days, pain
improving over the weeks; one session ends on a fault (pad sensor), one on an
emergency stop, one loses its stop record to a power cut, and one was logged
while the device did not know the time. The log starts with an "erased" marker
and carries one record of a kind the host does not know.

    .venv/bin/python -m tests.report_fixtures OUT_DIR   # writes the report there
"""

import random
import sys

PROGRAM = "heat-then-tens"
HEAT_MS = 15 * 60000
TENS_MS = 20 * 60000
SESSION_MS = HEAT_MS + TENS_MS
FIRST_DAY_UNIX_S = 1709510400  # Monday 2024-03-04 00:00 UTC
DAY_S = 86400
SAMPLE_MS = 60000
HEAT_TARGET_MC = 41000
ROOM_MC = 24000
SKIN_MC = 31000


class _Log:
    """Appends records with increasing seq; up_ms is the uptime since the device was switched on."""

    def __init__(self):
        self.records = []
        self.seq = 0

    def add(self, ev, up_ms, unix_s, **fields):
        self.seq += 1
        record = {"seq": self.seq, "ev": ev, "up_ms": up_ms, "unix_s": unix_s}
        record.update(fields)
        self.records.append(record)
        return record


def _pad_mc(run_ms):
    """Pad temperature: warms toward the target while heating, cools toward skin after."""
    if run_ms <= HEAT_MS:
        return int(SKIN_MC + (HEAT_TARGET_MC - SKIN_MC) * (1 - 0.72 ** (run_ms / 60000)))
    peak = _pad_mc(HEAT_MS)
    return int(SKIN_MC + 2000 + (peak - SKIN_MC - 2000) * 0.8 ** ((run_ms - HEAT_MS) / 60000))


def _tens_ua(run_ms, top_ua):
    """Amplitude: zero while heating, ramps over 3 min to the patient's level, then holds."""
    if run_ms < HEAT_MS:
        return 0
    return min(top_ua, (run_ms - HEAT_MS) * top_ua // (3 * 60000) // 500 * 500)


def _cem43_ms(temps_mc):
    """CEM43 over one-minute samples (R = 0.25 below 43 °C, 0.5 above)."""
    total = 0.0
    for temp_mc in temps_mc:
        r = 0.5 if temp_mc >= 43000 else 0.25
        total += SAMPLE_MS * r ** ((43000 - temp_mc) / 1000)
    return int(total)


def _session(log, unix_s, pain_before, pain_after, top_ua, end=None):
    """One heat-then-TENS session. end: None (runs out), ("estop", ms), ("fault", ms), ("powercut", ms)."""
    up_ms = 4000
    t = None if unix_s is None else unix_s

    def at(run_ms):
        return (up_ms + run_ms, None if t is None else t + run_ms // 1000)

    log.add("pain", *at(-30000), sid=None, when="before", score=pain_before)
    start = log.add(
        "start",
        *at(0),
        program=PROGRAM,
        session_ms=SESSION_MS,
        amp_ua=[0, 0],
        heat={"level": "medium", "target_mc": HEAT_TARGET_MC},
        interlock="alternate",
    )
    sid = start["sid"] = start["seq"]
    log.add("phase", *at(0), sid=sid, index=0, name="heat")
    log.add("heat", *at(0), sid=sid, target_mc=HEAT_TARGET_MC)
    end_ms = SESSION_MS if end is None else end[1]
    temps, max_ua, target_mc = [], [0, 0], HEAT_TARGET_MC
    for run_ms in list(range(SAMPLE_MS, end_ms, SAMPLE_MS)) + [end_ms]:
        if run_ms > HEAT_MS and target_mc is not None:
            log.add("heat", *at(HEAT_MS), sid=sid, target_mc=None)
            log.add("phase", *at(HEAT_MS), sid=sid, index=1, name="tens")
            for ch in (0, 1):
                log.add("amp", *at(HEAT_MS), sid=sid, ch=ch, target_ua=top_ua - 1000 * ch)
            target_mc = None
        amps = [_tens_ua(run_ms, top_ua), _tens_ua(run_ms, top_ua - 1000)]
        max_ua = [max(a, b) for a, b in zip(max_ua, amps)]
        temps.append(_pad_mc(run_ms))
        if end is not None and end[0] == "fault" and run_ms == end_ms:
            log.add("fault", *at(run_ms), sid=sid, faults=["pad_sensor_open"], msg="pad thermistor reads open circuit")
        if end is not None and end[0] == "powercut" and run_ms == end_ms:
            return sid  # the last sample and the stop were never written
        log.add("sample", *at(run_ms), sid=sid, run_ms=run_ms, amp_ua=amps, temp_mc=temps[-1], target_mc=target_mc)
    reason = "session_end" if end is None else end[0]
    log.add("stop", *at(end_ms), sid=sid, reason=reason, run_ms=end_ms, max_amp_ua=max_ua, cem43_ms=_cem43_ms(temps))
    log.add("pain", *at(end_ms + 60000), sid=sid if pain_after % 2 else None, when="after", score=pain_after)
    return sid


def synthetic_log(seed=20240304, weeks=6):
    """The records (oldest first) of `weeks` weeks of use from Monday 2024-03-04, deterministic for a seed.

    The unusual days sit at fixed fractions of the span, so a shorter log (weeks=2, for
    fast tests) has them all too.
    """
    rng = random.Random(seed)
    log = _Log()
    log.add("erased", 1000, FIRST_DAY_UNIX_S - DAY_S)
    days = weeks * 7
    special = [round(days * fraction) for fraction in (0.2, 0.3, 0.4, 0.55, 0.72)]
    fault_day, battery_day, undated_day, estop_day, powercut_day = special
    for day in range(days):
        if rng.random() < 0.18 and day not in special:
            continue  # a day off
        progress = day / days
        unix_s = FIRST_DAY_UNIX_S + day * DAY_S + 18 * 3600 + rng.randrange(0, 3 * 3600, 60)
        pain_before = max(1, min(10, round(7.5 - 3.5 * progress + rng.uniform(-1, 1))))
        pain_after = max(0, pain_before - rng.choice((1, 2, 2, 3)))
        top_ua = 18000 + int(progress * 8000) // 500 * 500 + rng.choice((-1000, 0, 500))
        end = None
        if day == fault_day:
            end = ("fault", 22 * 60000)
        elif day == estop_day:
            end = ("estop", 17 * 60000 + 20000)
        elif day == powercut_day:
            end = ("powercut", 26 * 60000 + 5000)
        elif day == undated_day:
            unix_s = None  # the clock was lost after the battery ran flat
        _session(log, unix_s, pain_before, pain_after, top_ua, end)
        if day == battery_day:
            log.add("battery", 2000000, unix_s + 3600, level_pct=41)
    return log.records


if __name__ == "__main__":
    from host.report import write_report

    print(write_report(synthetic_log(), sys.argv[1] if len(sys.argv) > 1 else "report-demo"))
