"""Integer PID: milli-C in, duty permille out, once per tick.

Gain scales (all plain integers):
    kp   0.1 permille per C            P = kp * e_mc // 10000
    ki   0.001 permille per (C * s)    the integral term grows by ki * e_mc * tick_ms / 10^9 permille per tick
    kd   permille per (C/s)            D = -kd * slope_mc_per_s // 1000
e.g. kp=1500, ki=1500, kd=1500: 150 permille per C, 1.5 permille per C per second,
1500 permille per C/s (Ti = kp/ki = 100 s, Td = kd/kp = 10 s).

Derivative on measurement (no kick when the target changes): the slope is the
tick-to-tick change of the measured value, low-passed by an EMA over 2^d_shift
ticks (default 256 ticks, 2.56 s).

Anti-windup by clamping: the integral term is kept as permille * I_SCALE,
confined to [0, max_duty]; it does not integrate while the output is
saturated in the direction the error pushes (conditional integration) unless
the error is already within +-i_zone_mc of the target, and its input error
is clamped to +-i_band_mc. The output is clamped to [0, max_duty_permille].
(The zone lets the integral build up toward the holding duty during the last
part of a full-power approach, so the pad does not creep the last degree;
the derivative term brakes the approach, so this costs little overshoot:
on the reference pad 0.07 C, with the rise within 1.17x the full-power limit.)

Integer headroom (no big ints on the board, where small ints end at 2^30):
|e| <= 100 C so kp * e <= 10^9; HeatConfig.validate() bounds ki * tick_ms * i_band
<= 9 * 10^8; the integral <= 10^8; |slope| <= 40 C/s so kd * slope <= 8 * 10^8.
"""

from firmware.compat import const

I_SCALE = const(100000)  # integral term unit: 1/100000 permille
_E_MAX = const(100000)  # error clamp for P, mC
_DSTEP_MAX = const(1000)  # largest tick-to-tick change the derivative sees, mC
_SLOPE_MAX = const(40000)  # mC/s


class Pid:
    def __init__(self, config):
        self._max = config.max_duty_permille
        self._band = config.i_band_mc
        self._zone = config.i_zone_mc
        self._dshift = config.d_shift
        self._tick = config.tick_ms
        self.kp = 0
        self.ki = 0
        self.kd = 0
        self._ki_t = 0
        self.set_gains(config.kp, config.ki, config.kd)
        self.i_acc = 0  # integral term, permille * I_SCALE
        self.p = 0  # last terms, permille (for status and tests)
        self.d = 0
        self.out = 0
        self.slope_mc_s = 0  # filtered rate of change of the measurement
        self._s_acc = 0
        self._prev = 0
        self._primed = False

    def set_gains(self, kp, ki, kd):
        self.kp = kp
        self.ki = ki
        self.kd = kd
        self._ki_t = ki * self._tick

    def reset(self, i_permille=0):
        """Start afresh: integral term set to i_permille (0..max), derivative state cleared."""
        if i_permille < 0:
            i_permille = 0
        if i_permille > self._max:
            i_permille = self._max
        self.i_acc = i_permille * I_SCALE
        self._s_acc = 0
        self.slope_mc_s = 0
        self._primed = False
        self.p = 0
        self.d = 0
        self.out = 0

    def _slope(self, measured_mc):
        if not self._primed:
            self._primed = True
            self._prev = measured_mc
        step = measured_mc - self._prev
        self._prev = measured_mc
        if step > _DSTEP_MAX:
            step = _DSTEP_MAX
        elif step < -_DSTEP_MAX:
            step = -_DSTEP_MAX
        self._s_acc += step * 1000 // self._tick - (self._s_acc >> self._dshift)
        slope = self._s_acc >> self._dshift
        if slope > _SLOPE_MAX:
            slope = _SLOPE_MAX
        elif slope < -_SLOPE_MAX:
            slope = -_SLOPE_MAX
        self.slope_mc_s = slope
        return slope

    def track(self, measured_mc):
        """Output held off (stopped, interlock): follow the measurement so resuming has no kick."""
        self._slope(measured_mc)
        self.out = 0

    def update(self, target_mc, measured_mc):
        """One tick: the duty in permille, 0..max_duty."""
        slope = self._slope(measured_mc)
        e = target_mc - measured_mc
        if e > _E_MAX:
            e = _E_MAX
        elif e < -_E_MAX:
            e = -_E_MAX
        p = self.kp * e // 10000
        d = -(self.kd * slope // 1000)
        e_i = e
        if e_i > self._band:
            e_i = self._band
        elif e_i < -self._band:
            e_i = -self._band
        inc = self._ki_t * e_i // 10000
        u = p + self.i_acc // I_SCALE + d
        if u >= self._max:
            u = self._max
            if inc > 0 and e > self._zone:
                inc = 0
        elif u <= 0:
            u = 0
            if inc < 0 and e < -self._zone:
                inc = 0
        acc = self.i_acc + inc
        if acc < 0:
            acc = 0
        elif acc > self._max * I_SCALE:
            acc = self._max * I_SCALE
        self.i_acc = acc
        self.p = p
        self.d = d
        self.out = u
        return u
