"""firmware.stim.Channel: bounded ramp, clamp, interrupt, pulse scheduling."""

from firmware import limits
from firmware.stim import Channel
from tests.fw.portable import Lcg

RAMP = limits.RAMP_UA_PER_TICK


class RecordingOutput:
    def __init__(self, accept=True):
        self.accept = accept
        self.pulses = []

    def fire(self, ch, start_us, amp_ua, phase_us, gap_us):
        if not self.accept:
            return False
        self.pulses.append((ch, start_us, amp_ua, phase_us, gap_us))
        return True


def test_starts_at_zero():
    ch = Channel(0)
    assert ch.amp_ua == 0 and ch.target_ua == 0 and ch.fired_ua == 0
    assert ch.amp_limit_ua == limits.AMP_LIMIT_UA


def test_ramp_up_in_bounded_steps():
    ch = Channel(0)
    ch.set_target(1000)
    seen = [ch.amp_ua]
    for _ in range(100):
        ch.ramp()
        seen.append(ch.amp_ua)
    for i in range(1, len(seen)):
        assert 0 <= seen[i] - seen[i - 1] <= RAMP
    assert seen[-1] == 1000
    assert seen.index(1000) == (1000 + RAMP - 1) // RAMP  # as fast as allowed, no faster


def test_ramp_does_not_overshoot_an_odd_target():
    ch = Channel(0)
    ch.set_target(RAMP * 3 + 1)
    for _ in range(10):
        ch.ramp()
        assert ch.amp_ua <= ch.target_ua
    assert ch.amp_ua == RAMP * 3 + 1


def test_ramp_down_in_bounded_steps():
    ch = Channel(0)
    ch.set_target(500)
    for _ in range(50):
        ch.ramp()
    ch.set_target(100)
    previous = ch.amp_ua
    for _ in range(50):
        ch.ramp()
        assert 0 <= previous - ch.amp_ua <= RAMP
        assert ch.amp_ua >= 100
        previous = ch.amp_ua
    assert ch.amp_ua == 100


def test_set_target_clamps():
    ch = Channel(0)
    ch.set_target(limits.AMP_LIMIT_UA + 1)
    assert ch.target_ua == limits.AMP_LIMIT_UA
    ch.set_target(10 ** 12)
    assert ch.target_ua == limits.AMP_LIMIT_UA
    ch.set_target(-5)
    assert ch.target_ua == 0
    small = Channel(1, amp_limit_ua=300)
    small.set_target(1000)
    assert small.target_ua == 300


def test_random_targets_never_exceed_limit_or_step():
    rng = Lcg(7)
    ch = Channel(0, amp_limit_ua=2000)
    previous = 0
    for _ in range(3000):
        if rng.below(20) == 0:
            ch.set_target(rng.below(5000) - 1000)
        ch.ramp()
        assert 0 <= ch.amp_ua <= 2000
        step = ch.amp_ua - previous
        assert -RAMP <= step <= RAMP
        previous = ch.amp_ua


def test_interrupt_zeroes_everything():
    ch = Channel(0)
    ch.set_target(800)
    out = RecordingOutput()
    for _ in range(30):
        ch.ramp()
        ch.fire_window(out, 10000)
    assert ch.amp_ua > 0 and ch.fired_ua > 0
    ch.interrupt()
    assert ch.amp_ua == 0 and ch.target_ua == 0 and ch.fired_ua == 0
    ch.ramp()
    assert ch.amp_ua == 0  # the target is gone: nothing comes back by itself


def test_off_keeps_target_and_ramps_again_from_zero():
    ch = Channel(0)
    ch.set_target(800)
    for _ in range(30):
        ch.ramp()
    ch.off()
    assert ch.amp_ua == 0 and ch.target_ua == 800 and ch.fired_ua == 0
    ch.ramp()
    assert ch.amp_ua == RAMP


def test_no_pulses_at_zero_amplitude():
    ch = Channel(0)
    out = RecordingOutput()
    assert ch.fire_window(out, 10000) == 0
    assert out.pulses == []
    assert ch.fired_ua == 0


def test_one_pulse_per_period_with_the_fixed_waveform():
    ch = Channel(1)
    ch.set_target(RAMP)
    ch.ramp()
    out = RecordingOutput()
    assert ch.fire_window(out, limits.PULSE_PERIOD_US) == 1
    assert out.pulses == [(1, 0, RAMP, limits.PHASE_US, limits.GAP_US)]
    assert ch.fired_ua == RAMP


def test_pulse_times_follow_the_period_across_windows():
    ch = Channel(0)
    ch.set_target(1000)
    ch.ramp()
    out = RecordingOutput()
    window = 3000
    absolute = []
    for w in range(20):
        before = len(out.pulses)
        ch.fire_window(out, window)
        for pulse in out.pulses[before:]:
            assert 0 <= pulse[1] < window
            absolute.append(w * window + pulse[1])
    assert absolute == [k * limits.PULSE_PERIOD_US for k in range(len(absolute))]
    assert len(absolute) == 6  # 60 ms of windows at 100 Hz


def test_refused_pulses_are_not_counted_as_fired():
    ch = Channel(0)
    ch.set_target(1000)
    ch.ramp()
    out = RecordingOutput(accept=False)
    assert ch.fire_window(out, 10000) == 0
    assert ch.fired_ua == 0
