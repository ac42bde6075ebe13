"""Time-proportioned heater output through the heater lease.

The controller's duty (permille) is latched at the start of each window of
window_ms (default 1000 ms = 100 ticks) and turned into whole on-ticks at the
start of the window: on for the first round(duty * ticks / 1000) ticks, off for
the rest. The rounding residual carries into the next window, so the long-run
average equals the commanded duty exactly (resolution 1 tick = 1 %).

Every on-tick renews the lease: heater.lease(1000, lease_ms) with a short
lease (default 50 ms = 5 ticks), so if the CPU stalls the heater switches
itself off within lease_ms. Every off-tick calls heater.off(). Nothing here
allocates.
"""

FULL_PERMILLE = 1000


class TimeProportioner:
    def __init__(self, heater, config):
        self.heater = heater
        self.lease_ms = config.lease_ms
        self._ticks = config.window_ms // config.tick_ms  # ticks per window
        self._k = 0  # tick index within the window
        self._on_ticks = 0
        self._carry = 0
        self.window_duty = 0  # duty latched for the current window, permille
        self.on = False  # heater leased during the last tick

    def restart(self):
        """Next drive() starts a fresh window with no carried residual."""
        self._k = 0
        self._carry = 0
        self._on_ticks = 0

    def drive(self, duty_permille):
        """One tick of output at the controller's duty. Returns True when the heater is on."""
        if self._k == 0:
            if duty_permille < 0:
                duty_permille = 0
            elif duty_permille > FULL_PERMILLE:
                duty_permille = FULL_PERMILLE
            self.window_duty = duty_permille
            total = duty_permille * self._ticks + self._carry
            self._on_ticks = total // FULL_PERMILLE
            self._carry = total - self._on_ticks * FULL_PERMILLE
        on = self._k < self._on_ticks
        self._k += 1
        if self._k >= self._ticks:
            self._k = 0
        if on:
            self.heater.lease(FULL_PERMILLE, self.lease_ms)
        else:
            self.heater.off()
        self.on = on
        return on

    def off(self):
        """Heater off now; the next drive() starts a new window."""
        self.heater.off()
        self.on = False
        self.window_duty = 0
        self._k = 0
        self._on_ticks = 0
