"""Trace lines: one JSON object per 100 ms of simulated time.

Encoded through the protocol's deterministic encoder so the two runtimes give
byte-identical traces. `t_s` is written as a fixed-point decimal (no floats).
Per channel, `pulses`, `max_phase_charge_nc` and `net_charge_nc` cover the
pulses fired in this row's 100 ms; `delivered_ua` is the last of them.
"""

from firmware.protocols import jsonenc


def trace_line(t_ms, device, board, received):
    channels = []
    pulse_out = board.pulse_out
    for i in range(len(device.channels)):
        channel = device.channels[i]
        channels.append(
            {
                "amp_ua": channel.amp_ua,
                "target_ua": channel.target_ua,
                "delivered_ua": pulse_out.row_delivered_ua[i],
                "phase_us": channel.phase_us,
                "rate_hz": channel.rate_hz,
                "pulses": pulse_out.row_pulses[i],
                "max_phase_charge_nc": pulse_out.row_max_charge_pc[i] // 1000,
                "net_charge_nc": _div_toward_zero(pulse_out.row_net_pc[i], 1000),
            }
        )
        pulse_out.reset_row(i)
    fields = {
        "state": device.supervisor.state_name,
        "faults": list(device.supervisor.faults),
        "ch": channels,
        "sim_faults": list(board.active_faults),
        "rx": received,
    }
    heat = device.heat
    if heat is not None:
        status = heat.status()
        fields["heat"] = {
            "state": status["state"],
            "target_mc": status["target_mc"],
            "measured_mc": status["measured_mc"],
            "pad_true_mc": board.plant.pad_mc,
            "heater_duty_pct": status["heater_duty_pct"],
            "cem43_min": status["cem43_ms"] // 60000,
        }
    body = jsonenc.encode(fields)
    return '{"t_s":%d.%d,%s' % (t_ms // 1000, (t_ms % 1000) // 100, body[1:])


def _div_toward_zero(value, divisor):
    if value < 0:
        return -((-value) // divisor)
    return value // divisor
