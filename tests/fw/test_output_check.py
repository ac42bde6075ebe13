"""firmware.output_check: no-load (at compliance) and over-current detection per pulse."""

from firmware import limits
from firmware.output_check import OutputMonitor, overcurrent_allowed_ua

CMD = 10000  # well above SENSE_MIN_CHECK_UA


def _run(monitor, triples):
    """Feed (commanded, delivered, at_compliance); return the index of the first finding, or None."""
    for i in range(len(triples)):
        if monitor.check(triples[i][0], triples[i][1], triples[i][2]):
            return i
    return None


def test_normal_output_is_fine():
    m = OutputMonitor(0)
    assert _run(m, [(CMD, CMD, False)] * 100) is None
    assert _run(m, [(CMD, CMD - 500, False), (CMD, CMD + limits.OVERCURRENT_MARGIN_UA, False)] * 50) is None
    assert m.fault == "" and m.message == ""


def test_nothing_commanded_is_fine():
    m = OutputMonitor(0)
    assert _run(m, [(0, 0, False)] * 50 + [(0, 0, True)] * 50) is None


def test_no_load_latches_on_the_first_pulse_at_compliance():
    m = OutputMonitor(1)
    assert _run(m, [(CMD, 0, True)]) == 0
    assert m.fault == "no_load:1"
    assert "channel 1" in m.message and "0 uA delivered for %d uA commanded" % CMD in m.message
    assert "compliance" in m.message


def test_no_load_needs_the_compliance_voltage():
    # little current but the stage is not saturated: a low-impedance load or sense noise, not an open electrode
    m = OutputMonitor(0)
    assert _run(m, [(CMD, 0, False)] * 20) is None


def test_no_load_threshold_is_a_quarter():
    at_quarter = CMD // limits.NO_LOAD_RATIO_DIV
    assert _run(OutputMonitor(0), [(CMD, at_quarter, True)] * 20) is None
    assert _run(OutputMonitor(0), [(CMD, at_quarter - 1, True)]) == 0


def test_dead_band_never_trips_no_load():
    low = limits.SENSE_MIN_CHECK_UA - 1
    for commanded in (1, limits.AMP_STEP_UA, low):
        assert _run(OutputMonitor(0), [(commanded, 0, True)] * 50) is None
    assert _run(OutputMonitor(0), [(limits.SENSE_MIN_CHECK_UA, 0, True)]) == 0


def test_overcurrent_margin():
    assert overcurrent_allowed_ua(0) == limits.OVERCURRENT_MARGIN_UA
    assert overcurrent_allowed_ua(CMD) == CMD + limits.OVERCURRENT_MARGIN_UA  # 1/8 of 10 mA is under 2 mA
    assert overcurrent_allowed_ua(40000) == 45000  # 1/8 above 16 mA


def test_relative_overcurrent_after_two_pulses():
    m = OutputMonitor(1)
    over = CMD + limits.OVERCURRENT_MARGIN_UA + 1
    assert _run(m, [(CMD, over, False)] * 10) == limits.OVERCURRENT_PULSES - 1 == 1
    assert m.fault == "overcurrent:1"
    assert "channel 1" in m.message and str(over) in m.message and str(CMD + limits.OVERCURRENT_MARGIN_UA) in m.message


def test_overcurrent_latches_at_low_rates_too():
    """At 50 Hz and below a pulse comes every other tick or rarer: ticks with no pulse
    (commanded 0, delivered 0) between two over-limit pulses do not break the row."""
    over = CMD + limits.OVERCURRENT_MARGIN_UA + 1
    for gap_ticks in (1, 4, 99):
        m = OutputMonitor(0)
        run = [(CMD, over, False)] + [(0, 0, False)] * gap_ticks + [(CMD, over, False)]
        assert _run(m, run) == gap_ticks + 1, gap_ticks
    m = OutputMonitor(0)
    spaced = ([(CMD, over, False)] + [(0, 0, False)] * 3 + [(CMD, CMD, False)] + [(0, 0, False)] * 3) * 10
    assert _run(m, spaced) is None  # a good pulse in between still breaks the row


def test_single_spike_is_not_a_fault():
    over = CMD + limits.OVERCURRENT_MARGIN_UA + 1
    assert _run(OutputMonitor(0), [(CMD, over, False), (CMD, CMD, False)] * 20) is None


def test_absolute_overcurrent_is_immediate_even_when_idle():
    m = OutputMonitor(0)
    over = limits.AMP_LIMIT_UA + limits.OVERCURRENT_MARGIN_UA + 1
    assert m.check(0, over, False) is True
    assert m.fault == "overcurrent:0" and str(limits.AMP_LIMIT_UA) in m.message
    assert OutputMonitor(0).check(0, over - 1, False) is False


def test_reset_clears_the_count_and_a_pulseless_tick_does_not():
    over = CMD + limits.OVERCURRENT_MARGIN_UA + 1
    m = OutputMonitor(0)
    for _ in range(20):
        assert m.check(CMD, over, False) is False
        m.reset()
    assert _run(OutputMonitor(0), [(CMD, over, False), (0, 0, False)] * 20) == 2
