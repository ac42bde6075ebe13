"""Per-tick audit records of a simulated device, for safety checks that need every tick.

Portable (CPython and the MicroPython VM). A record is the device after one tick:

    [t_ms, state, faults, chans, pulses, replies, heat]

    chans    per channel [amp_ua, target_ua, max_amp_ua, ramp_step_ua, setting phase_us,
             setting gap_us, phase ratio, driver's last commanded uA, refused fires (cumulative)]
    pulses   the tick's pulses [ch, start_us, amp1, phase1, gap, amp2, phase2]
    replies  the tick's replies [op, ok, ch]: op is the request's op if it ran, "" if it was
             answered from the reply cache or is unknown; ch -1 when the reply names none
    heat     [heat state, heater switch on (0/1) at the end of the tick, interlock alternate (0/1)];
             [] on a device without a heat pad

`sim.scenario.ScenarioRun(..., audit=...)` writes one as a JSON line per tick; the
test harness builds the same records in process. tests/fw/invariants.py checks them.
"""

from firmware.link import NEVER_CACHED, REPLY_CACHE
from firmware.protocols import jsonenc


class ReplyTracker:
    """Which replies ran their request, and which the device answered from its reply cache.

    Mirrors firmware.link: every reply but those to hello, estop, stop and pause is cached by
    (id, the request's bytes: here its canonical encoding, as the host sends it); an
    accepted hello empties the cache. Feed it the requests as the host writes them (`sent`) and the
    replies in the order they arrive (`op_of`): it returns the op a reply ran, or ""
    when the reply came from the cache (the request did not run again) or is unknown.
    """

    def __init__(self):
        self._pending = {}  # id -> requests sent with that id and not answered yet, oldest first
        self._cache = []  # (id, request) like the device's reply cache

    def sent(self, message):
        rid = message.get("id")
        if rid not in self._pending:
            self._pending[rid] = []
        self._pending[rid].append(message)

    def op_of(self, reply):
        rid = reply.get("id")
        waiting = self._pending.get(rid)
        if not waiting:
            return ""
        request = waiting.pop(0)
        op = request.get("op")
        if op == "hello":
            if reply.get("ok") is True:
                self._cache = []  # only an accepted hello empties the device's cache
            return op
        if op in NEVER_CACHED:
            return op  # always run again
        payload = jsonenc.encode(request)
        for entry in self._cache:
            if entry[0] == rid and entry[1] == payload:
                return ""  # answered again from the cache: nothing ran
        self._cache.append((rid, payload))  # every other reply is cached, errors too
        if len(self._cache) > REPLY_CACHE:
            self._cache.pop(0)
        return op if isinstance(op, str) else ""


def reply_entry(tracker, reply):
    """[op, ok, ch] of a reply for a record."""
    ch = reply.get("ch", -1)
    if not isinstance(ch, int) or isinstance(ch, bool):
        ch = -1
    return [tracker.op_of(reply), reply.get("ok") is True, ch]


def channel_entries(device, pulse_out):
    chans = []
    for i in range(len(device.channels)):
        c = device.channels[i]
        s = c.setting
        chans.append(
            [c.amp_ua, c.target_ua, c.max_amp_ua, c.ramp_step_ua, s.phase_us, s.gap_us, s.ratio,
             pulse_out.last_commanded_ua[i], pulse_out.refused[i]]
        )
    return chans


def heat_entry(device):
    heat = device.heat
    if heat is None:
        return []
    return [heat.state, 1 if heat.heater.on() else 0, 1 if device.interlock == "alternate" else 0]


def record(t_ms, device, pulse_out, pulses, replies):
    supervisor = device.supervisor
    return [
        t_ms, supervisor.state_name, list(supervisor.faults), channel_entries(device, pulse_out), pulses, replies,
        heat_entry(device),
    ]


def encode(record):
    """jsonenc.encode(record), byte for byte, at a fraction of the cost (one line per tick)."""
    out = ['[%d,"%s",' % (record[0], record[1])]
    out.append(jsonenc.encode(record[2]) if record[2] else "[]")
    out.append(",[")
    first = True
    for c in record[3]:
        out.append(("[%d,%d,%d,%d,%d,%d,%d,%d,%d]" if first else ",[%d,%d,%d,%d,%d,%d,%d,%d,%d]") % tuple(c))
        first = False
    out.append("],[")
    first = True
    for p in record[4]:
        out.append(("[%d,%d,%d,%d,%d,%d,%d]" if first else ",[%d,%d,%d,%d,%d,%d,%d]") % tuple(p))
        first = False
    out.append("],")
    out.append(jsonenc.encode(record[5]) if record[5] else "[]")
    heat = record[6]
    out.append(',["%s",%d,%d]]' % (heat[0], heat[1], heat[2]) if heat else ",[]]")
    return "".join(out)
