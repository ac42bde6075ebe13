"""Fake device/board state for `sim.trace.trace_line`, and the reference it must match.

Portable (CPython and the MicroPython VM): tests/test_trace_line.py uses it in-process
and runs `main()` inside the VM. A case is a plain dict (so it can travel as JSON):

    {"t_ms": int, "state": str, "faults": [str], "sim_faults": [str], "rx": [dict],
     "channels": [{"amp_ua", "target_ua", "phase_us", "rate_hz",
                   "delivered_ua", "pulses", "max_charge_pc", "net_pc"}],   # ints
     "heat": None or {"state": str, "target_mc", "duty_permille", "cem43_ms", "pad_true_mc": int,
                      "valid": bool, "value_mc": int}}    # valid: the pad has a reading

`reference_line` is the trace line as it was first written: the whole dict through the
protocol's generic encoder (`jsonenc.encode`), with what the trace takes from
`HeatController.status()` (measured_mc None while the pad has no reading, heater_duty_pct =
duty_permille // 10, cem43_ms from the dose).

    MICROPYPATH=<repo> micropython tests/trace_fakes.py CASES.jsonl   (one case per line)
prints, per case, "OK <index> <line>" or "DIFF <index>" followed by the fast and the
reference line, then "DONE <count>".
"""

from firmware.protocols import jsonenc


class Obj:
    """A bag of attributes."""

    def __init__(self, **fields):
        for key in fields:
            setattr(self, key, fields[key])


class FakePulseOut:
    def __init__(self, rows):
        self.row_delivered_ua = [row["delivered_ua"] for row in rows]
        self.row_pulses = [row["pulses"] for row in rows]
        self.row_max_charge_pc = [row["max_charge_pc"] for row in rows]
        self.row_net_pc = [row["net_pc"] for row in rows]

    def reset_row(self, ch):
        self.row_pulses[ch] = 0
        self.row_max_charge_pc[ch] = 0
        self.row_net_pc[ch] = 0
        self.row_delivered_ua[ch] = 0


def build(case):
    """(t_ms, device, board, received) for a case; fresh objects every call (the trace resets rows)."""
    channels = []
    for row in case["channels"]:
        channels.append(
            Obj(amp_ua=row["amp_ua"], target_ua=row["target_ua"], phase_us=row["phase_us"], rate_hz=row["rate_hz"])
        )
    heat = None
    plant = None
    spec = case["heat"]
    if spec is not None:
        heat = Obj(
            state=spec["state"],
            target_mc=spec["target_mc"],
            duty_permille=spec["duty_permille"],
            dose=Obj(cem43_ms=spec["cem43_ms"]),
        )
        reading_mc = spec["value_mc"] if spec["valid"] else None
        heat.reading_mc = lambda: reading_mc
        plant = Obj(pad_mc=spec["pad_true_mc"])
    device = Obj(
        channels=channels,
        supervisor=Obj(state_name=case["state"], faults=list(case["faults"])),
        heat=heat,
    )
    board = Obj(pulse_out=FakePulseOut(case["channels"]), active_faults=list(case["sim_faults"]))
    if plant is not None:
        board.plant = plant  # no plant without heat: the trace must not look for one then
    return case["t_ms"], device, board, list(case["rx"])


def _div_toward_zero(value, divisor):
    if value < 0:
        return -((-value) // divisor)
    return value // divisor


def reference_line(t_ms, device, board, received):
    """The trace line through the generic encoder: what `trace_line` must produce, byte for byte."""
    pulse_out = board.pulse_out
    channels = []
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
    fields = {
        "state": device.supervisor.state_name,
        "faults": list(device.supervisor.faults),
        "ch": channels,
        "sim_faults": list(board.active_faults),
        "rx": received,
    }
    heat = device.heat
    if heat is not None:
        fields["heat"] = {
            "state": heat.state,
            "target_mc": heat.target_mc,
            "measured_mc": heat.reading_mc(),
            "pad_true_mc": board.plant.pad_mc,
            "heater_duty_pct": heat.duty_permille // 10,
            "cem43_min": heat.dose.cem43_ms // 60000,
        }
    body = jsonenc.encode(fields)
    return '{"t_s":%d.%d,%s' % (t_ms // 1000, (t_ms % 1000) // 100, body[1:])


def compare(case):
    """(fast line, reference line, rows reset) for one case."""
    from sim.trace import trace_line

    reference = reference_line(*build(case))
    t_ms, device, board, received = build(case)
    fast = trace_line(t_ms, device, board, received)
    out = board.pulse_out
    rows = out.row_delivered_ua + out.row_pulses + out.row_max_charge_pc + out.row_net_pc
    reset = True
    for value in rows:
        if value != 0:
            reset = False
    return fast, reference, reset


def main(path):
    from firmware.protocols import jsondec

    count = 0
    with open(path) as handle:
        for text in handle:
            case = jsondec.decode(text.strip(), 64)
            fast, reference, reset = compare(case)
            if fast == reference and reset:
                print("OK %d %s" % (count, fast))
            else:
                print("DIFF %d reset=%s" % (count, reset))
                print(fast)
                print(reference)
            count += 1
    print("DONE %d" % count)


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
