"""firmware.heat.duty: time-proportioned output; a short lease renewed on every on-tick."""

from firmware.heat.config import HeatConfig
from firmware.heat.duty import TimeProportioner
from tests.fw.heat_fakes import FakeHeater


def _tp(config=None):
    config = config or HeatConfig()
    heater = FakeHeater()
    return config, heater, TimeProportioner(heater, config)


def test_window_on_ticks_come_first_and_average_exactly():
    config, heater, tp = _tp()
    ticks = config.window_ms // config.tick_ms
    pattern = []
    for _ in range(10 * ticks):
        pattern.append(1 if tp.drive(237) else 0)
    assert sum(pattern) == 237  # 23.7 % of 1000 ticks, residual carried window to window
    for w in range(10):
        window = pattern[w * ticks:(w + 1) * ticks]
        on = sum(window)
        assert on in (23, 24)
        assert window[:on] == [1] * on  # one contiguous pulse at the window start


def test_lease_on_every_on_tick_off_on_every_off_tick():
    config, heater, tp = _tp()
    for i in range(1000):
        heater.calls_this_tick = 0
        leases = heater.leases
        offs = heater.offs
        on = tp.drive(500)
        assert heater.calls_this_tick == 1  # exactly one call per tick
        if on:
            assert heater.leases == leases + 1 and heater.last_lease_ms == config.lease_ms
        else:
            assert heater.offs == offs + 1
    assert heater.max_lease_ms == config.lease_ms == 50


def test_full_and_zero_duty():
    config, heater, tp = _tp()
    for _ in range(300):
        assert tp.drive(1000)
    assert heater.offs == 0
    config, heater, tp = _tp()
    for _ in range(300):
        assert not tp.drive(0)
    assert heater.leases == 0


def test_duty_latched_per_window():
    config, heater, tp = _tp()
    assert tp.drive(100)
    for _ in range(9):
        tp.drive(900)  # mid-window change: applies from the next window
    assert not tp.drive(900)
    assert tp.window_duty == 100


def test_stalled_cpu_leaves_the_heater_on_at_most_one_lease():
    config, heater, tp = _tp()
    now = 0
    for _ in range(20):
        heater.now = now
        tp.drive(1000)
        now += 10
    last = now - 10
    # the CPU stalls here: nothing renews the lease
    assert heater.on_at(last + config.lease_ms - 1)
    assert not heater.on_at(last + config.lease_ms)


def test_off_restarts_the_window():
    config, heater, tp = _tp()
    for _ in range(30):
        tp.drive(500)
    tp.off()
    assert not heater.leased and not tp.on
    ons = 0
    for _ in range(100):
        ons += 1 if tp.drive(500) else 0
    assert ons == 50
