"""sim/bench_heat.py (the heat rows of `make bench`) and sim/bangbang.py: the metrics on known
series, the bang-bang switching points, and short closed loops of both controllers."""

import pytest

from firmware.heat import thermistor as conversion
from sim import bench_heat as bh
from sim.bangbang import BangBang

# ---- metrics on synthetic series ---------------------------------------------------------------


def test_overshoot():
    series = [(0, 30000), (100, 41000), (200, 42250), (300, 41900), (400, 42000)]
    assert bh.overshoot_mc(series, 42000) == 250
    assert bh.overshoot_mc(series, 40000) == 2250
    assert bh.overshoot_mc(series, 43000) == 0  # never above


def test_rise_time_interpolates_and_says_never():
    series = [(0, 40000), (1000, 41000), (2000, 42000)]
    assert bh.rise_time_ms(series, 41500) == 1500
    assert bh.rise_time_ms(series, 41000) == 1000
    assert bh.rise_time_ms(series, 39000) == 0  # already there
    assert bh.rise_time_ms(series, 42001) is None
    # the FIRST crossing counts, not a later one
    assert bh.rise_time_ms([(0, 0), (10, 100), (20, 0), (30, 100)], 50) == 5


def test_settling_time():
    series = [(0, 30000), (100, 42300), (200, 42100), (300, 41950), (400, 42000), (500, 42050)]
    assert bh.settling_time_ms(series, 42000, 200) == 200  # 42300 at 100 ms was the last one outside
    assert bh.settling_time_ms(series, 42000, 99) == 300  # now 42100 at 200 ms is outside too
    assert bh.settling_time_ms(series, 42000, 10) is None  # outside at the end
    assert bh.settling_time_ms(series, 42000, 200, min_hold_ms=300) == 200
    assert bh.settling_time_ms(series, 42000, 200, min_hold_ms=301) is None  # held only 300 ms
    assert bh.settling_time_ms(series[3:], 42000, 200) == 300  # never outside: the first sample


