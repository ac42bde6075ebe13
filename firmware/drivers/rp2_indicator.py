"""Output LED, buzzer and status LED (interfaces.py: Indicator). Board only.

    ind = Rp2Indicator()                # all off
    ind.set(output_on, alarm)           # once per tick
    ind.off()                           # all off; idempotent, never raises

output_on lights LED_OUTPUT at once and for as long as it is given: the caller decides it
(any channel above 10 mA r.m.s. or 10 mJ per pulse into 1 kohm, IEC 60601-2-10); nothing here delays or blinks it.
alarm sounds the buzzer (BUZZER_HZ square wave, beeping BEEP_ON_CALLS of every
BLINK_PERIOD_CALLS calls) and blinks the status LED fast; without an alarm the status LED
gives a short heartbeat once a period, which shows the tick loop is alive. The patterns count
calls (one per 10 ms tick: a period of 100 calls is one second), so nothing here reads a
clock or waits. The buzzer and status LED are written only when their state changes.
"""

from machine import PWM, Pin

from firmware.compat import const
from firmware.drivers import rp2_pins

BUZZER_HZ = const(2700)  # a typical piezo's resonance: loudest for the drive
BUZZER_DUTY_U16 = const(32768)  # square wave
BLINK_PERIOD_CALLS = const(100)  # 1 s at one call per 10 ms tick
BEEP_ON_CALLS = const(50)  # alarm: beep 0.5 s of every second
FAST_BLINK_CALLS = const(10)  # alarm: status LED toggles every 100 ms
HEARTBEAT_ON_CALLS = const(5)  # no alarm: status LED on 50 ms of every second


class Rp2Indicator:
    def __init__(self, pin_output_led: int = rp2_pins.LED_OUTPUT, pin_buzzer: int = rp2_pins.BUZZER,
                 pin_status: int = rp2_pins.LED_STATUS):
        self._led = Pin(pin_output_led, Pin.OUT, value=0)
        self._status = Pin(pin_status, Pin.OUT, value=0)
        self._buzzer = PWM(Pin(pin_buzzer, Pin.OUT, value=0), freq=BUZZER_HZ, duty_u16=0)
        self._count = 0
        self.output_on = False
        self.sounding = False
        self.status_on = False

    def set(self, output_on: bool, alarm: bool) -> None:
        # written on every call, changed or not: nothing else can leave it wrong for longer than a tick
        self.output_on = bool(output_on)
        self._led.value(1 if self.output_on else 0)
        count = self._count + 1
        if count >= BLINK_PERIOD_CALLS:
            count = 0
        self._count = count
        if alarm:
            sound = count < BEEP_ON_CALLS
            status = (count // FAST_BLINK_CALLS) & 1 == 0
        else:
            sound = False
            status = count < HEARTBEAT_ON_CALLS
        if sound != self.sounding:
            self._buzzer.duty_u16(BUZZER_DUTY_U16 if sound else 0)
            self.sounding = sound
        if status != self.status_on:
            self._status.value(1 if status else 0)
            self.status_on = status

    def off(self) -> None:
        """Every indicator off now. Idempotent; never raises."""
        self.output_on = False
        self.sounding = False
        self.status_on = False
        try:
            self._led.value(0)
        except Exception:  # noqa: BLE001 - off() goes on with the others
            pass
        try:
            self._buzzer.duty_u16(0)
        except Exception:  # noqa: BLE001
            pass
        try:
            self._status.value(0)
        except Exception:  # noqa: BLE001
            pass
