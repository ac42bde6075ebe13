"""firmware.output_check: no-load and over-current detection."""

from firmware import limits
from firmware import supervisor as sup
from firmware.output_check import OutputMonitor

CMD = 10000  # well above SENSE_MIN_CHECK_UA


def _run(monitor, pairs):
    """Feed (commanded, sensed) pairs; return the index and result of the first finding."""
    for i in range(len(pairs)):
        found = monitor.check(pairs[i][0], pairs[i][1])
        if found is not None:
            return i, found
    return None


def test_normal_output_is_fine():
    m = OutputMonitor(0)
    assert _run(m, [(CMD, CMD)] * 100) is None
    assert _run(m, [(CMD, CMD - 500), (CMD, CMD + limits.OVERCURRENT_MARGIN_UA)] * 50) is None


def test_nothing_commanded_is_fine():
    m = OutputMonitor(0)
    assert _run(m, [(0, 0)] * 100) is None


def test_no_load_latches_after_consecutive_pulses():
    m = OutputMonitor(2)
    found = _run(m, [(CMD, 0)] * 20)
    assert found is not None
    index, (name, text) = found
    assert index == limits.NO_LOAD_PULSES - 1
    assert name == sup.F_NO_LOAD
    assert "channel 2" in text and "%d uA commanded" % CMD in text


def test_no_load_threshold_is_a_quarter():
    m = OutputMonitor(0)
    at_quarter = CMD // limits.NO_LOAD_RATIO_DIV
    assert _run(m, [(CMD, at_quarter)] * 20) is None
    assert _run(m, [(CMD, at_quarter - 1)] * 20) is not None


def test_one_good_pulse_resets_the_no_load_count():
    m = OutputMonitor(0)
    pattern = [(CMD, 0)] * (limits.NO_LOAD_PULSES - 1) + [(CMD, CMD)]
    assert _run(m, pattern * 10) is None


def test_no_load_not_checked_at_low_amplitude():
    m = OutputMonitor(0)
    low = limits.SENSE_MIN_CHECK_UA - 1
    assert _run(m, [(low, 0)] * 50) is None


def test_commanded_zero_resets_counts():
    m = OutputMonitor(0)
    pattern = [(CMD, 0)] * (limits.NO_LOAD_PULSES - 1) + [(0, 0)]
    assert _run(m, pattern * 10) is None


def test_relative_overcurrent():
    m = OutputMonitor(1)
    over = CMD + limits.OVERCURRENT_MARGIN_UA + 1
    found = _run(m, [(CMD, over)] * 10)
    assert found is not None
    index, (name, text) = found
    assert index == limits.OVERCURRENT_PULSES - 1
    assert name == sup.F_OVERCURRENT
    assert "channel 1" in text and str(over) in text and str(CMD + limits.OVERCURRENT_MARGIN_UA) in text


def test_single_spike_is_not_a_fault():
    m = OutputMonitor(0)
    over = CMD + limits.OVERCURRENT_MARGIN_UA + 1
    assert _run(m, [(CMD, over), (CMD, CMD)] * 20) is None


def test_absolute_overcurrent_is_immediate_even_when_idle():
    m = OutputMonitor(0)
    over = limits.AMP_LIMIT_UA + limits.OVERCURRENT_MARGIN_UA + 1
    found = m.check(0, over)
    assert found is not None and found[0] == sup.F_OVERCURRENT
    assert str(limits.AMP_LIMIT_UA) in found[1]


def test_reset_clears_counts():
    m = OutputMonitor(0)
    for _ in range(limits.NO_LOAD_PULSES - 1):
        assert m.check(CMD, 0) is None
    m.reset()
    for _ in range(limits.NO_LOAD_PULSES - 1):
        assert m.check(CMD, 0) is None