def test_rms_error_over_a_window():
    series = [(t, 42000 + (100 if (t // 100) % 2 else -100)) for t in range(0, 10000, 100)]
    series[0] = (0, 30000)  # outside the window
    assert bh.rms_error_mc(series, 42000, 100) == pytest.approx(100.0)
    assert bh.rms_error_mc(series, 42100, 100, 100) == pytest.approx(0.0)  # the single sample at 100 ms
    assert bh.rms_error_mc([(0, 3), (1, -4)], 0, 0) == pytest.approx((12.5) ** 0.5)
    with pytest.raises(ValueError):
        bh.rms_error_mc(series, 42000, 20000)


# ---- the heater lease ----------------------------------------------------------------------------


def test_leased_heater_powered_only_inside_the_lease():
    heater = bh.LeasedHeater()
    heater.now = 1000
    heater.lease(1000, 50)
    assert heater.duty(1000) == 1000 and heater.duty(1049) == 1000
    assert heater.duty(1050) == 0  # expired
    heater.lease(1000, 50)
    heater.off()
    assert heater.duty(1010) == 0


# ---- bang-bang ---------------------------------------------------------------------------------


class _Therm:
    def __init__(self):
        self.code = 0

    def read_raw(self):
        return self.code


class _Heater:
    def __init__(self):
        self.calls = []

    def lease(self, duty_permille, lease_ms):
        self.calls.append(("lease", duty_permille, lease_ms))

    def off(self):
        self.calls.append(("off",))


def test_bang_bang_switches_at_minus_and_plus_half_a_degree():
    therm, heater = _Therm(), _Heater()
    bb = BangBang(heater, therm, target_mc=42000)
    bb.start(0)
    expected = (  # (reading, heater on after the tick)
        (41000, True), (41490, True), (41600, True), (42000, True), (42490, True),
        (42510, False), (42200, False), (41600, False), (41510, False), (41490, True), (42100, True),
    )
    for temp_mc, on in expected:
        therm.code = conversion.mc_to_code(temp_mc)
        heater.calls = []
        assert bb.tick(0) is None
        assert abs(bb.measured_mc - temp_mc) < 5  # the firmware's conversion
        assert bb.heater_on == on, temp_mc
        assert heater.calls == ([("lease", 1000, 50)] if on else [("off",)]), temp_mc
    bb.stop()
    assert heater.calls[-1] == ("off",)
    therm.code = conversion.mc_to_code(30000)
    bb.tick(0)
    assert not bb.heater_on and heater.calls[-1] == ("off",)  # stopped: never on


# ---- short closed loops ------------------------------------------------------------------------

_SHORT_MS = 6 * 60000
_WINDOW_FROM_MS = 4 * 60000


def test_short_closed_loops_pid_beats_bang_bang():
    pid = bh.reference_run(bh.PID, "high", _SHORT_MS, _WINDOW_FROM_MS)
    bang = bh.reference_run(bh.BANG_BANG, "high", _SHORT_MS, _WINDOW_FROM_MS)
    assert pid["fault"] is None and bang["fault"] is None
    assert pid["target_mc"] == 42000 and 31000 < pid["start_mc"] < 32000  # heater-off rest
    limit = pid["limit_ms"]
    assert 150000 < limit < 300000 and bang["limit_ms"] == limit
    assert 0.98 <= bang["rise_ms"] / limit <= 1.05  # bang-bang: full power until past the target
    assert 1.0 < pid["rise_ms"] / limit < 1.5
    assert pid["overshoot_mc"] < 300 < bang["overshoot_mc"]
    assert pid["settle_ms"] is not None and bang["settle_ms"] is None
    assert pid["rms_mc"] < 50 and bang["rms_mc"] > 200
    assert bang["rms_mc"] > 5 * pid["rms_mc"]
    assert abs(pid["rms_measured_mc"] - pid["rms_mc"]) < 50


def test_fault_latency_plumbing():
    loop = bh.Loop(bh.PID)
    loop.set_target("medium")
    loop.start()
    loop.run(2000)
    t0_ms = bh._inject(loop, "thermistor_open")
    r = bh._watch(loop, "thermistor_open", "heating up", t0_ms, watch_ms=5000)
    assert r["fault"] == "sensor_open" and 30 <= r["latency_ms"] <= 60
    assert r["off_ms"] == r["latency_ms"]  # unpowered from the tripping tick on
    assert loop.heater.duty(loop.now) == 0
    row = bh._fault_row(r)
    assert row[1].startswith("sensor_open after") and "heater unpowered" in row[2]

    loop = bh.Loop(bh.PID)  # heat off: an ambient step trips nothing
    t0_ms = bh._inject(loop, "ambient_step")
    r = bh._watch(loop, "ambient_step", "off", t0_ms, watch_ms=2000)
    assert r["fault"] is None and r["latency_ms"] is None and r["min_pad_mc"] <= r["end_pad_mc"]


def test_a_short_normal_session_runs_its_events():
    results = [bh.normal_session(i, session_ms=40000) for i in range(3)]
    assert [r["fault"] for r in results] == [None, None, None]
    assert results[0] == bh.normal_session(0, session_ms=40000)  # seeded: reproducible


# ---- the rows print measured goals, met or not -------------------------------------------------


def _ref(kind, rise_ms, overshoot_mc, rms_mc, settle_ms=100000):
    return {
        "kind": kind, "level": "high", "target_mc": 42000, "start_mc": 31400, "session_ms": 2400000,
        "steady_from_ms": 1800000, "limit_ms": 200000, "rise_ms": rise_ms, "overshoot_mc": overshoot_mc,
        "overshoot_measured_mc": overshoot_mc, "settle_ms": settle_ms, "rms_mc": rms_mc,
        "rms_measured_mc": rms_mc, "fault": None,
    }


def test_reference_rows_report_goals_from_the_numbers():
    good = bh._reference_rows("high", _ref(bh.PID, 230000, 60, 5.0), _ref(bh.BANG_BANG, 200000, 800, 450.0, None))
    assert all("NOT MET" not in row[2] for row in good)
    assert good[0][1] == "PID 1.15 x, bang-bang 1.00 x"
    assert good[4][1] == "90 x"
    bad = bh._reference_rows("high", _ref(bh.PID, 250000, 400, 120.0), _ref(bh.BANG_BANG, 200000, 800, 450.0, None))
    assert ["NOT MET" in row[2] for row in bad] == [True, True, False, True, True]
    assert "bang-bang never" in bad[2][1]


def test_false_trip_row_counts_faults():
    ok = {"index": 0, "warm": True, "events": ["target"], "refused": [], "fault": None, "fault_msg": ""}
    trip = dict(ok, index=7, fault="heat_slow", fault_msg="too slow")
    row = bh._false_trip_row([ok, trip, ok])
    assert row[1] == "1 of 3 sessions" and "NOT MET" in row[2] and "session 7: heat_slow (too slow)" in row[2]
    assert bh._false_trip_row([ok, ok])[1] == "0 of 2 sessions"
