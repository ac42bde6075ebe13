"""firmware.stim.Channel: bounded ramp, clamp, interrupt, pulse scheduling in every mode."""

from firmware import envelope
from firmware import limits
from firmware.stim import BREACH, Channel, ramp_step_for, triangle_permille
from tests.fw.portable import Lcg

WINDOW_US = limits.TICK_MS * 1000


class RecordingOutput:
    def __init__(self, accept=True):
        self.accept = accept
        self.pulses = []  # (ch, start_us, amp1, phase1, gap, amp2, phase2)
        self.refused = 0

    def fire(self, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us):
        if not self.accept:
            self.refused += 1
            return False
        self.pulses.append((ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us))
        return True


def _channel(fields=None, amp_ua=10000, index=0):
    """A channel with a setting, already at amp_ua (ramped there without firing)."""
    ch = Channel(index)
    if fields is not None:
        ch.apply_setting(envelope.parse_setting(fields))
    ch.set_target(amp_ua)
    for _ in range(100000):
        if ch.amp_ua == ch.target_ua:
            break
        ch.ramp()
    assert ch.amp_ua == ch.target_ua
    ch._amp_now = ch.amp_ua  # what fires follows the ramp in a device, which fires every tick it ramps
    return ch


def _run(ch, ticks, out=None):
    """Fire `ticks` windows; returns (out, [(tick, absolute start us, pulse)], per-tick (phase, rate))."""
    if out is None:
        out = RecordingOutput()
    timeline = []
    per_tick = []
    for t in range(ticks):
        before = len(out.pulses)
        result = ch.fire_window(out, WINDOW_US)
        assert result != BREACH, "breach at tick %d" % t
        for pulse in out.pulses[before:]:
            timeline.append((t, t * WINDOW_US + pulse[1], pulse))
        per_tick.append((ch.phase_us, ch.rate_hz))
    return out, timeline, per_tick


def _check_balanced(timeline, setting):
    for _, _, p in timeline:
        assert p[2] * p[3] == p[5] * p[6], p
        assert p[6] == p[3] * setting.ratio and p[4] == setting.gap_us, p
        assert 0 <= p[1] < WINDOW_US, p


# ---- amplitude: ramp, clamp, interruption -------------------------------------------


def test_starts_at_zero_with_the_default_setting():
    ch = Channel(0)
    assert ch.amp_ua == 0 and ch.target_ua == 0 and ch.fired_ua == 0
    assert ch.setting.mode == "continuous" and ch.setting.waveform == "symmetric"
    assert ch.max_amp_ua == envelope.max_amp_ua(ch.setting)
    assert ch.ramp_ms == limits.RAMP_DEFAULT_MS


def test_ramp_step_for():
    assert ramp_step_for(20000, 5000) == 40  # 20 mA in 5 s: 40 uA per 10 ms tick
    assert ramp_step_for(20001, 5000) == 41  # rounded up: the ramp never takes longer than asked
    assert ramp_step_for(100, 5000) == 10  # at least 10 uA per tick
    assert ramp_step_for(0, 5000) == 10
    assert ramp_step_for(80000, 1000) == limits.RAMP_MAX_UA_PER_TICK
    assert ramp_step_for(80000, 30000) == 27
    for target in (1, 999, 5000, 40000, 80000):
        for ramp_ms in (limits.RAMP_MIN_MS, limits.RAMP_DEFAULT_MS, limits.RAMP_MAX_MS):
            step = ramp_step_for(target, ramp_ms)
            assert 10 <= step <= limits.RAMP_MAX_UA_PER_TICK


def test_soft_start_takes_the_configured_ramp_time():
    for ramp_ms in (limits.RAMP_MIN_MS, limits.RAMP_DEFAULT_MS, 12000):
        ch = Channel(0)
        ch.ramp_ms = ramp_ms
        ch.set_target(20000)
        ticks = 0
        while ch.amp_ua < 20000:
            ch.ramp()
            ticks += 1
        full = ramp_ms // limits.TICK_MS
        assert full * 97 // 100 <= ticks <= full, (ramp_ms, ticks)  # the step rounds up: never slower
        if 20000 * limits.TICK_MS % ramp_ms == 0:
            assert ticks == full


