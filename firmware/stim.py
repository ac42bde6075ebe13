"""TENS stimulation engine: one channel's pulses, window by window.

Each tick the device asks every channel for the pulses of the next window
(TICK_MS). The channel's setting was validated against the envelope when it
was set; here, per pulse, only integer arithmetic on values below 2^30 (no
heap allocation on MicroPython) and a last guard against the validated
maxima. Modulation is a triangle wave evaluated once per tick: its periods
are at least 500 ms, so one 10 ms step is finer than any pulse train needs.

Amplitude: `amp_ua` is the ramped base amplitude. It moves toward
`target_ua` by at most `ramp_step_ua` per tick; any interruption (`off()`)
puts it back to zero, so output always restarts from nothing.
"""

from firmware import envelope
from firmware import limits as L

BREACH = -1  # fire_window's answer when a pulse would leave the validated envelope
MOD_WRAP_MS = 2 * 3600 * 1000  # modulation clock restarts after 2 h (sessions last at most 1 h)
SPACING_MIN_US = 1000000 // L.RATE_MAX_HZ  # no two pulses of a channel closer (4 ms), across any restart


def triangle_permille(position_ms, period_ms):
    """0 at the start of the period, 1000 half-way, 0 again at the end."""
    half = period_ms // 2
    if position_ms < half:
        return position_ms * 1000 // half
    return (period_ms - position_ms) * 1000 // (period_ms - half)


def ramp_step_for(target_ua, ramp_ms):
    """Per-tick step that takes zero to target in ramp_ms (at least 10 uA, at most the cap)."""
    step = (target_ua * L.TICK_MS + ramp_ms - 1) // ramp_ms
    if step < 10:
        step = 10
    if step > L.RAMP_MAX_UA_PER_TICK:
        step = L.RAMP_MAX_UA_PER_TICK
    return step


