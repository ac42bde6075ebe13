"""The RP2040 drivers (firmware/drivers/rp2_*.py) on CPython, over tests/board_fakes.py.

What the fakes cannot show (timing of the soft timer, the ADC's analog behaviour, littlefs)
is argued in each driver's docstring; what they can, is checked here: the heater's lease ends
by itself, off() forces both switches low whatever state it finds, oversampling, the sense
conversion, debounce, the indicator, the watchdog and storage on a real filesystem.
"""

import pytest

from firmware.drivers import rp2_pins as P
from tests import board_fakes


@pytest.fixture
def board(monkeypatch):
    board = board_fakes.install(monkeypatch)
    yield board
    board_fakes.unload()


# ---- heater --------------------------------------------------------------------------------


@pytest.fixture
def heater(board):
    return board.load("firmware.drivers.rp2_heater").Rp2Heater(P.HEATER_GATE, P.HEATER_SUPPLY_ENABLE)


def both_low(board):
    return not board.driven_high(P.HEATER_GATE) and not board.driven_high(P.HEATER_SUPPLY_ENABLE)


def test_heater_starts_off_as_outputs(board, heater):
    assert board.pin(P.HEATER_GATE).mode == board.machine.Pin.OUT
    assert board.pin(P.HEATER_SUPPLY_ENABLE).mode == board.machine.Pin.OUT
    assert both_low(board)
    assert board.armed_timers() == []


def test_heater_lease_turns_itself_off_when_not_renewed(board, heater):
    heater.lease(1000, 50)
    assert board.driven_high(P.HEATER_GATE) and board.driven_high(P.HEATER_SUPPLY_ENABLE)
    (timer,) = board.armed_timers()
    assert timer.mode == board.machine.Timer.ONE_SHOT and timer.period == 50
    assert board.fire_timers() == 1  # nobody renewed: the lease runs out
    assert both_low(board)
    assert heater.expired == 1 and not heater.on()
    assert board.armed_timers() == []


def test_heater_renewal_rearms_the_same_timer(board, heater):
    heater.lease(1000, 50)
    heater.lease(1000, 50)
    heater.lease(1000, 50)
    assert len(board.timers) == 1  # one timer, re-armed: no allocation per tick
    assert board.timers[0].inits == 3 and board.timers[0].armed
    assert board.driven_high(P.HEATER_GATE)
    board.fire_timers()
    assert both_low(board)


def test_heater_partial_duty_is_pwm_and_the_lease_still_ends_it(board, heater):
    rp2_heater = board.load("firmware.drivers.rp2_heater")
    heater.lease(500, 50)
    pwm = board.pwms[P.HEATER_GATE]
    assert board.pin(P.HEATER_GATE).function == board_fakes.PWM_FUNC
    assert pwm.running and pwm.freq == rp2_heater.HEATER_PWM_HZ
    assert pwm.duty_u16 == 500 * 65535 // 1000
    heater.lease(250, 50)  # a new duty on the running PWM, no new PWM object
    assert pwm.duty_u16 == 250 * 65535 // 1000 and pwm.created == 1
    board.fire_timers()
    # a deinit()-ed PWM would hold the pin at its last level: the gate must be back on SIO at 0
    assert board.pin(P.HEATER_GATE).function == board_fakes.SIO
    assert not pwm.running
    assert both_low(board)


def test_heater_full_duty_after_pwm_leaves_pwm(board, heater):
    heater.lease(300, 50)
    heater.lease(1000, 50)
    assert board.pin(P.HEATER_GATE).function == board_fakes.SIO
    assert not board.pwms[P.HEATER_GATE].running
    assert board.driven_high(P.HEATER_GATE)


def test_heater_clamps_duty_and_lease(board, heater):
    rp2_heater = board.load("firmware.drivers.rp2_heater")
    heater.lease(5000, 60_000)
    assert heater.duty_permille == 1000
    assert board.timers[0].period == rp2_heater.LEASE_MAX_MS == 1000
    assert board.pin(P.HEATER_GATE).function == board_fakes.SIO  # full duty: plain GPIO, no PWM
    heater.lease(0, 50)
    assert both_low(board) and board.armed_timers() == []
    heater.lease(1000, 50)
    heater.lease(-5, 50)
    assert both_low(board)
    heater.lease(1000, 0)
    assert both_low(board)


