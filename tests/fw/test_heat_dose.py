"""firmware.heat.dose: CEM43 against hand-computed values; the cap stops heat."""

from firmware.heat import dose as D
from firmware.protocols import messages
from tests.fw.heat_fakes import Plant, Rig
from tests.fw.portable import Lcg, raises

MIN = 60000  # one CEM43 minute in CEM43 ms


def _dose(t_mc, ms, dt=10):
    d = D.Dose(10 ** 9)
    for _ in range(ms // dt):
        d.add(t_mc, dt)
    return d.cem43_ms


def test_ten_minutes_at_43_is_ten_minutes():
    assert _dose(43000, 10 * MIN) == 10 * MIN


def test_one_minute_at_44_is_two_minutes():
    assert _dose(44000, MIN) == 2 * MIN


def test_one_minute_at_42_is_a_quarter_minute():
    assert _dose(42000, MIN) == MIN // 4


def test_more_hand_values():
    assert _dose(45000, MIN) == 4 * MIN  # R = 0.5: x2 per degree above 43
    assert _dose(41000, MIN) == MIN // 16  # R = 0.25: /4 per degree below
    assert _dose(40000, 64 * MIN) == MIN  # 0.25^3 = 1/64
    assert _dose(42500, 2 * MIN) == MIN  # half a degree below: 0.25^0.5 = 1/2


def test_late_ticks_count_their_whole_time():
    assert _dose(44000, MIN, dt=120) == 2 * MIN
    d = D.Dose(10 ** 9)
    d.add(43000, 60000)  # one call of a whole minute
    assert d.cem43_ms == MIN


def test_never_undercounts_and_overcounts_by_less_than_1_1_percent():
    rng = Lcg(9)
    for _ in range(60):
        t = 36000 + rng.below(9001)
        got = _dose(t, 10 * MIN, dt=1000)
        x = (t - 43000) / 1000.0
        if x < 0:
            x *= 2
        exact = 10 * MIN * 2.0 ** x
        assert got >= exact - 1, (t, got, exact)
        assert got <= exact * 1.011 + 1, (t, got, exact)


def test_cold_pad_adds_next_to_nothing():
    assert _dose(30000, 120 * MIN, dt=1000) == 0
    assert _dose(36000, 120 * MIN, dt=1000) < 1000  # 2^-14 of 2 h: 439 ms


def test_exponent_rounds_up():
    assert D.rate_exponent_64(43000) == 0
    assert D.rate_exponent_64(44000) == 64
    assert D.rate_exponent_64(42000) == -128
    assert D.rate_exponent_64(43001) == 1  # 0.064 of a step: rounded up
    assert D.rate_exponent_64(60000) == D.rate_exponent_64(50000)  # clamped


def test_cap_stops_heat_and_refuses_a_restart():
    rig = Rig(plant=Plant(start_mc=30000))
    rig.heat.config.max_target_mc  # (defaults)
    rig.heat.dose.cap_ms = 2000  # 2 CEM43 seconds: reached within minutes at 42 C
    rig.heat.set_level("high")
    rig.heat.start(rig.now)
    assert rig.until(lambda: rig.heat.state == "off", 100 * 1200)
    assert rig.heat.fault is None and rig.heat.reason == "dose_cap"
    assert rig.heat.dose.cem43_ms >= 2000
    assert not rig.heater.leased
    err = raises(messages.RequestError, rig.heat.start, rig.now)
    assert err.code == messages.E_BAD_STATE and "dose_cap_ms" in err.message and "2000" in err.message
    rig.heat.config.dose_rest_ms = 5000
    assert rig.heat.reset_dose() is False  # a new session at once: the same account, still capped
    assert raises(messages.RequestError, rig.heat.start, rig.now).code == messages.E_BAD_STATE
    rig.tick(500)  # off for the rest time (5 s)
    assert rig.heat.reset_dose() is True
    rig.heat.start(rig.now)
    assert rig.heat.state == "heating"


def test_status_reports_the_dose():
    rig = Rig(plant=Plant(start_mc=43000))
    rig.tick(6000)  # 60 s, heat off, pad cooling from 43 C
    st = rig.heat.status()
    assert 0 < st["cem43_ms"] < 60000
    assert st["cem43_cap_ms"] == rig.heat.config.dose_cap_ms


SMALL_INT_LIMIT = 1 << 30  # the board's small ints: |x| < 2^30 (the VM's 64-bit port does not show it)
CEILING = 1 << 29  # cem43_ms saturates here (D.CEM43_MAX_MS)


def _small_ints(d):
    for name in d.__dict__:
        value = d.__dict__[name]
        assert -SMALL_INT_LIMIT < value < SMALL_INT_LIMIT, (name, value)


def test_the_dose_saturates_below_the_small_int_limit_and_stays_there():
    # a stuck-on heater keeps the pad at >= 50 C: 128 CEM43 ms per ms, the most add() counts
    d = D.Dose(60 * MIN)
    d.cem43_ms = CEILING - 3000
    for _ in range(100):  # 1 s of ticks: 128 000 CEM43 ms more than the room left
        d.add(50000, 10)
        assert d.cem43_ms <= CEILING
        _small_ints(d)
    assert d.cem43_ms == CEILING
    for t_mc in (60000, 50000, 43000, 20000):
        for dt in (10, 1000, 60000):
            d.add(t_mc, dt)
            assert d.cem43_ms == CEILING, (t_mc, dt)
            _small_ints(d)
    assert d.reached()
    # reached() holds at the ceiling whatever the cap (a saturated count is never "below the cap")
    big = D.Dose(10 ** 9)  # a cap above the ceiling
    big.cem43_ms = CEILING - 10
    big.add(50000, 60000)  # one late call of a whole minute
    assert big.cem43_ms == CEILING and big.reached()
    _small_ints(big)
    big.reset()
    assert big.cem43_ms == 0 and not big.reached()
    assert D.CEM43_MAX_MS == CEILING


def test_the_largest_intermediate_of_add_stays_below_the_small_int_limit():
    # inc = step * POW2_64[f] << n with step <= 50 ms and n <= 7 (50 C clamp); then the carry
    biggest = 0
    for t_mc in range(43000, 50001, 10):
        x64 = D.rate_exponent_64(t_mc)
        inc = 50 * D.POW2_64[x64 & 63] << (x64 >> 6)
        biggest = max(biggest, inc)
    assert biggest == 50 * 65536 * 128  # 419 430 400 at 50 C
    assert 65535 + biggest < SMALL_INT_LIMIT  # the fraction before the carry
    assert D.CEM43_MAX_MS + ((65535 + biggest) >> 16) < SMALL_INT_LIMIT  # the count before the clamp


def test_the_accounting_below_the_ceiling_is_unchanged():
    d = D.Dose(10 ** 9)
    start = CEILING - 10 * MIN - 1
    d.cem43_ms = start
    for _ in range(10 * MIN // 10):
        d.add(43000, 10)
    assert d.cem43_ms == start + 10 * MIN and not d.reached()  # exact, one short of the ceiling
    d.add(44000, 1)  # 2 CEM43 ms per ms at 44 C: now at the ceiling
    assert d.cem43_ms == CEILING


def test_a_latched_fault_on_a_hot_pad_keeps_the_dose_at_the_ceiling_and_status_works():
    # heat.tick adds the dose before its latched return: a pad that stays hot in FAULT
    rig = Rig(plant=Plant(start_mc=50000, ambient_mc=50000))
    rig.heat.dose.cem43_ms = CEILING - 5000
    assert rig.tick(1000) == "over_temp"  # (rig.tick returns at the fault)
    assert rig.tick(1000) is None  # 10 s latched at 50 C: 1 280 000 CEM43 ms more than the room left
    assert rig.heat.state == "fault" and rig.heat.pad.value_mc >= 49000
    assert rig.heat.dose.cem43_ms == CEILING and rig.heat.dose.reached()
    st = rig.heat.status()
    assert st["cem43_ms"] == CEILING and st["cem43_cap_ms"] == rig.heat.config.dose_cap_ms
    _small_ints(rig.heat.dose)