class Channel:
    def __init__(self, index):
        self.index = index
        # earliest start in the window being filled that keeps SPACING_MIN_US from the last pulse:
        # an interruption restarts the train at the window's start, the last pulse may be just before
        self._hold_us = 0
        self.ramp_ms = L.RAMP_DEFAULT_MS
        self.target_ua = 0
        self.amp_ua = 0
        self.ramp_step_ua = ramp_step_for(0, self.ramp_ms)
        self.apply_setting(envelope.Setting())
        self.off()

    # ---- configuration (validated by the caller; not the hot path) ----------------------

    def apply_setting(self, setting):
        self.setting = setting
        self.max_amp_ua = envelope.max_amp_ua(setting)
        self._mode = setting.mode
        self._ratio = setting.ratio
        self.off()

    def set_target(self, amp_ua):
        """The caller has checked the envelope; the clamp is a second layer."""
        if amp_ua < 0:
            amp_ua = 0
        if amp_ua > self.max_amp_ua:
            amp_ua = self.max_amp_ua
        self.target_ua = amp_ua
        # The step spans the larger of where the output is and where it goes, so
        # turning down from 80 mA to 1 mA takes one ramp time, not 80.
        span_ua = amp_ua if amp_ua > self.amp_ua else self.amp_ua
        if span_ua > 0:
            self.ramp_step_ua = ramp_step_for(span_ua, self.ramp_ms)

    def off(self):
        """Output to zero now, target kept: the next pulses ramp up from zero, over ramp_ms
        (the step is set afresh: one left from turning down from a high amplitude would
        make the soft start far shorter)."""
        if self.target_ua > 0:
            self.ramp_step_ua = ramp_step_for(self.target_ua, self.ramp_ms)
        self.amp_ua = 0
        self._amp_now = 0
        self._next_us = 0
        self._train_count = 0
        self._mod_ms = 0
        self.fired_ua = 0
        self.fired_count = 0
        self.prev_fired_ua = 0
        self.phase_us = 0
        self.rate_hz = 0

    def interrupt(self):
        """Output and target to zero: the user dials up again."""
        self.off()
        self.target_ua = 0

    def sensed_ua(self):
        """The amplitude the output-sense read at the start of a tick is judged against.

        On the board a window's pulses fire up to one tick after the tick that fed them
        (rp2_pulse.LEAD_US), so what completed since the last read was fed in the last
        window or the one before: the larger of the two (they differ by at most a ramp step).
        """
        if self.fired_ua > self.prev_fired_ua:
            return self.fired_ua
        return self.prev_fired_ua

    # ---- per tick ------------------------------------------------------------------------

    def ramp(self):
        step = self.ramp_step_ua
        if self.amp_ua < self.target_ua:
            self.amp_ua = min(self.amp_ua + step, self.target_ua)
        elif self.amp_ua > self.target_ua:
            self.amp_ua = max(self.amp_ua - step, self.target_ua)

    def _modulate(self):
        """Set this tick's amplitude, phase and rate under the mode's modulation.

        Results go to attributes, not a returned tuple: a tuple would be a heap
        allocation on every tick under MicroPython.
        """
        s = self.setting
        amp_ua = self.amp_ua
        phase_us = s.phase_us
        rate_hz = s.rate_hz
        mode = self._mode
        if mode == "modulated":
            t = self._mod_ms
            if s.mod_amp_pct:
                amp_ua = amp_ua * (1000 - s.mod_amp_pct * triangle_permille(t % s.mod_amp_ms, s.mod_amp_ms) // 100) // 1000
            if s.mod_width_pct:
                phase_us -= phase_us * s.mod_width_pct * triangle_permille(t % s.mod_width_ms, s.mod_width_ms) // 100000
            if s.mod_rate_pct:
                rate_hz -= rate_hz * s.mod_rate_pct * triangle_permille(t % s.mod_rate_ms, s.mod_rate_ms) // 100000
        elif mode == "strength_duration":
            f = triangle_permille(self._mod_ms % s.sd_period_ms, s.sd_period_ms)
            phase_us -= phase_us * s.sd_width_pct * f // 100000
            rate_hz += (s.sd_rate_hz - s.rate_hz) * f // 1000
        elif mode == "burst":
            rate_hz = s.burst_hz
        # A ramp and a modulation rising together would add their slopes (twice the steepest
        # ramp at full depth): what fires never rises faster than the steepest ramp.
        # (No new local: a larger frame would go on the MicroPython heap at every call.)
        if amp_ua > self._amp_now + L.RAMP_MAX_UA_PER_TICK:
            amp_ua = self._amp_now + L.RAMP_MAX_UA_PER_TICK
        self._amp_now = amp_ua
        self.phase_us = phase_us
        self.rate_hz = rate_hz

    def fire_window(self, pulse_out, window_us):
        """Hand this window's pulses to the driver. Returns the count, or BREACH."""
        hold_us = self._hold_us - window_us  # from the last window's time to this one's
        self._hold_us = hold_us if hold_us > 0 else 0
        self.prev_fired_ua = self.fired_ua
        self.fired_ua = 0
        self.fired_count = 0
        if self.amp_ua <= 0:
            self._amp_now = 0  # a new rise starts from zero
            self._next_us = 0
            self._train_count = 0
            self.phase_us = 0
            self.rate_hz = 0
            return 0
        self._modulate()
        phase_us = self.phase_us
        ratio = self._ratio
        amp2_ua = self._amp_now // ratio
        amp1_ua = amp2_ua * ratio  # equal charge in both phases, exactly
        phase2_us = phase_us * ratio
        s = self.setting
        # Last guard: never past what the envelope check approved. (The two phases balance by
        # construction, amp1 * phase = amp2 * ratio * phase = amp2 * phase2: nothing to check here.)
        if amp1_ua > self.max_amp_ua or phase_us > s.phase_us:
            self.off()
            return BREACH
        period_us = 1000000 // self.rate_hz
        gap_us = s.gap_us
        fired = 0
        start_us = self._next_us
        if start_us < self._hold_us:
            start_us = self._hold_us  # a train restarted since the last pulse keeps its distance
        while start_us < window_us:
            if not pulse_out.fire(self.index, start_us, amp1_ua, phase_us, gap_us, amp2_ua, phase2_us):
                # A refused pulse is an interruption: restart from zero and ramp.
                self.off()
                return fired
            self._hold_us = start_us + SPACING_MIN_US
            fired += 1
            if self._mode == "burst":
                self._train_count += 1
                if self._train_count >= s.train_pulses:
                    self._train_count = 0
                    start_us += s.train_ms * 1000 - (s.train_pulses - 1) * period_us
                else:
                    start_us += period_us
            else:
                start_us += period_us
        self._next_us = start_us - window_us
        self._mod_ms += L.TICK_MS
        if self._mod_ms >= MOD_WRAP_MS:
            self._mod_ms = 0  # keeps the counter a small int; sessions end before this
        if fired:
            self.fired_ua = amp1_ua
            self.fired_count = fired
        return fired
