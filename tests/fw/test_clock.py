"""firmware.clock: MicroPython tick arithmetic on the board's 2^30 ms ring."""

from firmware.clock import TICKS_MAX, TICKS_PERIOD, Elapsed, ticks_add, ticks_diff

HALF = TICKS_PERIOD // 2


def test_ring_constants():
    assert TICKS_PERIOD == 1 << 30
    assert TICKS_MAX == (1 << 30) - 1


def test_ticks_add_wraps_forward():
    assert ticks_add(TICKS_MAX, 1) == 0
    assert ticks_add(TICKS_MAX - 4, 10) == 5
    assert ticks_add(0, TICKS_PERIOD) == 0
    assert ticks_add(123, 3 * TICKS_PERIOD + 7) == 130


def test_ticks_add_wraps_backward():
    assert ticks_add(0, -1) == TICKS_MAX
    assert ticks_add(5, -10) == TICKS_MAX - 4
    assert ticks_add(7, -TICKS_PERIOD) == 7


def test_ticks_add_stays_on_the_ring():
    for base in (0, 1, 12345, HALF, TICKS_MAX - 1, TICKS_MAX):
        for delta in (-(1 << 40), -TICKS_PERIOD - 1, -HALF, -1, 0, 1, HALF, TICKS_PERIOD + 1, 1 << 40):
            value = ticks_add(base, delta)
            assert 0 <= value <= TICKS_MAX, (base, delta, value)


def test_ticks_diff_plain():
    assert ticks_diff(100, 40) == 60
    assert ticks_diff(40, 100) == -60
    assert ticks_diff(7, 7) == 0


def test_ticks_diff_across_the_wrap():
    before = TICKS_MAX - 4
    after = 5
    assert ticks_diff(after, before) == 10
    assert ticks_diff(before, after) == -10
    assert ticks_diff(0, TICKS_MAX) == 1
    assert ticks_diff(TICKS_MAX, 0) == -1


def test_ticks_diff_range_is_half_the_ring():
    # MicroPython semantics: the result lies in [-2^29, 2^29 - 1].
    assert ticks_diff(HALF - 1, 0) == HALF - 1
    assert ticks_diff(HALF, 0) == -HALF
    assert ticks_diff(0, HALF) == -HALF
    assert ticks_diff(HALF + 1, 0) == -HALF + 1


def test_ticks_add_and_diff_are_inverse_near_the_wrap():
    for base in (TICKS_MAX - 5000, TICKS_MAX - 1, TICKS_MAX, 0, 3):
        for delta in (-HALF, -5001, -1, 0, 1, 10, 5001, HALF - 1):
            assert ticks_diff(ticks_add(base, delta), base) == delta, (base, delta)


def test_elapsed_counts_across_the_wrap():
    now = TICKS_MAX - 15  # 16 ms before the wrap
    elapsed = Elapsed(now)
    assert elapsed.total_ms == 0
    for _ in range(5):
        now = ticks_add(now, 10)
        elapsed.update(now)
    assert now < 100  # really wrapped
    assert elapsed.total_ms == 50


def test_elapsed_update_returns_total():
    elapsed = Elapsed(1000)
    assert elapsed.update(1010) == 10
    assert elapsed.update(1010) == 10
    assert elapsed.update(1500) == 500


def test_elapsed_ignores_backward_steps():
    elapsed = Elapsed(1000)
    elapsed.update(1100)
    elapsed.update(1050)  # a clock that stepped back adds nothing ...
    assert elapsed.total_ms == 100
    elapsed.update(1060)  # ... and counting resumes from where it stands
    assert elapsed.total_ms == 110


def test_elapsed_is_not_limited_to_the_diff_window():
    now = TICKS_MAX - 100
    elapsed = Elapsed(now)
    step = 1 << 28  # inside the 2^29 window, four of them cover the whole ring
    for _ in range(8):
        now = ticks_add(now, step)
        elapsed.update(now)
    assert elapsed.total_ms == 8 * step
    assert elapsed.total_ms > TICKS_PERIOD