def test_after_an_interruption_the_soft_start_takes_the_ramp_time_again():
    # turning down from 40 mA uses a large step (one ramp time for the whole span); an
    # interruption must not leave that step for the restart from zero to the low target
    ch = Channel(0)
    ch.ramp_ms = 5000
    ch.set_target(40000)
    while ch.amp_ua < 40000:
        ch.ramp()
    ch.set_target(2000)
    ch.ramp()
    ch.off()  # a pause, a fault, a refused pulse: output to zero, target kept
    fresh = Channel(1)
    fresh.ramp_ms = 5000
    fresh.set_target(2000)
    for channel in (ch, fresh):
        channel.ticks = 0
        while channel.amp_ua < 2000:
            channel.ramp()
            channel.ticks += 1
    assert ch.ticks == fresh.ticks == 2000 // 10, (ch.ticks, fresh.ticks)  # at the least step, 10 uA a tick


def test_ramp_up_in_bounded_steps():
    ch = Channel(0)
    ch.set_target(1000)
    step = ch.ramp_step_ua
    seen = [ch.amp_ua]
    for _ in range(200):
        ch.ramp()
        seen.append(ch.amp_ua)
    for i in range(1, len(seen)):
        assert 0 <= seen[i] - seen[i - 1] <= step
    assert seen[-1] == 1000
    assert seen.index(1000) == (1000 + step - 1) // step  # as fast as allowed, no faster


def test_ramp_does_not_overshoot_an_odd_target():
    ch = Channel(0)
    ch.set_target(12345)
    step = ch.ramp_step_ua
    for _ in range(1000):
        ch.ramp()
        assert ch.amp_ua <= ch.target_ua
    assert ch.amp_ua == 12345 and step == ramp_step_for(12345, ch.ramp_ms)


def test_ramp_down_in_bounded_steps():
    ch = _channel(amp_ua=5000)
    ch.set_target(1000)
    step = ch.ramp_step_ua
    previous = ch.amp_ua
    for _ in range(2000):
        ch.ramp()
        assert 0 <= previous - ch.amp_ua <= step
        assert ch.amp_ua >= 1000
        previous = ch.amp_ua
    assert ch.amp_ua == 1000


def test_set_target_clamps_to_the_settings_maximum():
    ch = Channel(0)
    ch.set_target(limits.AMP_LIMIT_UA + 1)
    assert ch.target_ua == ch.max_amp_ua <= limits.AMP_LIMIT_UA
    ch.set_target(10 ** 12)
    assert ch.target_ua == ch.max_amp_ua
    ch.set_target(-5)
    assert ch.target_ua == 0
    small = Channel(1)
    small.apply_setting(envelope.parse_setting({"rate_hz": 250, "phase_us": 400, "area_cm2": 2}))
    assert small.max_amp_ua < 10000
    small.set_target(20000)
    assert small.target_ua == small.max_amp_ua


def test_random_targets_never_exceed_maximum_or_step():
    rng = Lcg(7)
    ch = Channel(0)
    ch.apply_setting(envelope.parse_setting({"rate_hz": 250, "phase_us": 400, "area_cm2": 3}))
    top = ch.max_amp_ua
    previous = 0
    for _ in range(3000):
        step = ch.ramp_step_ua
        if rng.below(20) == 0:
            ch.set_target(rng.below(3 * top) - 1000)
        else:
            ch.ramp()
            assert 0 <= ch.amp_ua <= top
            assert -step <= ch.amp_ua - previous <= step
            assert step <= limits.RAMP_MAX_UA_PER_TICK
        previous = ch.amp_ua


