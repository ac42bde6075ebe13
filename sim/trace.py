"""Trace lines: one JSON object per 100 ms of simulated time.

Encoded through the protocol's deterministic encoder so the two runtimes give
byte-identical traces. `t_s` is written as a fixed-point decimal (no floats).
"""

from firmware.protocols import jsonenc


def trace_line(t_ms, device, board, received):
    channels = []
    for i in range(len(device.channels)):
        channel = device.channels[i]
        channels.append(
            {
                "amp_ua": channel.amp_ua,
                "target_ua": channel.target_ua,
                "sense_ua": device.sense_ua[i],
                "pulses": board.pulse_out.pulse_count[i],
            }
        )
    body = jsonenc.encode(
        {
            "state": device.supervisor.state_name,
            "faults": list(device.supervisor.faults),
            "ch": channels,
            "sim_faults": list(board.active_faults),
            "rx": received,
        }
    )
    return '{"t_s":%d.%d,%s' % (t_ms // 1000, (t_ms % 1000) // 100, body[1:])