def test_heater_off_forces_both_low_and_is_idempotent(board, heater):
    heater.off()  # off when already off
    assert both_low(board)
    heater.lease(1000, 50)
    heater.off()
    assert both_low(board) and board.armed_timers() == []
    heater.off()
    heater.off()
    assert both_low(board)
    heater.lease(400, 50)
    heater.off()
    assert both_low(board) and board.pin(P.HEATER_GATE).function == board_fakes.SIO


def test_heater_off_never_raises_and_still_cuts_the_supply(board, heater):
    heater.lease(1000, 50)
    assert heater.off_errors == 0
    board.fail_pin(P.HEATER_GATE)  # the gate's pin refuses every call
    heater.off()  # must not raise
    assert not board.driven_high(P.HEATER_SUPPLY_ENABLE)  # the second switch still opened
    assert heater.off_errors >= 1  # counted: the board loop resets the chip on it
    board.fail_pin(P.HEATER_GATE, False)
    heater.lease(1000, 50)
    before = heater.off_errors
    board.fail_pin(P.HEATER_SUPPLY_ENABLE)
    heater.off()
    assert not board.driven_high(P.HEATER_GATE)
    assert heater.off_errors == before + 1


def test_heater_off_stops_the_pwm_when_the_gate_cannot_be_made_a_gpio_again(board, heater):
    """Pin.init failing on a gate under PWM: off() wrote the GPIO latch low, which a pin in PWM
    function ignores, and reported success (off_errors 0), with the PWM still running."""
    heater.lease(500, 50)
    assert board.pwms[P.HEATER_GATE].running and board.driven_high(P.HEATER_GATE)
    real_init = board.machine.Pin.init

    def init(pin, *args, **kwargs):
        if pin.id == P.HEATER_GATE:
            raise OSError(5, "init fails")
        return real_init(pin, *args, **kwargs)

    board.machine.Pin.init = init
    heater.off()
    assert not board.pwms[P.HEATER_GATE].running or board.pwms[P.HEATER_GATE].duty_u16 == 0
    assert not board.driven_high(P.HEATER_GATE) and not board.driven_high(P.HEATER_SUPPLY_ENABLE)
    assert heater.off_errors == 1  # counted: the board loop resets the chip on it


def test_heater_lease_failure_turns_off_and_reports(board, heater):
    heater.lease(1000, 50)
    board.fail_pin(P.HEATER_GATE)
    with pytest.raises(OSError):
        heater.lease(1000, 50)
    assert not board.driven_high(P.HEATER_SUPPLY_ENABLE)
    assert board.armed_timers() == []


def test_heater_late_callback_of_an_old_lease_only_turns_off(board, heater):
    heater.lease(1000, 50)
    timer = board.timers[0]
    callback = timer.callback
    heater.lease(1000, 50)  # renewed, but the old alarm's callback was already queued
    callback(timer)
    assert both_low(board)  # one tick early: the safe direction
    heater.lease(1000, 50)
    assert board.driven_high(P.HEATER_GATE)


# ---- ADC: thermistor and output sense ------------------------------------------------------