def test_interrupt_zeroes_everything():
    ch = _channel(amp_ua=800)
    out, _, _ = _run(ch, 5)
    assert ch.amp_ua > 0 and ch.fired_ua > 0 and out.pulses
    ch.interrupt()
    assert ch.amp_ua == 0 and ch.target_ua == 0 and ch.fired_ua == 0
    ch.ramp()
    assert ch.amp_ua == 0  # the target is gone: nothing comes back by itself


def test_off_keeps_target_and_ramps_again_from_zero():
    ch = _channel(amp_ua=8000)
    ch.off()
    assert ch.amp_ua == 0 and ch.target_ua == 8000 and ch.fired_ua == 0
    ch.ramp()
    assert ch.amp_ua == ch.ramp_step_ua
    out, timeline, _ = _run(ch, 1)
    assert timeline[0][2][2] == ch.ramp_step_ua  # the first pulse is at the bottom of the ramp


def test_apply_setting_is_an_interruption():
    ch = _channel(amp_ua=8000)
    ch.apply_setting(envelope.parse_setting({"rate_hz": 80}))
    assert ch.amp_ua == 0 and ch.target_ua == 8000


def test_no_pulses_at_zero_amplitude():
    ch = Channel(0)
    out = RecordingOutput()
    assert ch.fire_window(out, WINDOW_US) == 0
    assert out.pulses == [] and ch.fired_ua == 0 and ch.phase_us == 0 and ch.rate_hz == 0


def test_refused_pulse_restarts_from_zero():
    ch = _channel(amp_ua=5000)
    out = RecordingOutput(accept=False)
    assert ch.fire_window(out, WINDOW_US) == 0
    assert out.refused == 1
    assert ch.fired_ua == 0 and ch.amp_ua == 0 and ch.target_ua == 5000


def test_breach_guard_when_amplitude_passes_the_approved_maximum():
    ch = _channel(amp_ua=5000)
    ch.max_amp_ua = 4000  # as if memory were corrupted: the last guard must catch it
    out = RecordingOutput()
    assert ch.fire_window(out, WINDOW_US) == BREACH
    assert out.pulses == [] and ch.amp_ua == 0


# ---- pulse scheduling ---------------------------------------------------------------------


def test_continuous_rate_and_phase():
    ch = _channel({"mode": "continuous", "rate_hz": 80, "phase_us": 150, "gap_us": 30}, 12000, index=1)
    out, timeline, per_tick = _run(ch, 100)
    assert len(timeline) == 80  # one second
    starts = [t[1] for t in timeline]
    assert starts == [k * 12500 for k in range(80)]
    for _, _, p in timeline:
        assert p == (1, p[1], 12000, 150, 30, 12000, 150)
    assert per_tick[-1] == (150, 80)
    fired = ch.fire_window(out, WINDOW_US)
    assert fired == 1 and ch.fired_ua == 12000 and ch.fired_count == 1


