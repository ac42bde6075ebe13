"""The heat pad's switch as a lease (interfaces.py: Heater), on the RP2040. Board only.

    heater = Rp2Heater()                 # HEATER_GATE, HEATER_SUPPLY_ENABLE; both low
    heater.lease(1000, 50)               # on for 50 ms unless renewed
    heater.off()                         # both switches off now; idempotent, never raises

lease(duty_permille, lease_ms) switches the pad's supply on and drives the MOSFET gate at the
duty (1000: steadily on; 1..999: PWM at HEATER_PWM_HZ; 0: off), then arms a one-shot
machine.Timer for lease_ms whose callback turns both switches off. Each lease re-arms the
timer, so the heater stays on only while the CPU keeps renewing it. Duty is clamped to
0..1000 and lease_ms to 1..LEASE_MAX_MS: no request holds the heater longer than one
watchdog period (rp2_watchdog, 1 s) without a renewal.

WHY A TIMER. The heat controller (firmware/heat/duty.py) renews the lease on every on-tick
(10 ms) with a 50 ms lease and calls off() on every off-tick. A tick loop that stops
renewing, for whatever reason, leaves the heater on for at most 50 ms: far inside the pad's
thermal time constant (minutes). Layers behind this one, each sufficient on its own:
  1. the lease timer here: off within lease_ms of the last renewal;
  2. the watchdog (about 1 s): resets the chip, and a reset RP2040 leaves every pad an input,
     so the gate's and the supply switch's 100 kohm pull-downs turn both off;
  3. the pad's thermal cutoff, which no firmware can override.

LIMITS OF THE TIMER. On the rp2 port machine.Timer is a soft timer: the hardware alarm IRQ
only schedules the callback (micropython.schedule), which runs between two bytecodes of the
main program. It stops a tick loop stuck in Python (an endless loop, an exception that left
the loop, a long computation, the REPL), not one stuck in C (a hard fault, a flash erase
with IRQs off, a deadlock) or one whose scheduler queue is full: for those, layer 2 and 3.
A callback queued by an older lease may run just after a renewal and turn the heater off one
tick early: the safe direction, and the next tick's lease turns it on again.

WHY NOT PWM ALONE. A PWM slice keeps running when the CPU stops: on its own it is the wrong
direction. It only shapes the duty within a lease; the timer ends the lease. The gate is a
plain GPIO whenever it is steadily on or off (the controller time-proportions itself and
always leases at 1000), so PWM is only used for a partial duty asked for directly. 100 Hz
(one tick per period) keeps the duty true over every 50 ms lease; a resistive pad and a
logic-level MOSFET do not care about the switching rate.

ORDER. lease(): supply on, gate on, then arm the timer, so after lease() returns either the
timer is armed or the heater is off; a failure on the way turns both off and is raised
(a broken alarm pool is a hardware fault, not an ordinary condition). off(): gate first
(back to a plain GPIO output at 0, which also disconnects a PWM), then the supply, then the
timer; each step guarded, so one failing step never keeps the others from running.
"""

from machine import PWM, Pin, Timer

from firmware.compat import const
from firmware.drivers import rp2_pins

FULL_PERMILLE = const(1000)
LEASE_MAX_MS = const(1000)  # a lease never outlives one watchdog period without a renewal
HEATER_PWM_HZ = const(100)  # only for partial duties: one 10 ms tick per period
_U16_MAX = const(65535)


class Rp2Heater:
    def __init__(self, pin_gate: int = rp2_pins.HEATER_GATE, pin_supply_enable: int = rp2_pins.HEATER_SUPPLY_ENABLE):
        # value before mode: the pins never glitch high on the way to being outputs
        self._gate = Pin(pin_gate, Pin.OUT, value=0)
        self._supply = Pin(pin_supply_enable, Pin.OUT, value=0)
        self._pwm: PWM | None = None
        self._level = 0  # duty_u16 of the running PWM
        self._timer = Timer(-1)  # the rp2 port's (soft) timer
        self._expire_cb = self._expire  # bound once: arming the timer every tick allocates nothing
        self.expired = 0  # leases that ran out without a renewal (diagnostics)
        self.duty_permille = 0  # what the heater is driven at now
        self.off_errors = 0  # steps of turning it off that raised: the board loop resets the chip on one

    def lease(self, duty_permille: int, lease_ms: int) -> None:
        """Drive at duty_permille (0..1000) until lease_ms (1..LEASE_MAX_MS) pass without a renewal."""
        if duty_permille <= 0 or lease_ms <= 0:
            self.off()
            return
        if duty_permille > FULL_PERMILLE:
            duty_permille = FULL_PERMILLE
        if lease_ms > LEASE_MAX_MS:
            lease_ms = LEASE_MAX_MS
        try:
            self._supply.value(1)
            if duty_permille >= FULL_PERMILLE:
                if self._pwm is not None:
                    self._stop_pwm()
                self._gate.init(Pin.OUT, value=1)
            else:
                level = duty_permille * _U16_MAX // FULL_PERMILLE
                if self._pwm is None:
                    self._pwm = PWM(self._gate, freq=HEATER_PWM_HZ, duty_u16=level)
                elif level != self._level:
                    self._pwm.duty_u16(level)
                self._level = level
            self.duty_permille = duty_permille
            self._timer.init(mode=Timer.ONE_SHOT, period=lease_ms, callback=self._expire_cb)
        except BaseException:
            self.off()
            raise

    def off(self) -> None:
        """Gate and supply switch off now, lease cancelled. Idempotent; never raises."""
        self._force_off()
        try:
            self._timer.deinit()
        except Exception:  # noqa: BLE001 - the heater is off already; a late callback only repeats that
            pass

    def on(self) -> bool:
        """Whether the heater is driven now (diagnostics and tests)."""
        return self.duty_permille > 0

    # ---- internals -------------------------------------------------------------------------

    def _expire(self, _timer: Timer) -> None:
        """The lease ran out (soft IRQ: scheduled, runs between bytecodes)."""
        self.expired += 1
        self._force_off()

    def _stop_pwm(self) -> None:
        self._gate.init(Pin.OUT, value=0)  # back to a plain GPIO at 0: the PWM no longer reaches the pin
        pwm = self._pwm
        self._pwm = None
        self._level = 0
        if pwm is not None:
            pwm.deinit()

    def _force_off(self) -> None:
        self.duty_permille = 0
        try:
            self._stop_pwm()
        except Exception:  # noqa: BLE001 - the gate may still be in PWM function
            # There a GPIO write does not reach the pin: stop the PWM itself as well, and count
            # it whatever else works (the board loop sees it and resets the chip; the supply
            # switch and the pull-down remain meanwhile).
            self.off_errors += 1
            pwm = self._pwm
            self._pwm = None
            self._level = 0
            if pwm is not None:
                try:
                    pwm.duty_u16(0)
                    pwm.deinit()
                except Exception:  # noqa: BLE001
                    pass
            try:
                self._gate.value(0)
            except Exception:  # noqa: BLE001
                pass
        try:
            self._supply.value(0)
        except Exception:  # noqa: BLE001 - never raise from off(); the gate is the other switch
            self.off_errors += 1
