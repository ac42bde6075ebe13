"""firmware.clock: MicroPython tick arithmetic on the board's 2^30 ms ring, in small ints.

The board's small ints end at 2^30 (beyond, every result is a heap object: a tick that
allocates); the VM tests run a 64-bit port, where they end at 2^62, so the bounds are
checked on the values themselves.
"""

from firmware.clock import TICKS_MAX, TICKS_PERIOD, Elapsed, ticks_add, ticks_diff
from tests.fw.portable import Lcg

HALF = TICKS_PERIOD // 2
SMALL_INT_LIMIT = 1 << 30  # the rp2 port: |x| < 2^30 is a small int


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


def test_elapsed_update_adds_each_step():
    elapsed = Elapsed(1000)
    elapsed.update(1010)
    assert elapsed.total_ms == 10
    elapsed.update(1010)
    assert elapsed.total_ms == 10
    elapsed.update(1500)
    assert elapsed.total_ms == 500
    elapsed.update(4321)
    assert elapsed.total_ms == 3321 and (elapsed.seconds, elapsed.ms) == (3, 321)


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


def test_elapsed_counts_across_the_old_small_int_limit_in_small_ints():
    # Device.uptime after 12.43 days: a plain ms count passes 2^30 here and then allocates every tick
    now = TICKS_MAX - 25  # the tick counter wraps on the way as well
    elapsed = Elapsed(now)
    start = SMALL_INT_LIMIT - 35
    elapsed.total_ms = start
    for i in range(1, 2001):
        now = ticks_add(now, 10)
        elapsed.update(now)
        assert elapsed.total_ms == start + 10 * i
        for name in elapsed.__dict__:  # every stored attribute, whatever it is called
            value = elapsed.__dict__[name]
            assert -SMALL_INT_LIMIT < value < SMALL_INT_LIMIT, (name, value)
    assert elapsed.total_ms == SMALL_INT_LIMIT - 35 + 20000 > SMALL_INT_LIMIT
    assert elapsed.seconds == (SMALL_INT_LIMIT - 35 + 20000) // 1000  # 1 073 761 s
    # 30 years of uptime still count in small ints, in the largest steps update() takes
    elapsed = Elapsed(0)
    now = 0
    step = HALF - 1
    for _ in range(6):
        now = ticks_add(now, step)
        elapsed.update(now)
    assert elapsed.total_ms == 6 * step
    years_s = 30 * 365 * 86400  # 946 080 000 s (2^30 s is 34 years)
    ms_before = elapsed.ms
    elapsed.seconds = years_s
    elapsed.update(ticks_add(now, step))
    assert elapsed.total_ms == years_s * 1000 + ms_before + step
    for name in elapsed.__dict__:
        assert -SMALL_INT_LIMIT < elapsed.__dict__[name] < SMALL_INT_LIMIT, name


class _Traced(int):
    """An int that records the magnitude of every arithmetic result computed from it."""

    seen = [0]

    def _t(self, value):
        if abs(value) > _Traced.seen[0]:
            _Traced.seen[0] = abs(value)
        return _Traced(value)

    def __add__(self, other):
        return self._t(int(self) + int(other))

    def __radd__(self, other):
        return self._t(int(other) + int(self))

    def __sub__(self, other):
        return self._t(int(self) - int(other))

    def __rsub__(self, other):
        return self._t(int(other) - int(self))

    def __and__(self, other):
        return self._t(int(self) & int(other))

    def __rand__(self, other):
        return self._t(int(other) & int(self))

    def __neg__(self):
        return self._t(-int(self))


def _ring_points():
    points = [0, 1, 2, 9, HALF - 2, HALF - 1, HALF, HALF + 1, TICKS_MAX - 9, TICKS_MAX - 1, TICKS_MAX]
    rng = Lcg(31)
    for _ in range(12):
        points.append(rng.below(TICKS_PERIOD))
    return points


def _deltas():
    out = [0, 1, -1, 10, -10, 5000, -5000, HALF - 1, -HALF, HALF, -HALF + 1, TICKS_MAX, -TICKS_MAX]
    rng = Lcg(77)
    for _ in range(12):
        out.append(rng.below(TICKS_PERIOD) - HALF)
    return out


def test_ticks_add_and_diff_equal_the_plain_formulas():
    for base in _ring_points():
        for delta in _deltas():
            assert ticks_add(base, delta) == (base + delta) & TICKS_MAX, (base, delta)
        for other in _ring_points():
            assert ticks_diff(base, other) == ((base - other + HALF) & TICKS_MAX) - HALF, (base, other)
    for base in (-5, TICKS_PERIOD, 3 * TICKS_PERIOD + 7):  # off the ring: the same results still
        for delta in (-(1 << 40), -TICKS_PERIOD, -1, 0, 1, TICKS_PERIOD, 1 << 40):
            assert ticks_add(base, delta) == (base + delta) & TICKS_MAX, (base, delta)
            assert ticks_diff(base, delta) == ((base - delta + HALF) & TICKS_MAX) - HALF, (base, delta)


def test_ticks_add_and_diff_compute_nothing_beyond_the_small_ints():
    # ticks on the ring, deltas within one period: every intermediate below 2^30 in magnitude
    # (the plain formulas reach 2^30 + 2^29 in ticks_diff and 2^31 - 2 in ticks_add at the wrap)
    _Traced.seen[0] = 0
    for base in _ring_points():
        for delta in _deltas():
            assert ticks_add(_Traced(base), _Traced(delta)) == (base + delta) & TICKS_MAX
        for other in _ring_points():
            assert ticks_diff(_Traced(base), _Traced(other)) == ((base - other + HALF) & TICKS_MAX) - HALF
    assert _Traced.seen[0] > HALF  # (the tracing saw the arithmetic)
    assert _Traced.seen[0] < SMALL_INT_LIMIT, _Traced.seen[0]


def test_elapsed_update_allocates_nothing_past_the_ports_small_ints_on_micropython():
    # the mechanism on the VM's own port: there small ints end at 2^62 (64-bit) or 2^30 (32-bit);
    # a count kept in ms passes that limit and allocates on every update, whole seconds do not
    try:
        import micropython
    except ImportError:
        return  # CPython: nothing to measure (the bounds are asserted above)
    import sys

    port_limit = (1 << 62) if sys.maxsize > (1 << 32) else (1 << 30)
    now = TICKS_MAX - 45
    elapsed = Elapsed(now)
    elapsed.total_ms = port_limit - 30  # the ms count just below the port's limit
    times = [ticks_add(now, 10 * i) for i in range(1, 21)]  # built before the heap is locked
    micropython.heap_lock()
    try:
        for t in times:
            elapsed.update(t)  # raises MemoryError if it needs the heap
    finally:
        micropython.heap_unlock()
    assert elapsed.total_ms == port_limit - 30 + 200