def test_pulse_times_follow_the_period_across_windows():
    ch = _channel({"rate_hz": 150}, 2000)
    out, timeline, _ = _run(ch, 20)
    absolute = [t[1] for t in timeline]
    assert absolute == [k * (1000000 // 150) for k in range(len(absolute))]
    assert len(absolute) == 31  # 200 ms at a 6666 us period: 0 .. 199980 us


def test_acupuncture_two_hertz():
    ch = _channel({"mode": "acupuncture", "rate_hz": 2, "phase_us": 250}, 20000)
    out, timeline, _ = _run(ch, 300)  # 3 s
    assert [t[1] for t in timeline] == [0, 500000, 1000000, 1500000, 2000000, 2500000]
    for _, _, p in timeline:
        assert p[2] == 20000 and p[3] == 250


def test_burst_trains():
    ch = _channel({"mode": "burst", "burst_hz": 100, "train_pulses": 7, "train_ms": 500}, 15000)
    out, timeline, per_tick = _run(ch, 200)  # 2 s: four trains
    starts = [t[1] for t in timeline]
    assert len(starts) == 28
    for train in range(4):
        expected = [train * 500000 + k * 10000 for k in range(7)]
        assert starts[train * 7:(train + 1) * 7] == expected, (train, starts)
    assert per_tick[0][1] == 100


def test_burst_train_timing_other_rates():
    ch = _channel({"mode": "burst", "burst_hz": 80, "train_pulses": 10, "train_ms": 1000}, 5000)
    out, timeline, _ = _run(ch, 300)
    starts = [t[1] for t in timeline]
    assert len(starts) == 30
    period = 1000000 // 80
    for i in range(len(starts)):
        assert starts[i] == (i // 10) * 1000000 + (i % 10) * period


def test_modulated_amplitude_stays_within_depth_over_a_period():
    ch = _channel({"mode": "modulated", "rate_hz": 100, "mod_amp_pct": 40, "mod_amp_ms": 2000}, 20000)
    out, timeline, _ = _run(ch, 200)  # one full period
    amps = [t[2][2] for t in timeline]
    assert min(amps) >= 20000 - 20000 * 40 // 100 and max(amps) <= 20000
    assert min(amps) <= 12100 and max(amps) == 20000  # the whole depth is reached
    assert amps[0] == 20000 and amps.index(min(amps)) in range(95, 106)  # the bottom half-way through
    _check_balanced(timeline, ch.setting)


def test_modulated_width_stays_within_depth_over_a_period():
    ch = _channel({"mode": "modulated", "rate_hz": 100, "phase_us": 200, "mod_width_pct": 50, "mod_width_ms": 1000}, 20000)
    out, timeline, per_tick = _run(ch, 100)
    phases = [t[2][3] for t in timeline]
    assert min(phases) == 100 and max(phases) == 200
    assert all(t[2][2] == 20000 for t in timeline)
    _check_balanced(timeline, ch.setting)


def test_modulated_rate_stays_within_depth_over_a_period():
    ch = _channel({"mode": "modulated", "rate_hz": 100, "mod_rate_pct": 50, "mod_rate_ms": 4000}, 20000)
    out, timeline, per_tick = _run(ch, 400)
    rates = [r for _, r in per_tick]
    assert min(rates) == 50 and max(rates) == 100
    starts = [t[1] for t in timeline]
    gaps = [starts[i + 1] - starts[i] for i in range(len(starts) - 1)]
    assert min(gaps) >= 1000000 // 100 and max(gaps) <= 1000000 // 50
    assert 50 * 4 < len(starts) < 100 * 4  # fewer pulses than at the full rate


def test_modulated_all_three_at_once_stay_in_range():
    fields = {"mode": "modulated", "rate_hz": 120, "phase_us": 250, "mod_amp_pct": 30, "mod_amp_ms": 1500,
              "mod_width_pct": 40, "mod_width_ms": 2500, "mod_rate_pct": 60, "mod_rate_ms": 3500}
    ch = _channel(fields, 30000)
    out, timeline, per_tick = _run(ch, 1050)  # lcm of the periods
    for _, _, p in timeline:
        assert 21000 <= p[2] <= 30000 and 150 <= p[3] <= 250
    for phase, rate in per_tick:
        assert 150 <= phase <= 250 and 48 <= rate <= 120
    _check_balanced(timeline, ch.setting)


def test_strength_duration_width_falls_as_rate_rises():
    fields = {"mode": "strength_duration", "rate_hz": 80, "sd_rate_hz": 160, "phase_us": 240,
              "sd_width_pct": 50, "sd_period_ms": 2000}
    ch = _channel(fields, 10000)
    out, timeline, per_tick = _run(ch, 200)
    phases = [ph for ph, _ in per_tick]
    rates = [r for _, r in per_tick]
    assert max(phases) == 240 and min(phases) == 120
    assert min(rates) == 80 and max(rates) == 160
    for i in range(1, len(per_tick)):
        # opposite directions, tick by tick
        dp = per_tick[i][0] - per_tick[i - 1][0]
        dr = per_tick[i][1] - per_tick[i - 1][1]
        assert dp * dr <= 0, (per_tick[i - 1], per_tick[i])
    # the narrowest pulses come at the highest rate
    assert rates[phases.index(min(phases))] == 160
    _check_balanced(timeline, ch.setting)


def test_asymmetric_second_phase_is_longer_at_a_fraction_of_the_current():
    for ratio in (2, 3, 4):
        ch = _channel({"waveform": "asymmetric", "asym_ratio": ratio, "phase_us": 100, "rate_hz": 100}, 10001)
        out, timeline, _ = _run(ch, 10)
        for _, _, p in timeline:
            assert p[3] == 100 and p[6] == 100 * ratio
            assert p[5] == 10001 // ratio and p[2] == p[5] * ratio  # equal charge, exactly
            assert p[2] * p[3] == p[5] * p[6]


def test_triangle():
    assert triangle_permille(0, 1000) == 0
    assert triangle_permille(500, 1000) == 1000
    assert triangle_permille(250, 1000) == 500
    assert triangle_permille(999, 1000) == 2
    for period in (500, 777, 60000):
        for pos in range(0, period, period // 50 + 1):
            assert 0 <= triangle_permille(pos, period) <= 1000


def test_modulation_clock_wraps():
    ch = _channel({"mode": "modulated", "mod_amp_pct": 50, "mod_amp_ms": 1000}, 10000)
    ch._mod_ms = 2 * 3600 * 1000 - limits.TICK_MS
    out = RecordingOutput()
    ch.fire_window(out, WINDOW_US)
    assert ch._mod_ms == 0


def test_burst_trains_never_crowd_their_neighbours():
    # the tightest train the envelope accepts: the next train starts one burst period after the last pulse
    ch = _channel({"mode": "burst", "burst_hz": 60, "train_pulses": 16, "train_ms": 267}, 5000)
    out, timeline, _ = _run(ch, 300)
    starts = [t[1] for t in timeline]
    assert len(starts) >= 3 * 16
    gaps = [starts[i + 1] - starts[i] for i in range(len(starts) - 1)]
    assert min(gaps) == 1000000 // 60


def test_turning_down_takes_one_ramp_time_not_one_per_target():
    ch = Channel(0)
    ch.set_target(80000)
    for _ in range(ch.ramp_ms // limits.TICK_MS + 1):
        ch.ramp()
    assert ch.amp_ua == 80000
    ch.set_target(1000)
    ticks = 0
    while ch.amp_ua > 1000:
        before = ch.amp_ua
        ch.ramp()
        assert before - ch.amp_ua <= limits.RAMP_MAX_UA_PER_TICK
        ticks += 1
    assert ticks <= ch.ramp_ms // limits.TICK_MS + 1, ticks


def test_a_ramp_and_an_amplitude_modulation_rising_together_fire_no_steeper_than_the_steepest_ramp():
    """Each was bounded alone (80 mA/s), and together their slopes added: a full-depth 2 s
    modulation at 250 Hz with the target raised to 80 mA mid-rise fired 1.56 mA more in one
    tick (156 mA/s). Every start phase of the modulation and a few ramp times are tried."""
    fields = {"mode": "modulated", "rate_hz": 250, "phase_us": 50, "mod_amp_pct": 100, "mod_amp_ms": 2000}
    worst_ua = 0
    for ramp_ms in (1000, 2000):
        for wait_ticks in range(0, 200, 20):  # where in the modulation's period the ramp begins
            ch = Channel(0)
            ch.apply_setting(envelope.parse_setting(fields))
            ch.ramp_ms = ramp_ms
            ch.set_target(1000)
            out = RecordingOutput()
            last_ua = None
            for tick in range(400):
                if tick == wait_ticks:
                    ch.set_target(80000)
                ch.ramp()
                start = len(out.pulses)
                ch.fire_window(out, WINDOW_US)
                if len(out.pulses) > start:
                    fired_ua = out.pulses[start][2]
                    if last_ua is not None and fired_ua - last_ua > worst_ua:
                        worst_ua = fired_ua - last_ua
                    last_ua = fired_ua
    assert 0 < worst_ua <= limits.RAMP_MAX_UA_PER_TICK, worst_ua
