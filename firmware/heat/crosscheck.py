"""Cross-check of the pad-side and heater-side sensors (when a heater-side sensor is fitted).

While the heater drives, heat flows from the element to the pad, so the
heater side cannot be cooler than the pad side: reading more than
`xc_cooler_mc` below it for `xc_ms` means one of the two is wrong (detached,
drifted, swapped). At any time the two cannot differ by more than
`xc_diverge_mc` for `xc_ms`. Either latches sensor_mismatch. The heater side
has its own ceiling `heater_side_max_mc` (over_temp), checked by protect.py.
"""

from firmware.heat import faults as F


class CrossCheck:
    def __init__(self, config):
        self._cooler = config.xc_cooler_mc
        self._diverge = config.xc_diverge_mc
        self._hold_ms = config.xc_ms
        self._cool_ms = 0
        self._apart_ms = 0
        self.fault_msg = ""

    def reset(self):
        self._cool_ms = 0
        self._apart_ms = 0

    def update(self, pad_mc, heater_mc, driving, dt_ms):
        """None, or F_SENSOR_MISMATCH with fault_msg set."""
        diff = heater_mc - pad_mc
        if driving and diff < -self._cooler:
            self._cool_ms += dt_ms
            if self._cool_ms >= self._hold_ms:
                self.fault_msg = (
                    "%s reads %s, %s below the %s %s while heating, limit %s for %s (xc_cooler_mc, xc_ms)"
                    % (F.SENSOR_HEATER, F.fmt_c(heater_mc), F.fmt_c(-diff), F.SENSOR_PAD, F.fmt_c(pad_mc),
                       F.fmt_c(self._cooler), F.fmt_s(self._hold_ms))
                )
                return F.F_SENSOR_MISMATCH
        else:
            self._cool_ms = 0
        if diff > self._diverge or -diff > self._diverge:
            self._apart_ms += dt_ms
            if self._apart_ms >= self._hold_ms:
                self.fault_msg = (
                    "%s reads %s and %s %s: %s apart, limit %s for %s (xc_diverge_mc, xc_ms)"
                    % (F.SENSOR_HEATER, F.fmt_c(heater_mc), F.SENSOR_PAD, F.fmt_c(pad_mc),
                       F.fmt_c(diff if diff > 0 else -diff), F.fmt_c(self._diverge), F.fmt_s(self._hold_ms))
                )
                return F.F_SENSOR_MISMATCH
        else:
            self._apart_ms = 0
        return None
