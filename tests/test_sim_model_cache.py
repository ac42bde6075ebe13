"""The simulator's per-tick shortcuts give exactly what the plain computation gives.

The simulated hardware caches what rarely changes between 10 ms ticks (the electrode load's
R_eff and compliance limit per phase, the thermistor's ideal code per temperature, the heater
power per duty) and takes shortcuts in its hottest loops (read_raw's noise drawn as one sum
away from the rails, the thermal links' product in one go when it is small). Each test here drives the
cached object through changes a fault or a caller can make between two calls and compares it,
call by call, with a reference computed without any cache: a stale cache or a shortcut that
is not exact fails here. (Byte-identical traces are checked by the scenario tests.)
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.clock import TICKS_MAX, ticks_add, ticks_diff
from sim.board import SimBoard, SimHeater
from sim.clock import NEAR_WRAP_MS, VirtualClock
from sim.models import OPEN_CIRCUIT, ElectrodeLoad
from sim.rng import Rng
from sim.adc_noise import OversampleNoise
from sim.thermal import PadPlant
from sim.thermistor_model import CONV_MAX, OVERSAMPLE, ThermistorModel, ideal_code

# ---- references: the computations without caches or shortcuts -----------------------------


def reference_drive(series_ohm, parallel_ohm, capacitance_nf, compliance_mv, amp_ua, phase_us):
    """(delivered_ua, at_compliance, peak_mv) of ElectrodeLoad.drive, computed from scratch."""
    comp = max(compliance_mv, 0)
    if amp_ua <= 0:
        return 0, False, 0
    if series_ohm <= OPEN_CIRCUIT:
        return 0, True, comp
    # effective_r16 itself is not cached: a fresh load per call, to be sure
    r16 = ElectrodeLoad(series_ohm, parallel_ohm, capacitance_nf, compliance_mv).effective_r16(phase_us)
    max_ua = comp * 16000 // r16
    if amp_ua <= max_ua:
        return amp_ua, False, amp_ua * r16 // 16000
    return max_ua, True, comp


def reference_read_raw(true_code, noise_lsb, state):
    """(code, new rng state) of ThermistorModel.read_raw, with no shortcut or shared table.

    Where a conversion could clip (near a rail), every conversion is drawn and clamped. Elsewhere
    the sum is 16 * (v >> 4) plus an offset drawn with one number from a freshly built table of
    its distribution (that table is checked against enumeration in tests/fw/test_adc_noise.py).
    """
    v = true_code + 8
    n = noise_lsb << 4
    if not n:
        return min(max(v >> 4, 0), CONV_MAX) * OVERSAMPLE, state
    x = state
    if v - n >= 0 and v + n <= CONV_MAX * 16 + 15:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        return OVERSAMPLE * (v >> 4) + OversampleNoise(n, OVERSAMPLE).offset(v & 15, x >> 8), x
    total = 0
    for _ in range(OVERSAMPLE):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        total += min(max((v + x % (2 * n + 1) - n) >> 4, 0), CONV_MAX)
    return total, x


def reference_step(plant, dt_ms, duty_permille):
    """PadPlant.step as first written: products split in 8-bit halves, power from _power_mw."""
    from sim.thermal import _link_q8

    p = plant._power_mw(duty_permille)
    th, tp, ts = plant.heater_mc, plant.pad_mc, plant.skin_mc
    rh, rp, rs = plant._rem_h, plant._rem_p, plant._rem_s
    e_in = e_amb = e_core = 0
    left = dt_ms
    while left > 0:
        h = min(left, plant.substep_ms)
        left -= h

        def link(d, r_mk_per_w):
            q = _link_q8(h, r_mk_per_w)
            return (d >> 8) * q + (((d & 255) * q + 128) >> 8)

        e_hp = link(th - tp, plant.r_heater_pad_mk_per_w)
        e_ps = link(tp - ts, plant.r_pad_skin_mk_per_w)
        e_pa = link(tp - plant.ambient_mc, plant.r_pad_ambient_mk_per_w)
        e_sc = link(ts - plant.core_mc, plant.r_skin_core_mk_per_w)
        e_in += p * h
        e_amb += e_pa
        e_core += e_sc
        acc = rh + p * h - e_hp
        inc = acc // plant.heater_cap_mj_per_k
        th, rh = th + inc, acc - inc * plant.heater_cap_mj_per_k
        acc = rp + e_hp - e_ps - e_pa
        inc = acc // plant.pad_cap_mj_per_k
        tp, rp = tp + inc, acc - inc * plant.pad_cap_mj_per_k
        acc = rs + e_ps - e_sc
        inc = acc // plant.skin_cap_mj_per_k
        ts, rs = ts + inc, acc - inc * plant.skin_cap_mj_per_k
    return (th, tp, ts, rh, rp, rs, p, e_in, e_amb, e_core)


def plant_state(plant):
    return (
        plant.heater_mc, plant.pad_mc, plant.skin_mc, plant._rem_h, plant._rem_p, plant._rem_s,
        plant.power_mw, plant.in_uj, plant.lost_ambient_uj, plant.lost_core_uj,
    )


# ---- the electrode load: drive() caches R_eff and the compliance limit ----------------------


def test_series_change_between_two_pulses_of_the_same_phase_changes_the_current():
    load = ElectrodeLoad(compliance_mv=30000)
    first = load.drive(40000, 200)
    load.series_ohm = 3000  # peeling: same phase, same amplitude, a much higher resistance
    second = load.drive(40000, 200)
    assert second < first
    assert second == reference_drive(3000, 2000, 100, 30000, 40000, 200)[0]
    assert (load.delivered_ua, load.at_compliance, load.peak_mv) == reference_drive(3000, 2000, 100, 30000, 40000, 200)


def test_every_attribute_is_part_of_the_key():
    load = ElectrodeLoad(series_ohm=1000, parallel_ohm=20000, capacitance_nf=100, compliance_mv=30000)
    for name, value in (
        ("series_ohm", 2500),
        ("parallel_ohm", 60000),
        ("capacitance_nf", 400),
        ("compliance_mv", 20000),
        ("compliance_mv", -5),
        ("series_ohm", OPEN_CIRCUIT),
        ("series_ohm", 700),
    ):
        load.drive(25000, 500)  # warm the cache for the old values
        setattr(load, name, value)
        got = (load.drive(25000, 500), load.at_compliance, load.peak_mv)
        want = reference_drive(load.series_ohm, load.parallel_ohm, load.capacitance_nf, load.compliance_mv, 25000, 500)
        assert got == want, (name, value)


def _changes(**strategies):
    """Lists of (attribute, value): a few attributes changed at a time, often just one."""
    return st.lists(st.one_of([st.tuples(st.just(name), strategies[name]) for name in sorted(strategies)]), max_size=3)


_load_changes = _changes(
    series_ohm=st.one_of(st.just(OPEN_CIRCUIT), st.integers(-5, 30000)),
    parallel_ohm=st.integers(0, 200000),
    capacitance_nf=st.integers(0, 1000),
    compliance_mv=st.integers(-1000, 200000),
)
_pulses = st.tuples(st.integers(-1000, 100000), st.sampled_from([0, 1, 50, 200, 200, 200, 400, 2000]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_load_changes, _pulses), min_size=1, max_size=30))
def test_drive_matches_an_uncached_load_after_any_changes(steps):
    load = ElectrodeLoad()
    for changes, (amp_ua, phase_us) in steps:
        for name, value in changes:  # a fault or the pulse recorder's shadow copy changes attributes
            setattr(load, name, value)
        got = (load.drive(amp_ua, phase_us), load.delivered_ua, load.at_compliance, load.peak_mv)
        want = reference_drive(
            load.series_ohm, load.parallel_ohm, load.capacitance_nf, load.compliance_mv, amp_ua, phase_us
        )
        assert got == (want[0],) + want


def test_pulse_output_follows_an_electrode_fault_at_once():
    board = SimBoard(seed=3)
    out = board.pulse_out
    out.fire(0, 0, 20000, 200, 100, 20000, 200)
    assert out.last_delivered_ua[0] == 20000
    board.loads[0].series_ohm = 30000  # the partial-contact fault, between two identical pulses
    out.fire(0, 10000, 20000, 200, 100, 20000, 200)
    assert out.last_delivered_ua[0] == reference_drive(30000, 2000, 100, 100000, 20000, 200)[0] < 20000
    assert out.last_at_compliance[0]


# ---- the thermistor: read_raw's one-draw sum, sample()'s ideal-code cache -----------------


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.integers(0, 65536), st.integers(0, 600), st.integers(64900, 65536)),
    st.integers(0, 6),
    st.integers(1, 0xFFFFFFFF),
)
def test_read_raw_equals_its_reference(true_code, noise_lsb, state):
    th = ThermistorModel(Rng(1), start_mc=30000, noise_lsb=noise_lsb)
    th._v16 = true_code
    th._rng._state = state
    assert (th.read_raw(), th._rng._state) == reference_read_raw(true_code, noise_lsb, state)


def test_read_raw_at_the_rails_and_faults():
    for flag, want in (("open", 65520), ("short", 0)):
        th = ThermistorModel(Rng(5), start_mc=37000)
        setattr(th, flag, True)
        state = th._rng._state
        code = th.read_raw()
        assert (code, th._rng._state) == reference_read_raw(th.true_code(), th.noise_lsb, state)
        assert abs(code - want) < 16 * 4


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-30000, 140000),  # node temperature
            st.integers(0, 50),  # dt_ms (0: no lag step, only the code refresh)
            st.one_of(st.none(), st.integers(-30000, 140000)),  # sensor_mc set from outside
            st.one_of(st.none(), st.integers(1, 16383)),  # r_fixed_ohm changed
        ),
        min_size=1,
        max_size=40,
    )
)
def test_true_code_follows_the_bead_and_the_divider(steps):
    th = ThermistorModel(None, start_mc=30000)
    for node_mc, dt_ms, sensor_mc, r_fixed_ohm in steps:
        if sensor_mc is not None:
            th.sensor_mc = sensor_mc
        if r_fixed_ohm is not None:
            th.r_fixed_ohm = r_fixed_ohm
        th.sample(node_mc, dt_ms)
        assert th.true_code() == ideal_code(th.sensor_mc, th.r_fixed_ohm)


def test_update_follows_each_node():
    plant = PadPlant(pad_start_mc=35000)
    plant.step(60000, 1000)  # heater, pad and skin now all differ
    for node in ("pad", "heater", "skin"):
        th = ThermistorModel(None, plant=plant, node=node, tau_ms=1)
        th.update(100)  # 100 tau: at the node
        assert th.sensor_mc == getattr(plant, node + "_mc")
        assert th.true_code() == ideal_code(th.sensor_mc)


# ---- the pad: step()'s power cache and one-product links --------------------------------------

_knob_changes = _changes(
    supply_mv=st.integers(0, 32767),
    heater_milliohm=st.integers(2000, 40000),
    stuck_on=st.booleans(),
    heater_open=st.booleans(),
    ambient_mc=st.integers(0, 40000),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            _knob_changes,
            st.sampled_from([0, 0, 1000, 1000, 300, -5, 1200]),
            st.sampled_from([10, 10, 10, 0, 1, 250, 251, 1000, 60000]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_step_matches_the_plain_integration_after_any_knob_change(steps):
    plant = PadPlant()
    for changes, duty, dt_ms in steps:
        for name, value in changes:  # fault injection changes these between steps
            setattr(plant, name, value)
        want = reference_step(plant, dt_ms, duty)
        plant.step(dt_ms, duty)
        assert plant_state(plant) == want


def test_step_with_temperature_differences_beyond_the_short_products():
    # A heater 250 K above the pad: dT * q8 passes 2**30 at the 10 ms tick; still exact.
    plant = PadPlant()
    plant.set_state(280000, 30000, 33000)
    for duty in (1000, 0, 1000):
        want = reference_step(plant, 10, duty)
        plant.step(10, duty)
        assert plant_state(plant) == want


# ---- the noise source, clock and heater lease ---------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.lists(st.integers(0, 100), min_size=1, max_size=20))
def test_rng_draws_are_xorshift32(seed, half_ranges):
    rng = Rng(seed)
    x = rng._state
    for k in half_ranges:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        assert rng.symmetric(k) == x % (2 * k + 1) - k
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        assert rng.next_u32() == x


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, TICKS_MAX),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(-5, 5000), st.integers(0, 3000)), max_size=20),
)
def test_heater_lease_and_clock_across_the_wrap(start_ms, steps):
    for start in (start_ms, NEAR_WRAP_MS):
        clock = VirtualClock(start)
        heater = SimHeater(clock)
        until = None
        leased = False
        for duty, lease_ms, advance_ms in steps:
            heater.lease(duty, lease_ms)
            leased = duty > 0
            until = ticks_add(clock.ticks_ms(), lease_ms)
            before = clock.ticks_ms()
            clock.advance(advance_ms)
            assert clock.ticks_ms() == ticks_add(before, advance_ms)
            assert heater.on() == (leased and ticks_diff(until, clock.ticks_ms()) > 0)


def test_serial_reads_nothing_and_writes_up_to_capacity():
    board = SimBoard()
    serial = board.serial
    buf = bytearray(8)
    assert serial.read_into(buf) == 0 and buf == bytearray(8)
    serial.host_write(b"0123456789")
    assert serial.read_into(buf) == 8 and bytes(buf) == b"01234567"
    assert serial.read_into(buf) == 2 and bytes(buf[:2]) == b"89"
    serial.tx_capacity = 5
    assert serial.write(b"abc") == 3
    assert serial.write(memoryview(b"defg")) == 2
    assert serial.write(b"h") == 0
    assert serial.host_read() == b"abcde"
