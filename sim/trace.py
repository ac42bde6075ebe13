"""Trace lines: one JSON object per 100 ms of simulated time.

The line is built by hand from a fixed template instead of going through the
generic encoder: one is written every 10 ticks of a run, and the generic
`jsonenc.encode` walk (a dict per channel, sorted keys, one isinstance chain per
value, `heat.status()` building 15 keys) was a main cost of the simulator. The
bytes are exactly those of `jsonenc.encode` of the same dict (tests/test_trace_line.py
keeps that reference): keys as literals in sorted order, no spaces, integers
through %d (the device speaks integers only, never booleans or floats here), and
every string or list that comes from state still goes through `jsonenc`, so its
escaping is the protocol's. `t_s` comes first (prepended, not sorted) as a
fixed-point decimal.

Per channel, `pulses`, `max_phase_charge_nc` and `net_charge_nc` cover the
pulses fired in this row's 100 ms; `delivered_ua` is the last of them.
"""

from firmware.protocols import jsonenc

# Sorted keys: amp_ua delivered_ua max_phase_charge_nc net_charge_nc phase_us pulses rate_hz target_ua
_CHANNEL = (
    '{"amp_ua":%d,"delivered_ua":%d,"max_phase_charge_nc":%d,"net_charge_nc":%d,'
    '"phase_us":%d,"pulses":%d,"rate_hz":%d,"target_ua":%d}'
)
# Sorted keys: cem43_min heater_duty_pct measured_mc pad_true_mc state target_mc
# (measured_mc is "%s": an integer, or null when the pad has no reading: HeatController.reading_mc)
_HEAT = '"heat":{"cem43_min":%d,"heater_duty_pct":%d,"measured_mc":%s,"pad_true_mc":%d,"state":%s,"target_mc":%d},'
# Sorted keys: ch faults [heat] rx sim_faults state, after the leading t_s
_LINE = '{"t_s":%d.%d,"ch":[%s],"faults":%s,%s"rx":%s,"sim_faults":%s,"state":%s}'


def trace_line(t_ms, device, board, received):
    pulse_out = board.pulse_out
    channels = device.channels
    if len(channels) == 1:
        ch = _channel(channels[0], pulse_out, 0)
    else:
        ch = ",".join([_channel(channels[i], pulse_out, i) for i in range(len(channels))])
    supervisor = device.supervisor
    heat = device.heat
    return _LINE % (
        t_ms // 1000,
        (t_ms % 1000) // 100,
        ch,
        _list(supervisor.faults),
        "" if heat is None else _heat(heat, board.plant.pad_mc),
        _list(received),
        _list(board.active_faults),
        _string(supervisor.state_name),
    )


def _channel(channel, pulse_out, i):
    """One channel's object; resets that channel's per-row counters (the row is written)."""
    net_pc = pulse_out.row_net_pc[i]
    text = _CHANNEL % (
        channel.amp_ua,
        pulse_out.row_delivered_ua[i],
        pulse_out.row_max_charge_pc[i] // 1000,
        -((-net_pc) // 1000) if net_pc < 0 else net_pc // 1000,  # rounds toward zero
        channel.phase_us,
        pulse_out.row_pulses[i],
        channel.rate_hz,
        channel.target_ua,
    )
    pulse_out.reset_row(i)
    return text


def _heat(heat, pad_true_mc):
    """The "heat" member (with its trailing comma): what `heat.status()` would say, read directly."""
    measured_mc = heat.reading_mc()
    return _HEAT % (
        heat.dose.cem43_ms // 60000,
        heat.duty_permille // 10,
        "null" if measured_mc is None else measured_mc,
        pad_true_mc,
        _string(heat.state),
        heat.target_mc,
    )


def _list(items):
    """A JSON array through the protocol encoder; the usual empty list as a literal."""
    if not items:
        return "[]"
    return jsonenc.encode(items)


def _string(text):
    """A JSON string through the protocol encoder (which remembers the few names that recur)."""
    return jsonenc.encode(text)