def test_thermistor_sums_16_conversions_to_the_16_bit_code(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    therm = rp2_adc.Rp2Thermistor()
    codes = [2000 + (i % 4) for i in range(16)]  # noise around 2001.5
    board.set_adc(P.ADC_THERMISTOR, codes)
    assert therm.read_raw() == sum(codes)  # = 16 * mean 12-bit code: thermistor.py's scale
    assert board.adc_reads[P.ADC_THERMISTOR] == 16


def test_thermistor_full_scale_and_zero(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    therm = rp2_adc.Rp2Thermistor()
    board.set_adc(P.ADC_THERMISTOR, 4095)
    assert therm.read_raw() == 65520  # open NTC
    board.set_adc(P.ADC_THERMISTOR, 0)
    assert therm.read_raw() == 0  # shorted NTC


def test_thermistor_oversampling_is_bounded_and_scaled(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    board.set_adc(P.ADC_THERMISTOR, 1234)
    for shift, samples in ((0, 1), (2, 4), (6, 64), (99, 64), (-3, 1)):
        therm = rp2_adc.Rp2Thermistor(shift=shift)
        before = board.adc_reads.get(P.ADC_THERMISTOR, 0)
        assert therm.read_raw() == 1234 * 16  # the same 16-bit scale whatever the count
        assert board.adc_reads[P.ADC_THERMISTOR] - before == samples


def test_thermistor_matches_the_firmware_table(board):
    from firmware.heat import thermistor

    rp2_adc = board.load("firmware.drivers.rp2_adc")
    therm = rp2_adc.Rp2Thermistor()
    code12 = thermistor.mc_to_code(40000) >> 4  # about 40 C on the 12-bit converter
    board.set_adc(P.ADC_THERMISTOR, code12)
    assert abs(thermistor.code_to_mc(therm.read_raw()) - 40000) < 100


def test_thermistor_adc_failure_is_oserror(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    therm = rp2_adc.Rp2Thermistor()
    board.fail_adc(P.ADC_THERMISTOR)
    with pytest.raises(OSError):
        therm.read_raw()


def test_sense_constants_give_100_ma_full_scale(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    # I = V / (R * gain): mV -> µV is * 1000, gain is GAIN_MILLI / 1000
    expected_ua = rp2_adc.ADC_VREF_MV * 1000 * 1000 // (rp2_adc.SENSE_R_OHM * rp2_adc.SENSE_GAIN_MILLI)
    assert rp2_adc.SENSE_FULL_SCALE_UA == expected_ua == 100_000
    assert 4095 * rp2_adc.SENSE_FULL_SCALE_UA < 1 << 30  # small ints on the board


def test_sense_converts_codes_to_microamps(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    sense = rp2_adc.Rp2OutputSense()
    board.set_adc(P.ADC_SENSE_CH0, 1024)  # a quarter of full scale
    board.set_adc(P.ADC_SENSE_CH1, 0)
    assert sense.read_ua(0) == 25_000
    assert sense.read_ua(1) == 0
    board.set_adc(P.ADC_SENSE_CH1, 4095)
    assert sense.read_ua(1) == 4095 * 100_000 // 4096
    # 10 mA (the indicator threshold) reads within one code (24 µA)
    board.set_adc(P.ADC_SENSE_CH0, 10_000 * 4096 // 100_000)
    assert abs(sense.read_ua(0) - 10_000) <= 25
    assert board.adc_reads[P.ADC_SENSE_CH0] == 2 * sense.samples


def test_sense_averages_with_rounding(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    sense = rp2_adc.Rp2OutputSense()
    board.set_adc(P.ADC_SENSE_CH0, [400, 401, 401, 402])  # mean 401
    assert sense.read_ua(0) == 401 * 100_000 // 4096


def test_sense_compliance_latches_the_pulse_and_clears_on_read(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    sense = rp2_adc.Rp2OutputSense()
    comp = board.pin(P.CH0_COMPLIANCE)
    assert comp.pull == board.machine.Pin.PULL_UP and comp.irq_hard is True
    assert sense.at_compliance(0) is False
    # during a pulse the comparator goes low, and is high again long before the tick reads
    board.set_input(P.CH0_COMPLIANCE, 0)
    board.set_input(P.CH0_COMPLIANCE, 1)
    assert sense.at_compliance(0) is False  # not yet: it describes the pulse last read
    sense.read_ua(0)
    assert sense.at_compliance(0) is True and sense.at_compliance(1) is False
    sense.read_ua(0)  # the next pulse did not hit the limit
    assert sense.at_compliance(0) is False
    board.set_input(P.CH1_COMPLIANCE, 0)  # held low now (at the limit as we read)
    sense.read_ua(1)
    assert sense.at_compliance(1) is True
    assert board.irq_disabled == 0  # IRQs re-enabled after taking the latch


def test_sense_out_of_range_channel_and_adc_failure(board):
    rp2_adc = board.load("firmware.drivers.rp2_adc")
    sense = rp2_adc.Rp2OutputSense()
    assert sense.read_ua(2) == 0 and sense.read_ua(-1) == 0
    assert sense.at_compliance(5) is False
    board.fail_adc(P.ADC_SENSE_CH1)
    with pytest.raises(OSError):
        sense.read_ua(1)
    assert board.irq_disabled == 0


# ---- watchdog ------------------------------------------------------------------------------


def test_watchdog_default_timeout_and_feed(board):
    rp2_watchdog = board.load("firmware.drivers.rp2_watchdog")
    wd = rp2_watchdog.Rp2Watchdog()
    (wdt,) = board.wdts
    assert wdt.timeout == wd.timeout_ms == 1000
    wd.feed()
    wd.feed()
    assert wdt.feeds == 2


def test_watchdog_clamps_to_the_rp2040_range(board):
    rp2_watchdog = board.load("firmware.drivers.rp2_watchdog")
    assert rp2_watchdog.Rp2Watchdog(60_000).timeout_ms == 8388  # the fake WDT rejects more, like the port
    assert rp2_watchdog.Rp2Watchdog(0).timeout_ms == 1
    assert [w.timeout for w in board.wdts] == [8388, 1]


# ---- buttons -------------------------------------------------------------------------------


def buttons_with(board):
    rp2_buttons = board.load("firmware.drivers.rp2_buttons")
    return rp2_buttons, rp2_buttons.Rp2Buttons()


def test_buttons_are_pulled_up_inputs_and_bits(board):
    rp2_buttons, buttons = buttons_with(board)
    for pin in (P.BUTTON_UP, P.BUTTON_DOWN, P.BUTTON_STOP):
        assert board.pin(pin).mode == board.machine.Pin.IN
        assert board.pin(pin).pull == board.machine.Pin.PULL_UP
    assert (rp2_buttons.BUTTON_UP, rp2_buttons.BUTTON_DOWN, rp2_buttons.BUTTON_STOP) == (1, 2, 4)
    assert buttons.pressed() == 0
    board.set_input(P.BUTTON_STOP, 0)  # active low
    assert buttons.raw() == rp2_buttons.BUTTON_STOP


def test_buttons_held_is_reported_after_three_polls(board):
    rp2_buttons, buttons = buttons_with(board)
    board.set_input(P.BUTTON_UP, 0)
    assert [buttons.pressed() for _ in range(5)] == [0, 0, 1, 1, 1]
    board.set_input(P.BUTTON_UP, 1)
    assert [buttons.pressed() for _ in range(4)] == [1, 1, 0, 0]


def test_buttons_bounces_shorter_than_the_window_are_ignored(board):
    rp2_buttons, buttons = buttons_with(board)
    seen = []
    for level in (0, 1, 0, 0, 1, 1, 0, 1, 1, 1):  # never three equal polls pressed in a row
        board.set_input(P.BUTTON_DOWN, level)
        seen.append(buttons.pressed())
    assert seen == [0] * 10
    # a bouncing release of a held button keeps it held
    for _ in range(3):
        board.set_input(P.BUTTON_DOWN, 0)
        buttons.pressed()
    seen = []
    for level in (1, 0, 1, 1, 0, 0):
        board.set_input(P.BUTTON_DOWN, level)
        seen.append(buttons.pressed())
    assert seen == [2] * 6


def test_a_stop_press_is_latched_by_its_edge_however_short(board):
    rp2_buttons, buttons = buttons_with(board)
    assert board.pin(P.BUTTON_STOP).irq_handler is not None  # the falling edge
    assert buttons.take_stop_press() is False
    board.set_input(P.BUTTON_STOP, 0)  # down and up again between two polls
    board.set_input(P.BUTTON_STOP, 1)
    assert buttons.pressed() == 0  # too short for the debounce ...
    assert buttons.take_stop_press() is True  # ... but latched, once
    assert buttons.take_stop_press() is False
    board.set_input(P.BUTTON_UP, 0)
    board.set_input(P.BUTTON_UP, 1)
    assert buttons.take_stop_press() is False  # only STOP is latched


class _StepClock:
    def __init__(self):
        self.now = (1 << 30) - 15  # across the tick wrap

    def ticks_ms(self):
        return self.now


def test_buttons_debounce_needs_the_time_not_only_three_reads(board):
    """A late loop catches up with ticks back to back: three reads within microseconds are no
    debounce. The new level must hold from the first of them for DEBOUNCE_MS (20 ms)."""
    rp2_buttons = board.load("firmware.drivers.rp2_buttons")
    clock = _StepClock()
    buttons = rp2_buttons.Rp2Buttons(clock=clock)
    board.set_input(P.BUTTON_UP, 0)
    assert [buttons.pressed() for _ in range(6)] == [0] * 6  # no time passed
    board.set_input(P.BUTTON_UP, 1)
    assert buttons.pressed() == 0  # a glitch of a few reads, never reported
    board.set_input(P.BUTTON_UP, 0)
    seen = []
    for _ in range(4):  # the 10 ms tick: reported at the third poll, 20 ms after the first
        seen.append(buttons.pressed())
        clock.now = (clock.now + 10) & ((1 << 30) - 1)
    assert seen == [0, 0, 1, 1], seen


def test_buttons_each_is_debounced_on_its_own(board):
    rp2_buttons, buttons = buttons_with(board)
    board.set_input(P.BUTTON_STOP, 0)
    seen = []
    for i in range(4):
        board.set_input(P.BUTTON_UP, i % 2)  # UP bounces all the while
        seen.append(buttons.pressed())
    assert seen == [0, 0, 4, 4]


# ---- indicator -----------------------------------------------------------------------------


def test_indicator_output_led_follows_output_on_at_once(board):
    rp2_indicator = board.load("firmware.drivers.rp2_indicator")
    ind = rp2_indicator.Rp2Indicator()
    assert not board.driven_high(P.LED_OUTPUT) and not board.driven_high(P.BUZZER)
    ind.set(True, False)
    assert board.driven_high(P.LED_OUTPUT)
    ind.set(False, False)
    assert not board.driven_high(P.LED_OUTPUT)
    ind.set(True, False)
    board.pin(P.LED_OUTPUT).latch = 0  # something else drove it low: the next call restores it
    ind.set(True, False)
    assert board.driven_high(P.LED_OUTPUT)


def test_indicator_alarm_beeps_and_blinks(board):
    rp2_indicator = board.load("firmware.drivers.rp2_indicator")
    ind = rp2_indicator.Rp2Indicator()
    buzzer = board.pwms[P.BUZZER]
    assert buzzer.freq == rp2_indicator.BUZZER_HZ and buzzer.duty_u16 == 0
    sound, status = [], []
    for _ in range(200):
        ind.set(False, True)
        sound.append(buzzer.duty_u16 > 0)
        status.append(board.driven_high(P.LED_STATUS))
    assert sum(sound) == 100  # half of every second
    assert sum(status) == 100  # fast blink: on and off every FAST_BLINK_CALLS
    changes = sum(1 for a, b in zip(status, status[1:]) if a != b)
    assert changes >= 200 // rp2_indicator.FAST_BLINK_CALLS - 1
    ind.set(False, False)
    assert buzzer.duty_u16 == 0
    quiet = []
    for _ in range(200):
        ind.set(False, False)
        quiet.append(buzzer.duty_u16)
    assert set(quiet) == {0}


def test_indicator_heartbeat_without_alarm(board):
    rp2_indicator = board.load("firmware.drivers.rp2_indicator")
    ind = rp2_indicator.Rp2Indicator()
    lit = 0
    for _ in range(300):
        ind.set(False, False)
        lit += board.driven_high(P.LED_STATUS)
    assert lit == 3 * rp2_indicator.HEARTBEAT_ON_CALLS


def test_indicator_off_is_idempotent_and_never_raises(board):
    rp2_indicator = board.load("firmware.drivers.rp2_indicator")
    ind = rp2_indicator.Rp2Indicator()
    ind.set(True, True)
    ind.off()
    ind.off()
    assert not board.driven_high(P.LED_OUTPUT) and board.pwms[P.BUZZER].duty_u16 == 0
    assert not board.driven_high(P.LED_STATUS)
    ind.set(True, True)
    board.fail_pin(P.LED_OUTPUT)
    ind.off()
    assert board.pwms[P.BUZZER].duty_u16 == 0 and not board.driven_high(P.LED_STATUS)


# ---- clock ---------------------------------------------------------------------------------


def test_clock_is_times_ticks_functions(board, monkeypatch):
    rp2_clock = board.load("firmware.drivers.rp2_clock")
    fake_time = board_fakes.FakeTime(now=(1 << 30) - 5)
    monkeypatch.setattr(rp2_clock, "time", fake_time)
    clock = rp2_clock.Rp2Clock()
    assert clock.ticks_ms() == (1 << 30) - 5
    later = clock.ticks_add(clock.ticks_ms(), 10)
    assert later == 5  # wrapped on the 2^30 ring
    assert clock.ticks_diff(later, clock.ticks_ms()) == 10


# ---- storage -------------------------------------------------------------------------------


@pytest.fixture
def storage(board, tmp_path):
    rp2_storage = board.load("firmware.drivers.rp2_storage")
    return rp2_storage.Rp2Storage(str(tmp_path / "flash" / "data"))


def test_storage_makes_its_folder_on_the_first_append(storage, tmp_path):
    folder = tmp_path / "flash" / "data"
    assert not folder.exists()  # building the driver touches no filesystem
    assert storage.size("x") == 0 and storage.read("x", 0, 5) == b""
    storage.remove("x")
    assert not folder.exists()
    storage.append("x", b"1")
    assert folder.is_dir() and (folder / "x").read_bytes() == b"1"


def test_storage_round_trip_and_append(storage, tmp_path):
    assert storage.append("sessions.0", b"hello ") == 6
    assert storage.append("sessions.0", b"world\n") == 6
    assert storage.size("sessions.0") == 12
    assert storage.read("sessions.0", 0, 100) == b"hello world\n"
    assert storage.read("sessions.0", 6, 5) == b"world"
    assert storage.read("sessions.0", 11, 5) == b"\n"
    assert (tmp_path / "flash" / "data" / "sessions.0").read_bytes() == b"hello world\n"  # on disk, closed


def test_storage_past_the_end_and_missing(storage):
    storage.append("a", b"xyz")
    assert storage.read("a", 3, 10) == b""
    assert storage.read("a", 100, 10) == b""
    assert storage.read("a", 0, 0) == b""
    assert storage.read("a", -1, 2) == b""
    assert storage.read("missing", 0, 10) == b""
    assert storage.size("missing") == 0


def test_storage_remove(storage):
    storage.append("programs.0", b"abc")
    storage.remove("programs.0")
    assert storage.size("programs.0") == 0 and storage.read("programs.0", 0, 3) == b""
    storage.remove("programs.0")  # missing: not an error
    storage.remove("never-was")


def test_storage_agrees_with_ram_storage(storage):
    from firmware.ram_storage import RamStorage

    ram = RamStorage()
    ops = [("append", "x", b"12345"), ("append", "y", b"ab"), ("append", "x", b"678"), ("remove", "y"),
           ("append", "y", b"Z"), ("remove", "nope")]
    for op in ops:
        assert getattr(storage, op[0])(*op[1:]) == getattr(ram, op[0])(*op[1:])
    for name in ("x", "y", "nope"):
        assert storage.size(name) == ram.size(name)
        for offset, size in ((0, 100), (2, 3), (7, 5), (8, 1)):
            assert storage.read(name, offset, size) == ram.read(name, offset, size)


def test_storage_rejects_paths_as_names(storage):
    for name in ("", "../x", "a/b", ".", ".."):
        with pytest.raises(ValueError):
            storage.append(name, b"x")


def test_storage_other_errors_are_passed_on(storage, tmp_path):
    storage.append("file", b"")
    (tmp_path / "flash" / "data" / "dir").mkdir()  # not a file: not "missing"
    with pytest.raises(OSError):
        storage.read("dir", 0, 1)
    with pytest.raises(OSError):
        storage.append("dir", b"x")
    with pytest.raises(OSError):
        storage.remove("dir")  # a folder is no file to remove
    too_long = "n" * 300  # ENAMETOOLONG: an error, but not "missing"
    with pytest.raises(OSError):
        storage.size(too_long)
    with pytest.raises(OSError):
        storage.read(too_long, 0, 1)


def test_storage_existing_root_is_fine(board, tmp_path):
    rp2_storage = board.load("firmware.drivers.rp2_storage")
    rp2_storage.Rp2Storage(str(tmp_path) + "/")
    rp2_storage.Rp2Storage(str(tmp_path))
    store = rp2_storage.Rp2Storage(str(tmp_path / "d"))
    store.append("f", b"1")
    assert rp2_storage.Rp2Storage(str(tmp_path / "d")).size("f") == 1
